//! `lifemap scheduler` and `lifemap executor`: Ballista's processes built from lifemap's session
//! setup, with object stores from each process's own environment.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use ballista_core::JobId;
use ballista_core::extension::SessionConfigExt;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::execution_engine::{DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::UserDefinedLogicalNode;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use url::Url;

use super::client::cluster_config;
use super::codec::{LifemapLogicalCodec, LifemapPhysicalCodec, one_input};
use crate::error::Error;
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
            .map(|limit| crate::engine::memory::operator_memory(limit) as u64),
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
    crate::engine::session::read_folders_whole(cluster_config(SessionConfig::new_with_ballista()))
}

/// A scheduler's or executor's session: lifemap's functions and S3 from the environment.
fn session_state(config: SessionConfig) -> Result<SessionState> {
    let mut state = crate::engine::session::state_builder(config, runtime()?)
        .with_query_planner(Arc::new(LifemapQueryPlanner))
        .build();
    crate::functions::register_all(&mut state)?;
    crate::sources::pii::register_pii_hash_from_env(&mut state)?;
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
    let mut shown =
        config.file_groups.iter().flat_map(|group| group.files()).map(|file| {
            crate::sources::files::classify_file(file.object_meta.location.filename().unwrap_or_default()).0
        });
    let first = shown.next()?;
    let same = shown.all(|other| other.get_variant() == first.get_variant());
    (same && first.is_compressed()).then(|| {
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_compression_type(first)
            .build();
        DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
    })
}
