//! Fetching a remote scan's next files while earlier ones are parsed.
//!
//! DataFusion 55's file stream opens a partition's next file only when the current one is read
//! to the end, so on an object store every file's request is waited for in turn, one per
//! partition. A scan's files are known when it starts, and its partitions take them from one
//! queue in that order, so whichever partition opens a file starts the requests for the files
//! after it. Only whole objects up to [`Limits::object_bytes`] are fetched ahead, and at most
//! [`Limits::bytes`] of them wait in memory (compressed, outside DataFusion's memory pool); a
//! larger file is streamed when it is opened, as before.
//!
//! Many requests are kept in flight because a request costs far more than parsing its file:
//! an object store answers a GET in tens of milliseconds, while a small daily file parses in about
//! a millisecond. How many in flight pays is measured in docs/benchmarks.md ("Reading from S3").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::task::JoinHandle;

/// How far a scan reads ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight or fetched and not yet opened.
    pub requests: usize,
    /// Bytes of fetched files not yet opened (the in-flight ones counted at their full size).
    pub bytes: u64,
    /// Files larger than this are not fetched ahead.
    pub object_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests: 128,
            bytes: 64 << 20,
            object_bytes: 16 << 20,
        }
    }
}

/// The files of one scan in the order its partitions open them, and the fetches started ahead.
pub struct ReadAhead {
    store: Arc<dyn ObjectStore>,
    files: Vec<(Path, u64)>,
    /// Each file's place in `files` (a scan may have a hundred thousand).
    positions: HashMap<Path, usize>,
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    /// Files in `Slot::Fetching`, and their total size.
    fetching: usize,
    fetching_bytes: u64,
}

enum Slot {
    Waiting,
    Fetching(JoinHandle<object_store::Result<Bytes>>),
    /// Opened (or too large to fetch ahead): never fetched again by this scan.
    Done,
}

impl ReadAhead {
    /// Whether a scan of `url` gains from reading ahead: not local files, which the page cache
    /// serves at once.
    pub fn pays_for(url: &ObjectStoreUrl) -> bool {
        !url.as_str().starts_with("file://")
    }

    pub fn new(store: Arc<dyn ObjectStore>, files: &[&PartitionedFile], limits: Limits) -> Self {
        // A file split into byte ranges (Parquet) is listed once per range: fetched once.
        let mut seen = HashSet::new();
        let files: Vec<(Path, u64)> = files
            .iter()
            .filter(|file| seen.insert(&file.object_meta.location))
            .map(|file| (file.object_meta.location.clone(), file.object_meta.size))
            .collect();
        let slots = files.iter().map(|_| Slot::Waiting).collect();
        let positions = files
            .iter()
            .enumerate()
            .map(|(position, (path, _))| (path.clone(), position))
            .collect();
        Self {
            store,
            files,
            positions,
            limits,
            state: Mutex::new(State {
                slots,
                ..State::default()
            }),
        }
    }

    /// Whether this was made for exactly these files (a plan executed again keeps its reader).
    pub fn reads(&self, files: &[&PartitionedFile]) -> bool {
        self.files.len() == files.len()
            && self
                .files
                .iter()
                .zip(files)
                .all(|((path, _), file)| *path == file.object_meta.location)
    }

    /// The fetch of `location` if one was started ahead (else the caller reads it itself), after
    /// starting fetches of the files that follow it.
    pub fn take(&self, location: &Path) -> Option<Fetched> {
        let position = *self.positions.get(location)?;
        let mut state = self.lock();
        let fetched = match std::mem::replace(&mut state.slots[position], Slot::Done) {
            Slot::Fetching(handle) => {
                state.fetching -= 1;
                state.fetching_bytes -= self.files[position].1;
                Some(Fetched(handle))
            }
            Slot::Waiting | Slot::Done => None,
        };
        self.fill(&mut state, position + 1);
        fetched
    }

    /// Start fetches from `from` on, in order, while the limits allow.
    fn fill(&self, state: &mut State, from: usize) {
        for position in from..self.files.len() {
            if state.fetching >= self.limits.requests {
                return;
            }
            if !matches!(state.slots[position], Slot::Waiting) {
                continue;
            }
            let (path, size) = &self.files[position];
            if *size > self.limits.object_bytes {
                state.slots[position] = Slot::Done;
                continue;
            }
            if state.fetching > 0 && state.fetching_bytes + size > self.limits.bytes {
                return;
            }
            let store = Arc::clone(&self.store);
            let path = path.clone();
            let handle = tokio::spawn(async move { store.get(&path).await?.bytes().await });
            state.slots[position] = Slot::Fetching(handle);
            state.fetching += 1;
            state.fetching_bytes += size;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements, so a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn in_flight(&self) -> (usize, u64) {
        let state = self.lock();
        (state.fetching, state.fetching_bytes)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // A scan that stops early (a LIMIT, a failed run) does not leave requests running.
        for slot in &self.lock().slots {
            if let Slot::Fetching(handle) = slot {
                handle.abort();
            }
        }
    }
}

/// A whole file fetched ahead (or still arriving).
pub struct Fetched(JoinHandle<object_store::Result<Bytes>>);

impl Fetched {
    pub async fn bytes(self) -> Result<Bytes> {
        let fetched = self.0.await.map_err(|err| DataFusionError::External(Box::new(err)))?;
        Ok(fetched?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectMeta;
    use object_store::local::LocalFileSystem;

    fn file(path: &str, size: u64) -> PartitionedFile {
        PartitionedFile::from(ObjectMeta {
            location: Path::from(path),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size,
            e_tag: None,
            version: None,
        })
    }

    /// Ten files of 100 bytes and one of 1,000 on disk, read through a real object store.
    fn store_of_files() -> (tempfile::TempDir, Arc<dyn ObjectStore>, Vec<PartitionedFile>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = Vec::new();
        for n in 0..11 {
            let size = if n == 5 { 1_000 } else { 100 };
            std::fs::write(dir.path().join(format!("f{n}")), vec![b'a' + n as u8; size]).expect("write");
            files.push(file(&format!("f{n}"), size as u64));
        }
        let store = LocalFileSystem::new_with_prefix(dir.path()).expect("store");
        (dir, Arc::new(store), files)
    }

    #[tokio::test]
    async fn fetches_the_files_after_the_one_opened_within_the_limits() {
        let (_dir, store, files) = store_of_files();
        let refs: Vec<&PartitionedFile> = files.iter().collect();
        let limits = Limits {
            requests: 3,
            bytes: 250,
            object_bytes: 500,
        };
        let ahead = ReadAhead::new(store, &refs, limits);
        assert!(ahead.reads(&refs));
        assert!(!ahead.reads(&refs[1..]));

        // Opening the first file starts f1 and f2; f3 would pass 250 bytes.
        assert!(
            ahead.take(&Path::from("f0")).is_none(),
            "nothing was fetched before the first open"
        );
        assert_eq!(ahead.in_flight(), (2, 200));
        let f1 = ahead.take(&Path::from("f1")).expect("f1 fetched ahead");
        assert_eq!(f1.bytes().await.expect("bytes"), Bytes::from(vec![b'b'; 100]));
        assert_eq!(ahead.in_flight(), (2, 200), "f3 started in f1's place");

        // f5 is over object_bytes: skipped, never fetched ahead; f6 is fetched after f4.
        let f2 = ahead.take(&Path::from("f2")).expect("f2");
        assert_eq!(ahead.in_flight(), (2, 200));
        assert_eq!(f2.bytes().await.expect("bytes")[0], b'c');
        assert!(ahead.take(&Path::from("f3")).is_some());
        assert!(ahead.take(&Path::from("f5")).is_none(), "too large to fetch ahead");
        let f6 = ahead.take(&Path::from("f6")).expect("f6 fetched ahead");
        assert_eq!(f6.bytes().await.expect("bytes")[0], b'g');

        // A file opened once is not fetched again; files the scan does not know are not fetched.
        assert!(ahead.take(&Path::from("f1")).is_none());
        assert!(ahead.take(&Path::from("elsewhere")).is_none());
    }

    #[tokio::test]
    async fn request_limit_holds_when_bytes_would_allow_more() {
        let (_dir, store, files) = store_of_files();
        let refs: Vec<&PartitionedFile> = files.iter().collect();
        let ahead = ReadAhead::new(store, &refs, Limits::default());
        assert!(ahead.take(&Path::from("f9")).is_none());
        // Only f10 follows f9.
        assert_eq!(ahead.in_flight(), (1, 100));
        let ahead = ReadAhead::new(
            Arc::clone(&ahead.store),
            &refs,
            Limits {
                requests: 4,
                ..Limits::default()
            },
        );
        assert!(ahead.take(&Path::from("f0")).is_none());
        assert_eq!(ahead.in_flight(), (4, 400));
    }

    #[tokio::test]
    async fn a_failed_fetch_is_reported_when_its_file_is_opened() {
        let (dir, store, files) = store_of_files();
        let refs: Vec<&PartitionedFile> = files.iter().collect();
        std::fs::remove_file(dir.path().join("f1")).expect("remove");
        let ahead = ReadAhead::new(store, &refs, Limits::default());
        assert!(ahead.take(&Path::from("f0")).is_none());
        let error = ahead
            .take(&Path::from("f1"))
            .expect("f1 was fetched ahead")
            .bytes()
            .await
            .expect_err("f1 is gone");
        assert!(error.to_string().contains("f1"), "{error}");
    }
}
