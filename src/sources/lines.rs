//! The `lines` format: every line of a text file is one row of one column, `line`.
//!
//! NDJSON exports are read this way so that a malformed line is quarantined by the SQL that
//! parses it instead of failing its file. A reader of its own rather than CSV with delimiters no
//! line holds: splitting on `\n` with memchr is several times cheaper than CSV's state machine,
//! which took 5 % of all CPU time of a 10M-event run. Files go through DataFusion's listing
//! table like the other formats (partitions, compression, projection), only the bytes-to-rows
//! step is here.
//!
//! A line ends at `\n`; a `\r` before it is dropped, and empty lines are skipped. Text that is
//! not UTF-8 fails the read, naming the file and the line.

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::catalog::Session;
use datafusion::common::GetExt;
use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::datasource::physical_plan::{
    FileOpenFuture, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSource,
};
use datafusion::datasource::projection::{ProjectionOpener, SplitProjection};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::projection::ProjectionExprs;
use datafusion::physical_plan::{ExecutionPlan, apply_expression_roots};
use futures::stream::{BoxStream, StreamExt};
pub use lifemap_syntax::lines::LINE_COLUMN;
use lifemap_syntax::lines::LineSplitter;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};

use super::read_ahead::{Limits, ReadAhead};

/// Bytes read from a local file per step (decompressed size for compressed files).
const READ_CHUNK: usize = 1 << 20;

/// The schema of every `lines` file: one text column (nullable, like every declared column).
pub fn line_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(LINE_COLUMN, DataType::Utf8, true)]))
}

/// [`FileFormat`] of `lines` files with one compression.
#[derive(Debug, Clone, Copy)]
pub struct LinesFormat {
    compression: FileCompressionType,
}

impl LinesFormat {
    pub fn new(compression: FileCompressionType) -> Self {
        Self { compression }
    }
}

#[async_trait]
impl FileFormat for LinesFormat {
    fn get_ext(&self) -> String {
        "txt".into()
    }

    fn get_ext_with_compression(&self, compression: &FileCompressionType) -> Result<String> {
        Ok(format!("{}{}", self.get_ext(), compression.get_ext()))
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        Some(self.compression)
    }

    async fn infer_schema(
        &self,
        _state: &dyn Session,
        _store: &Arc<dyn ObjectStore>,
        _objects: &[object_store::ObjectMeta],
    ) -> Result<SchemaRef> {
        Ok(line_schema())
    }

    async fn infer_stats(
        &self,
        _state: &dyn Session,
        _store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        _object: &object_store::ObjectMeta,
    ) -> Result<Statistics> {
        Ok(Statistics::new_unknown(&table_schema))
    }

    async fn create_physical_plan(&self, _state: &dyn Session, conf: FileScanConfig) -> Result<Arc<dyn ExecutionPlan>> {
        let conf = FileScanConfigBuilder::from(conf)
            .with_file_compression_type(self.compression)
            .build();
        Ok(DataSourceExec::from_data_source(conf))
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        Arc::new(LinesSource::new(table_schema))
    }
}

/// What a `lines` listing table is built from. DataFusion's plan serialization knows its own
/// formats only, so on a Ballista cluster a `lines` table travels as this description (see
/// [`LinesTable`] and `crate::cluster`) and is rebuilt by the scheduler.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinesListing {
    /// The source's location (folder, glob or URL) as the pipeline gives it.
    pub location: String,
    /// The suffix that selects the files (`.ndjson.gz`).
    pub extension: String,
    /// `GZIP`, `ZSTD`, ... or `UNCOMPRESSED`.
    pub compression: String,
    /// Hive partition columns and their types (`Utf8`, `Date32`).
    pub partitions: Vec<(String, String)>,
}

impl LinesListing {
    pub fn new(
        location: &str,
        extension: &str,
        compression: FileCompressionType,
        partitions: &[(String, DataType)],
    ) -> Self {
        Self {
            location: location.to_string(),
            extension: extension.to_string(),
            compression: compression.get_variant().to_string(),
            partitions: partitions
                .iter()
                .map(|(name, data_type)| (name.clone(), data_type.to_string()))
                .collect(),
        }
    }

    /// The listing table this describes.
    pub fn table(&self) -> Result<LinesTable> {
        let plan_error =
            |message: String| DataFusionError::Plan(format!("`lines` table at {}: {message}", self.location));
        let compression = self
            .compression
            .parse::<CompressionTypeVariant>()
            .map_err(|err| plan_error(err.to_string()))?;
        let partitions = self
            .partitions
            .iter()
            .map(|(name, data_type)| {
                data_type
                    .parse::<DataType>()
                    .map(|data_type| (name.clone(), data_type))
                    .map_err(|err| plan_error(err.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let url = crate::storage::listing_url(&self.location).map_err(|err| plan_error(err.to_string()))?;
        let options = ListingOptions::new(Arc::new(LinesFormat::new(compression.into())))
            .with_file_extension(self.extension.clone())
            .with_table_partition_cols(partitions);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(line_schema());
        Ok(LinesTable {
            table: ListingTable::try_new(config)?,
            kept: self.clone(),
        })
    }
}

/// A `lines` listing table that knows how it was described (see [`LinesListing`]).
pub type LinesTable = super::keeping::Keeping<ListingTable, LinesListing>;

/// A `lines` scan's source, for a scan rebuilt from its serialized form on a cluster executor.
pub fn file_source(table_schema: TableSchema) -> Arc<dyn FileSource> {
    Arc::new(LinesSource::new(table_schema))
}

/// Whether `source` reads `lines` files.
pub fn is_lines_source(source: &dyn FileSource) -> bool {
    source.downcast_ref::<LinesSource>().is_some()
}

/// [`FileSource`] of `lines` files: the scan's settings (batch size, projection).
#[derive(Clone)]
struct LinesSource {
    table_schema: TableSchema,
    batch_size: Option<usize>,
    metrics: ExecutionPlanMetricsSet,
    projection: SplitProjection,
    /// Made when the scan first runs on a remote store, shared by its partitions' openers.
    read_ahead: Arc<Mutex<Option<Arc<ReadAhead>>>>,
}

impl LinesSource {
    fn new(table_schema: TableSchema) -> Self {
        Self {
            projection: SplitProjection::unprojected(&table_schema),
            table_schema,
            batch_size: None,
            metrics: ExecutionPlanMetricsSet::new(),
            read_ahead: Arc::default(),
        }
    }

    /// The scan's [`ReadAhead`], or none for local files.
    fn read_ahead(&self, store: &Arc<dyn ObjectStore>, config: &FileScanConfig) -> Option<Arc<ReadAhead>> {
        if !ReadAhead::pays_for(&config.object_store_url) {
            return None;
        }
        let files: Vec<&PartitionedFile> = config.file_groups.iter().flat_map(|group| group.iter()).collect();
        let mut shared = self.read_ahead.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match shared.as_ref() {
            Some(existing) if existing.reads(&files) => Some(Arc::clone(existing)),
            _ => {
                let made = Arc::new(ReadAhead::new(Arc::clone(store), &files, Limits::default()));
                *shared = Some(Arc::clone(&made));
                Some(made)
            }
        }
    }
}

impl FileSource for LinesSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        _partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        let opener = Arc::new(LinesOpener {
            read_ahead: self.read_ahead(&object_store, base_config),
            store: object_store,
            compression: base_config.file_compression_type,
            batch_size: self.batch_size.unwrap_or(8192),
            keep_text: !self.projection.file_indices.is_empty(),
        });
        // Partition columns and the rest of the projection are applied on top, as for CSV.
        ProjectionOpener::try_new(self.projection.clone(), opener, self.table_schema.file_schema())
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        let mut source = self.clone();
        source.batch_size = Some(batch_size);
        Arc::new(source)
    }

    fn try_pushdown_projection(&self, projection: &ProjectionExprs) -> Result<Option<Arc<dyn FileSource>>> {
        let mut source = self.clone();
        let merged = self.projection.source.try_merge(projection)?;
        source.projection = SplitProjection::new(self.table_schema.file_schema(), &merged);
        Ok(Some(Arc::new(source)))
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        Some(&self.projection.source)
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "lines"
    }

    // A byte range could start inside a line; files are read whole, one per partition at a time.
    fn supports_repartitioning(&self) -> bool {
        false
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(self.projection.source.iter(), f)
    }
}

impl fmt::Debug for LinesSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinesSource")
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

struct LinesOpener {
    store: Arc<dyn ObjectStore>,
    read_ahead: Option<Arc<ReadAhead>>,
    compression: FileCompressionType,
    batch_size: usize,
    /// False when the query needs only the number of rows (`COUNT(*)`).
    keep_text: bool,
}

impl FileOpener for LinesOpener {
    fn open(&self, file: PartitionedFile) -> Result<FileOpenFuture> {
        let store = Arc::clone(&self.store);
        let compression = self.compression;
        let location = file.object_meta.location.clone();
        let batcher = LineBatcher::new(location.to_string(), self.batch_size, self.keep_text);
        let fetched = self.read_ahead.as_ref().and_then(|ahead| ahead.take(&location));
        Ok(Box::pin(async move {
            if let Some(fetched) = fetched {
                let whole = futures::stream::once(fetched.bytes()).boxed();
                return Ok(batches(compression.convert_stream(whole)?, batcher));
            }
            let result = store.get(&location).await?;
            let chunks: BoxStream<'static, Result<Bytes>> = match result.payload {
                // Local files are read synchronously, as DataFusion's own CSV and JSON readers do.
                GetResultPayload::File(file, _) => {
                    let reader = compression.convert_read(file)?;
                    futures::stream::iter(ReadChunks {
                        reader,
                        name: batcher.rows.file.clone(),
                        done: false,
                    })
                    .boxed()
                }
                GetResultPayload::Stream(stream) => {
                    let raw = stream.map(|chunk| chunk.map_err(DataFusionError::from)).boxed();
                    compression.convert_stream(raw)?
                }
            };
            Ok(batches(chunks, batcher))
        }))
    }
}

/// A blocking reader as a stream of chunks; read errors name the file.
struct ReadChunks {
    reader: Box<dyn Read + Send>,
    name: String,
    done: bool,
}

impl Iterator for ReadChunks {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buffer = vec![0; READ_CHUNK];
        let mut filled = 0;
        while filled < buffer.len() {
            match self.reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    let message = format!("{}: {e}", self.name);
                    return Some(Err(ArrowError::IoError(message, e).into()));
                }
            }
        }
        if filled == 0 {
            return None;
        }
        buffer.truncate(filled);
        Some(Ok(Bytes::from(buffer)))
    }
}

/// The record batches of a stream of (decompressed) chunks.
fn batches(chunks: BoxStream<'static, Result<Bytes>>, batcher: LineBatcher) -> BoxStream<'static, Result<RecordBatch>> {
    struct State {
        chunks: futures::stream::Fuse<BoxStream<'static, Result<Bytes>>>,
        batcher: LineBatcher,
        ready: VecDeque<RecordBatch>,
        finished: bool,
    }
    let state = State {
        chunks: chunks.fuse(),
        batcher,
        ready: VecDeque::new(),
        finished: false,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            if let Some(batch) = state.ready.pop_front() {
                return Some((Ok(batch), Some(state)));
            }
            if state.finished {
                return None;
            }
            let step = match state.chunks.next().await {
                Some(Ok(chunk)) => state.batcher.push(&chunk, &mut state.ready),
                Some(Err(e)) => Err(e),
                None => {
                    state.finished = true;
                    state.batcher.finish(&mut state.ready)
                }
            };
            if let Err(e) = step {
                return Some((Err(e), None));
            }
        }
    })
    .boxed()
}

/// Splits bytes into lines and lines into record batches of `batch_size` rows.
struct LineBatcher {
    splitter: LineSplitter,
    rows: RowBuilder,
}

/// The rows of the batch being built.
struct RowBuilder {
    file: String,
    batch_size: usize,
    keep_text: bool,
    values: Vec<u8>,
    offsets: Vec<i32>,
    /// Line number in the file of each row of the batch, for error messages.
    line_numbers: Vec<u64>,
    rows: usize,
}

impl LineBatcher {
    fn new(file: String, batch_size: usize, keep_text: bool) -> Self {
        Self {
            splitter: LineSplitter::new(),
            rows: RowBuilder {
                file,
                batch_size: batch_size.max(1),
                keep_text,
                values: Vec::new(),
                offsets: vec![0],
                line_numbers: Vec::new(),
                rows: 0,
            },
        }
    }

    fn push(&mut self, chunk: &[u8], ready: &mut VecDeque<RecordBatch>) -> Result<()> {
        let Self { splitter, rows } = self;
        splitter.push(chunk, |number, line| rows.add(number, line, ready))
    }

    fn finish(&mut self, ready: &mut VecDeque<RecordBatch>) -> Result<()> {
        let Self { splitter, rows } = self;
        splitter.finish(|number, line| rows.add(number, line, ready))?;
        rows.flush(ready)
    }
}

impl RowBuilder {
    fn add(&mut self, number: u64, line: &[u8], ready: &mut VecDeque<RecordBatch>) -> Result<()> {
        if self.keep_text {
            if self.values.len() + line.len() > i32::MAX as usize {
                self.flush(ready)?;
                if line.len() > i32::MAX as usize {
                    return Err(self.error(format!("line {number} is longer than 2 GiB")));
                }
            }
            self.values.extend_from_slice(line);
            // In range: checked above.
            self.offsets.push(self.values.len() as i32);
            self.line_numbers.push(number);
        }
        self.rows += 1;
        if self.rows == self.batch_size {
            self.flush(ready)?;
        }
        Ok(())
    }

    fn flush(&mut self, ready: &mut VecDeque<RecordBatch>) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        if !self.keep_text {
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            ready.push_back(RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &options,
            )?);
            return Ok(());
        }
        if let Err(e) = std::str::from_utf8(&self.values) {
            let bad_row = self.offsets[1..].partition_point(|&end| (end as usize) <= e.valid_up_to());
            let line = self.line_numbers.get(bad_row).copied().unwrap_or_default();
            return Err(self.error(format!("invalid UTF-8 data for line {line}")));
        }
        let capacity = self.values.len() + self.values.len() / 8;
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(capacity));
        let offsets = std::mem::replace(&mut self.offsets, Vec::with_capacity(self.batch_size + 1));
        self.offsets.push(0);
        self.line_numbers.clear();
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let lines: ArrayRef = Arc::new(StringArray::try_new(offsets, Buffer::from_vec(values), None)?);
        ready.push_back(RecordBatch::try_new(line_schema(), vec![lines])?);
        Ok(())
    }

    fn error(&self, message: String) -> DataFusionError {
        ArrowError::ParseError(format!("{}: {message}", self.file)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]], batch_size: usize) -> Result<Vec<Vec<String>>> {
        let mut batcher = LineBatcher::new("f".into(), batch_size, true);
        let mut ready = VecDeque::new();
        for chunk in chunks {
            batcher.push(chunk, &mut ready)?;
        }
        batcher.finish(&mut ready)?;
        Ok(ready
            .iter()
            .map(|batch| {
                let column = batch.column(0).as_any().downcast_ref::<StringArray>().expect("text");
                column.iter().map(|v| v.unwrap_or_default().to_string()).collect()
            })
            .collect())
    }

    #[test]
    fn lines_split_across_chunks_and_batches() {
        let batches = lines_of(&[b"{\"a\":1}\r\n{\"b\"", b":2}\n\n", b"x", b"y\nlast"], 2).expect("read");
        assert_eq!(batches, [vec!["{\"a\":1}", "{\"b\":2}"], vec!["xy", "last"]]);
    }

    #[test]
    fn invalid_utf8_names_file_and_line() {
        let error = lines_of(&[b"ok\n\nstill ok\nAndr\xe9\n"], 10).expect_err("not UTF-8");
        assert!(
            error.to_string().contains("f: invalid UTF-8 data for line 4"),
            "{error}"
        );
    }

    #[test]
    fn counting_rows_keeps_no_text() {
        let mut batcher = LineBatcher::new("f".into(), 3, false);
        let mut ready = VecDeque::new();
        batcher.push(b"a\nb\nc\nd", &mut ready).expect("push");
        batcher.finish(&mut ready).expect("finish");
        let rows: Vec<usize> = ready.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(rows, [3, 1]);
        assert_eq!(ready[0].num_columns(), 0);
    }
}
