//! The compiled pipeline: what a run needs, for one logical date, every name resolved and every
//! setting typed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use lettre::message::Mailbox;

use super::date::RunDate;
use lifemap_syntax::pipeline::{PiiAction, RawCompression, Severity};

/// A value that must never be printed (credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolved S3 settings (`None` fields fall back to the AWS environment variables).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub virtual_hosted_style: bool,
    pub allow_http: Option<bool>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            virtual_hosted_style: false,
            allow_http: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    pub target_partitions: Option<usize>,
    pub batch_size: Option<usize>,
    pub memory_limit: Option<u64>,
    /// The Ballista scheduler SQL runs on (`df://host:port`); `None` runs it in this process.
    pub scheduler: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
    Lines,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
            Format::Lines => "lines",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CsvSettings {
    pub delimiter: u8,
    pub quote: u8,
    pub header: bool,
    pub null_values: Vec<String>,
}

impl Default for CsvSettings {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            header: true,
            null_values: vec![String::new()],
        }
    }
}

/// A column with its Arrow type.
pub type Column = (String, DataType);

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub location: String,
    pub format: Format,
    pub compression: RawCompression,
    pub schema: Option<Vec<Column>>,
    pub partitions: Vec<Column>,
    pub csv: CsvSettings,
    pub ds_partition: Option<String>,
    pub allow_empty: bool,
    /// A partition an earlier run listed may disappear (reported, not failed).
    pub allow_removed_partitions: bool,
    /// Personal-data columns and what ingestion does with them.
    pub pii: Vec<(String, PiiAction)>,
}

impl Source {
    /// Whether reading this source needs the pseudonymisation key.
    pub fn needs_pii_key(&self) -> bool {
        self.pii.iter().any(|(_, action)| *action == PiiAction::Hash)
    }
}

/// Where a step's SQL came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlOrigin {
    File(PathBuf),
    Inline,
}

impl SqlOrigin {
    /// The SQL file's name; `None` for an inline query.
    pub fn file_name(&self) -> Option<String> {
        match self {
            SqlOrigin::File(path) => Some(path.display().to_string()),
            SqlOrigin::Inline => None,
        }
    }
}

impl fmt::Display for SqlOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlOrigin::File(path) => write!(f, "{}", path.display()),
            SqlOrigin::Inline => f.write_str("inline query"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// A clustering step instead of SQL (then `sql` is empty).
    pub kmeans: Option<crate::personas::KMeansSpec>,
    /// The SQL after templating.
    pub sql: String,
    /// The SQL as written (before templating), to place errors in it.
    pub template: String,
    pub origin: SqlOrigin,
    pub depends_on: Vec<String>,
    pub materialize: Option<bool>,
    /// DataFusion settings (full name, value) that hold while this step is planned and run.
    pub settings: Vec<(String, String)>,
    pub description: Option<String>,
    /// Kept between runs and computed only for what changed.
    pub incremental: Option<Incremental>,
}

/// An incremental step, `by_partition`: its rows of a source partition depend on that
/// partition's files alone, so a partition is computed once and kept (`_state/steps/<step>/`)
/// until its export objects change.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    /// The Hive-partitioned source the step reads.
    pub source: String,
    /// SQL over the source's partition columns: which partitions this run needs (all if none).
    pub partitions: Option<String>,
    /// SQL naming the partitions not to keep (rows of forgotten persons), run once the tables it
    /// reads are computed.
    pub forget: Option<String>,
    /// A digest of what the kept results were computed by (the step's SQL and settings, the
    /// source's definition, lifemap's version): kept results of another definition are rebuilt.
    pub definition: String,
}

/// How a mart is published (see `marts` and `delta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Parquet files per `ds=` partition, committed by a `_SUCCESS` manifest.
    #[default]
    Parquet,
    /// The same files, also committed to a Delta Lake table partitioned by `ds`.
    Delta,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParquetSettings {
    pub compression: Compression,
    pub row_group_size: usize,
    pub max_rows_per_file: usize,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        Self {
            compression: Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
            row_group_size: 1024 * 1024,
            max_rows_per_file: 10_000_000,
        }
    }
}

/// A data-quality check: SQL whose rows are failures (declared kinds are compiled to it).
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub description: Option<String>,
    /// `expression`, `not_null`, `unique`, ...
    pub kind: &'static str,
    pub sql: String,
    pub severity: Severity,
    pub examples: usize,
    /// For `row_count` with `max_change_percent`: the mart whose previous partition is compared
    /// against (its rows replace [`checks::PREVIOUS_ROWS_PLACEHOLDER`] at run time).
    pub previous_rows_of: Option<String>,
    /// The tables a declared check reads (empty for an `expression`): where lineage reports it.
    pub tables: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Mart {
    pub name: String,
    pub from: String,
    pub description: Option<String>,
    pub parquet: ParquetSettings,
    pub format: TableFormat,
    /// SQL condition naming rows of forgotten persons, applied to the published partitions of
    /// other dates (see `history`).
    pub forget: Option<String>,
}

/// A compiled pipeline for one logical date.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub date: RunDate,
    /// Vars as templates see them.
    pub vars: BTreeMap<String, minijinja::Value>,
    /// Vars safe to print: those that took nothing from the environment.
    pub printable_vars: BTreeMap<String, String>,
    pub s3: S3Settings,
    pub engine: EngineSettings,
    pub sources: Vec<Source>,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    pub output_location: String,
    /// A run lock older than this is stale (see `lock`).
    pub lock_timeout: Duration,
    pub marts: Vec<Mart>,
    pub report: Option<Report>,
    /// SHA-256 of the pipeline file, every SQL file and every report template it reads.
    pub hash: String,
}

impl Pipeline {
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// What the command line adds to a pipeline file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub ds: Option<NaiveDate>,
    /// `--var key=value`, in order (a later one wins).
    pub vars: Vec<(String, String)>,
    pub memory_limit: Option<u64>,
    /// `--engine`: `local` or a Ballista scheduler URL; wins over `engine.scheduler`.
    pub engine: Option<String>,
}

/// A report template read from disk.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub path: PathBuf,
    pub source: String,
}

impl TemplateFile {
    /// The name minijinja knows it by; its extension decides autoescaping (`.html*` escapes).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption: only for a relay on the same host or network.
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// An extra trusted root certificate, PEM.
    pub ca_pem: Option<Vec<u8>>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
}

#[derive(Debug, Clone)]
pub enum Transport {
    /// `.eml` and `.html` files in a local folder.
    Outbox(PathBuf),
    Smtp(SmtpSettings),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub html: TemplateFile,
    pub text: TemplateFile,
    pub subject: String,
    pub marts: Vec<String>,
    /// Name → rendered SQL over the marts.
    pub queries: Vec<(String, String)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub attach_csv: Vec<String>,
    pub max_bytes: u64,
    pub transport: Transport,
}
