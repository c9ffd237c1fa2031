//! `lifemap check`: the pipeline's data-quality checks alone for a `ds`, with the steps they read;
//! nothing published, nothing sent. One JSON line with every check's outcome.

use clap::Args;

use super::args::{PipelineArgs, overrides, parse_engine_flag, parse_size};
use super::output::report;
use crate::config;
use crate::error::Error;
use crate::progress::Progress;
use crate::quality::CheckStatus;
use crate::runner::{self, RunOptions};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Memory for the run, e.g. 4GiB: DataFusion gets three quarters and spills to disk beyond.
    /// Default: 70 % of the machine's (or container's) memory.
    #[arg(long, value_parser = parse_size)]
    pub memory_limit: Option<u64>,

    /// Where SQL runs: `local` (this process) or a Ballista scheduler, `df://host:50050`.
    /// Wins over the pipeline's `engine.scheduler`.
    #[arg(long, value_name = "local|df://HOST:PORT", value_parser = parse_engine_flag)]
    pub engine: Option<String>,
}

pub(super) async fn run(args: &CheckArgs, progress_allowed: bool) -> i32 {
    let pipeline = match config::load(
        &args.pipeline.pipeline,
        &overrides(&args.pipeline, args.pipeline.ds, args.memory_limit, &args.engine),
    ) {
        Ok(pipeline) => pipeline,
        Err(diagnostics) => return report(Err(Error::Invalid(diagnostics))),
    };
    if pipeline.checks.is_empty() {
        return report(Err(Error::Usage(format!(
            "{} declares no checks",
            pipeline.file.display()
        ))));
    }
    let options = RunOptions {
        select: Vec::new(),
        progress: progress_allowed,
        resend: false,
        skip_report: true,
        checks_only: true,
        full_refresh: false,
        cancel: super::run::cancel_on_signals(None),
    };
    let progress = Progress::new(options.progress);
    let (results, outcome) = runner::run(&pipeline, &options, &progress).await;
    let failed = |severity| {
        results
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed && c.severity == severity)
            .count()
    };
    println!(
        "{}",
        serde_json::json!({
            "status": results.status,
            "exit_code": results.exit_code,
            "pipeline": results.pipeline,
            "ds": results.ds,
            "errors": failed(config::raw::Severity::Error),
            "warnings": failed(config::raw::Severity::Warn),
            "checks": results.checks,
            "duration_ms": results.duration_ms,
        })
    );
    report(outcome)
}
