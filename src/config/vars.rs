//! The run's time zone and vars: defaults from the file with `${ENV}` filled in, then `--var`
//! overrides, each typed like its default so a value is data, never SQL.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use indexmap::IndexMap;
use lifemap_syntax::suggest::did_you_mean;

use super::diagnostics::{Compiler, Diagnostic};
use super::template::TemplateContext;

/// The vars templates see, and those that may be printed (none that came from the environment).
#[derive(Debug, Default)]
pub(super) struct Vars {
    pub values: BTreeMap<String, minijinja::Value>,
    pub printable: BTreeMap<String, String>,
}

/// The reporting time zone (UTC unless the file names one).
pub(super) fn compile_timezone(c: &mut Compiler<'_>, raw: Option<&str>) -> Tz {
    let timezone_name = raw
        .and_then(|name| c.env_value("timezone", name))
        .map(|done| done.value);
    match timezone_name.as_deref() {
        None | Some("") => Tz::UTC,
        Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
            c.report(
                &["timezone:"],
                "timezone",
                format!("`{name}` is not an IANA time zone (e.g. `Europe/Berlin`)"),
            );
            Tz::UTC
        }),
    }
}

/// The file's vars, `${ENV}` filled in and typed.
pub(super) fn compile_vars(c: &mut Compiler<'_>, raw_vars: &IndexMap<String, serde_yaml::Value>) -> Vars {
    let mut vars = Vars::default();
    for (name, value) in raw_vars {
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
                vars.printable.insert(name.clone(), texts.join(","));
            }
            vars.values.insert(name.clone(), minijinja::Value::from(texts));
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
            vars.printable.insert(name.clone(), resolved.value.clone());
        }
        match typed_var(value, &resolved.value) {
            Ok(typed) => {
                vars.values.insert(name.clone(), typed);
            }
            Err(message) => c.report(&["vars:", &format!("{name}:")], key, message),
        }
    }
    vars
}

/// `--var key=value` on top of the file's vars: only declared ones, typed like their defaults.
pub(super) fn apply_overrides(
    c: &mut Compiler<'_>,
    raw_vars: &IndexMap<String, serde_yaml::Value>,
    overrides: &[(String, String)],
    vars: &mut Vars,
) {
    for (name, value) in overrides {
        if !vars.values.contains_key(name) && !raw_vars.contains_key(name) {
            let hint =
                did_you_mean(name, raw_vars.keys().map(String::as_str)).map(|close| format!("did you mean `{close}`?"));
            c.problems.push(Diagnostic {
                file: c.locator.path.to_path_buf(),
                line: None,
                column: None,
                key: Some(format!("--var {name}")),
                message: format!("the pipeline declares no var `{name}`"),
                hint,
            });
            continue;
        }
        let declared = raw_vars.get(name).unwrap_or(&serde_yaml::Value::Null);
        match typed_var(declared, value) {
            Ok(typed) => {
                vars.printable.insert(name.clone(), value.clone());
                vars.values.insert(name.clone(), typed);
            }
            Err(message) => c.problems.push(Diagnostic {
                file: c.locator.path.to_path_buf(),
                line: None,
                column: None,
                key: Some(format!("--var {name}")),
                message,
                hint: None,
            }),
        }
    }
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
