//! Delta Lake marts (`format: delta`): the Parquet files lifemap writes, committed to a Delta
//! table whose root is the mart's folder and whose partition column is `ds`.
//!
//! lifemap writes the files itself (the same writer as for plain Parquet); this module only keeps
//! the transaction log: one commit per published partition, adding the run's files and removing
//! those of the run before it (`WRITE`, mode overwrite, predicate `ds = '<ds>'`). Removed files
//! stay on storage for time travel until [`vacuum`] deletes them after the table's retention
//! (Delta's default: 7 days). Engines that read Delta (Spark, Trino, DuckDB, polars, pandas
//! through `deltalake`) thus see each partition change atomically, and a reader that wants every
//! mart of one run reads each table at the version `run_results.json` names.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};
use datafusion::prelude::{DataFrame, col};
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, Add, DataType, StructField, StructType};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::prefix::PrefixStore;

use crate::error::DeltaError;
use crate::storage::Location;

/// The partition column of every Delta mart.
pub const PARTITION_COLUMN: &str = "ds";

/// How often a commit that lost a race with another writer of the same table is tried again.
const COMMIT_ATTEMPTS: usize = 5;

fn delta_error(table: &Location, context: &str) -> impl FnOnce(DeltaTableError) -> DeltaError {
    let table = table.folder_url();
    let context = context.to_string();
    move |source| DeltaError {
        table,
        context,
        source: Box::new(source),
    }
}

/// One data file of a partition, by its name inside the partition folder.
#[derive(Debug, Clone)]
pub struct PartitionFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

/// Cast the columns Delta has no type for to the nearest one it has: unsigned integers to signed
/// ones, and timestamps to microseconds (Delta's unit; DataFusion's is nanoseconds).
pub fn compatible_frame(frame: DataFrame) -> datafusion::error::Result<DataFrame> {
    let schema = frame.schema().as_arrow().clone();
    if schema
        .fields()
        .iter()
        .all(|field| delta_type(field.data_type()).is_none())
    {
        return Ok(frame);
    }
    let columns: Vec<_> = schema
        .fields()
        .iter()
        .map(|field| {
            let column = col(datafusion::common::Column::new_unqualified(field.name()));
            match delta_type(field.data_type()) {
                Some(target) => datafusion::prelude::cast(column, target).alias(field.name()),
                None => column,
            }
        })
        .collect();
    frame.select(columns)
}

/// The type a column of `data_type` is written as in a Delta mart, when it is not its own.
fn delta_type(data_type: &ArrowType) -> Option<ArrowType> {
    match data_type {
        ArrowType::UInt8 => Some(ArrowType::Int16),
        ArrowType::UInt16 => Some(ArrowType::Int32),
        ArrowType::UInt32 | ArrowType::UInt64 => Some(ArrowType::Int64),
        ArrowType::Timestamp(TimeUnit::Nanosecond | TimeUnit::Millisecond | TimeUnit::Second, tz) => {
            Some(ArrowType::Timestamp(TimeUnit::Microsecond, tz.clone()))
        }
        _ => None,
    }
}

/// `batch` without its column `index`, the mart's own `ds`, which must hold `ds` on every row:
/// in a Delta table the partition column gives it.
pub fn without_partition_column(batch: &RecordBatch, index: usize, ds: &str) -> Result<RecordBatch, String> {
    let values = cast(batch.column(index), &ArrowType::Utf8).map_err(|err| err.to_string())?;
    let values = values.as_string::<i32>();
    if let Some(other) = (0..values.len()).find(|&row| values.is_null(row) || values.value(row) != ds) {
        let found = if values.is_null(other) {
            "NULL"
        } else {
            values.value(other)
        };
        return Err(format!(
            "its column `{PARTITION_COLUMN}` holds {found}, not the run's {ds}: in a Delta mart `{PARTITION_COLUMN}` is the \
             partition column, so a mart's own must equal the run's date (or be renamed)"
        ));
    }
    let others: Vec<usize> = (0..batch.num_columns()).filter(|&i| i != index).collect();
    batch.project(&others).map_err(|err| err.to_string())
}

/// The log store of the Delta table at `table`, on the store lifemap already reaches it with.
fn log_store(table: &Location) -> LogStoreRef {
    let prefixed = Arc::new(PrefixStore::new(Arc::clone(&table.store), table.path.clone()));
    default_logstore(
        prefixed,
        Arc::clone(&table.store),
        &table.url,
        &StorageConfig::default(),
    )
}

/// The table at `table` at its latest version, or `None` when there is no table there yet.
pub async fn open(table: &Location) -> Result<Option<DeltaTable>, DeltaError> {
    open_version(table, None).await
}

/// The table at `table` as of `version` (the latest when `None`), or `None` when there is no
/// table there.
pub async fn open_version(table: &Location, version: Option<u64>) -> Result<Option<DeltaTable>, DeltaError> {
    // Loading a table that does not exist makes delta-rs log an error: look for its log first.
    let log = table.path.clone().join("_delta_log");
    let first = table.store.list(Some(&log)).try_next().await;
    if matches!(first, Ok(None)) {
        return Ok(None);
    }
    let mut delta = DeltaTable::new(log_store(table));
    let loaded = match version {
        None => delta.load().await,
        Some(version) => delta.load_version(version).await,
    };
    match loaded {
        Ok(()) => Ok(Some(delta)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(err) => Err(delta_error(table, "reading the log")(err)),
    }
}

/// The table's columns: the mart's, then the partition column.
fn table_schema(table: &Location, schema: &Schema) -> Result<StructType, DeltaError> {
    let mut fields: Vec<StructField> = Vec::with_capacity(schema.fields().len() + 1);
    for field in schema.fields() {
        let field: &Field = field;
        let converted = StructField::try_from_arrow(field).map_err(|err| DeltaError {
            table: table.folder_url(),
            context: format!("column `{}` has no Delta type", field.name()),
            source: Box::new(err),
        })?;
        fields.push(converted);
    }
    fields.push(StructField::new(PARTITION_COLUMN, DataType::DATE, false));
    StructType::try_new(fields).map_err(|err| DeltaError {
        table: table.folder_url(),
        context: "building its schema".to_string(),
        source: Box::new(err),
    })
}

/// The table at `table`, created (empty, partitioned by `ds`) when there is none.
async fn open_or_create(table: &Location, schema: &StructType) -> Result<DeltaTable, DeltaError> {
    if let Some(existing) = open(table).await? {
        return Ok(existing);
    }
    let created = DeltaTable::new(log_store(table))
        .create()
        .with_columns(schema.fields().cloned())
        .with_partition_columns([PARTITION_COLUMN])
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(delta) => Ok(delta),
        // Another writer created it first: use theirs.
        Err(_) => open(table).await?.ok_or_else(|| DeltaError {
            table: table.folder_url(),
            context: "creating the table".to_string(),
            source: "it neither exists nor could be created".into(),
        }),
    }
}

/// Commit `files` (already in `ds=<ds>/` below the table root) as partition `ds` of the table,
/// replacing what the partition held. Returns the version committed.
pub async fn commit_partition(
    table: &Location,
    ds: &str,
    schema: &Schema,
    files: &[PartitionFile],
    run_id: &str,
) -> Result<u64, DeltaError> {
    let wanted = table_schema(table, schema)?;
    let partition = HashMap::from([(PARTITION_COLUMN.to_string(), Some(ds.to_string()))]);
    let now = chrono::Utc::now().timestamp_millis();
    let adds: Vec<Action> = files
        .iter()
        .map(|file| {
            Action::Add(Add {
                path: format!("{PARTITION_COLUMN}={ds}/{}", file.name),
                partition_values: partition.clone(),
                size: file.bytes as i64,
                modification_time: now,
                data_change: true,
                stats: Some(format!("{{\"numRecords\":{}}}", file.rows)),
                ..Default::default()
            })
        })
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let delta = open_or_create(table, &wanted).await?;
        let snapshot = delta.snapshot().map_err(delta_error(table, "reading its snapshot"))?;
        let current = snapshot.schema();
        if current.as_ref() != &wanted {
            return Err(DeltaError {
                table: table.folder_url(),
                context: "the mart's columns differ from the table's".to_string(),
                source: format!(
                    "the table has {}; this run has {}. Publish the mart to a new location, or remove the \
                     table to start it again",
                    describe(current.as_ref()),
                    describe(&wanted)
                )
                .into(),
            });
        }
        let mut actions = adds.clone();
        actions.extend(
            snapshot
                .log_data()
                .into_iter()
                .filter(|file| file.partition_values_map().get(PARTITION_COLUMN) == Some(&Some(ds.to_string())))
                .map(|file| Action::Remove(file.remove_action(true))),
        );
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec![PARTITION_COLUMN.to_string()]),
            predicate: Some(format!("{PARTITION_COLUMN} = '{ds}'")),
        };
        let metadata = HashMap::from([
            ("lifemap.run_id".to_string(), serde_json::Value::from(run_id)),
            ("lifemap.ds".to_string(), serde_json::Value::from(ds)),
        ]);
        let committed = CommitBuilder::default()
            .with_actions(actions)
            .with_app_metadata(metadata)
            .build(Some(snapshot), delta.log_store(), operation)
            .await;
        match committed {
            Ok(done) => return Ok(done.version()),
            // A run of another ds committed first: read the new version and try again.
            Err(err) if attempt < COMMIT_ATTEMPTS => {
                tracing::info!(table = %table.folder_url(), error = %err, "Delta commit lost a race; trying again");
            }
            Err(err) => return Err(delta_error(table, "committing the partition")(err)),
        }
    }
}

fn describe(schema: &StructType) -> String {
    let columns: Vec<String> = schema
        .fields()
        .map(|field| format!("{} {}", field.name(), field.data_type()))
        .collect();
    format!("({})", columns.join(", "))
}

/// The paths (relative to the table root) of every file the table's log adds at any version
/// still in the log: what a reader of some version may read.
pub async fn referenced_files(table: &Location) -> Result<Vec<String>, DeltaError> {
    let Some(delta) = open(table).await? else {
        return Ok(Vec::new());
    };
    let snapshot = delta.snapshot().map_err(delta_error(table, "reading its snapshot"))?;
    let mut paths: Vec<String> = snapshot
        .log_data()
        .into_iter()
        .map(|file| file.path().to_string())
        .collect();
    let log_store = delta.log_store();
    let tombstones: Vec<String> = snapshot
        .all_tombstones(log_store.as_ref())
        .map_ok(|tombstone| tombstone.path().to_string())
        .try_collect()
        .await
        .map_err(delta_error(table, "reading its removed files"))?;
    paths.extend(tombstones);
    Ok(paths)
}

/// Delete the files removed from the table longer ago than its retention (Delta's default, 7
/// days, unless the table sets `delta.deletedFileRetentionDuration`). Returns how many.
pub async fn vacuum(table: &Location) -> Result<usize, DeltaError> {
    let Some(delta) = open(table).await? else {
        return Ok(0);
    };
    let (_, metrics) = delta.vacuum().await.map_err(delta_error(table, "vacuuming"))?;
    Ok(metrics.files_deleted.len())
}
