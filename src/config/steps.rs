//! The `steps:` section compiled: SQL read from its file (inside the SQL folder) and templated for
//! the run, DataFusion settings checked, k-means steps typed, names and dependencies checked.

use std::collections::HashSet;
use std::path::Path;

use lifemap_syntax::suggest::did_you_mean;
use sha2::{Digest, Sha256};

use super::diagnostics::{Compiler, is_plain_identifier};
use super::files::read_inside;
use super::model::{Incremental, Source, SqlOrigin, Step};
use super::template::TemplateContext;
use lifemap_syntax::pipeline as raw;

/// Every step, in the file's order; each name joins `table_names` (sources and earlier steps).
pub(super) fn compile_steps(
    c: &mut Compiler<'_>,
    raw_steps: Vec<raw::RawStep>,
    sql_dir: &Path,
    ctx: &TemplateContext,
    (sources, table_names): (&[Source], &mut HashSet<String>),
    hasher: &mut Sha256,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for step in raw_steps {
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
        steps.push(match step.kmeans {
            Some(_) => kmeans_step(c, &key, &needle, step, ctx),
            None => sql_step(c, (&key, &needle), step, (sql_dir, sources), ctx, hasher),
        });
    }
    check_dependencies(c, &steps, table_names);
    steps
}

/// A `kmeans` step: no SQL, no settings, always held.
fn kmeans_step(c: &mut Compiler<'_>, key: &str, needle: &str, step: raw::RawStep, ctx: &TemplateContext) -> Step {
    if step.sql.is_some() || step.query.is_some() {
        c.report(
            &["steps:", needle],
            key,
            "a step is either SQL (`sql`/`query`) or `kmeans`, not both",
        );
    }
    if step.incremental.is_some() {
        c.report(
            &["steps:", needle, "incremental:"],
            format!("{key}.incremental"),
            "only SQL steps are incremental: a `kmeans` step clusters all its input at once",
        );
    }
    if !step.settings.is_empty() {
        c.report(
            &["steps:", needle, "settings:"],
            format!("{key}.settings"),
            "`settings` are DataFusion's, for SQL steps; a `kmeans` step runs no SQL",
        );
    }
    let spec = step
        .kmeans
        .and_then(|kmeans| compile_kmeans(c, key, needle, kmeans, ctx));
    Step {
        name: step.name,
        kmeans: spec,
        sql: String::new(),
        template: String::new(),
        origin: SqlOrigin::Inline,
        depends_on: step.depends_on,
        materialize: Some(true),
        settings: Vec::new(),
        description: step.description,
        incremental: None,
    }
}

/// An SQL step: its file read (or its inline query), templated for the run; both and its
/// settings go into the pipeline's hash.
fn sql_step(
    c: &mut Compiler<'_>,
    (key, needle): (&str, &str),
    step: raw::RawStep,
    (sql_dir, sources): (&Path, &[Source]),
    ctx: &TemplateContext,
    hasher: &mut Sha256,
) -> Step {
    let settings = compile_settings(c, key, needle, &step.settings, step.materialize);
    for (name, value) in &settings {
        hasher.update(format!("{name}={value}\n").as_bytes());
    }
    let (source_text, origin) = match (&step.sql, &step.query) {
        (Some(file), None) => {
            let file_path = sql_dir.join(file);
            match read_inside(sql_dir, file, "SQL file") {
                Ok((_, sql)) => (Some(sql), SqlOrigin::File(file_path)),
                Err(message) => {
                    c.report_with_hint(
                        &["steps:", needle, "sql:"],
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
                &["steps:", needle],
                key,
                "a step needs exactly one of `sql` (a file) or `query` (inline SQL)",
            );
            (None, SqlOrigin::Inline)
        }
    };
    let sql = source_text.as_ref().and_then(|source_text| {
        hasher.update(source_text.as_bytes());
        match ctx.render_sql(&origin.to_string(), source_text) {
            Ok(sql) => Some(sql),
            Err(message) => {
                c.report(&["steps:", needle], key, format!("templating {origin}: {message}"));
                None
            }
        }
    });
    let incremental = match (step.incremental, &source_text, &sql) {
        (Some(raw), Some(source_text), Some(sql)) => {
            let step_sql = StepSql {
                template: source_text,
                rendered: sql,
                origin: &origin,
                settings: &settings,
            };
            compile_incremental(c, (key, needle), raw, &step_sql, sources, ctx)
        }
        _ => None,
    };
    Step {
        name: step.name,
        kmeans: None,
        sql: sql.unwrap_or_default(),
        template: source_text.unwrap_or_default(),
        origin,
        depends_on: step.depends_on,
        materialize: step.materialize,
        settings,
        description: step.description,
        incremental,
    }
}

/// An SQL step's text, before and after templating, for [`compile_incremental`].
struct StepSql<'a> {
    template: &'a str,
    rendered: &'a str,
    origin: &'a SqlOrigin,
    settings: &'a [(String, String)],
}

/// An incremental step: its source is a partitioned source, its SQL does not change with the
/// run's date (a partition's rows are computed once, by whichever run first needs them), and its
/// `partitions` predicate is templated for the run.
fn compile_incremental(
    c: &mut Compiler<'_>,
    (key, needle): (&str, &str),
    raw: raw::RawIncremental,
    sql: &StepSql<'_>,
    sources: &[Source],
    ctx: &TemplateContext,
) -> Option<Incremental> {
    let raw::RawIncrementalKind::ByPartition = raw.kind;
    let key = format!("{key}.incremental");
    let needles = ["steps:", needle, "incremental:"];
    let Some(source) = sources.iter().find(|source| source.name == raw.source) else {
        let hint = did_you_mean(&raw.source, sources.iter().map(|s| s.name.as_str()))
            .map(|close| format!("did you mean `{close}`?"));
        c.report_with_hint(
            &needles,
            format!("{key}.source"),
            format!("`{}` is not a source of this pipeline", raw.source),
            hint,
        );
        return None;
    };
    if source.partitions.is_empty() {
        c.report(
            &needles,
            format!("{key}.source"),
            format!(
                "source `{}` has no `partitions`: a `by_partition` step needs a Hive-partitioned source",
                source.name
            ),
        );
        return None;
    }
    // Rendered for a day far from this run's: SQL that differs reads the run's date.
    let other_day = ctx.for_other_date();
    match other_day.render_sql(&sql.origin.to_string(), sql.template) {
        Ok(other) if other == sql.rendered => {}
        Ok(_) => {
            c.report_with_hint(
                &needles,
                key,
                format!("the SQL of {} changes with the run's date (`ds`, `as_of`)", sql.origin),
                Some(
                    "a partition's rows are computed once and reused by later runs: filter by date in the steps that read this one, and choose partitions with `partitions`"
                        .into(),
                ),
            );
            return None;
        }
        Err(_) => return None,
    }
    // The optional SQL keys are templated for the run; a template error is reported at its key.
    let mut render = |name: &str, text: Option<String>| -> Result<Option<String>, ()> {
        let Some(text) = text else { return Ok(None) };
        ctx.render_sql(&format!("{key}.{name}"), &text)
            .map(Some)
            .map_err(|message| c.report(&needles, format!("{key}.{name}"), message))
    };
    let (Ok(partitions), Ok(forget)) = (render("partitions", raw.partitions), render("forget", raw.forget)) else {
        return None;
    };
    let mut digest = Sha256::new();
    digest.update(format!("lifemap {}\n", env!("CARGO_PKG_VERSION")).as_bytes());
    digest.update(sql.rendered.as_bytes());
    for (name, value) in sql.settings {
        digest.update(format!("\n{name}={value}").as_bytes());
    }
    // The source as it reads rows; `ds_partition` only says where a run's own day is.
    let reading = Source {
        ds_partition: None,
        ..source.clone()
    };
    digest.update(format!("\n{reading:?}").as_bytes());
    let definition = digest.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    Some(Incremental {
        source: source.name.clone(),
        partitions,
        forget,
        definition,
    })
}

/// `depends_on` names sources or steps.
fn check_dependencies(c: &mut Compiler<'_>, steps: &[Step], table_names: &HashSet<String>) {
    for step in steps {
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
