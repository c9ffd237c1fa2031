//! All DataFusion session setup, in one place and one order:
//! `SessionConfig` → `RuntimeEnvBuilder` (memory pool, object stores) → `SessionState` → functions.
//! Every session lifemap creates — for a run, `validate` or `plan` — comes from here, so they all
//! see the same settings and SQL functions.

use std::sync::Arc;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::memory;
use crate::config::Pipeline;
use crate::error::Error;
use crate::sources::parquet_read_ahead::ParquetReadAhead;

/// Partitions of a run that reads from an object store, unless the pipeline or environment says.
const OBJECT_STORE_PARTITIONS: usize = 16;

fn reads_object_store(pipeline: &Pipeline) -> bool {
    pipeline
        .sources
        .iter()
        .any(|source| source.location.starts_with("s3://"))
}

/// A session in this process whatever the pipeline's engine: for work on results already
/// collected (the report) and for planning without running (`validate`, `plan`).
pub fn create_local(pipeline: &Pipeline) -> Result<SessionContext, Error> {
    if pipeline.engine.scheduler.is_none() {
        return create(pipeline);
    }
    let mut local = pipeline.clone();
    local.engine.scheduler = None;
    create(&local)
}

/// A session configured for `pipeline`, with its object stores registered; its SQL runs on the
/// pipeline's Ballista scheduler when it names one.
pub fn create(pipeline: &Pipeline) -> Result<SessionContext, Error> {
    memory::tell_allocator(pipeline.engine.memory_limit);
    let engine = &pipeline.engine;
    let memory_limit = memory::memory_limit(engine);
    let mut config = session_config(pipeline, memory_limit)?;

    // One session per run: the listing cache can only hide files that arrived mid-run.
    let mut runtime = RuntimeEnvBuilder::new().with_object_list_cache_limit(0);
    if let Some(limit) = memory_limit {
        runtime = runtime.with_memory_pool(memory::memory_pool(limit, engine.memory_limit.is_some()));
    }
    let runtime = runtime.build_arc().map_err(|source| Error::Engine {
        context: "creating the runtime".into(),
        source,
    })?;
    if engine.scheduler.is_some() {
        config = super::cluster::client::cluster_config(config);
    }
    let mut state = state_builder(config, Arc::clone(&runtime))
        .with_physical_optimizer_rule(Arc::new(ParquetReadAhead::new(runtime)))
        .build();
    // Before the functions: turning a session into a cluster's client resets its function list.
    if let Some(scheduler) = &engine.scheduler {
        state = super::cluster::client::client_state(state, scheduler)?;
    }
    crate::functions::register_all(&mut state).map_err(|source| Error::Engine {
        context: "registering lifemap's SQL functions".into(),
        source,
    })?;
    if engine.scheduler.is_some() {
        super::cluster::client::register_series_functions(&mut state);
    }
    let ctx = SessionContext::new_with_state(state);
    let locations = pipeline.sources.iter().map(|source| source.location.as_str());
    crate::storage::register_stores(&ctx, &pipeline.s3, locations.chain([pipeline.output_location.as_str()]))?;
    Ok(ctx)
}

/// The session's settings: DATAFUSION_* variables first, then lifemap's choices where the
/// environment leaves them, then the pipeline's engine section.
fn session_config(pipeline: &Pipeline, memory_limit: Option<u64>) -> Result<SessionConfig, Error> {
    let engine = &pipeline.engine;
    // DATAFUSION_* variables tune the engine as in datafusion-cli
    // (DATAFUSION_EXECUTION_BATCH_SIZE=..., DATAFUSION_OPTIMIZER_...); the pipeline's engine
    // section comes after them.
    let from_env = SessionConfig::from_env().map_err(|source| Error::Engine {
        context: "reading DATAFUSION_* settings from the environment".into(),
        source,
    })?;
    let mut config = from_env.with_information_schema(true);
    if let Some(rows) = engine.batch_size {
        config = config.with_batch_size(rows);
    }
    // The extraction of `struct['field']` / JSON accessors into scans copies the expression that
    // builds the struct into every access: `json_fields(line, ...)['a']`, `[...]['b']`, ... parse
    // each line once per field. Off unless the environment asks for it.
    if unset("DATAFUSION_OPTIMIZER_ENABLE_LEAF_EXPRESSION_PUSHDOWN") {
        config.options_mut().optimizer.enable_leaf_expression_pushdown = false;
    }
    // A join whose build side is under 1M rows (or 16 MB) builds one hash table for all
    // partitions instead of hashing both sides into partitions: otherwise the anti join with the
    // duplicate copies repartitions every staged event of a large run. DataFusion's defaults
    // (128K rows, 1 MB) are smaller than that join's build side gets.
    let optimizer = &mut config.options_mut().optimizer;
    if unset("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD_ROWS") {
        optimizer.hash_join_single_partition_threshold_rows = 1_000_000;
    }
    if unset("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD") {
        optimizer.hash_join_single_partition_threshold = 16 * 1024 * 1024;
    }
    config = read_folders_whole(config);
    match engine.target_partitions {
        Some(partitions) => config = config.with_target_partitions(partitions),
        // An object store answers a request in tens of milliseconds, and a scan reads its
        // partition's files one after another: with as many partitions as cores, a year of daily
        // files read from S3 waits on one request per file in turn. More partitions, more
        // requests in flight (docs/benchmarks.md, "Reading from S3").
        None if reads_object_store(pipeline) && unset("DATAFUSION_EXECUTION_TARGET_PARTITIONS") => {
            let partitions = config.target_partitions().max(OBJECT_STORE_PARTITIONS);
            config = config.with_target_partitions(partitions);
        }
        None => {}
    }

    if let Some(limit) = memory_limit
        && unset("DATAFUSION_EXECUTION_SORT_SPILL_RESERVATION_BYTES")
    {
        let execution = &mut config.options_mut().execution;
        execution.sort_spill_reservation_bytes = memory::sort_spill_reservation(
            limit,
            execution.target_partitions,
            execution.sort_spill_reservation_bytes,
        );
    }

    if let Some(limit) = memory_limit {
        config = config.with_extension(Arc::new(memory::HeldMemory::for_limit(limit)));
    }
    Ok(config)
}

/// Whether the environment leaves the DataFusion setting `variable` to lifemap (a DATAFUSION_*
/// variable, read by `SessionConfig::from_env`, wins over lifemap's own choice).
fn unset(variable: &str) -> bool {
    std::env::var_os(variable).is_none()
}

/// A source folder is read with everything below it, and a glob may span folders
/// (`sales/*/part-*.csv`): DataFusion would otherwise match globs against the first level only.
/// For every session, in this process or on a cluster's servers.
pub(crate) fn read_folders_whole(mut config: SessionConfig) -> SessionConfig {
    config.options_mut().execution.listing_table_ignore_subdirectory = false;
    config
}

/// The start of every session's state, here or on a cluster's servers: the settings, the runtime
/// and DataFusion's own features; lifemap's functions are registered once it is built.
pub(crate) fn state_builder(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionStateBuilder {
    SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
}
