//! Template filters for numbers as executives read them: `number`, `percent`, `currency`,
//! `delta`, `date`, and `heat`/`heat_text` for colour-scaled table cells.
//!
//! A missing value (none) prints as an en dash rather than failing the report: a metric with no
//! previous period is normal, a template error is not.

use chrono::NaiveDate;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};

const MISSING: &str = "–";
/// U+2212, the typographic minus: a hyphen looks thin next to digits.
const MINUS: char = '−';

pub fn register(env: &mut Environment<'_>) {
    env.add_filter("number", number);
    env.add_filter("percent", percent);
    env.add_filter("currency", currency);
    env.add_filter("delta", delta);
    env.add_filter("date", date);
    env.add_filter("heat", heat);
    env.add_filter("heat_text", heat_text);
}

fn as_f64(value: &Value) -> Option<f64> {
    if value.is_none() || value.is_undefined() {
        return None;
    }
    f64::try_from(value.clone())
        .ok()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .filter(|v: &f64| v.is_finite())
}

fn decimals(kwargs: &Kwargs, default: usize) -> Result<usize, Error> {
    Ok(kwargs.get::<Option<usize>>("decimals")?.unwrap_or(default).min(6))
}

/// `1234567.8` → `1,234,568` (grouped thousands, fixed decimals, typographic minus).
pub fn group(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole.to_string(), Some(fraction.to_string())),
        None => (text, None),
    };
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    if let Some(fraction) = fraction {
        grouped.push('.');
        grouped.push_str(&fraction);
    }
    // "-0" after rounding is zero.
    let negative = value < 0.0 && grouped.chars().any(|c| c.is_ascii_digit() && c != '0');
    if negative { format!("{MINUS}{grouped}") } else { grouped }
}

/// `{{ 1234.5|number }}` → `1,235`; `{{ x|number(decimals=1) }}`.
fn number(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let decimals = decimals(&kwargs, 0)?;
    kwargs.assert_all_used()?;
    Ok(as_f64(value).map_or_else(|| MISSING.into(), |v| group(v, decimals)))
}

/// `{{ 0.1812|percent }}` → `18.1%` (the value is a ratio).
fn percent(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let decimals = decimals(&kwargs, 1)?;
    kwargs.assert_all_used()?;
    Ok(as_f64(value).map_or_else(|| MISSING.into(), |v| format!("{}%", group(v * 100.0, decimals))))
}

/// `{{ 28879.1|currency }}` → `$28,879`; `currency(symbol="€", decimals=2)`.
fn currency(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let decimals = decimals(&kwargs, 0)?;
    let symbol: String = kwargs.get::<Option<String>>("symbol")?.unwrap_or_else(|| "$".into());
    kwargs.assert_all_used()?;
    Ok(as_f64(value).map_or_else(
        || MISSING.into(),
        |v| {
            let digits = group(v.abs(), decimals);
            if v < 0.0 && digits.chars().any(|c| c.is_ascii_digit() && c != '0') {
                format!("{MINUS}{symbol}{digits}")
            } else {
                format!("{symbol}{digits}")
            }
        },
    ))
}

/// A change with its sign: `{{ -1190.4|delta }}` → `−1,190`;
/// `delta(kind="percent")` for a ratio (`0.042` → `+4.2%`), `kind="points"` for a difference of
/// ratios (`0.042` → `+4.2 pts`), `kind="currency"` (`+$1,190`).
fn delta(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let kind: String = kwargs.get::<Option<String>>("kind")?.unwrap_or_else(|| "number".into());
    let default_decimals = if kind == "number" || kind == "currency" { 0 } else { 1 };
    let decimals = decimals(&kwargs, default_decimals)?;
    let symbol: String = kwargs.get::<Option<String>>("symbol")?.unwrap_or_else(|| "$".into());
    kwargs.assert_all_used()?;
    let Some(v) = as_f64(value) else {
        return Ok(MISSING.into());
    };
    let (magnitude, suffix, prefix) = match kind.as_str() {
        "number" => (v, "", ""),
        "percent" => (v * 100.0, "%", ""),
        "points" => (v * 100.0, " pts", ""),
        "currency" => (v, "", symbol.as_str()),
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("delta: kind `{other}` is not number, percent, points or currency"),
            ));
        }
    };
    let digits = group(magnitude.abs(), decimals);
    let is_zero = !digits.chars().any(|c| c.is_ascii_digit() && c != '0');
    let sign = if is_zero {
        "±".to_string()
    } else if magnitude < 0.0 {
        MINUS.to_string()
    } else {
        "+".to_string()
    };
    Ok(format!("{sign}{prefix}{digits}{suffix}"))
}

/// `{{ "2026-10-01"|date("%B %Y") }}` → `October 2026` (chrono's strftime syntax).
fn date(value: &Value, format: Option<&str>) -> Result<String, Error> {
    let Some(text) = value.as_str() else {
        return Ok(MISSING.into());
    };
    let day = NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d")
        .map_err(|err| Error::new(ErrorKind::InvalidOperation, format!("date: `{text}`: {err}")))?;
    let format = format.unwrap_or("%Y-%m-%d");
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", day.format(format))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("date: bad format `{format}`")))?;
    Ok(out)
}

fn heat_share(value: &Value, kwargs: &Kwargs) -> Result<Option<f64>, Error> {
    let min: f64 = kwargs.get::<Option<f64>>("min")?.unwrap_or(0.0);
    let max: f64 = kwargs.get::<Option<f64>>("max")?.unwrap_or(1.0);
    Ok(as_f64(value).map(|v| {
        if max > min {
            ((v - min) / (max - min)).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }))
}

/// A background colour for a table cell, from near-white (`min`) to deep teal (`max`):
/// `style="background-color: {{ rate|heat(max=0.5) }}"`. A heatmap that needs no image.
fn heat(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let share = heat_share(value, &kwargs)?;
    kwargs.assert_all_used()?;
    let Some(share) = share else {
        return Ok("#ffffff".into());
    };
    let (low, high) = ([0xf0, 0xf9, 0xf8], [0x0f, 0x76, 0x6e]);
    let channel = |i: usize| (low[i] as f64 + (high[i] as f64 - low[i] as f64) * share).round() as u8;
    Ok(format!("#{:02x}{:02x}{:02x}", channel(0), channel(1), channel(2)))
}

/// The text colour readable on `heat`'s background: white on the darker half.
fn heat_text(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let share = heat_share(value, &kwargs)?;
    kwargs.assert_all_used()?;
    Ok(if share.unwrap_or(0.0) > 0.55 {
        "#ffffff"
    } else {
        "#1f2937"
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str) -> String {
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(source, ()).expect("renders")
    }

    #[test]
    fn numbers_are_grouped_signed_and_rounded() {
        assert_eq!(group(1_234_567.8, 0), "1,234,568");
        assert_eq!(group(-1190.43, 0), "−1,190");
        assert_eq!(group(-0.04, 1), "0.0");
        assert_eq!(group(999.95, 1), "1,000.0");
        assert_eq!(render("{{ 0.18149|percent }}"), "18.1%");
        assert_eq!(render("{{ 28879.1|currency }}"), "$28,879");
        assert_eq!(render("{{ -5.5|currency(symbol='€', decimals=2) }}"), "−€5.50");
        assert_eq!(render("{{ -0.0421|delta(kind='points') }}"), "−4.2 pts");
        assert_eq!(render("{{ 0.04|delta(kind='percent') }}"), "+4.0%");
        assert_eq!(render("{{ 0|delta }}"), "±0");
        assert_eq!(render("{{ none|number }}"), "–");
        assert_eq!(render("{{ '2026-10-01'|date('%B %Y') }}"), "October 2026");
    }

    #[test]
    fn heat_runs_from_light_to_dark_with_readable_text() {
        assert_eq!(render("{{ 0|heat }}"), "#f0f9f8");
        assert_eq!(render("{{ 1|heat }}"), "#0f766e");
        assert_eq!(render("{{ 5|heat(min=0, max=10) }}"), "#80b8b3");
        assert_eq!(render("{{ 0.9|heat_text }}"), "#ffffff");
        assert_eq!(render("{{ 0.1|heat_text }}"), "#1f2937");
    }
}
