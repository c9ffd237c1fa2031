//! Pipeline configuration, in two phases.
//!
//! 1. [`raw`]: the YAML file deserialised into structs that deny unknown keys; a syntax or type
//!    error stops here with the file, line, column and key path.
//! 2. [`compile`]: resolves `${ENV}` placeholders, vars, the run date and templates, reads SQL
//!    files and checks every name, **collecting all problems** instead of stopping at the first.
//!
//! The result, [`Pipeline`], is everything a run needs, for one logical date.

pub mod checks;
pub mod date;
pub mod report;
pub mod template;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::parquet::basic::{Compression, GzipLevel, ZstdLevel};
use sha2::{Digest, Sha256};

pub use lifemap_syntax::suggest::did_you_mean;
pub use lifemap_syntax::units::{parse_bytes, parse_duration};
/// The file as written, and `${ENV}` placeholders: in lifemap-syntax, which the fuzz targets test.
pub use lifemap_syntax::{interpolate, pipeline as raw};

pub use date::{RunDate, parse_ds};
use interpolate::interpolate;
use raw::{RawCompression, RawFormat, RawParquet, RawPipeline};
pub use report::{Report, SmtpSettings, SmtpTls, TemplateFile, Transport};
use template::TemplateContext;

/// One problem found in a pipeline, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the setting, e.g. `sources.events.format`.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All problems of one pipeline file.
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} problem{} in the pipeline:",
            if count == 1 { "" } else { "s" }
        )?;
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

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
    /// Personal-data columns and what ingestion does with them.
    pub pii: Vec<(String, raw::PiiAction)>,
}

impl Source {
    /// Whether reading this source needs the pseudonymisation key.
    pub fn needs_pii_key(&self) -> bool {
        self.pii.iter().any(|(_, action)| *action == raw::PiiAction::Hash)
    }
}

/// Where a step's SQL came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlOrigin {
    File(PathBuf),
    Inline,
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
    pub origin: SqlOrigin,
    pub depends_on: Vec<String>,
    pub materialize: Option<bool>,
    /// DataFusion settings (full name, value) that hold while this step is planned and run.
    pub settings: Vec<(String, String)>,
    pub description: Option<String>,
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
    pub severity: raw::Severity,
    pub examples: usize,
    /// For `row_count` with `max_change_percent`: the mart whose previous partition is compared
    /// against (its rows replace [`checks::PREVIOUS_ROWS_PLACEHOLDER`] at run time).
    pub previous_rows_of: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Mart {
    pub name: String,
    pub from: String,
    pub description: Option<String>,
    pub parquet: ParquetSettings,
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

/// Read, parse and compile a pipeline file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Pipeline, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the pipeline file: {err}"),
            hint: None,
        }])
    })?;
    let raw = parse(path, &text)?;
    compile(path, &text, raw, overrides, &|name| std::env::var(name).ok())
}

/// Phase one: YAML into [`RawPipeline`].
pub fn parse(path: &Path, text: &str) -> Result<RawPipeline, Diagnostics> {
    raw::parse(text).map_err(|err| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: err.line,
            column: err.column,
            key: err.key,
            message: err.message,
            hint: err.hint,
        }])
    })
}

/// Best-effort position of a setting in the file: each needle is searched after the previous one.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn position(&self, needles: &[&str]) -> (Option<usize>, Option<usize>) {
        let mut offset = 0;
        let mut found = None;
        for needle in needles {
            match self.text[offset..].find(needle) {
                Some(index) => {
                    found = Some(offset + index);
                    offset += index + needle.len();
                }
                None => break,
            }
        }
        match found {
            Some(index) => {
                let before = &self.text[..index];
                let line = before.matches('\n').count() + 1;
                let column = index - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
                (Some(line), Some(column))
            }
            None => (None, None),
        }
    }

    fn diagnostic(&self, needles: &[&str], key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.position(needles);
        Diagnostic {
            file: self.path.to_path_buf(),
            line,
            column,
            key: Some(key.into()),
            message: message.into(),
            hint: None,
        }
    }
}

/// Collects problems while compiling.
struct Compiler<'a> {
    locator: Locator<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Diagnostic>,
}

impl Compiler<'_> {
    fn report(&mut self, needles: &[&str], key: impl Into<String>, message: impl Into<String>) {
        let diagnostic = self.locator.diagnostic(needles, key, message);
        self.problems.push(diagnostic);
    }

    fn report_with_hint(&mut self, needles: &[&str], key: String, message: String, hint: Option<String>) {
        let mut diagnostic = self.locator.diagnostic(needles, key, message);
        diagnostic.hint = hint;
        self.problems.push(diagnostic);
    }

    /// Interpolate `${ENV}` in one setting, reporting failures where the placeholder is written.
    fn env_value(&mut self, key: &str, value: &str) -> Option<interpolate::Interpolated> {
        match interpolate(value, self.env) {
            Ok(done) => Some(done),
            Err(err) => {
                let needle = err.placeholder.clone();
                self.report(&[needle.as_str()], key, err.message);
                None
            }
        }
    }

    /// Interpolate and then template a location-like setting.
    fn templated(&mut self, key: &str, needles: &[&str], value: &str, ctx: &TemplateContext) -> Option<String> {
        let interpolated = self.env_value(key, value)?;
        match ctx.render(key, &interpolated.value) {
            Ok(rendered) => Some(rendered),
            Err(message) => {
                self.report(needles, key, message);
                None
            }
        }
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let Some(value) = self.env_value(key, value) else {
            return default;
        };
        parse_duration(&value.value).unwrap_or_else(|message| {
            self.report(&[key.rsplit('.').next().unwrap_or(key)], key, message);
            default
        })
    }

    fn secret_from_env(&mut self, key: &str, env_name: Option<&str>) -> Option<Secret> {
        let name = env_name?;
        match (self.env)(name) {
            Some(value) => Some(Secret(value)),
            None => {
                self.report(&[name], key, format!("environment variable `{name}` is not set"));
                None
            }
        }
    }
}

/// Identifiers DataFusion will not fold or quote: lower-case letters, digits and `_`.
fn is_plain_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Phase two: resolve and check everything for one run date.
pub fn compile(
    path: &Path,
    text: &str,
    raw: RawPipeline,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, Diagnostics> {
    let mut c = Compiler {
        locator: Locator { path, text },
        env,
        problems: Vec::new(),
    };

    let timezone_name = raw
        .timezone
        .as_deref()
        .and_then(|name| c.env_value("timezone", name))
        .map(|done| done.value);
    let timezone = match timezone_name.as_deref() {
        None | Some("") => Tz::UTC,
        Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
            c.report(
                &["timezone:"],
                "timezone",
                format!("`{name}` is not an IANA time zone (e.g. `Europe/Berlin`)"),
            );
            Tz::UTC
        }),
    };
    let date = match overrides.ds {
        Some(ds) => RunDate::new(ds, timezone),
        None => RunDate::yesterday(timezone),
    };

    // Vars: defaults, then command-line overrides.
    let mut vars = BTreeMap::new();
    let mut printable_vars = BTreeMap::new();
    for (name, value) in &raw.vars {
        let key = format!("vars.{name}");
        if TemplateContext::RESERVED.contains(&name.as_str()) {
            c.report(
                &["vars:", &format!("{name}:")],
                key,
                format!("`{name}` is reserved for the run; choose another name"),
            );
            continue;
        }
        if let serde_yaml::Value::Sequence(items) = value {
            let mut texts = Vec::with_capacity(items.len());
            let mut from_env = false;
            for item in items {
                match yaml_scalar_text(item).map(|text| c.env_value(&key, &text)) {
                    Some(Some(done)) => {
                        from_env |= done.from_env;
                        texts.push(done.value);
                    }
                    Some(None) => {}
                    None => c.report(
                        &["vars:", &format!("{name}:")],
                        key.clone(),
                        "a list var holds strings, numbers or booleans",
                    ),
                }
            }
            if !from_env {
                printable_vars.insert(name.clone(), texts.join(","));
            }
            vars.insert(name.clone(), minijinja::Value::from(texts));
            continue;
        }
        let Some(scalar) = yaml_scalar_text(value) else {
            c.report(
                &["vars:", &format!("{name}:")],
                key,
                "a var's default must be a string, number, boolean or a list of them",
            );
            continue;
        };
        let Some(resolved) = c.env_value(&key, &scalar) else {
            continue;
        };
        if !resolved.from_env {
            printable_vars.insert(name.clone(), resolved.value.clone());
        }
        match typed_var(value, &resolved.value) {
            Ok(typed) => {
                vars.insert(name.clone(), typed);
            }
            Err(message) => c.report(&["vars:", &format!("{name}:")], key, message),
        }
    }
    for (name, value) in &overrides.vars {
        if !vars.contains_key(name) && !raw.vars.contains_key(name) {
            let hint =
                did_you_mean(name, raw.vars.keys().map(String::as_str)).map(|close| format!("did you mean `{close}`?"));
            c.problems.push(Diagnostic {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: Some(format!("--var {name}")),
                message: format!("the pipeline declares no var `{name}`"),
                hint,
            });
            continue;
        }
        let declared = raw.vars.get(name).unwrap_or(&serde_yaml::Value::Null);
        match typed_var(declared, value) {
            Ok(typed) => {
                printable_vars.insert(name.clone(), value.clone());
                vars.insert(name.clone(), typed);
            }
            Err(message) => c.problems.push(Diagnostic {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: Some(format!("--var {name}")),
                message,
                hint: None,
            }),
        }
    }
    let ctx = TemplateContext::new(&date, &vars);

    let s3 = compile_s3(&mut c, raw.storage.and_then(|s| s.s3));

    let scheduler_text = overrides
        .engine
        .clone()
        .or_else(|| raw.engine.as_ref().and_then(|engine| engine.scheduler.clone()));
    let scheduler = scheduler_text.and_then(|text| {
        parse_engine(&text).unwrap_or_else(|message| {
            c.report(&["engine:", "scheduler:"], "engine.scheduler", message);
            None
        })
    });
    let engine = match raw.engine {
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
    };

    let mut table_names: HashSet<String> = HashSet::new();
    let mut sources = Vec::new();
    for (name, source) in raw.sources {
        let key = format!("sources.{name}");
        let needle = format!("{name}:");
        if !is_plain_identifier(&name) {
            c.report(
                &["sources:", &needle],
                key.clone(),
                "a source name is lower-case letters, digits and `_`, so SQL can name it unquoted",
            );
        }
        table_names.insert(name.clone());
        let location = c.templated(
            &format!("{key}.location"),
            &["sources:", &needle, "location:"],
            &source.location,
            &ctx,
        );
        let format = c
            .templated(
                &format!("{key}.format"),
                &["sources:", &needle, "format:"],
                &source.format,
                &ctx,
            )
            .and_then(|name| {
                let format = RawFormat::parse(name.trim());
                if format.is_none() {
                    let names = RawFormat::ALL.map(|(known, _)| known);
                    let hint = did_you_mean(name.trim(), names).map(|close| format!("did you mean `{close}`?"));
                    c.report_with_hint(
                        &["sources:", &needle, "format:"],
                        format!("{key}.format"),
                        format!("`{name}` is not a format: {} or {}", names[..3].join(", "), names[3]),
                        hint,
                    );
                }
                format
            })
            // Reported above; csv asks least of the other settings, so it adds no second report.
            .unwrap_or(RawFormat::Csv);
        let ds_partition = source.ds_partition.as_deref().and_then(|p| {
            c.templated(
                &format!("{key}.ds_partition"),
                &["sources:", &needle, "ds_partition:"],
                p,
                &ctx,
            )
        });
        if format == RawFormat::Lines && source.schema.is_some() {
            c.report(
                &["sources:", &needle, "schema:"],
                format!("{key}.schema"),
                "a `lines` source has one column, `line`: it takes no schema",
            );
        }
        let schema = source.schema.map(|columns| {
            columns
                .into_iter()
                .filter_map(|(column, ty)| match parse_type(&ty) {
                    Ok(data_type) => Some((column, data_type)),
                    Err(message) => {
                        c.report(
                            &["sources:", &needle, "schema:", &format!("{column}:")],
                            format!("{key}.schema.{column}"),
                            message,
                        );
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let partitions = source
            .partitions
            .into_iter()
            .filter_map(|(column, ty)| match parse_type(&ty) {
                Ok(data_type) => Some((column, data_type)),
                Err(message) => {
                    c.report(
                        &["sources:", &needle, "partitions:", &format!("{column}:")],
                        format!("{key}.partitions.{column}"),
                        message,
                    );
                    None
                }
            })
            .collect();
        let csv = compile_csv(&mut c, &key, &needle, format, source.csv);
        if format == RawFormat::Lines && !source.pii.is_empty() {
            c.report(
                &["sources:", &needle, "pii:"],
                format!("{key}.pii"),
                "a `lines` source has one column, `line`: parse it in a step and hash there, or \
                 declare the personal fields of a csv, ndjson or parquet source",
            );
        }
        if let Some(columns) = &schema {
            for column in source.pii.keys() {
                if !columns.iter().any(|(name, _)| name == column) {
                    c.report(
                        &["sources:", &needle, "pii:", &format!("{column}:")],
                        format!("{key}.pii.{column}"),
                        format!("`{column}` is not a column of the declared schema"),
                    );
                }
            }
        }
        sources.push(Source {
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
            pii: source.pii.into_iter().collect(),
        });
    }

    let sql_dir = {
        let base = path.parent().unwrap_or(Path::new("."));
        normalize(&base.join(raw.sql_dir.as_deref().unwrap_or("../sql")))
    };
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    let mut steps = Vec::new();
    for step in raw.steps {
        let key = format!("steps.{}", step.name);
        let needle = format!("name: {}", step.name);
        if !is_plain_identifier(&step.name) {
            c.report(
                &["steps:", &needle],
                key.clone(),
                "a step name is lower-case letters, digits and `_`, so SQL can name it unquoted",
            );
        }
        if !table_names.insert(step.name.clone()) {
            c.report(
                &["steps:", &needle],
                key.clone(),
                format!("`{}` is already the name of a source or an earlier step", step.name),
            );
        }
        if let Some(kmeans) = step.kmeans {
            if step.sql.is_some() || step.query.is_some() {
                c.report(
                    &["steps:", &needle],
                    key.clone(),
                    "a step is either SQL (`sql`/`query`) or `kmeans`, not both",
                );
            }
            if !step.settings.is_empty() {
                c.report(
                    &["steps:", &needle, "settings:"],
                    format!("{key}.settings"),
                    "`settings` are DataFusion's, for SQL steps; a `kmeans` step runs no SQL",
                );
            }
            let spec = compile_kmeans(&mut c, &key, &needle, kmeans, &ctx);
            steps.push(Step {
                name: step.name,
                kmeans: spec,
                sql: String::new(),
                origin: SqlOrigin::Inline,
                depends_on: step.depends_on,
                materialize: Some(true),
                settings: Vec::new(),
                description: step.description,
            });
            continue;
        }
        let settings = compile_settings(&mut c, &key, &needle, &step.settings, step.materialize);
        for (name, value) in &settings {
            hasher.update(format!("{name}={value}\n").as_bytes());
        }
        let (source_text, origin) = match (&step.sql, &step.query) {
            (Some(file), None) => {
                let file_path = sql_dir.join(file);
                match read_inside(&sql_dir, file, "SQL file") {
                    Ok((_, sql)) => (Some(sql), SqlOrigin::File(file_path)),
                    Err(message) => {
                        c.report_with_hint(
                            &["steps:", &needle, "sql:"],
                            format!("{key}.sql"),
                            message,
                            Some(format!("`sql` names a file under the sql_dir ({})", sql_dir.display())),
                        );
                        (None, SqlOrigin::File(file_path))
                    }
                }
            }
            (None, Some(query)) => (Some(query.clone()), SqlOrigin::Inline),
            _ => {
                c.report(
                    &["steps:", &needle],
                    key.clone(),
                    "a step needs exactly one of `sql` (a file) or `query` (inline SQL)",
                );
                (None, SqlOrigin::Inline)
            }
        };
        let sql = source_text.and_then(|source_text| {
            hasher.update(source_text.as_bytes());
            match ctx.render_sql(&origin.to_string(), &source_text) {
                Ok(sql) => Some(sql),
                Err(message) => {
                    c.report(
                        &["steps:", &needle],
                        key.clone(),
                        format!("templating {origin}: {message}"),
                    );
                    None
                }
            }
        });
        steps.push(Step {
            name: step.name,
            kmeans: None,
            sql: sql.unwrap_or_default(),
            origin,
            depends_on: step.depends_on,
            materialize: step.materialize,
            settings,
            description: step.description,
        });
    }
    for step in &steps {
        for dependency in &step.depends_on {
            if !table_names.contains(dependency) {
                let hint = did_you_mean(dependency, table_names.iter().map(String::as_str))
                    .map(|close| format!("did you mean `{close}`?"));
                c.report_with_hint(
                    &["steps:", &format!("name: {}", step.name), "depends_on:"],
                    format!("steps.{}.depends_on", step.name),
                    format!(
                        "step `{}` depends on `{dependency}`, which is neither a source nor a step",
                        step.name
                    ),
                    hint,
                );
            }
        }
    }

    let mut checks = Vec::with_capacity(raw.checks.len());
    let mut check_names = HashSet::new();
    let as_of = date.as_of_rfc3339();
    for check in raw.checks {
        if !check_names.insert(check.name.clone()) {
            c.report(
                &["checks:", &format!("name: {}", check.name)],
                format!("checks.{}", check.name),
                format!("two checks are named `{}`", check.name),
            );
        }
        if let Some(compiled) = checks::compile_check(&mut c, check, &ctx, &table_names, &as_of, &mut hasher) {
            checks.push(compiled);
        }
    }

    let lock_timeout = c.duration(
        "output.lock_timeout",
        raw.output.lock_timeout.as_deref(),
        Duration::from_secs(6 * 3600),
    );
    let output_location = c
        .templated("output.location", &["output:", "location:"], &raw.output.location, &ctx)
        .unwrap_or_default();
    let default_parquet = compile_parquet(
        &mut c,
        "output.parquet",
        &["output:", "parquet:"],
        raw.output.parquet.as_ref(),
        &ParquetSettings::default(),
    );
    let step_names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let mut marts = Vec::new();
    for (name, mart) in raw.marts {
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
            &mut c,
            &format!("{key}.parquet"),
            &["marts:", &needle, "parquet:"],
            mart.parquet.as_ref(),
            &default_parquet,
        );
        marts.push(Mart {
            name,
            from,
            description: mart.description,
            parquet,
        });
    }
    if marts.is_empty() {
        c.report(&["marts:"], "marts", "the pipeline publishes no mart");
    }
    // A change check compares with a mart's partitions: name the mart once, here.
    for check in &mut checks {
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
    let report = raw
        .report
        .and_then(|raw_report| report::compile_report(&mut c, raw_report, path, &ctx, &marts, &mut hasher));
    // On a cluster, executors take a CSV or NDJSON file's compression from its name (DataFusion
    // does not send it, see `cluster`): a declared one could not be honoured.
    if engine.scheduler.is_some() {
        for source in &sources {
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

    if !c.problems.is_empty() {
        return Err(Diagnostics(c.problems));
    }
    let hash = hasher.finalize().iter().fold(String::from("sha256:"), |mut out, byte| {
        out.push_str(&format!("{byte:02x}"));
        out
    });
    Ok(Pipeline {
        name: raw.name,
        description: raw.description,
        file: path.to_path_buf(),
        date,
        vars,
        printable_vars,
        s3,
        engine,
        sources,
        steps,
        checks,
        output_location,
        lock_timeout,
        marts,
        report,
        hash,
    })
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

/// A step's DataFusion settings, each checked by DataFusion itself (name and value) as the
/// pipeline is read, so that a typo fails `validate` rather than a run halfway through.
fn compile_settings(
    c: &mut Compiler<'_>,
    key: &str,
    needle: &str,
    raw: &indexmap::IndexMap<String, raw::RawSettingValue>,
    materialize: Option<bool>,
) -> Vec<(String, String)> {
    if raw.is_empty() {
        return Vec::new();
    }
    if materialize == Some(false) {
        c.report(
            &["steps:", needle, "materialize:"],
            format!("{key}.materialize"),
            "a step with `settings` is materialized: they apply where it is computed, and a view is computed inside the steps that read it",
        );
    }
    let mut checked = datafusion::config::ConfigOptions::new();
    let known: Vec<String> = checked.entries().into_iter().map(|entry| entry.key).collect();
    let mut settings = Vec::new();
    for (name, value) in raw {
        let value = value.to_string();
        let needles = ["steps:", needle, "settings:", &format!("{name}:")];
        let setting_key = format!("{key}.settings.{name}");
        if !known.contains(name) {
            let hint =
                did_you_mean(name, known.iter().map(String::as_str)).map(|close| format!("did you mean `{close}`?"));
            c.report_with_hint(
                &needles,
                setting_key,
                format!("DataFusion has no setting `{name}`"),
                hint,
            );
            continue;
        }
        match checked.set(name, &value) {
            Ok(()) => settings.push((name.clone(), value)),
            Err(error) => c.report(
                &needles,
                setting_key,
                format!("DataFusion does not take `{value}` here: {}", error.find_root()),
            ),
        }
    }
    settings
}

fn compile_kmeans(
    c: &mut Compiler<'_>,
    key: &str,
    needle: &str,
    raw: raw::RawKMeans,
    ctx: &TemplateContext,
) -> Option<crate::personas::KMeansSpec> {
    // `k` may be a template (`"{{ persona_k }}"`), so a var can set it.
    let k_text = match &raw.k {
        None => "auto".to_string(),
        Some(raw::RawK::Fixed(k)) => k.to_string(),
        Some(raw::RawK::Named(text)) => {
            c.templated(&format!("{key}.kmeans.k"), &["steps:", needle, "k:"], text, ctx)?
        }
    };
    let k = match k_text.trim() {
        "auto" => None,
        number => match number.parse::<usize>() {
            Ok(k) if k >= 1 => Some(k),
            _ => {
                c.report(
                    &["steps:", needle, "k:"],
                    format!("{key}.kmeans.k"),
                    format!("`{number}`: k is a number of clusters (1 or more) or `auto`"),
                );
                return None;
            }
        },
    };
    let (k_min, k_max) = (raw.k_min.unwrap_or(2), raw.k_max.unwrap_or(8));
    if k_min < 2 || k_max < k_min {
        c.report(
            &["steps:", needle, "kmeans:"],
            format!("{key}.kmeans"),
            "need 2 <= k_min <= k_max",
        );
        return None;
    }
    if raw.features.is_empty() {
        c.report(
            &["steps:", needle, "features:"],
            format!("{key}.kmeans.features"),
            "name at least one feature column",
        );
        return None;
    }
    let order_by = raw.order_by.unwrap_or_else(|| raw.features[0].clone());
    if !raw.features.contains(&order_by) {
        c.report(
            &["steps:", needle, "order_by:"],
            format!("{key}.kmeans.order_by"),
            format!("`{order_by}` is not one of the features"),
        );
    }
    Some(crate::personas::KMeansSpec {
        input: raw.input,
        id: raw.id,
        features: raw.features,
        k,
        k_min,
        k_max,
        sample_size: raw.sample_size.unwrap_or(10_000),
        seed: raw.seed.unwrap_or(42),
        starts: raw.starts.unwrap_or(10).max(1),
        max_iterations: raw.max_iterations.unwrap_or(300),
        order_by,
        naming: raw.naming.unwrap_or_default(),
    })
}

fn compile_s3(c: &mut Compiler<'_>, raw: Option<raw::RawS3>) -> S3Settings {
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

/// `dir/name`, when `name` is a relative path that stays inside `dir`: a pipeline cannot make
/// lifemap read (and put into SQL or an email) a file outside its SQL or template folder.
pub(crate) fn file_inside(dir: &Path, name: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let relative = Path::new(name);
    if name.is_empty()
        || relative
            .components()
            .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{name}` is not a file inside {}: no absolute paths and no `..`",
            dir.display()
        ));
    }
    Ok(dir.join(relative))
}

/// The text of `dir/name` (see `file_inside`), or a message naming `what` and the path.
pub(crate) fn read_inside(dir: &Path, name: &str, what: &str) -> Result<(PathBuf, String), String> {
    let path = file_inside(dir, name)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(err) => Err(format!("cannot read {what} {}: {err}", path.display())),
    }
}

/// `pipelines/../sql` → `sql`, so messages show the paths people wrote.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// `zstd`, `zstd(5)`, `snappy`, `gzip(6)`, `lz4`, `none`.
pub fn parse_compression(text: &str) -> Result<Compression, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (codec, level) = match lower.split_once('(') {
        Some((codec, rest)) => {
            let level = rest.strip_suffix(')').and_then(|l| l.trim().parse::<i32>().ok());
            match level {
                Some(level) => (codec.trim().to_string(), Some(level)),
                None => return Err(format!("`{text}`: expected a level like `zstd(3)`")),
            }
        }
        None => (lower.clone(), None),
    };
    let bad_level = |err: datafusion::parquet::errors::ParquetError| format!("`{text}`: {err}");
    match (codec.as_str(), level) {
        ("zstd", level) => Ok(Compression::ZSTD(
            ZstdLevel::try_new(level.unwrap_or(3)).map_err(bad_level)?,
        )),
        ("gzip", level) => {
            let level = u32::try_from(level.unwrap_or(6)).map_err(|_| format!("`{text}`: a gzip level is 0 to 9"))?;
            Ok(Compression::GZIP(GzipLevel::try_new(level).map_err(bad_level)?))
        }
        ("snappy", None) => Ok(Compression::SNAPPY),
        ("lz4", None) => Ok(Compression::LZ4_RAW),
        ("none" | "uncompressed", None) => Ok(Compression::UNCOMPRESSED),
        _ => Err(format!(
            "`{text}` is not a Parquet compression: use zstd, zstd(level), snappy, gzip(level), lz4 or none"
        )),
    }
}

/// A declared column type.
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let lower = text.trim().to_ascii_lowercase();
    let data_type = match lower.as_str() {
        "string" | "text" | "varchar" => DataType::Utf8,
        "int" | "integer" | "bigint" | "long" => DataType::Int64,
        "float" | "double" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        other => {
            let inner = other.strip_prefix("decimal(").and_then(|rest| rest.strip_suffix(')'));
            let parsed = inner.and_then(|inner| {
                let (precision, scale) = inner.split_once(',')?;
                Some((precision.trim().parse::<u8>().ok()?, scale.trim().parse::<i8>().ok()?))
            });
            match parsed {
                Some((precision, scale))
                    if (1..=38).contains(&precision) && scale >= 0 && (scale as u8) <= precision =>
                {
                    DataType::Decimal128(precision, scale)
                }
                _ => {
                    return Err(format!(
                        "`{text}` is not a column type: use string, int, float, decimal(p,s), bool, date or timestamp"
                    ));
                }
            }
        }
    };
    Ok(data_type)
}

fn yaml_scalar_text(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Keep a var the type its default was declared with, so templates can compare numbers.
/// A list var given on the command line is comma-separated.
/// A var's value with the type of its default: a number default takes only numbers and a boolean
/// only `true`/`false`, so an override never lands in SQL as text where a number was written.
fn typed_var(declared: &serde_yaml::Value, resolved: &str) -> Result<minijinja::Value, String> {
    match declared {
        serde_yaml::Value::Sequence(_) => Ok(minijinja::Value::from(
            resolved
                .split(',')
                .map(|item| item.trim().to_string())
                .collect::<Vec<_>>(),
        )),
        serde_yaml::Value::Number(_) => {
            let text = resolved.trim();
            match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(int), _) => Ok(int.into()),
                (_, Ok(float)) if float.is_finite() => Ok(float.into()),
                _ => Err(format!(
                    "expects a number (its default is {}); got `{resolved}`",
                    yaml_scalar_text(declared).unwrap_or_default()
                )),
            }
        }
        serde_yaml::Value::Bool(_) => resolved
            .trim()
            .parse::<bool>()
            .map(Into::into)
            .map_err(|_| format!("expects true or false; got `{resolved}`")),
        _ => Ok(resolved.into()),
    }
}

/// `engine.scheduler` / `--engine`: `local` runs SQL in this process (`None`); `df://host[:port]`
/// names a Ballista scheduler (port 50050 unless given).
pub fn parse_engine(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text == "local" {
        return Ok(None);
    }
    let usage = || format!("`{text}` is neither `local` nor a scheduler URL like `df://scheduler:50050`");
    let url = url::Url::parse(text).map_err(|_| usage())?;
    match (url.scheme(), url.host_str()) {
        ("df", Some(host)) if !host.is_empty() && url.path().trim_matches('/').is_empty() => {
            Ok(Some(format!("df://{host}:{}", url.port().unwrap_or(50050))))
        }
        _ => Err(usage()),
    }
}

#[cfg(test)]
mod engine_tests {
    use super::parse_engine;

    #[test]
    fn engine_is_local_or_a_scheduler_url() {
        assert_eq!(parse_engine("local"), Ok(None));
        assert_eq!(parse_engine("df://sched:50051"), Ok(Some("df://sched:50051".into())));
        assert_eq!(parse_engine("df://10.0.0.5"), Ok(Some("df://10.0.0.5:50050".into())));
        for wrong in ["remote", "http://sched:50050", "df://sched:50050/x", "df://"] {
            let message = parse_engine(wrong).unwrap_err();
            assert!(message.contains("df://scheduler:50050"), "{wrong}: {message}");
        }
    }
}
