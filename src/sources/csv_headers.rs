//! CSV files whose header differs from the declared schema (schema drift).
//!
//! DataFusion reads CSV columns by position, so a file with an added column failed the run with
//! "incorrect number of fields". Before a CSV source with a header is registered, the header of
//! each file is read (its first bytes only): when every header is the declared column list the
//! source is read as before; otherwise each file is read with its own columns and the declared
//! ones are selected by name, so added columns are ignored and column order does not matter. A
//! file without a declared column fails naming the file, the column and its header.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Buf;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{DataFrame, SessionContext, ident};
use lifemap_syntax::csv::split_header;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::files::{file_format, file_kind, query_error};
use crate::config::Source;
use crate::error::Error;

/// Enough for any header line.
const HEADER_BYTES: u64 = 64 * 1024;

/// The files of a CSV source grouped by header, or `None` when every header is the declared one.
pub(super) async fn drifted_headers(
    ctx: &SessionContext,
    source: &Source,
    declared: &SchemaRef,
    files: &[ObjectMeta],
    compression_of: impl Fn(&ObjectMeta) -> FileCompressionType,
) -> Result<Option<BTreeMap<Vec<String>, Vec<ObjectMeta>>>, Error> {
    let url = crate::storage::listing_url(&source.location)?;
    let store = ctx
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| query_error(source, e))?;
    let expected: Vec<String> = declared.fields().iter().map(|f| f.name().clone()).collect();
    let mut by_header: BTreeMap<Vec<String>, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in files {
        if meta.size == 0 {
            // An empty file: no rows, whatever its columns.
            continue;
        }
        let end = meta.size.min(HEADER_BYTES);
        let start = store
            .get_range(&meta.location, 0..end)
            .await
            .map_err(|e| Error::Storage {
                context: format!("reading the header of {}", meta.location),
                source: e,
            })?;
        let first_line = first_line(start, compression_of(meta));
        let header = split_header(&first_line, source.csv.delimiter, source.csv.quote);
        if header.len() == 1 && header[0].is_empty() {
            // No header line (a compressed empty file): no rows either.
            continue;
        }
        if let Some(missing) = expected.iter().find(|name| !header.contains(name)) {
            return Err(Error::Source {
                name: source.name.clone(),
                location: source.location.clone(),
                message: format!(
                    "{} has no column `{missing}` (its header: {})",
                    meta.location,
                    header.join(", ")
                ),
            });
        }
        by_header.entry(header).or_default().push(meta.clone());
    }
    if by_header.keys().all(|header| *header == expected) {
        return Ok(None);
    }
    if !source.partitions.is_empty() {
        return Err(Error::Source {
            name: source.name.clone(),
            location: source.location.clone(),
            message: "CSV headers differ from the declared columns; in a partitioned source every file must \
                      have the declared header"
                .into(),
        });
    }
    Ok(Some(by_header))
}

/// One table per header, each file read with its own columns, the declared ones selected by name.
pub(super) fn read_by_name(
    ctx: &SessionContext,
    source: &Source,
    declared: &SchemaRef,
    as_text: bool,
    by_header: BTreeMap<Vec<String>, Vec<ObjectMeta>>,
) -> Result<Vec<DataFrame>, Error> {
    let url = crate::storage::listing_url(&source.location)?;
    let store_root = url.object_store();
    let mut frames = Vec::new();
    for (header, files) in by_header {
        let fields: Vec<Field> = header
            .iter()
            .map(|name| {
                let data_type = match declared.field_with_name(name) {
                    Ok(field) if !as_text => field.data_type().clone(),
                    _ => DataType::Utf8,
                };
                Field::new(name, data_type, true)
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        // Files of one header may still differ in compression: one listing per kind, as elsewhere.
        let mut kinds: BTreeMap<String, (FileCompressionType, Vec<ListingTableUrl>)> = BTreeMap::new();
        for meta in &files {
            let (compression, suffix) = file_kind(source, meta);
            let file_url = ListingTableUrl::parse(format!("{}{}", store_root.as_str(), meta.location))
                .map_err(|e| query_error(source, e))?;
            kinds
                .entry(suffix)
                .or_insert_with(|| (compression, Vec::new()))
                .1
                .push(file_url);
        }
        for (suffix, (compression, urls)) in kinds {
            let options = ListingOptions::new(file_format(source, compression)).with_file_extension(suffix);
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(Arc::clone(&schema));
            let table = ListingTable::try_new(config).map_err(|e| query_error(source, e))?;
            let frame = ctx.read_table(Arc::new(table)).map_err(|e| query_error(source, e))?;
            let columns = declared.fields().iter().map(|f| ident(f.name())).collect::<Vec<_>>();
            frames.push(frame.select(columns).map_err(|e| query_error(source, e))?);
        }
    }
    Ok(frames)
}

/// The first line of a file's first bytes, decompressed when it needs to be.
fn first_line(start: bytes::Bytes, compression: FileCompressionType) -> String {
    let mut text = Vec::new();
    match compression.convert_read(start.reader()) {
        Ok(mut reader) => {
            let mut chunk = [0u8; 8192];
            // A cut-off compressed stream ends in an error once the first line is out: ignore it.
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&chunk[..n]);
                if text.contains(&b'\n') || text.len() as u64 > HEADER_BYTES {
                    break;
                }
            }
        }
        Err(_) => return String::new(),
    }
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_of_a_gzip_start() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"a,b\r\n1,2\n").expect("gzip");
        let whole = encoder.finish().expect("gzip");
        let start = bytes::Bytes::copy_from_slice(&whole[..whole.len() - 4]);
        assert_eq!(first_line(start, FileCompressionType::GZIP), "a,b");
    }
}
