//! Transform: SQL steps, their dependency order, and running them on DataFusion.
//!
//! A step's dependencies are the tables its SQL reads (found by parsing it, CTE names excluded)
//! plus its `depends_on`. Steps run in dependency order, ties broken by their order in the file.
//! Each step becomes a table named after it: a view, or a materialised in-memory table when
//! several later steps or marts read it (or `materialize: true`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::{cast, concat, filter};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::resolve::resolve_table_references;

use crate::config::{Diagnostic, Diagnostics, Pipeline, Step, did_you_mean};
use crate::context::RunContext;
use crate::error::Error;
use crate::personas::KMeansSpec;

mod incremental;
pub mod located;
pub use incremental::{partitions_to_forget, stop_keeping};
mod planning;
pub(crate) use planning::sql_options;
pub use planning::{StepOutcome, plan_step, step_error};
pub(crate) mod on_cluster;
pub(crate) mod on_disk;

/// The steps of a pipeline in the order they run, with what each reads.
#[derive(Debug, Clone)]
pub struct StepGraph {
    /// Indexes into `pipeline.steps`, in run order.
    pub order: Vec<usize>,
    /// For each step (by index), the steps it needs.
    pub upstream: Vec<BTreeSet<usize>>,
    /// For each step, how many steps and marts read it.
    pub consumers: Vec<usize>,
}

impl StepGraph {
    /// The sources step `index` reads, itself or through the steps it needs.
    pub fn sources_read<'a>(&self, pipeline: &'a Pipeline, index: usize) -> Vec<&'a crate::config::Source> {
        let mut seen = HashSet::new();
        let mut stack = vec![index];
        let mut names = BTreeSet::new();
        while let Some(step) = stack.pop() {
            if !seen.insert(step) {
                continue;
            }
            let spec = &pipeline.steps[step];
            let tables = match &spec.kmeans {
                Some(kmeans) => vec![kmeans.input.clone()],
                None => tables_read(&spec.sql).unwrap_or_default(),
            };
            names.extend(tables.into_iter().filter(|table| pipeline.source(table).is_some()));
            stack.extend(self.upstream[step].iter().copied());
        }
        names.iter().filter_map(|name| pipeline.source(name)).collect()
    }

    /// Indexes of `targets` and everything they need, in run order.
    pub fn closure(&self, targets: &[usize]) -> Vec<usize> {
        let mut needed: HashSet<usize> = HashSet::new();
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(index) = stack.pop() {
            if needed.insert(index) {
                stack.extend(self.upstream[index].iter().copied());
            }
        }
        self.order
            .iter()
            .copied()
            .filter(|index| needed.contains(index))
            .collect()
    }
}

fn step_diagnostic(pipeline: &Pipeline, step: &Step, message: String, hint: Option<String>) -> Diagnostic {
    let text = std::fs::read_to_string(&pipeline.file).unwrap_or_default();
    let needle = format!("name: {}", step.name);
    let (line, column) = match text.find(&needle) {
        Some(index) => {
            let before = &text[..index];
            (
                Some(before.matches('\n').count() + 1),
                Some(index - before.rfind('\n').map_or(0, |nl| nl + 1) + 1),
            )
        }
        None => (None, None),
    };
    Diagnostic {
        file: pipeline.file.clone(),
        line,
        column,
        key: Some(format!("steps.{}", step.name)),
        message,
        hint,
    }
}

/// Names of DataFusion's table functions (`generate_series`, `range`, ...): not tables to resolve.
fn table_functions() -> &'static HashSet<String> {
    static NAMES: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let state = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_default_features()
            .build();
        state.table_functions().keys().cloned().collect()
    })
}

/// The tables a step's SQL reads, as written (lower-cased unless quoted), CTEs excluded.
pub fn tables_read(sql: &str) -> Result<Vec<String>, String> {
    let mut statements = DFParserBuilder::new(sql)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|err| err.to_string())?;
    if statements.len() != 1 {
        return Err(format!(
            "a step holds exactly one SQL query; found {}",
            statements.len()
        ));
    }
    let statement = statements.pop_front().ok_or("empty SQL")?;
    let (tables, _ctes) = resolve_table_references(&statement, true).map_err(|err| err.to_string())?;
    let functions = table_functions();
    let mut names: Vec<String> = tables
        .into_iter()
        .filter(|table| table.schema() != Some("information_schema") && !functions.contains(table.table()))
        .map(|table| table.table().to_string())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Each step's index in the pipeline, by step name.
fn step_indexes_by_name(pipeline: &Pipeline) -> HashMap<&str, usize> {
    pipeline
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| (step.name.as_str(), index))
        .collect()
}

/// Work out the run order, reporting unknown tables and cycles (all of them).
pub fn resolve(pipeline: &Pipeline) -> Result<StepGraph, Diagnostics> {
    let step_index = step_indexes_by_name(pipeline);
    let known: Vec<&str> = pipeline
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .chain(pipeline.steps.iter().map(|s| s.name.as_str()))
        .collect();
    let mut problems = Vec::new();
    let upstream = step_inputs(pipeline, &step_index, &known, &mut problems);
    check_inputs(pipeline, &step_index, &known, &mut problems);
    incremental_inputs(pipeline, &known, &mut problems);
    mart_forget_inputs(pipeline, &known, &mut problems);
    let order = run_order(&upstream);
    if order.len() < pipeline.steps.len() {
        let stuck: Vec<usize> = (0..pipeline.steps.len()).filter(|i| !order.contains(i)).collect();
        let cycle = find_cycle(&upstream, &stuck);
        let names: Vec<&str> = cycle.iter().map(|&i| pipeline.steps[i].name.as_str()).collect();
        let first = &pipeline.steps[cycle[0]];
        problems.push(step_diagnostic(
            pipeline,
            first,
            format!("dependency cycle (each step reads the next): {}", names.join(" → ")),
            Some("a step cannot read, directly or through others, its own result".into()),
        ));
    }
    if !problems.is_empty() {
        return Err(Diagnostics(problems));
    }
    let mut consumers: Vec<usize> = vec![0; pipeline.steps.len()];
    for deps in &upstream {
        for &dep in deps {
            consumers[dep] += 1;
        }
    }
    for mart in &pipeline.marts {
        if let Some(&index) = step_index.get(mart.from.as_str()) {
            consumers[index] += 1;
        }
    }
    Ok(StepGraph {
        order,
        upstream,
        consumers,
    })
}

/// The steps each step reads (by SQL or `depends_on`); unknown tables and SQL that does not parse
/// are problems.
fn step_inputs(
    pipeline: &Pipeline,
    step_index: &HashMap<&str, usize>,
    known: &[&str],
    problems: &mut Vec<Diagnostic>,
) -> Vec<BTreeSet<usize>> {
    let mut upstream: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); pipeline.steps.len()];
    for (index, step) in pipeline.steps.iter().enumerate() {
        let reads = match &step.kmeans {
            Some(spec) => Ok(vec![spec.input.clone()]),
            None => tables_read(&step.sql),
        };
        let reads = match reads {
            Ok(reads) => reads,
            Err(message) => {
                let place = located::locate(&step.sql, &step.template, step.origin.file_name().as_deref(), &message)
                    .map(|place| format!("\n  {place}"))
                    .unwrap_or_default();
                problems.push(step_diagnostic(
                    pipeline,
                    step,
                    format!("SQL of {} does not parse: {message}{place}", step.origin),
                    None,
                ));
                continue;
            }
        };
        for table in reads.iter().chain(step.depends_on.iter()) {
            if let Some(&dependency) = step_index.get(table.as_str()) {
                upstream[index].insert(dependency);
            } else if pipeline.source(table).is_none() {
                let hint = did_you_mean(table, known.iter().copied()).map(|close| format!("did you mean `{close}`?"));
                problems.push(step_diagnostic(
                    pipeline,
                    step,
                    format!(
                        "step `{}` ({}) reads table `{table}`, which is neither a source nor a step",
                        step.name, step.origin
                    ),
                    hint,
                ));
            }
        }
    }
    upstream
}

/// An incremental step reads its source alone (its kept rows depend on nothing else), and its
/// `forget` query parses and reads sources or steps.
fn incremental_inputs(pipeline: &Pipeline, known: &[&str], problems: &mut Vec<Diagnostic>) {
    for step in &pipeline.steps {
        let Some(spec) = &step.incremental else { continue };
        let reads = tables_read(&step.sql).unwrap_or_default();
        if let Some(other) = reads.iter().find(|table| **table != spec.source) {
            problems.push(step_diagnostic(
                pipeline,
                step,
                format!(
                    "step `{}` is incremental by partition of `{}` but also reads `{other}`",
                    step.name, spec.source
                ),
                Some("its kept rows of a partition may depend on that partition's files alone: join other tables in a step that reads this one".into()),
            ));
        }
        let Some(forget) = &spec.forget else { continue };
        match tables_read(forget) {
            Ok(tables) => {
                for table in tables.iter().filter(|table| !known.contains(&table.as_str())) {
                    problems.push(step_diagnostic(
                        pipeline,
                        step,
                        format!(
                            "the `forget` query of step `{}` reads `{table}`, which is neither a source nor a step",
                            step.name
                        ),
                        did_you_mean(table, known.iter().copied()).map(|close| format!("did you mean `{close}`?")),
                    ));
                }
            }
            Err(message) => problems.push(step_diagnostic(
                pipeline,
                step,
                format!("the `forget` query of step `{}` does not parse: {message}", step.name),
                None,
            )),
        }
    }
}

/// A mart's `forget` condition parses and reads sources or steps.
fn mart_forget_inputs(pipeline: &Pipeline, known: &[&str], problems: &mut Vec<Diagnostic>) {
    for mart in &pipeline.marts {
        let Some(condition) = &mart.forget else { continue };
        let problem = |message: String, hint: Option<String>| Diagnostic {
            file: pipeline.file.clone(),
            line: None,
            column: None,
            key: Some(format!("marts.{}.forget", mart.name)),
            message,
            hint,
        };
        match tables_read(&forget_query(&mart.from, condition)) {
            Ok(tables) => {
                for table in tables.iter().filter(|table| !known.contains(&table.as_str())) {
                    problems.push(problem(
                        format!(
                            "the `forget` condition of mart `{}` reads `{table}`, which is neither a source nor a step",
                            mart.name
                        ),
                        did_you_mean(table, known.iter().copied()).map(|close| format!("did you mean `{close}`?")),
                    ));
                }
            }
            Err(message) => problems.push(problem(
                format!(
                    "the `forget` condition of mart `{}` does not parse: {message}",
                    mart.name
                ),
                None,
            )),
        }
    }
}

/// The rows of `table` a mart's `forget` condition names, as a query (for finding its tables).
pub fn forget_query(table: &str, condition: &str) -> String {
    format!("SELECT * FROM {table} WHERE {condition}")
}

/// Every check's SQL parses and reads sources or steps.
fn check_inputs(
    pipeline: &Pipeline,
    step_index: &HashMap<&str, usize>,
    known: &[&str],
    problems: &mut Vec<Diagnostic>,
) {
    let check_problem = |check: &crate::config::Check, message: String, hint: Option<String>| Diagnostic {
        file: pipeline.file.clone(),
        line: None,
        column: None,
        key: Some(format!("checks.{}", check.name)),
        message,
        hint,
    };
    for check in &pipeline.checks {
        match tables_read(&check.sql) {
            Ok(reads) => {
                for table in reads {
                    if pipeline.source(&table).is_none() && !step_index.contains_key(table.as_str()) {
                        let hint =
                            did_you_mean(&table, known.iter().copied()).map(|close| format!("did you mean `{close}`?"));
                        problems.push(check_problem(
                            check,
                            format!(
                                "check `{}` reads table `{table}`, which is neither a source nor a step",
                                check.name
                            ),
                            hint,
                        ));
                    }
                }
            }
            Err(message) => problems.push(check_problem(
                check,
                format!("the expression does not parse: {message}"),
                None,
            )),
        }
    }
}

/// Kahn's algorithm over the steps; among ready steps, the earliest in the file runs first. Steps
/// in a cycle are left out.
fn run_order(upstream: &[BTreeSet<usize>]) -> Vec<usize> {
    let steps = upstream.len();
    let mut remaining: Vec<usize> = upstream.iter().map(BTreeSet::len).collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); steps];
    for (index, deps) in upstream.iter().enumerate() {
        for &dep in deps {
            downstream[dep].push(index);
        }
    }
    let mut ready: BTreeSet<usize> = (0..steps).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(steps);
    while let Some(index) = ready.pop_first() {
        order.push(index);
        for &next in &downstream[index] {
            remaining[next] -= 1;
            if remaining[next] == 0 {
                ready.insert(next);
            }
        }
    }
    order
}

/// One cycle among `stuck` steps, closed (first element repeated at the end).
fn find_cycle(upstream: &[BTreeSet<usize>], stuck: &[usize]) -> Vec<usize> {
    let stuck_set: HashSet<usize> = stuck.iter().copied().collect();
    // Every stuck step has a stuck dependency; walking them must revisit a step.
    let mut path = vec![stuck[0]];
    loop {
        let current = path[path.len() - 1];
        let next = upstream[current]
            .iter()
            .copied()
            .find(|d| stuck_set.contains(d))
            .unwrap_or(current);
        if let Some(position) = path.iter().position(|&p| p == next) {
            let mut cycle = path[position..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

/// Whether a step's result is computed once and held (rather than a view read where it is used).
pub fn materializes(pipeline: &Pipeline, graph: &StepGraph, index: usize) -> bool {
    let step = &pipeline.steps[index];
    step.kmeans.is_some()
        || step.incremental.is_some()
        || !step.settings.is_empty()
        || step.materialize.unwrap_or(graph.consumers[index] > 1)
}

/// What happens after each step of a run (by position in the run order), so that memory is given
/// back as early as possible: the marts of that step are written, the checks whose tables are all
/// there run, and the tables nothing later reads are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Indexes into `pipeline.marts`.
    pub marts_after: Vec<Vec<usize>>,
    /// Indexes into `pipeline.checks`; a check reading a step that does not run is in no list.
    pub checks_after: Vec<Vec<usize>>,
    /// Indexes into `pipeline.steps`.
    pub release_after: Vec<Vec<usize>>,
    /// Incremental steps (indexes into `pipeline.steps`) whose `forget` query can run.
    pub forget_after: Vec<Vec<usize>>,
}

/// Record that something running at position `at` reads `tables`, and through views what those
/// views read (a materialised table holds its own data; a view reads its inputs when used).
fn touch(pipeline: &Pipeline, graph: &StepGraph, last_use: &mut HashMap<usize, usize>, tables: Vec<usize>, at: usize) {
    let mut stack = tables;
    let mut seen = HashSet::new();
    while let Some(table) = stack.pop() {
        if !seen.insert(table) {
            continue;
        }
        let last = last_use.entry(table).or_insert(at);
        *last = (*last).max(at);
        if !materializes(pipeline, graph, table) {
            stack.extend(graph.upstream[table].iter().copied());
        }
    }
}

/// The schedule of a run of the steps `run` (in order) writing the marts `marts`.
pub fn schedule(pipeline: &Pipeline, graph: &StepGraph, run: &[usize], marts: &[usize]) -> Schedule {
    let position: HashMap<usize, usize> = run.iter().enumerate().map(|(at, &index)| (index, at)).collect();
    let step_index = step_indexes_by_name(pipeline);
    let mut plan = Schedule {
        marts_after: vec![Vec::new(); run.len()],
        checks_after: vec![Vec::new(); run.len()],
        release_after: vec![Vec::new(); run.len()],
        forget_after: vec![Vec::new(); run.len()],
    };
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (at, &index) in run.iter().enumerate() {
        let reads = std::iter::once(index)
            .chain(graph.upstream[index].iter().copied())
            .collect();
        touch(pipeline, graph, &mut last_use, reads, at);
    }
    for &mart in marts {
        if let Some(&index) = step_index.get(pipeline.marts[mart].from.as_str())
            && let Some(&at) = position.get(&index)
        {
            plan.marts_after[at].push(mart);
            touch(pipeline, graph, &mut last_use, vec![index], at);
        }
    }
    // A query over steps runs after the last of them; it is in no list when one does not run.
    let after_its_tables = |sql: &str, last_use: &mut HashMap<usize, usize>| {
        let reads = tables_read(sql).ok()?;
        let steps: Vec<usize> = reads
            .iter()
            .filter_map(|table| step_index.get(table.as_str()).copied())
            .collect();
        let at = steps
            .iter()
            .map(|step| position.get(step).copied())
            .try_fold(0, |latest, at| at.map(|at| latest.max(at)))?;
        (at < run.len()).then(|| {
            touch(pipeline, graph, last_use, steps, at);
            at
        })
    };
    for (check_index, check) in pipeline.checks.iter().enumerate() {
        if let Some(at) = after_its_tables(&check.sql, &mut last_use) {
            plan.checks_after[at].push(check_index);
        }
    }
    for &index in run {
        if let Some(forget) = pipeline.steps[index]
            .incremental
            .as_ref()
            .and_then(|spec| spec.forget.as_deref())
            && let Some(at) = after_its_tables(forget, &mut last_use)
        {
            plan.forget_after[at].push(index);
        }
    }
    // Forgetting in published history runs after publishing: the tables its conditions read
    // stay to the end.
    for mart in &pipeline.marts {
        if let Some(condition) = &mart.forget
            && let Ok(reads) = tables_read(&forget_query(&mart.from, condition))
        {
            // The mart's own step is not read then: its published partitions are.
            let steps = reads
                .iter()
                .filter(|table| **table != mart.from)
                .filter_map(|table| step_index.get(table.as_str()).copied())
                .collect();
            touch(pipeline, graph, &mut last_use, steps, run.len());
        }
    }
    for (table, at) in last_use {
        if let Some(tables) = plan.release_after.get_mut(at) {
            tables.push(table);
        }
    }
    plan.release_after.iter_mut().for_each(|tables| tables.sort_unstable());
    plan
}

/// Run one step: its result becomes a table in the run's session named after it. On a cluster a
/// held step is written below the run's held-steps folder (see `on_cluster`); a local run keeps
/// it in memory or local disk.
pub async fn run_step(run: &RunContext<'_>, graph: &StepGraph, index: usize) -> Result<StepOutcome, Error> {
    let (ctx, pipeline) = (&run.session, run.pipeline);
    let steps = &run.layout.held_steps();
    let step = &pipeline.steps[index];
    let started = Instant::now();
    let on_cluster = pipeline.engine.scheduler.is_some();
    if let Some(spec) = &step.kmeans {
        let (batch, details) = run_kmeans(ctx, step, spec).await?;
        let schema = batch.schema();
        let rows = details.get("entities").and_then(serde_json::Value::as_u64);
        let table: Arc<dyn datafusion::catalog::TableProvider> = if on_cluster {
            on_cluster::put(&batch, steps, &step.name)
                .await
                .map_err(|source| step_error(step, source))?
        } else {
            Arc::new(
                MemTable::try_new(Arc::clone(&schema), vec![vec![batch]]).map_err(|source| step_error(step, source))?,
            )
        };
        ctx.register_table(step.name.as_str(), table)
            .map_err(|source| step_error(step, source))?;
        tracing::info!(step = %step.name, k = details["k"].as_u64(), elapsed_ms = started.elapsed().as_millis() as u64, "clustering ready");
        return Ok(StepOutcome {
            name: step.name.clone(),
            materialized: true,
            rows,
            bytes_on_disk: None,
            duration_ms: started.elapsed().as_millis() as u64,
            details: Some(details),
            schema: Some(schema),
        });
    }
    if let Some(spec) = &step.incremental {
        return incremental::run(run, step, spec).await;
    }
    let frame = plan_step(ctx, step).await?;
    let materialize = materializes(pipeline, graph, index);
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut bytes_on_disk = None;
    let rows = if materialize && on_cluster {
        let (table, rows) = on_cluster::hold(frame, steps, &step.name)
            .await
            .map_err(|source| step_error(step, source))?;
        ctx.register_table(step.name.as_str(), table)
            .map_err(|source| step_error(step, source))?;
        Some(rows)
    } else if materialize {
        let task_ctx = Arc::new(frame.task_ctx());
        let plan = frame
            .create_physical_plan()
            .await
            .map_err(|source| step_error(step, source))?;
        let budget = task_ctx
            .session_config()
            .get_extension::<crate::engine::memory::HeldMemory>()
            .map(|held| on_disk::Budget::new(&held, plan.output_partitioning().partition_count()));
        let held = on_disk::hold(Arc::clone(&plan), task_ctx, budget, compact)
            .await
            .map_err(|source| step_error(step, source))?;
        // The executed plan with each operator's rows and time: where to look when a step is slow.
        tracing::debug!(step = %step.name, "executed plan:\n{}",
            datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref()).indent(true));
        ctx.register_table(step.name.as_str(), held.table)
            .map_err(|source| step_error(step, source))?;
        bytes_on_disk = held.bytes_on_disk;
        Some(held.rows)
    } else {
        ctx.register_table(step.name.as_str(), frame.into_view())
            .map_err(|source| step_error(step, source))?;
        None
    };
    tracing::info!(step = %step.name, materialized = materialize, rows, bytes_on_disk, elapsed_ms = started.elapsed().as_millis() as u64, "step ready");
    Ok(StepOutcome {
        name: step.name.clone(),
        materialized: materialize,
        rows,
        bytes_on_disk,
        duration_ms: started.elapsed().as_millis() as u64,
        details: None,
        schema: Some(schema),
    })
}

/// The batch with every text column that holds far more bytes than its values show copied into
/// a buffer of its own. `CASE WHEN c THEN text_column END` (DataFusion's `nullif` path) and slices
/// keep the whole source buffer behind a few visible values: a materialized `stg_events` kept
/// every raw line of the export that way, for a column that is mostly NULL.
fn compact(batch: RecordBatch) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    if !batch.columns().iter().any(|column| holds_unseen_bytes(column.as_ref())) {
        return Ok(batch);
    }
    let all_rows = datafusion::arrow::array::UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            if holds_unseen_bytes(column.as_ref()) {
                // `take` copies the bytes of valid values only.
                datafusion::arrow::compute::take(column.as_ref(), &all_rows, None)
            } else {
                Ok(Arc::clone(column))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// Whether a text column's value buffer is more than twice (plus 64 KiB) the bytes it shows.
fn holds_unseen_bytes(column: &dyn Array) -> bool {
    fn wasteful(buffered: usize, shown: usize) -> bool {
        buffered > 2 * shown + 64 * 1024
    }
    match column.data_type() {
        DataType::Utf8 => {
            let text = column.as_string::<i32>();
            wasteful(text.values().len(), text.iter().flatten().map(str::len).sum())
        }
        DataType::LargeUtf8 => {
            let text = column.as_string::<i64>();
            wasteful(text.values().len(), text.iter().flatten().map(str::len).sum())
        }
        _ => false,
    }
}

/// Plan every step without reading data (sources must be registered), collecting every failure.
/// Returns each planned step's output schema, in run order.
pub async fn plan_all(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    graph: &StepGraph,
) -> (Vec<(usize, SchemaRef)>, Vec<Error>) {
    let mut planned = Vec::new();
    let mut failures = Vec::new();
    let mut failed: HashSet<usize> = HashSet::new();
    for &index in &graph.order {
        let step = &pipeline.steps[index];
        if graph.upstream[index].iter().any(|dep| failed.contains(dep)) {
            failed.insert(index);
            continue;
        }
        if let Some(spec) = &step.kmeans {
            let schema = kmeans_schema(spec);
            let registered = MemTable::try_new(Arc::clone(&schema), vec![vec![]])
                .and_then(|table| ctx.register_table(step.name.as_str(), Arc::new(table)));
            match registered {
                Ok(_) => planned.push((index, schema)),
                Err(source) => {
                    failures.push(step_error(step, source));
                    failed.insert(index);
                }
            }
            continue;
        }
        match plan_step(ctx, step).await {
            Ok(frame) => {
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                if let Err(source) = ctx.register_table(step.name.as_str(), frame.into_view()) {
                    failures.push(step_error(step, source));
                    failed.insert(index);
                    continue;
                }
                planned.push((index, schema));
            }
            Err(err) => {
                failures.push(err);
                failed.insert(index);
            }
        }
    }
    (planned, failures)
}

/// The output of a k-means step: the entity id, its persona number and name.
pub fn kmeans_schema(spec: &KMeansSpec) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(spec.id.as_str(), DataType::Utf8, false),
        Field::new("persona_id", DataType::Int64, false),
        Field::new("persona_name", DataType::Utf8, false),
    ]))
}

/// Cluster the rows of `spec.input` (see [`crate::personas`]). Rows with a missing feature get no
/// persona and are counted as `skipped_rows`; the clustering itself runs on a blocking thread.
async fn run_kmeans(
    ctx: &SessionContext,
    step: &Step,
    spec: &KMeansSpec,
) -> Result<(RecordBatch, serde_json::Value), Error> {
    let fail = |message: String| Error::Step {
        step: step.name.clone(),
        origin: step.origin.clone(),
        source: datafusion::error::DataFusionError::Plan(message),
        location: None,
    };
    let input = ctx
        .table(spec.input.as_str())
        .await
        .map_err(|source| step_error(step, source))?;
    let mut columns = vec![spec.id.as_str()];
    columns.extend(spec.features.iter().map(String::as_str));
    let batches = input
        .select_columns(&columns)
        .map_err(|source| step_error(step, source))?
        .collect()
        .await
        .map_err(|source| step_error(step, source))?;
    let mut kept_ids: Vec<ArrayRef> = Vec::with_capacity(batches.len());
    let mut values = Vec::new();
    let mut skipped = 0u64;
    for batch in &batches {
        let id_column = cast(batch.column(0), &DataType::Utf8).map_err(|e| step_error(step, e.into()))?;
        let features: Vec<ArrayRef> = (1..batch.num_columns())
            .map(|i| cast(batch.column(i), &DataType::Float64))
            .collect::<Result<_, _>>()
            .map_err(|e| step_error(step, e.into()))?;
        let features: Vec<&Float64Array> = features.iter().map(|a| a.as_primitive::<Float64Type>()).collect();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let usable =
                    id_column.is_valid(row) && features.iter().all(|f| f.is_valid(row) && f.value(row).is_finite());
                if usable {
                    values.extend(features.iter().map(|f| f.value(row)));
                } else {
                    skipped += 1;
                }
                Some(usable)
            })
            .collect();
        kept_ids.push(filter(&id_column, &keep).map_err(|e| step_error(step, e.into()))?);
    }
    let ids = if kept_ids.is_empty() {
        datafusion::arrow::array::new_empty_array(&DataType::Utf8)
    } else {
        let parts: Vec<&dyn Array> = kept_ids.iter().map(|a| a.as_ref()).collect();
        concat(&parts).map_err(|e| step_error(step, e.into()))?
    };
    let rows = ids.len();
    let data = ndarray::Array2::from_shape_vec((rows, spec.features.len()), values).map_err(|e| fail(e.to_string()))?;
    let job_spec = spec.clone();
    // The ids go to the blocking thread as one Arrow array and come back as the output column:
    // no String per entity.
    let (ids, clustered) = tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = ids.as_string::<i32>().iter().map(Option::unwrap_or_default).collect();
        let result = crate::personas::cluster(&names, &data, &job_spec);
        (ids, result)
    })
    .await
    .map_err(|e| fail(format!("clustering stopped: {e}")))?;
    let (labels, clustering) = clustered.map_err(|e| fail(e.to_string()))?;
    let persona_ids = Int64Array::from_iter_values(labels.iter().map(|&l| l as i64 + 1));
    let names = StringArray::from_iter_values(labels.iter().map(|&l| clustering.names[l].as_str()));
    let schema = kmeans_schema(spec);
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![ids, Arc::new(persona_ids), Arc::new(names)])
        .map_err(|e| step_error(step, e.into()))?;
    let mut details = serde_json::to_value(&clustering).map_err(|e| fail(e.to_string()))?;
    // Counted, not silently dropped: rows without an id or with a missing or infinite feature.
    details["skipped_rows"] = serde_json::json!(skipped);
    Ok((batch, details))
}

#[cfg(test)]
mod tests {
    #[test]
    fn materialized_text_columns_keep_only_the_bytes_they_show() {
        use datafusion::arrow::array::BooleanArray;
        let long = "x".repeat(1000);
        let lines = StringArray::from_iter_values((0..1000).map(|i| format!("{i}:{long}")));
        // Two rows of a thousand stay visible, as `CASE WHEN rejected THEN line END` leaves them.
        let keep = BooleanArray::from_iter((0..1000).map(|i| Some(i == 7 || i == 900)));
        let mostly_null =
            datafusion::arrow::compute::nullif(&lines, &datafusion::arrow::compute::not(&keep).unwrap()).unwrap();
        let short = StringArray::from_iter_values((0..1000).map(|i| i.to_string()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("raw", DataType::Utf8, true),
            Field::new("id", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(schema, vec![mostly_null, Arc::new(short)]).unwrap();
        assert!(holds_unseen_bytes(batch.column(0).as_ref()));

        let compacted = compact(batch.clone()).unwrap();
        let raw = compacted.column(0).as_string::<i32>();
        let kept = format!("7:{long}").len() + format!("900:{long}").len();
        assert_eq!(raw.values().len(), kept, "only rows 7 and 900 are kept");
        assert_eq!(raw.value(7), format!("7:{long}"));
        assert_eq!(raw.value(900), format!("900:{long}"));
        assert_eq!(raw.null_count(), 998);
        // The small column was left as it was, sharing its buffer.
        assert!(Arc::ptr_eq(compacted.column(1), batch.column(1)));
    }

    use super::*;

    #[test]
    fn finds_tables_but_not_ctes() {
        let sql = "WITH recent AS (SELECT * FROM events WHERE x > 1) \
                   SELECT * FROM recent JOIN Orders o ON true, information_schema.tables";
        assert_eq!(
            tables_read(sql).unwrap(),
            vec!["events".to_string(), "orders".to_string()]
        );
        assert!(tables_read("SELECT 1; SELECT 2").unwrap_err().contains("exactly one"));
        assert!(tables_read("SELEC 1").is_err());
    }

    fn compiled(yaml: &str) -> Pipeline {
        let path = std::path::Path::new("schedule.yaml");
        let raw = crate::config::parse(path, yaml).expect("parses");
        crate::config::compile(path, yaml, raw, &Default::default(), &|_| None).expect("compiles")
    }

    #[test]
    fn tables_are_dropped_after_their_last_reader_even_through_views() {
        let pipeline = compiled(
            r#"
name: schedule
sources:
  raw: { location: "in/", format: csv, schema: { id: string } }
steps:
  - { name: staged, query: "SELECT id FROM raw", materialize: true }
  - { name: cleaned, query: "SELECT id FROM staged" }
  - { name: facts, query: "SELECT id FROM cleaned", materialize: true }
  - { name: audit, query: "SELECT id FROM staged WHERE id IS NULL" }
  - { name: summary, query: "SELECT COUNT(*) AS n FROM facts" }
  - { name: unused, query: "SELECT id FROM facts" }
checks:
  - { name: facts_exist, expression: "SELECT 1 FROM facts HAVING COUNT(*) = 0" }
  - { name: summary_positive, expression: "SELECT n FROM summary WHERE n <= 0" }
output: { location: out }
marts:
  summary: {}
  audit: {}
"#,
        );
        let graph = resolve(&pipeline).expect("resolves");
        let run: Vec<usize> = graph.order.clone();
        let names =
            |indexes: &[usize]| -> Vec<&str> { indexes.iter().map(|&i| pipeline.steps[i].name.as_str()).collect() };
        assert_eq!(
            names(&run),
            ["staged", "cleaned", "facts", "audit", "summary", "unused"]
        );
        let plan = schedule(&pipeline, &graph, &run, &[0, 1]);
        // audit (a view, at 3) is written right after it is defined; summary at 4.
        assert_eq!(plan.marts_after, [vec![], vec![], vec![], vec![1], vec![0], vec![]]);
        assert_eq!(plan.checks_after, [vec![], vec![], vec![0], vec![], vec![1], vec![]]);
        let released: Vec<Vec<&str>> = plan.release_after.iter().map(|tables| names(tables)).collect();
        // staged is read through the view `cleaned` by facts (2) and by the audit mart (3).
        assert_eq!(
            released,
            [
                vec![],
                vec![],
                vec!["cleaned"],
                vec!["staged", "audit"],
                vec!["summary"],
                vec!["facts", "unused"]
            ]
        );
        // A selection without `summary` cannot run the check that reads it.
        let partial = graph.closure(&[3]);
        let plan = schedule(&pipeline, &graph, &partial, &[1]);
        assert_eq!(plan.checks_after.concat(), Vec::<usize>::new());
    }

    #[test]
    fn tables_a_forget_condition_reads_stay_to_the_end_but_not_the_marts_own() {
        let pipeline = compiled(
            r#"
name: schedule
sources:
  raw: { location: "in/", format: csv, schema: { id: string } }
steps:
  - { name: staged, query: "SELECT id FROM raw", materialize: true }
  - { name: forgotten, query: "SELECT id FROM raw WHERE id = 'x'", materialize: true }
  - { name: journeys, query: "SELECT id FROM staged" }
  - { name: totals, query: "SELECT COUNT(*) AS n FROM journeys" }
output: { location: out }
marts:
  journeys:
    forget: id IN (SELECT id FROM forgotten)
  totals: {}
"#,
        );
        let graph = resolve(&pipeline).expect("resolves");
        let run: Vec<usize> = graph.order.clone();
        let plan = schedule(&pipeline, &graph, &run, &[0, 1]);
        let released: Vec<&str> = plan
            .release_after
            .concat()
            .iter()
            .map(|&i| pipeline.steps[i].name.as_str())
            .collect();
        // `forgotten` is read after publishing; `journeys` (a view over `staged`) is not: the
        // condition reads the mart's published partitions, so neither holds memory to the end.
        assert!(!released.contains(&"forgotten"), "{released:?}");
        assert!(
            released.contains(&"journeys") && released.contains(&"staged"),
            "{released:?}"
        );
    }

    #[test]
    fn a_cycle_is_reported_closed() {
        // 0 reads 2, 1 reads 0, 2 reads 1.
        let upstream = vec![BTreeSet::from([2]), BTreeSet::from([0]), BTreeSet::from([1])];
        let cycle = find_cycle(&upstream, &[0, 1, 2]);
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }
}
