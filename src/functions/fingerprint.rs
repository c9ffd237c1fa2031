//! `fingerprint(text)`: a 64-bit hash of a text value, as a BIGINT (NULL for NULL).
//!
//! Grouping and joining on a BIGINT is several times cheaper than on text: finding the event ids
//! seen more than once takes a fraction of the time on their fingerprints. Two different values can share a fingerprint, so a fingerprint narrows a
//! search (candidates) and the text decides. The hash is foldhash with a fixed seed: the same in
//! every session of a build, but not promised across lifemap versions, so never store it.

use std::hash::BuildHasher;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use foldhash::quality::FixedState;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    signature: Signature,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

const HASHER: FixedState = FixedState::with_seed(0x6c69_6665_6d61_7021);

pub fn fingerprint_of(text: &str) -> i64 {
    HASHER.hash_one(text) as i64
}

impl ScalarUDFImpl for Fingerprint {
    fn name(&self) -> &str {
        "fingerprint"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        super::support::one_text_argument(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(scalar) => Ok(ColumnarValue::Scalar(ScalarValue::Int64(
                super::support::scalar_text(scalar).map(fingerprint_of),
            ))),
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(Int64Array::from(
                super::support::map_text(array, |value| value.map(fingerprint_of)),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn equal_text_equal_fingerprint_whatever_the_string_type() {
        let ctx = SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(Fingerprint::default()));
        let batches = ctx
            .sql(
                "SELECT fingerprint('e1') = fingerprint(arrow_cast('e1', 'Utf8View')) AS same_view,
                        fingerprint('e1') = fingerprint(arrow_cast('e1', 'LargeUtf8')) AS same_large,
                        fingerprint('e1') <> fingerprint('e2') AS differ,
                        fingerprint(NULL) IS NULL AS null_in_null_out,
                        fingerprint(v) = fingerprint('e1') AS column_matches_scalar
                 FROM (VALUES ('e1')) AS t(v)",
            )
            .await
            .and_then(|frame| futures::executor::block_on(frame.collect()))
            .expect("query");
        let row = &batches[0];
        for column in 0..row.num_columns() {
            assert!(
                row.column(column).as_boolean().value(0),
                "{} is false",
                row.schema().field(column).name()
            );
        }
    }
}
