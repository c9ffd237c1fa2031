//! `parse_rfc3339(text)`: the instant an RFC 3339 timestamp names, as a UTC `TIMESTAMP`, or NULL
//! when the text is not one.
//!
//! The exports' contract asks for RFC 3339 with an offset (`2026-10-01T09:30:00+02:00`, `...Z`).
//! `CAST(text AS TIMESTAMP)` also accepts text without an offset and reads it as UTC, which turns
//! a local time into a wrong instant without a trace; with this function such a row is
//! quarantined as `bad_timestamp` instead. `T`, `t` or a space separate date and time.

use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::TimestampNanosecondArray;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParseRfc3339 {
    signature: Signature,
}

impl Default for ParseRfc3339 {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Nanoseconds since the epoch (UTC) of an RFC 3339 timestamp with an offset.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim()).ok()?.timestamp_nanos_opt()
}

impl ScalarUDFImpl for ParseRfc3339 {
    fn name(&self) -> &str {
        "parse_rfc3339"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        super::one_text_argument(self.name(), arg_types)
    }

    // The type `CAST(text AS TIMESTAMP)` gives, so the two are interchangeable.
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(scalar) => Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
                super::scalar_text(scalar).and_then(parse_rfc3339_nanos),
                None,
            ))),
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(TimestampNanosecondArray::from(
                super::map_text(array, |value| value.and_then(parse_rfc3339_nanos)),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_required_and_applied() {
        let at = |text: &str| parse_rfc3339_nanos(text).map(|n| DateTime::from_timestamp_nanos(n).to_rfc3339());
        assert_eq!(
            at("2026-10-01T09:30:00+02:00").as_deref(),
            Some("2026-10-01T07:30:00+00:00")
        );
        assert_eq!(
            at("2026-10-01 07:30:00.25Z").as_deref(),
            Some("2026-10-01T07:30:00.250+00:00")
        );
        assert_eq!(
            at("2026-10-01T07:30:00-05:30").as_deref(),
            Some("2026-10-01T13:00:00+00:00")
        );
        for not_rfc3339 in ["2026-10-01T07:30:00", "2026-10-01", "2026-10-01 07:30", "yesterday", ""] {
            assert_eq!(at(not_rfc3339), None, "{not_rfc3339}");
        }
    }
}
