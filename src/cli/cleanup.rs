//! `lifemap cleanup`: remove what killed runs left behind, for one `ds` or every one, and vacuum
//! Delta marts. A run does the first for its own `ds` before anything else; this command is for
//! the dates no run will revisit.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;

use super::args::parse_var;
use crate::config::{self, Overrides, parse_ds};
use crate::error::{Error, exit};
use crate::marts::Leftovers;
use crate::runner;

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The pipeline file (e.g. pipelines/customer_lifecycle.yaml).
    pub pipeline: PathBuf,

    /// Only this logical date (YYYY-MM-DD); default: every date with a staging folder or a mart
    /// partition.
    #[arg(long, value_parser = parse_ds)]
    pub ds: Option<NaiveDate>,

    /// Override a pipeline var (repeatable): --var marts_uri=s3://acme/marts
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

/// Prints one JSON line: the dates looked at, what was removed, the dates left alone because a
/// run holds their lock (then exits 75, so a scheduler retries), and per Delta mart the files its
/// vacuum deleted.
pub(super) async fn run(args: &CleanupArgs) -> Result<i32, Error> {
    let overrides = Overrides {
        ds: args.ds,
        vars: args.vars.clone(),
        ..Overrides::default()
    };
    let pipeline = config::load(&args.pipeline, &overrides)?;
    let only = args.ds.map(|_| pipeline.date.ds_string());
    let cleaned = runner::cleanup(&pipeline, only.as_deref()).await?;
    let vacuumed = runner::vacuum_delta_marts(&pipeline).await?;
    let mut removed = Leftovers::default();
    let mut busy = Vec::new();
    for date in &cleaned {
        match date.removed {
            Some(leftovers) => {
                removed.staged += leftovers.staged;
                removed.uncommitted += leftovers.uncommitted;
            }
            None => busy.push(date.ds.as_str()),
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "dates": cleaned.len(),
            "removed": removed,
            "busy": busy,
            "vacuumed": vacuumed,
            "cleaned": cleaned.iter().filter(|date| date.removed.is_some_and(|r| r.any())).collect::<Vec<_>>(),
        })
    );
    Ok(if busy.is_empty() {
        exit::SUCCESS
    } else {
        exit::TEMPORARY
    })
}
