//! Incremental steps, `by_partition`: a step whose rows of a source partition depend on that
//! partition's files alone is computed once per partition and kept under
//! `<output>/_state/steps/<step>/` (see [`crate::state::steps`]). A run lists the source, picks
//! the partitions it needs (the step's `partitions` predicate), computes those that are new, whose
//! export objects changed, or whose kept files are damaged — in one query over just their files —
//! and reads every other partition from the state. The step's table is then the kept rows of the
//! partitions the run needs, the same rows a computation over all of them gives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{Expr, SessionContext, ident, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;

use super::planning::{StepOutcome, plan_step, step_error};
use crate::config::{Incremental, Source, Step};
use crate::context::RunContext;
use crate::error::Error;
use crate::marts::DataFile;
use crate::sources::files::{ExportObject, list_files};
use crate::state::inventory::partition_of;
use crate::state::steps::{self as kept_state, KeptPartition, Loaded, StepState};
use crate::storage::Location;

/// A partition of the source, as its folder names it and in the form its typed values print.
#[derive(Debug, Clone)]
struct Partition {
    /// `col=value/...`, as typed values print (the key of the state).
    key: String,
    /// One value per partition column, as text.
    values: Vec<String>,
    objects: Vec<ExportObject>,
}

/// Compute (or read back) an incremental step and register its table.
pub(super) async fn run(run: &RunContext<'_>, step: &Step, spec: &Incremental) -> Result<StepOutcome, Error> {
    let started = Instant::now();
    let ctx = &run.session;
    let fail = |message: String| Error::Step {
        step: step.name.clone(),
        origin: step.origin.clone(),
        source: DataFusionError::Plan(message),
        location: None,
    };
    let source = run
        .pipeline
        .source(&spec.source)
        .ok_or_else(|| fail(format!("no source `{}`", spec.source)))?;
    let schema: SchemaRef = Arc::new(plan_step(ctx, step).await?.schema().as_arrow().clone());
    for (column, data_type) in &source.partitions {
        match schema.field_with_name(column) {
            Ok(field) if field.data_type() == data_type => {}
            _ => {
                return Err(fail(format!(
                    "an incremental step by partition of `{}` keeps its partition column `{column}` ({data_type}) as it is",
                    source.name
                )));
            }
        }
    }
    let listed = listed_partitions(ctx, source).await?;
    let needed = needed_partitions(source, &listed, spec.partitions.as_deref())
        .await
        .map_err(|err| step_error(step, err))?;
    let folder = run.layout.state().child("steps").child(&step.name);
    let (mut state, loaded) = match kept_state::load(&folder, &step.name, spec).await {
        Loaded::Found(state) => (state, "found".to_string()),
        Loaded::Missing => (StepState::empty(&step.name, spec), "none yet".to_string()),
        Loaded::Discarded(why) => {
            tracing::warn!(step = %step.name, reason = %why, "the kept state of this step cannot be used: its partitions are computed again");
            (StepState::empty(&step.name, spec), format!("rebuilt: {why}"))
        }
    };
    let present = present_files(&folder).await?;
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut to_compute = Vec::new();
    for partition in listed.iter().filter(|p| needed.contains(&p.key)) {
        let reason = if run.full_refresh {
            Some("full refresh")
        } else if state.not_kept.contains_key(&partition.key) {
            Some("not kept: holds forgotten persons")
        } else {
            kept_state::stale_reason(state.partitions.get(&partition.key), &partition.objects, &present)
        };
        if let Some(reason) = reason {
            *reasons.entry(reason).or_default() += 1;
            to_compute.push(partition.clone());
        }
    }
    if reasons
        .keys()
        .any(|r| !matches!(*r, "new" | "full refresh") && !r.starts_with("not kept"))
    {
        tracing::warn!(step = %step.name, ?reasons, "kept partitions are computed again");
    }
    let computed = if to_compute.is_empty() {
        BTreeMap::new()
    } else {
        compute(run, step, source, &to_compute, &folder, &schema).await?
    };
    let changed = commit(run, &mut state, &listed, &to_compute, computed, &folder).await?;
    remove_unlisted_files(&folder, &state, &present).await;
    let rows: u64 = needed
        .iter()
        .filter_map(|key| state.partitions.get(key))
        .map(KeptPartition::rows)
        .sum();
    let table = kept_table(ctx, source, &folder, &schema, &needed, rows)
        .await
        .map_err(|err| step_error(step, err))?;
    ctx.register_table(step.name.as_str(), table)
        .map_err(|err| step_error(step, err))?;
    tracing::info!(step = %step.name, partitions = needed.len(), computed = to_compute.len(), rows, state_changed = changed,
        elapsed_ms = started.elapsed().as_millis() as u64, "incremental step ready");
    Ok(StepOutcome {
        name: step.name.clone(),
        materialized: true,
        rows: Some(rows),
        bytes_on_disk: None,
        duration_ms: started.elapsed().as_millis() as u64,
        details: Some(serde_json::json!({
            "incremental": {
                "kind": "by_partition",
                "source": source.name,
                "partitions": needed.len(),
                "computed": to_compute.len(),
                "kept": needed.len() - to_compute.len(),
                "why_computed": reasons,
                "state": loaded,
            }
        })),
        schema: Some(schema),
    })
}

/// The source's partitions as listed now, each with its objects.
async fn listed_partitions(ctx: &SessionContext, source: &Source) -> Result<Vec<Partition>, Error> {
    let mut by_folder: BTreeMap<String, Vec<ExportObject>> = BTreeMap::new();
    for meta in list_files(ctx, source, &source.location).await? {
        let object = ExportObject::of(&meta);
        if let Some(folder) = partition_of(source, &object.path) {
            by_folder.entry(folder).or_default().push(object);
        }
    }
    let mut partitions = Vec::with_capacity(by_folder.len());
    for (folder, objects) in by_folder {
        let segments: BTreeMap<&str, &str> = folder.split('/').filter_map(|s| s.split_once('=')).collect();
        let values: Option<Vec<String>> = source
            .partitions
            .iter()
            .map(|(column, data_type)| {
                let text = segments.get(column.as_str())?;
                canonical(text, data_type)
            })
            .collect();
        // Folders the source's listing table would not read either (a value of the wrong type).
        let Some(values) = values else { continue };
        partitions.push(Partition {
            key: key_of(&source.partitions, &values),
            values,
            objects,
        });
    }
    // Two folders spelling one value (`n=01`, `n=1`) are one partition.
    let mut merged: Vec<Partition> = Vec::with_capacity(partitions.len());
    partitions.sort_by(|a, b| a.key.cmp(&b.key));
    for partition in partitions {
        match merged.last_mut() {
            Some(last) if last.key == partition.key => last.objects.extend(partition.objects),
            _ => merged.push(partition),
        }
    }
    Ok(merged)
}

/// A partition value as its type prints it (`2026-10-31` for a date), `None` when it is not one.
fn canonical(text: &str, data_type: &DataType) -> Option<String> {
    let array = StringArray::from(vec![text]);
    let typed = cast(&array, data_type).ok()?;
    if typed.is_null(0) {
        return None;
    }
    let printed = cast(&typed, &DataType::Utf8).ok()?;
    Some(printed.as_string::<i32>().value(0).to_string())
}

fn key_of(columns: &[crate::config::Column], values: &[String]) -> String {
    columns
        .iter()
        .zip(values)
        .map(|((column, _), value)| format!("{column}={value}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// The keys of the partitions this run needs: those `predicate` (SQL over the partition columns)
/// keeps, or every one.
async fn needed_partitions(
    source: &Source,
    listed: &[Partition],
    predicate: Option<&str>,
) -> datafusion::error::Result<BTreeSet<String>> {
    let Some(predicate) = predicate else {
        return Ok(listed.iter().map(|p| p.key.clone()).collect());
    };
    let mut fields = vec![Field::new("__key", DataType::Utf8, false)];
    let mut columns: Vec<Arc<dyn Array>> = vec![Arc::new(StringArray::from_iter_values(
        listed.iter().map(|p| p.key.as_str()),
    ))];
    for (index, (column, data_type)) in source.partitions.iter().enumerate() {
        let text = StringArray::from_iter_values(listed.iter().map(|p| p.values[index].as_str()));
        fields.push(Field::new(column, data_type.clone(), true));
        columns.push(cast(&text, data_type)?);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "partitions",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
    )?;
    let batches = ctx
        .sql(&format!("SELECT __key FROM partitions WHERE {predicate}"))
        .await?
        .collect()
        .await?;
    Ok(batches
        .iter()
        .flat_map(|batch| {
            let keys = batch.column(0).as_string::<i32>();
            (0..keys.len()).map(|i| keys.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect())
}

/// The files under the step's folder and their sizes, by path relative to it.
async fn present_files(folder: &Location) -> Result<BTreeMap<String, u64>, Error> {
    let prefix = format!("{}/", folder.path);
    let metas: Vec<object_store::ObjectMeta> =
        folder
            .store
            .list(Some(&folder.path))
            .try_collect()
            .await
            .map_err(|source| Error::Storage {
                context: format!("listing {}", folder.folder_url()),
                source,
            })?;
    Ok(metas
        .into_iter()
        .filter_map(|meta| {
            let path = meta.location.to_string();
            let relative = path.strip_prefix(&prefix)?.to_string();
            relative.ends_with(".parquet").then_some((relative, meta.size))
        })
        .collect())
}

/// `partition column = value` for any of `partitions`.
fn partitions_filter(source: &Source, partitions: &[&[String]]) -> datafusion::error::Result<Expr> {
    let literal =
        |value: &String, data_type: &DataType| ScalarValue::try_from_string(value.clone(), data_type).map(lit);
    if let [(column, data_type)] = source.partitions.as_slice() {
        let values = partitions
            .iter()
            .map(|values| literal(&values[0], data_type))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        return Ok(ident(column).in_list(values, false));
    }
    let mut any: Option<Expr> = None;
    for values in partitions {
        let mut all: Option<Expr> = None;
        for ((column, data_type), value) in source.partitions.iter().zip(values.iter()) {
            let equal = ident(column).eq(literal(value, data_type)?);
            all = Some(match all {
                Some(all) => all.and(equal),
                None => equal,
            });
        }
        if let Some(all) = all {
            any = Some(match any {
                Some(any) => any.or(all),
                None => all,
            });
        }
    }
    Ok(any.unwrap_or(lit(false)))
}

/// Run the step over the files of `partitions` alone and write its rows, one folder per
/// partition. Returns the files written by partition key.
async fn compute(
    run: &RunContext<'_>,
    step: &Step,
    source: &Source,
    partitions: &[Partition],
    folder: &Location,
    schema: &SchemaRef,
) -> Result<BTreeMap<String, Vec<DataFile>>, Error> {
    let ctx = &run.session;
    let to_step = |err| step_error(step, err);
    let values: Vec<&[String]> = partitions.iter().map(|p| p.values.as_slice()).collect();
    // The step names its source: for its planning, that name is the source's rows of these
    // partitions (the plan keeps the table it was planned on).
    let original = ctx.table_provider(source.name.as_str()).await.map_err(to_step)?;
    let restricted = ctx
        .read_table(Arc::clone(&original))
        .and_then(|frame| frame.filter(partitions_filter(source, &values)?))
        .map_err(to_step)?
        .into_view();
    ctx.deregister_table(source.name.as_str()).map_err(to_step)?;
    ctx.register_table(source.name.as_str(), restricted).map_err(to_step)?;
    let planned = plan_step(ctx, step).await;
    ctx.deregister_table(source.name.as_str()).map_err(to_step)?;
    ctx.register_table(source.name.as_str(), original).map_err(to_step)?;
    let streams = planned?.execute_stream_partitioned().await.map_err(to_step)?;
    let writer = Arc::new(PartitionWriter {
        folder: folder.clone(),
        run_id: run.run_id.clone(),
        schema: Arc::clone(schema),
        partition_columns: source
            .partitions
            .iter()
            .filter_map(|(column, _)| schema.index_of(column).ok())
            .collect(),
        step: step.clone(),
    });
    // A task per stream: the step's work happens as its stream is polled, so the streams of one
    // task would share one core.
    let mut tasks = tokio::task::JoinSet::new();
    for (stream_index, stream) in streams.into_iter().enumerate() {
        let writer = Arc::clone(&writer);
        tasks.spawn(async move { writer.write(stream_index, stream).await });
    }
    let mut written = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let files = joined.map_err(|err| step_error(step, DataFusionError::External(Box::new(err))))??;
        written.extend(files);
    }
    let wanted: BTreeSet<&str> = partitions.iter().map(|p| p.key.as_str()).collect();
    let mut by_partition: BTreeMap<String, Vec<DataFile>> =
        wanted.iter().map(|key| (key.to_string(), Vec::new())).collect();
    for (key, file) in written {
        match by_partition.get_mut(&key) {
            Some(files) => files.push(file),
            None => {
                return Err(step_error(
                    step,
                    DataFusionError::Plan(format!(
                        "it gave rows of partition {key} from the files of other partitions: a `by_partition` step keeps each row's partition columns as its source gave them"
                    )),
                ));
            }
        }
    }
    Ok(by_partition)
}

/// Writes the rows of one output stream of a step to one file per partition run of rows.
struct PartitionWriter {
    folder: Location,
    run_id: String,
    /// The step's rows, partition columns included.
    schema: SchemaRef,
    /// Their positions in `schema`; the files leave them out (their folder says them).
    partition_columns: Vec<usize>,
    step: Step,
}

struct OpenFile {
    key: String,
    writer: AsyncArrowWriter<BufWriter>,
    name: String,
    rows: u64,
}

impl PartitionWriter {
    fn file_columns(&self) -> Vec<usize> {
        (0..self.schema.fields().len())
            .filter(|i| !self.partition_columns.contains(i))
            .collect()
    }

    async fn write(
        &self,
        stream_index: usize,
        mut stream: SendableRecordBatchStream,
    ) -> Result<Vec<(String, DataFile)>, Error> {
        let to_step = |err| step_error(&self.step, err);
        let file_columns = self.file_columns();
        let file_schema = Arc::new(self.schema.project(&file_columns).map_err(|e| to_step(e.into()))?);
        let mut written = Vec::new();
        let mut open: Option<OpenFile> = None;
        let mut files = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(to_step)?;
            for (key, rows) in self.runs_by_partition(&batch).map_err(to_step)? {
                if open.as_ref().is_some_and(|file| file.key != key)
                    && let Some(file) = open.take()
                {
                    written.push(self.finish(file).await?);
                }
                let file = match &mut open {
                    Some(file) => file,
                    None => {
                        let name = format!("{key}/part-{}-{stream_index}-{files:05}.parquet", self.run_id);
                        files += 1;
                        open.insert(self.open(key, name, &file_schema)?)
                    }
                };
                let slice = batch.slice(rows.0, rows.1);
                let projected = slice.project(&file_columns).map_err(|e| to_step(e.into()))?;
                file.writer.write(&projected).await.map_err(|e| to_step(e.into()))?;
                file.rows += rows.1 as u64;
            }
        }
        if let Some(file) = open {
            written.push(self.finish(file).await?);
        }
        Ok(written)
    }

    /// The batch's rows as runs of one partition each: (key, (offset, length)).
    fn runs_by_partition(&self, batch: &RecordBatch) -> datafusion::error::Result<Vec<(String, (usize, usize))>> {
        let columns = self
            .partition_columns
            .iter()
            .map(|&i| cast(batch.column(i), &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<&StringArray> = columns.iter().map(|c| c.as_string::<i32>()).collect();
        let value = |row: usize| -> datafusion::error::Result<Vec<&str>> {
            texts
                .iter()
                .map(|text| {
                    if text.is_null(row) {
                        Err(DataFusionError::Plan("a row has no partition value".into()))
                    } else {
                        Ok(text.value(row))
                    }
                })
                .collect()
        };
        let names: Vec<(String, DataType)> = self
            .partition_columns
            .iter()
            .map(|&i| (self.schema.field(i).name().clone(), DataType::Utf8))
            .collect();
        let mut runs = Vec::new();
        let mut start = 0;
        while start < batch.num_rows() {
            let current = value(start)?;
            let mut end = start + 1;
            while end < batch.num_rows() && value(end)? == current {
                end += 1;
            }
            let values: Vec<String> = current.iter().map(|v| v.to_string()).collect();
            runs.push((key_of(&names, &values), (start, end - start)));
            start = end;
        }
        Ok(runs)
    }

    fn open(&self, key: String, name: String, schema: &SchemaRef) -> Result<OpenFile, Error> {
        let properties = WriterProperties::builder()
            // Read back by the steps after this one in every run: fast to decode matters most.
            .set_compression(Compression::LZ4_RAW)
            .set_created_by(format!("lifemap {}", env!("CARGO_PKG_VERSION")))
            .build();
        let path: ObjectPath = format!("{}/{name}", self.folder.path).into();
        let sink = BufWriter::new(Arc::clone(&self.folder.store), path);
        let writer = AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(properties))
            .map_err(|e| step_error(&self.step, e.into()))?;
        Ok(OpenFile {
            key,
            writer,
            name,
            rows: 0,
        })
    }

    async fn finish(&self, file: OpenFile) -> Result<(String, DataFile), Error> {
        let metadata = file
            .writer
            .close()
            .await
            .map_err(|e| step_error(&self.step, e.into()))?;
        let path: ObjectPath = format!("{}/{}", self.folder.path, file.name).into();
        let meta = self.folder.store.head(&path).await.map_err(|source| Error::Storage {
            context: format!("checking {}{}", self.folder.folder_url(), file.name),
            source,
        })?;
        debug_assert_eq!(metadata.file_metadata().num_rows() as u64, file.rows);
        Ok((
            file.key,
            DataFile {
                name: file.name,
                rows: file.rows,
                bytes: meta.size,
            },
        ))
    }
}

/// Fold the computed partitions into the state, forget partitions no longer listed, and write
/// `state.json` when anything changed. Returns whether it did.
async fn commit(
    run: &RunContext<'_>,
    state: &mut StepState,
    listed: &[Partition],
    computed_from: &[Partition],
    computed: BTreeMap<String, Vec<DataFile>>,
    folder: &Location,
) -> Result<bool, Error> {
    let listed_keys: BTreeSet<&str> = listed.iter().map(|p| p.key.as_str()).collect();
    let before = state.partitions.len();
    state.partitions.retain(|key, _| listed_keys.contains(key.as_str()));
    state.not_kept.retain(|key, _| listed_keys.contains(key.as_str()));
    let mut changed = before != state.partitions.len() || !computed.is_empty();
    for partition in computed_from {
        if let Some(files) = computed.get(&partition.key) {
            state.not_kept.remove(&partition.key);
            state.partitions.insert(
                partition.key.clone(),
                KeptPartition {
                    objects: partition.objects.clone(),
                    files: files.clone(),
                    run_id: run.run_id.clone(),
                },
            );
        }
    }
    // A state found under another definition starts empty: writing it replaces the old one.
    changed |= state.partitions.is_empty();
    if changed {
        kept_state::save(folder, state).await?;
    }
    Ok(changed)
}

/// Remove the files `state.json` does not list: partitions computed again, forgotten, or left by
/// a killed run. A file that cannot be removed is only a warning: no reader reads it.
async fn remove_unlisted_files(folder: &Location, state: &StepState, present: &BTreeMap<String, u64>) {
    let kept = state.files();
    for name in present.keys().filter(|name| !kept.contains(name.as_str())) {
        let path: ObjectPath = format!("{}/{name}", folder.path).into();
        if let Err(err) = folder.store.delete(&path).await {
            tracing::warn!(file = %name, error = %err, "could not remove a file the step's state no longer lists");
        }
    }
}

/// The step's table: the kept rows of `needed`, read from the state's files with the partition
/// columns from their folders, in the step's column order.
async fn kept_table(
    ctx: &SessionContext,
    source: &Source,
    folder: &Location,
    schema: &SchemaRef,
    needed: &BTreeSet<String>,
    rows: u64,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    if rows == 0 {
        return Ok(Arc::new(datafusion::datasource::empty::EmptyTable::new(Arc::clone(
            schema,
        ))));
    }
    let partition_names: Vec<&str> = source.partitions.iter().map(|(c, _)| c.as_str()).collect();
    let file_fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !partition_names.contains(&f.name().as_str()))
        .map(|f| f.as_ref().clone())
        .collect();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_force_view_types(false)))
        .with_file_extension(".parquet")
        .with_table_partition_cols(source.partitions.clone());
    let config = ListingTableConfig::new(ListingTableUrl::parse(folder.folder_url())?)
        .with_listing_options(options)
        .with_schema(Arc::new(Schema::new(file_fields)));
    let table = ListingTable::try_new(config)?;
    let values: Vec<Vec<String>> = needed
        .iter()
        .map(|key| {
            let segments: BTreeMap<&str, &str> = key.split('/').filter_map(|s| s.split_once('=')).collect();
            partition_names
                .iter()
                .map(|name| segments.get(name).copied().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    let slices: Vec<&[String]> = values.iter().map(Vec::as_slice).collect();
    let columns: Vec<Expr> = schema.fields().iter().map(|f| ident(f.name())).collect();
    let frame = ctx
        .read_table(Arc::new(table))?
        .filter(partitions_filter(source, &slices)?)?
        .select(columns)?;
    Ok(frame.into_view())
}

/// The partitions the step's `forget` query names, as state keys. Runs once the tables it reads
/// are computed; the partitions are let go by [`stop_keeping`] after the last step.
pub async fn partitions_to_forget(run: &RunContext<'_>, step: &Step, spec: &Incremental) -> Result<Vec<String>, Error> {
    let Some(sql) = &spec.forget else {
        return Ok(Vec::new());
    };
    let source = run.pipeline.source(&spec.source);
    let columns: Vec<crate::config::Column> = source.map(|s| s.partitions.clone()).unwrap_or_default();
    let to_step = |err| step_error(step, err);
    let batches = run
        .session
        .sql(sql)
        .await
        .map_err(to_step)?
        .collect()
        .await
        .map_err(to_step)?;
    let mut keys = BTreeSet::new();
    for batch in batches {
        let texts = columns
            .iter()
            .map(|(column, _)| {
                let array = batch
                    .column_by_name(column)
                    .ok_or_else(|| DataFusionError::Plan(format!("the `forget` query gives no column `{column}`")))?;
                Ok(cast(array, &DataType::Utf8)?)
            })
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(to_step)?;
        for row in 0..batch.num_rows() {
            let values: Vec<String> = texts
                .iter()
                .map(|text| text.as_string::<i32>().value(row).to_string())
                .collect();
            keys.insert(key_of(&columns, &values));
        }
    }
    Ok(keys.into_iter().collect())
}

/// Let go of the kept rows of `keys` (see [`partitions_to_forget`]): the state stops listing
/// them, then their files are removed.
pub async fn stop_keeping(run: &RunContext<'_>, step: &Step, spec: &Incremental, keys: &[String]) -> Result<(), Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let folder = run.layout.state().child("steps").child(&step.name);
    let Loaded::Found(mut state) = kept_state::load(&folder, &step.name, spec).await else {
        return Ok(());
    };
    let files = kept_state::stop_keeping(&mut state, keys, "holds rows of forgotten persons");
    kept_state::save(&folder, &state).await?;
    for name in files {
        let path: ObjectPath = format!("{}/{name}", folder.path).into();
        folder.store.delete(&path).await.map_err(|source| Error::Storage {
            context: format!(
                "removing {}{name}, which holds rows of forgotten persons",
                folder.folder_url()
            ),
            source,
        })?;
    }
    tracing::info!(step = %step.name, partitions = keys.len(), "partitions holding rows of forgotten persons are not kept");
    Ok(())
}
