//! Where a pipeline runs and what it reaches: the engine section (memory limit, partitions, a
//! Ballista scheduler) and the S3 settings.

use std::time::Duration;

use lifemap_syntax::units::parse_bytes;

use super::diagnostics::Compiler;
use super::model::{EngineSettings, Format, Overrides, S3Settings, Source};
use super::values::parse_engine;
use lifemap_syntax::pipeline::{self as raw, RawCompression};

/// The engine section, with `--memory-limit` and `--engine` over it.
pub(super) fn compile_engine(
    c: &mut Compiler<'_>,
    raw: Option<raw::RawEngine>,
    overrides: &Overrides,
) -> EngineSettings {
    let scheduler_text = overrides
        .engine
        .clone()
        .or_else(|| raw.as_ref().and_then(|engine| engine.scheduler.clone()));
    let scheduler = scheduler_text.and_then(|text| {
        parse_engine(&text).unwrap_or_else(|message| {
            c.report(&["engine:", "scheduler:"], "engine.scheduler", message);
            None
        })
    });
    match raw {
        None => EngineSettings {
            memory_limit: overrides.memory_limit,
            scheduler,
            ..Default::default()
        },
        Some(engine) => {
            let memory_limit = match (overrides.memory_limit, engine.memory_limit.as_deref()) {
                (Some(limit), _) => Some(limit),
                (None, Some(text)) => parse_bytes(text).map_or_else(
                    |message| {
                        c.report(&["engine:", "memory_limit:"], "engine.memory_limit", message);
                        None
                    },
                    Some,
                ),
                (None, None) => None,
            };
            for (key, value) in [
                ("target_partitions", engine.target_partitions),
                ("batch_size", engine.batch_size),
            ] {
                if value == Some(0) {
                    c.report(
                        &["engine:", &format!("{key}:")],
                        format!("engine.{key}"),
                        "must be at least 1",
                    );
                }
            }
            EngineSettings {
                target_partitions: engine.target_partitions,
                batch_size: engine.batch_size,
                memory_limit,
                scheduler,
            }
        }
    }
}

/// On a cluster, executors take a CSV or NDJSON file's compression from its name (DataFusion does
/// not send it, see `engine::cluster`): a declared one could not be honoured.
pub(super) fn check_cluster_compression(c: &mut Compiler<'_>, engine: &EngineSettings, sources: &[Source]) {
    if engine.scheduler.is_none() {
        return;
    }
    for source in sources {
        let by_name = matches!(source.compression, RawCompression::Auto);
        if !by_name && matches!(source.format, Format::Csv | Format::Ndjson) {
            c.report(
                &["sources:", &format!("{}:", source.name), "compression:"],
                format!("sources.{}.compression", source.name),
                "on a Ballista cluster compression is taken from file names: leave `compression` out (auto)",
            );
        }
    }
}

pub(super) fn compile_s3(c: &mut Compiler<'_>, raw: Option<raw::RawS3>) -> S3Settings {
    let Some(raw) = raw else { return S3Settings::default() };
    let mut text = |key: &str, value: Option<String>| -> Option<String> {
        let value = value?;
        let done = c.env_value(key, &value)?;
        (!done.value.is_empty()).then_some(done.value)
    };
    let endpoint = text("storage.s3.endpoint", raw.endpoint);
    let region = text("storage.s3.region", raw.region);
    let access_key_id = c.secret_from_env("storage.s3.access_key_id_env", raw.access_key_id_env.as_deref());
    let secret_access_key = c.secret_from_env("storage.s3.secret_access_key_env", raw.secret_access_key_env.as_deref());
    let session_token = c.secret_from_env("storage.s3.session_token_env", raw.session_token_env.as_deref());
    S3Settings {
        endpoint,
        region,
        virtual_hosted_style: raw.virtual_hosted_style.unwrap_or(false),
        allow_http: raw.allow_http,
        access_key_id,
        secret_access_key,
        session_token,
        max_retries: raw.max_retries.unwrap_or(5),
        retry_timeout: c.duration(
            "storage.s3.retry_timeout",
            raw.retry_timeout.as_deref(),
            Duration::from_secs(60),
        ),
        request_timeout: c.duration(
            "storage.s3.request_timeout",
            raw.request_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        connect_timeout: c.duration(
            "storage.s3.connect_timeout",
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
        ),
    }
}
