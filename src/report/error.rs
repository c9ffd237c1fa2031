//! How rendering a report can fail.

/// The report could not be rendered or its marts read (a template error, a mart missing).
#[derive(Debug, thiserror::Error)]
#[error("report: {0}")]
pub struct ReportError(pub String);
