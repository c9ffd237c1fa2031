//! lifemap's parsers of text that users and their exports hand it: the pipeline YAML, `${ENV}`
//! placeholders, durations and sizes, and the row-level readers (lines, NDJSON fields, CSV
//! headers, RFC 3339 timestamps).
//!
//! A crate of its own, without DataFusion, so that cargo-fuzz can build it instrumented in a
//! minute instead of rebuilding DataFusion for an hour; `fuzz/` at the repository root holds the
//! targets, which call [`fuzzing`].

pub mod csv;
pub mod fuzzing;
pub mod interpolate;
pub mod json;
pub mod lines;
pub mod pipeline;
pub mod suggest;
pub mod timestamp;
pub mod units;
