//! Sources: registering a pipeline's inputs as DataFusion tables.
//!
//! A source is a listing table over a folder (or glob) of CSV, NDJSON or Parquet files, optionally
//! Hive-partitioned. Compression is decided per file from its extension: a folder holding both
//! `.ndjson` and `.ndjson.gz` files becomes one table over both (a `UNION ALL` of one listing per
//! kind). A declared schema is used as given; otherwise it is inferred from the files.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::prelude::{DataFrame, Expr, SessionContext, cast, ident, lit, when};

use object_store::ObjectMeta;

use crate::config::{Format, Source};
use crate::context::RunContext;
use crate::error::Error;
use crate::functions::pseudonymize::PiiHash;
use crate::storage;

mod csv_headers;
pub mod files;
pub mod keeping;
pub mod lines;
pub mod parquet_read_ahead;
pub mod pii;

use files::{ExportObject, file_format, file_kind, list_files, query_error};
pub use keeping::Keeping;
pub use pii::{PII_KEY_ENV, register_pii_hash_from_env};
use pii::{pii_hasher, protect};
mod read_ahead;

/// What was found for one source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceSummary {
    pub name: String,
    pub files: usize,
    pub bytes: u64,
    /// The objects listed, for the run's inventory (`inputs.json`, not `run_results.json`).
    #[serde(skip)]
    pub objects: Vec<ExportObject>,
}

/// Register every source of the run's pipeline in its session.
pub async fn register_all(run: &RunContext<'_>) -> Result<Vec<SourceSummary>, Error> {
    let mut summaries = Vec::with_capacity(run.pipeline.sources.len());
    for source in &run.pipeline.sources {
        summaries.push(register(&run.session, source).await?);
    }
    Ok(summaries)
}

/// Fail with exit 99 when no source has files for this `ds` where one says where they would be.
pub async fn check_ds_input(run: &RunContext<'_>) -> Result<(), Error> {
    let (ctx, pipeline) = (&run.session, run.pipeline);
    for source in &pipeline.sources {
        let Some(partition) = &source.ds_partition else {
            continue;
        };
        let base = source.location.trim_end_matches('/');
        let location = format!("{base}/{}/", partition.trim_matches('/'));
        let files = list_files(ctx, source, &location).await?;
        if files.is_empty() {
            return Err(Error::NothingToDo(format!(
                "source `{}` has no files for ds {} (looked in {location})",
                source.name,
                pipeline.date.ds_string()
            )));
        }
    }
    Ok(())
}

/// A source as an empty table with its declared schema, for planning without data (`validate`).
pub fn register_declared(ctx: &SessionContext, source: &Source) -> Result<bool, Error> {
    let Some(schema) = declared_schema(source) else {
        return Ok(false);
    };
    // An empty table rather than an in-memory one: a cluster can be sent it (see `cluster`).
    let table = datafusion::datasource::empty::EmptyTable::new(schema);
    let frame = ctx.read_table(Arc::new(table)).map_err(|e| query_error(source, e))?;
    // No rows: the key only matters for the types, so planning needs none.
    let frame = protect(frame, source, &PiiHash::new(b"")).map_err(|e| query_error(source, e))?;
    ctx.register_table(source.name.as_str(), frame.into_view())
        .map_err(|e| query_error(source, e))?;
    Ok(true)
}

/// The declared file columns plus the partition columns.
fn declared_schema(source: &Source) -> Option<SchemaRef> {
    let columns = source.schema.as_ref()?;
    let fields = columns
        .iter()
        .chain(source.partitions.iter())
        .map(|(name, data_type)| Field::new(name, data_type.clone(), true))
        .collect::<Vec<_>>();
    Some(Arc::new(Schema::new(fields)))
}

/// The same columns, all read as text.
fn as_text(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), DataType::Utf8, true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Columns read as text, with `markers` as NULL, cast to the types of `schema`.
fn null_markers_to_nulls(
    frame: DataFrame,
    schema: &SchemaRef,
    markers: &[String],
) -> datafusion::error::Result<DataFrame> {
    let markers: Vec<Expr> = markers.iter().map(|m| lit(m.as_str())).collect();
    let columns: Vec<Expr> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let column = ident(field.name());
            match schema.field_with_name(field.name()) {
                Ok(declared) => when(column.clone().in_list(markers.clone(), false), lit(ScalarValue::Null))
                    .otherwise(column)
                    .map(|text| cast(text, declared.data_type().clone()).alias(field.name())),
                // Hive partition columns are typed already.
                Err(_) => Ok(column),
            }
        })
        .collect::<datafusion::error::Result<_>>()?;
    frame.select(columns)
}

/// Register one source; errors name the source and its location.
pub async fn register(ctx: &SessionContext, source: &Source) -> Result<SourceSummary, Error> {
    // Before listing anything: a run that would read personal data in clear does not start.
    let hasher = pii_hasher(source)?;
    let files = list_files(ctx, source, &source.location).await?;
    let summary = SourceSummary {
        name: source.name.clone(),
        files: files.len(),
        bytes: files.iter().map(|f| f.size).sum(),
        objects: files.iter().map(ExportObject::of).collect(),
    };
    if files.is_empty() {
        if source.allow_empty && register_declared(ctx, source)? {
            return Ok(summary);
        }
        let hint = if source.allow_empty {
            " (allow_empty needs a declared schema)"
        } else {
            " (set `allow_empty: true` with a declared schema to accept that)"
        };
        return Err(source_error(source, format!("no data files found{hint}")));
    }
    let mut groups = file_groups(source, &files)?;
    let mut file_schema: Option<SchemaRef> = source.schema.as_ref().map(|columns| {
        Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, data_type)| Field::new(name, data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    });
    // DataFusion 55 applies CSV null markers while inferring a schema but not while reading, so
    // columns are read as text and the markers turned into NULLs before the declared cast.
    let reads_markers = source.format == Format::Csv && source.csv.null_values.iter().any(|v| !v.is_empty());
    // CSV files whose header is not the declared column list are read by column name.
    let drifted = match &file_schema {
        Some(schema) if source.format == Format::Csv && source.csv.header => {
            csv_headers::drifted_headers(ctx, source, schema, &files, |meta| file_kind(source, meta).0).await?
        }
        _ => None,
    };
    let mut frames = Vec::new();
    if let (Some(by_header), Some(schema)) = (drifted, &file_schema) {
        frames = csv_headers::read_by_name(ctx, source, schema, reads_markers, by_header)?;
        groups.clear();
    }
    for table in listings(ctx, source, &groups, &mut file_schema, reads_markers).await? {
        frames.push(ctx.read_table(table).map_err(|e| query_error(source, e))?);
    }
    // One listing per kind of file; several kinds are read as one table.
    let mut frames = frames.into_iter();
    let Some(first) = frames.next() else {
        return Err(source_error(source, "no readable files found".into()));
    };
    let combined = frames
        .try_fold(first, |all, next| all.union(next))
        .map_err(|e| query_error(source, e))?;
    let combined = match (&file_schema, reads_markers) {
        (Some(schema), true) => {
            null_markers_to_nulls(combined, schema, &source.csv.null_values).map_err(|e| query_error(source, e))?
        }
        _ => combined,
    };
    let combined = protect(combined, source, &hasher).map_err(|e| query_error(source, e))?;
    let provider: Arc<dyn TableProvider> = combined.into_view();
    ctx.register_table(source.name.as_str(), provider)
        .map_err(|e| query_error(source, e))?;
    Ok(summary)
}

fn source_error(source: &Source, message: String) -> Error {
    Error::Source {
        name: source.name.clone(),
        location: source.location.clone(),
        message,
    }
}

/// The source's files grouped by (selecting suffix → compression): one listing per group.
fn file_groups(source: &Source, files: &[ObjectMeta]) -> Result<BTreeMap<String, FileCompressionType>, Error> {
    let mut groups: BTreeMap<String, FileCompressionType> = BTreeMap::new();
    for meta in files {
        let (compression, suffix) = file_kind(source, meta);
        groups.insert(suffix, compression);
    }
    if groups.len() > 1 && groups.contains_key("") {
        return Err(source_error(
            source,
            "files without an extension sit beside others: cannot tell their format or compression apart".into(),
        ));
    }
    if source.format == Format::Parquet {
        // Parquet compresses inside the file: one listing over every Parquet file.
        groups.retain(|suffix, _| suffix.ends_with(".parquet") || suffix.is_empty());
        if groups.is_empty() {
            return Err(source_error(source, "no `.parquet` files found".into()));
        }
    }
    Ok(groups)
}

/// One listing table per group of files. Without a declared schema the first group's is
/// inferred, and every other group must agree with it.
async fn listings(
    ctx: &SessionContext,
    source: &Source,
    groups: &BTreeMap<String, FileCompressionType>,
    file_schema: &mut Option<SchemaRef>,
    reads_markers: bool,
) -> Result<Vec<Arc<dyn TableProvider>>, Error> {
    let url = storage::listing_url(&source.location)?;
    let state = ctx.state();
    let mut tables: Vec<Arc<dyn TableProvider>> = Vec::new();
    for (suffix, compression) in groups {
        if source.format == Format::Lines {
            let listing = lines::LinesListing::new(&source.location, suffix, *compression, &source.partitions);
            tables.push(Arc::new(listing.table().map_err(|e| query_error(source, e))?));
            continue;
        }
        let options = ListingOptions::new(file_format(source, *compression))
            .with_file_extension(suffix.clone())
            .with_table_partition_cols(source.partitions.clone());
        let schema = match file_schema {
            Some(schema) => Arc::clone(schema),
            None => {
                let inferred = options
                    .infer_schema(&state, &url)
                    .await
                    .map_err(|e| query_error(source, e))?;
                *file_schema = Some(Arc::clone(&inferred));
                inferred
            }
        };
        let config = ListingTableConfig::new(url.clone())
            .with_listing_options(options)
            .with_schema(if reads_markers { as_text(&schema) } else { schema });
        let table = ListingTable::try_new(config).map_err(|e| query_error(source, e))?;
        tables.push(Arc::new(table));
    }
    Ok(tables)
}
