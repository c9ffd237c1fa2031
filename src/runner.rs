//! One run of a pipeline for one `ds`: sources → steps (each followed by the marts and checks it
//! completes, then dropping the tables nothing later reads) → publish → report (rendered from the
//! published marts, archived, delivered once per `ds`) → run results.
//!
//! The run's results are written to `<output>/_runs/ds=<ds>/run_results.json` whether it
//! succeeds or fails (when the storage lets us), so a scheduler or a person can see what happened.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::lineage::EventType;

use crate::config::{Pipeline, TableFormat};
use crate::context::RunContext;
use crate::error::{Error, exit};
use crate::layout::{OutputLayout, RUN_RESULTS};
use crate::marts::{MartWriter, StagedMart};
use crate::quality::CheckOutcome;
use crate::sources::{self, SourceSummary};
use crate::state::{InputChanges, Inventory, inventory};
use crate::storage;
use crate::transform::{self, StepGraph, StepOutcome};

/// Choices made on the command line for a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only these steps (or the steps feeding these marts) and what they need.
    pub select: Vec<String>,
    /// Show a progress spinner (a terminal is watching).
    pub progress: bool,
    /// Send the report even if this ds was sent before.
    pub resend: bool,
    /// Neither render nor send the report.
    pub skip_report: bool,
    /// `lifemap check`: run only the steps the checks read and the checks; publish nothing, send
    /// nothing, and leave `run_results.json` of the last run alone.
    pub checks_only: bool,
    /// Compute incremental steps from all their input (see [`RunContext::full_refresh`]).
    pub full_refresh: bool,
    /// Cancelled by a signal: the run stops at once, except while publishing (see [`cancellable`]).
    pub cancel: CancellationToken,
}

/// What became of a mart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MartStatus {
    Published,
}

#[derive(Debug, Clone, Serialize)]
pub struct MartOutcome {
    pub name: String,
    pub status: MartStatus,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub location: String,
    pub duration_ms: u64,
    /// The version of the mart's Delta table this run committed (Delta marts only): a reader of
    /// every mart of one run reads each table at its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<u64>,
    /// Column names and types, for lineage.
    #[serde(skip)]
    pub columns: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub rows: u64,
    pub bytes: u64,
    pub source_files: usize,
    pub source_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    pub message: String,
    pub exit_code: i32,
    /// What to do about it, when lifemap knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

impl ErrorReport {
    pub fn of(err: &Error) -> Self {
        Self {
            message: err.to_string(),
            exit_code: err.exit_code(),
            hint: err.hint(),
        }
    }
}

/// The one-line summary of a `run` that failed before it started (a pipeline that does not load,
/// a bad flag): the keys of [`RunResults::summary_line`], so a scheduler reads every exit alike.
pub fn failure_line(ds: Option<String>, error: &ErrorReport) -> String {
    serde_json::json!({
        "status": RunStatus::of_exit_code(error.exit_code),
        "exit_code": error.exit_code,
        "pipeline": null,
        "ds": ds,
        "run_id": null,
        "rows": {},
        "duration_ms": 0,
        "report": null,
        "inputs": null,
        "error": error.message,
        "hint": error.hint,
    })
    .to_string()
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Success,
    Failed,
    /// Nothing to do: no input for this `ds`.
    Skipped,
    /// Stopped by a signal.
    Cancelled,
}

impl RunStatus {
    /// The status a run that exited with `code` ends in.
    pub fn of_exit_code(code: i32) -> Self {
        match code {
            exit::SUCCESS => RunStatus::Success,
            exit::NOTHING_TO_DO => RunStatus::Skipped,
            exit::CANCELLED => RunStatus::Cancelled,
            _ => RunStatus::Failed,
        }
    }
}

/// `run_results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    pub lifemap_version: &'static str,
    pub pipeline: String,
    pub pipeline_hash: String,
    pub run_id: String,
    pub ds: String,
    pub as_of: String,
    pub status: RunStatus,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub vars: BTreeMap<String, String>,
    pub selected: Vec<String>,
    pub sources: Vec<SourceSummary>,
    pub steps: Vec<StepOutcome>,
    pub checks: Vec<crate::quality::CheckOutcome>,
    pub marts: Vec<MartOutcome>,
    pub totals: Totals,
    /// The report's delivery, when the pipeline has a report and it was sent (or had been).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::delivery::DeliveryRecord>,
    /// How the sources' objects differ from the last successful run's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputChanges>,
    /// Rows of forgotten persons this run removed from the partitions of other dates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgotten_in_history: Option<crate::history::Forgotten>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// The run's id in its OpenLineage events, when lineage is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage_run_id: Option<String>,
}

impl RunResults {
    /// The results of a run that is starting: failed until it says otherwise.
    fn starting(pipeline: &Pipeline, options: &RunOptions) -> Self {
        RunResults {
            lifemap_version: env!("CARGO_PKG_VERSION"),
            pipeline: pipeline.name.clone(),
            pipeline_hash: pipeline.hash.clone(),
            run_id: new_run_id(),
            ds: pipeline.date.ds_string(),
            as_of: pipeline.date.as_of_rfc3339(),
            status: RunStatus::Failed,
            exit_code: exit::RUN_FAILED,
            started_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            finished_at: String::new(),
            duration_ms: 0,
            vars: pipeline.printable_vars.clone(),
            selected: options.select.clone(),
            sources: Vec::new(),
            steps: Vec::new(),
            checks: Vec::new(),
            marts: Vec::new(),
            totals: Totals {
                rows: 0,
                bytes: 0,
                source_files: 0,
                source_bytes: 0,
            },
            report: None,
            inputs: None,
            forgotten_in_history: None,
            error: None,
            lineage_run_id: None,
        }
    }

    /// The one-line summary printed last on stdout.
    pub fn summary_line(&self) -> String {
        let rows: BTreeMap<&str, u64> = self.marts.iter().map(|m| (m.name.as_str(), m.rows)).collect();
        let summary = serde_json::json!({
            "status": self.status,
            "exit_code": self.exit_code,
            "pipeline": self.pipeline,
            "ds": self.ds,
            "run_id": self.run_id,
            "rows": rows,
            "duration_ms": self.duration_ms,
            "report": self.report.as_ref().map(|r| r.status),
            "inputs": self.inputs.as_ref().map(InputChanges::counts),
            "error": self.error.as_ref().map(|e| e.message.clone()),
            "hint": self.error.as_ref().and_then(|e| e.hint),
        });
        summary.to_string()
    }
}

fn new_run_id() -> String {
    format!("{}-{:08x}", Utc::now().format("%Y%m%dT%H%M%S"), rand::random::<u32>())
}

/// Run `pipeline`; always returns results, with the error when the run failed.
pub async fn run(
    pipeline: &Pipeline,
    options: &RunOptions,
    progress: &crate::progress::Progress,
) -> (RunResults, Result<(), Error>) {
    let clock = Instant::now();
    let mut results = RunResults::starting(pipeline, options);
    // `check` publishes nothing: no lineage either.
    let lineage = crate::lineage::Lineage::from_env(&pipeline.name);
    let lineage = (lineage.enabled() && !options.checks_only).then_some(lineage);
    results.lineage_run_id = lineage.as_ref().map(crate::lineage::Lineage::run_id);
    let (run, lock, outcome) = match RunContext::new(pipeline, &results.run_id) {
        Err(err) => (None, None, Err(err)),
        Ok(mut run) => {
            run.full_refresh = options.full_refresh;
            // `check` publishes nothing, so it needs no lock.
            let lock = if options.checks_only {
                Ok(None)
            } else {
                acquire_lock(&run, &options.cancel).await.map(Some)
            };
            match lock {
                Ok(lock) => {
                    if let Some(lineage) = &lineage {
                        let inputs = lineage_inputs(pipeline, &results);
                        lineage.emit(EventType::Start, &inputs, &[], None).await;
                    }
                    // Holding the lock, before anything else: what a killed run of this `ds` left goes.
                    let outcome = if lock.is_some() {
                        clear_leftovers(&run).await
                    } else {
                        Ok(())
                    };
                    let outcome = match outcome {
                        Ok(()) => execute(&run, options, progress, &mut results).await,
                        Err(err) => Err(err),
                    };
                    (Some(run), lock, outcome)
                }
                Err(err) => (Some(run), None, Err(err)),
            }
        }
    };
    progress.finish();
    results.finished_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    results.duration_ms = clock.elapsed().as_millis() as u64;
    results.exit_code = match &outcome {
        Ok(()) => exit::SUCCESS,
        Err(err) => {
            results.error = Some(ErrorReport::of(err));
            err.exit_code()
        }
    };
    results.status = RunStatus::of_exit_code(results.exit_code);
    // Configuration errors happen before a store is known; there is nowhere to write then. A run
    // refused by the lock leaves the results of the run holding it alone.
    if !options.checks_only
        && !matches!(
            outcome,
            Err(Error::Invalid(_) | Error::Usage(_) | Error::Config(_) | Error::Busy(_))
        )
        && let Some(run) = &run
        && let Err(err) = write_results(run, &results).await
    {
        tracing::warn!(error = %err, "could not write run_results.json");
    }
    // A run that never held the lock never started, for lineage either.
    if let Some(lineage) = &lineage
        && lock.is_some()
    {
        let kind = match results.exit_code {
            exit::SUCCESS | exit::NOTHING_TO_DO => EventType::Complete,
            exit::CANCELLED => EventType::Abort,
            _ => EventType::Fail,
        };
        let error = results.error.as_ref().map(|error| error.message.as_str());
        let (inputs, outputs) = (lineage_inputs(pipeline, &results), lineage_outputs(pipeline, &results));
        lineage.emit(kind, &inputs, &outputs, error).await;
    }
    if let Some(lock) = lock {
        lock.release().await;
    }
    (results, outcome)
}

/// The checks of `results` on `tables`, as lineage assertions.
fn assertions_on(pipeline: &Pipeline, results: &RunResults, tables: &[&str]) -> Vec<crate::lineage::Assertion> {
    pipeline
        .checks
        .iter()
        .zip(&results.checks)
        .filter(|(check, _)| check.tables.iter().any(|table| tables.contains(&table.as_str())))
        .filter(|(_, outcome)| outcome.status != crate::quality::CheckStatus::Skipped)
        .map(|(check, outcome)| crate::lineage::Assertion {
            name: check.name.clone(),
            kind: check.kind.to_string(),
            success: outcome.status == crate::quality::CheckStatus::Passed,
            severity: format!("{:?}", check.severity).to_lowercase(),
        })
        .collect()
}

/// The sources, with their declared columns and the checks on them.
fn lineage_inputs(pipeline: &Pipeline, results: &RunResults) -> Vec<crate::lineage::Dataset> {
    pipeline
        .sources
        .iter()
        .map(|source| crate::lineage::Dataset {
            location: source.location.clone(),
            fields: source
                .schema
                .iter()
                .flatten()
                .chain(&source.partitions)
                .map(|(name, kind)| (name.clone(), kind.to_string()))
                .collect(),
            statistics: None,
            assertions: assertions_on(pipeline, results, &[source.name.as_str()]),
        })
        .collect()
}

/// The mart partitions published, with their columns, sizes and the checks on them.
fn lineage_outputs(pipeline: &Pipeline, results: &RunResults) -> Vec<crate::lineage::Dataset> {
    results
        .marts
        .iter()
        .filter(|mart| mart.status == MartStatus::Published)
        .map(|mart| {
            let from = pipeline
                .marts
                .iter()
                .find(|m| m.name == mart.name)
                .map_or(mart.name.as_str(), |m| m.from.as_str());
            crate::lineage::Dataset {
                location: mart.location.clone(),
                fields: mart.columns.clone(),
                statistics: Some((mart.rows, mart.bytes, mart.files)),
                assertions: assertions_on(pipeline, results, &[mart.name.as_str(), from]),
            }
        })
        .collect()
}

/// The lock of this pipeline's `ds` (see [`crate::lock`]); losing it cancels the run.
async fn acquire_lock(run: &RunContext<'_>, cancel: &CancellationToken) -> Result<crate::lock::RunLock, Error> {
    crate::lock::RunLock::acquire(
        run.layout.runs(),
        &run.run_id,
        run.pipeline.lock_timeout,
        Some(cancel.clone()),
    )
    .await
}

async fn clear_leftovers(run: &RunContext<'_>) -> Result<(), Error> {
    crate::marts::clear_leftovers(&run.layout, &run.pipeline.marts)
        .await
        .map(|_| ())
}

/// Vacuum every Delta mart: delete the files its log removed longer ago than its retention.
/// Returns the files deleted per mart.
pub async fn vacuum_delta_marts(pipeline: &Pipeline) -> Result<BTreeMap<String, usize>, Error> {
    let run = RunContext::local(pipeline, &format!("cleanup-{}", new_run_id()))?;
    let mut vacuumed = BTreeMap::new();
    for mart in pipeline.marts.iter().filter(|mart| mart.format == TableFormat::Delta) {
        let deleted = crate::delta::vacuum(&run.layout.mart(&mart.name)).await?;
        vacuumed.insert(mart.name.clone(), deleted);
    }
    Ok(vacuumed)
}

/// What `lifemap cleanup` did for one `ds`.
#[derive(Debug, Clone, Serialize)]
pub struct Cleaned {
    pub ds: String,
    /// What was removed; none when a run of this `ds` holds its lock.
    pub removed: Option<crate::marts::Leftovers>,
}

/// Remove what killed runs left behind for `only` (or for every `ds` with a staging folder or a
/// mart partition), each `ds` under its lock; a `ds` whose lock a live run holds is left alone.
pub async fn cleanup(pipeline: &Pipeline, only: Option<&str>) -> Result<Vec<Cleaned>, Error> {
    let run = RunContext::local(pipeline, &format!("cleanup-{}", new_run_id()))?;
    let dates = match only {
        Some(ds) => vec![ds.to_string()],
        None => {
            let marts = pipeline.marts.iter().map(|mart| mart.name.as_str());
            crate::marts::dates_with_outputs(&run.layout, marts).await?
        }
    };
    let mut cleaned = Vec::with_capacity(dates.len());
    for ds in dates {
        let layout = run.layout.for_ds(&ds);
        let lock =
            match crate::lock::RunLock::acquire(layout.runs(), layout.run_id(), pipeline.lock_timeout, None).await {
                Ok(lock) => lock,
                Err(Error::Busy(busy)) => {
                    tracing::warn!(ds, %busy, "a run of this ds is in progress: left alone");
                    cleaned.push(Cleaned { ds, removed: None });
                    continue;
                }
                Err(err) => return Err(err),
            };
        let removed = crate::marts::clear_leftovers(&layout, &pipeline.marts).await;
        lock.release().await;
        cleaned.push(Cleaned {
            ds,
            removed: Some(removed?),
        });
    }
    Ok(cleaned)
}

async fn write_results(run: &RunContext<'_>, results: &RunResults) -> Result<(), Error> {
    let body = serde_json::to_vec_pretty(results).map_err(|err| Error::Mart {
        mart: "_runs".into(),
        source: Box::new(err),
    })?;
    storage::put(&run.layout.runs(), RUN_RESULTS, body).await
}

/// The run id and checks of the last run of the pipeline's ds, from its `run_results.json`
/// (empty when there is none), for a report rendered after the run.
pub async fn last_run_info(layout: &OutputLayout) -> crate::report::RunInfo {
    let read = async {
        let bytes = storage::get(&layout.runs(), RUN_RESULTS).await.ok()??;
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()
    };
    let Some(results) = read.await else {
        return crate::report::RunInfo::default();
    };
    crate::report::RunInfo {
        run_id: results["run_id"].as_str().unwrap_or_default().to_string(),
        checks: results["checks"].as_array().cloned().unwrap_or_default(),
    }
}

/// The marts (and so steps) a selection asks for.
fn selected_marts(pipeline: &Pipeline, select: &[String]) -> Result<Vec<usize>, Error> {
    if select.is_empty() {
        return Ok((0..pipeline.marts.len()).collect());
    }
    let mut chosen = HashSet::new();
    for name in select {
        let matches: Vec<usize> = pipeline
            .marts
            .iter()
            .enumerate()
            .filter(|(_, mart)| &mart.name == name || &mart.from == name)
            .map(|(index, _)| index)
            .collect();
        if matches.is_empty() && pipeline.step(name).is_none() {
            let names = pipeline
                .steps
                .iter()
                .map(|s| s.name.as_str())
                .chain(pipeline.marts.iter().map(|m| m.name.as_str()));
            let hint = crate::config::did_you_mean(name, names)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "--select {name}: no step or mart of that name{hint}"
            )));
        }
        chosen.extend(matches);
    }
    let mut chosen: Vec<usize> = chosen.into_iter().collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// The steps a run computes, in order, and the marts it publishes.
struct Targets {
    steps: Vec<usize>,
    marts: Vec<usize>,
}

/// What `options` asks of the pipeline: every mart (or the selected ones) and what feeds them,
/// and on a full run or `check` what its checks read.
fn targets(pipeline: &Pipeline, graph: &StepGraph, options: &RunOptions) -> Result<Targets, Error> {
    let marts = if options.checks_only {
        Vec::new()
    } else {
        selected_marts(pipeline, &options.select)?
    };
    let position = |name: &str| pipeline.steps.iter().position(|s| s.name == name);
    let mut wanted: Vec<usize> = marts
        .iter()
        .filter_map(|&m| position(&pipeline.marts[m].from))
        .collect();
    wanted.extend(options.select.iter().filter_map(|name| position(name)));
    // A full run computes what its checks read even when no mart needs it; a partial run
    // (--select) skips the checks outside its selection.
    if options.checks_only || options.select.is_empty() {
        wanted.extend(pipeline.checks.iter().flat_map(|check| {
            transform::tables_read(&check.sql)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|table| position(&table))
        }));
    }
    Ok(Targets {
        steps: graph.closure(&wanted),
        marts,
    })
}

async fn execute(
    run: &RunContext<'_>,
    options: &RunOptions,
    progress: &crate::progress::Progress,
    results: &mut RunResults,
) -> Result<(), Error> {
    // Incremental steps keep state shared by every `ds`: one run at a time reads and changes it.
    let state_lock = if run.pipeline.steps.iter().any(|step| step.incremental.is_some()) {
        Some(
            crate::lock::RunLock::acquire(
                run.layout.state(),
                &run.run_id,
                run.pipeline.lock_timeout,
                Some(options.cancel.clone()),
            )
            .await?,
        )
    } else {
        None
    };
    let outcome = execute_locked(run, options, progress, results).await;
    if let Some(lock) = state_lock {
        lock.release().await;
    }
    outcome
}

async fn execute_locked(
    run: &RunContext<'_>,
    options: &RunOptions,
    progress: &crate::progress::Progress,
    results: &mut RunResults,
) -> Result<(), Error> {
    let pipeline = run.pipeline;
    let cancel = &options.cancel;
    let graph = transform::resolve(pipeline)?;
    let targets = targets(pipeline, &graph, options)?;
    let inventory = cancellable(cancel, async {
        progress.message("checking inputs");
        sources::check_ds_input(run).await?;
        progress.message("registering sources");
        results.sources = sources::register_all(run).await?;
        results.totals.source_files = results.sources.iter().map(|s| s.files).sum();
        results.totals.source_bytes = results.sources.iter().map(|s| s.bytes).sum();
        compare_inputs(run, results).await
    })
    .await?;

    let writer = MartWriter::new(run.layout.clone(), &pipeline.name);
    let staged = match cancellable(cancel, compute(run, &graph, &targets, &writer, progress, results)).await {
        Ok(staged) => staged,
        Err(err) => {
            writer.discard().await;
            return Err(err);
        }
    };
    if let Some(err) = crate::quality::blocking_failures(&results.checks) {
        writer.discard().await;
        return Err(err);
    }
    if options.checks_only {
        writer.discard().await;
        return Ok(());
    }
    // Not cancellable: a signal while publishing lets every mart's partition change, then stops.
    progress.message("publishing");
    tracing::info!(marts = staged.len(), "publishing");
    if let Err(err) = publish(&writer, &staged, results).await {
        writer.discard().await;
        return Err(err);
    }
    // A partial run (--select) folded its inputs into some marts only: the next run compares
    // with the last run that published them all.
    if options.select.is_empty()
        && let Err(err) = inventory::save(&run.layout, &inventory).await
    {
        tracing::warn!(error = %err, "could not keep this run's inventory: the next run compares with an older one");
    }
    if cancel.is_cancelled() {
        return Err(cancelled());
    }
    // Forgetting reaches the partitions of other dates once this one is published (a partial
    // run may not have computed what the conditions read).
    if options.select.is_empty() {
        results.forgotten_in_history = Some(crate::history::forget_in_history(run).await?);
    }
    // The report goes out only after every mart it reads is published and every error-level
    // check passed; a partial run (--select) publishes a subset and sends nothing. Cancelled
    // before the mail server accepted it, it goes out with the next run of this ds.
    if let Some(report) = &pipeline.report
        && options.select.is_empty()
        && !options.skip_report
    {
        let sent = cancellable(cancel, send_report(run, report, options.resend, progress, results)).await?;
        results.report = Some(sent);
    }
    Ok(())
}

fn cancelled() -> Error {
    Error::Cancelled("stopped by a signal (SIGTERM or SIGINT), or on losing the run's lock (see the log)".to_string())
}

/// `work`, unless `cancel` fires first: then `work` is dropped, and with it its running queries
/// and the tasks they spawned, and the run ends with [`Error::Cancelled`].
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(cancelled()),
        outcome = work => outcome,
    }
}

/// List what changed in the exports since the last successful run, say so, and refuse to run
/// when partitions an earlier run listed are gone (unless their source allows it). Returns this
/// run's inventory.
async fn compare_inputs(run: &RunContext<'_>, results: &mut RunResults) -> Result<Inventory, Error> {
    let inventory = Inventory::of_run(run.pipeline, &run.layout, &results.sources);
    let previous = inventory::load(&run.layout).await;
    let changes = inventory.changes_since(&previous, run.pipeline);
    if !changes.late.is_empty() || !changes.changed.is_empty() {
        // Every run rebuilds from all it lists, so these are folded in; the log says why the
        // marts of earlier days may differ from this run's.
        tracing::warn!(
            late = changes.late.len(),
            changed = changes.changed.len(),
            first = changes.late.first().or(changes.changed.first()).map(String::as_str),
            "objects were added to or replaced in partitions an earlier run listed: folded into this run"
        );
    }
    if !changes.removed.is_empty() {
        tracing::warn!(
            removed = changes.removed.len(),
            first = changes.removed.first().map(String::as_str),
            "objects an earlier run listed are gone"
        );
    }
    let refused = changes.refused(run.pipeline);
    results.inputs = Some(changes);
    if !refused.is_empty() {
        return Err(Error::RemovedPartitions(refused));
    }
    Ok(inventory)
}

/// Run the steps in order; after each, stage the marts and run the checks it completes, and let
/// go of the tables nothing later reads. Returns the staged marts in the pipeline's order.
async fn compute(
    run: &RunContext<'_>,
    graph: &StepGraph,
    targets: &Targets,
    writer: &MartWriter,
    progress: &crate::progress::Progress,
    results: &mut RunResults,
) -> Result<Vec<StagedMart>, Error> {
    let (pipeline, ctx) = (run.pipeline, &run.session);
    let schedule = transform::schedule(pipeline, graph, &targets.steps, &targets.marts);
    let mut staged = Vec::with_capacity(targets.marts.len());
    let mut checks: Vec<Option<CheckOutcome>> = vec![None; pipeline.checks.len()];
    let mut forgotten = Vec::new();
    for (at, &index) in targets.steps.iter().enumerate() {
        progress.message(&format!("step {}", pipeline.steps[index].name));
        let blame = |err: Error| blame_sources(err, pipeline, graph, index);
        results
            .steps
            .push(transform::run_step(run, graph, index).await.map_err(blame)?);
        for &mart_index in &schedule.marts_after[at] {
            let mart = &pipeline.marts[mart_index];
            progress.message(&format!("writing mart {}", mart.name));
            let frame = ctx.table(mart.from.as_str()).await.map_err(|source| Error::Engine {
                context: format!("mart `{}`", mart.name),
                source,
            })?;
            staged.push((mart_index, writer.write(mart, frame).await.map_err(blame)?));
        }
        for &check_index in &schedule.checks_after[at] {
            let check = &pipeline.checks[check_index];
            progress.message(&format!("checking {}", check.name));
            let previous = match &check.previous_rows_of {
                Some(mart) => crate::marts::previous_partition(&run.layout, mart).await?,
                None => None,
            };
            checks[check_index] = Some(crate::quality::run_check(ctx, check, previous).await?);
        }
        for &step_index in &schedule.forget_after[at] {
            let step = &pipeline.steps[step_index];
            if let Some(spec) = &step.incremental {
                forgotten.push((step_index, transform::partitions_to_forget(run, step, spec).await?));
            }
        }
        // Dropping a table nothing later reads gives its memory back (views hold their inputs).
        for &done in &schedule.release_after[at] {
            let name = pipeline.steps[done].name.as_str();
            if let Err(err) = ctx.deregister_table(name) {
                tracing::debug!(table = name, error = %err, "could not release table");
            }
        }
    }
    results.checks = checks
        .into_iter()
        .zip(&pipeline.checks)
        .map(|(outcome, check)| outcome.unwrap_or_else(|| CheckOutcome::skipped(check)))
        .collect();
    // No step reads kept rows any more: those of forgotten persons go now, whatever comes next.
    for (step_index, keys) in forgotten {
        let step = &pipeline.steps[step_index];
        if let Some(spec) = &step.incremental {
            transform::stop_keeping(run, step, spec, &keys).await?;
        }
    }
    // Published and reported in the order the pipeline lists its marts.
    staged.sort_by_key(|(mart_index, _)| *mart_index);
    Ok(staged.into_iter().map(|(_, mart)| mart).collect())
}

/// A file that cannot be read fails where it is read: name the sources behind the step.
fn blame_sources(err: Error, pipeline: &Pipeline, graph: &StepGraph, index: usize) -> Error {
    let sources = graph.sources_read(pipeline, index);
    if !err.is_unreadable_input() || sources.is_empty() {
        return err;
    }
    Error::Source {
        name: sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("`, `"),
        location: sources
            .iter()
            .map(|s| s.location.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        message: format!("a file could not be read: {err}"),
    }
}

/// Publish the staged marts and record them in the results.
async fn publish(writer: &MartWriter, staged: &[StagedMart], results: &mut RunResults) -> Result<(), Error> {
    let manifests = writer.publish(staged).await?;
    results.marts = staged
        .iter()
        .zip(&manifests)
        .map(|(mart, manifest)| MartOutcome {
            name: mart.name.clone(),
            status: MartStatus::Published,
            rows: manifest.rows,
            bytes: manifest.bytes,
            files: manifest.files.len(),
            location: writer.partition(&mart.name).folder_url(),
            duration_ms: mart.duration_ms,
            delta_version: manifest.delta_version,
            columns: mart
                .schema
                .fields()
                .iter()
                .map(|field| (field.name().clone(), field.data_type().to_string()))
                .collect(),
        })
        .collect();
    results.totals.rows = results.marts.iter().map(|m| m.rows).sum();
    results.totals.bytes = results.marts.iter().map(|m| m.bytes).sum();
    Ok(())
}

/// Render the report from the published marts and deliver it (once per `ds`).
async fn send_report(
    run: &RunContext<'_>,
    report: &crate::config::Report,
    resend: bool,
    progress: &crate::progress::Progress,
    results: &RunResults,
) -> Result<crate::delivery::DeliveryRecord, Error> {
    progress.message("rendering the report");
    let data = crate::report::load(run, report).await?;
    let info = crate::report::RunInfo {
        run_id: results.run_id.clone(),
        checks: results
            .checks
            .iter()
            .filter_map(|check| serde_json::to_value(check).ok())
            .collect(),
    };
    let rendered = crate::report::render(run.pipeline, report, &data, &info)?;
    progress.message("delivering the report");
    crate::delivery::deliver(run, report, &rendered, resend).await
}
