//! What a run keeps under `<output>/_state/` for the runs after it.
//!
//! Today that is the inventory of the export objects the last successful run read: the next run
//! compares its own listing with it, so a file re-exported or filed late into a partition a run
//! already listed, or a partition that disappeared, is seen and said (see [`inventory`]).

pub mod inventory;

pub use inventory::{InputChanges, Inventory, Previous};
