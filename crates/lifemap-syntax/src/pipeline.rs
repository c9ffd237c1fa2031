//! The pipeline file as written: serde structs that mirror the YAML one to one.
//!
//! Every struct denies unknown fields, so a typo is an error with a line and column rather than a
//! silently ignored setting. Nothing here is resolved yet: strings may still hold `${ENV}`
//! placeholders and `{{ var }}` templates; lifemap's `config::compile` turns this into a pipeline.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::suggest::did_you_mean;

/// Why a pipeline file could not be read as one, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line and column of the offending text, when the parser knows it.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The dotted key path the error is under, e.g. `sources.events.format`.
    pub key: Option<String>,
    pub message: String,
    /// "did you mean `x`?" for a misspelt key.
    pub hint: Option<String>,
}

/// Parse a pipeline file's text. Anchors and aliases are expanded by serde_yaml, which refuses
/// documents whose expansion would be far larger than the text (billion laughs) and deep nesting.
pub fn parse(text: &str) -> Result<RawPipeline, SyntaxError> {
    serde_yaml::from_str(text).map_err(|err| syntax_error(&err))
}

fn syntax_error(err: &serde_yaml::Error) -> SyntaxError {
    let full = err.to_string();
    // serde_yaml renders "<key path>: <message> at line L column C"; the location is kept apart.
    let without_location = match full.rfind(" at line ") {
        Some(index) => &full[..index],
        None => full.as_str(),
    };
    let (key, message) = match without_location.split_once(": ") {
        Some((key, message)) if !key.contains(' ') => (Some(key.to_string()), message.to_string()),
        _ => (None, without_location.to_string()),
    };
    let hint = unknown_field_hint(&message);
    SyntaxError {
        line: err.location().map(|l| l.line()),
        column: err.location().map(|l| l.column()),
        key,
        message,
        hint,
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", suggest the closest expected key.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(field, candidates.iter().copied()).map(|close| format!("did you mean `{close}`?"))
}

/// How persona clusters are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// "High log_monetary, low recency_days": works for any features.
    #[default]
    Generic,
    /// Customer personas in words an executive reads; expects lifemap's customer features.
    Customers,
}

/// A whole pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Pipeline name: used in logs, run results and report subjects.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Reporting time zone (IANA name); days, weeks and months are taken in it. Default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Variables with their defaults; `--var key=value` overrides them.
    #[serde(default)]
    pub vars: IndexMap<String, serde_yaml::Value>,
    /// Folder of the SQL files named by steps, relative to the pipeline file. Default `../sql`.
    #[serde(default)]
    pub sql_dir: Option<String>,
    #[serde(default)]
    pub storage: Option<RawStorage>,
    #[serde(default)]
    pub engine: Option<RawEngine>,
    pub sources: IndexMap<String, RawSource>,
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// Data-quality checks, run after the marts are written and before anything is published.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    pub output: RawOutput,
    /// Mart name → settings (`{}` or nothing for the defaults).
    #[serde(default)]
    pub marts: IndexMap<String, Option<RawMart>>,
    /// The report rendered from the marts and delivered after a successful run.
    #[serde(default)]
    pub report: Option<RawReport>,
}

/// How to reach object stores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    #[serde(default)]
    pub s3: Option<RawS3>,
}

/// Settings for every `s3://` location of the pipeline. Unset fields fall back to the standard
/// AWS environment variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// `true` for `https://bucket.host/key`; the default is path style (`https://host/bucket/key`),
    /// which every S3-compatible server understands.
    #[serde(default)]
    pub virtual_hosted_style: Option<bool>,
    /// Allow plain `http://` endpoints (a local test server).
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// Names of environment variables holding the credentials, when they are not the standard ones.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// Retries of a failed request (with exponential backoff). Default 5.
    #[serde(default)]
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this long, e.g. `"60s"`. Default `"60s"`.
    #[serde(default)]
    pub retry_timeout: Option<String>,
    /// Timeout of one HTTP request, e.g. `"30s"`. Default `"30s"`.
    #[serde(default)]
    pub request_timeout: Option<String>,
    /// Timeout of connecting to the endpoint. Default `"5s"`.
    #[serde(default)]
    pub connect_timeout: Option<String>,
}

/// Execution settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Parallelism of query execution. Default: the number of cores.
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// Rows per record batch. Default 8192.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Memory pool size with spilling to disk, e.g. `"4GiB"`. Default: unbounded.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// Where SQL runs: `local` (this process, the default) or a Ballista scheduler,
    /// `df://host:50050`.
    #[serde(default)]
    pub scheduler: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawFormat {
    Csv,
    Ndjson,
    Parquet,
    /// One row per line, in a single string column `line`: for inputs whose rows may be malformed,
    /// so SQL can parse them and quarantine what does not parse instead of failing the read.
    Lines,
}

impl RawFormat {
    /// Every format by the name a pipeline gives it.
    pub const ALL: [(&'static str, Self); 4] = [
        ("csv", Self::Csv),
        ("ndjson", Self::Ndjson),
        ("parquet", Self::Parquet),
        ("lines", Self::Lines),
    ];

    /// The format a (templated) `format:` setting names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, format)| *format)
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawCompression {
    /// Decide per file from its extension (`.gz`, `.zst`, `.bz2`, `.xz`).
    #[default]
    Auto,
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// One input: a location, a format and optionally a declared schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// A local path, `file://` URL or `s3://bucket/prefix/`; a trailing `/` means a folder, and
    /// globs (`*`, `?`, `[..]`) are allowed. Templated with the pipeline vars and `ds`.
    pub location: String,
    /// `csv`, `ndjson`, `parquet` or `lines` ([`RawFormat`]). Templated like `location`, so one
    /// pipeline can read an export in either of two formats (`format: "{{ events_format }}"`).
    pub format: String,
    #[serde(default)]
    pub compression: RawCompression,
    /// Column name → type (`string`, `int`, `float`, `decimal(p,s)`, `bool`, `date`, `timestamp`).
    /// Without it the schema is inferred from the files.
    #[serde(default)]
    pub schema: Option<IndexMap<String, String>>,
    /// Hive partition columns (`dt=2026-10-31/` folders): name → type.
    #[serde(default)]
    pub partitions: IndexMap<String, String>,
    #[serde(default)]
    pub csv: Option<RawCsv>,
    /// Sub-path of `location` holding this `ds`'s input, e.g. `dt={{ ds }}/`. When it holds no
    /// file, the run has nothing to do and exits 99.
    #[serde(default)]
    pub ds_partition: Option<String>,
    /// Accept a location with no files (an empty table). Default false: no files is an error.
    #[serde(default)]
    pub allow_empty: bool,
    /// Accept that a partition an earlier run read has disappeared from the exports (the run
    /// reports it and goes on). Default false: the run stops with exit 3, as a rebuild would drop
    /// history the published marts hold.
    #[serde(default)]
    pub allow_removed_partitions: bool,
    /// Personal data: column → `hash` (HMAC-SHA-256 with the key in `LIFEMAP_PII_KEY`) or
    /// `drop`, applied as the source is read, before any step sees it.
    #[serde(default)]
    pub pii: IndexMap<String, PiiAction>,
}

/// What ingestion does with a personal-data column.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Replaced by the hex HMAC-SHA-256 of its value: joins and counts still work, the value is gone.
    Hash,
    /// Removed.
    Drop,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// One character. Default `,`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Default true.
    #[serde(default)]
    pub header: Option<bool>,
    /// Values read as NULL. Default: the empty string.
    #[serde(default)]
    pub null_values: Option<Vec<String>>,
    /// One character. Default `"`.
    #[serde(default)]
    pub quote: Option<String>,
}

/// One SQL step; its result is a table named `name` that later steps and marts read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: String,
    /// A file under `sql_dir`.
    #[serde(default)]
    pub sql: Option<String>,
    /// Inline SQL, instead of `sql`.
    #[serde(default)]
    pub query: Option<String>,
    /// Tables this step needs beyond those its SQL names (which are found automatically).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Instead of SQL: k-means clustering of the rows of another table (personas).
    #[serde(default)]
    pub kmeans: Option<RawKMeans>,
    /// Compute once and keep in memory (for a step many others read); otherwise it is a view.
    #[serde(default)]
    pub materialize: Option<bool>,
    /// Keep this step's result between runs and compute only what changed (see
    /// docs/pipeline-reference.md, "Incremental steps").
    #[serde(default)]
    pub incremental: Option<RawIncremental>,
    /// DataFusion settings for this step alone, by their full name
    /// (`datafusion.optimizer.subset_repartition_threshold: 2`); a step with settings is
    /// materialized, since they apply where it is computed.
    #[serde(default)]
    pub settings: IndexMap<String, RawSettingValue>,
    #[serde(default)]
    pub description: Option<String>,
}

/// How an incremental step folds new input into its state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncremental {
    /// `by_partition`: the step's rows of a source partition depend on that partition alone, so
    /// each partition is computed once and kept until its export objects change.
    pub kind: RawIncrementalKind,
    /// The Hive-partitioned source the step reads (its only input).
    pub source: String,
    /// Which of the source's partitions a run needs, as SQL over its partition columns
    /// (`dt <= DATE '{{ ds }}' + INTERVAL '2 days'`). Default: every listed partition.
    #[serde(default)]
    pub partitions: Option<String>,
    /// SQL giving the partitions (their partition columns) whose rows must not be kept: those
    /// holding rows of persons who asked to be forgotten. Such a partition is computed from the
    /// exports by every run that needs it, and never kept, until a re-export leaves the rows out.
    #[serde(default)]
    pub forget: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawIncrementalKind {
    ByPartition,
}

/// A DataFusion setting's value as YAML writes it; DataFusion parses its text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawSettingValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for RawSettingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(value) => write!(f, "{value}"),
            Self::Integer(value) => write!(f, "{value}"),
            Self::Float(value) => write!(f, "{value}"),
            Self::Text(value) => f.write_str(value),
        }
    }
}

/// Where marts and run results land.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// Root folder or URI: mart `M` of run `ds` lands in `<location>/M/ds=<ds>/`, run results in
    /// `<location>/_runs/ds=<ds>/run_results.json`.
    pub location: String,
    #[serde(default)]
    pub parquet: Option<RawParquet>,
    /// The run lock's lease: the holder renews it every quarter of it, and a lock not renewed
    /// for this long is taken over. Default `2m`.
    #[serde(default)]
    pub lock_timeout: Option<String>,
    /// How marts are published unless a mart says otherwise: `parquet` (the default; Parquet
    /// files behind a `_SUCCESS` manifest) or `delta` (Delta Lake tables). `${VAR}` allowed.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawParquet {
    /// `zstd`, `zstd(level)`, `snappy`, `gzip(level)`, `lz4`, `none`. Default `zstd(3)`.
    #[serde(default)]
    pub compression: Option<String>,
    /// Rows per row group. Default 1,048,576.
    #[serde(default)]
    pub row_group_size: Option<usize>,
    /// Start a new file after this many rows. Default 10,000,000.
    #[serde(default)]
    pub max_rows_per_file: Option<usize>,
}

/// A published table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMart {
    /// The step that feeds it. Default: the step with the mart's name.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parquet: Option<RawParquet>,
    /// `parquet` or `delta`; default: `output.format`.
    #[serde(default)]
    pub format: Option<String>,
    /// An SQL condition on the mart's rows (it may read the pipeline's tables) naming the rows of
    /// persons who asked to be forgotten: each run removes them from the mart's published
    /// partitions of every other date.
    #[serde(default)]
    pub forget: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A failure stops the run: nothing is published, exit code 3.
    #[default]
    Error,
    /// A failure is recorded in run_results.json and the run goes on.
    Warn,
}

/// One data-quality check: exactly one kind (`expression`, `not_null`, `unique`, ...).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The source or step checked; every kind but `expression` and `quarantine_share` needs it.
    #[serde(default)]
    pub table: Option<String>,
    /// SQL returning the rows that break the rule (templated like steps); none means it passed.
    #[serde(default)]
    pub expression: Option<String>,
    /// Columns that must never be NULL.
    #[serde(default)]
    pub not_null: Option<Vec<String>>,
    /// Columns whose combined values must be unique.
    #[serde(default)]
    pub unique: Option<Vec<String>>,
    #[serde(default)]
    pub accepted_values: Option<RawAcceptedValues>,
    #[serde(default)]
    pub relationships: Option<RawRelationships>,
    #[serde(default)]
    pub row_count: Option<RawRowCount>,
    #[serde(default)]
    pub freshness: Option<RawFreshness>,
    #[serde(default)]
    pub quarantine_share: Option<RawQuarantineShare>,
    #[serde(default)]
    pub severity: Severity,
    /// How many failing rows to report as examples. Default 5.
    #[serde(default)]
    pub examples: Option<usize>,
}

/// A number, or a template giving one (`"{{ max_share }}"`), so a var can set a threshold.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawNumber {
    Number(f64),
    Template(String),
}

/// A column whose non-null values must be among `values`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcceptedValues {
    pub column: String,
    pub values: Vec<serde_yaml::Value>,
}

/// Every non-null `column` value must exist as `field` of the table `to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelationships {
    pub column: String,
    pub to: String,
    pub field: String,
}

/// Bounds on the number of rows, absolute or against the previous published partition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRowCount {
    #[serde(default)]
    pub min: Option<RawNumber>,
    #[serde(default)]
    pub max: Option<RawNumber>,
    /// Largest change, in percent, against the rows of the mart's latest earlier `ds`.
    #[serde(default)]
    pub max_change_percent: Option<RawNumber>,
}

/// The latest `column` timestamp must be within `max_age` of `as_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFreshness {
    pub column: String,
    /// A duration such as `36h` or `2d`.
    pub max_age: String,
}

/// The share of a source's rows that were quarantined must stay at or below `max`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuarantineShare {
    /// The value of the quarantine table's `source` column.
    pub source: String,
    /// A fraction: 0.01 is 1 %.
    pub max: RawNumber,
    /// The table of quarantined rows (with a `source` column). Default `quarantine`.
    #[serde(default)]
    pub quarantine: Option<String>,
    /// The table holding one row per row read from the source. Default `stg_<source>`.
    #[serde(default)]
    pub rows_from: Option<String>,
}

/// `k: 4` or `k: auto`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawK {
    Fixed(usize),
    Named(String),
}

/// A k-means step: one output row per input row, with `persona_id` and `persona_name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKMeans {
    /// The table to cluster: one row per entity.
    pub input: String,
    /// The column identifying an entity (kept in the output).
    pub id: String,
    /// Numeric feature columns; each is standardised (z-score) before clustering.
    pub features: Vec<String>,
    /// A number of clusters, or `auto` (default): the best silhouette over k_min..=k_max.
    #[serde(default)]
    pub k: Option<RawK>,
    #[serde(default)]
    pub k_min: Option<usize>,
    #[serde(default)]
    pub k_max: Option<usize>,
    /// Entities in the deterministic sample the silhouette is computed on and, with more entities
    /// than this, the fit that seeds the Lloyd iterations over all of them. Default 10,000.
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// Seed of the k-means++ initialisation. Default 42.
    #[serde(default)]
    pub seed: Option<u64>,
    /// k-means++ starts per fit, the one of least inertia kept (all drawn from `seed`). Default 10.
    #[serde(default)]
    pub starts: Option<usize>,
    #[serde(default)]
    pub max_iterations: Option<u64>,
    /// Clusters are numbered by descending centroid of this feature. Default: the first feature.
    #[serde(default)]
    pub order_by: Option<String>,
    /// `generic` (default) or `customers` (persona names for the bundled persona features).
    #[serde(default)]
    pub naming: Option<Naming>,
}

/// The report: templates, recipients, the marts it reads and how it is delivered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// The HTML template (minijinja), a file under `template_dir`.
    pub template: String,
    /// The plain-text template, a file under `template_dir`.
    pub text_template: String,
    /// The subject line, a minijinja template rendered with the report's context.
    pub subject: String,
    /// Folder of the templates, relative to the pipeline file. Default `../report-templates`.
    #[serde(default)]
    pub template_dir: Option<String>,
    /// Marts the templates read: the partitions this run published.
    pub marts: Vec<String>,
    /// More tables for the templates: name → SQL over the marts (templated like steps).
    #[serde(default)]
    pub queries: IndexMap<String, String>,
    pub from: String,
    /// Recipients; one entry may hold several addresses separated by commas.
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Marts attached to the email as CSV files.
    #[serde(default)]
    pub attach_csv: Vec<String>,
    /// Largest message sent, e.g. `5MB` (the default); a larger one fails the delivery.
    #[serde(default)]
    pub max_size: Option<String>,
    #[serde(default)]
    pub delivery: Option<RawDelivery>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    /// `outbox` (default: files in a local folder) or `smtp`.
    #[serde(default)]
    pub transport: Option<String>,
    /// The outbox folder. Default `output/outbox`.
    #[serde(default)]
    pub outbox: Option<String>,
    #[serde(default)]
    pub smtp: Option<RawSmtp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    #[serde(default)]
    pub host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<String>,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (plain, for a local relay).
    #[serde(default)]
    pub tls: Option<String>,
    /// A PEM certificate to trust besides the public roots (a private CA, a test server).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Names of the environment variables holding the credentials.
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// Per-command timeout. Default `30s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Attempts after the first when the failure is transient. Default 3.
    #[serde(default)]
    pub retries: Option<String>,
    /// Wait before the first retry, doubled for each next one. Default `2s`.
    #[serde(default)]
    pub retry_backoff: Option<String>,
}
