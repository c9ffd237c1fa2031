//! The kept results of incremental steps: `<output>/_state/steps/<step>/`.
//!
//! ```text
//!   _state/steps/<step>/state.json                         which partitions are kept, from which export objects
//!   _state/steps/<step>/dt=2026-10-31/part-<run>-<n>.parquet   the step's rows of that partition
//! ```
//!
//! `state.json` is the commit point, written in one PUT after the files it lists: a file it does
//! not list is a killed run's leftover, removed by the next run that folds. What a partition keeps
//! depends only on its export objects and the step's definition, never on which run computed
//! it, so kept partitions are valid for any `ds`, in any order of runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Incremental;
use crate::error::Error;
use crate::marts::DataFile;
use crate::sources::files::ExportObject;
use crate::storage::{self, Location};

/// The name of a step's state file inside its folder.
pub const STATE_FILE: &str = "state.json";

/// The state format this build writes and reads.
const FORMAT: u32 = 1;

/// `state.json` of one incremental step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub format: u32,
    pub lifemap_version: String,
    pub step: String,
    /// See [`Incremental::definition`].
    pub definition: String,
    /// By partition (`dt=2026-10-31`).
    pub partitions: BTreeMap<String, KeptPartition>,
    /// Partitions not kept, with why (rows of forgotten persons): each run computes them again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_kept: BTreeMap<String, String>,
}

/// One partition's kept rows and the export objects they were computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptPartition {
    pub objects: Vec<ExportObject>,
    /// Paths relative to the step's folder.
    pub files: Vec<DataFile>,
    pub run_id: String,
}

impl KeptPartition {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

impl StepState {
    pub fn empty(step: &str, spec: &Incremental) -> Self {
        Self {
            format: FORMAT,
            lifemap_version: env!("CARGO_PKG_VERSION").into(),
            step: step.into(),
            definition: spec.definition.clone(),
            partitions: BTreeMap::new(),
            not_kept: BTreeMap::new(),
        }
    }

    /// Every file the state lists, relative to the step's folder.
    pub fn files(&self) -> BTreeSet<&str> {
        self.partitions
            .values()
            .flat_map(|kept| kept.files.iter().map(|f| f.name.as_str()))
            .collect()
    }
}

/// What was found under a step's folder.
#[derive(Debug)]
pub enum Loaded {
    /// Nothing kept yet.
    Missing,
    /// Kept by another definition, format or build, or unreadable: why it is rebuilt.
    Discarded(String),
    Found(StepState),
}

/// Read a step's state; one that cannot be used is discarded with the reason, never misread.
pub async fn load(folder: &Location, step: &str, spec: &Incremental) -> Loaded {
    let bytes = match storage::get(folder, STATE_FILE).await {
        Ok(None) => return Loaded::Missing,
        Ok(Some(bytes)) => bytes,
        Err(err) => return Loaded::Discarded(format!("cannot be read: {err}")),
    };
    let state: StepState = match serde_json::from_slice(&bytes) {
        Ok(state) => state,
        Err(err) => return Loaded::Discarded(format!("{STATE_FILE} is not a state lifemap wrote: {err}")),
    };
    if state.format != FORMAT || state.step != step {
        return Loaded::Discarded(format!(
            "written for step `{}` in format {}, not this step's format {FORMAT}",
            state.step, state.format
        ));
    }
    if state.lifemap_version != env!("CARGO_PKG_VERSION") {
        return Loaded::Discarded(format!(
            "written by lifemap {}, this is {}",
            state.lifemap_version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    if state.definition != spec.definition {
        return Loaded::Discarded("the step's SQL, settings or source changed since it was written".into());
    }
    Loaded::Found(state)
}

/// Write `state.json`: the commit point of a fold.
pub async fn save(folder: &Location, state: &StepState) -> Result<(), Error> {
    let body = serde_json::to_vec(state).map_err(|err| Error::Mart {
        mart: format!("_state/steps/{}", state.step),
        source: Box::new(err),
    })?;
    storage::put(folder, STATE_FILE, body).await
}

/// Stop keeping `keys` (their rows hold forgotten persons): they leave `state.json`, whose new
/// version is written before their files are removed. Returns the files to remove.
pub fn stop_keeping(state: &mut StepState, keys: &[String], why: &str) -> Vec<String> {
    let mut files = Vec::new();
    for key in keys {
        if let Some(kept) = state.partitions.remove(key) {
            files.extend(kept.files.into_iter().map(|f| f.name));
        }
        state.not_kept.insert(key.clone(), why.to_string());
    }
    files
}

/// Why a listed partition must be computed again, or `None` when its kept rows still hold.
/// `present` maps the files found in the step's folder to their sizes.
pub fn stale_reason(
    kept: Option<&KeptPartition>,
    objects: &[ExportObject],
    present: &BTreeMap<String, u64>,
) -> Option<&'static str> {
    let Some(kept) = kept else {
        return Some("new");
    };
    if kept.objects.len() != objects.len() {
        return Some("objects added or removed");
    }
    let before: BTreeMap<&str, &ExportObject> = kept.objects.iter().map(|o| (o.path.as_str(), o)).collect();
    for object in objects {
        match before.get(object.path.as_str()) {
            None => return Some("objects added or removed"),
            Some(seen) if seen.replaced_by(object) => return Some("objects replaced"),
            Some(_) => {}
        }
    }
    let intact = kept
        .files
        .iter()
        .all(|file| present.get(&file.name).is_some_and(|&size| size == file.bytes));
    (!intact).then_some("kept files missing or truncated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str, size: u64, e_tag: &str) -> ExportObject {
        ExportObject {
            path: path.into(),
            size,
            e_tag: Some(e_tag.into()),
            last_modified: "2026-11-01T00:00:00Z".into(),
        }
    }

    fn kept(objects: Vec<ExportObject>) -> KeptPartition {
        KeptPartition {
            objects,
            files: vec![DataFile {
                name: "dt=2026-10-31/part-a-0.parquet".into(),
                rows: 3,
                bytes: 100,
            }],
            run_id: "a".into(),
        }
    }

    #[test]
    fn a_partition_is_recomputed_when_its_objects_or_files_change() {
        let present: BTreeMap<String, u64> = [("dt=2026-10-31/part-a-0.parquet".to_string(), 100)].into();
        let objects = vec![object("e/dt=2026-10-31/a.gz", 10, "1")];
        let same = kept(objects.clone());
        assert_eq!(stale_reason(Some(&same), &objects, &present), None);
        assert_eq!(stale_reason(None, &objects, &present), Some("new"));
        let late = vec![objects[0].clone(), object("e/dt=2026-10-31/b.gz", 5, "2")];
        assert_eq!(
            stale_reason(Some(&same), &late, &present),
            Some("objects added or removed")
        );
        let re_exported = vec![object("e/dt=2026-10-31/a.gz", 10, "1b")];
        assert_eq!(
            stale_reason(Some(&same), &re_exported, &present),
            Some("objects replaced")
        );
        let truncated: BTreeMap<String, u64> = [("dt=2026-10-31/part-a-0.parquet".to_string(), 40)].into();
        assert_eq!(
            stale_reason(Some(&same), &objects, &truncated),
            Some("kept files missing or truncated")
        );
        assert_eq!(
            stale_reason(Some(&same), &objects, &BTreeMap::new()),
            Some("kept files missing or truncated")
        );
    }
}
