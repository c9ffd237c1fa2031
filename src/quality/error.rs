//! How the checks can stop a run.

/// Error-level checks failed, so nothing is published: each named with its failing rows.
#[derive(Debug, thiserror::Error)]
#[error("data-quality checks failed: {0}")]
pub struct QualityFailure(pub String);
