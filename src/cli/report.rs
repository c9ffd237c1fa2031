//! `lifemap report`: the report rendered from the marts already published for a `ds`, into an HTML
//! file with its images embedded, without sending it.

use std::path::PathBuf;

use clap::Args;

use super::args::{PipelineArgs, overrides};
use crate::config;
use crate::context::RunContext;
use crate::error::Error;
use crate::runner;

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Where to write the HTML (images embedded); default `<ds>-<pipeline>.html` here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub(super) async fn run(args: &ReportArgs) -> Result<(), Error> {
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
    let preview = RunContext::local(&pipeline, "preview")?;
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
