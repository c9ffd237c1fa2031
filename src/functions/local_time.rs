//! `local_time(ts, 'Europe/Berlin')`: the wall-clock time in a zone of an instant stored in UTC.
//!
//! Marts take days, ISO weeks, months and hours in the reporting time zone. Timestamps are kept in
//! UTC; this turns one into the naive local time, so `date_trunc('month', local_time(ts, tz))`,
//! `date_part('hour', ...)` and `CAST(... AS DATE)` mean what an analyst in that zone expects,
//! through daylight-saving changes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LocalTime {
    signature: Signature,
}

impl Default for LocalTime {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Local wall time (microseconds) of a UTC instant (microseconds).
pub fn to_local_micros(utc_micros: i64, zone: Tz) -> Option<i64> {
    let instant = DateTime::<Utc>::from_timestamp_micros(utc_micros)?;
    Some(instant.with_timezone(&zone).naive_local().and_utc().timestamp_micros())
}

impl ScalarUDFImpl for LocalTime {
    fn name(&self) -> &str {
        "local_time"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Timestamp(_, tz), zone] if zone.is_string() || zone.is_null() => Ok(vec![
                DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                DataType::Utf8,
            ]),
            [DataType::Null, _] => Ok(vec![DataType::Timestamp(TimeUnit::Microsecond, None), DataType::Utf8]),
            _ => plan_err!("local_time(ts, 'Zone/Name') takes a timestamp and a time zone name; got {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name)))) => match name.parse::<Tz>() {
                Ok(zone) => zone,
                Err(_) => return exec_err!("local_time: `{name}` is not an IANA time zone"),
            },
            _ => return exec_err!("local_time: the time zone must be a constant string"),
        };
        let convert = |value: i64| {
            if zone == Tz::UTC {
                Some(value)
            } else {
                to_local_micros(value, zone)
            }
        };
        match &args.args[0] {
            ColumnarValue::Scalar(scalar) => {
                let value = match scalar {
                    ScalarValue::TimestampMicrosecond(value, _) => value.and_then(convert),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(value, None)))
            }
            ColumnarValue::Array(array) => {
                let Some(input) = array.as_primitive_opt::<TimestampMicrosecondType>() else {
                    return exec_err!("local_time: expected microsecond timestamps");
                };
                let output: TimestampMicrosecondArray = input.iter().map(|v| v.and_then(convert)).collect();
                Ok(ColumnarValue::Array(Arc::new(output) as Arc<dyn Array>))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_daylight_saving() {
        let micros = |s: &str| s.parse::<DateTime<Utc>>().expect("date").timestamp_micros();
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        // Summer: UTC+2; winter (after 2026-10-25): UTC+1.
        assert_eq!(
            to_local_micros(micros("2026-07-01T22:30:00Z"), berlin),
            Some(micros("2026-07-02T00:30:00Z"))
        );
        assert_eq!(
            to_local_micros(micros("2026-10-31T23:30:00Z"), berlin),
            Some(micros("2026-11-01T00:30:00Z"))
        );
        let new_york: Tz = "America/New_York".parse().expect("zone");
        assert_eq!(
            to_local_micros(micros("2026-11-01T03:00:00Z"), new_york),
            Some(micros("2026-10-31T23:00:00Z"))
        );
    }
}
