//! Materialised steps past their share of `--memory-limit` are held on local disk as Parquet.
//!
//! DataFusion's memory pool bounds what its operators hold (sorts, aggregates and joins spill),
//! but a materialised step's batches sit in a `MemTable` outside the pool: at 10M events
//! `stg_events` and `person_events` alone were over a gigabyte, and a limit did not bound RSS.
//! Under a limit each output partition of a materialised step may keep a share of it in memory,
//! reserved in DataFusion's pool so that operators of later steps see it taken (outside the pool,
//! held tables let a 100M-event run under a 4 GiB limit peak at 6.4 GB); past that share, or when
//! the pool has no room, the partition's batches go to a Parquet file (LZ4, 64K-row row groups) in
//! a temporary folder under `$TMPDIR`, and later steps read the files back with column projection
//! and filter pushdown, one row group at a time. The folder goes when the table is released, the
//! reservation when the in-memory table is.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::physical_plan::{ExecutionPlan, execute_stream_partitioned};
use futures::StreamExt;

use crate::sources::Keeping;

/// How much of a materialised step one output partition may keep in memory.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes_per_partition: usize,
}

impl Budget {
    /// A quarter of DataFusion's pool for a step's in-memory output, shared by its partitions; the
    /// rest is for the operators of the steps that read it. No limit, no budget: all in memory.
    pub fn for_limit(memory_limit: Option<u64>, partitions: usize) -> Option<Self> {
        let pool = crate::session::operator_memory(memory_limit?);
        Some(Self {
            bytes_per_partition: pool / 4 / partitions.max(1),
        })
    }
}

/// A materialised step's rows: in memory, or (past the budget) in Parquet files on disk.
pub struct Held {
    pub table: Arc<dyn TableProvider>,
    pub rows: u64,
    /// Bytes of Parquet written, when the step went to disk.
    pub bytes_on_disk: Option<u64>,
}

enum Partition {
    Memory(Vec<RecordBatch>, Option<MemoryReservation>),
    Disk { rows: u64 },
}

/// Run `plan` and hold its result, one task per output partition as in `collect_partitioned`.
/// `prepare` is applied to batches kept in memory.
pub async fn hold(
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    budget: Option<Budget>,
    prepare: fn(RecordBatch) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>,
) -> Result<Held> {
    let schema = plan.schema();
    let folder = match budget {
        Some(_) => Some(Arc::new(
            tempfile::Builder::new()
                .prefix("lifemap-step-")
                .tempdir()
                .map_err(DataFusionError::IoError)?,
        )),
        None => None,
    };
    let pool = Arc::clone(task_ctx.memory_pool());
    let streams = execute_stream_partitioned(plan, task_ctx)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut stream) in streams.into_iter().enumerate() {
        let folder = folder.clone();
        let schema = Arc::clone(&schema);
        let mut reservation = budget.map(|_| MemoryConsumer::new(format!("HeldStepTable[{index}]")).register(&pool));
        tasks.spawn(async move {
            let mut batches = Vec::new();
            let mut bytes = 0usize;
            let mut writer: Option<ArrowWriter<File>> = None;
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                if let Some(writer) = writer.as_mut() {
                    writer.write(&batch)?;
                    continue;
                }
                let batch = prepare(batch)?;
                let size = batch.get_array_memory_size();
                bytes += size;
                batches.push(batch);
                let over_budget = budget.is_some_and(|budget| bytes > budget.bytes_per_partition);
                let pool_full = reservation.as_mut().is_some_and(|r| r.try_grow(size).is_err());
                if let (true, Some(folder)) = (over_budget || pool_full, folder.as_ref()) {
                    let mut file = open_writer(folder.path(), index, &schema, batches.first())?;
                    for batch in batches.drain(..) {
                        file.write(&batch)?;
                    }
                    writer = Some(file);
                    if let Some(reservation) = reservation.as_mut() {
                        reservation.free();
                    }
                }
            }
            let partition = match writer {
                Some(writer) => {
                    writer.close()?;
                    Partition::Disk { rows }
                }
                None => Partition::Memory(batches, reservation),
            };
            Ok::<_, DataFusionError>((index, partition))
        });
    }
    let mut partitions: Vec<Option<Partition>> = (0..tasks.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, partition) = joined.map_err(|error| DataFusionError::External(Box::new(error)))??;
        partitions[index] = Some(partition);
    }
    let partitions: Vec<Partition> = partitions.into_iter().flatten().collect();

    let spilled = partitions.iter().any(|p| matches!(p, Partition::Disk { .. }));
    let (Some(folder), true) = (folder, spilled) else {
        let mut reservations = Vec::new();
        let batches: Vec<Vec<RecordBatch>> = partitions
            .into_iter()
            .map(|p| match p {
                Partition::Memory(batches, reservation) => {
                    reservations.extend(reservation);
                    batches
                }
                Partition::Disk { .. } => Vec::new(),
            })
            .collect();
        let rows = batches.iter().flatten().map(|b| b.num_rows() as u64).sum();
        let table = MemTable::try_new(schema, batches)?;
        let table: Arc<dyn TableProvider> = if reservations.is_empty() {
            Arc::new(table)
        } else {
            Arc::new(Keeping {
                table,
                kept: reservations,
            })
        };
        return Ok(Held {
            table,
            rows,
            bytes_on_disk: None,
        });
    };
    // One table reads one folder: partitions that stayed within the budget are written too.
    let mut rows = 0;
    for (index, partition) in partitions.into_iter().enumerate() {
        match partition {
            Partition::Disk { rows: written } => rows += written,
            // Its reservation goes with it: the batches are freed once written.
            Partition::Memory(batches, _reservation) => {
                let mut writer = open_writer(folder.path(), index, &schema, batches.first())?;
                for batch in &batches {
                    rows += batch.num_rows() as u64;
                    writer.write(batch)?;
                }
                writer.close()?;
            }
        }
    }
    let bytes_on_disk = std::fs::read_dir(folder.path())
        .and_then(|entries| {
            entries
                .map(|entry| entry?.metadata().map(|m| m.len()))
                .sum::<std::io::Result<u64>>()
        })
        .map_err(DataFusionError::IoError)?;
    let table = open_on_disk(folder, schema)?;
    Ok(Held {
        table: Arc::new(table),
        rows,
        bytes_on_disk: Some(bytes_on_disk),
    })
}

fn open_writer(
    folder: &std::path::Path,
    index: usize,
    schema: &SchemaRef,
    sample: Option<&RecordBatch>,
) -> Result<ArrowWriter<File>> {
    let file = File::create(folder.join(format!("part-{index:05}.parquet")))?;
    Ok(ArrowWriter::try_new(
        file,
        Arc::clone(schema),
        Some(held_file_properties(schema, sample)),
    )?)
}

/// How a held step's Parquet files are written, here and on a cluster's executors; `sample` (the
/// first batch) picks the text columns that get a dictionary.
pub(crate) fn held_file_properties(schema: &SchemaRef, sample: Option<&RecordBatch>) -> WriterProperties {
    // Written once, read back a few times within the run, deleted: written for speed. Dictionary
    // encoding of ids built a hash table per row group before giving up on it, and page
    // statistics went unused: at 100M events, plain ids and row-group statistics took
    // `stg_events` and `person_events` from 158 s to 126 s. No codec at all saved 14 s more but
    // held 9.5 GB instead of 5.5 GB, where a run's resident memory and the page cache compete.
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_dictionary_enabled(false);
    for (field, column) in schema
        .fields()
        .iter()
        .zip(sample.map(RecordBatch::columns).unwrap_or_default())
    {
        if few_distinct_texts(column) {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
        }
    }
    properties.build()
}

/// Whether a text column repeats its values enough for a dictionary to pay (event types,
/// channels), judged on its first rows; ids and other columns are written plain.
fn few_distinct_texts(column: &ArrayRef) -> bool {
    const SAMPLE_ROWS: usize = 8192;
    if !column.data_type().is_string() {
        return false;
    }
    let sample = column.slice(0, column.len().min(SAMPLE_ROWS));
    let mut distinct = HashSet::new();
    let mut present = 0usize;
    crate::functions::map_text(&sample, |value| {
        if let Some(value) = value {
            present += 1;
            distinct.insert(value.to_owned());
        }
    });
    distinct.len() * 16 <= present
}

/// A listing table over a step's Parquet files that owns their folder.
fn open_on_disk(
    folder: Arc<tempfile::TempDir>,
    schema: SchemaRef,
) -> Result<Keeping<ListingTable, Arc<tempfile::TempDir>>> {
    let url = ListingTableUrl::parse(format!("{}/", folder.path().display()))?;
    Ok(Keeping {
        table: parquet_listing(url, schema)?,
        kept: folder,
    })
}

/// A listing table over the Parquet files of a held step, read back with the types they were
/// written with: text as Utf8, not as the views DataFusion would read and the next step cast.
pub(super) fn parquet_listing(url: ListingTableUrl, schema: SchemaRef) -> Result<ListingTable> {
    let mut parquet = TableParquetOptions::default();
    parquet.global.schema_force_view_types = false;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet))).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ListingTable::try_new(config)
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    const ROWS: i64 = 100_000;

    /// `ROWS` numbers and their text, held under `budget` bytes per partition in a pool of `pool_bytes`.
    async fn hold_numbers(pool_bytes: usize, budget: usize) -> Result<(Held, Arc<dyn MemoryPool>, SessionContext)> {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(pool_bytes));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(2), runtime);
        let frame = ctx
            .sql(&format!(
                "SELECT value, CAST(value AS VARCHAR) AS text FROM generate_series(1, {ROWS})"
            ))
            .await?;
        let task_ctx = Arc::new(frame.task_ctx());
        let plan = frame.create_physical_plan().await?;
        let budget = Budget {
            bytes_per_partition: budget,
        };
        let held = hold(plan, task_ctx, Some(budget), Ok).await?;
        Ok((held, pool, ctx))
    }

    async fn sum_of_values(ctx: &SessionContext, held: &Held) -> Result<(i64, i64)> {
        ctx.register_table("held", Arc::clone(&held.table))?;
        let batches = ctx
            .sql("SELECT COUNT(*), SUM(value) FROM held")
            .await?
            .collect()
            .await?;
        let count = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>();
        let sum = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>();
        ctx.deregister_table("held")?;
        match (count, sum) {
            (Some(count), Some(sum)) => Ok((count.value(0), sum.value(0))),
            _ => Err(DataFusionError::Internal("unexpected result types".into())),
        }
    }

    #[test]
    fn held_files_use_dictionaries_only_for_repeated_texts() -> Result<()> {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::parquet::basic::Encoding;
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

        let rows = 10_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("channel", DataType::Utf8, true),
        ]));
        let ids = StringArray::from_iter_values((0..rows).map(|i| format!("evt-{i:08}")));
        let channels = StringArray::from_iter((0..rows).map(|i| (i % 7 != 0).then(|| ["web", "app", "email"][i % 3])));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(ids), Arc::new(channels)])?;
        let folder = tempfile::tempdir()?;
        let mut writer = open_writer(folder.path(), 0, &schema, Some(&batch))?;
        writer.write(&batch)?;
        writer.close()?;

        let reader = SerializedFileReader::new(File::open(folder.path().join("part-00000.parquet"))?)?;
        let row_group = reader.metadata().row_group(0);
        let dictionary = |column: usize| {
            row_group
                .column(column)
                .encodings()
                .any(|e| e == Encoding::RLE_DICTIONARY)
        };
        assert!(!dictionary(0), "ids are written plain");
        assert!(dictionary(1), "a column of three channels gets a dictionary");
        assert_eq!(row_group.column(0).compression(), Compression::LZ4_RAW);
        Ok(())
    }

    #[tokio::test]
    async fn a_table_held_in_memory_keeps_its_bytes_reserved_in_the_pool_until_dropped() -> Result<()> {
        let (held, pool, ctx) = hold_numbers(1 << 30, 1 << 30).await?;
        assert_eq!(held.bytes_on_disk, None);
        assert_eq!(held.rows, ROWS as u64);
        assert!(pool.reserved() > ROWS as usize * 8, "reserved {}", pool.reserved());
        assert_eq!(sum_of_values(&ctx, &held).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        drop(held);
        assert_eq!(pool.reserved(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_pool_without_room_sends_a_table_to_disk_though_it_is_within_its_budget() -> Result<()> {
        let (held, pool, ctx) = hold_numbers(64 * 1024, 1 << 30).await?;
        assert!(held.bytes_on_disk.is_some_and(|bytes| bytes > 0));
        assert_eq!(held.rows, ROWS as u64);
        assert_eq!(pool.reserved(), 0, "nothing stays reserved for a table on disk");
        assert_eq!(sum_of_values(&ctx, &held).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        Ok(())
    }
}
