//! The `lifemap` binary: everything happens in the library.

// See Cargo.toml: memory freed by one step goes back to the next instead of staying with glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lifemap::cli::main()
}
