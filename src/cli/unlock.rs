//! `lifemap unlock`: remove a run lock on purpose (a lock whose holder you know is dead and whose
//! lease you do not want to wait out), saying whose it was.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;

use super::args::parse_var;
use crate::config::{self, Overrides, parse_ds};
use crate::context::RunContext;
use crate::error::{Error, exit};

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The pipeline file (e.g. pipelines/customer_lifecycle.yaml).
    pub pipeline: PathBuf,

    /// The logical date (YYYY-MM-DD) whose run lock to remove.
    #[arg(long, value_parser = parse_ds, required_unless_present = "state", conflicts_with = "state")]
    pub ds: Option<NaiveDate>,

    /// Remove the lock of the kept state (taken by runs of pipelines with incremental steps).
    #[arg(long)]
    pub state: bool,

    /// Override a pipeline var (repeatable): --var marts_uri=s3://acme/marts
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

/// Prints one JSON line: the lock's location, whether there was one, and its holder.
pub(super) async fn run(args: &UnlockArgs) -> Result<i32, Error> {
    let overrides = Overrides {
        ds: args.ds,
        vars: args.vars.clone(),
        ..Overrides::default()
    };
    let pipeline = config::load(&args.pipeline, &overrides)?;
    let run = RunContext::local(&pipeline, "unlock")?;
    let folder = if args.state {
        run.layout.state()
    } else {
        run.layout.runs()
    };
    let holder = crate::lock::unlock(&folder).await?;
    match &holder {
        Some(held) => tracing::warn!(run_id = %held.run_id, host = %held.host, pid = held.pid, "removed the run lock"),
        None => tracing::info!("there was no lock"),
    }
    println!(
        "{}",
        serde_json::json!({
            "lock": format!("{}{}", folder.folder_url(), crate::lock::LOCK_NAME),
            "removed": holder.is_some(),
            "holder": holder,
        })
    );
    Ok(exit::SUCCESS)
}
