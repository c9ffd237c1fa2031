//! `pii_hash(text)`: the hex HMAC-SHA-256 of a personal value under the run's key.
//!
//! Not registered by name: ingestion calls it on the columns a source marks `pii: hash`, so the
//! key never becomes something SQL can call or a plan can print. The same value under the same key
//! always gives the same digest, so joins and distinct counts on a hashed column still work; without
//! the key a digest cannot be checked against a guessed email.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PiiHash {
    signature: Signature,
    key: Vec<u8>,
}

// The key stays out of every debug print (plans, errors, logs).
impl fmt::Debug for PiiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PiiHash { key: [redacted] }")
    }
}

impl PiiHash {
    pub fn new(key: &[u8]) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            key: key.to_vec(),
        }
    }

    pub fn digest(&self, value: &str) -> String {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .fold(String::with_capacity(64), |mut out, byte| {
                out.push_str(&format!("{byte:02x}"));
                out
            })
    }
}

impl ScalarUDFImpl for PiiHash {
    fn name(&self) -> &str {
        "pii_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if t.is_string() || t.is_null() => Ok(vec![if t.is_null() { DataType::Utf8 } else { t.clone() }]),
            // Numbers, dates, ... are hashed as their text.
            [_] => Ok(vec![DataType::Utf8]),
            _ => plan_err!("pii_hash takes one value; got {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(scalar) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                super::support::scalar_text(scalar).map(|text| self.digest(text)),
            ))),
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(StringArray::from(
                super::support::map_text(array, |value| value.map(|text| self.digest(text))),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_the_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        let hash = PiiHash::new(b"Jefe");
        assert_eq!(
            hash.digest("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(!format!("{hash:?}").contains("Jefe"));
    }
}
