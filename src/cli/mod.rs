//! The `lifemap` command line: argument parsing, logging, and turning outcomes into exit codes;
//! one module per command, each a thin adapter over the library.
//!
//! stdout carries results (for `run`, a one-line JSON summary last, which Airflow's XCom reads);
//! logs and progress go to stderr.

mod args;
mod backfill;
mod check;
mod cleanup;
mod output;
mod plan;
mod report;
mod run;
mod sample_data;
mod unlock;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

pub use args::PipelineArgs;
pub use check::CheckArgs;
pub use output::print_error;
use output::report as finish;
pub use report::ReportArgs;
pub use run::RunArgs;
pub use sample_data::SampleArgs;

use crate::error::exit;
use crate::runner;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   the run failed
  2   configuration or usage error (bad pipeline, bad flag, refused credentials)
  3   data-quality failure: nothing was published
  75  temporary failure (storage, network or mail server unavailable, or another run of
      this ds in progress): safe to retry
  99  nothing to do: no input for this ds (mark the task skipped)
  130 cancelled by SIGTERM or SIGINT: nothing half-published, the lock released; safe to
      run again (a second signal exits at once; the next run clears what it left)";

/// Customer lifecycle analytics: YAML pipelines of DataFusion SQL that publish Parquet marts.
#[derive(Debug, Parser)]
#[command(name = "lifemap", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr: `text` for people, `json` for machines; `auto` is text.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// More log detail (-v debug, -vv trace). `LIFEMAP_LOG` takes a full filter instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline for a logical date (or a range of dates), publish its marts, then render
    /// and deliver its report (once per ds).
    Run(RunArgs),
    /// Check a pipeline without reading data: YAML, references, templates, and every step's SQL
    /// planned against the declared schemas. Lists all problems; exits 2 if there are any.
    Validate(PipelineArgs),
    /// Run the pipeline's data-quality checks alone for --ds (and the steps they read): publishes
    /// nothing, sends nothing. Prints the outcomes as JSON; exits 3 if an error-level check fails.
    Check(CheckArgs),
    /// Print the resolved step order, each step's rendered SQL and its output schema, and the SQL
    /// of every check; with --rendered STEP, that step's final SQL alone.
    Plan(plan::PlanArgs),
    /// Render the pipeline's report from the marts already published for --ds, without
    /// sending it: for previews and template work.
    Report(ReportArgs),
    /// Remove what killed runs left behind (staging folders, files a partition's _SUCCESS does not
    /// list) for --ds or every date, each under its ds's lock. Prints one JSON line; exits 75
    /// when a run in progress holds a date's lock.
    Cleanup(cleanup::CleanupArgs),
    /// Remove the run lock of --ds (or, with --state, of the kept state) whoever holds it, for a
    /// holder known to be dead; prints one JSON line naming it.
    Unlock(unlock::UnlockArgs),
    /// Write a deterministic sample of customer exports (events, orders, customers, feedback).
    SampleData(SampleArgs),
    /// Start a Ballista scheduler with lifemap's SQL functions and S3 access (see `--engine`).
    Scheduler(crate::engine::cluster::SchedulerArgs),
    /// Start a Ballista executor with lifemap's SQL functions and S3 access, serving a scheduler.
    Executor(crate::engine::cluster::ExecutorArgs),
}

/// Parse arguments, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_logging(&cli);
    // Deep plans recurse deeply: turning a cluster step's plan into protobuf and back overflowed
    // tokio's default 2 MiB thread stack (Ballista's own binaries use 32 MiB, as here).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(exit::RUN_FAILED as u8);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // A cancelled run may leave a blocking task (a k-means fit) computing: do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A command line clap refused (or `--help`/`--version`, which exit 0). A refused `run` still
/// ends stdout with its JSON summary line, as every other exit of `run` does.
fn usage_error(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    let code = err.exit_code();
    let command = Cli::command().ignore_errors(true).try_get_matches().ok();
    if code == exit::CONFIG && command.as_ref().and_then(|m| m.subcommand_name()) == Some("run") {
        let rendered = err.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        let report = runner::ErrorReport {
            message: format!("{message} (see `lifemap run --help`)"),
            exit_code: code,
            hint: None,
        };
        println!("{}", runner::failure_line(None, &report));
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "lifemap=info,warn",
        (false, 1) => "lifemap=debug,info",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("LIFEMAP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Auto | LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .compact()
            .try_init(),
    };
}

async fn dispatch(cli: Cli) -> i32 {
    let progress_allowed = !cli.quiet && cli.log_format != LogFormat::Json && std::io::stderr().is_terminal();
    match cli.command {
        Command::Run(args) if args.from.is_some() => backfill::run(args, progress_allowed).await,
        Command::Run(args) => run::run(args, progress_allowed).await,
        Command::Validate(args) => validate::run(&args).await,
        Command::Check(args) => check::run(&args, progress_allowed).await,
        Command::Plan(args) => finish(plan::run(&args).await),
        Command::Report(args) => finish(report::run(&args).await),
        Command::Cleanup(args) => match cleanup::run(&args).await {
            Ok(code) => code,
            Err(err) => finish(Err(err)),
        },
        Command::Unlock(args) => match unlock::run(&args).await {
            Ok(code) => code,
            Err(err) => finish(Err(err)),
        },
        Command::SampleData(args) => finish(sample_data::run(&args)),
        Command::Scheduler(args) => finish(crate::engine::cluster::run_scheduler(args).await),
        Command::Executor(args) => finish(crate::engine::cluster::run_executor(args).await),
    }
}
