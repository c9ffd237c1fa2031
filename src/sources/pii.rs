//! Personal columns of a source: hashed with a keyed HMAC or dropped as the source is read, so no
//! step, mart or log sees them in clear.

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{DataFrame, Expr, ident};

use crate::config::Source;
use crate::config::raw::PiiAction;
use crate::error::Error;
use crate::functions::pseudonymize::PiiHash;

/// The environment variable holding the key personal columns are hashed with.
pub const PII_KEY_ENV: &str = "LIFEMAP_PII_KEY";

/// On a cluster's scheduler and executors: `pii_hash` under the key in their own environment, so
/// that plans hashing personal columns run there without the key travelling with them.
pub fn register_pii_hash_from_env(
    registry: &mut dyn datafusion::execution::FunctionRegistry,
) -> datafusion::error::Result<()> {
    if let Ok(key) = std::env::var(PII_KEY_ENV)
        && !key.is_empty()
    {
        registry.register_udf(Arc::new(ScalarUDF::new_from_impl(PiiHash::new(key.as_bytes()))))?;
    }
    Ok(())
}

/// The hasher for `source`'s `pii: hash` columns; an error when it has some and no key is set.
pub(crate) fn pii_hasher(source: &Source) -> Result<PiiHash, Error> {
    if !source.needs_pii_key() {
        return Ok(PiiHash::new(b""));
    }
    match std::env::var(PII_KEY_ENV) {
        Ok(key) if !key.is_empty() => Ok(PiiHash::new(key.as_bytes())),
        _ => Err(Error::Config(format!(
            "source `{}` declares personal columns to hash (pii: {}); set {PII_KEY_ENV} to the \
             pseudonymisation key (a run never reads them in clear)",
            source.name,
            source
                .pii
                .iter()
                .map(|(column, _)| column.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The source as steps see it: `pii: hash` columns replaced by their HMAC, `pii: drop` columns gone.
pub(crate) fn protect(frame: DataFrame, source: &Source, hasher: &PiiHash) -> datafusion::error::Result<DataFrame> {
    if source.pii.is_empty() {
        return Ok(frame);
    }
    let hash = ScalarUDF::new_from_impl(hasher.clone());
    let columns: Vec<Expr> = frame
        .schema()
        .fields()
        .iter()
        .filter_map(|field| {
            let name = field.name();
            match source
                .pii
                .iter()
                .find(|(column, _)| column == name)
                .map(|(_, action)| *action)
            {
                Some(PiiAction::Drop) => None,
                Some(PiiAction::Hash) => Some(hash.call(vec![ident(name)]).alias(name)),
                None => Some(ident(name)),
            }
        })
        .collect();
    frame.select(columns)
}
