//! Materialised steps past their share of `--memory-limit` are held partly on local disk as Parquet.
//!
//! DataFusion's memory pool bounds what its operators hold (sorts, aggregates and joins spill),
//! but a materialised step's batches sit in a `MemTable` outside the pool: the largest held steps
//! grow with the export, and a limit did not bound RSS.
//! Under a limit each output partition of a materialised step may keep a share of it in memory,
//! reserved in DataFusion's pool so that operators of later steps see it taken (outside the pool,
//! held tables let a run pass its limit by half); past that share, or when
//! the pool has no room, the partition's further batches go to a Parquet file (LZ4, 64K-row row
//! groups) in a temporary folder under `$TMPDIR`. Later steps read both: the batches in memory and
//! the files, with column projection and filter pushdown, one row group at a time. The folder goes
//! when the table is released, and the reservation with it.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream_partitioned};
use futures::StreamExt;

use crate::engine::memory::HeldMemory;
use crate::sources::keeping::Keeping;

/// How much of a materialised step one output partition may keep in memory: its share of what the
/// held steps may keep together, while they have room.
#[derive(Debug, Clone)]
pub struct Budget {
    bytes_per_partition: usize,
    held: Arc<dyn MemoryPool>,
}

impl Budget {
    pub fn new(held: &HeldMemory, partitions: usize) -> Self {
        Self {
            bytes_per_partition: held.bytes() / partitions.max(1),
            held: held.pool(),
        }
    }
}

/// A materialised step's rows: in memory, or (past the budget) in Parquet files on disk.
pub struct Held {
    pub table: Arc<dyn TableProvider>,
    pub rows: u64,
    /// Bytes of Parquet written, when the step went to disk.
    pub bytes_on_disk: Option<u64>,
}

/// One output partition of a held step: the batches that fitted its budget, in memory, and the
/// rows after them, in a Parquet file of the step's folder.
struct Partition {
    memory: Vec<RecordBatch>,
    reservation: Option<Reservation>,
    rows_on_disk: u64,
}

/// The bytes of a partition's batches in memory, counted among the held steps' (their share) and
/// in DataFusion's pool (so that operators see them taken).
#[derive(Debug)]
struct Reservation {
    held: MemoryReservation,
    pool: MemoryReservation,
}

impl Reservation {
    fn try_grow(&mut self, bytes: usize) -> bool {
        if self.held.try_grow(bytes).is_err() {
            return false;
        }
        if self.pool.try_grow(bytes).is_err() {
            self.held.shrink(bytes);
            return false;
        }
        true
    }
}

/// How each batch held in memory is prepared (compacted) before it is kept.
type Prepare = fn(RecordBatch) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>;

/// Run `plan` and hold its result, one task per output partition as in `collect_partitioned`.
/// `prepare` is applied to batches kept in memory.
pub async fn hold(
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    budget: Option<Budget>,
    prepare: Prepare,
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
    for (index, stream) in streams.into_iter().enumerate() {
        let reservation = budget.as_ref().map(|budget| Reservation {
            held: MemoryConsumer::new(format!("HeldStepTable[{index}]")).register(&budget.held),
            pool: MemoryConsumer::new(format!("HeldStepTable[{index}]")).register(&pool),
        });
        let spill = folder.clone().map(|folder| Spill {
            folder,
            index,
            schema: Arc::clone(&schema),
        });
        let budget = budget.clone();
        tasks.spawn(async move {
            let partition = hold_partition(stream, budget, reservation, spill, prepare).await?;
            Ok::<_, DataFusionError>((index, partition))
        });
    }
    let mut partitions: Vec<Option<Partition>> = (0..tasks.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, partition) = joined.map_err(|error| DataFusionError::External(Box::new(error)))??;
        partitions[index] = Some(partition);
    }
    into_table(schema, partitions.into_iter().flatten().collect(), folder)
}

/// Where a partition's batches go once its budget is spent.
struct Spill {
    folder: Arc<tempfile::TempDir>,
    index: usize,
    schema: SchemaRef,
}

/// Read one output partition to its end, keeping batches in memory while the budget and the pool
/// allow and writing the rest to the partition's Parquet file.
async fn hold_partition(
    mut stream: SendableRecordBatchStream,
    budget: Option<Budget>,
    mut reservation: Option<Reservation>,
    spill: Option<Spill>,
    prepare: Prepare,
) -> Result<Partition> {
    let mut memory = Vec::new();
    let mut bytes = 0usize;
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows_on_disk = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(writer) = writer.as_mut() {
            rows_on_disk += batch.num_rows() as u64;
            writer.write(&batch)?;
            continue;
        }
        let batch = prepare(batch)?;
        let size = batch.get_array_memory_size();
        let within_budget = budget
            .as_ref()
            .is_none_or(|budget| bytes + size <= budget.bytes_per_partition);
        let reserved = within_budget && reservation.as_mut().is_none_or(|r| r.try_grow(size));
        match (reserved, spill.as_ref()) {
            (false, Some(spill)) => {
                // What came first stays in memory: a step a little over its share is read back
                // mostly from memory, so the cost of holding it grows with the excess.
                let mut file = open_writer(spill.folder.path(), spill.index, &spill.schema, Some(&batch))?;
                rows_on_disk += batch.num_rows() as u64;
                file.write(&batch)?;
                writer = Some(file);
            }
            _ => {
                bytes += size;
                memory.push(batch);
            }
        }
    }
    if let Some(writer) = writer {
        writer.close()?;
    }
    Ok(Partition {
        memory,
        reservation,
        rows_on_disk,
    })
}

/// The held partitions as one table: in memory alone, or in memory and on disk as a union.
fn into_table(schema: SchemaRef, partitions: Vec<Partition>, folder: Option<Arc<tempfile::TempDir>>) -> Result<Held> {
    let rows_on_disk: u64 = partitions.iter().map(|p| p.rows_on_disk).sum();
    let mut reservations = Vec::new();
    let memory: Vec<Vec<RecordBatch>> = partitions
        .into_iter()
        .map(|p| {
            reservations.extend(p.reservation);
            p.memory
        })
        .collect();
    let rows = rows_on_disk + memory.iter().flatten().map(|b| b.num_rows() as u64).sum::<u64>();
    let in_memory = MemTable::try_new(Arc::clone(&schema), memory)?;
    let (Some(folder), true) = (folder, rows_on_disk > 0) else {
        let table: Arc<dyn TableProvider> = if reservations.is_empty() {
            Arc::new(in_memory)
        } else {
            Arc::new(Keeping {
                table: in_memory,
                kept: reservations,
            })
        };
        return Ok(Held {
            table,
            rows,
            bytes_on_disk: None,
        });
    };
    let bytes_on_disk = std::fs::read_dir(folder.path())
        .and_then(|entries| {
            entries
                .map(|entry| entry?.metadata().map(|m| m.len()))
                .sum::<std::io::Result<u64>>()
        })
        .map_err(DataFusionError::IoError)?;
    let url = ListingTableUrl::parse(format!("{}/", folder.path().display()))?;
    let table = Keeping {
        table: PartlyOnDisk {
            in_memory,
            on_disk: parquet_listing(url, Arc::clone(&schema))?,
        },
        kept: (reservations, folder),
    };
    Ok(Held {
        table: Arc::new(table),
        rows,
        bytes_on_disk: Some(bytes_on_disk),
    })
}

/// A held step whose first batches are in memory and the rest in Parquet files: a scan reads
/// both, as a union. Filters go to the files (row-group pruning); DataFusion applies them above.
#[derive(Debug)]
struct PartlyOnDisk {
    in_memory: MemTable,
    on_disk: ListingTable,
}

#[async_trait::async_trait]
impl TableProvider for PartlyOnDisk {
    fn schema(&self) -> SchemaRef {
        self.on_disk.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let in_memory = self.in_memory.scan(state, projection, &[], limit).await?;
        let on_disk = self.on_disk.scan(state, projection, filters, limit).await?;
        UnionExec::try_new(vec![in_memory, on_disk])
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
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
    // statistics went unused: plain ids and row-group statistics made the two largest held steps
    // markedly faster to write. No codec at all was faster still but held almost twice the
    // bytes, where a run's resident memory and the page cache compete.
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
    crate::functions::support::map_text(&sample, |value| {
        if let Some(value) = value {
            present += 1;
            distinct.insert(value.to_owned());
        }
    });
    distinct.len() * 16 <= present
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
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    const ROWS: i64 = 100_000;

    /// A session whose DataFusion pool holds `pool_bytes`.
    fn session(pool_bytes: usize) -> Result<(SessionContext, Arc<dyn MemoryPool>)> {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(pool_bytes));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(2), runtime);
        Ok((ctx, pool))
    }

    /// `ROWS` numbers (about 2 MB in memory with their text), held within the share of `held`.
    async fn hold_numbers(ctx: &SessionContext, held: &HeldMemory) -> Result<Held> {
        let frame = ctx
            .sql(&format!(
                "SELECT value, CAST(value AS VARCHAR) AS text FROM generate_series(1, {ROWS})"
            ))
            .await?;
        let task_ctx = Arc::new(frame.task_ctx());
        let plan = frame.create_physical_plan().await?;
        let budget = Budget::new(held, plan.properties().output_partitioning().partition_count());
        hold(plan, task_ctx, Some(budget), Ok).await
    }

    /// The first row of `sql` over the table of `held` (registered as `held`), as 64-bit integers.
    async fn first_row(ctx: &SessionContext, held: &Held, sql: &str) -> Result<Vec<i64>> {
        ctx.register_table("held", Arc::clone(&held.table))?;
        let batches = ctx.sql(sql).await?.collect().await;
        ctx.deregister_table("held")?;
        let batches = batches?;
        batches[0]
            .columns()
            .iter()
            .map(|column| {
                column
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|values| values.value(0))
                    .ok_or_else(|| DataFusionError::Internal("unexpected result types".into()))
            })
            .collect()
    }

    async fn sum_of_values(ctx: &SessionContext, held: &Held) -> Result<(i64, i64)> {
        let row = first_row(ctx, held, "SELECT COUNT(*), SUM(value) FROM held").await?;
        Ok((row[0], row[1]))
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
        let (ctx, pool) = session(1 << 30)?;
        let held = hold_numbers(&ctx, &HeldMemory::new(1 << 30)).await?;
        assert_eq!(held.bytes_on_disk, None);
        assert_eq!(held.rows, ROWS as u64);
        assert!(pool.reserved() > ROWS as usize * 8, "reserved {}", pool.reserved());
        assert_eq!(sum_of_values(&ctx, &held).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        drop(held);
        assert_eq!(pool.reserved(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_table_over_its_budget_keeps_its_first_batches_in_memory_and_the_rest_on_disk() -> Result<()> {
        // A 512 KiB share keeps a few of the 8192-row batches in memory.
        let (ctx, pool) = session(1 << 30)?;
        let held = hold_numbers(&ctx, &HeldMemory::new(512 * 1024)).await?;
        assert!(held.bytes_on_disk.is_some_and(|bytes| bytes > 0));
        assert_eq!(held.rows, ROWS as u64);
        let reserved = pool.reserved();
        assert!(reserved > 0 && reserved <= 512 * 1024, "reserved {reserved}");
        assert_eq!(sum_of_values(&ctx, &held).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        // A filter holds for the rows in memory as for those in the files.
        let filtered = "SELECT COUNT(*) FROM held WHERE value % 1000 = 0 AND text LIKE '%000'";
        assert_eq!(first_row(&ctx, &held, filtered).await?, vec![ROWS / 1000]);
        drop(held);
        assert_eq!(pool.reserved(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_pool_without_room_sends_a_table_to_disk_though_it_is_within_its_budget() -> Result<()> {
        let (ctx, pool) = session(64 * 1024)?;
        let held = hold_numbers(&ctx, &HeldMemory::new(1 << 30)).await?;
        assert!(held.bytes_on_disk.is_some_and(|bytes| bytes > 0));
        assert_eq!(held.rows, ROWS as u64);
        assert_eq!(pool.reserved(), 0, "nothing stays reserved for a table on disk");
        assert_eq!(sum_of_values(&ctx, &held).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        Ok(())
    }

    #[tokio::test]
    async fn held_steps_share_one_allowance_and_a_dropped_table_gives_its_part_back() -> Result<()> {
        let (ctx, pool) = session(1 << 30)?;
        let share = HeldMemory::new(1 << 20);
        let first = hold_numbers(&ctx, &share).await?;
        let second = hold_numbers(&ctx, &share).await?;
        // Each alone would keep up to the whole 1 MiB: together they keep no more.
        assert!(
            pool.reserved() > 0 && pool.reserved() <= 1 << 20,
            "reserved {}",
            pool.reserved()
        );
        assert!(second.bytes_on_disk.is_some());
        assert_eq!(sum_of_values(&ctx, &second).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        drop((first, second));
        assert_eq!(pool.reserved(), 0);
        let third = hold_numbers(&ctx, &share).await?;
        assert!(pool.reserved() > 512 * 1024, "reserved {}", pool.reserved());
        assert_eq!(sum_of_values(&ctx, &third).await?, (ROWS, ROWS * (ROWS + 1) / 2));
        Ok(())
    }
}
