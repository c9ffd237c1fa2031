//! The files of a source: listing them, what a file's name says of its compression, and the
//! DataFusion file format that reads them.

use std::sync::Arc;

use chrono::SecondsFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::lines;
use crate::config::raw::RawCompression;
use crate::config::{Format, Source};
use crate::error::Error;
use crate::storage;

/// One object of a source's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportObject {
    /// The object's path inside its store.
    pub path: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// RFC 3339.
    pub last_modified: String,
}

impl ExportObject {
    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            path: meta.location.to_string(),
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified.to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }

    /// Whether `later` (the same path, listed again) holds other bytes: by size and ETag, or by
    /// modification time when the store gives no ETag.
    pub fn replaced_by(&self, later: &ExportObject) -> bool {
        self.size != later.size
            || match (&self.e_tag, &later.e_tag) {
                (Some(before), Some(after)) => before != after,
                _ => self.last_modified != later.last_modified,
            }
    }
}

pub(crate) fn query_error(source: &Source, err: datafusion::error::DataFusionError) -> Error {
    Error::SourceQuery {
        name: source.name.clone(),
        location: source.location.clone(),
        source: err,
    }
}

pub(crate) async fn list_files(
    ctx: &SessionContext,
    source: &Source,
    location: &str,
) -> Result<Vec<ObjectMeta>, Error> {
    let url = storage::listing_url(location)?;
    let store = ctx
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| query_error(source, e))?;
    let state = ctx.state();
    let stream = url
        .list_all_files(&state, store.as_ref(), "")
        .await
        .map_err(|e| query_error(source, e))?;
    let files: Vec<ObjectMeta> = stream.try_collect().await.map_err(|e| query_error(source, e))?;
    Ok(files.into_iter().filter(|meta| !is_hidden(meta)).collect())
}

/// `_SUCCESS`, `.crc` and other bookkeeping files are not data.
fn is_hidden(meta: &ObjectMeta) -> bool {
    meta.location
        .filename()
        .is_some_and(|name| name.starts_with('_') || name.starts_with('.'))
}

/// A file's compression (from its name unless the source says) and the suffix that selects files like it.
pub(crate) fn file_kind(source: &Source, meta: &ObjectMeta) -> (FileCompressionType, String) {
    let (compression, suffix) = classify_file(meta.location.filename().unwrap_or_default());
    let compression = match source.compression {
        RawCompression::Auto => compression,
        RawCompression::None => FileCompressionType::UNCOMPRESSED,
        RawCompression::Gzip => FileCompressionType::GZIP,
        RawCompression::Zstd => FileCompressionType::ZSTD,
        RawCompression::Bzip2 => FileCompressionType::BZIP2,
        RawCompression::Xz => FileCompressionType::XZ,
    };
    (compression, suffix)
}

/// The compression a file name shows, and the suffix that selects files like it.
pub(crate) fn classify_file(name: &str) -> (FileCompressionType, String) {
    let lower = name.to_ascii_lowercase();
    let compressed = [
        (".gz", FileCompressionType::GZIP),
        (".zst", FileCompressionType::ZSTD),
        (".zstd", FileCompressionType::ZSTD),
        (".bz2", FileCompressionType::BZIP2),
        (".xz", FileCompressionType::XZ),
    ];
    for (suffix, compression) in compressed {
        if let Some(stem) = lower.strip_suffix(suffix) {
            let inner = stem.rfind('.').map(|dot| &stem[dot..]).unwrap_or("");
            return (compression, format!("{inner}{suffix}"));
        }
    }
    let extension = lower.rfind('.').map(|dot| lower[dot..].to_string()).unwrap_or_default();
    (FileCompressionType::UNCOMPRESSED, extension)
}

pub(crate) fn file_format(source: &Source, compression: FileCompressionType) -> Arc<dyn FileFormat> {
    match source.format {
        Format::Csv => {
            let null_regex = (!source.csv.null_values.is_empty()).then(|| {
                let alternatives: Vec<String> =
                    source.csv.null_values.iter().map(|value| regex_escape(value)).collect();
                format!("^({})$", alternatives.join("|"))
            });
            Arc::new(
                CsvFormat::default()
                    .with_has_header(source.csv.header)
                    .with_delimiter(source.csv.delimiter)
                    .with_quote(source.csv.quote)
                    .with_null_regex(null_regex)
                    .with_file_compression_type(compression),
            )
        }
        Format::Ndjson => Arc::new(JsonFormat::default().with_file_compression_type(compression)),
        // Strings as Utf8, as the CSV and NDJSON readers give them: a mart's column types do not
        // depend on the format of its exports (DataFusion would read Parquet strings as Utf8View).
        Format::Parquet => Arc::new(ParquetFormat::default().with_force_view_types(false)),
        Format::Lines => Arc::new(lines::LinesFormat::new(compression)),
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_and_suffix_from_file_names() {
        assert_eq!(
            classify_file("part-0.ndjson.gz"),
            (FileCompressionType::GZIP, ".ndjson.gz".into())
        );
        assert_eq!(
            classify_file("orders.CSV.zst"),
            (FileCompressionType::ZSTD, ".csv.zst".into())
        );
        assert_eq!(
            classify_file("orders.csv"),
            (FileCompressionType::UNCOMPRESSED, ".csv".into())
        );
        assert_eq!(
            classify_file("data"),
            (FileCompressionType::UNCOMPRESSED, String::new())
        );
    }

    #[test]
    fn null_markers_become_an_anchored_regex() {
        assert_eq!(regex_escape("N/A (x)"), "N/A \\(x\\)");
    }
}
