//! The `sources:` section compiled: locations and formats templated for the run, declared columns
//! and partitions typed, CSV and personal-column settings checked.

use std::collections::HashSet;

use datafusion::arrow::datatypes::DataType;
use indexmap::IndexMap;
use lifemap_syntax::suggest::did_you_mean;

use super::diagnostics::{Compiler, is_plain_identifier};
use super::model::{Column, CsvSettings, Format, Source};
use super::template::TemplateContext;
use super::values::parse_type;
use lifemap_syntax::pipeline::{self as raw, RawFormat};

/// Every source; each name joins `table_names`.
pub(super) fn compile_sources(
    c: &mut Compiler<'_>,
    raw_sources: IndexMap<String, raw::RawSource>,
    ctx: &TemplateContext,
    table_names: &mut HashSet<String>,
) -> Vec<Source> {
    let mut sources = Vec::new();
    for (name, source) in raw_sources {
        if !is_plain_identifier(&name) {
            c.report(
                &["sources:", &format!("{name}:")],
                format!("sources.{name}"),
                "a source name is lower-case letters, digits and `_`, so SQL can name it unquoted",
            );
        }
        table_names.insert(name.clone());
        sources.push(compile_source(c, name, source, ctx));
    }
    sources
}

fn compile_source(c: &mut Compiler<'_>, name: String, source: raw::RawSource, ctx: &TemplateContext) -> Source {
    let key = format!("sources.{name}");
    let needle = format!("{name}:");
    let location = c.templated(
        &format!("{key}.location"),
        &["sources:", &needle, "location:"],
        &source.location,
        ctx,
    );
    let format = source_format(c, &key, &needle, &source.format, ctx);
    let ds_partition = source.ds_partition.as_deref().and_then(|p| {
        c.templated(
            &format!("{key}.ds_partition"),
            &["sources:", &needle, "ds_partition:"],
            p,
            ctx,
        )
    });
    if format == RawFormat::Lines && source.schema.is_some() {
        c.report(
            &["sources:", &needle, "schema:"],
            format!("{key}.schema"),
            "a `lines` source has one column, `line`: it takes no schema",
        );
    }
    let schema = source
        .schema
        .map(|columns| typed_columns(c, &key, &needle, "schema", columns));
    let partitions = typed_columns(c, &key, &needle, "partitions", source.partitions);
    let csv = compile_csv(c, &key, &needle, format, source.csv);
    check_pii(c, &key, &needle, format, schema.as_deref(), &source.pii);
    Source {
        name,
        location: location.unwrap_or_default(),
        format: match format {
            RawFormat::Csv => Format::Csv,
            RawFormat::Ndjson => Format::Ndjson,
            RawFormat::Parquet => Format::Parquet,
            RawFormat::Lines => Format::Lines,
        },
        compression: source.compression,
        schema: if format == RawFormat::Lines {
            Some(vec![(lifemap_syntax::lines::LINE_COLUMN.to_string(), DataType::Utf8)])
        } else {
            schema
        },
        partitions,
        csv,
        ds_partition,
        allow_empty: source.allow_empty,
        allow_removed_partitions: source.allow_removed_partitions,
        pii: source.pii.into_iter().collect(),
    }
}

/// The format, templated (a var may choose it); csv when it is not one, as csv asks least of the
/// other settings and so adds no second report.
fn source_format(c: &mut Compiler<'_>, key: &str, needle: &str, raw: &str, ctx: &TemplateContext) -> RawFormat {
    c.templated(&format!("{key}.format"), &["sources:", needle, "format:"], raw, ctx)
        .and_then(|name| {
            let format = RawFormat::parse(name.trim());
            if format.is_none() {
                let names = RawFormat::ALL.map(|(known, _)| known);
                let hint = did_you_mean(name.trim(), names).map(|close| format!("did you mean `{close}`?"));
                c.report_with_hint(
                    &["sources:", needle, "format:"],
                    format!("{key}.format"),
                    format!("`{name}` is not a format: {} or {}", names[..3].join(", "), names[3]),
                    hint,
                );
            }
            format
        })
        .unwrap_or(RawFormat::Csv)
}

/// Declared columns (`schema` or `partitions`) with their types parsed.
fn typed_columns(
    c: &mut Compiler<'_>,
    key: &str,
    needle: &str,
    section: &str,
    columns: IndexMap<String, String>,
) -> Vec<Column> {
    columns
        .into_iter()
        .filter_map(|(column, ty)| match parse_type(&ty) {
            Ok(data_type) => Some((column, data_type)),
            Err(message) => {
                c.report(
                    &["sources:", needle, &format!("{section}:"), &format!("{column}:")],
                    format!("{key}.{section}.{column}"),
                    message,
                );
                None
            }
        })
        .collect()
}

/// Personal columns are columns of the declared schema, and a `lines` source has none.
fn check_pii(
    c: &mut Compiler<'_>,
    key: &str,
    needle: &str,
    format: RawFormat,
    schema: Option<&[Column]>,
    pii: &IndexMap<String, raw::PiiAction>,
) {
    if format == RawFormat::Lines && !pii.is_empty() {
        c.report(
            &["sources:", needle, "pii:"],
            format!("{key}.pii"),
            "a `lines` source has one column, `line`: parse it in a step and hash there, or \
             declare the personal fields of a csv, ndjson or parquet source",
        );
    }
    if let Some(columns) = schema {
        for column in pii.keys() {
            if !columns.iter().any(|(name, _)| name == column) {
                c.report(
                    &["sources:", needle, "pii:", &format!("{column}:")],
                    format!("{key}.pii.{column}"),
                    format!("`{column}` is not a column of the declared schema"),
                );
            }
        }
    }
}

fn compile_csv(
    c: &mut Compiler<'_>,
    key: &str,
    needle: &str,
    format: RawFormat,
    raw: Option<raw::RawCsv>,
) -> CsvSettings {
    let mut settings = CsvSettings::default();
    let Some(raw) = raw else { return settings };
    if format != RawFormat::Csv {
        c.report(
            &["sources:", needle, "csv:"],
            format!("{key}.csv"),
            "`csv` options apply only to `format: csv`",
        );
    }
    let mut one_byte = |name: &str, value: Option<String>, default: u8| -> u8 {
        match value {
            None => default,
            Some(text) if text.len() == 1 && text.is_ascii() => text.as_bytes()[0],
            Some(text) if text == "\\t" => b'\t',
            Some(text) => {
                c.report(
                    &["sources:", needle, "csv:", &format!("{name}:")],
                    format!("{key}.csv.{name}"),
                    format!("`{text}` is not one ASCII character"),
                );
                default
            }
        }
    };
    settings.delimiter = one_byte("delimiter", raw.delimiter, b',');
    settings.quote = one_byte("quote", raw.quote, b'"');
    settings.header = raw.header.unwrap_or(true);
    if let Some(nulls) = raw.null_values {
        settings.null_values = nulls;
    }
    settings
}
