//! Planning one SQL step, the error that names it, and what running it did: shared by the
//! ways a step is computed (held, viewed, on a cluster, incremental).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::config::Step;
use crate::error::Error;

pub(crate) fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plan one step's SQL in `ctx` (its inputs must be registered). A step's `settings` go into a
/// copy of the session's state that the returned frame carries: they hold while it is planned
/// and run, and no other step sees them.
pub async fn plan_step(ctx: &SessionContext, step: &Step) -> Result<DataFrame, Error> {
    // What `SessionContext::sql_with_options` does for a query, on a state of the step's own.
    let mut state = ctx.state();
    let options = state.config_mut().options_mut();
    for (name, value) in &step.settings {
        options.set(name, value).map_err(|source| step_error(step, source))?;
    }
    let plan = state
        .create_logical_plan(&step.sql)
        .await
        .map_err(|source| step_error(step, source))?;
    sql_options()
        .verify_plan(&plan)
        .map_err(|source| step_error(step, source))?;
    Ok(DataFrame::new(state, plan))
}

pub fn step_error(step: &Step, source: datafusion::error::DataFusionError) -> Error {
    let location = super::located::locate(
        &step.sql,
        &step.template,
        step.origin.file_name().as_deref(),
        &source.to_string(),
    );
    Error::Step {
        step: step.name.clone(),
        origin: step.origin.clone(),
        source,
        location,
    }
}

/// What running one step did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepOutcome {
    pub name: String,
    pub materialized: bool,
    /// Known for materialised steps; a view's rows are counted where it is read.
    pub rows: Option<u64>,
    /// Bytes of Parquet a materialised step was held in because it passed its share of
    /// `--memory-limit` (see `on_disk`); absent when it was held in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_on_disk: Option<u64>,
    pub duration_ms: u64,
    /// What a non-SQL step found (for k-means: k, silhouette, inertia, persona sizes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    #[serde(skip)]
    pub schema: Option<SchemaRef>,
}
