//! `lifemap validate`: every kind of mistake is reported with where it is.

use crate::common::{Outcome, Project, fixture, run};

/// The pipeline every case below breaks in one place.
const VALID: &str = fixture::ORDERS_PIPELINE;

fn validate(pipeline: &str, files: &[(&str, &str)]) -> Outcome {
    let project = Project::new();
    project.write("pipelines/p.yaml", pipeline);
    for (path, content) in files {
        project.write(path, content);
    }
    let mut command = project.lifemap();
    command
        .args(["validate", "pipelines/p.yaml"])
        .env_remove("LIFEMAP_TEST_UNSET_VAR");
    let outcome = run(command);
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    outcome
}

/// Exit 2 with each `expected` text, and the whole output exactly as in the snapshot `name`
/// (the project's temporary folder masked).
fn assert_reports(name: &str, outcome: &Outcome, expected: &[&str]) {
    assert_eq!(
        outcome.code, 2,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        outcome.stdout, outcome.stderr
    );
    let all = format!("{}{}", outcome.stdout, outcome.stderr);
    for needle in expected {
        assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
    }
    let shown = format!("--- stdout\n{}--- stderr\n{}", outcome.stdout, outcome.stderr);
    insta::assert_snapshot!(format!("validate_{name}"), mask_temporary_folders(&shown));
}

/// `/tmp/lifemap-test-XXXX` as `[project]`: the folder differs on every run.
fn mask_temporary_folders(text: &str) -> String {
    let marker = std::env::temp_dir().join("lifemap-test-").display().to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        out.push_str("[project]");
        let after = &rest[at + marker.len()..];
        let end = after.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_valid_pipeline_passes() {
    let outcome = validate(VALID, &[]);
    assert_eq!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
    assert!(
        outcome
            .stdout
            .contains("✓ pipelines/p.yaml: 1 sources, 1 steps planned, 1 marts"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn unknown_key_names_line_column_and_the_likely_key() {
    let outcome = validate(&VALID.replace("    format: csv", "    formt: csv"), &[]);
    assert_reports(
        "unknown_key_names_line_column_and_the_likely_key",
        &outcome,
        &[
            "pipelines/p.yaml:5:5: sources.orders: unknown field `formt`",
            "hint: did you mean `format`?",
        ],
    );
}

#[test]
fn bad_type_names_the_key() {
    let outcome = validate(
        &VALID.replace("    format: csv", "    format: csv\n    allow_empty: maybe"),
        &[],
    );
    assert_reports(
        "bad_type_names_the_key",
        &outcome,
        &["pipelines/p.yaml:6:18: sources.orders.allow_empty: invalid type: string \"maybe\", expected a boolean"],
    );
    let outcome = validate(&VALID.replace("format: csv", "format: xlsx"), &[]);
    assert_reports(
        "bad_type_names_the_key_2",
        &outcome,
        &["pipelines/p.yaml:5:5: sources.orders.format: `xlsx` is not a format: csv, ndjson, parquet or lines"],
    );
    let outcome = validate(&VALID.replace("format: csv", "format: parquett"), &[]);
    assert_reports(
        "bad_type_names_the_key_3",
        &outcome,
        &[
            "pipelines/p.yaml:5:5: sources.orders.format: `parquett` is not a format",
            "hint: did you mean `parquet`?",
        ],
    );
    let outcome = validate(&VALID.replace("amount: float", "amount: money"), &[]);
    assert_reports(
        "bad_type_names_the_key_4",
        &outcome,
        &["pipelines/p.yaml:8:7: sources.orders.schema.amount: `money` is not a column type"],
    );
}

#[test]
fn missing_sql_file_names_the_step_and_the_path() {
    let outcome = validate(
        &VALID.replace("query: SELECT SUM(amount) AS total FROM orders", "sql: missing.sql"),
        &[],
    );
    assert_reports(
        "missing_sql_file_names_the_step_and_the_path",
        &outcome,
        &["pipelines/p.yaml:11:5: steps.totals.sql: cannot read SQL file sql/missing.sql"],
    );
}

#[test]
fn a_sql_file_outside_the_sql_folder_is_refused() {
    // The file exists: the path is refused for where it points, not because it is missing.
    let secret = ("secret.txt", "SELECT 'not for the pipeline' AS total");
    for (case, escape) in ["../secret.txt", "/etc/hostname", "sub/../../secret.txt"]
        .into_iter()
        .enumerate()
    {
        let outcome = validate(
            &VALID.replace(
                "query: SELECT SUM(amount) AS total FROM orders",
                &format!("sql: \"{escape}\""),
            ),
            &[secret],
        );
        assert_reports(
            &format!("a_sql_file_outside_the_sql_folder_is_refused_{case}"),
            &outcome,
            &[&format!(
                "pipelines/p.yaml:11:5: steps.totals.sql: `{escape}` is not a file inside sql: no absolute paths and no `..`"
            )],
        );
    }
}

#[test]
fn unknown_table_names_the_step_and_a_suggestion() {
    let outcome = validate(&VALID.replace("FROM orders", "FROM ordrs"), &[]);
    assert_reports(
        "unknown_table_names_the_step_and_a_suggestion",
        &outcome,
        &[
            "pipelines/p.yaml:10:5: steps.totals: step `totals` (inline query) reads table `ordrs`, which is neither a source nor a step",
            "hint: did you mean `orders`?",
        ],
    );
}

#[test]
fn a_dependency_cycle_names_every_step_in_it() {
    let steps = "\
steps:
  - name: a
    sql: a.sql
  - name: b
    query: SELECT * FROM a
";
    let pipeline = VALID
        .replace(
            "steps:\n  - name: totals\n    query: SELECT SUM(amount) AS total FROM orders\n",
            steps,
        )
        .replace("  totals: {}", "  a: {}");
    let outcome = validate(&pipeline, &[("sql/a.sql", "SELECT o.* FROM orders o JOIN b ON true")]);
    assert_reports(
        "a_dependency_cycle_names_every_step_in_it",
        &outcome,
        &["steps.a: dependency cycle (each step reads the next): a → b → a"],
    );
}

#[test]
fn unset_environment_variable_names_where_it_is_used() {
    let outcome = validate(&VALID.replace("data/orders/", "${LIFEMAP_TEST_UNSET_VAR}/orders/"), &[]);
    assert_reports(
        "unset_environment_variable_names_where_it_is_used",
        &outcome,
        &["pipelines/p.yaml:4:15: sources.orders.location: environment variable `LIFEMAP_TEST_UNSET_VAR` is not set"],
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let pipeline = VALID
        .replace("data/orders/", "${LIFEMAP_TEST_UNSET_VAR}/orders/")
        .replace("query: SELECT SUM(amount) AS total FROM orders", "sql: missing.sql")
        .replace("  totals: {}", "  totls: {}");
    let outcome = validate(&pipeline, &[]);
    assert_reports(
        "every_problem_is_listed_at_once",
        &outcome,
        &[
            "3 problems in the pipeline",
            "LIFEMAP_TEST_UNSET_VAR",
            "missing.sql",
            "mart `totls` reads step `totls`",
        ],
    );
}

#[test]
fn sql_is_planned_against_declared_schemas_without_data() {
    let outcome = validate(&VALID.replace("SUM(amount)", "SUM(amont)"), &[]);
    assert_reports(
        "sql_is_planned_against_declared_schemas_without_data",
        &outcome,
        &["✗ step `totals` (inline query)", "amont"],
    );
}

#[test]
fn undefined_template_variables_are_errors() {
    let outcome = validate(
        &VALID.replace("FROM orders", "FROM orders WHERE amount > {{ var('minimum') }}"),
        &[],
    );
    assert_reports(
        "undefined_template_variables_are_errors",
        &outcome,
        &["steps.totals: templating inline query", "unknown var `minimum`"],
    );
    let outcome = validate(
        &VALID.replace("FROM orders", "FROM orders WHERE amount > {{ minimum }}"),
        &[],
    );
    assert_reports(
        "undefined_template_variables_are_errors_2",
        &outcome,
        &["steps.totals: templating inline query", "undefined"],
    );
}

#[test]
fn yaml_alias_bombs_and_deep_nesting_are_refused() {
    // Billion laughs inside `vars`, which accepts any YAML value: expanding it would take 10^12 nodes.
    let mut bomb = String::from("name: v\nvars:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let previous = format!("*a{}", level - 1);
        bomb.push_str(&format!(
            "  a{level}: &a{level} [{}]\n",
            [previous.as_str(); 10].join(", ")
        ));
    }
    let outcome = validate(&format!("{bomb}{}", VALID.trim_start_matches("name: v\n")), &[]);
    assert_reports(
        "yaml_alias_bombs_and_deep_nesting_are_refused",
        &outcome,
        &["pipelines/p.yaml", "repetition limit exceeded"],
    );

    let deep = VALID.replace(
        "format: csv",
        &format!("format: csv\n    csv: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
    );
    let outcome = validate(&deep, &[]);
    assert_reports(
        "yaml_alias_bombs_and_deep_nesting_are_refused_2",
        &outcome,
        &["pipelines/p.yaml:6"],
    );
}

#[test]
fn the_bundled_pipeline_is_valid() {
    let mut command = assert_cmd::Command::cargo_bin("lifemap").expect("binary");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", "pipelines/customer_lifecycle.yaml"]);
    let outcome = run(command);
    assert_eq!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
}

#[test]
fn the_bundled_pipeline_names_the_limit_of_lifecycle_weeks() {
    let validate_with_weeks = |weeks: &str| {
        let mut command = assert_cmd::Command::cargo_bin("lifemap").expect("binary");
        command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "validate",
            "pipelines/customer_lifecycle.yaml",
            "--var",
            &format!("lifecycle_weeks={weeks}"),
        ]);
        run(command)
    };
    // person_milestones keeps a person's active weeks in a 64-bit mask for lifecycle_status
    // (sql/person_milestones.sql).
    assert_eq!(validate_with_weeks("62").code, 0);
    let outcome = validate_with_weeks("63");
    assert_eq!(outcome.code, 2, "{}{}", outcome.stdout, outcome.stderr);
    assert!(
        outcome.stderr.contains("person_milestones.sql")
            && outcome.stderr.contains("lifecycle_weeks can be at most 62"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn datafusion_settings_from_the_environment_are_applied() {
    let validate_with_batch_size = |value: &str| {
        let mut command = assert_cmd::Command::cargo_bin("lifemap").expect("binary");
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", value)
            .args(["validate", "pipelines/customer_lifecycle.yaml"]);
        run(command)
    };
    // A setting DataFusion cannot parse must stop the command and be named, which shows the
    // DATAFUSION_* variables reach the session (docs/pipeline-reference.md: engine section).
    let outcome = validate_with_batch_size("many");
    assert_ne!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
    assert!(outcome.stderr.contains("DATAFUSION_"), "{}", outcome.stderr);

    let outcome = validate_with_batch_size("1024");
    assert_eq!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
}

#[test]
fn a_duration_too_long_to_hold_is_an_error_not_a_panic() {
    // Found by the pipeline_file fuzz target (fuzz/regressions/pipeline_file/duration-overflow-*).
    let outcome = validate(
        &VALID.replace(
            "  location: out",
            "  location: out\n  lock_timeout: 44444444444444444444s",
        ),
        &[],
    );
    assert_reports(
        "a_duration_too_long_to_hold_is_an_error_not_a_panic",
        &outcome,
        &["pipelines/p.yaml:14:3: output.lock_timeout: `44444444444444444444s` is too long a duration"],
    );
}

#[test]
fn a_step_setting_datafusion_does_not_know_names_its_line() {
    let with_settings = |settings: &str| {
        VALID.replace(
            "    query: SELECT SUM(amount) AS total FROM orders",
            &format!("    query: SELECT SUM(amount) AS total FROM orders\n    settings:\n{settings}"),
        )
    };
    let outcome = validate(
        &with_settings("      datafusion.optimizer.subset_repartition_treshold: 2\n"),
        &[],
    );
    assert_reports(
        "a_step_setting_datafusion_does_not_know_names_its_line",
        &outcome,
        &[
            "pipelines/p.yaml:13:7: steps.totals.settings.datafusion.optimizer.subset_repartition_treshold: DataFusion has no setting `datafusion.optimizer.subset_repartition_treshold`",
            "hint: did you mean `datafusion.optimizer.subset_repartition_threshold`?",
        ],
    );
    let outcome = validate(&with_settings("      datafusion.execution.batch_size: many\n"), &[]);
    assert_reports(
        "a_step_setting_datafusion_does_not_know_names_its_line_2",
        &outcome,
        &[
            "pipelines/p.yaml:13:7: steps.totals.settings.datafusion.execution.batch_size: DataFusion does not take `many` here",
        ],
    );
    let outcome = validate(
        &with_settings("      datafusion.execution.batch_size: 1024\n    materialize: false\n"),
        &[],
    );
    assert_reports(
        "a_step_setting_datafusion_does_not_know_names_its_line_3",
        &outcome,
        &["steps.totals.materialize: a step with `settings` is materialized"],
    );
    let outcome = validate(&with_settings("      datafusion.execution.batch_size: 1024\n"), &[]);
    assert_eq!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
}

#[test]
fn incremental_steps_whose_kept_rows_could_be_wrong_are_refused() {
    let pipeline = "\
name: v
sources:
  events:
    location: data/events/
    format: csv
    schema:
      amount: float
    partitions:
      dt: date
  orders:
    location: data/orders/
    format: csv
    schema:
      amount: float
steps:
  - name: dated
    query: SELECT dt, amount FROM events WHERE dt <= DATE '{{ ds }}'
    incremental: { kind: by_partition, source: events }
  - name: joined
    query: SELECT e.dt, e.amount FROM events e CROSS JOIN orders o
    incremental: { kind: by_partition, source: events }
  - name: unpartitioned
    query: SELECT amount FROM orders
    incremental: { kind: by_partition, source: orders }
  - name: fine
    query: SELECT dt, amount * 2 AS doubled FROM events
    incremental:
      kind: by_partition
      source: events
      partitions: dt <= DATE '{{ ds }}'
      forget: SELECT dt FROM fine WHERE doubled < 0 AND dt IN (SELECT dt FROM nowhere)
output:
  location: out
marts:
  fine: {}
";
    let outcome = validate(pipeline, &[]);
    assert_eq!(outcome.code, 2, "{}{}", outcome.stdout, outcome.stderr);
    let all = format!("{}{}", outcome.stdout, outcome.stderr);
    for expected in [
        "steps.dated.incremental: the SQL of inline query changes with the run's date (`ds`, `as_of`)",
        "source `orders` has no `partitions`: a `by_partition` step needs a Hive-partitioned source",
    ] {
        assert!(all.contains(expected), "expected `{expected}` in:\n{all}");
    }
    // Reading other tables shows once the pipeline's references resolve: the same pipeline
    // without the two steps refused above.
    let resolvable = pipeline
        .replace("  - name: dated\n    query: SELECT dt, amount FROM events WHERE dt <= DATE '{{ ds }}'\n    incremental: { kind: by_partition, source: events }\n", "")
        .replace("  - name: unpartitioned\n    query: SELECT amount FROM orders\n    incremental: { kind: by_partition, source: orders }\n", "");
    let outcome = validate(&resolvable, &[]);
    assert_eq!(outcome.code, 2, "{}{}", outcome.stdout, outcome.stderr);
    let all = format!("{}{}", outcome.stdout, outcome.stderr);
    for expected in [
        "step `joined` is incremental by partition of `events` but also reads `orders`",
        "the `forget` query of step `fine` reads `nowhere`, which is neither a source nor a step",
    ] {
        assert!(all.contains(expected), "expected `{expected}` in:\n{all}");
    }
    assert!(!all.contains("steps.fine.incremental:"), "{all}");
}

/// The valid pipeline with its one step read from the SQL file `sql/step.sql`.
fn file_step() -> String {
    VALID.replace("query: SELECT SUM(amount) AS total FROM orders", "sql: step.sql")
}

#[test]
fn an_sql_error_is_shown_at_its_line_of_the_file_with_the_rendered_sql_around_it() {
    // Line 7 of the file; the `{% set %}` block above it makes the rendered SQL longer.
    let sql = "-- totals\n{% set amount %}\n  CAST(amount AS DOUBLE)\n{% endset %}\nSELECT\n  SUM({{ amount }}) AS total,\n  (1 + ) AS broken\nFROM orders\n";
    let outcome = validate(&file_step(), &[("sql/step.sql", sql)]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("at sql/step.sql:7:8; the rendered SQL there:"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("|   (1 + ) AS broken\n"), "{}", outcome.stderr);

    // An unknown column: DataFusion names no place, lifemap finds its first use.
    let misspelled = "SELECT\n  SUM(amont) AS total\nFROM orders\n";
    let outcome = validate(&file_step(), &[("sql/step.sql", misspelled)]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    let all = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(all.contains("No field named amont"), "{all}");
    assert!(all.contains("at sql/step.sql:2:7;"), "{all}");
}

#[test]
fn sql_a_set_block_holds_is_written_as_it_is_and_plan_rendered_prints_one_step() {
    // Quotes inside a `{% set %}` block are SQL the author wrote: not doubled. A text var is data:
    // its quote is doubled, so it stays one string literal.
    let sql = "{% set label %}'orders: ' || order_id{% endset %}\nSELECT {{ label }} AS label, '{{ var(\"note\") }}' AS note FROM orders\n";
    let pipeline = file_step().replace("sources:", "vars:\n  note: \"it's\"\nsources:");
    let project = Project::new();
    project.write("pipelines/p.yaml", &pipeline);
    project.write("sql/step.sql", sql);
    let mut command = project.lifemap();
    command.args(["plan", "pipelines/p.yaml", "--rendered", "totals"]);
    let outcome = run(command);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        outcome.stdout,
        "\nSELECT 'orders: ' || order_id AS label, 'it''s' AS note FROM orders\n"
    );
    let mut unknown = project.lifemap();
    unknown.args(["plan", "pipelines/p.yaml", "--rendered", "total"]);
    let outcome = run(unknown);
    assert_eq!(outcome.code, 2);
    assert!(outcome.stderr.contains("did you mean `totals`?"), "{}", outcome.stderr);
}
