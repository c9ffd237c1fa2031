//! Running a pipeline's SQL on an Apache DataFusion Ballista cluster.
//!
//! `lifemap scheduler` and `lifemap executor` are Ballista's scheduler and executor built from the
//! same session setup as a local run: lifemap's SQL functions, its `lines` format and S3 access.
//! A run with `--engine df://host:50050` plans each step on the client and sends it to the
//! scheduler; everything that is not SQL (k-means, marts' atomic publish, the report, delivery)
//! stays on the client.
//!
//! What Ballista cannot carry, and how lifemap works around it (all of it here or named here):
//! - Plans travel as protobuf, and DataFusion serializes only its own file formats: a `lines`
//!   table travels as its description ([`LinesListing`], rebuilt by the scheduler) and its scan as
//!   the generic file-scan message plus its compression ([`LifemapPhysicalCodec`]).
//! - In-memory tables cannot be sent: a materialised step is written as Parquet into the run's
//!   staging folder of the output storage by the executors (`transform::on_cluster`, planned by
//!   `LifemapQueryPlanner`) and read back from there; `cache()` is not used on a cluster
//!   (`quality`); `generate_series` becomes a `VALUES` list ([`register_series_functions`]); an
//!   allowed-empty source is an `EmptyTable` (`sources`).
//! - Ballista 55 and DataFusion 55 defects met on the bundled pipeline, each worked around where
//!   it is named: [`STATIC_PLANNER`], [`cluster_config`], [`LifemapExecutionEngine`].
//! - Credentials never travel with plans: every process builds its S3 clients from its own
//!   environment (`AWS_*`, see [`EnvObjectStores`]), and nothing here logs them.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use ballista_core::JobId;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::execution_engine::{DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::catalog::Session;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::ViewTable;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::functions_table::generate_series::GenerateSeriesTable;
use datafusion::logical_expr::UserDefinedLogicalNode;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::from_proto::{parse_protobuf_file_scan_config, parse_table_schema_from_proto};
use datafusion_proto::physical_plan::to_proto::serialize_file_scan_config;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::FileScanExecConf;
use object_store::ObjectStore;
use prost::Message;
use url::Url;

use crate::error::Error;
use crate::sources::lines::{self, LinesListing, LinesTable};
use crate::transform::on_cluster::{HoldWrite, HoldWriterExec};

/// `lifemap scheduler`: where clients send plans and executors ask for work.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,

    /// Port for clients (`--engine df://this-host:PORT`) and executors.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,

    /// How executors and clients reach this host, when not by its name.
    #[arg(long)]
    pub external_host: Option<String>,
}

/// `lifemap executor`: runs the tasks a scheduler hands out.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler, `HOST:PORT` (port 50050 unless given).
    #[arg(long, default_value = "localhost:50050")]
    pub scheduler: String,

    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,

    /// Port other executors and clients fetch results from (Arrow Flight).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,

    /// Port the scheduler sends tasks to (gRPC).
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,

    /// How the scheduler and other executors reach this host, when not by its name.
    #[arg(long)]
    pub external_host: Option<String>,

    /// Tasks run at once; default: the number of cores.
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,

    /// Folder for shuffle files; default: a temporary folder.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,

    /// Memory for this executor's tasks, e.g. 8GiB: as for `lifemap run`, DataFusion's pool gets
    /// three quarters, shared among the concurrent tasks, and they spill to disk beyond.
    /// Default: Ballista's, a pool of 70 % of the machine's (or container's) memory.
    #[arg(long, value_parser = crate::config::parse_bytes)]
    pub memory_limit: Option<u64>,
}

fn cluster_error(context: &str, err: impl fmt::Display) -> Error {
    Error::Engine {
        context: context.to_string(),
        source: DataFusionError::External(err.to_string().into()),
    }
}

/// Run a scheduler until the process is stopped.
pub async fn run_scheduler(args: SchedulerArgs) -> Result<(), Error> {
    let address = format!("{}:{}", args.bind, args.port)
        .parse()
        .map_err(|err| Error::Usage(format!("--bind {} --port {}: {err}", args.bind, args.port)))?;
    let mut config = SchedulerConfig {
        bind_host: args.bind.clone(),
        bind_port: args.port,
        ..SchedulerConfig::default()
    };
    if let Some(host) = &args.external_host {
        config.external_host = host.clone();
    }
    config.override_config_producer = Some(Arc::new(session_config));
    config.override_session_builder = Some(Arc::new(session_state));
    config.override_logical_codec = Some(Arc::new(LifemapLogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(LifemapPhysicalCodec::default()));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|err| cluster_error("starting the scheduler", err))?;
    tracing::info!(%address, "scheduler listening");
    start_server(cluster, address, Arc::new(config))
        .await
        .map_err(|err| cluster_error("running the scheduler", err))
}

/// Run an executor until the process is stopped or its scheduler lets it go.
pub async fn run_executor(args: ExecutorArgs) -> Result<(), Error> {
    let (scheduler_host, scheduler_port) = match args.scheduler.rsplit_once(':') {
        Some((host, port)) => (
            host.to_string(),
            port.parse::<u16>()
                .map_err(|_| Error::Usage(format!("--scheduler {}: the port is not a number", args.scheduler)))?,
        ),
        None => (args.scheduler.clone(), 50050),
    };
    let functions = session_state(session_config()).map_err(|source| Error::Engine {
        context: "registering lifemap's SQL functions".into(),
        source,
    })?;
    let config_producer: ConfigProducer = Arc::new(session_config);
    let runtime_producer: RuntimeProducer = Arc::new(|_config: &SessionConfig| runtime());
    let config = ExecutorProcessConfig {
        bind_host: args.bind.clone(),
        external_host: args.external_host.clone(),
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: args.concurrent_tasks.unwrap_or(0),
        work_dir: args.work_dir.as_ref().map(|dir| dir.display().to_string()),
        // Ballista installs this pool in every task's runtime itself, after the runtime producer.
        memory_pool_size: args
            .memory_limit
            .map(|limit| crate::session::operator_memory(limit) as u64),
        print_thread_info: false,
        override_function_registry: Some(Arc::new((&functions).into())),
        override_config_producer: Some(config_producer),
        override_runtime_producer: Some(runtime_producer),
        override_logical_codec: Some(Arc::new(LifemapLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(LifemapPhysicalCodec::default())),
        override_execution_engine: Some(Arc::new(LifemapExecutionEngine(DefaultExecutionEngine::new()))),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(scheduler = %args.scheduler, port = args.port, grpc_port = args.grpc_port, "executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|err| cluster_error("running the executor", err))
}

/// The session settings every process of a cluster starts from: Ballista's, with lifemap's codecs.
fn session_config() -> SessionConfig {
    let mut config = cluster_config(SessionConfig::new_with_ballista());
    // As in a local run (session.rs): globs may span folders.
    config.options_mut().execution.listing_table_ignore_subdirectory = false;
    config
}

/// A scheduler's or executor's session: lifemap's functions and S3 from the environment.
fn session_state(config: SessionConfig) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime()?)
        .with_default_features()
        .with_query_planner(Arc::new(LifemapQueryPlanner))
        .build();
    crate::functions::register_all(&mut state)?;
    crate::sources::register_pii_hash_from_env(&mut state)?;
    Ok(state)
}

/// DataFusion's planner, plus the executors' writes of held steps ([`HoldWrite`]).
#[derive(Debug)]
struct LifemapQueryPlanner;

#[async_trait]
impl QueryPlanner for LifemapQueryPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(HoldWritePlanner)])
            .create_physical_plan(plan, session)
            .await
    }
}

struct HoldWritePlanner;

#[async_trait]
impl ExtensionPlanner for HoldWritePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(write) = node.as_any().downcast_ref::<HoldWrite>() else {
            return Ok(None);
        };
        let input = Arc::clone(one_input(physical_inputs)?);
        Ok(Some(Arc::new(HoldWriterExec::new(input, write.folder().to_string()))))
    }
}

fn runtime() -> Result<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(EnvObjectStores::default()))
        .build_arc()
}

/// Turn a local session into a client of the scheduler at `scheduler` (`df://host:port`).
pub fn client_state(state: SessionState, scheduler: &str) -> Result<SessionState, Error> {
    let address = scheduler.replacen("df://", "http://", 1);
    state.upgrade_for_ballista(address).map_err(|source| Error::Engine {
        context: format!("connecting to the scheduler at {scheduler}"),
        source,
    })
}

/// On a cluster's client: `generate_series` and `range` give their rows as a `VALUES` list, which
/// a plan can carry, instead of DataFusion's series table (which plans cannot: "Error serializing
/// custom table"). The rows are made on the client, so a series is capped at [`MAX_SERIES_ROWS`].
pub fn register_series_functions(state: &mut SessionState) {
    for name in ["generate_series", "range"] {
        if let Some(inner) = state.table_functions().get(name).map(|f| Arc::clone(f.function())) {
            state.register_udtf(name, Arc::new(SeriesAsValues { inner }));
        }
    }
}

/// The most rows a series may have on a cluster (calendars of weeks, days or hours are far fewer).
const MAX_SERIES_ROWS: usize = 1_000_000;

#[derive(Debug)]
struct SeriesAsValues {
    inner: Arc<dyn TableFunctionImpl>,
}

impl TableFunctionImpl for SeriesAsValues {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let provider = self.inner.call_with_args(args)?;
        let Some(series) = provider.downcast_ref::<GenerateSeriesTable>() else {
            return Ok(provider);
        };
        let schema = series.schema();
        let generator = series.as_generator(8192)?;
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        loop {
            let batch = generator.write().generate_next_batch()?;
            let Some(batch) = batch else { break };
            for row in 0..batch.num_rows() {
                let values = batch
                    .columns()
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row).map(lit))
                    .collect::<Result<Vec<_>>>()?;
                rows.push(values);
            }
            if rows.len() > MAX_SERIES_ROWS {
                return Err(DataFusionError::Plan(format!(
                    "on a cluster a series has at most {MAX_SERIES_ROWS} rows"
                )));
            }
        }
        if rows.is_empty() {
            return Ok(Arc::new(datafusion::datasource::empty::EmptyTable::new(schema)));
        }
        let values = LogicalPlanBuilder::values(rows)?;
        let named: Vec<Expr> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| col(format!("column{}", index + 1)).alias(field.name()))
            .collect();
        let plan = values.project(named)?.build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// Whether `ctx` sends its SQL to a scheduler.
pub fn is_client(ctx: &datafusion::prelude::SessionContext) -> bool {
    ctx.state()
        .config()
        .options()
        .extensions
        .get::<ballista_core::config::BallistaConfig>()
        .is_some()
}

/// A cluster's session settings, on the client and on every server: lifemap's codecs, so plans
/// carry `lines` tables, Ballista's static planner (see [`STATIC_PLANNER`]) and no join filters.
pub fn cluster_config(config: SessionConfig) -> SessionConfig {
    let mut config = config
        .with_ballista_logical_extension_codec(Arc::new(LifemapLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(LifemapPhysicalCodec::default()))
        .with_ballista_adaptive_query_planner(STATIC_PLANNER);
    // Ballista's distributed planner swaps a hash join's inputs after DataFusion has built the
    // join's dynamic filter, which DataFusion refuses ("Cannot swap HashJoinExec inputs after
    // dynamic filters have been constructed"): the step fails. Without the filter it runs. (The
    // umbrella setting too: applied from the client's settings on the scheduler, it would turn
    // the join's back on.)
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    // The scheduler receives a compressed CSV or NDJSON source as uncompressed (see
    // [`LifemapExecutionEngine`]) and would split its files into byte ranges, each of which an
    // executor then decompressed from the middle: half the orders went missing. Files are read
    // whole; a large source still spreads over its many files.
    optimizer.repartition_file_scans = false;
    config
}

/// Ballista 55's adaptive planner re-planned a step of the bundled pipeline without end (anti
/// joins against an empty table: thousands of stages a second, the step never finished); the
/// static distributed planner runs it. `false` = adaptive planning off.
const STATIC_PLANNER: bool = false;

/// Object stores of a scheduler or executor: local files, and one S3 client per bucket, built on
/// first use from the process's own environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, ...).
#[derive(Default)]
pub struct EnvObjectStores {
    local: DefaultObjectStoreRegistry,
    buckets: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl fmt::Debug for EnvObjectStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buckets: Vec<String> = self
            .buckets
            .read()
            .map(|buckets| buckets.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("EnvObjectStores").field("buckets", &buckets).finish()
    }
}

impl ObjectStoreRegistry for EnvObjectStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        match (url.scheme(), url.host_str()) {
            ("s3", Some(bucket)) => self
                .buckets
                .write()
                .ok()
                .and_then(|mut buckets| buckets.insert(bucket.to_string(), store)),
            _ => self.local.register_store(url, store),
        }
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let ("s3", Some(bucket)) = (url.scheme(), url.host_str()) else {
            return self.local.get_store(url);
        };
        if let Some(store) = self
            .buckets
            .read()
            .ok()
            .and_then(|buckets| buckets.get(bucket).cloned())
        {
            return Ok(store);
        }
        let store = crate::storage::build_s3(&crate::config::S3Settings::default(), bucket)
            .map_err(|err| DataFusionError::Configuration(err.to_string()))?;
        if let Ok(mut buckets) = self.buckets.write() {
            buckets.insert(bucket.to_string(), Arc::clone(&store));
        }
        Ok(store)
    }
}

/// Ballista's logical codec, plus `lines` tables (sent as their [`LinesListing`]).
#[derive(Debug, Default)]
pub struct LifemapLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LifemapLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        match buf.strip_prefix(HOLD_TAG) {
            Some(folder) => Ok(Extension {
                node: Arc::new(HoldWrite::new(one_input(inputs)?.clone(), folder_from_bytes(folder)?)),
            }),
            None => self.ballista.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        match node.node.as_any().downcast_ref::<HoldWrite>() {
            Some(write) => {
                buf.extend_from_slice(HOLD_TAG);
                buf.extend_from_slice(write.folder().as_bytes());
                Ok(())
            }
            None => self.ballista.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: datafusion::arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(LINES_TAG) {
            Some(json) => {
                let listing: LinesListing = serde_json::from_slice(json)
                    .map_err(|err| DataFusionError::Internal(format!("a `lines` table's description: {err}")))?;
                Ok(Arc::new(listing.table()?))
            }
            None => self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<LinesTable>() {
            Some(table) => {
                buf.extend_from_slice(LINES_TAG);
                serde_json::to_writer(buf, &table.kept)
                    .map_err(|err| DataFusionError::Internal(format!("a `lines` table's description: {err}")))
            }
            None => self.ballista.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

/// Mark lifemap's own messages among Ballista's (which are protobuf and never start with them).
const LINES_TAG: &[u8] = b"lifemap.lines\0";
const HOLD_TAG: &[u8] = b"lifemap.hold\0";

fn one_input<T>(inputs: &[T]) -> Result<&T> {
    match inputs {
        [input] => Ok(input),
        _ => Err(DataFusionError::Internal(format!(
            "a held step's write has {} inputs",
            inputs.len()
        ))),
    }
}

fn folder_from_bytes(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|err| DataFusionError::Internal(format!("a held step's folder: {err}")))
}

/// Ballista's physical codec, plus scans of `lines` files.
#[derive(Debug, Default)]
pub struct LifemapPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for LifemapPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(folder) = buf.strip_prefix(HOLD_TAG) {
            let input = Arc::clone(one_input(inputs)?);
            return Ok(Arc::new(HoldWriterExec::new(input, folder_from_bytes(folder)?)));
        }
        let Some(rest) = buf.strip_prefix(LINES_TAG) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let Some((&compression, scan)) = rest.split_first() else {
            return Err(DataFusionError::Internal("an empty `lines` scan".into()));
        };
        let compression = compression_from_byte(compression)?;
        let proto = FileScanExecConf::decode(scan).map_err(|err| DataFusionError::Internal(err.to_string()))?;
        let table_schema = parse_table_schema_from_proto(&proto)?;
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        let config =
            parse_protobuf_file_scan_config(&proto, &decode_ctx, proto_converter, lines::file_source(table_schema))?;
        let config = FileScanConfigBuilder::from(config)
            .with_file_compression_type(compression)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(write) = node.downcast_ref::<HoldWriterExec>() {
            buf.extend_from_slice(HOLD_TAG);
            buf.extend_from_slice(write.folder().as_bytes());
            return Ok(());
        }
        let lines_scan = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            .filter(|config| lines::is_lines_source(config.file_source().as_ref()));
        let Some(config) = lines_scan else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        let proto = serialize_file_scan_config(config, self, proto_converter)?;
        buf.extend_from_slice(LINES_TAG);
        buf.push(compression_to_byte(config.file_compression_type));
        proto
            .encode(buf)
            .map_err(|err| DataFusionError::Internal(err.to_string()))
    }
}

const COMPRESSIONS: [FileCompressionType; 5] = [
    FileCompressionType::UNCOMPRESSED,
    FileCompressionType::GZIP,
    FileCompressionType::BZIP2,
    FileCompressionType::XZ,
    FileCompressionType::ZSTD,
];

fn compression_to_byte(compression: FileCompressionType) -> u8 {
    COMPRESSIONS
        .iter()
        .position(|known| known.get_variant() == compression.get_variant())
        .unwrap_or(0) as u8
}

fn compression_from_byte(byte: u8) -> Result<FileCompressionType> {
    COMPRESSIONS
        .get(usize::from(byte))
        .copied()
        .ok_or_else(|| DataFusionError::Internal(format!("unknown compression {byte} in a `lines` scan")))
}

/// Ballista's execution engine, with two corrections made to every task's plan before it runs:
///
/// - DataFusion 55 sends CSV and NDJSON scans without their compression ("The compression type
///   is not on the wire; CSV scans always deserialize as uncompressed"): an executor would read
///   `orders.csv.gz` as text. The compression is put back from the file names, which is where a
///   local run takes it from too (`compression: auto`; a cluster run refuses other settings, see
///   `config`).
/// - A task runs a slice of its stage's partitions, numbered from 0 within the task, so a held
///   step's writer ([`HoldWriterExec`], always a stage's root) learns from here which partitions
///   of the stage it writes: its file names must not collide with another task's.
struct LifemapExecutionEngine(DefaultExecutionEngine);

impl ExecutionEngine for LifemapExecutionEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let plan = plan
            .transform_up(|node| {
                if let Some(writer) = node.downcast_ref::<HoldWriterExec>() {
                    let numbered = writer.with_stage_partitions(global_output_partition_ids.clone());
                    return Ok(Transformed::yes(Arc::new(numbered) as Arc<dyn ExecutionPlan>));
                }
                Ok(restore_compression(&node).map_or_else(|| Transformed::no(node), Transformed::yes))
            })?
            .data;
        self.0.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}

/// `node` with the compression its files' names show, when it is a CSV or NDJSON scan that lost it.
fn restore_compression(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let config = node
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    if config.file_compression_type.is_compressed() || !matches!(config.file_source().file_type(), "csv" | "json") {
        return None;
    }
    let mut shown = config
        .file_groups
        .iter()
        .flat_map(|group| group.files())
        .map(|file| crate::sources::classify_file(file.object_meta.location.filename().unwrap_or_default()).0);
    let first = shown.next()?;
    let same = shown.all(|other| other.get_variant() == first.get_variant());
    (same && first.is_compressed()).then(|| {
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_compression_type(first)
            .build();
        DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
    })
}
