//! `parse_rfc3339(text)`: the instant an RFC 3339 timestamp names, as a UTC `TIMESTAMP`, or NULL
//! when the text is not one.
//!
//! The exports' contract asks for RFC 3339 with an offset (`2026-10-01T09:30:00+02:00`, `...Z`).
//! `CAST(text AS TIMESTAMP)` also accepts text without an offset and reads it as UTC, which turns
//! a local time into a wrong instant without a trace; with this function such a row is
//! quarantined as `bad_timestamp` instead. `T`, `t` or a space separate date and time.

use std::sync::Arc;

use datafusion::arrow::array::TimestampNanosecondArray;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use lifemap_syntax::timestamp::parse_rfc3339_nanos;

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

impl ScalarUDFImpl for ParseRfc3339 {
    fn name(&self) -> &str {
        "parse_rfc3339"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        super::support::one_text_argument(self.name(), arg_types)
    }

    // The type `CAST(text AS TIMESTAMP)` gives, so the two are interchangeable.
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(scalar) => Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
                super::support::scalar_text(scalar).and_then(parse_rfc3339_nanos),
                None,
            ))),
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(TimestampNanosecondArray::from(
                super::support::map_text(array, |value| value.and_then(parse_rfc3339_nanos)),
            )))),
        }
    }
}
