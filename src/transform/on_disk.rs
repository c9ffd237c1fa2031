//! Materialised steps past their share of `--memory-limit` are held on local disk as Parquet.
//!
//! DataFusion's memory pool bounds what its operators hold (sorts, aggregates and joins spill),
//! but a materialised step's batches sit in a `MemTable` outside the pool: at 10M events
//! `stg_events` and `person_events` alone were over a gigabyte, and a limit did not bound RSS.
//! Under a limit each output partition of a materialised step may keep a share of it in memory;
//! past that share the partition's batches go to a Parquet file (LZ4, 64K-row row groups) in a
//! temporary folder under `$TMPDIR`, and later steps read the files back with column projection
//! and filter pushdown, one row group at a time. The folder goes when the table is released.

use std::fs::File;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::{ExecutionPlan, execute_stream_partitioned};
use futures::StreamExt;

/// How much of a materialised step one output partition may keep in memory.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes_per_partition: usize,
}

impl Budget {
    /// A quarter of the limit for a step's in-memory output, shared by its partitions; the rest
    /// is for the operators of the steps that read it. No limit, no budget: everything in memory.
    pub fn for_limit(memory_limit: Option<u64>, partitions: usize) -> Option<Self> {
        let limit = usize::try_from(memory_limit?).unwrap_or(usize::MAX);
        Some(Self {
            bytes_per_partition: limit / 4 / partitions.max(1),
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
    Memory(Vec<RecordBatch>),
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
    let streams = execute_stream_partitioned(plan, task_ctx)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut stream) in streams.into_iter().enumerate() {
        let folder = folder.clone();
        let schema = Arc::clone(&schema);
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
                bytes += batch.get_array_memory_size();
                batches.push(batch);
                if let (Some(budget), Some(folder)) = (budget, folder.as_ref())
                    && bytes > budget.bytes_per_partition
                {
                    let mut file = open_writer(folder.path(), index, &schema)?;
                    for batch in batches.drain(..) {
                        file.write(&batch)?;
                    }
                    writer = Some(file);
                }
            }
            let partition = match writer {
                Some(writer) => {
                    writer.close()?;
                    Partition::Disk { rows }
                }
                None => Partition::Memory(batches),
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
        let batches: Vec<Vec<RecordBatch>> = partitions
            .into_iter()
            .map(|p| match p {
                Partition::Memory(batches) => batches,
                Partition::Disk { .. } => Vec::new(),
            })
            .collect();
        let rows = batches.iter().flatten().map(|b| b.num_rows() as u64).sum();
        return Ok(Held {
            table: Arc::new(MemTable::try_new(schema, batches)?),
            rows,
            bytes_on_disk: None,
        });
    };
    // One table reads one folder: partitions that stayed within the budget are written too.
    let mut rows = 0;
    for (index, partition) in partitions.into_iter().enumerate() {
        match partition {
            Partition::Disk { rows: written } => rows += written,
            Partition::Memory(batches) => {
                let mut writer = open_writer(folder.path(), index, &schema)?;
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
    let table = OnDisk::open(folder, schema)?;
    Ok(Held {
        table: Arc::new(table),
        rows,
        bytes_on_disk: Some(bytes_on_disk),
    })
}

fn open_writer(folder: &std::path::Path, index: usize, schema: &SchemaRef) -> Result<ArrowWriter<File>> {
    let file = File::create(folder.join(format!("part-{index:05}.parquet")))?;
    let properties = WriterProperties::builder()
        // Written once, read a few times, deleted: fast codec, small row groups to read a few at a time.
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    Ok(ArrowWriter::try_new(file, Arc::clone(schema), Some(properties))?)
}

/// A listing table over a step's Parquet files that owns (and so, dropped, removes) their folder.
#[derive(Debug)]
struct OnDisk {
    table: ListingTable,
    _folder: Arc<tempfile::TempDir>,
}

impl OnDisk {
    fn open(folder: Arc<tempfile::TempDir>, schema: SchemaRef) -> Result<Self> {
        let mut parquet = TableParquetOptions::default();
        // Read text back as it was written (Utf8), not as views the next step would cast.
        parquet.global.schema_force_view_types = false;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet)))
            .with_file_extension(".parquet");
        let url = ListingTableUrl::parse(format!("{}/", folder.path().display()))?;
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Self {
            table: ListingTable::try_new(config)?,
            _folder: folder,
        })
    }
}

#[async_trait]
impl TableProvider for OnDisk {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
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
        self.table.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.table.supports_filters_pushdown(filters)
    }
}
