//! All DataFusion session setup, in one place and one order:
//! `SessionConfig` → `RuntimeEnvBuilder` (memory pool, object stores) → `SessionState` → functions.
//! Every session lifemap creates — for a run, `validate` or `plan` — comes from here, so they all
//! see the same settings and SQL functions.

use std::sync::{Arc, OnceLock};

use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;

use crate::sources::parquet_read_ahead::ParquetReadAhead;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::{EngineSettings, Pipeline};
use crate::error::Error;

/// Told the run's memory limit before a session is built: the binary returns freed memory to the
/// OS promptly under a limit, and keeps it for reuse without one (see main.rs). The library does
/// not choose the allocator, so it only passes the word on.
static MEMORY_LIMIT_HOOK: OnceLock<fn(Option<u64>)> = OnceLock::new();

/// Register the function [`create`] calls with the run's memory limit (the first one wins).
pub fn on_memory_limit(hook: fn(Option<u64>)) {
    let _ = MEMORY_LIMIT_HOOK.set(hook);
}

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
    if let Some(hook) = MEMORY_LIMIT_HOOK.get() {
        hook(pipeline.engine.memory_limit);
    }
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
    // partitions instead of hashing both sides into partitions: at 100M events the anti join with
    // the 199K duplicate copies otherwise repartitioned every staged event (person_events: 28.1 s
    // instead of 22.7 s). DataFusion's defaults are 128K rows and 1 MB.
    let optimizer = &mut config.options_mut().optimizer;
    if unset("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD_ROWS") {
        optimizer.hash_join_single_partition_threshold_rows = 1_000_000;
    }
    if unset("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD") {
        optimizer.hash_join_single_partition_threshold = 16 * 1024 * 1024;
    }
    // A source folder is read with everything below it, and a glob may span folders
    // (`sales/*/part-*.csv`): DataFusion would otherwise match globs against the first level only.
    config.options_mut().execution.listing_table_ignore_subdirectory = false;
    match engine.target_partitions {
        Some(partitions) => config = config.with_target_partitions(partitions),
        // An object store answers a request in tens of milliseconds, and a scan reads its
        // partition's files one after another: with 2 partitions (2 cores), reading 365 daily
        // files from Garage took 8 s where local files took 1 s. More partitions, more requests
        // in flight (1M events: 19.9 s from S3 at 2 partitions, 6.3 s at 16, 5.2 s locally).
        None if reads_object_store(pipeline) && unset("DATAFUSION_EXECUTION_TARGET_PARTITIONS") => {
            let partitions = config.target_partitions().max(OBJECT_STORE_PARTITIONS);
            config = config.with_target_partitions(partitions);
        }
        None => {}
    }

    let memory_limit = memory_limit(engine);
    if let Some(limit) = memory_limit
        && unset("DATAFUSION_EXECUTION_SORT_SPILL_RESERVATION_BYTES")
    {
        let execution = &mut config.options_mut().execution;
        execution.sort_spill_reservation_bytes = sort_spill_reservation(
            limit,
            execution.target_partitions,
            execution.sort_spill_reservation_bytes,
        );
    }

    if let Some(limit) = memory_limit {
        config = config.with_extension(Arc::new(crate::transform::on_disk::HeldMemory::for_limit(limit)));
    }

    // One session per run: the listing cache can only hide files that arrived mid-run.
    let mut runtime = RuntimeEnvBuilder::new().with_object_list_cache_limit(0);
    if let Some(limit) = memory_limit {
        runtime = runtime.with_memory_pool(memory_pool(limit, engine.memory_limit.is_some()));
    }
    let runtime = runtime.build_arc().map_err(|source| Error::Engine {
        context: "creating the runtime".into(),
        source,
    })?;
    if engine.scheduler.is_some() {
        config = crate::cluster::cluster_config(config);
    }
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(Arc::clone(&runtime))
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(ParquetReadAhead::new(runtime)))
        .build();
    // Before the functions: turning a session into a cluster's client resets its function list.
    if let Some(scheduler) = &engine.scheduler {
        state = crate::cluster::client_state(state, scheduler)?;
    }
    crate::functions::register_all(&mut state).map_err(|source| Error::Engine {
        context: "registering lifemap's SQL functions".into(),
        source,
    })?;
    if engine.scheduler.is_some() {
        crate::cluster::register_series_functions(&mut state);
    }
    let ctx = SessionContext::new_with_state(state);
    crate::storage::register_stores(&ctx, pipeline)?;
    Ok(ctx)
}

/// The share of the machine's memory (or of its container's, under a cgroup limit) a run is held
/// to when neither `--memory-limit` nor `engine.memory_limit` names a limit; Ballista's executors
/// take the same 70 %. With no limit at all, a 100M-event run kept every materialised step in
/// memory and the kernel killed it at 23 GiB of a 24 GiB machine.
const DEFAULT_MEMORY_PERCENT: u64 = 70;

/// The memory a run is held to: the configured limit, else [`DEFAULT_MEMORY_PERCENT`] of the memory
/// found (`None` when none is found: then nothing bounds the run).
pub fn memory_limit(engine: &EngineSettings) -> Option<u64> {
    static DEFAULT: OnceLock<Option<u64>> = OnceLock::new();
    engine.memory_limit.or_else(|| {
        *DEFAULT.get_or_init(|| {
            use sysinfo::{MemoryRefreshKind, RefreshKind, System};
            let system =
                System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()));
            let host = system.total_memory();
            // sysinfo asserts that the host's memory is known before it reads a cgroup's.
            let cgroup = (host > 0)
                .then(|| system.cgroup_limits().map(|limits| limits.total_memory))
                .flatten();
            let limit = default_memory_limit(host, cgroup);
            tracing::debug!(
                memory_limit = limit,
                "no memory limit given: holding runs to 70 % of this machine's memory"
            );
            limit
        })
    })
}

/// [`DEFAULT_MEMORY_PERCENT`] of the host's memory, or of the cgroup's when that is less.
fn default_memory_limit(host: u64, cgroup: Option<u64>) -> Option<u64> {
    let memory = cgroup.map_or(host, |cgroup| cgroup.min(host));
    (memory > 0).then(|| memory / 100 * DEFAULT_MEMORY_PERCENT)
}

/// What each sort sets aside up front for merging its spill files. DataFusion's 10 MB suits a pool
/// of gigabytes; under a small limit the sorts of one step (a window per partition, each taking
/// 10 MB before sorting a row) took the whole pool between them, and the next sort failed instead
/// of spilling. A sixteenth of the pool per partition leaves room however many sorts a step runs.
fn sort_spill_reservation(memory_limit: u64, partitions: usize, default: usize) -> usize {
    (operator_memory(memory_limit) / 16 / partitions.max(1)).min(default)
}

/// Whether the environment leaves the DataFusion setting `variable` to lifemap (a DATAFUSION_*
/// variable, read by `SessionConfig::from_env`, wins over lifemap's own choice).
fn unset(variable: &str) -> bool {
    std::env::var_os(variable).is_none()
}

/// DataFusion's memory pool for a run held to `memory_limit`, which the user `given` or lifemap
/// chose. A given limit is shared fairly: each spilling operator gets its part of the pool up
/// front, which is what keeps a 100M-event run under 4 GiB. The default limit is a safety net, not
/// a budget: divided up front among the 20-odd operators of a step, it made the funnel's aggregate
/// spill at 100M events on a machine with memory to spare (the step took 25 s instead of 18 s).
/// Under it operators take what they need, and spill once the whole pool is in use.
fn memory_pool(memory_limit: u64, given: bool) -> Arc<dyn MemoryPool> {
    let bytes = operator_memory(memory_limit);
    if given {
        Arc::new(FairSpillPool::new(bytes))
    } else {
        Arc::new(GreedyMemoryPool::new(bytes))
    }
}

/// The part of `--memory-limit` given to DataFusion's memory pool: three quarters. The limit is
/// for the process, and what the pool does not account (batches in flight between operators, a
/// hash table being built, decoded scan buffers, the allocator's own) came to about 2 GB at 100M
/// events: with a 3 GiB pool that run peaked at 5.06 GB, with 4 GiB at 5.95 GB. Two thirds was
/// too little: a hash join's build side (which cannot spill) found the pool full in journey_base.
pub fn operator_memory(memory_limit: u64) -> usize {
    usize::try_from(memory_limit / 4 * 3).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_set_aside_a_sixteenth_of_the_pool_per_partition_at_most_datafusions_default() {
        let default = 10 * 1024 * 1024;
        // 32 MiB: a 24 MiB pool, 2 partitions.
        assert_eq!(sort_spill_reservation(32 << 20, 2, default), 768 * 1024);
        assert_eq!(sort_spill_reservation(32 << 20, 0, default), 1536 * 1024);
        assert_eq!(sort_spill_reservation(4 << 30, 2, default), default);
    }

    /// Two spilling operators: under a given limit neither may take more than its half of the
    /// pool; under the default one either may take what is free, and no more.
    #[test]
    fn spilling_operators_share_a_given_limit_and_take_what_is_free_of_the_default() {
        use datafusion::execution::memory_pool::MemoryConsumer;
        let limit: u64 = 64 << 20;
        let pool_bytes = operator_memory(limit);
        for given in [true, false] {
            let pool = memory_pool(limit, given);
            let first = MemoryConsumer::new("first").with_can_spill(true).register(&pool);
            let second = MemoryConsumer::new("second").with_can_spill(true).register(&pool);
            second.try_grow(1024).expect("a little");
            let beyond_half = pool_bytes / 2 + 1024;
            assert_eq!(first.try_grow(beyond_half).is_ok(), !given, "given limit: {given}");
            first.free();
            assert!(first.try_grow(pool_bytes).is_err(), "never more than the pool");
        }
    }

    #[test]
    fn without_a_limit_a_run_takes_70_percent_of_the_smaller_of_host_and_cgroup_memory() {
        let gib: u64 = 1 << 30;
        assert_eq!(default_memory_limit(24 * gib, None), Some(18_038_862_590));
        assert_eq!(default_memory_limit(24 * gib, Some(4 * gib)), Some(3_006_477_040));
        // A cgroup without a limit reads as u64::MAX: the host's memory counts.
        assert_eq!(default_memory_limit(24 * gib, Some(u64::MAX)), Some(18_038_862_590));
        assert_eq!(default_memory_limit(0, None), None);
        // A configured limit wins over the machine's.
        let engine = EngineSettings {
            memory_limit: Some(gib),
            ..Default::default()
        };
        assert_eq!(memory_limit(&engine), Some(gib));
    }
}
