//! The `lifemap` binary: everything happens in the library.

// See Cargo.toml: memory freed by one step goes back to the next instead of staying with glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    lifemap::cli::main()
}

/// Freed memory stays with mimalloc for the next step instead of going back to the OS after a
/// second: every step of a run frees gigabytes the next one allocates again, and each page
/// returned costs a fault and a zeroing when it comes back. Peak RSS is unchanged in kind (it is
/// the largest step's), about 5 % higher at 10M events.
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // `mi_option_purge_delay` in mimalloc.h (v2 and v3 alike); the Rust bindings name no constant
    // for it. -1 means never purge.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a plain integer option; mimalloc reads it when it would purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}
