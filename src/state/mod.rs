//! What runs keep under `<output>/_state/` for the runs after them.
//!
//! - The inventory of the export objects the last successful run listed: the next run compares
//!   its own listing with it, so a file re-exported or filed late into a partition a run already
//!   listed, or a partition that disappeared, is seen and said (see [`inventory`]).
//! - The kept rows of incremental steps, by source partition, so that a run computes only the
//!   partitions that are new or changed (see [`steps`]).

pub mod inventory;
pub mod steps;

pub use inventory::{InputChanges, Inventory, Previous};
