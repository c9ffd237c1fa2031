//! Integration tests: the real `lifemap` binary, real files, a real S3-compatible server.

mod cluster;
mod common;
mod delta;
mod docs;
mod engine;
mod hostile;
mod incremental;
mod inputs;
mod killed_runs;
mod lifecycle;
mod lineage;
mod locks;
mod personas;
mod privacy;
mod quality;
mod report;
mod s3;
mod sample;
mod signals;
mod validate;
