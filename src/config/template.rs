//! Templating of SQL steps and of the pipeline's string settings with minijinja.
//!
//! One environment for both, strict about undefined names, so a misspelt variable is an error at
//! `validate` time instead of an empty string in a query. Every template sees:
//! `ds` (`YYYY-MM-DD`), `ds_nodash`, `as_of` (RFC 3339, UTC: the start of the day after `ds` in the
//! pipeline's time zone), `timezone`, every pipeline var by name, and the function `var(name)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use lifemap_syntax::suggest::did_you_mean;

use super::date::RunDate;

/// The values a template can read.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    globals: BTreeMap<String, Value>,
    vars: Arc<BTreeMap<String, Value>>,
}

impl TemplateContext {
    pub fn new(date: &RunDate, vars: &BTreeMap<String, Value>) -> Self {
        let mut globals: BTreeMap<String, Value> = vars.clone();
        globals.insert("ds".into(), Value::from(date.ds.format("%Y-%m-%d").to_string()));
        globals.insert("ds_nodash".into(), Value::from(date.ds.format("%Y%m%d").to_string()));
        globals.insert("as_of".into(), Value::from(date.as_of_rfc3339()));
        globals.insert("timezone".into(), Value::from(date.timezone.name()));
        Self {
            globals,
            vars: Arc::new(vars.clone()),
        }
    }

    /// The same values for a run on another date (400 days later: another year, month and
    /// weekday), to tell templates that read the date from those that do not.
    pub fn for_other_date(&self) -> Self {
        let mut other = self.clone();
        let timezone = self
            .globals
            .get("timezone")
            .and_then(|name| name.as_str().and_then(|name| name.parse::<chrono_tz::Tz>().ok()))
            .unwrap_or(chrono_tz::UTC);
        let ds = self
            .globals
            .get("ds")
            .and_then(|ds| {
                ds.as_str()
                    .and_then(|ds| chrono::NaiveDate::parse_from_str(ds, "%Y-%m-%d").ok())
            })
            .unwrap_or_default();
        let date = RunDate::new(ds + chrono::Duration::days(400), timezone);
        let fresh = Self::new(&date, &self.vars);
        for name in ["ds", "ds_nodash", "as_of"] {
            if let Some(value) = fresh.globals.get(name) {
                other.globals.insert(name.into(), value.clone());
            }
        }
        other
    }

    /// Names templates may use that are not vars (so vars must not take them).
    pub const RESERVED: [&'static str; 5] = ["ds", "ds_nodash", "as_of", "timezone", "var"];

    /// Render `source`; `name` appears in error messages (a file name or a setting's key).
    pub fn render(&self, name: &str, source: &str) -> Result<String, String> {
        self.render_with(name, source, false)
    }

    /// Render SQL: every text value is written with its `'` doubled, so a value (a `--var` above
    /// all) placed between quotes — `'{{ segment }}'` — stays one string literal whatever it holds.
    /// `sql_string` and `sql_list` quote for themselves.
    pub fn render_sql(&self, name: &str, source: &str) -> Result<String, String> {
        self.render_with(name, source, true)
    }

    fn render_with(&self, name: &str, source: &str, sql: bool) -> Result<String, String> {
        let mut env = Environment::new();
        if sql {
            // Text values are data: written with `'` doubled. An auto-escape mode of its own
            // makes what `{% set %}…{% endset %}` blocks and macros capture safe, as in Jinja:
            // that is SQL the author wrote, and written out as it is.
            env.set_auto_escape_callback(|_| AutoEscape::Custom("sql".into()));
            env.set_formatter(|out, _state, value| {
                let text = match value.as_str() {
                    Some(text) if !value.is_safe() => text.replace('\'', "''"),
                    _ => value.to_string(),
                };
                out.write_str(&text)
                    .map_err(|err| minijinja::Error::new(ErrorKind::WriteFailure, err.to_string()))
            });
        }
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let vars = Arc::clone(&self.vars);
        env.add_function("var", move |key: &str| -> Result<Value, minijinja::Error> {
            vars.get(key).cloned().ok_or_else(|| {
                let hint = did_you_mean(key, vars.keys().map(String::as_str))
                    .map(|close| format!(" (did you mean `{close}`?)"))
                    .unwrap_or_default();
                minijinja::Error::new(ErrorKind::UndefinedError, format!("unknown var `{key}`{hint}"))
            })
        });
        // `{{ fail("...") }}` stops rendering with that message: SQL states its own limits.
        env.add_function("fail", |message: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_filter("sql_string", sql_string);
        env.add_filter("sql_list", sql_list);
        env.add_template(name, source).map_err(|err| describe(&err))?;
        let template = env.get_template(name).map_err(|err| describe(&err))?;
        template.render(&self.globals).map_err(|err| describe(&err))
    }
}

/// `{{ var('segment') | sql_string }}` quotes a value as an SQL string literal.
fn sql_string(value: &Value) -> Value {
    Value::from_safe_string(quoted(value))
}

fn quoted(value: &Value) -> String {
    let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    format!("'{}'", text.replace('\'', "''"))
}

/// `IN ({{ var('stages') | sql_list }})`: a list as comma-separated SQL string literals.
fn sql_list(value: &Value) -> Result<Value, minijinja::Error> {
    let items = value.try_iter()?;
    Ok(Value::from_safe_string(
        items.map(|item| quoted(&item)).collect::<Vec<_>>().join(", "),
    ))
}

/// minijinja's message with the template line it points at.
fn describe(err: &minijinja::Error) -> String {
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line() {
        message = format!("line {line}: {message}");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(value: &str) -> TemplateContext {
        let date = RunDate::new(
            chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
            chrono_tz::Tz::UTC,
        );
        let vars = BTreeMap::from([
            ("v".to_string(), Value::from(value)),
            ("list".to_string(), Value::from(vec![value.to_string(), "b".into()])),
        ]);
        TemplateContext::new(&date, &vars)
    }

    #[test]
    fn sql_rendering_keeps_a_quoted_value_one_literal() {
        let ctx = context("it's'; DROP TABLE t; --");
        let sql = "SELECT '{{ v }}', {{ v | sql_string }}, {{ var('list') | sql_list }}, DATE '{{ ds }}'";
        assert_eq!(
            ctx.render_sql("q", sql).expect("render"),
            "SELECT 'it''s''; DROP TABLE t; --', 'it''s''; DROP TABLE t; --', \
             'it''s''; DROP TABLE t; --', 'b', DATE '2026-10-31'"
        );
        // Settings that are not SQL (locations, subjects) keep the text as it is.
        assert_eq!(ctx.render("loc", "{{ v }}").expect("render"), "it's'; DROP TABLE t; --");
    }

    #[test]
    fn fail_stops_rendering_with_its_message_and_line() {
        let ctx = context("x");
        let sql = "SELECT 1\n{% if 63 > 62 %}{{ fail('lifecycle_weeks can be at most 62') }}{% endif %}";
        let err = ctx.render_sql("q", sql).expect_err("a failing template");
        assert!(err.contains("lifecycle_weeks can be at most 62"), "{err}");
        assert!(err.starts_with("line 2:"), "{err}");
        assert_eq!(
            ctx.render_sql("q", "{% if 1 > 62 %}{{ fail('no') }}{% endif %}ok")
                .expect("render"),
            "ok"
        );
    }
}
