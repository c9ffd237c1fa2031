//! `lifemap validate`: every problem of a pipeline at once, without reading data (✓ or one ✗ line
//! per problem; exit 2 when there is any).

use super::args::{PipelineArgs, overrides};
use super::output::{print_error_lines, report};
use crate::config;
use crate::error::Error;
use crate::inspect;

pub(super) async fn run(args: &PipelineArgs) -> i32 {
    match validate(args).await {
        // The hint of a pipeline that does not load is to run `validate`: not said by `validate`.
        Err(err @ Error::Invalid(_)) => {
            print_error_lines(&err);
            err.exit_code()
        }
        outcome => report(outcome),
    }
}

async fn validate(args: &PipelineArgs) -> Result<(), Error> {
    let pipeline = config::load(&args.pipeline, &overrides(args, args.ds, None, &None))?;
    let validation = inspect::validate(&pipeline).await?;
    if validation.problems.is_empty() {
        println!(
            "✓ {}: {} sources, {} steps planned, {} marts{}",
            pipeline.file.display(),
            pipeline.sources.len(),
            validation.steps_planned,
            pipeline.marts.len(),
            if pipeline.report.is_some() {
                ", report templates rendered"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let count = validation.problems.len();
    for problem in &validation.problems {
        println!("✗ {problem}");
    }
    Err(Error::Usage(format!(
        "{count} problem{} in {}",
        if count == 1 { "" } else { "s" },
        pipeline.file.display()
    )))
}
