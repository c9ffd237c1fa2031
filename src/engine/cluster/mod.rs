//! Running a pipeline's SQL on an Apache DataFusion Ballista cluster.
//!
//! `lifemap scheduler` and `lifemap executor` are Ballista's scheduler and executor built from the
//! same session setup as a local run: lifemap's SQL functions, its `lines` format and S3 access.
//! A run with `--engine df://host:50050` plans each step on the client and sends it to the
//! scheduler; everything that is not SQL (k-means, marts' atomic publish, the report, delivery)
//! stays on the client.
//!
//! What Ballista cannot carry, and how lifemap works around it (all of it here or named here):
//! - Plans travel as protobuf, and DataFusion serializes only its own file formats: a `lines`
//!   table travels as its description ([`LinesListing`], rebuilt by the scheduler) and its scan as
//!   the generic file-scan message plus its compression ([`LifemapPhysicalCodec`]).
//! - In-memory tables cannot be sent: a materialised step is written as Parquet into the run's
//!   staging folder of the output storage by the executors (`transform::on_cluster`, planned by
//!   `process::LifemapQueryPlanner`) and read back from there; `cache()` is not used on a cluster
//!   (`quality`); `generate_series` becomes a `VALUES` list ([`register_series_functions`]); an
//!   allowed-empty source is an `EmptyTable` (`sources`).
//! - Ballista 55 and DataFusion 55 defects met on the bundled pipeline, each worked around where
//!   it is named: [`STATIC_PLANNER`], [`cluster_config`], [`LifemapExecutionEngine`].
//! - Credentials never travel with plans: every process builds its S3 clients from its own
//!   environment (`AWS_*`, see [`EnvObjectStores`]), and nothing here logs them.
//!
//! `client` turns a run's session into a scheduler's client, `process` runs schedulers and
//! executors, and `codec` carries lifemap's plan nodes between them.

pub mod client;
mod codec;
mod process;

pub use client::{client_state, cluster_config, is_client, register_series_functions};
pub use codec::{LifemapLogicalCodec, LifemapPhysicalCodec};
pub use process::{EnvObjectStores, ExecutorArgs, SchedulerArgs, run_executor, run_scheduler};
