//! The export objects a run read, and what changed in them since the last successful run.
//!
//! Each successful run writes its sources' listings (path, size, ETag, modification time) to
//! `<output>/_state/inventory.json`, and a copy beside its results. The next run lists its sources
//! and compares: objects it has not seen are new; a new object in a partition an earlier run
//! listed is late (filed into an old `dt=` folder after a run saw that folder); an object whose size
//! or ETag moved was re-exported; a partition with no object left was removed. Every run rebuilds
//! its marts from all the files it lists, so a late or changed file is folded in by the run that
//! sees it; a removed partition is history the published marts hold and a rebuild would lose, so
//! it stops the run (exit 3) unless the source allows it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{Pipeline, Source};
use crate::error::Error;
use crate::layout::{INPUTS, INVENTORY, OutputLayout};
use crate::sources::SourceSummary;
pub use crate::sources::files::ExportObject;
use crate::storage;

/// The inventory format this build writes and reads; another is not compared with.
const FORMAT: u32 = 1;

/// A source's listing as one run saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceObjects {
    /// The source's location, rendered: listings of two locations are not compared.
    pub location: String,
    pub objects: Vec<ExportObject>,
}

/// `inventory.json`: every source's listing as the run that wrote it saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inventory {
    pub format: u32,
    pub lifemap_version: String,
    pub pipeline: String,
    pub pipeline_hash: String,
    pub ds: String,
    pub run_id: String,
    pub sources: BTreeMap<String, SourceObjects>,
}

/// What the last successful run left to compare with.
#[derive(Debug)]
pub enum Previous {
    /// No run has succeeded yet.
    None,
    /// There is an inventory, but it cannot be read: why.
    Unreadable(String),
    Found(Box<Inventory>),
}

/// The run an inventory came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviousRun {
    pub ds: String,
    pub run_id: String,
}

/// How this run's inputs differ from the last successful run's (`inputs` in `run_results.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InputChanges {
    /// The run compared with; none on a first run or when its inventory could not be used.
    pub compared_with: Option<PreviousRun>,
    /// Why there was nothing to compare with, when there was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_compared: Option<String>,
    /// Objects listed by this run.
    pub objects: usize,
    /// Objects not listed before (in new partitions or unpartitioned sources).
    pub new: usize,
    /// New objects in partitions listed before: data filed late.
    pub late: Vec<String>,
    /// Objects listed before whose size or ETag changed: re-exported.
    pub changed: Vec<String>,
    /// Objects listed before and gone now.
    pub removed: Vec<String>,
    /// Partitions (`source: dt=...`) that had objects before and have none now.
    pub removed_partitions: Vec<String>,
}

impl InputChanges {
    /// The removed partitions of sources that do not allow it: these stop the run.
    pub fn refused(&self, pipeline: &Pipeline) -> Vec<String> {
        let allowed: BTreeSet<&str> = pipeline
            .sources
            .iter()
            .filter(|source| source.allow_removed_partitions)
            .map(|source| source.name.as_str())
            .collect();
        self.removed_partitions
            .iter()
            .filter(|partition| {
                let source = partition.split_once(": ").map_or("", |(source, _)| source);
                !allowed.contains(source)
            })
            .cloned()
            .collect()
    }

    /// The counts the JSON summary line carries.
    pub fn counts(&self) -> serde_json::Value {
        serde_json::json!({
            "objects": self.objects,
            "new": self.new,
            "late": self.late.len(),
            "changed": self.changed.len(),
            "removed": self.removed.len(),
            "removed_partitions": self.removed_partitions.len(),
        })
    }
}

impl Inventory {
    /// The listings of this run's sources.
    pub fn of_run(pipeline: &Pipeline, layout: &OutputLayout, sources: &[SourceSummary]) -> Self {
        let locations: HashMap<&str, &str> = pipeline
            .sources
            .iter()
            .map(|source| (source.name.as_str(), source.location.as_str()))
            .collect();
        Self {
            format: FORMAT,
            lifemap_version: env!("CARGO_PKG_VERSION").to_string(),
            pipeline: pipeline.name.clone(),
            pipeline_hash: pipeline.hash.clone(),
            ds: layout.ds().to_string(),
            run_id: layout.run_id().to_string(),
            sources: sources
                .iter()
                .map(|summary| {
                    let listing = SourceObjects {
                        location: locations
                            .get(summary.name.as_str())
                            .copied()
                            .unwrap_or_default()
                            .to_string(),
                        objects: summary.objects.clone(),
                    };
                    (summary.name.clone(), listing)
                })
                .collect(),
        }
    }

    /// What changed since the inventory of the last successful run.
    pub fn changes_since(&self, previous: &Previous, pipeline: &Pipeline) -> InputChanges {
        let objects = self.sources.values().map(|listing| listing.objects.len()).sum();
        let not_compared = |why: String| InputChanges {
            objects,
            new: objects,
            not_compared: Some(why),
            ..InputChanges::default()
        };
        let previous = match previous {
            Previous::None => return not_compared("no earlier successful run".into()),
            Previous::Unreadable(why) => return not_compared(format!("the last run's inventory is unreadable: {why}")),
            Previous::Found(previous) if previous.pipeline != self.pipeline || previous.format != FORMAT => {
                return not_compared(format!(
                    "the inventory was written for pipeline `{}` in format {}",
                    previous.pipeline, previous.format
                ));
            }
            Previous::Found(previous) => previous,
        };
        let mut changes = InputChanges {
            objects,
            ..InputChanges::default()
        };
        changes.compared_with = Some(PreviousRun {
            ds: previous.ds.clone(),
            run_id: previous.run_id.clone(),
        });
        for source in &pipeline.sources {
            let now = self.sources.get(&source.name);
            let before = previous
                .sources
                .get(&source.name)
                .filter(|before| now.is_none_or(|now| now.location == before.location));
            match (now, before) {
                (Some(now), Some(before)) => compare_source(source, &before.objects, &now.objects, &mut changes),
                (Some(now), None) => changes.new += now.objects.len(),
                _ => {}
            }
        }
        changes
    }
}

/// Add what differs between two listings of `source` to `changes`.
fn compare_source(source: &Source, before: &[ExportObject], now: &[ExportObject], changes: &mut InputChanges) {
    let earlier: HashMap<&str, &ExportObject> = before.iter().map(|object| (object.path.as_str(), object)).collect();
    let partitions_before: BTreeSet<String> = before
        .iter()
        .filter_map(|object| partition_of(source, &object.path))
        .collect();
    let mut partitions_now = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for object in now {
        listed.insert(object.path.as_str());
        let partition = partition_of(source, &object.path);
        match earlier.get(object.path.as_str()) {
            Some(seen) if seen.replaced_by(object) => changes.changed.push(object.path.clone()),
            Some(_) => {}
            None if partition.as_ref().is_some_and(|p| partitions_before.contains(p)) => {
                changes.late.push(object.path.clone());
            }
            None => changes.new += 1,
        }
        partitions_now.extend(partition);
    }
    changes.removed.extend(
        before
            .iter()
            .filter(|object| !listed.contains(object.path.as_str()))
            .map(|object| object.path.clone()),
    );
    changes.removed_partitions.extend(
        partitions_before
            .difference(&partitions_now)
            .map(|partition| format!("{}: {partition}", source.name)),
    );
}

/// The Hive partition an object's path is in (`dt=2026-10-31`, or `region=eu/dt=...`), for a
/// partitioned source.
pub(crate) fn partition_of(source: &Source, path: &str) -> Option<String> {
    if source.partitions.is_empty() {
        return None;
    }
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| {
            segment
                .split_once('=')
                .is_some_and(|(key, _)| source.partitions.iter().any(|(column, _)| column == key))
        })
        .collect();
    (!segments.is_empty()).then(|| segments.join("/"))
}

/// The last successful run's inventory. One that cannot be read is a warning, not a failure:
/// the inputs are then not compared, and the marts never depend on it.
pub async fn load(layout: &OutputLayout) -> Previous {
    let unreadable = |why: String| {
        tracing::warn!(error = %why, "the last run's inventory is unreadable: inputs not compared");
        Previous::Unreadable(why)
    };
    match storage::get(&layout.state(), INVENTORY).await {
        Ok(None) => Previous::None,
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(inventory) => Previous::Found(Box::new(inventory)),
            Err(err) => unreadable(err.to_string()),
        },
        Err(err) => unreadable(err.to_string()),
    }
}

/// Keep `inventory` for the next run, and beside this run's results.
pub async fn save(layout: &OutputLayout, inventory: &Inventory) -> Result<(), Error> {
    let body = serde_json::to_vec(inventory).map_err(|err| Error::Mart {
        mart: "_state".into(),
        source: Box::new(err),
    })?;
    storage::put(&layout.runs(), INPUTS, body.clone()).await?;
    storage::put(&layout.state(), INVENTORY, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str, size: u64, e_tag: Option<&str>) -> ExportObject {
        ExportObject {
            path: path.into(),
            size,
            e_tag: e_tag.map(String::from),
            last_modified: "2026-11-01T00:00:00Z".into(),
        }
    }

    fn events_source() -> Source {
        pipeline().sources.swap_remove(0)
    }

    #[test]
    fn late_changed_new_and_removed_objects_are_told_apart() {
        let source = events_source();
        let before = [
            object("e/dt=2026-10-30/a.gz", 10, Some("1")),
            object("e/dt=2026-10-30/b.gz", 10, Some("2")),
            object("e/dt=2026-10-31/a.gz", 10, Some("3")),
            object("e/dt=2026-10-29/a.gz", 10, Some("4")),
        ];
        let now = [
            // Re-exported with the same size: the ETag tells.
            object("e/dt=2026-10-30/a.gz", 10, Some("1b")),
            // b.gz is gone, but its partition still has a file.
            object("e/dt=2026-10-31/a.gz", 10, Some("3")),
            object("e/dt=2026-10-31/late.gz", 5, Some("5")),
            object("e/dt=2026-11-01/a.gz", 7, Some("6")),
        ];
        let mut changes = InputChanges::default();
        compare_source(&source, &before, &now, &mut changes);
        assert_eq!(changes.changed, ["e/dt=2026-10-30/a.gz"]);
        assert_eq!(changes.late, ["e/dt=2026-10-31/late.gz"]);
        assert_eq!(changes.new, 1);
        assert_eq!(changes.removed, ["e/dt=2026-10-30/b.gz", "e/dt=2026-10-29/a.gz"]);
        assert_eq!(changes.removed_partitions, ["events: dt=2026-10-29"]);
    }

    fn pipeline() -> Pipeline {
        let text = "name: p\nsources:\n  events: { location: exports/events/, format: ndjson, partitions: { dt: date } }\n  \
                    orders: { location: exports/orders/, format: csv, partitions: { dt: date }, allow_removed_partitions: true }\n\
                    steps:\n  - { name: s, query: SELECT 1 AS x }\noutput: { location: out }\nmarts: { s: {} }\n";
        let path = std::path::Path::new("p.yaml");
        let raw = crate::config::parse(path, text).expect("parses");
        crate::config::compile(path, text, raw, &Default::default(), &|_| None).expect("compiles")
    }

    fn inventory(pipeline: &str, events_at: &str, events: &[ExportObject]) -> Inventory {
        let listing = |location: &str, objects: &[ExportObject]| SourceObjects {
            location: location.into(),
            objects: objects.to_vec(),
        };
        Inventory {
            format: FORMAT,
            lifemap_version: "0".into(),
            pipeline: pipeline.into(),
            pipeline_hash: "h".into(),
            ds: "2026-10-31".into(),
            run_id: "r".into(),
            sources: [
                ("events".to_string(), listing(events_at, events)),
                ("orders".to_string(), listing("exports/orders/", &[])),
            ]
            .into(),
        }
    }

    #[test]
    fn another_pipelines_or_a_moved_sources_listing_is_not_compared() {
        let pipeline = pipeline();
        let before = [object("e/dt=2026-10-30/a.gz", 10, Some("1"))];
        let now = inventory("p", "exports/events/", &[object("e/dt=2026-10-31/a.gz", 10, Some("2"))]);

        let other = Previous::Found(Box::new(inventory("other", "exports/events/", &before)));
        let changes = now.changes_since(&other, &pipeline);
        assert_eq!(changes.compared_with, None);
        assert_eq!(
            changes.not_compared.as_deref(),
            Some("the inventory was written for pipeline `other` in format 1")
        );
        assert_eq!((changes.objects, changes.new), (1, 1));

        // The events source moved: its old objects are neither removed nor its partitions gone.
        let moved = Previous::Found(Box::new(inventory("p", "old/events/", &before)));
        let changes = now.changes_since(&moved, &pipeline);
        assert_eq!(changes.compared_with.map(|run| run.run_id), Some("r".to_string()));
        assert_eq!(changes.new, 1);
        assert!(changes.removed.is_empty() && changes.removed_partitions.is_empty());
    }

    #[test]
    fn only_sources_that_do_not_allow_it_refuse_a_removed_partition() {
        let changes = InputChanges {
            removed_partitions: vec!["events: dt=2026-10-29".into(), "orders: dt=2026-10-29".into()],
            ..InputChanges::default()
        };
        assert_eq!(changes.refused(&pipeline()), ["events: dt=2026-10-29"]);
    }

    #[test]
    fn without_an_etag_the_modification_time_tells() {
        let before = object("o/orders.csv", 10, None);
        let mut touched = before.clone();
        assert!(!before.replaced_by(&touched));
        touched.last_modified = "2026-11-02T00:00:00Z".into();
        assert!(before.replaced_by(&touched));
    }

    #[test]
    fn partitions_are_the_declared_key_folders_of_a_path() {
        let source = events_source();
        assert_eq!(
            partition_of(&source, "bucket/exports/events/dt=2026-10-31/part-0.ndjson.gz").as_deref(),
            Some("dt=2026-10-31")
        );
        assert_eq!(partition_of(&source, "bucket/exports/x=1/part-0.ndjson.gz"), None);
    }
}
