//! Reading ahead for Parquet scans on a remote store (see [`super::read_ahead`]).
//!
//! DataFusion's Parquet reader asks for a file's footer, then for the column chunks it needs:
//! two requests one after the other per file, and a file opened only when its partition's last
//! one is done, so a year of daily Parquet files from S3 waited on one request per file in turn. A physical optimizer rule gives every remote Parquet scan a reader
//! factory that serves files fetched ahead whole (footer, page index and column chunks from
//! memory; the byte ranges DataFusion splits a file into share one fetch) and leaves files it
//! did not fetch (over the size limit, past the limits) to DataFusion's own reader. Fetching a
//! whole file gives up column pruning on the wire, which for small files costs less than a
//! second request. On a Ballista cluster the scheduler plans the scans, without this rule.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileScanConfig, FileScanConfigBuilder, ParquetFileMetrics, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::path::Path;

use super::read_ahead::{Limits, ReadAhead};

/// The physical optimizer rule: runs last, when the scans' files are grouped for good.
pub struct ParquetReadAhead {
    runtime: Arc<RuntimeEnv>,
}

impl ParquetReadAhead {
    pub fn new(runtime: Arc<RuntimeEnv>) -> Self {
        Self { runtime }
    }

    fn rewrite(&self, exec: &DataSourceExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some((scan, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else {
            return Ok(None);
        };
        let factory = parquet.parquet_file_reader_factory();
        if !ReadAhead::pays_for(&scan.object_store_url)
            // Already ours (the trait has no downcasting; its Debug names it).
            || factory.is_some_and(|factory| format!("{factory:?}") == READ_AHEAD_FILES)
        {
            return Ok(None);
        }
        let store = self.runtime.object_store(&scan.object_store_url)?;
        let files: Vec<&PartitionedFile> = scan.file_groups.iter().flat_map(|group| group.iter()).collect();
        let fallback = match factory {
            Some(factory) => Arc::clone(factory),
            None => Arc::new(DefaultParquetFileReaderFactory::new(Arc::clone(&store))),
        };
        let mut parts = HashMap::new();
        for file in &files {
            *parts.entry(file.object_meta.location.clone()).or_insert(0) += 1;
        }
        let factory = ReadAheadFiles {
            ahead: ReadAhead::new(store, &files, Limits::default()),
            fallback,
            parts,
            open: Mutex::default(),
        };
        let source = parquet.clone().with_parquet_file_reader_factory(Arc::new(factory));
        let scan: FileScanConfig = FileScanConfigBuilder::from(scan.clone())
            .with_source(Arc::new(source))
            .build();
        Ok(Some(Arc::new(exec.clone().with_data_source(Arc::new(scan)))))
    }
}

impl fmt::Debug for ParquetReadAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParquetReadAhead")
    }
}

impl PhysicalOptimizerRule for ParquetReadAhead {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let rewritten = match node.downcast_ref::<DataSourceExec>() {
                Some(exec) => self.rewrite(exec)?,
                None => None,
            };
            Ok(match rewritten {
                Some(plan) => Transformed::yes(plan),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "lifemap_parquet_read_ahead"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

type WholeFile = Shared<BoxFuture<'static, Result<Bytes, Arc<DataFusionError>>>>;

/// Readers of one scan's files: from memory when fetched ahead, else DataFusion's.
struct ReadAheadFiles {
    ahead: ReadAhead,
    fallback: Arc<dyn ParquetFileReaderFactory>,
    /// How many byte ranges each file is split into (DataFusion splits files among partitions).
    parts: HashMap<Path, usize>,
    /// Files fetched ahead that are still being read or have ranges not yet opened.
    open: Mutex<HashMap<Path, OpenFile>>,
}

/// A file fetched ahead, while any reader of it lives or any of its ranges waits.
struct OpenFile {
    /// DataFusion may open a second reader of a range (after reading its bloom filters).
    readers: Weak<WholeFile>,
    /// Held until every range has been opened once.
    pending: Option<Arc<WholeFile>>,
    parts: usize,
    opened: Vec<Option<(i64, i64)>>,
}

const READ_AHEAD_FILES: &str = "ReadAheadFiles";

impl fmt::Debug for ReadAheadFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(READ_AHEAD_FILES)
    }
}

impl ParquetFileReaderFactory for ReadAheadFiles {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let location = &file.object_meta.location;
        // Counted as DataFusion's reader counts them, for EXPLAIN ANALYZE.
        let bytes_scanned = ParquetFileMetrics::new(partition_index, location.as_ref(), metrics).bytes_scanned;
        let range = file.range.as_ref().map(|range| (range.start, range.end));
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.retain(|_, entry| entry.pending.is_some() || entry.readers.strong_count() > 0);
        if let Some(entry) = open.get_mut(location)
            && let Some(whole) = entry.pending.clone().or_else(|| entry.readers.upgrade())
        {
            if !entry.opened.contains(&range) {
                entry.opened.push(range);
                if entry.opened.len() >= entry.parts {
                    entry.pending = None;
                }
            }
            return Ok(Box::new(InMemoryFile { whole, bytes_scanned }));
        }
        if let Some(fetched) = self.ahead.take(location) {
            let whole: WholeFile = async move { fetched.bytes().await.map_err(Arc::new) }.boxed().shared();
            let whole = Arc::new(whole);
            let parts = self.parts.get(location).copied().unwrap_or(1);
            let entry = OpenFile {
                readers: Arc::downgrade(&whole),
                pending: (parts > 1).then(|| Arc::clone(&whole)),
                parts,
                opened: vec![range],
            };
            open.insert(location.clone(), entry);
            return Ok(Box::new(InMemoryFile { whole, bytes_scanned }));
        }
        drop(open);
        self.fallback
            .create_reader(partition_index, file, metadata_size_hint, metrics)
    }
}

/// A Parquet file read from its bytes in memory (once they have arrived).
struct InMemoryFile {
    whole: Arc<WholeFile>,
    bytes_scanned: Count,
}

impl InMemoryFile {
    async fn bytes(&self) -> datafusion::parquet::errors::Result<Bytes> {
        (*self.whole)
            .clone()
            .await
            .map_err(|err| ParquetError::External(Box::new(ArcError(err))))
    }
}

fn slice(whole: &Bytes, range: Range<u64>) -> datafusion::parquet::errors::Result<Bytes> {
    let (start, end) = (usize::try_from(range.start)?, usize::try_from(range.end)?);
    if start > end || end > whole.len() {
        return Err(ParquetError::EOF(format!(
            "bytes {start}..{end} of a file of {} bytes",
            whole.len()
        )));
    }
    Ok(whole.slice(start..end))
}

impl AsyncFileReader for InMemoryFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.bytes_scanned.add((range.end - range.start) as usize);
        async move { slice(&self.bytes().await?, range) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        let total: u64 = ranges.iter().map(|range| range.end - range.start).sum();
        self.bytes_scanned.add(total as usize);
        async move {
            let whole = self.bytes().await?;
            ranges.into_iter().map(|range| slice(&whole, range)).collect()
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let whole = self.bytes().await?;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .parse_and_finish(&whole)?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// A shared fetch error as an error of its own.
#[derive(Debug)]
struct ArcError(Arc<DataFusionError>);

impl fmt::Display for ArcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ArcError {}
