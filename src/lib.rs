//! lifemap: batch ETL and reporting for customer lifecycle analytics.
//!
//! A pipeline (YAML) names sources, SQL steps run by Apache DataFusion, and marts published as
//! Parquet. The modules follow the data's path:
//!
//! - [`config`]: the pipeline file, parsed and compiled for one logical date;
//! - [`engine`]: DataFusion sessions, local or on a Ballista cluster, and the memory policy;
//! - [`storage`]: local folders and S3-compatible object stores;
//! - [`sources`]: inputs registered as tables;
//! - [`transform`]: SQL steps in dependency order, with lifemap's SQL [`functions`];
//! - [`quality`]: data-quality checks, run before anything is published;
//! - [`personas`]: k-means clustering steps (customer personas);
//! - [`marts`]: Parquet written to staging, then published behind a `_SUCCESS` manifest;
//! - [`history`]: rows of forgotten persons removed from the partitions of other dates;
//! - [`state`]: what runs keep for the runs after them (inventory, incremental steps' rows);
//! - [`runner`]: one run end to end, and its `run_results.json`;
//! - [`lineage`]: OpenLineage events of each run (sources in, mart partitions out);
//! - [`cli`]: the `lifemap` command line.

pub mod cli;
pub mod config;
pub mod context;
pub mod delivery;
pub mod delta;
pub mod engine;
pub mod error;
pub mod functions;
pub mod history;
pub mod inspect;
pub mod layout;
pub mod lineage;
pub mod lock;
pub mod marts;
pub mod personas;
pub mod progress;
pub mod quality;
pub mod report;
pub mod rows;
pub mod runner;
pub mod sample;
pub mod sources;
pub mod state;
pub mod storage;
pub mod transform;

pub use error::Error;
