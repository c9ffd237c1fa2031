//! A pipeline looked at without running it: every step planned against the declared schemas and
//! the report rendered from made-up rows (`validate`), and what a run would do, step by step
//! (`plan`). The command line prints what these return.

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

use crate::config::Pipeline;
use crate::engine::session;
use crate::error::Error;
use crate::{sources, transform};

/// What `validate` found: every problem, and what was checked.
pub struct Validation {
    pub problems: Vec<Error>,
    pub steps_planned: usize,
}

/// One step of a plan, in run order.
pub struct PlannedStep {
    pub index: usize,
    /// The steps it reads.
    pub after: Vec<String>,
    /// The marts it feeds.
    pub publishes: Vec<String>,
    pub schema: SchemaRef,
}

/// What a run of the pipeline would do, and the steps that failed to plan.
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    pub failures: Vec<Error>,
}

/// Register sources for planning: declared schemas as empty tables, others inferred from files.
async fn register_for_planning(ctx: &SessionContext, pipeline: &Pipeline) -> Vec<Error> {
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

/// Plan every step against the declared schemas and render the report's templates, collecting
/// every problem.
pub async fn validate(pipeline: &Pipeline) -> Result<Validation, Error> {
    let graph = transform::resolve(pipeline)?;
    let ctx = session::create_local(pipeline)?;
    let mut problems = register_for_planning(&ctx, pipeline).await;
    let (planned, failures) = transform::plan_all(&ctx, pipeline, &graph).await;
    problems.extend(failures);
    if let Some(report) = &pipeline.report
        && problems.is_empty()
    {
        let steps: HashMap<&str, &SchemaRef> = planned
            .iter()
            .map(|(index, schema)| (pipeline.steps[*index].name.as_str(), schema))
            .collect();
        let mart_schemas = pipeline
            .marts
            .iter()
            .filter_map(|mart| Some((mart.name.clone(), (*steps.get(mart.from.as_str())?).clone())))
            .collect();
        if let Err(err) = crate::report::validate(pipeline, report, &mart_schemas).await {
            problems.push(err);
        }
    }
    Ok(Validation {
        problems,
        steps_planned: planned.len(),
    })
}

/// The steps in run order with what they read, feed and return; a source that cannot be
/// registered stops the plan.
pub async fn plan(pipeline: &Pipeline) -> Result<Plan, Error> {
    let graph = transform::resolve(pipeline)?;
    let ctx = session::create_local(pipeline)?;
    if let Some(first) = register_for_planning(&ctx, pipeline).await.into_iter().next() {
        return Err(first);
    }
    let (planned, failures) = transform::plan_all(&ctx, pipeline, &graph).await;
    let steps = planned
        .into_iter()
        .map(|(index, schema)| {
            let name = &pipeline.steps[index].name;
            PlannedStep {
                index,
                after: graph.upstream[index]
                    .iter()
                    .map(|&i| pipeline.steps[i].name.clone())
                    .collect(),
                publishes: pipeline
                    .marts
                    .iter()
                    .filter(|m| &m.from == name)
                    .map(|m| m.name.clone())
                    .collect(),
                schema,
            }
        })
        .collect();
    Ok(Plan { steps, failures })
}
