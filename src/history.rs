//! Forgetting reaches published history: a mart's `forget` condition names the rows of persons
//! who asked to be forgotten, and after a run publishes its own `ds` those rows leave the mart's
//! published partitions of every other date too.
//!
//! Each such partition is rewritten with the publish protocol of [`crate::marts`] (staged files,
//! then its `_SUCCESS` manifest, then the old files deleted), under that date's lock; a date
//! whose lock a live run holds is left for the next run. The pass costs a scan of every published
//! partition of those marts, so it runs only when what the conditions read has changed since
//! the last complete pass (a digest kept in `_state/forgotten.json`) and is not empty.

use std::collections::BTreeSet;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::ParquetReadOptions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Mart;
use crate::context::RunContext;
use crate::error::Error;
use crate::marts::{MartWriter, read_manifest};
use crate::storage;
use crate::transform::{forget_query, tables_read};

/// The record of the last complete pass.
const FORGOTTEN: &str = "forgotten.json";

#[derive(Debug, Serialize, Deserialize)]
struct Pass {
    digest: String,
    run_id: String,
}

/// What a run removed from published history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Forgotten {
    /// Partitions rewritten without the rows their mart's `forget` condition names.
    pub partitions: usize,
    pub rows: u64,
    /// Dates whose lock a live run held: left for the next run.
    pub busy: Vec<String>,
    /// Why nothing was looked at, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
}

/// Remove the rows `forget` conditions name from every published partition of other dates.
pub async fn forget_in_history(run: &RunContext<'_>) -> Result<Forgotten, Error> {
    let marts: Vec<&Mart> = run.pipeline.marts.iter().filter(|m| m.forget.is_some()).collect();
    if marts.is_empty() {
        return Ok(Forgotten::default());
    }
    let Some(digest) = digest_of_inputs(run, &marts).await? else {
        return Ok(Forgotten {
            skipped: Some("nobody to forget"),
            ..Forgotten::default()
        });
    };
    let state = run.layout.state();
    let previous = storage::get(&state, FORGOTTEN)
        .await
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<Pass>(&bytes).ok());
    if previous.is_some_and(|pass| pass.digest == digest) {
        return Ok(Forgotten {
            skipped: Some("the same persons as the last complete pass"),
            ..Forgotten::default()
        });
    }
    let mut forgotten = Forgotten::default();
    for mart in marts {
        forget_in_mart(run, mart, &mut forgotten).await?;
    }
    if forgotten.busy.is_empty() {
        let pass = Pass {
            digest,
            run_id: run.run_id.clone(),
        };
        let body = serde_json::to_vec(&pass).map_err(|err| Error::Mart {
            mart: "_state".into(),
            source: Box::new(err),
        })?;
        storage::put(&state, FORGOTTEN, body).await?;
    }
    if forgotten.partitions > 0 || !forgotten.busy.is_empty() {
        tracing::info!(partitions = forgotten.partitions, rows = forgotten.rows, busy = ?forgotten.busy,
            "rows of forgotten persons removed from published partitions of other dates");
    }
    Ok(forgotten)
}

/// A digest of every table the conditions read, or `None` when they are all empty.
async fn digest_of_inputs(run: &RunContext<'_>, marts: &[&Mart]) -> Result<Option<String>, Error> {
    let steps: BTreeSet<String> = marts
        .iter()
        .filter_map(|mart| tables_read(&forget_query(&mart.from, mart.forget.as_deref().unwrap_or("true"))).ok())
        .flatten()
        .filter(|table| marts.iter().all(|mart| &mart.from != table))
        .collect();
    let mut digest = Sha256::new();
    let mut rows = 0;
    for table in steps {
        let batches = run
            .session
            .sql(&format!("SELECT * FROM {table} ORDER BY 1"))
            .await
            .map_err(|source| engine_error(&table, source))?
            .collect()
            .await
            .map_err(|source| engine_error(&table, source))?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
        let text = pretty_format_batches(&batches).map_err(|source| engine_error(&table, source.into()))?;
        digest.update(table.as_bytes());
        digest.update(text.to_string().as_bytes());
    }
    Ok((rows > 0).then(|| digest.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn engine_error(what: &str, source: datafusion::error::DataFusionError) -> Error {
    Error::Engine {
        context: format!("forgetting in published history: `{what}`"),
        source,
    }
}

/// One mart: every published partition of another date holding rows its condition names is
/// rewritten without them.
async fn forget_in_mart(run: &RunContext<'_>, mart: &Mart, forgotten: &mut Forgotten) -> Result<(), Error> {
    let Some(condition) = &mart.forget else {
        return Ok(());
    };
    let dates = crate::marts::dates_with_outputs(&run.layout, [mart.name.as_str()]).await?;
    for ds in dates.into_iter().filter(|ds| ds != run.ds()) {
        let layout = run.layout.for_ds(&ds);
        let partition = layout.partition(&mart.name);
        let Some(manifest) = read_manifest(&partition).await? else {
            continue;
        };
        let files: Vec<String> = manifest
            .files
            .iter()
            .map(|file| format!("{}{}", partition.folder_url(), file.name))
            .collect();
        let ctx = &run.session;
        let table = "__published_partition";
        let context = |source| engine_error(&format!("{} ds={ds}", mart.name), source);
        let frame = ctx
            .read_parquet(files, ParquetReadOptions::default())
            .await
            .map_err(context)?;
        let _ = ctx.deregister_table(table);
        ctx.register_table(table, frame.into_view()).map_err(context)?;
        let matching = ctx
            .sql(&forget_query(table, condition))
            .await
            .map_err(context)?
            .count()
            .await
            .map_err(context)? as u64;
        if matching == 0 {
            continue;
        }
        let lock = match crate::lock::RunLock::acquire(layout.runs(), layout.run_id(), run.pipeline.lock_timeout, None)
            .await
        {
            Ok(lock) => lock,
            Err(Error::Busy(_)) => {
                forgotten.busy.push(ds);
                continue;
            }
            Err(err) => return Err(err),
        };
        let kept = ctx
            .sql(&format!(
                "SELECT * FROM {table} WHERE NOT COALESCE(({condition}), false)"
            ))
            .await
            .map_err(context);
        let outcome = match kept {
            Ok(kept) => {
                let writer = MartWriter::new(layout.clone(), &run.pipeline.name);
                match writer.write(mart, kept).await {
                    Ok(staged) => writer.publish(&[staged]).await.map(|_| ()),
                    Err(err) => {
                        writer.discard().await;
                        Err(err)
                    }
                }
            }
            Err(err) => Err(err),
        };
        lock.release().await;
        outcome?;
        let _ = ctx.deregister_table(table);
        forgotten.partitions += 1;
        forgotten.rows += matching;
    }
    Ok(())
}
