//! The crate's error type and the exit codes schedulers see.
//!
//! Stages whose failures are their own define them beside their code, in a file that imports
//! nothing of the crate (`delivery::error`, `report::error`, `lock::error`, `quality::error`; and
//! `config::Diagnostics`); [`Error`] folds them in with the engine's, storage's and I/O errors,
//! each with what it was doing. [`chain`] walks a failure's causes for the one renderer
//! ([`Error::render`]) and for sorting it into an exit code.
//!
//! Each failure carries what it was doing (which source, step or mart) and is sorted into one
//! exit code: storage that is down or throttling is "temporary, safe to retry" (75); credentials
//! that are refused or a bad setting is a configuration error (2); anything else a run failure (1).

use std::path::PathBuf;

use datafusion::error::DataFusionError;

use crate::config::{Diagnostics, SqlOrigin};
use crate::delivery::error::DeliveryError;
use crate::lock::error::Busy;
use crate::quality::error::QualityFailure;
use crate::report::error::ReportError;

/// Exit codes of the `lifemap` binary (documented in `--help` and docs/operations.md).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const RUN_FAILED: i32 = 1;
    pub const CONFIG: i32 = 2;
    pub const DATA_QUALITY: i32 = 3;
    pub const TEMPORARY: i32 = 75;
    pub const NOTHING_TO_DO: i32 = 99;
    /// Stopped by SIGTERM or SIGINT (128 + SIGINT, as shells report an interrupted command).
    pub const CANCELLED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems found in a pipeline file, all of them.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),

    /// A bad command line or setting found outside the pipeline file.
    #[error("{0}")]
    Usage(String),

    /// The run was stopped on purpose (a signal): nothing half-published, safe to run again.
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// A setting that is well-formed but unusable (e.g. missing credentials).
    #[error("{0}")]
    Config(String),

    #[error("source `{name}` ({location}): {message}")]
    Source {
        name: String,
        location: String,
        message: String,
    },

    #[error("source `{name}` ({location}): {source}")]
    SourceQuery {
        name: String,
        location: String,
        #[source]
        source: DataFusionError,
    },

    #[error("step `{step}` ({origin}): {source}{}", .location.as_deref().map(|place| format!("\n  {place}")).unwrap_or_default())]
    Step {
        step: String,
        origin: SqlOrigin,
        #[source]
        source: DataFusionError,
        /// Where in the SQL, with the rendered lines around it (see `transform::located`).
        location: Option<String>,
    },

    #[error("mart `{mart}`: {source}")]
    Mart {
        mart: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(transparent)]
    Delta(#[from] DeltaError),

    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: object_store::Error,
    },

    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: DataFusionError,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Partitions an earlier run listed are gone from the exports: a rebuild would drop history.
    #[error("{} partition(s) an earlier run listed are gone from the exports: {}", .0.len(), .0.join(", "))]
    RemovedPartitions(Vec<String>),

    /// No input for this `ds`: the scheduler can mark the task skipped.
    #[error("nothing to do: {0}")]
    NothingToDo(String),

    #[error(transparent)]
    Quality(#[from] QualityFailure),

    #[error(transparent)]
    Report(#[from] ReportError),

    #[error(transparent)]
    Busy(#[from] Busy),

    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// An error and every cause under it, outermost first: the one walk of a chain that
/// classifying, rendering and matching causes share.
pub fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |link| link.source())
}

/// A Delta operation that failed, with what lifemap was doing.
#[derive(Debug, thiserror::Error)]
#[error("Delta table {table}: {context}: {source}")]
pub struct DeltaError {
    pub table: String,
    pub context: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What kind of failure an error chain ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Network, timeouts, throttling, 5xx: retrying later may succeed.
    Temporary,
    /// Credentials refused.
    Auth,
    NotFound,
    Other,
}

impl Error {
    /// Whether this failure is a file that could not be read or parsed (bad compression, invalid
    /// UTF-8, a CSV row with the wrong number of fields, ...), as opposed to a query or storage error.
    pub fn is_unreadable_input(&self) -> bool {
        use datafusion::arrow::error::ArrowError;
        let unreadable = |arrow: &ArrowError| {
            matches!(
                arrow,
                ArrowError::CsvError(_)
                    | ArrowError::JsonError(_)
                    | ArrowError::IoError(..)
                    | ArrowError::ParseError(_)
            )
        };
        chain(self).any(|link| {
            link.downcast_ref::<ArrowError>().is_some_and(unreadable)
                || matches!(link.downcast_ref::<DataFusionError>(), Some(DataFusionError::ArrowError(arrow, _)) if unreadable(arrow))
        })
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Usage(_) | Error::Config(_) => exit::CONFIG,
            Error::NothingToDo(_) => exit::NOTHING_TO_DO,
            Error::Quality(_) | Error::RemovedPartitions(_) => exit::DATA_QUALITY,
            Error::Busy(_) => exit::TEMPORARY,
            Error::Cancelled(_) => exit::CANCELLED,
            Error::Source { .. } | Error::Report(_) => exit::RUN_FAILED,
            Error::Delivery(err) if err.temporary => exit::TEMPORARY,
            Error::Delivery(_) => exit::RUN_FAILED,
            _ => match classify(self) {
                FailureKind::Temporary => exit::TEMPORARY,
                FailureKind::Auth => exit::CONFIG,
                FailureKind::NotFound | FailureKind::Other => exit::RUN_FAILED,
            },
        }
    }

    /// The message and, each on its own line, the causes it does not already say.
    pub fn render(&self) -> Vec<String> {
        let message = self.to_string();
        let mut lines = vec![message.clone()];
        if !matches!(self, Error::Invalid(_)) {
            lines.extend(
                chain(self)
                    .skip(1)
                    .map(|cause| cause.to_string())
                    .filter(|text| !message.contains(text.as_str())),
            );
        }
        lines
    }

    /// A suggestion printed under the message, when there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match (self, classify(self)) {
            (Error::Invalid(_), _) => Some("run `lifemap validate PIPELINE` to list every problem"),
            (Error::RemovedPartitions(_), _) => {
                Some("restore them, or set `allow_removed_partitions: true` on the source if removing them was meant")
            }
            (Error::Cancelled(_), _) => {
                Some("nothing was half-published and the run's lock is released: run it again when wanted")
            }
            (Error::Busy(_), _) => Some(
                "two runs of one ds must not publish at once: retry when the other has finished (a lock left by a killed run is taken over once stale)",
            ),
            (Error::Delivery(err), _) if err.temporary => Some(
                "the mail server looks unavailable; the marts are published and a rerun of this ds sends the report",
            ),
            (_, FailureKind::Temporary) => Some("the storage or network looks unavailable; the run is safe to retry"),
            (_, FailureKind::Auth) => {
                Some("check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or storage.s3.*_env)")
            }
            _ if self.is_out_of_memory() => Some(
                "the work did not fit in --memory-limit (engine.memory_limit; by default 70 % of the machine's memory) even spilling to disk: raise it",
            ),
            _ => None,
        }
    }

    /// Whether the engine's memory pool refused an allocation.
    fn is_out_of_memory(&self) -> bool {
        chain(self).any(|link| {
            matches!(
                link.downcast_ref::<DataFusionError>(),
                Some(DataFusionError::ResourcesExhausted(_))
            )
        })
    }
}

/// Walk an error's causes and sort it into a [`FailureKind`].
pub fn classify(err: &(dyn std::error::Error + 'static)) -> FailureKind {
    let mut text = String::new();
    for link in chain(err) {
        if let Some(store_error) = link.downcast_ref::<object_store::Error>() {
            match store_error {
                object_store::Error::NotFound { .. } => return FailureKind::NotFound,
                object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                    return FailureKind::Auth;
                }
                _ => {}
            }
        }
        if let Some(http) = link.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            if matches!(
                http.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Interrupted | HttpErrorKind::Request
            ) {
                return FailureKind::Temporary;
            }
        }
        if let Some(io) = link.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::TimedOut
                    | ErrorKind::BrokenPipe
                    | ErrorKind::NotConnected
            ) {
                return FailureKind::Temporary;
            }
        }
        text.push_str(&link.to_string());
        text.push('\n');
    }
    classify_text(&text)
}

/// Some causes arrive only as text (object_store's retry error, errors boxed as strings).
fn classify_text(text: &str) -> FailureKind {
    const AUTH: [&str; 5] = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
        "401 Unauthorized",
    ];
    const TEMPORARY: [&str; 10] = [
        "SlowDown",
        "503 Service Unavailable",
        "500 Internal Server Error",
        "502 Bad Gateway",
        "504 Gateway Timeout",
        "error sending request",
        "connection refused",
        "Connection refused",
        "timed out",
        "connection closed before message completed",
    ];
    if AUTH.iter().any(|needle| text.contains(needle)) {
        FailureKind::Auth
    } else if TEMPORARY.iter().any(|needle| text.contains(needle)) {
        FailureKind::Temporary
    } else {
        FailureKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_exit_codes() {
        let refused = Error::Storage {
            context: "listing".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")),
            },
        };
        assert_eq!(refused.exit_code(), exit::TEMPORARY);
        let denied = Error::Storage {
            context: "listing".into(),
            source: object_store::Error::PermissionDenied {
                path: "x".into(),
                source: "no".into(),
            },
        };
        assert_eq!(denied.exit_code(), exit::CONFIG);
        let wrapped = Error::Engine {
            context: "reading".into(),
            source: DataFusionError::External(Box::new(object_store::Error::Generic {
                store: "S3",
                source: "Server returned non-2xx status code: 503 Service Unavailable: SlowDown".into(),
            })),
        };
        assert_eq!(wrapped.exit_code(), exit::TEMPORARY);
        assert_eq!(Error::NothingToDo("x".into()).exit_code(), exit::NOTHING_TO_DO);
    }
}
