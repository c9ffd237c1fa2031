//! How taking the run lock can fail.

/// Another run of the same pipeline and `ds` holds the lock (or keeps taking it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Busy(pub String);
