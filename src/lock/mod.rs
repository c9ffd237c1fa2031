//! One run per pipeline and `ds` at a time: a lock with a lease, taken by a claim protocol that
//! holds even on stores that ignore conditional writes.
//!
//! ```text
//!   <folder>/_lock                    the holder: run id, host, pid, lease expiry
//!   <folder>/_lock.claims/<run_id>    one claim per run trying to take it
//! ```
//!
//! A run reads `_lock`: held and live, it stops (exit 75). Otherwise it writes its claim, waits
//! a moment longer than the store's timestamps are coarse, and lists the claims; the live claim
//! with the earliest store timestamp (then the smallest run id) wins, writes `_lock` and keeps
//! its claim until it releases; every other run removes its claim and stops. Of runs starting
//! together each sees the same claims and picks the same winner; a claim written after the
//! winner listed carries a later timestamp than the winner's, so its run stands down too. No
//! step needs `If-None-Match` (Garage 2.5 accepts it and ignores it).
//!
//! The holder renews its lease every quarter of it (a heartbeat). A lock whose lease ran out, or
//! whose process is gone (same host), is taken over with a warning naming its holder; a holder
//! that finds its lock taken over stops its run. The lock and the claim are deleted when the run
//! ends, however it ends; `lifemap unlock` removes a lock on purpose.

pub mod error;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::storage::Location;
use error::Busy;

/// The name of the lock object in the run's `_runs/ds=<ds>/` folder.
pub use crate::layout::LOCK as LOCK_NAME;

/// The folder of the claims next to the lock.
fn claims_name() -> String {
    format!("{LOCK_NAME}.claims")
}

/// What a lock or a claim holds: who, since when, until when unless renewed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A held lock; [`RunLock::release`] deletes it.
#[derive(Debug)]
pub struct RunLock {
    folder: Location,
    run_id: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether the run that wrote `info` can no longer hold it: its lease ran out, or its process is
/// gone (only knowable on the same host).
fn is_stale(info: &LockInfo, now: DateTime<Utc>) -> bool {
    info.expires_at < now
        || (info.host == this_host()
            && cfg!(target_os = "linux")
            && !std::path::Path::new(&format!("/proc/{}", info.pid)).exists())
}

fn describe(held: &LockInfo) -> String {
    format!(
        "run {} on {}, pid {}, since {}, lease until {}",
        held.run_id,
        held.host,
        held.pid,
        held.acquired_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        held.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn busy(folder: &Location, held: &LockInfo) -> Error {
    Error::Busy(Busy(format!(
        "another run of this pipeline holds {}{LOCK_NAME} ({})",
        folder.folder_url(),
        describe(held)
    )))
}

fn storage_error(folder: &Location, action: &str) -> impl FnOnce(object_store::Error) -> Error {
    let context = format!("{action} {}{LOCK_NAME}", folder.folder_url());
    move |source| Error::Storage { context, source }
}

/// How long a claim waits before listing the others: longer than the store's timestamps are
/// coarse (S3 and most compatible servers: one second; a local filesystem: a clock tick).
fn settle_time(folder: &Location) -> Duration {
    if folder.url.scheme() == "file" {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(1100)
    }
}

async fn read_lock(folder: &Location) -> Result<Option<Option<LockInfo>>, Error> {
    Ok(crate::storage::get(folder, LOCK_NAME)
        .await?
        .map(|bytes| serde_json::from_slice::<LockInfo>(&bytes).ok()))
}

fn info(run_id: &str, lease: Duration) -> LockInfo {
    let now = Utc::now();
    LockInfo {
        run_id: run_id.to_string(),
        host: this_host(),
        pid: std::process::id(),
        acquired_at: now,
        expires_at: now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
    }
}

impl RunLock {
    /// Take the lock of the run folder `folder` for `run_id` with a lease of `lease`, taking over
    /// a stale one. While held, the lease is renewed; if another run takes the lock over (this
    /// process could not renew it in time), `on_loss` is cancelled.
    pub async fn acquire(
        folder: Location,
        run_id: &str,
        lease: Duration,
        on_loss: Option<CancellationToken>,
    ) -> Result<RunLock, Error> {
        let claims = folder.child(&claims_name());
        let claim = claims.path.clone().join(run_id);
        let mine = info(run_id, lease);
        match read_lock(&folder).await? {
            Some(Some(held)) if !is_stale(&held, Utc::now()) => return Err(busy(&folder, &held)),
            Some(held) => {
                let holder = held
                    .as_ref()
                    .map_or_else(|| "not a lock lifemap wrote".to_string(), describe);
                tracing::warn!(lock = %format!("{}{LOCK_NAME}", folder.folder_url()), holder, "taking over a stale run lock");
            }
            None => {}
        }
        let body = serde_json::to_vec_pretty(&mine).unwrap_or_default();
        folder
            .store
            .put(&claim, body.clone().into())
            .await
            .map_err(storage_error(&folder, "claiming"))?;
        tokio::time::sleep(settle_time(&folder)).await;
        let outcome = Self::decide(&folder, &claims, run_id).await;
        if let Err(err) = outcome {
            let _ = folder.store.delete(&claim).await;
            return Err(err);
        }
        folder
            .store
            .put(&folder.path.clone().join(LOCK_NAME), body.into())
            .await
            .map_err(storage_error(&folder, "writing"))?;
        let heartbeat = tokio::spawn(heartbeat(
            folder.clone(),
            (run_id.to_string(), mine.acquired_at),
            lease,
            on_loss,
        ));
        Ok(RunLock {
            folder,
            run_id: run_id.to_string(),
            heartbeat,
        })
    }

    /// Whether this run's claim wins: the earliest live claim by the store's clock, then the
    /// smallest run id; and the lock is not held live by another run since.
    async fn decide(folder: &Location, claims: &Location, run_id: &str) -> Result<(), Error> {
        let listed: Vec<object_store::ObjectMeta> = folder
            .store
            .list(Some(&claims.path))
            .try_collect()
            .await
            .map_err(storage_error(folder, "listing the claims of"))?;
        let holder = read_lock(folder).await?.flatten();
        let now = Utc::now();
        let mut live = Vec::new();
        for meta in listed {
            let Some(bytes) = crate::storage::get(claims, meta.location.filename().unwrap_or_default()).await? else {
                continue;
            };
            let Ok(claim) = serde_json::from_slice::<LockInfo>(&bytes) else {
                continue;
            };
            let holds = holder
                .as_ref()
                .is_some_and(|held| held.run_id == claim.run_id && !is_stale(held, now));
            if holds || !is_stale(&claim, now) {
                live.push((meta.last_modified, claim));
            } else {
                // A claim of a run that died: nobody will remove it otherwise.
                let _ = folder.store.delete(&meta.location).await;
            }
        }
        live.sort_by(|a, b| (a.0, &a.1.run_id).cmp(&(b.0, &b.1.run_id)));
        match live.first() {
            Some((_, winner)) if winner.run_id != run_id => Err(busy(folder, winner)),
            _ => match holder {
                Some(held) if held.run_id != run_id && !is_stale(&held, now) => Err(busy(folder, &held)),
                _ => Ok(()),
            },
        }
    }

    /// Stop renewing, then delete the lock and this run's claim; a failure only leaves a lock
    /// whose lease runs out.
    pub async fn release(self) {
        self.heartbeat.abort();
        let lock = self.folder.path.clone().join(LOCK_NAME);
        let claim = self
            .folder
            .child(&claims_name())
            .path
            .clone()
            .join(self.run_id.as_str());
        for path in [lock, claim] {
            if let Err(err) = self.folder.store.delete(&path).await
                && !matches!(err, object_store::Error::NotFound { .. })
            {
                tracing::warn!(error = %err, %path, "could not remove the run lock; its lease runs out");
            }
        }
    }
}

/// Renew the lease every quarter of it; stop the run (through `on_loss`) if another run holds
/// the lock now.
async fn heartbeat(
    folder: Location,
    (run_id, acquired_at): (String, DateTime<Utc>),
    lease: Duration,
    on_loss: Option<CancellationToken>,
) {
    let every = (lease / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match read_lock(&folder).await {
            Ok(Some(Some(held))) if held.run_id != run_id => {
                tracing::error!(holder = %describe(&held), "this run's lock was taken over (its lease ran out): stopping");
                if let Some(token) = &on_loss {
                    token.cancel();
                }
                return;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "could not read the run lock to renew it; trying again");
                continue;
            }
        }
        let renewed = LockInfo {
            acquired_at,
            ..info(&run_id, lease)
        };
        let body = serde_json::to_vec_pretty(&renewed).unwrap_or_default();
        if let Err(err) = folder
            .store
            .put(&folder.path.clone().join(LOCK_NAME), body.into())
            .await
        {
            tracing::warn!(error = %err, "could not renew the run lock's lease; trying again");
        }
    }
}

/// Remove the lock of `folder` and every claim, whoever holds it: `lifemap unlock`. Returns the
/// holder it named, if there was a lock.
pub async fn unlock(folder: &Location) -> Result<Option<LockInfo>, Error> {
    let held = read_lock(folder).await?;
    let claims = folder.child(&claims_name());
    let paths: Vec<ObjectPath> = folder
        .store
        .list(Some(&claims.path))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(storage_error(folder, "listing the claims of"))?;
    for path in paths.into_iter().chain([folder.path.clone().join(LOCK_NAME)]) {
        match folder.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(storage_error(folder, "removing")(err)),
        }
    }
    Ok(held.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(host: &str, pid: u32, expires_in_minutes: i64) -> LockInfo {
        LockInfo {
            run_id: "r".into(),
            host: host.into(),
            pid,
            acquired_at: Utc::now() - chrono::Duration::minutes(5),
            expires_at: Utc::now() + chrono::Duration::minutes(expires_in_minutes),
        }
    }

    #[tokio::test]
    async fn of_two_runs_taking_the_lock_together_exactly_one_gets_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ctx = datafusion::prelude::SessionContext::new();
        let folder = crate::storage::resolve(&ctx, dir.path().to_str().expect("utf-8")).expect("location");
        let hour = Duration::from_secs(3600);
        let (first, second) = tokio::join!(
            RunLock::acquire(folder.clone(), "run-a", hour, None),
            RunLock::acquire(folder.clone(), "run-b", hour, None)
        );
        assert!(
            first.is_ok() != second.is_ok(),
            "exactly one holds the lock: {first:?} / {second:?}"
        );
        let refused = if first.is_err() { first } else { second };
        assert!(matches!(refused, Err(Error::Busy(_))), "{refused:?}");
    }

    #[test]
    fn a_lock_is_stale_when_its_lease_ran_out_or_its_process_is_gone() {
        let me = std::process::id();
        assert!(!is_stale(&held(&this_host(), me, 1), Utc::now()));
        assert!(is_stale(&held(&this_host(), me, -1), Utc::now()));
        // Another host's live lease: its process cannot be checked, so it holds.
        assert!(!is_stale(&held("elsewhere", u32::MAX, 1), Utc::now()));
        assert!(is_stale(&held("elsewhere", u32::MAX, -1), Utc::now()));
        if cfg!(target_os = "linux") {
            assert!(is_stale(&held(&this_host(), u32::MAX, 1), Utc::now()));
        }
    }

    #[tokio::test]
    async fn a_held_lock_is_renewed_and_an_expired_one_is_taken_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ctx = datafusion::prelude::SessionContext::new();
        let folder = crate::storage::resolve(&ctx, dir.path().to_str().expect("utf-8")).expect("location");
        let lease = Duration::from_millis(800);
        let lost = CancellationToken::new();
        let first = RunLock::acquire(folder.clone(), "run-a", lease, Some(lost.clone()))
            .await
            .expect("first");
        let written = read_lock(&folder).await.expect("read").flatten().expect("a lock");
        // Past the first lease: the heartbeat renewed it, so it still holds.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let renewed = read_lock(&folder).await.expect("read").flatten().expect("a lock");
        assert!(renewed.expires_at > written.expires_at);
        assert!(matches!(
            RunLock::acquire(folder.clone(), "run-b", lease, None).await,
            Err(Error::Busy(_))
        ));
        // Another run took the lock over (as if this one had not renewed in time): the holder's
        // heartbeat sees it and stops its run.
        let mut other = renewed.clone();
        other.run_id = "run-x".into();
        crate::storage::put(&folder, LOCK_NAME, serde_json::to_vec(&other).expect("json"))
            .await
            .expect("put");
        tokio::time::timeout(Duration::from_secs(30), lost.cancelled())
            .await
            .expect("the holder learns it lost the lock");
        first.heartbeat.abort();
        // A holder elsewhere whose lease ran out: taken over.
        let mut stale = renewed.clone();
        stale.host = "elsewhere".into();
        stale.expires_at = Utc::now() - chrono::Duration::seconds(1);
        crate::storage::put(&folder, LOCK_NAME, serde_json::to_vec(&stale).expect("json"))
            .await
            .expect("put");
        let second = RunLock::acquire(folder.clone(), "run-b", lease, None)
            .await
            .expect("taken over");
        let now_held = read_lock(&folder).await.expect("read").flatten().expect("a lock");
        assert_eq!(now_held.run_id, "run-b");
        second.release().await;
        assert!(read_lock(&folder).await.expect("read").is_none());
        assert!(unlock(&folder).await.expect("unlock").is_none());
    }
}
