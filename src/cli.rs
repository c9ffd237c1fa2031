//! The `lifemap` command line: argument parsing, logging, and turning outcomes into exit codes.
//!
//! stdout carries results (for `run`, a one-line JSON summary last, which Airflow's XCom reads);
//! logs and progress go to stderr.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, Overrides, Pipeline, parse_ds};
use crate::engine::session;
use crate::error::{Error, exit};
use crate::progress::Progress;
use crate::runner::{self, RunOptions};
use crate::{sample, sources, transform};

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   the run failed
  2   configuration or usage error (bad pipeline, bad flag, refused credentials)
  3   data-quality failure: nothing was published
  75  temporary failure (storage, network or mail server unavailable, or another run of
      this ds in progress): safe to retry
  99  nothing to do: no input for this ds (mark the task skipped)";

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
    /// of every check.
    Plan(PipelineArgs),
    /// Render the pipeline's report from the marts already published for --ds, without
    /// sending it: for previews and template work.
    Report(ReportArgs),
    /// Write a deterministic sample of customer exports (events, orders, customers, feedback).
    SampleData(SampleArgs),
    /// Start a Ballista scheduler with lifemap's SQL functions and S3 access (see `--engine`).
    Scheduler(crate::engine::cluster::SchedulerArgs),
    /// Start a Ballista executor with lifemap's SQL functions and S3 access, serving a scheduler.
    Executor(crate::engine::cluster::ExecutorArgs),
}

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

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Where to write the HTML (images embedded); default `<ds>-<pipeline>.html` here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The pipeline file (e.g. pipelines/customer_lifecycle.yaml).
    pub pipeline: PathBuf,

    /// Logical date YYYY-MM-DD; default: yesterday in the pipeline's time zone.
    #[arg(long, value_parser = parse_ds)]
    pub ds: Option<NaiveDate>,

    /// Override a pipeline var (repeatable): --var marts_uri=s3://acme/marts
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

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
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Known customers to generate (one anonymous prospect comes on top for every two).
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,

    /// Stop at about this many events instead (customers are then unlimited), e.g. 10000000.
    #[arg(long)]
    pub events: Option<u64>,

    /// Seed of the generator: the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Output folder (the exports root).
    #[arg(long, default_value = "data/sample")]
    pub out: PathBuf,

    /// Last day of generated activity.
    #[arg(long, value_parser = parse_ds, default_value = "2026-10-31")]
    pub end: NaiveDate,

    /// Days of history before --end.
    #[arg(long, default_value_t = 365)]
    pub days: u32,

    /// How the event files are written: ndjson-gz (the contract) or parquet (run the bundled
    /// pipeline on them with `--var events_format=parquet`).
    #[arg(long, value_enum, default_value_t)]
    pub events_format: sample::EventsFormat,

    /// Also write every customer's behaviour archetype to this CSV file (customer_id,archetype),
    /// to score personas against (benches/personas.sh).
    #[arg(long)]
    pub archetypes: Option<PathBuf>,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    config::parse_bytes(text)
}

fn parse_engine_flag(text: &str) -> Result<String, String> {
    config::parse_engine(text).map(|_| text.to_string())
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
        Command::Run(args) => run_command(args, progress_allowed).await,
        Command::Validate(args) => report(validate(&args).await),
        Command::Check(args) => check_command(&args, progress_allowed).await,
        Command::Plan(args) => report(plan(&args).await),
        Command::Report(args) => report(render_report(&args).await),
        Command::SampleData(args) => report(sample_data(&args)),
        Command::Scheduler(args) => report(crate::engine::cluster::run_scheduler(args).await),
        Command::Executor(args) => report(crate::engine::cluster::run_executor(args).await),
    }
}

/// Print an error the way every command does: `error:` and a `hint:` when there is one.
pub fn print_error(err: &Error) {
    match err {
        Error::Invalid(diagnostics) => eprintln!("error: {diagnostics}"),
        other => {
            eprintln!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !other.to_string().contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                source = cause.source();
            }
        }
    }
    if let Some(hint) = err.hint() {
        eprintln!("  hint: {hint}");
    }
}

fn report(outcome: Result<(), Error>) -> i32 {
    match outcome {
        Ok(()) => exit::SUCCESS,
        Err(err) => {
            print_error(&err);
            err.exit_code()
        }
    }
}

fn overrides(
    args: &PipelineArgs,
    ds: Option<NaiveDate>,
    memory_limit: Option<u64>,
    engine: &Option<String>,
) -> Overrides {
    Overrides {
        ds,
        vars: args.vars.clone(),
        memory_limit,
        engine: engine.clone(),
    }
}

async fn run_command(args: RunArgs, progress_allowed: bool) -> i32 {
    let dates: Vec<Option<NaiveDate>> = match (args.from, args.to) {
        (Some(from), Some(to)) if from > to => {
            return run_refused(None, Error::Usage(format!("--from {from} is after --to {to}")));
        }
        (Some(from), Some(to)) => from.iter_days().take_while(|d| *d <= to).map(Some).collect(),
        _ => vec![args.pipeline.ds],
    };
    let options = RunOptions {
        select: args.select.clone(),
        progress: progress_allowed,
        resend: args.resend,
        skip_report: args.no_report,
        checks_only: false,
    };
    let mut last_code = exit::SUCCESS;
    let mut summaries = Vec::new();
    for ds in &dates {
        let pipeline = match config::load(
            &args.pipeline.pipeline,
            &overrides(&args.pipeline, *ds, args.memory_limit, &args.engine),
        ) {
            Ok(pipeline) => pipeline,
            Err(diagnostics) => return run_refused(ds.map(|d| d.to_string()), Error::Invalid(diagnostics)),
        };
        tracing::info!(pipeline = %pipeline.name, ds = %pipeline.date.ds_string(), "run starting");
        let progress = Progress::new(options.progress);
        let (results, outcome) = runner::run(&pipeline, &options, &progress).await;
        println!("{}", results.summary_line());
        summaries.push(serde_json::json!({"ds": results.ds, "status": results.status, "exit_code": results.exit_code}));
        match outcome {
            Ok(()) => tracing::info!(ds = %results.ds, duration_ms = results.duration_ms, "run succeeded"),
            Err(err) => {
                print_error(&err);
                last_code = err.exit_code();
                // A date with no input is skipped; any other failure stops a backfill.
                if last_code != exit::NOTHING_TO_DO {
                    break;
                }
            }
        }
    }
    if dates.len() > 1 {
        let failed = summaries
            .iter()
            .any(|s| s["exit_code"] != exit::SUCCESS && s["exit_code"] != exit::NOTHING_TO_DO);
        let succeeded = summaries.iter().filter(|s| s["exit_code"] == exit::SUCCESS).count();
        let code = if failed {
            last_code
        } else if succeeded == 0 {
            exit::NOTHING_TO_DO
        } else {
            exit::SUCCESS
        };
        let line = serde_json::json!({
            "status": if failed { "failed" } else if succeeded == 0 { "skipped" } else { "success" },
            "exit_code": code,
            "from": args.from.map(|d| d.to_string()),
            "to": args.to.map(|d| d.to_string()),
            "runs": summaries,
        });
        println!("{line}");
        return code;
    }
    last_code
}

/// A run that cannot start: the error on stderr, the JSON summary line on stdout.
fn run_refused(ds: Option<String>, err: Error) -> i32 {
    print_error(&err);
    println!("{}", runner::failure_line(ds, &runner::ErrorReport::of(&err)));
    err.exit_code()
}

async fn check_command(args: &CheckArgs, progress_allowed: bool) -> i32 {
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
    };
    let progress = Progress::new(options.progress);
    let (results, outcome) = runner::run(&pipeline, &options, &progress).await;
    let failed = |severity| {
        results
            .checks
            .iter()
            .filter(|c| c.status == "failed" && c.severity == severity)
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

/// Register sources for planning: declared schemas as empty tables, others inferred from files.
async fn register_for_planning(ctx: &datafusion::prelude::SessionContext, pipeline: &Pipeline) -> Vec<Error> {
    let mut problems = Vec::new();
    for source in &pipeline.sources {
        match sources::register_declared(ctx, source) {
            Ok(true) => {}
            Ok(false) => {
                if let Err(err) = sources::register(ctx, source).await {
                    problems.push(err);
                }
            }
            Err(err) => problems.push(err),
        }
    }
    problems
}

async fn validate(args: &PipelineArgs) -> Result<(), Error> {
    let pipeline = config::load(&args.pipeline, &overrides(args, args.ds, None, &None))?;
    let graph = transform::resolve(&pipeline)?;
    let ctx = session::create_local(&pipeline)?;
    let mut problems = register_for_planning(&ctx, &pipeline).await;
    let (planned, failures) = transform::plan_all(&ctx, &pipeline, &graph).await;
    problems.extend(failures);
    if let Some(report) = &pipeline.report
        && problems.is_empty()
    {
        let steps: std::collections::HashMap<&str, &datafusion::arrow::datatypes::SchemaRef> = planned
            .iter()
            .map(|(index, schema)| (pipeline.steps[*index].name.as_str(), schema))
            .collect();
        let mart_schemas = pipeline
            .marts
            .iter()
            .filter_map(|mart| Some((mart.name.clone(), (*steps.get(mart.from.as_str())?).clone())))
            .collect();
        if let Err(err) = crate::report::validate(&pipeline, report, &mart_schemas).await {
            problems.push(err);
        }
    }
    if problems.is_empty() {
        println!(
            "✓ {}: {} sources, {} steps planned, {} marts{}",
            pipeline.file.display(),
            pipeline.sources.len(),
            planned.len(),
            pipeline.marts.len(),
            if pipeline.report.is_some() {
                ", report templates rendered"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let count = problems.len();
    for problem in &problems {
        println!("✗ {problem}");
    }
    Err(Error::Usage(format!(
        "{count} problem{} in {}",
        if count == 1 { "" } else { "s" },
        pipeline.file.display()
    )))
}

async fn plan(args: &PipelineArgs) -> Result<(), Error> {
    let pipeline = config::load(&args.pipeline, &overrides(args, args.ds, None, &None))?;
    let graph = transform::resolve(&pipeline)?;
    let ctx = session::create_local(&pipeline)?;
    let problems = register_for_planning(&ctx, &pipeline).await;
    if let Some(first) = problems.into_iter().next() {
        return Err(first);
    }
    let (planned, failures) = transform::plan_all(&ctx, &pipeline, &graph).await;
    println!(
        "pipeline {} for ds {} (as_of {})",
        pipeline.name,
        pipeline.date.ds_string(),
        pipeline.date.as_of_rfc3339()
    );
    for (position, (index, schema)) in planned.iter().enumerate() {
        let step = &pipeline.steps[*index];
        let reads: Vec<&str> = graph.upstream[*index]
            .iter()
            .map(|&i| pipeline.steps[i].name.as_str())
            .collect();
        println!("\n{}. {} ({})", position + 1, step.name, step.origin);
        if !reads.is_empty() {
            println!("   after: {}", reads.join(", "));
        }
        let marts: Vec<&str> = pipeline
            .marts
            .iter()
            .filter(|m| m.from == step.name)
            .map(|m| m.name.as_str())
            .collect();
        if !marts.is_empty() {
            println!("   publishes: {}", marts.join(", "));
        }
        println!("   sql:");
        for line in step.sql.trim_end().lines() {
            println!("     {line}");
        }
        println!("   schema:");
        for field in schema.fields() {
            println!(
                "     {}: {}{}",
                field.name(),
                field.data_type(),
                if field.is_nullable() { "" } else { " not null" }
            );
        }
    }
    for check in &pipeline.checks {
        println!(
            "\ncheck {} ({}, {})",
            check.name,
            check.kind,
            match check.severity {
                config::raw::Severity::Error => "error",
                config::raw::Severity::Warn => "warn",
            }
        );
        println!("   failing rows:");
        for line in check.sql.trim_end().lines() {
            println!("     {line}");
        }
    }
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

async fn render_report(args: &ReportArgs) -> Result<(), Error> {
    let pipeline = config::load(
        &args.pipeline.pipeline,
        &overrides(&args.pipeline, args.pipeline.ds, None, &None),
    )?;
    let Some(report) = &pipeline.report else {
        return Err(Error::Usage(format!(
            "{} has no `report:` section",
            pipeline.file.display()
        )));
    };
    let preview = crate::context::RunContext::local(&pipeline, "preview")?;
    let data = crate::report::load(&preview, report).await?;
    let run = runner::last_run_info(&preview.layout).await;
    let rendered = crate::report::render(&pipeline, report, &data, &run)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.html", pipeline.date.ds_string(), pipeline.name)));
    std::fs::write(&out, rendered.standalone_html()).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    println!(
        "{}",
        serde_json::json!({
            "subject": rendered.subject,
            "out": out.display().to_string(),
            "images": rendered.images.len(),
            "attachments": rendered.attachments.iter().map(|a| a.filename.clone()).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

fn sample_data(args: &SampleArgs) -> Result<(), Error> {
    let settings = sample::SampleSettings {
        customers: if args.events.is_some() {
            u64::MAX
        } else {
            args.customers
        },
        events: args.events,
        seed: args.seed,
        end: args.end,
        days: args.days,
        events_format: args.events_format,
        archetypes: args.archetypes.clone(),
    };
    let stats = sample::generate(&args.out, &settings)?;
    println!("{}", serde_json::to_string(&stats).unwrap_or_default());
    Ok(())
}
