//! One run per pipeline and `ds` at a time: a lock object created with a conditional put.
//!
//! `<output>/_runs/ds=<ds>/_lock` is created with `PutMode::Create`, which the store performs
//! atomically (a local rename without replace; on S3 `If-None-Match: *`), so of two runs starting
//! together exactly one creates it; the other exits 75 and a scheduler retries it later. A store
//! that ignores the condition (Garage 2.5 does) still refuses a run while a lock exists, and the
//! run reads its lock back; only two runs starting within the same moment could both pass. The lock
//! is deleted when the run ends, however it ends. A lock left by a run that was killed is stale
//! when its process is gone (same host) or it is older than the stale timeout; the next run then
//! takes it over.

pub mod error;

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::storage::Location;
use error::Busy;

/// The name of the lock object in the run's `_runs/ds=<ds>/` folder.
pub use crate::layout::LOCK as LOCK_NAME;

/// What a lock object holds: who holds it, since when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
}

/// A held lock; [`RunLock::release`] deletes it.
#[derive(Debug)]
pub struct RunLock {
    folder: Location,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether the run that wrote `info` can no longer be running.
fn is_stale(info: &LockInfo, stale_after: Duration, now: DateTime<Utc>) -> bool {
    let age = now.signed_duration_since(info.acquired_at).to_std().unwrap_or_default();
    if age > stale_after {
        return true;
    }
    // On the same host a dead process is certain; elsewhere only the age can tell.
    info.host == this_host()
        && cfg!(target_os = "linux")
        && !std::path::Path::new(&format!("/proc/{}", info.pid)).exists()
}

fn busy(folder: &Location, held: &LockInfo) -> Error {
    Error::Busy(Busy(format!(
        "another run of this pipeline holds {}{LOCK_NAME} (run {} on {}, pid {}, since {})",
        folder.folder_url(),
        held.run_id,
        held.host,
        held.pid,
        held.acquired_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )))
}

fn storage_error(folder: &Location, action: &str) -> impl FnOnce(object_store::Error) -> Error {
    let context = format!("{action} {}{LOCK_NAME}", folder.folder_url());
    move |source| Error::Storage { context, source }
}

impl RunLock {
    /// Take the lock of the run folder `folder` for `run_id`, taking over a stale one.
    pub async fn acquire(folder: Location, run_id: &str, stale_after: Duration) -> Result<RunLock, Error> {
        let path = folder.path.clone().join(LOCK_NAME);
        let info = LockInfo {
            run_id: run_id.to_string(),
            host: this_host(),
            pid: std::process::id(),
            acquired_at: Utc::now(),
        };
        let body = serde_json::to_vec_pretty(&info).unwrap_or_default();
        // Three rounds at most: a stale lock is removed in one and taken in the next.
        for _ in 0..3 {
            // Look first: some S3-compatible servers (Garage 2.5 among them) accept the
            // conditional put below but ignore its condition and overwrite.
            if let Some(bytes) = crate::storage::get(&folder, LOCK_NAME).await? {
                let held = serde_json::from_slice::<LockInfo>(&bytes).ok();
                match held {
                    Some(held) if !is_stale(&held, stale_after, Utc::now()) => return Err(busy(&folder, &held)),
                    // Stale, or not a lock lifemap wrote: remove it and try again.
                    stale => {
                        tracing::warn!(lock = ?stale, "taking over a stale run lock");
                        folder
                            .store
                            .delete(&path)
                            .await
                            .map_err(storage_error(&folder, "removing the stale"))?;
                        continue;
                    }
                }
            }
            let options = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match folder
                .store
                .put_opts(&path, PutPayload::from(body.clone()), options)
                .await
            {
                Ok(_) => {}
                // Another run created it since we looked: the next round reads whose it is.
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => continue,
                Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => {
                    crate::storage::put(&folder, LOCK_NAME, body.clone()).await?;
                }
                Err(err) => return Err(storage_error(&folder, "creating")(err)),
            }
            // Read it back: where the condition was ignored, the last writer holds the lock and
            // every other run sees its id here and stands down.
            let written = crate::storage::get(&folder, LOCK_NAME)
                .await?
                .and_then(|bytes| serde_json::from_slice::<LockInfo>(&bytes).ok());
            return match written {
                Some(held) if held.run_id != run_id => Err(busy(&folder, &held)),
                _ => Ok(RunLock { folder }),
            };
        }
        Err(Error::Busy(Busy(format!(
            "could not take {}{LOCK_NAME}: other runs keep taking it",
            folder.folder_url()
        ))))
    }

    /// Delete the lock; a failure only leaves a lock that goes stale.
    pub async fn release(self) {
        let path = self.folder.path.clone().join(LOCK_NAME);
        if let Err(err) = self.folder.store.delete(&path).await {
            tracing::warn!(error = %err, "could not remove the run lock; it goes stale when this process ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(host: &str, pid: u32, minutes_ago: i64) -> LockInfo {
        LockInfo {
            run_id: "r".into(),
            host: host.into(),
            pid,
            acquired_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
        }
    }

    #[tokio::test]
    async fn of_two_runs_taking_the_lock_together_exactly_one_gets_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ctx = datafusion::prelude::SessionContext::new();
        let folder = crate::storage::resolve(&ctx, dir.path().to_str().expect("utf-8")).expect("location");
        let hour = Duration::from_secs(3600);
        let (first, second) = tokio::join!(
            RunLock::acquire(folder.clone(), "run-a", hour),
            RunLock::acquire(folder.clone(), "run-b", hour)
        );
        assert!(
            first.is_ok() != second.is_ok(),
            "exactly one holds the lock: {first:?} / {second:?}"
        );
        let refused = if first.is_err() { first } else { second };
        assert!(matches!(refused, Err(Error::Busy(_))), "{refused:?}");
    }

    #[test]
    fn a_lock_is_stale_when_old_or_its_process_is_gone() {
        let hour = Duration::from_secs(3600);
        let me = std::process::id();
        assert!(!is_stale(&info(&this_host(), me, 1), hour, Utc::now()));
        assert!(is_stale(&info(&this_host(), me, 61), hour, Utc::now()));
        // Another host's fresh lock: its process cannot be checked, so it holds.
        assert!(!is_stale(&info("elsewhere", u32::MAX, 1), hour, Utc::now()));
        if cfg!(target_os = "linux") {
            assert!(is_stale(&info(&this_host(), u32::MAX, 1), hour, Utc::now()));
        }
    }
}
