//! The `lifemap` binary: everything happens in the library.

// See Cargo.toml: memory freed by one step goes back to the next instead of staying with glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lifemap::engine::memory::on_memory_limit(purge_freed_memory);
    lifemap::cli::main()
}

/// Without a memory limit, freed memory stays with mimalloc for the next step instead of going
/// back to the OS: every step of a run frees gigabytes the next one allocates again, and each
/// page returned costs a fault and a zeroing when it comes back (seconds of kernel time on a
/// large run, for a slightly lower peak RSS). Under `--memory-limit` the point is a bounded RSS,
/// so freed memory goes back after 100 ms: keeping everything nearly doubled the peak RSS under
/// a small limit. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn purge_freed_memory(memory_limit: Option<u64>) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // `mi_option_purge_delay` in mimalloc.h (v2 and v3 alike); the Rust bindings name no constant
    // for it. In milliseconds; -1 means never purge.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    let delay_ms = if memory_limit.is_some() { 100 } else { -1 };
    // SAFETY: sets a plain integer option; mimalloc reads it when it would purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, delay_ms) }
}
