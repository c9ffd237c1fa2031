//! `lifemap run` for one `ds`: load the pipeline for that date, run it, and print its JSON summary
//! line last, whatever the outcome.

use chrono::NaiveDate;
use clap::Args;

use super::args::{PipelineArgs, overrides, parse_engine_flag, parse_size};
use super::output::print_error;
use crate::config;
use crate::config::parse_ds;
use crate::error::{Error, exit};
use crate::progress::Progress;
use crate::runner::{self, RunOptions};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// First date of a backfill; runs every date up to --to, in order.
    #[arg(long, value_parser = parse_ds, requires = "to", conflicts_with = "ds")]
    pub from: Option<NaiveDate>,

    /// Last date of a backfill (inclusive).
    #[arg(long, value_parser = parse_ds, requires = "from")]
    pub to: Option<NaiveDate>,

    /// Run only this step or mart and what it needs (repeatable); only marts fed by the
    /// selection are published.
    #[arg(long, value_name = "STEP")]
    pub select: Vec<String>,

    /// Memory for the run, e.g. 4GiB: DataFusion gets three quarters and spills to disk beyond.
    /// Default: 70 % of the machine's (or container's) memory.
    #[arg(long, value_parser = parse_size)]
    pub memory_limit: Option<u64>,

    /// Where SQL runs: `local` (this process) or a Ballista scheduler, `df://host:50050`.
    /// Wins over the pipeline's `engine.scheduler`.
    #[arg(long, value_name = "local|df://HOST:PORT", value_parser = parse_engine_flag)]
    pub engine: Option<String>,

    /// Send the report even though it was already sent for this ds.
    #[arg(long, conflicts_with = "no_report")]
    pub resend: bool,

    /// Publish the marts but neither render nor send the report (e.g. for a backfill).
    #[arg(long)]
    pub no_report: bool,

    /// Compute incremental steps from all their input, replacing what earlier runs kept (in a
    /// backfill, for its first date).
    #[arg(long)]
    pub full_refresh: bool,
}

impl RunArgs {
    pub(super) fn options(&self, progress: bool) -> RunOptions {
        let ds = self.pipeline.ds.or(self.from).map(|ds| ds.to_string());
        RunOptions {
            cancel: cancel_on_signals(ds),
            select: self.select.clone(),
            progress,
            resend: self.resend,
            skip_report: self.no_report,
            checks_only: false,
            full_refresh: self.full_refresh,
        }
    }
}

/// What a scheduler learns of one date's run: its summary, as printed.
pub(super) struct DateOutcome {
    pub summary: serde_json::Value,
    pub exit_code: i32,
    /// The pipeline could not be loaded: nothing ran.
    pub refused: bool,
}

/// Run the pipeline for `ds` (its default when `None`); the summary line goes to stdout.
pub(super) async fn run_date(args: &RunArgs, ds: Option<NaiveDate>, options: &RunOptions) -> DateOutcome {
    let pipeline = match config::load(
        &args.pipeline.pipeline,
        &overrides(&args.pipeline, ds, args.memory_limit, &args.engine),
    ) {
        Ok(pipeline) => pipeline,
        Err(diagnostics) => {
            let exit_code = run_refused(ds.map(|d| d.to_string()), Error::Invalid(diagnostics));
            return DateOutcome {
                summary: serde_json::json!({"ds": ds.map(|d| d.to_string()), "status": runner::RunStatus::Failed, "exit_code": exit_code}),
                exit_code,
                refused: true,
            };
        }
    };
    tracing::info!(pipeline = %pipeline.name, ds = %pipeline.date.ds_string(), "run starting");
    let progress = Progress::new(options.progress);
    let (results, outcome) = runner::run(&pipeline, options, &progress).await;
    println!("{}", results.summary_line());
    match &outcome {
        Ok(()) => tracing::info!(ds = %results.ds, duration_ms = results.duration_ms, "run succeeded"),
        Err(err) => print_error(err),
    }
    DateOutcome {
        summary: serde_json::json!({"ds": results.ds, "status": results.status, "exit_code": results.exit_code}),
        exit_code: results.exit_code,
        refused: false,
    }
}

/// `lifemap run` for one `ds`.
pub(super) async fn run(args: RunArgs, progress: bool) -> i32 {
    let options = args.options(progress);
    run_date(&args, args.pipeline.ds, &options).await.exit_code
}

/// A token cancelled by the first SIGTERM or SIGINT; the second exits at once, with exit code
/// 130 and its JSON line (for `ds`), leaving what the run had started for the next run to clear.
pub(super) fn cancel_on_signals(ds: Option<String>) -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let cancel = token.clone();
    let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::warn!("cannot listen for signals: SIGTERM and SIGINT stop the run without cleaning up");
        return token;
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "stopping: queries are cancelled and nothing is half-published; a second signal exits at once"
        );
        cancel.cancel();
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        let report = runner::ErrorReport {
            message: "cancelled: a second signal stopped the run at once; the next run of this ds clears what it left"
                .to_string(),
            exit_code: exit::CANCELLED,
            hint: None,
        };
        println!("{}", runner::failure_line(ds, &report));
        std::process::exit(exit::CANCELLED);
    });
    token
}

/// A run that cannot start: the error on stderr, the JSON summary line on stdout.
pub(super) fn run_refused(ds: Option<String>, err: Error) -> i32 {
    print_error(&err);
    println!("{}", runner::failure_line(ds, &runner::ErrorReport::of(&err)));
    err.exit_code()
}
