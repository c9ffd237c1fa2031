//! Report: the run's marts rendered into an email an executive reads.
//!
//! ```text
//!   published marts (the files each _SUCCESS lists)  ─┐
//!   report.queries (SQL over those marts)            ─┼→ context → minijinja → CSS inlined → HTML (cid: images)
//!   highlights, funnel month, checks of the run      ─┘                      → plain text, subject
//! ```
//!
//! The report reads the partitions the run *published*, not its in-memory tables, so the numbers
//! in the email are the numbers in the marts, and `lifemap report` renders the same report later.
//! Templates are strict: an undefined variable is an error, which `lifemap validate` finds by
//! rendering every template against one made-up row per mart.

pub mod charts;
pub mod error;
pub mod format;
pub mod highlights;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chrono::{Months, NaiveDate};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::SessionContext;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::config::{Pipeline, Report};
use crate::context::RunContext;
use crate::error::Error;
use crate::storage::{self, Location};
use error::ReportError;

/// How many "what changed" sentences the context offers.
const HIGHLIGHTS: usize = 5;

/// The tables a report reads: marts and queries, as Arrow batches.
#[derive(Debug, Default, Clone)]
pub struct ReportData {
    pub tables: BTreeMap<String, Vec<RecordBatch>>,
}

/// What the run adds to the marts: its id and the outcome of its checks.
#[derive(Debug, Default, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub checks: Vec<serde_json::Value>,
}

/// An image of the HTML part, referenced as `cid:<cid>`.
#[derive(Debug, Clone)]
pub struct InlineImage {
    pub cid: String,
    pub png: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A rendered report, ready to be delivered or archived.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    /// Email HTML: styles inlined, images as `cid:` references.
    pub html: String,
    pub text: String,
    pub images: Vec<InlineImage>,
    pub attachments: Vec<Attachment>,
}

impl Rendered {
    /// The HTML with every image embedded as a `data:` URL, for a browser or an archive.
    pub fn standalone_html(&self) -> String {
        let mut html = self.html.clone();
        for image in &self.images {
            let data = base64::engine::general_purpose::STANDARD.encode(&image.png);
            html = html.replace(&format!("cid:{}", image.cid), &format!("data:image/png;base64,{data}"));
        }
        html
    }
}

fn report_error(message: impl Into<String>) -> Error {
    Error::Report(ReportError(message.into()))
}

/// Read every mart the report names from its published partition, then run the report's queries.
pub async fn load(run: &RunContext<'_>, report: &Report) -> Result<ReportData, Error> {
    let mut data = ReportData::default();
    for mart in &report.marts {
        let batches = read_partition(&run.layout.partition(mart), mart, run.ds()).await?;
        data.tables.insert(mart.clone(), batches);
    }
    run_queries(&run.scratch_session()?, report, &mut data).await?;
    Ok(data)
}

async fn read_partition(partition: &Location, mart: &str, ds: &str) -> Result<Vec<RecordBatch>, Error> {
    let manifest = crate::marts::read_manifest(partition).await?.ok_or_else(|| {
        report_error(format!(
            "mart `{mart}` has no published partition for ds {ds} ({}); run the pipeline for that date first",
            partition.folder_url()
        ))
    })?;
    let mut batches = Vec::new();
    let mut schema: Option<SchemaRef> = None;
    for file in &manifest.files {
        let path = format!("{}{}", partition.folder_url(), file.name);
        let bytes = storage::get(partition, &file.name)
            .await?
            .ok_or_else(|| report_error(format!("{path}, listed in _SUCCESS, does not exist")))?;
        let parquet_error = |err: &dyn std::fmt::Display| report_error(format!("reading {path}: {err}"));
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|err| parquet_error(&err))?;
        // The schema comes from the file, not from its first batch: a mart with no rows (no row
        // quarantined, no survey answer) still has its columns for the report's queries.
        schema.get_or_insert_with(|| builder.schema().clone());
        for batch in builder.build().map_err(|err| parquet_error(&err))? {
            batches.push(batch.map_err(|err| parquet_error(&err))?);
        }
    }
    Ok(with_schema(batches, schema))
}

/// `batches`, or one empty batch of `schema` when there are none, so every table keeps its
/// columns.
fn with_schema(mut batches: Vec<RecordBatch>, schema: Option<SchemaRef>) -> Vec<RecordBatch> {
    if batches.is_empty()
        && let Some(schema) = schema
    {
        batches.push(RecordBatch::new_empty(schema));
    }
    batches
}

/// Register the marts as tables and add each query's result to `data`.
async fn run_queries(ctx: &SessionContext, report: &Report, data: &mut ReportData) -> Result<(), Error> {
    if report.queries.is_empty() {
        return Ok(());
    }
    for (name, batches) in &data.tables {
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let table = MemTable::try_new(schema, vec![batches.clone()]).map_err(|source| Error::Engine {
            context: format!("report table `{name}`"),
            source,
        })?;
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(|source| Error::Engine {
                context: format!("report table `{name}`"),
                source,
            })?;
    }
    for (name, sql) in &report.queries {
        let engine_error = |source| Error::Engine {
            context: format!("report query `{name}`"),
            source,
        };
        let frame = ctx.sql(sql).await.map_err(engine_error)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(engine_error)?;
        data.tables.insert(name.clone(), with_schema(batches, Some(schema)));
    }
    Ok(())
}

/// Made-up data for `validate`: one row per mart with its published schema (the step's columns)
/// and non-null values, then the queries run over it.
pub async fn sample_data(
    pipeline: &Pipeline,
    report: &Report,
    mart_schemas: &BTreeMap<String, SchemaRef>,
) -> Result<ReportData, Error> {
    let ctx = crate::engine::session::create_local(pipeline)?;
    let mut data = ReportData::default();
    for mart in &report.marts {
        let Some(schema) = mart_schemas.get(mart) else { continue };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| sample_value(field, &pipeline.date.ds).to_array_of_size(1))
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Engine {
                context: format!("sample row of mart `{mart}`"),
                source,
            })?;
        // Made-up values are never null, so the schema must not say otherwise.
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|err| report_error(format!("sample row of mart `{mart}`: {err}")))?;
        data.tables.insert(mart.clone(), vec![batch]);
    }
    run_queries(&ctx, report, &mut data).await?;
    Ok(data)
}

fn sample_value(field: &Field, ds: &NaiveDate) -> ScalarValue {
    let days = ds
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
        .num_days() as i32;
    match field.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => ScalarValue::Utf8(Some("sample".into()))
            .cast_to(field.data_type())
            .unwrap_or(ScalarValue::Null),
        DataType::Date32 => ScalarValue::Date32(Some(days)),
        DataType::Boolean => ScalarValue::Boolean(Some(false)),
        other => ScalarValue::new_one(other)
            .or_else(|_| ScalarValue::try_from(other))
            .unwrap_or(ScalarValue::Null),
    }
}

/// Batches as JSON objects with explicit nulls (a missing key would be an undefined variable).
/// Decimals become floats: templates format numbers, not strings.
pub fn to_rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>, Error> {
    let batches = batches.iter().map(floats_for_decimals).collect::<Result<Vec<_>, _>>()?;
    crate::rows::to_json(&batches, true).map_err(|err| report_error(format!("converting rows: {err}")))
}

fn floats_for_decimals(batch: &RecordBatch) -> Result<RecordBatch, Error> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Decimal128(..) | DataType::Decimal256(..)))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::Decimal128(..) | DataType::Decimal256(..)) {
            columns.push(cast(column, &DataType::Float64).map_err(|err| report_error(err.to_string()))?);
            fields.push(Field::new(field.name(), DataType::Float64, field.is_nullable()));
        } else {
            columns.push(Arc::clone(column));
            fields.push(field.as_ref().clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|err| report_error(err.to_string()))
}

/// The latest funnel entry month whose conversion window has closed by `as_of`: the last start
/// in month M can still convert until the end of M plus the window.
pub fn funnel_month(entry_months: &[String], ds: NaiveDate, window_days: u64) -> Option<String> {
    let as_of = ds.succ_opt()?;
    entry_months
        .iter()
        .filter_map(|m| NaiveDate::parse_from_str(m, "%Y-%m-%d").ok())
        .filter(|m| {
            m.checked_add_months(Months::new(1))
                .and_then(|end| end.checked_add_days(chrono::Days::new(window_days)))
                .is_some_and(|closes| closes <= as_of)
        })
        .max()
        .map(|m| m.format("%Y-%m-%d").to_string())
}

/// Images drawn while a template renders.
#[derive(Default)]
struct Images {
    list: Vec<InlineImage>,
    prefix: String,
}

impl Images {
    fn add(&mut self, png: charts::Png) -> Value {
        let cid = format!("chart-{}.{}@lifemap", self.list.len() + 1, self.prefix);
        let src = format!("cid:{cid}");
        self.list.push(InlineImage { cid, png: png.bytes });
        minijinja::context! { src => src, width => png.width, height => png.height }
    }
}

fn numbers(value: &Value) -> Result<Vec<f64>, minijinja::Error> {
    value
        .try_iter()?
        .map(|item| {
            if item.is_none() {
                Ok(f64::NAN)
            } else {
                f64::try_from(item.clone()).map_err(|_| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, format!("chart: `{item}` is not a number"))
                })
            }
        })
        .collect()
}

/// Templates live in one folder; `{% include %}` and `{% extends %}` may name any file in it.
fn template_loader(dir: PathBuf) -> impl Fn(&str) -> Result<Option<String>, minijinja::Error> + Send + Sync {
    move |name: &str| {
        // The same rule as the pipeline's own template files: nothing outside template_dir.
        let Ok(path) = crate::config::file_inside(&dir, name) else {
            return Ok(None);
        };
        match std::fs::read_to_string(path) {
            Ok(source) => Ok(Some(source)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("reading template {name}: {err}"),
            )),
        }
    }
}

fn environment(report: &Report, images: Arc<Mutex<Images>>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Some(dir) = report.html.path.parent() {
        env.set_loader(template_loader(dir.to_path_buf()));
    }
    format::register(&mut env);
    let line_images = Arc::clone(&images);
    env.add_function(
        "line_chart",
        move |values: Value, kwargs: Kwargs| -> Result<Value, minijinja::Error> {
            let values = numbers(&values)?;
            let labels: Vec<String> = kwargs
                .get::<Option<Vec<Value>>>("labels")?
                .unwrap_or_default()
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            let title: String = kwargs.get::<Option<String>>("title")?.unwrap_or_default();
            let width: u32 = kwargs.get::<Option<u32>>("width")?.unwrap_or(560).clamp(40, 1200);
            let height: u32 = kwargs.get::<Option<u32>>("height")?.unwrap_or(200).clamp(20, 800);
            let colour: String = kwargs
                .get::<Option<String>>("color")?
                .unwrap_or_else(|| "#2563eb".into());
            kwargs.assert_all_used()?;
            let png = charts::line_chart(&values, &labels, &title, (width, height), charts::parse_colour(&colour))
                .map_err(|err| minijinja::Error::new(ErrorKind::InvalidOperation, format!("line_chart: {err}")))?;
            Ok(line_images.lock().map_err(|_| poisoned())?.add(png))
        },
    );
    env.add_function(
        "sparkline",
        move |values: Value, kwargs: Kwargs| -> Result<Value, minijinja::Error> {
            let values = numbers(&values)?;
            let width: u32 = kwargs.get::<Option<u32>>("width")?.unwrap_or(120).clamp(20, 600);
            let height: u32 = kwargs.get::<Option<u32>>("height")?.unwrap_or(32).clamp(10, 200);
            let colour: String = kwargs
                .get::<Option<String>>("color")?
                .unwrap_or_else(|| "#2563eb".into());
            kwargs.assert_all_used()?;
            let png = charts::sparkline(&values, (width, height), charts::parse_colour(&colour))
                .map_err(|err| minijinja::Error::new(ErrorKind::InvalidOperation, format!("sparkline: {err}")))?;
            Ok(images.lock().map_err(|_| poisoned())?.add(png))
        },
    );
    env
}

fn poisoned() -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, "chart state is unusable after a panic")
}

/// minijinja's error with its template, line and the chain of causes.
fn describe(err: &minijinja::Error) -> String {
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        message = format!("{message}: {detail}");
    }
    if let Some(name) = err.name() {
        message = match err.line() {
            Some(line) => format!("{name}, line {line}: {message}"),
            None => format!("{name}: {message}"),
        };
    }
    for inner in crate::error::chain(err)
        .skip(1)
        .filter_map(|cause| cause.downcast_ref::<minijinja::Error>())
    {
        message.push_str(&format!("\n  in {}", describe(inner)));
    }
    message
}

/// The values every template sees.
fn context(pipeline: &Pipeline, data: &ReportData, run: &RunInfo) -> Result<Value, Error> {
    let mut tables: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (name, batches) in &data.tables {
        tables.insert(name.clone(), to_rows(batches)?);
    }
    let days_var = |name: &str| pipeline.vars.get(name).and_then(|v| u64::try_from(v.clone()).ok());
    let window_days = days_var("conversion_window_days").unwrap_or(30);
    let entry_months: Vec<String> = tables
        .get("lifecycle_funnel")
        .into_iter()
        .flatten()
        .filter_map(|row| row.get("entry_month")?.as_str().map(str::to_owned))
        .collect();
    let funnel_month = funnel_month(&entry_months, pipeline.date.ds, window_days);
    let highlights: Vec<String> =
        highlights::what_changed(&tables, funnel_month.as_deref(), days_var("kpi_days"), HIGHLIGHTS)
            .into_iter()
            .map(|h| h.text)
            .collect();
    Ok(minijinja::context! {
        pipeline => pipeline.name.clone(),
        description => pipeline.description.clone(),
        ds => pipeline.date.ds_string(),
        as_of => pipeline.date.as_of_rfc3339(),
        timezone => pipeline.date.timezone.name(),
        version => env!("CARGO_PKG_VERSION"),
        run_id => run.run_id.clone(),
        vars => pipeline.vars.clone(),
        data => Value::from(minijinja::value::Serde(&tables)),
        funnel_month => funnel_month,
        highlights => highlights,
        checks => Value::from(minijinja::value::Serde(&run.checks)),
    })
}

/// Render subject, HTML and text; inline the CSS; collect images and attachments.
pub fn render(pipeline: &Pipeline, report: &Report, data: &ReportData, run: &RunInfo) -> Result<Rendered, Error> {
    let images = Arc::new(Mutex::new(Images {
        list: Vec::new(),
        prefix: format!(
            "{}.{}",
            pipeline.name.replace('_', "-"),
            pipeline.date.ds.format("%Y%m%d")
        ),
    }));
    let mut env = environment(report, Arc::clone(&images));
    let ctx = context(pipeline, data, run)?;
    let template_error = |err: minijinja::Error| report_error(format!("rendering the report: {}", describe(&err)));
    let (html_name, text_name) = (report.html.name(), report.text.name());
    env.add_template_owned(html_name.clone(), report.html.source.clone())
        .map_err(template_error)?;
    env.add_template_owned(text_name.clone(), report.text.source.clone())
        .map_err(template_error)?;
    let html = env
        .get_template(&html_name)
        .and_then(|t| t.render(&ctx))
        .map_err(template_error)?;
    let text = env
        .get_template(&text_name)
        .and_then(|t| t.render(&ctx))
        .map_err(template_error)?;
    let subject = env.render_str(&report.subject, &ctx).map_err(template_error)?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    if subject.is_empty() {
        return Err(report_error("the report's subject renders empty"));
    }
    // At-rules (the phone layout's @media block) cannot become style attributes: they stay in
    // a <style> element, which the clients that support media queries read.
    let inliner = css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_at_rules(true)
        .build();
    let html = inliner
        .inline(&html)
        .map_err(|err| report_error(format!("inlining the report's CSS: {err}")))?;
    drop(env);
    let images = std::mem::take(&mut images.lock().map_err(|_| report_error("chart state lost"))?.list);
    let mut attachments = Vec::new();
    for mart in &report.attach_csv {
        let batches = data.tables.get(mart).map(Vec::as_slice).unwrap_or_default();
        attachments.push(Attachment {
            filename: format!("{mart}-{}.csv", pipeline.date.ds_string()),
            content_type: "text/csv",
            body: to_csv(batches)?,
        });
    }
    Ok(Rendered {
        subject,
        html,
        text,
        images,
        attachments,
    })
}

fn to_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(Vec::new());
    for batch in batches {
        writer
            .write(batch)
            .map_err(|err| report_error(format!("writing CSV: {err}")))?;
    }
    Ok(writer.into_inner())
}

/// Render with made-up data, so a template that names something the marts lack fails now.
pub async fn validate(
    pipeline: &Pipeline,
    report: &Report,
    mart_schemas: &BTreeMap<String, SchemaRef>,
) -> Result<(), Error> {
    let data = sample_data(pipeline, report, mart_schemas).await?;
    render(pipeline, report, &data, &RunInfo::default()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_funnel_month_is_the_last_whose_window_has_closed() {
        let months: Vec<String> = ["2026-08-01", "2026-09-01", "2026-10-01"].map(String::from).to_vec();
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        // September's last start (Sep 30, 23:59) converts until Oct 30, 23:59: closed by the
        // as_of of ds Oct 30 (Oct 31, 00:00), not by that of Oct 29.
        assert_eq!(
            funnel_month(&months, day("2026-10-31"), 30).as_deref(),
            Some("2026-09-01")
        );
        assert_eq!(
            funnel_month(&months, day("2026-10-30"), 30).as_deref(),
            Some("2026-09-01")
        );
        assert_eq!(
            funnel_month(&months, day("2026-10-29"), 30).as_deref(),
            Some("2026-08-01")
        );
        assert_eq!(
            funnel_month(&months, day("2026-10-31"), 0).as_deref(),
            Some("2026-10-01")
        );
        assert_eq!(funnel_month(&months, day("2026-08-15"), 30), None);
    }
}
