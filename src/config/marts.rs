//! The `output:` and `marts:` sections compiled: where marts land, how their Parquet is written,
//! and which step feeds each.

use std::time::Duration;

use indexmap::IndexMap;
use lifemap_syntax::suggest::did_you_mean;

use super::diagnostics::{Compiler, is_plain_identifier};
use super::model::{Check, Mart, ParquetSettings, Step, TableFormat};
use super::template::TemplateContext;
use super::values::parse_compression;
use lifemap_syntax::pipeline::{self as raw, RawParquet};

/// Where marts land, the run lock's stale timeout, and the Parquet settings marts start from.
pub(super) struct Output {
    pub location: String,
    pub lock_timeout: Duration,
    pub parquet: ParquetSettings,
    pub format: TableFormat,
}

pub(super) fn compile_output(c: &mut Compiler<'_>, raw: &raw::RawOutput, ctx: &TemplateContext) -> Output {
    let lock_timeout = c.duration(
        "output.lock_timeout",
        raw.lock_timeout.as_deref(),
        Duration::from_secs(120),
    );
    let location = c
        .templated("output.location", &["output:", "location:"], &raw.location, ctx)
        .unwrap_or_default();
    let parquet = compile_parquet(
        c,
        "output.parquet",
        &["output:", "parquet:"],
        raw.parquet.as_ref(),
        &ParquetSettings::default(),
    );
    Output {
        location,
        lock_timeout,
        parquet,
        format: compile_format(c, "output.format", &["output:", "format:"], raw.format.as_deref()).unwrap_or_default(),
    }
}

/// Every mart, fed by the step of its name or its `from`.
pub(super) fn compile_marts(
    c: &mut Compiler<'_>,
    raw_marts: IndexMap<String, Option<raw::RawMart>>,
    steps: &[Step],
    (output, ctx): (&Output, &TemplateContext),
) -> Vec<Mart> {
    let step_names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let mut marts = Vec::new();
    for (name, mart) in raw_marts {
        let mart = mart.unwrap_or_default();
        let key = format!("marts.{name}");
        let needle = format!("{name}:");
        if !is_plain_identifier(&name) || name.starts_with('_') {
            c.report(
                &["marts:", &needle],
                key.clone(),
                "a mart name is lower-case letters, digits and `_`, not starting with `_`",
            );
        }
        let from = mart.from.clone().unwrap_or_else(|| name.clone());
        if !step_names.contains(&from.as_str()) {
            let hint = did_you_mean(&from, step_names.iter().copied()).map(|close| format!("did you mean `{close}`?"));
            let what = if mart.from.is_some() {
                "its `from`"
            } else {
                "its name (no `from` given)"
            };
            c.report_with_hint(
                &["marts:", &needle],
                key.clone(),
                format!("mart `{name}` reads step `{from}` ({what}), but there is no such step"),
                hint,
            );
        }
        let parquet = compile_parquet(
            c,
            &format!("{key}.parquet"),
            &["marts:", &needle, "parquet:"],
            mart.parquet.as_ref(),
            &output.parquet,
        );
        let forget =
            mart.forget
                .as_deref()
                .and_then(|condition| match ctx.render_sql(&format!("{key}.forget"), condition) {
                    Ok(rendered) => Some(rendered),
                    Err(message) => {
                        c.report(&["marts:", &needle, "forget:"], format!("{key}.forget"), message);
                        None
                    }
                });
        marts.push(Mart {
            name,
            from,
            description: mart.description,
            parquet,
            format: compile_format(
                c,
                &format!("{key}.format"),
                &["marts:", &needle, "format:"],
                mart.format.as_deref(),
            )
            .unwrap_or(output.format),
            forget,
        });
    }
    if marts.is_empty() {
        c.report(&["marts:"], "marts", "the pipeline publishes no mart");
    }
    marts
}

/// A change check compares with a mart's partitions: name the mart once, here.
pub(super) fn link_change_checks(c: &mut Compiler<'_>, checks: &mut [Check], marts: &[Mart]) {
    for check in checks {
        let Some(table) = check.previous_rows_of.take() else {
            continue;
        };
        match marts.iter().find(|m| m.name == table || m.from == table) {
            Some(mart) => check.previous_rows_of = Some(mart.name.clone()),
            None => c.report(
                &["checks:", &format!("name: {}", check.name), "max_change_percent"],
                format!("checks.{}.row_count.max_change_percent", check.name),
                format!("`{table}` is published as no mart, so it has no previous partition to compare with"),
            ),
        }
    }
}

/// `parquet` or `delta` (after `${VAR}` interpolation); `None` when not given.
fn compile_format(c: &mut Compiler<'_>, key: &str, needles: &[&str], raw: Option<&str>) -> Option<TableFormat> {
    let text = c.env_value(key, raw?)?.value;
    match text.as_str() {
        "parquet" => Some(TableFormat::Parquet),
        "delta" => Some(TableFormat::Delta),
        other => {
            c.report(
                needles,
                key.to_string(),
                format!("`{other}` is not a mart format: use `parquet` or `delta`"),
            );
            None
        }
    }
}

fn compile_parquet(
    c: &mut Compiler<'_>,
    key: &str,
    needles: &[&str],
    raw: Option<&RawParquet>,
    base: &ParquetSettings,
) -> ParquetSettings {
    let mut settings = base.clone();
    let Some(raw) = raw else { return settings };
    if let Some(text) = &raw.compression {
        match parse_compression(text) {
            Ok(compression) => settings.compression = compression,
            Err(message) => c.report(needles, format!("{key}.compression"), message),
        }
    }
    for (name, value, target) in [
        ("row_group_size", raw.row_group_size, &mut settings.row_group_size),
        (
            "max_rows_per_file",
            raw.max_rows_per_file,
            &mut settings.max_rows_per_file,
        ),
    ] {
        match value {
            Some(0) => c.report(needles, format!("{key}.{name}"), "must be at least 1"),
            Some(n) => *target = n,
            None => {}
        }
    }
    settings
}
