//! `lifemap plan`: the step order, each step's rendered SQL and output schema (and for an
//! incremental step what a run reads and keeps), then every check with the SQL it runs; or, with
//! `--rendered STEP`, that step's final SQL alone.

use clap::Args;

use super::args::{PipelineArgs, overrides};
use crate::config::{self, Pipeline, did_you_mean};
use crate::error::Error;
use crate::inspect::{self, PlannedStep};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Print only this step's SQL as templating wrote it (nothing indented, nothing planned: it
    /// shows SQL that does not parse too).
    #[arg(long, value_name = "STEP")]
    pub rendered: Option<String>,
}

pub(super) async fn run(args: &PlanArgs) -> Result<(), Error> {
    let (args, rendered) = (&args.pipeline, args.rendered.as_deref());
    let pipeline = config::load(&args.pipeline, &overrides(args, args.ds, None, &None))?;
    if let Some(name) = rendered {
        return print_rendered(&pipeline, name);
    }
    let plan = inspect::plan(&pipeline).await?;
    println!(
        "pipeline {} for ds {} (as_of {})",
        pipeline.name,
        pipeline.date.ds_string(),
        pipeline.date.as_of_rfc3339()
    );
    for (position, step) in plan.steps.iter().enumerate() {
        print_step(&pipeline, position, step);
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
    match plan.failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

fn print_step(pipeline: &Pipeline, position: usize, planned: &PlannedStep) {
    let step = &pipeline.steps[planned.index];
    println!("\n{}. {} ({})", position + 1, step.name, step.origin);
    if !planned.after.is_empty() {
        println!("   after: {}", planned.after.join(", "));
    }
    if !planned.publishes.is_empty() {
        println!("   publishes: {}", planned.publishes.join(", "));
    }
    if let Some(spec) = &step.incremental {
        print_incremental(pipeline, step, spec);
    }
    println!("   sql:");
    for line in step.sql.trim_end().lines() {
        println!("     {line}");
    }
    println!("   schema:");
    for field in planned.schema.fields() {
        println!(
            "     {}: {}{}",
            field.name(),
            field.data_type(),
            if field.is_nullable() { "" } else { " not null" }
        );
    }
}

/// What a run reads and keeps for an incremental step.
fn print_incremental(pipeline: &Pipeline, step: &config::Step, spec: &config::Incremental) {
    println!(
        "   incremental: by partition of `{}`, kept in {}/_state/steps/{}/",
        spec.source,
        pipeline.output_location.trim_end_matches('/'),
        step.name
    );
    match &spec.partitions {
        Some(predicate) => println!("     a run needs the partitions where {}", predicate.trim()),
        None => println!("     a run needs every partition listed"),
    }
    println!("     it computes those not kept or whose export objects changed, and reads the others as kept");
    if let Some(forget) = &spec.forget {
        println!("     partitions not kept (rows of forgotten persons), after the steps it reads:");
        for line in forget.trim_end().lines() {
            println!("       {line}");
        }
    }
}

/// One step's rendered SQL, as it is run.
fn print_rendered(pipeline: &Pipeline, name: &str) -> Result<(), Error> {
    let Some(step) = pipeline.steps.iter().find(|step| step.name == name) else {
        let hint = did_you_mean(name, pipeline.steps.iter().map(|step| step.name.as_str()))
            .map(|close| format!(" (did you mean `{close}`?)"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "--rendered {name}: the pipeline has no step `{name}`{hint}"
        )));
    };
    if step.kmeans.is_some() {
        return Err(Error::Usage(format!(
            "--rendered {name}: `{name}` is a clustering step, not SQL"
        )));
    }
    print!("{}", step.sql);
    if !step.sql.ends_with('\n') {
        println!();
    }
    Ok(())
}
