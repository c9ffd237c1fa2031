//! The `lifemap` binary: everything happens in the library.

fn main() -> std::process::ExitCode {
    lifemap::cli::main()
}
