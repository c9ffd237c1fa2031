//! The engine: every DataFusion session lifemap creates, local or on a Ballista cluster, and the
//! memory policy they share.
//!
//! - [`session`]: one place and one order for a session's setup (settings, runtime, functions,
//!   object stores), for a run, `validate`, `plan` and the report;
//! - [`memory`]: how much a run may use, and how operators and held steps share it;
//! - [`cluster`]: a session as a Ballista scheduler's client, the scheduler and executor
//!   processes, and the codecs that carry lifemap's plan nodes between them.

pub mod cluster;
pub mod memory;
pub mod session;
