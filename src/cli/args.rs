//! What every pipeline command takes (the pipeline file, `--ds`, `--var`), the value parsers of
//! the flags, and the overrides they make of the pipeline file.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;

use crate::config::{self, Overrides, parse_ds};

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

pub(super) fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    config::parse_bytes(text)
}

pub(super) fn parse_engine_flag(text: &str) -> Result<String, String> {
    config::parse_engine(text).map(|_| text.to_string())
}

pub(super) fn overrides(
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
