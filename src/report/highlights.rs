//! "What changed": the biggest movements of a run written as sentences, computed from the marts
//! (never from free text), so the same marts always give the same sentences in the same order.
//!
//! Candidates come from `kpi_summary` (change against the previous period), `lifecycle_funnel`
//! (conversion of the report's funnel month against the month before), `trend_summary`
//! (significant emerging or declining series) and `nps_monthly` (last month against the one
//! before). Each gets a score that puts different units on one scale — 5% of a KPI, 2 points of
//! conversion, 1% a week of trend slope and 5 NPS points all score 1 — and movements scoring under
//! 0.2 are not news. Ties are broken by the sentence text.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;

use super::format::group;

#[derive(Debug, Clone, PartialEq)]
pub struct Highlight {
    pub text: String,
    pub score: f64,
}

type Tables = BTreeMap<String, Vec<Value>>;

fn num(row: &Value, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64).filter(|v| v.is_finite())
}

fn text<'a>(row: &'a Value, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

fn month_name(date: &str) -> String {
    NaiveDate::parse_from_str(date.get(..10).unwrap_or(date), "%Y-%m-%d")
        .map(|d| d.format("%B %Y").to_string())
        .unwrap_or_else(|_| date.to_string())
}

fn verb(change: f64) -> &'static str {
    if change > 0.0 { "rose" } else { "fell" }
}

/// How a bundled KPI reads: its label and how its value prints.
fn kpi_label(metric: &str) -> (&str, fn(f64) -> String) {
    match metric {
        "revenue" => ("Revenue", |v| format!("${}", group(v, 0))),
        "orders" => ("Orders", |v| group(v, 0)),
        "active_customers" => ("Active customers", |v| group(v, 0)),
        "new_customers" => ("New customers", |v| group(v, 0)),
        "repeat_purchase_rate" => ("Repeat purchase rate", |v| format!("{}%", group(v * 100.0, 1))),
        "nps" => ("NPS", |v| group(v, 1)),
        "median_days_to_purchase" => ("Median days to first purchase", |v| group(v, 1)),
        other => (other, |v| group(v, 1)),
    }
}

/// "over the last 30 days", from the pipeline's KPI period (`kpi_days`) when it has one.
fn kpi_period(kpi_days: Option<u64>) -> String {
    match kpi_days {
        Some(1) => "over the last day".to_string(),
        Some(days) => format!("over the last {days} days"),
        None => "against the previous period".to_string(),
    }
}

fn kpis(tables: &Tables, kpi_days: Option<u64>, out: &mut Vec<Highlight>) {
    let period = kpi_period(kpi_days);
    for row in tables.get("kpi_summary").into_iter().flatten() {
        let (Some(metric), Some(value), Some(previous)) =
            (text(row, "metric"), num(row, "value"), num(row, "previous_value"))
        else {
            continue;
        };
        if previous == 0.0 || value == previous {
            continue;
        }
        let (label, show) = kpi_label(metric);
        // Rates and scores move in points; counts and money in percent.
        let sentence = if metric == "repeat_purchase_rate" || metric == "nps" {
            let points = if metric == "nps" {
                value - previous
            } else {
                (value - previous) * 100.0
            };
            format!(
                "{label} {} {} points to {} {period}.",
                verb(points),
                group(points.abs(), 1),
                show(value)
            )
        } else {
            let relative = (value - previous) / previous.abs();
            format!(
                "{label} {} {}% to {} {period}.",
                verb(relative),
                group(relative.abs() * 100.0, 1),
                show(value)
            )
        };
        let score = if metric == "repeat_purchase_rate" {
            ((value - previous) * 100.0).abs() / 2.0
        } else if metric == "nps" {
            (value - previous).abs() / 5.0
        } else {
            ((value - previous) / previous.abs()).abs() / 0.05
        };
        out.push(Highlight { text: sentence, score });
    }
}

fn funnel(tables: &Tables, funnel_month: Option<&str>, out: &mut Vec<Highlight>) {
    let Some(month) = funnel_month else { return };
    let rows: Vec<&Value> = tables
        .get("lifecycle_funnel")
        .into_iter()
        .flatten()
        .filter(|r| text(r, "breakdown") == Some("all"))
        .collect();
    let Ok(this) = NaiveDate::parse_from_str(month, "%Y-%m-%d") else {
        return;
    };
    let Some(before) = this.checked_sub_months(chrono::Months::new(1)) else {
        return;
    };
    let before = before.format("%Y-%m-%d").to_string();
    let conversion = |entry: &str, step: i64| {
        rows.iter()
            .find(|r| text(r, "entry_month") == Some(entry) && r.get("step").and_then(Value::as_i64) == Some(step))
            .and_then(|r| Some((text(r, "step_name")?.to_string(), num(r, "conversion_from_previous")?)))
    };
    for step in [2, 3] {
        let (Some((name, now)), Some((_, then))) = (conversion(month, step), conversion(&before, step)) else {
            continue;
        };
        let Some((previous_name, _)) = conversion(month, step - 1) else {
            continue;
        };
        let points = (now - then) * 100.0;
        if points == 0.0 {
            continue;
        }
        out.push(Highlight {
            text: format!(
                "{} → {} conversion {} {} points to {}% for {} entrants.",
                capitalise(&previous_name),
                name,
                verb(points),
                group(points.abs(), 1),
                group(now * 100.0, 1),
                month_name(month)
            ),
            score: points.abs() / 2.0,
        });
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One sentence per trending series value (a channel's events and persons usually move together):
/// its metric with the steepest significant slope.
fn trends(tables: &Tables, out: &mut Vec<Highlight>) {
    let mut steepest: BTreeMap<(String, String), Highlight> = BTreeMap::new();
    for row in tables.get("trend_summary").into_iter().flatten() {
        let (Some(trend), Some(dimension), Some(value), Some(metric), Some(relative), Some(p)) = (
            text(row, "trend"),
            text(row, "dimension"),
            text(row, "dimension_value"),
            text(row, "metric"),
            num(row, "relative_slope"),
            num(row, "mk_p"),
        ) else {
            continue;
        };
        if trend != "emerging" && trend != "declining" {
            continue;
        }
        let weeks = num(row, "weeks").unwrap_or(0.0);
        let p_text = if p < 0.001 {
            "p < 0.001".to_string()
        } else {
            format!("p = {p:.3}")
        };
        let candidate = Highlight {
            text: format!(
                "{} “{value}” is {trend}: {metric} {}{}% a week over {} weeks ({p_text}).",
                capitalise(dimension),
                if relative >= 0.0 { "+" } else { "−" },
                group(relative.abs() * 100.0, 1),
                group(weeks, 0),
            ),
            score: relative.abs() / 0.01,
        };
        let key = (dimension.to_string(), value.to_string());
        let keep = steepest.get(&key).is_none_or(|best| {
            candidate.score > best.score || (candidate.score == best.score && candidate.text < best.text)
        });
        if keep {
            steepest.insert(key, candidate);
        }
    }
    out.extend(steepest.into_values());
}

fn nps(tables: &Tables, out: &mut Vec<Highlight>) {
    let mut rows: Vec<&Value> = tables.get("nps_monthly").into_iter().flatten().collect();
    rows.sort_by(|a, b| text(a, "month").cmp(&text(b, "month")));
    let [.., before, last] = rows.as_slice() else { return };
    let (Some(now), Some(then), Some(month)) = (num(last, "nps"), num(before, "nps"), text(last, "month")) else {
        return;
    };
    let points = now - then;
    if points == 0.0 {
        return;
    }
    out.push(Highlight {
        text: format!(
            "NPS {} {} points to {} in {}.",
            verb(points),
            group(points.abs(), 1),
            group(now, 1),
            month_name(month)
        ),
        score: points.abs() / 5.0,
    });
}

/// The `limit` biggest movements, biggest first. `kpi_days` is the length of `kpi_summary`'s period.
pub fn what_changed(
    tables: &Tables,
    funnel_month: Option<&str>,
    kpi_days: Option<u64>,
    limit: usize,
) -> Vec<Highlight> {
    let mut all = Vec::new();
    kpis(tables, kpi_days, &mut all);
    funnel(tables, funnel_month, &mut all);
    trends(tables, &mut all);
    nps(tables, &mut all);
    all.retain(|h| h.score >= 0.2);
    all.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.text.cmp(&b.text)));
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tables() -> Tables {
        let mut t = Tables::new();
        t.insert(
            "kpi_summary".into(),
            vec![
                json!({"metric": "revenue", "value": 28879.1, "previous_value": 30069.53, "change": -1190.43}),
                json!({"metric": "orders", "value": 420.0, "previous_value": 421.0, "change": -1.0}),
                json!({"metric": "repeat_purchase_rate", "value": 0.25, "previous_value": 0.21, "change": 0.04}),
            ],
        );
        let funnel_row = |month: &str, step: i64, name: &str, conv: f64| {
            json!({"entry_month": month, "breakdown": "all", "breakdown_value": "all", "step": step,
                   "step_name": name, "conversion_from_previous": conv})
        };
        t.insert(
            "lifecycle_funnel".into(),
            vec![
                funnel_row("2026-08-01", 1, "awareness", 1.0),
                funnel_row("2026-08-01", 2, "consideration", 0.5),
                funnel_row("2026-08-01", 3, "purchase", 0.223),
                funnel_row("2026-09-01", 1, "awareness", 1.0),
                funnel_row("2026-09-01", 2, "consideration", 0.5),
                funnel_row("2026-09-01", 3, "purchase", 0.181),
            ],
        );
        t.insert(
            "trend_summary".into(),
            vec![
                json!({"dimension": "category", "dimension_value": "eco_friendly", "metric": "orders",
                       "weeks": 26, "relative_slope": 0.034, "mk_p": 0.00001, "trend": "emerging"}),
                json!({"dimension": "channel", "dimension_value": "email", "metric": "events",
                       "weeks": 26, "relative_slope": -0.5, "mk_p": 0.3, "trend": "stable"}),
                // The same category's customers rise less steeply: one sentence for the category.
                json!({"dimension": "category", "dimension_value": "eco_friendly", "metric": "customers",
                       "weeks": 26, "relative_slope": 0.02, "mk_p": 0.0001, "trend": "emerging"}),
            ],
        );
        t.insert(
            "nps_monthly".into(),
            vec![
                json!({"month": "2026-10-01", "nps": 30.5}),
                json!({"month": "2026-09-01", "nps": 32.0}),
            ],
        );
        t
    }

    #[test]
    fn movements_are_written_out_and_ranked_by_size() {
        let texts: Vec<String> = what_changed(&tables(), Some("2026-09-01"), Some(30), 10)
            .into_iter()
            .map(|h| h.text)
            .collect();
        // Scores: trend 3.4, conversion 4.2 pts / 2 = 2.1, repeat rate 4 pts / 2 = 2.0,
        // revenue 3.96% / 5% = 0.79, NPS 1.5 / 5 = 0.3; orders 0.24% / 5% = 0.05 is not news, and
        // consideration conversion did not move.
        assert_eq!(
            texts,
            vec![
                "Category “eco_friendly” is emerging: orders +3.4% a week over 26 weeks (p < 0.001).",
                "Consideration → purchase conversion fell 4.2 points to 18.1% for September 2026 entrants.",
                "Repeat purchase rate rose 4.0 points to 25.0% over the last 30 days.",
                "Revenue fell 4.0% to $28,879 over the last 30 days.",
                "NPS fell 1.5 points to 30.5 in October 2026.",
            ]
        );
        assert_eq!(what_changed(&tables(), Some("2026-09-01"), Some(30), 2).len(), 2);
    }

    /// The period in the sentences is the pipeline's, not a fixed 30 days.
    #[test]
    fn kpi_sentences_name_the_configured_period() {
        let texts: Vec<String> = what_changed(&tables(), None, Some(7), 10)
            .into_iter()
            .map(|h| h.text)
            .collect();
        assert!(
            texts.contains(&"Revenue fell 4.0% to $28,879 over the last 7 days.".to_string()),
            "{texts:?}"
        );
        assert!(texts.iter().all(|t| !t.contains("30 days")), "{texts:?}");
        let unknown = what_changed(&tables(), None, None, 10);
        assert!(
            unknown
                .iter()
                .any(|h| h.text == "Revenue fell 4.0% to $28,879 against the previous period."),
            "{unknown:?}"
        );
    }

    #[test]
    fn missing_marts_give_no_sentences() {
        assert!(what_changed(&Tables::new(), None, Some(30), 5).is_empty());
    }
}
