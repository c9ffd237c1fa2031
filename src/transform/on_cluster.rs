//! Materialised steps on a Ballista cluster.
//!
//! A cluster cannot read a client's in-memory table (plans travel as protobuf, and an in-memory
//! table's rows do not), so a step held in memory or on local disk in a local run is written as
//! Parquet into the run's staging folder of the output storage, and later steps read it back from
//! there like any other Parquet table. The staging folder is deleted when the
//! run publishes or fails, and by the next run of the `ds` when a run was killed (see `marts`).
//!
//! The executors write those files themselves, one per partition of the step's plan
//! ([`HoldWrite`] in the plan the client sends, [`HoldWriterExec`] in the tasks), so a step's rows
//! never pass through the client. Ballista 55's own `write_parquet` is not used: over a shuffled
//! input it wrote only the first partition's rows (half the orders of the sample went missing,
//! silently).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, ReplaceChildrenOptions};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use object_store::buffered::BufWriter;

use crate::storage::Location;

/// Where step `name` is held: a folder of its own below the run's steps folder.
fn folder(steps: &Location, name: &str) -> Location {
    steps.child(name)
}

/// Run `frame` on the cluster, its rows written as Parquet below `steps` by the executors; the
/// table reading them back, and the number of rows.
pub async fn hold(frame: DataFrame, steps: &Location, name: &str) -> Result<(Arc<dyn TableProvider>, u64)> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let folder = folder(steps, name);
    let (state, plan) = frame.into_parts();
    let write = LogicalPlan::Extension(Extension {
        node: Arc::new(HoldWrite::new(plan, folder.folder_url())),
    });
    let mut rows = 0u64;
    for batch in DataFrame::new(state, write).collect().await? {
        let counts = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| DataFusionError::Internal("a held step's row counts are not UInt64".into()))?;
        rows += counts.iter().flatten().sum::<u64>();
    }
    Ok((parquet_table(&folder, schema)?, rows))
}

/// Write `batch` (computed on the client, e.g. a clustering's output) below `steps` as step
/// `name`, for the cluster to read.
pub async fn put(batch: &RecordBatch, steps: &Location, name: &str) -> Result<Arc<dyn TableProvider>> {
    let folder = folder(steps, name);
    let mut body = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut body, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    crate::storage::put(&folder, "part-0.parquet", body)
        .await
        .map_err(|err| DataFusionError::External(Box::new(err)))?;
    parquet_table(&folder, batch.schema())
}

fn parquet_table(folder: &Location, schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(folder.folder_url())?;
    Ok(Arc::new(super::on_disk::parquet_listing(url, schema)?))
}

/// The one column of what [`HoldWrite`] returns: rows written, one row per partition.
fn counts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("rows", DataType::UInt64, false)]))
}

/// In the plan a client sends: write the rows of `input` as Parquet files into `folder` (a URL).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HoldWrite {
    input: LogicalPlan,
    folder: String,
    schema: DFSchemaRef,
}

impl HoldWrite {
    pub fn new(input: LogicalPlan, folder: String) -> Self {
        let schema = DFSchema::try_from(counts_schema().as_ref().clone()).map(Arc::new);
        Self {
            input,
            folder,
            // A one-column schema without qualifiers always converts.
            schema: schema.unwrap_or_else(|_| Arc::new(DFSchema::empty())),
        }
    }

    pub fn folder(&self) -> &str {
        &self.folder
    }
}

// The schema follows from the rest (it is always the counts').
impl PartialOrd for HoldWrite {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.input, &self.folder).partial_cmp(&(&other.input, &other.folder))
    }
}

impl UserDefinedLogicalNodeCore for HoldWrite {
    fn name(&self) -> &str {
        "HoldWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "HoldWrite: folder={}", self.folder)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        match (inputs.pop(), inputs.is_empty()) {
            (Some(input), true) => Ok(Self::new(input, self.folder.clone())),
            _ => Err(DataFusionError::Internal("HoldWrite takes exactly one input".into())),
        }
    }
}

/// In an executor's task: write each partition of `input` to `<folder>/part-<p>.parquet`, `p`
/// its number in the stage, and return how many rows it wrote. A retried task writes the same
/// files again.
#[derive(Debug)]
pub struct HoldWriterExec {
    input: Arc<dyn ExecutionPlan>,
    folder: String,
    /// The stage's numbers of the task's partitions (a task runs a slice of the stage, numbered
    /// from 0), set by the executor before it runs the task.
    stage_partitions: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl HoldWriterExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, folder: String) -> Self {
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(counts_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            folder,
            stage_partitions: None,
            properties: Arc::new(properties),
        }
    }

    pub fn folder(&self) -> &str {
        &self.folder
    }

    pub fn with_stage_partitions(&self, partitions: Vec<usize>) -> Self {
        Self {
            input: Arc::clone(&self.input),
            folder: self.folder.clone(),
            stage_partitions: Some(partitions),
            properties: Arc::clone(&self.properties),
        }
    }
}

impl DisplayAs for HoldWriterExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "HoldWriterExec: folder={}", self.folder)
    }
}

impl ExecutionPlan for HoldWriterExec {
    fn name(&self) -> &str {
        "HoldWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    // Each partition becomes a file: more partitions would only mean more, smaller files.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        #[expect(deprecated)]
        self.with_new_children(children)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => {
                let mut writer = Self::new(input, self.folder.clone());
                writer.stage_partitions = self.stage_partitions.clone();
                Ok(Arc::new(writer))
            }
            _ => Err(DataFusionError::Internal(
                "HoldWriterExec takes exactly one input".into(),
            )),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        // Without the stage's numbering, two tasks would write the same file names and lose rows.
        let Some(&file_number) = self
            .stage_partitions
            .as_ref()
            .and_then(|numbers| numbers.get(partition))
        else {
            return Err(DataFusionError::Internal(format!(
                "HoldWriterExec does not know which partition of its stage its partition {partition} is"
            )));
        };
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let url = ListingTableUrl::parse(&self.folder)?;
        let store = context.runtime_env().object_store(url.object_store())?;
        let path = url.prefix().clone().join(format!("part-{file_number}.parquet"));
        let written = async move {
            let schema = input.schema();
            let mut input = input;
            // The first batch decides which columns get a dictionary, as for steps held on local disk.
            let first = input.next().await.transpose()?;
            let properties = super::on_disk::held_file_properties(&schema, first.as_ref());
            let mut writer = AsyncArrowWriter::try_new(BufWriter::new(store, path), schema, Some(properties))?;
            let mut rows = 0u64;
            let mut next = first;
            while let Some(batch) = next {
                rows += batch.num_rows() as u64;
                writer.write(&batch).await?;
                next = input.next().await.transpose()?;
            }
            writer.close().await?;
            Ok(RecordBatch::try_new(
                counts_schema(),
                vec![Arc::new(UInt64Array::from(vec![rows]))],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            counts_schema(),
            futures::stream::once(written),
        )))
    }
}
