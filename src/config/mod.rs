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
mod diagnostics;
mod files;
mod marts;
pub mod model;
pub mod report;
mod sources;
mod steps;
mod storage;
pub mod template;
mod values;
mod vars;

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use lifemap_syntax::suggest::did_you_mean;
pub use lifemap_syntax::units::{parse_bytes, parse_duration};
/// The file as written, and `${ENV}` placeholders: in lifemap-syntax, which the fuzz targets test.
pub use lifemap_syntax::{interpolate, pipeline as raw};

pub use date::{RunDate, parse_ds};
pub use diagnostics::{Diagnostic, Diagnostics};
pub(crate) use files::file_inside;
pub use model::{
    Check, Column, CsvSettings, EngineSettings, Format, Incremental, Mart, Overrides, ParquetSettings, Pipeline,
    Report, S3Settings, Secret, SmtpSettings, SmtpTls, Source, SqlOrigin, Step, TableFormat, TemplateFile, Transport,
};
pub use report::DEFAULT_MAX_BYTES;
pub use values::{parse_compression, parse_engine, parse_type};

use diagnostics::{Compiler, Locator};
use raw::RawPipeline;
use template::TemplateContext;

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

/// Phase two: resolve and check everything for one run date, in named parts (each in its own
/// module), collecting every problem before failing.
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
    let timezone = vars::compile_timezone(&mut c, raw.timezone.as_deref());
    let date = match overrides.ds {
        Some(ds) => RunDate::new(ds, timezone),
        None => RunDate::yesterday(timezone),
    };
    let mut vars = vars::compile_vars(&mut c, &raw.vars);
    vars::apply_overrides(&mut c, &raw.vars, &overrides.vars, &mut vars);
    let ctx = TemplateContext::new(&date, &vars.values);

    let s3 = storage::compile_s3(&mut c, raw.storage.and_then(|s| s.s3));
    let engine = storage::compile_engine(&mut c, raw.engine, overrides);
    let mut table_names: HashSet<String> = HashSet::new();
    let sources = sources::compile_sources(&mut c, raw.sources, &ctx, &mut table_names);
    storage::check_cluster_compression(&mut c, &engine, &sources);

    let sql_dir = files::normalize(
        &path
            .parent()
            .unwrap_or(Path::new("."))
            .join(raw.sql_dir.as_deref().unwrap_or("../sql")),
    );
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    let steps = steps::compile_steps(
        &mut c,
        raw.steps,
        &sql_dir,
        &ctx,
        (&sources, &mut table_names),
        &mut hasher,
    );
    let as_of = date.as_of_rfc3339();
    let mut checks = checks::compile_checks(&mut c, raw.checks, &ctx, &table_names, &as_of, &mut hasher);
    let output = marts::compile_output(&mut c, &raw.output, &ctx);
    let marts = marts::compile_marts(&mut c, raw.marts, &steps, (&output, &ctx));
    marts::link_change_checks(&mut c, &mut checks, &marts);
    let report = raw
        .report
        .and_then(|raw_report| report::compile_report(&mut c, raw_report, path, &ctx, &marts, &mut hasher));

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
        vars: vars.values,
        printable_vars: vars.printable,
        s3,
        engine,
        sources,
        steps,
        checks,
        output_location: output.location,
        lock_timeout: output.lock_timeout,
        marts,
        report,
        hash,
    })
}
