//! Templating of SQL steps and of the pipeline's string settings with minijinja.
//!
//! One environment for both, strict about undefined names, so a misspelt variable is an error at
//! `validate` time instead of an empty string in a query. Every template sees:
//! `ds` (`YYYY-MM-DD`), `ds_nodash`, `as_of` (RFC 3339, UTC: the start of the day after `ds` in the
//! pipeline's time zone), `timezone`, every pipeline var by name, and the function `var(name)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::config::RunDate;

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

    /// Names templates may use that are not vars (so vars must not take them).
    pub const RESERVED: [&'static str; 5] = ["ds", "ds_nodash", "as_of", "timezone", "var"];

    /// Render `source`; `name` appears in error messages (a file name or a setting's key).
    pub fn render(&self, name: &str, source: &str) -> Result<String, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let vars = Arc::clone(&self.vars);
        env.add_function("var", move |key: &str| -> Result<Value, minijinja::Error> {
            vars.get(key).cloned().ok_or_else(|| {
                let hint = crate::config::did_you_mean(key, vars.keys().map(String::as_str))
                    .map(|close| format!(" (did you mean `{close}`?)"))
                    .unwrap_or_default();
                minijinja::Error::new(ErrorKind::UndefinedError, format!("unknown var `{key}`{hint}"))
            })
        });
        env.add_filter("sql_string", sql_string);
        env.add_filter("sql_list", sql_list);
        env.add_template(name, source).map_err(|err| describe(&err))?;
        let template = env.get_template(name).map_err(|err| describe(&err))?;
        template.render(&self.globals).map_err(|err| describe(&err))
    }
}

/// `{{ var('segment') | sql_string }}` quotes a value as an SQL string literal.
fn sql_string(value: &Value) -> String {
    let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    format!("'{}'", text.replace('\'', "''"))
}

/// `IN ({{ var('stages') | sql_list }})`: a list as comma-separated SQL string literals.
fn sql_list(value: &Value) -> Result<String, minijinja::Error> {
    let items = value.try_iter()?;
    Ok(items.map(|item| sql_string(&item)).collect::<Vec<_>>().join(", "))
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
