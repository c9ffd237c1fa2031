//! Quality: data-quality checks, each run as soon as the tables it reads exist, and always before
//! anything is published.
//!
//! A check is SQL whose rows are failures. An error-level failure stops the run: nothing is
//! published and lifemap exits 3. A warning is recorded in `run_results.json` and the run goes on.

pub mod error;

use std::time::Instant;

use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::config::Check;
use crate::config::checks::PREVIOUS_ROWS_PLACEHOLDER;
use crate::config::raw::Severity;
use crate::error::Error;
use error::QualityFailure;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// A table it reads was not computed (e.g. with `--select`).
    Skipped,
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    /// `expression`, `not_null`, `unique`, `accepted_values`, `relationships`, `row_count`,
    /// `freshness` or `quarantine_share`.
    pub kind: &'static str,
    pub severity: Severity,
    pub status: CheckStatus,
    pub failing_rows: u64,
    /// Up to `examples` failing rows, as JSON objects.
    pub examples: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For a `row_count` change check: the `ds` of the partition compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with_ds: Option<String>,
    pub duration_ms: u64,
}

fn check_error(check: &Check, source: datafusion::error::DataFusionError) -> Error {
    Error::Engine {
        context: format!("check `{}`", check.name),
        source,
    }
}

impl CheckOutcome {
    /// A check that did not run: a table it reads was not computed (e.g. with `--select`).
    pub fn skipped(check: &Check) -> Self {
        CheckOutcome {
            name: check.name.clone(),
            kind: check.kind,
            severity: check.severity,
            status: CheckStatus::Skipped,
            failing_rows: 0,
            examples: Vec::new(),
            description: check.description.clone(),
            compared_with_ds: None,
            duration_ms: 0,
        }
    }
}

/// Run one check; its tables must be registered in `ctx`. `previous` is the `ds` and row count of
/// the partition a `row_count` change check compares with, when there is one.
pub async fn run_check(
    ctx: &SessionContext,
    check: &Check,
    previous: Option<(String, u64)>,
) -> Result<CheckOutcome, Error> {
    let started = Instant::now();
    let sql = match &previous {
        Some((_, rows)) => check.sql.replace(
            PREVIOUS_ROWS_PLACEHOLDER,
            &format!("CAST({rows} AS BIGINT) AS previous_rows"),
        ),
        None => check.sql.clone(),
    };
    let failures = ctx
        .sql_with_options(&sql, crate::transform::sql_options())
        .await
        .map_err(|e| check_error(check, e))?;
    // Computed once for the count and the examples; a cluster cannot `cache()` (its client holds
    // no rows), so there the check's query runs twice.
    let failures = if crate::engine::cluster::client::is_client(ctx) {
        failures
    } else {
        failures.cache().await.map_err(|e| check_error(check, e))?
    };
    let failing_rows = failures.clone().count().await.map_err(|e| check_error(check, e))? as u64;
    let examples = failures
        .limit(0, Some(check.examples))
        .map_err(|e| check_error(check, e))?;
    let examples = examples.collect().await.map_err(|e| check_error(check, e))?;
    // Examples are for people: a row that cannot be shown does not fail the check.
    let examples = crate::rows::to_json(&examples, false).unwrap_or_default();
    if failing_rows > 0 {
        tracing::warn!(check = %check.name, failing_rows, severity = ?check.severity, "check failed");
    }
    Ok(CheckOutcome {
        status: if failing_rows == 0 {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed
        },
        failing_rows,
        examples,
        compared_with_ds: previous.map(|(ds, _)| ds),
        duration_ms: started.elapsed().as_millis() as u64,
        ..CheckOutcome::skipped(check)
    })
}

/// The error for the error-level failures among `outcomes`, if any.
pub fn blocking_failures(outcomes: &[CheckOutcome]) -> Option<Error> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == CheckStatus::Failed && o.severity == Severity::Error)
        .map(|o| {
            let example = o.examples.first().map(|e| format!("; e.g. {e}")).unwrap_or_default();
            format!("`{}` ({} failing rows{example})", o.name, o.failing_rows)
        })
        .collect();
    (!failed.is_empty()).then(|| Error::Quality(QualityFailure(failed.join(", "))))
}
