//! Where everything a run writes lives under the pipeline's output location: the one place that
//! knows the folder names.
//!
//! ```text
//!   <output>/<mart>/ds=<ds>/part-<run_id>-NNNNN.parquet, _SUCCESS   published marts
//!   <output>/_staging/ds=<ds>/<run_id>/<mart>/...                     marts before publishing
//!   <output>/_staging/ds=<ds>/<run_id>/_steps/<step>/...             held steps of a cluster run
//!   <output>/_runs/ds=<ds>/run_results.json, _lock, delivery.json    the run's record and lock
//!   <output>/_runs/ds=<ds>/inputs.json                               the export objects it read
//!   <output>/_reports/ds=<ds>/report.html                            the archived report
//!   <output>/_state/inventory.json                                   the last successful run's inputs
//! ```

use crate::storage::Location;

/// The manifest that commits a mart's partition (see `marts`).
pub const SUCCESS_MARKER: &str = "_SUCCESS";
/// The run lock of a `ds` (see `lock`).
pub const LOCK: &str = "_lock";
/// The results of the last run of a `ds`.
pub const RUN_RESULTS: &str = "run_results.json";
/// The record of a `ds`'s delivered report (see `delivery`).
pub const DELIVERY_MARKER: &str = "delivery.json";
/// The export objects the last successful run of a `ds` read.
pub const INPUTS: &str = "inputs.json";
/// The export objects the last successful run (of any `ds`) read (see `state`).
pub const INVENTORY: &str = "inventory.json";
/// The archived report of a `ds`.
pub const REPORT_ARCHIVE: &str = "report.html";

/// The output locations of one run: its pipeline's output root, its `ds` and its run id.
#[derive(Debug, Clone)]
pub struct OutputLayout {
    root: Location,
    ds: String,
    run_id: String,
}

fn ds_folder(ds: &str) -> String {
    format!("ds={ds}")
}

impl OutputLayout {
    pub fn new(root: Location, ds: &str, run_id: &str) -> Self {
        Self {
            root,
            ds: ds.to_string(),
            run_id: run_id.to_string(),
        }
    }

    /// The pipeline's output location.
    pub fn root(&self) -> &Location {
        &self.root
    }

    pub fn ds(&self) -> &str {
        &self.ds
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The folder of every partition of `mart`.
    pub fn mart(&self, mart: &str) -> Location {
        self.root.child(mart)
    }

    /// The published partition of `mart` for this `ds`.
    pub fn partition(&self, mart: &str) -> Location {
        self.partition_of(mart, &self.ds)
    }

    /// The partition of `mart` for another `ds`.
    pub fn partition_of(&self, mart: &str, ds: &str) -> Location {
        self.mart(mart).child(&ds_folder(ds))
    }

    /// The same outputs for another `ds`.
    pub fn for_ds(&self, ds: &str) -> Self {
        Self::new(self.root.clone(), ds, &self.run_id)
    }

    /// The staging folders of every `ds`.
    pub fn staging_root(&self) -> Location {
        self.root.child("_staging")
    }

    /// The staging folders of every run of this `ds`: a run holds the `ds`'s lock, so any folder
    /// here but its own belongs to a run that died.
    pub fn staging_of_ds(&self) -> Location {
        self.staging_root().child(&ds_folder(&self.ds))
    }

    /// This run's staging folder, deleted when it publishes or fails.
    pub fn staging(&self) -> Location {
        self.staging_of_ds().child(&self.run_id)
    }

    /// Where a run on a cluster holds its materialised steps (inside its staging folder).
    pub fn held_steps(&self) -> Location {
        self.staging().child("_steps")
    }

    /// The run's record of this `ds`: results, lock and delivery marker.
    pub fn runs(&self) -> Location {
        self.root.child("_runs").child(&ds_folder(&self.ds))
    }

    /// What runs keep for the runs after them, whatever their `ds`.
    pub fn state(&self) -> Location {
        self.root.child("_state")
    }

    /// The archived reports of this `ds`.
    pub fn reports(&self) -> Location {
        self.root.child("_reports").child(&ds_folder(&self.ds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_folder_of_a_run_is_under_its_output_root() {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let root = Location {
            url: url::Url::parse("s3://bucket/marts").expect("url"),
            store,
            path: "marts".into(),
        };
        let layout = OutputLayout::new(root, "2026-10-31", "r1");
        let urls = [
            layout.partition("kpis").folder_url(),
            layout.partition_of("kpis", "2026-10-30").folder_url(),
            layout.staging().folder_url(),
            layout.held_steps().folder_url(),
            layout.runs().folder_url(),
            layout.reports().folder_url(),
        ];
        assert_eq!(
            urls,
            [
                "s3://bucket/marts/kpis/ds=2026-10-31/",
                "s3://bucket/marts/kpis/ds=2026-10-30/",
                "s3://bucket/marts/_staging/ds=2026-10-31/r1/",
                "s3://bucket/marts/_staging/ds=2026-10-31/r1/_steps/",
                "s3://bucket/marts/_runs/ds=2026-10-31/",
                "s3://bucket/marts/_reports/ds=2026-10-31/",
            ]
        );
        assert_eq!(
            layout.held_steps().path.as_ref(),
            "marts/_staging/ds=2026-10-31/r1/_steps"
        );
    }
}
