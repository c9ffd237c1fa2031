//! The run's memory policy: how much a run may use, how DataFusion's pool and the held steps
//! share it, and the allocator hook told about it. The session (`engine::session`), the held
//! steps (`transform::on_disk`) and executors (`engine::cluster`) all take their figures from here.

use std::sync::{Arc, OnceLock};

use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool, MemoryPool};

use crate::config::EngineSettings;

/// Told the run's memory limit before a session is built: the binary returns freed memory to the
/// OS promptly under a limit, and keeps it for reuse without one (see main.rs). The library does
/// not choose the allocator, so it only passes the word on.
static MEMORY_LIMIT_HOOK: OnceLock<fn(Option<u64>)> = OnceLock::new();

/// Register the function [`create`] calls with the run's memory limit (the first one wins).
pub fn on_memory_limit(hook: fn(Option<u64>)) {
    let _ = MEMORY_LIMIT_HOOK.set(hook);
}

/// Tell the binary's allocator hook (if any) the run's memory limit.
pub(crate) fn tell_allocator(memory_limit: Option<u64>) {
    if let Some(hook) = MEMORY_LIMIT_HOOK.get() {
        hook(memory_limit);
    }
}

/// The share of the machine's memory (or of its container's, under a cgroup limit) a run is held
/// to when neither `--memory-limit` nor `engine.memory_limit` names a limit; Ballista's executors
/// take the same 70 %. With no limit at all, a large run kept every materialised step in memory
/// until the kernel killed it.
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

/// What each sort sets aside up front for merging its spill files. DataFusion's default suits a
/// pool of gigabytes; under a small limit the sorts of one step (a window per partition, each
/// taking its reservation before sorting a row) took the whole pool between them, and the next sort failed instead
/// of spilling. A sixteenth of the pool per partition leaves room however many sorts a step runs.
pub(crate) fn sort_spill_reservation(memory_limit: u64, partitions: usize, default: usize) -> usize {
    (operator_memory(memory_limit) / 16 / partitions.max(1)).min(default)
}

/// DataFusion's memory pool for a run held to `memory_limit`, which the user `given` or lifemap
/// chose. A given limit is shared fairly: each spilling operator gets its part of the pool up
/// front, which is what keeps a large run under a small limit. The default limit is a safety net,
/// not a budget: divided up front among the 20-odd operators of a step, it made the funnel's
/// aggregate spill on a machine with memory to spare, and slowed the step.
/// Under it operators take what they need, and spill once the whole pool is in use.
pub(crate) fn memory_pool(memory_limit: u64, given: bool) -> Arc<dyn MemoryPool> {
    let bytes = operator_memory(memory_limit);
    if given {
        Arc::new(FairSpillPool::new(bytes))
    } else {
        Arc::new(GreedyMemoryPool::new(bytes))
    }
}

/// The part of `--memory-limit` given to DataFusion's memory pool: three quarters. The limit is
/// for the process, and what the pool does not account (batches in flight between operators, a
/// hash table being built, decoded scan buffers, the allocator's own) grows with the data, and a
/// pool of the whole limit let the process pass it by that much. Two thirds was too little: a hash join's build side (which cannot spill) found the pool full in journey_base.
pub fn operator_memory(memory_limit: u64) -> usize {
    usize::try_from(memory_limit / 4 * 3).unwrap_or(usize::MAX)
}

/// What the materialised steps of a run may keep in memory together: a quarter of DataFusion's
/// pool, so that the operators of later steps always have the other three quarters. (Each held
/// step keeping a quarter of its own filled a run's pool with the first batches of five steps
/// until a hash join's build side, which cannot spill, found no room.) A session extension:
/// one per run, set up with the memory limit (`engine::session`). No limit, no share: all in memory.
#[derive(Debug)]
pub struct HeldMemory {
    pool: Arc<dyn MemoryPool>,
    bytes: usize,
}

impl HeldMemory {
    pub fn for_limit(memory_limit: u64) -> Self {
        Self::new(operator_memory(memory_limit) / 4)
    }

    pub fn new(bytes: usize) -> Self {
        Self {
            pool: Arc::new(GreedyMemoryPool::new(bytes)),
            bytes,
        }
    }

    /// Bytes the held steps may keep in memory together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The pool their reservations are counted in.
    pub fn pool(&self) -> Arc<dyn MemoryPool> {
        Arc::clone(&self.pool)
    }
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
