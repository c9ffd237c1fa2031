//! Declared data-quality checks, compiled to the one form lifemap runs: SQL whose rows are failures.
//!
//! Compiling to SQL keeps one execution path (scheduling, examples, severities) for every kind,
//! and lets `lifemap plan` show exactly what a check asks of the data.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use lifemap_syntax::suggest::did_you_mean;
use lifemap_syntax::units::parse_duration;

use super::diagnostics::Compiler;
use super::model::Check;
use super::template::TemplateContext;
use lifemap_syntax::pipeline::{RawAcceptedValues, RawCheck, RawFreshness, RawNumber, RawQuarantineShare, RawRowCount};

/// Every check, each compiled to SQL whose rows are failures; names are unique.
pub(super) fn compile_checks(
    c: &mut Compiler<'_>,
    raw_checks: Vec<RawCheck>,
    ctx: &TemplateContext,
    table_names: &HashSet<String>,
    as_of: &str,
    hasher: &mut Sha256,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(raw_checks.len());
    let mut check_names = HashSet::new();
    for check in raw_checks {
        if !check_names.insert(check.name.clone()) {
            c.report(
                &["checks:", &format!("name: {}", check.name)],
                format!("checks.{}", check.name),
                format!("two checks are named `{}`", check.name),
            );
        }
        if let Some(compiled) = compile_check(c, check, ctx, table_names, as_of, hasher) {
            checks.push(compiled);
        }
    }
    checks
}

/// The placeholder a `row_count` check with `max_change_percent` carries until the run knows the
/// rows of the mart's previous partition (it stays NULL, and the comparison passes, when there is none).
pub const PREVIOUS_ROWS_PLACEHOLDER: &str = "CAST(NULL AS BIGINT) AS previous_rows";

/// `name` as a SQL identifier, whatever it holds.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn text_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn value_literal(value: &serde_yaml::Value) -> Result<String, String> {
    match value {
        serde_yaml::Value::String(text) => Ok(text_literal(text)),
        serde_yaml::Value::Number(number) => Ok(number.to_string()),
        serde_yaml::Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "accepted values are text, numbers or booleans; got {}",
            serde_yaml::to_string(other).unwrap_or_default().trim()
        )),
    }
}

/// The kinds a check declares; exactly one is allowed.
fn kinds(check: &RawCheck) -> Vec<&'static str> {
    [
        ("expression", check.expression.is_some()),
        ("not_null", check.not_null.is_some()),
        ("unique", check.unique.is_some()),
        ("accepted_values", check.accepted_values.is_some()),
        ("relationships", check.relationships.is_some()),
        ("row_count", check.row_count.is_some()),
        ("freshness", check.freshness.is_some()),
        ("quarantine_share", check.quarantine_share.is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, present)| present.then_some(kind))
    .collect()
}

fn columns_list(columns: &[String]) -> Result<String, String> {
    if columns.is_empty() {
        return Err("name at least one column".into());
    }
    Ok(columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "))
}

/// A threshold: a number, or a template rendering to one.
fn number(value: &RawNumber, what: &str, render: &Render) -> Result<f64, String> {
    let parsed = match value {
        RawNumber::Number(number) => *number,
        RawNumber::Template(template) => {
            let text = render(template)?;
            text.trim()
                .parse::<f64>()
                .map_err(|_| format!("`{what}` must be a number; `{template}` gives `{text}`"))?
        }
    };
    if parsed.is_finite() {
        Ok(parsed)
    } else {
        Err(format!("`{what}` must be a finite number"))
    }
}

fn count(value: &Option<RawNumber>, what: &str, render: &Render) -> Result<Option<u64>, String> {
    value
        .as_ref()
        .map(|value| {
            let number = number(value, what, render)?;
            if number < 0.0 || number.fract() != 0.0 {
                return Err(format!("`{what}` must be a whole number ≥ 0; got {number}"));
            }
            Ok(number as u64)
        })
        .transpose()
}

/// Renders a template setting with the pipeline's vars.
type Render<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

fn row_count_sql(table: &str, bounds: &RawRowCount, render: &Render) -> Result<String, String> {
    let mut failures = Vec::new();
    let (min, max) = (count(&bounds.min, "min", render)?, count(&bounds.max, "max", render)?);
    if let Some(min) = min {
        failures.push(format!("row_count < {min}"));
    }
    if let Some(max) = max {
        failures.push(format!("row_count > {max}"));
    }
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(format!("min ({min}) is above max ({max})"));
    }
    if let Some(percent) = &bounds.max_change_percent {
        let percent = number(percent, "max_change_percent", render)?;
        if percent < 0.0 {
            return Err(format!("max_change_percent must be a percentage ≥ 0; got {percent}"));
        }
        failures.push(format!(
            "(previous_rows IS NOT NULL AND ABS(row_count - previous_rows) * 100.0 > {percent:?} * previous_rows)"
        ));
    }
    if failures.is_empty() {
        return Err("give `min`, `max` or `max_change_percent`".into());
    }
    Ok(format!(
        "WITH counted AS (SELECT COUNT(*) AS row_count FROM {table}),\n     \
         previous AS (SELECT {PREVIOUS_ROWS_PLACEHOLDER})\n\
         SELECT row_count, previous_rows FROM counted CROSS JOIN previous\n\
         WHERE {}",
        failures.join(" OR ")
    ))
}

/// `<column> <test>` for every column, joined by `joiner`: `"a" IS NULL OR "b" IS NULL`.
fn each_column(columns: &[String], test: &str, joiner: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{} {test}", ident(c)))
        .collect::<Vec<_>>()
        .join(joiner)
}

/// The failure SQL of a declared (non-`expression`) check, and the tables it reads.
fn declared_sql(check: &RawCheck, as_of: &str, render: &Render) -> Result<(String, Vec<String>), String> {
    let table_name = || {
        check
            .table
            .clone()
            .ok_or_else(|| "this kind of check needs `table:` (the source or step it checks)".to_string())
    };
    if let Some(columns) = &check.not_null {
        let table = table_name()?;
        columns_list(columns)?;
        let condition = each_column(columns, "IS NULL", " OR ");
        return Ok((
            format!("SELECT * FROM {} WHERE {condition}", ident(&table)),
            vec![table],
        ));
    }
    if let Some(columns) = &check.unique {
        let table = table_name()?;
        let list = columns_list(columns)?;
        // As in SQL's UNIQUE constraint, a key with a NULL part repeats nothing.
        let present = each_column(columns, "IS NOT NULL", " AND ");
        return Ok((
            format!(
                "SELECT {list}, COUNT(*) AS copies FROM {} WHERE {present} GROUP BY {list} HAVING COUNT(*) > 1",
                ident(&table)
            ),
            vec![table],
        ));
    }
    if let Some(accepted) = &check.accepted_values {
        let table = table_name()?;
        return Ok((accepted_values_sql(&table, accepted)?, vec![table]));
    }
    if let Some(relation) = &check.relationships {
        let table = table_name()?;
        return Ok((
            format!(
                "SELECT child.* FROM {} child WHERE child.{column} IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {} parent WHERE parent.{field} = child.{column})",
                ident(&table),
                ident(&relation.to),
                column = ident(&relation.column),
                field = ident(&relation.field),
            ),
            vec![table, relation.to.clone()],
        ));
    }
    if let Some(bounds) = &check.row_count {
        let table = table_name()?;
        return Ok((row_count_sql(&ident(&table), bounds, render)?, vec![table]));
    }
    if let Some(freshness) = &check.freshness {
        let table = table_name()?;
        return Ok((freshness_sql(&table, freshness, as_of, render)?, vec![table]));
    }
    if let Some(share) = &check.quarantine_share {
        if check.table.is_some() {
            return Err("quarantine_share names its tables itself (`quarantine`, `rows_from`); remove `table`".into());
        }
        return quarantine_share_sql(share, render);
    }
    Err("no kind given".into())
}

/// Rows whose value is not one of the accepted ones (NULL is not checked).
fn accepted_values_sql(table: &str, accepted: &RawAcceptedValues) -> Result<String, String> {
    if accepted.values.is_empty() {
        return Err("`values` is empty: list the accepted values".into());
    }
    let values = accepted
        .values
        .iter()
        .map(value_literal)
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    let column = ident(&accepted.column);
    Ok(format!(
        "SELECT * FROM {} WHERE {column} IS NOT NULL AND {column} NOT IN ({values})",
        ident(table)
    ))
}

/// One row when the newest value of the column is older than `max_age` at `as_of` (or absent).
fn freshness_sql(table: &str, freshness: &RawFreshness, as_of: &str, render: &Render) -> Result<String, String> {
    let max_age = parse_duration(&render(&freshness.max_age)?)?;
    let column = ident(&freshness.column);
    let as_of = text_literal(as_of);
    Ok(format!(
        "SELECT latest, CAST({as_of} AS TIMESTAMP) AS as_of FROM \
         (SELECT MAX(CAST({column} AS TIMESTAMP)) AS latest FROM {}) newest\n\
         WHERE latest IS NULL OR latest < CAST({as_of} AS TIMESTAMP) - INTERVAL '{} seconds'",
        ident(table),
        max_age.as_secs()
    ))
}

/// One row when more than `max` of a source's rows were quarantined; the tables it reads.
fn quarantine_share_sql(share: &RawQuarantineShare, render: &Render) -> Result<(String, Vec<String>), String> {
    let max = number(&share.max, "max", render)?;
    if !(0.0..=1.0).contains(&max) {
        return Err(format!("max is a fraction between 0 and 1 (0.01 is 1 %); got {max}"));
    }
    let quarantine = share.quarantine.clone().unwrap_or_else(|| "quarantine".into());
    let rows_from = share
        .rows_from
        .clone()
        .unwrap_or_else(|| format!("stg_{}", share.source));
    Ok((
        format!(
            "WITH quarantined AS (SELECT COUNT(*) AS quarantined FROM {} WHERE source = {}),\n     \
             counted AS (SELECT COUNT(*) AS rows_read FROM {})\n\
             SELECT quarantined, rows_read, CAST(quarantined AS DOUBLE) / NULLIF(rows_read, 0) AS share, {max:?} AS max_share\n\
             FROM quarantined CROSS JOIN counted\n\
             WHERE CAST(quarantined AS DOUBLE) > {max:?} * rows_read",
            ident(&quarantine),
            text_literal(&share.source),
            ident(&rows_from),
            max = max,
        ),
        vec![quarantine, rows_from],
    ))
}

/// Compile one check, reporting every problem with its place in the file.
pub(super) fn compile_check(
    c: &mut Compiler,
    check: RawCheck,
    ctx: &TemplateContext,
    table_names: &HashSet<String>,
    as_of: &str,
    hasher: &mut Sha256,
) -> Option<Check> {
    let key = format!("checks.{}", check.name);
    let needle = format!("name: {}", check.name);
    let declared = kinds(&check);
    if declared.len() != 1 {
        let found = if declared.is_empty() {
            "none".to_string()
        } else {
            declared.join(", ")
        };
        c.report(
            &["checks:", &needle],
            key,
            format!(
                "a check declares exactly one of expression, not_null, unique, accepted_values, \
                 relationships, row_count, freshness, quarantine_share; found {found}"
            ),
        );
        return None;
    }
    let kind = declared[0];
    let compiled = match &check.expression {
        Some(expression) => {
            if check.table.is_some() {
                Err("an `expression` check names its tables in its SQL; remove `table`".to_string())
            } else {
                hasher.update(expression.as_bytes());
                ctx.render_sql(&key, expression)
                    .map(|sql| (sql, Vec::new()))
                    .map_err(|message| format!("templating the expression: {message}"))
            }
        }
        None => declared_sql(&check, as_of, &|template| ctx.render(&key, template)),
    };
    let (sql, tables) = match compiled {
        Ok(done) => done,
        Err(message) => {
            c.report(
                &["checks:", &needle, &format!("{kind}:")],
                format!("{key}.{kind}"),
                message,
            );
            return None;
        }
    };
    if !tables_known(c, &check.name, &tables, table_names) {
        return None;
    }
    // Hash the declaration too, so that changing a check changes the pipeline hash.
    hasher.update(sql.as_bytes());
    let previous_rows_of = check
        .row_count
        .as_ref()
        .filter(|bounds| bounds.max_change_percent.is_some())
        .and(check.table.clone());
    Some(Check {
        name: check.name,
        description: check.description,
        kind,
        sql,
        severity: check.severity,
        examples: check.examples.unwrap_or(5),
        previous_rows_of,
        tables,
    })
}

/// Whether every table a declared check reads is a source or a step; reports each that is not.
fn tables_known(c: &mut Compiler, check: &str, tables: &[String], table_names: &HashSet<String>) -> bool {
    let needle = format!("name: {check}");
    let mut known = true;
    for table in tables {
        if !table_names.contains(table) {
            known = false;
            let hint = did_you_mean(table, table_names.iter().map(String::as_str))
                .map(|close| format!("did you mean `{close}`?"));
            c.report_with_hint(
                &["checks:", &needle, table.as_str()],
                format!("checks.{check}"),
                format!("check `{check}` reads `{table}`, which is neither a source nor a step"),
                hint,
            );
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawCheck;

    fn no_templates(text: &str) -> Result<String, String> {
        Ok(text.to_string())
    }

    fn raw(yaml: &str) -> RawCheck {
        serde_yaml::from_str(yaml).expect("test check parses")
    }

    #[test]
    fn identifiers_and_values_are_quoted() {
        let check = raw("name: c\ntable: t\naccepted_values: {column: 'we\"ird', values: [\"it's\", 3, true]}");
        let (sql, tables) = declared_sql(&check, "2026-11-01T00:00:00Z", &no_templates).unwrap();
        assert_eq!(
            sql,
            "SELECT * FROM \"t\" WHERE \"we\"\"ird\" IS NOT NULL AND \"we\"\"ird\" NOT IN ('it''s', 3, true)"
        );
        assert_eq!(tables, ["t"]);
    }

    #[test]
    fn a_kind_other_than_expression_needs_a_table() {
        let check = raw("name: c\nnot_null: [a]");
        assert!(
            declared_sql(&check, "x", &no_templates)
                .unwrap_err()
                .contains("needs `table:`")
        );
    }

    #[test]
    fn row_count_needs_a_bound_and_ordered_bounds() {
        assert!(declared_sql(&raw("name: c\ntable: t\nrow_count: {}"), "x", &no_templates).is_err());
        assert!(
            declared_sql(
                &raw("name: c\ntable: t\nrow_count: {min: 5, max: 1}"),
                "x",
                &no_templates
            )
            .unwrap_err()
            .contains("above max")
        );
    }
}
