//! Problems found in a pipeline, each with its file, line, column and key, and the compiler's
//! state that collects every one of them before failing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifemap_syntax::interpolate::{self, interpolate};
use lifemap_syntax::units::parse_duration;

use super::model::Secret;
use super::template::TemplateContext;

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

/// Best-effort position of a setting in the file: each needle is searched after the previous one.
pub(super) struct Locator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
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
pub(super) struct Compiler<'a> {
    pub(super) locator: Locator<'a>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<Diagnostic>,
}

impl Compiler<'_> {
    pub(super) fn report(&mut self, needles: &[&str], key: impl Into<String>, message: impl Into<String>) {
        let diagnostic = self.locator.diagnostic(needles, key, message);
        self.problems.push(diagnostic);
    }

    pub(super) fn report_with_hint(&mut self, needles: &[&str], key: String, message: String, hint: Option<String>) {
        let mut diagnostic = self.locator.diagnostic(needles, key, message);
        diagnostic.hint = hint;
        self.problems.push(diagnostic);
    }

    /// Interpolate `${ENV}` in one setting, reporting failures where the placeholder is written.
    pub(super) fn env_value(&mut self, key: &str, value: &str) -> Option<interpolate::Interpolated> {
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
    pub(super) fn templated(
        &mut self,
        key: &str,
        needles: &[&str],
        value: &str,
        ctx: &TemplateContext,
    ) -> Option<String> {
        let interpolated = self.env_value(key, value)?;
        match ctx.render(key, &interpolated.value) {
            Ok(rendered) => Some(rendered),
            Err(message) => {
                self.report(needles, key, message);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let Some(value) = self.env_value(key, value) else {
            return default;
        };
        parse_duration(&value.value).unwrap_or_else(|message| {
            self.report(&[key.rsplit('.').next().unwrap_or(key)], key, message);
            default
        })
    }

    pub(super) fn secret_from_env(&mut self, key: &str, env_name: Option<&str>) -> Option<Secret> {
        let name = env_name?;
        match (self.env)(name) {
            Some(value) => Some(Secret::new(value)),
            None => {
                self.report(&[name], key, format!("environment variable `{name}` is not set"));
                None
            }
        }
    }
}

/// Identifiers DataFusion will not fold or quote: lower-case letters, digits and `_`.
pub(super) fn is_plain_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
