//! Runs on the local filesystem: marts, reruns, failures, selection, backfills, exit codes.

use datafusion::prelude::SessionContext;

use crate::common::fixture::{self, EVENTS_PER_CUSTOMER_1031, REVENUE_1031};
use crate::common::{Project, files_below, query_parquet, run, run_expecting};

fn run_shop(project: &Project, args: &[&str]) -> crate::common::Outcome {
    let mut command = project.lifemap();
    command.args(["run", "pipelines/shop.yaml"]).args(args);
    run(command)
}

fn mart(project: &Project, mart: &str, ds: &str, sql: &str) -> String {
    let folder = project.path(&format!("out/{mart}/ds={ds}/"));
    query_parquet(&SessionContext::new(), folder.to_str().expect("utf-8 path"), sql)
}

fn data_files(project: &Project, mart: &str, ds: &str) -> Vec<(String, Vec<u8>)> {
    let folder = project.path(&format!("out/{mart}/ds={ds}"));
    files_below(&folder)
        .into_iter()
        .filter(|name| name.ends_with(".parquet"))
        .map(|name| {
            let bytes = std::fs::read(folder.join(&name)).expect("read");
            (name, bytes)
        })
        .collect()
}

#[test]
fn run_publishes_marts_with_the_expected_values() {
    let project = fixture::local_shop();
    let outcome = run_shop(&project, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    let summary = outcome.summary();
    assert_eq!(summary["status"], "success");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["ds"], "2026-10-31");
    assert_eq!(summary["rows"]["events_per_customer"], 2);
    assert_eq!(summary["rows"]["revenue"], 2);
    assert_eq!(summary["rows"]["fragile"], 0);

    assert_eq!(
        mart(
            &project,
            "events_per_customer",
            "2026-10-31",
            "SELECT * FROM t ORDER BY customer_id"
        ),
        EVENTS_PER_CUSTOMER_1031
    );
    assert_eq!(
        mart(&project, "revenue", "2026-10-31", "SELECT * FROM t ORDER BY country"),
        REVENUE_1031
    );

    // Each partition is committed by a manifest naming exactly its files.
    let folder = project.path("out/revenue/ds=2026-10-31");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("_SUCCESS")).expect("_SUCCESS")).expect("json");
    assert_eq!(manifest["rows"], 2);
    let listed: Vec<String> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut on_disk: Vec<String> = files_below(&folder).into_iter().filter(|n| n != "_SUCCESS").collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);

    // The run's results sit beside the marts; staging is cleaned up.
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.path("out/_runs/ds=2026-10-31/run_results.json")).expect("run_results"),
    )
    .expect("json");
    assert_eq!(results["status"], "success");
    assert_eq!(results["pipeline"], "shop");
    assert!(
        results["pipeline_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
    assert_eq!(results["marts"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        results["sources"][0]["files"], 3,
        "three event files, of two compressions"
    );
    assert_eq!(results["lifemap_version"], env!("CARGO_PKG_VERSION"));
    assert!(files_below(&project.path("out/_staging")).is_empty());
}

#[test]
fn rerun_of_a_ds_gives_identical_marts_and_leaves_other_partitions_alone() {
    let project = fixture::local_shop();
    assert_eq!(run_shop(&project, &["--ds", "2026-10-30"]).code, 0);
    let other_before = data_files(&project, "events_per_customer", "2026-10-30");
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 0);
    let first = data_files(&project, "events_per_customer", "2026-10-31");
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 0);
    let second = data_files(&project, "events_per_customer", "2026-10-31");

    // Names carry the run id; the bytes are identical and the old run's files are gone.
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].0, second[0].0);
    assert_eq!(first[0].1, second[0].1, "a rerun writes byte-identical Parquet");
    assert_eq!(data_files(&project, "events_per_customer", "2026-10-30"), other_before);
}

#[test]
fn a_failure_between_two_marts_leaves_the_published_partitions_intact() {
    let project = fixture::local_shop();
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 0);
    let before = data_files(&project, "events_per_customer", "2026-10-31");

    // New data that would change the mart, and a mart that now fails after the first was written.
    let (path, content) = fixture::late_event();
    project.write(&format!("exports/{path}"), content);
    let outcome = run_shop(&project, &["--ds", "2026-10-31", "--var", "fail=true"]);
    assert_eq!(outcome.code, 1, "stderr:\n{}", outcome.stderr);
    let summary = outcome.summary();
    assert_eq!(summary["status"], "failed");
    assert!(
        summary["error"].as_str().is_some_and(|e| e.contains("fragile")),
        "{summary}"
    );
    assert!(
        outcome.stderr.contains("error: mart `fragile`") || outcome.stderr.contains("computing mart `fragile`"),
        "{}",
        outcome.stderr
    );

    assert_eq!(data_files(&project, "events_per_customer", "2026-10-31"), before);
    assert_eq!(
        mart(
            &project,
            "events_per_customer",
            "2026-10-31",
            "SELECT * FROM t ORDER BY customer_id"
        ),
        EVENTS_PER_CUSTOMER_1031
    );
    assert!(
        files_below(&project.path("out/_staging")).is_empty(),
        "staging is discarded"
    );
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.path("out/_runs/ds=2026-10-31/run_results.json")).expect("run_results"),
    )
    .expect("json");
    assert_eq!(results["status"], "failed");
    assert_eq!(results["exit_code"], 1);

    // With the failure gone, the late event shows up.
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 0);
    assert_eq!(
        mart(
            &project,
            "events_per_customer",
            "2026-10-31",
            "SELECT events FROM t WHERE customer_id = 'c2'"
        ),
        "+--------+\n| events |\n+--------+\n| 2      |\n+--------+"
    );
}

#[test]
fn no_input_for_the_ds_exits_99_and_publishes_nothing() {
    let project = fixture::local_shop();
    let outcome = run_shop(&project, &["--ds", "2026-11-05"]);
    assert_eq!(outcome.code, 99, "stderr:\n{}", outcome.stderr);
    assert_eq!(outcome.summary()["status"], "skipped");
    assert!(
        outcome.stderr.contains("no files for ds 2026-11-05"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("out/revenue").exists());
}

#[test]
fn backfill_runs_each_date_in_order() {
    let project = fixture::local_shop();
    let outcome = run_shop(&project, &["--from", "2026-10-30", "--to", "2026-11-02"]);
    // 11-02 has no events: skipped, which does not fail the backfill.
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    let summary = outcome.summary();
    let runs = summary["runs"].as_array().expect("runs");
    let statuses: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["ds"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("2026-10-30", "success"),
            ("2026-10-31", "success"),
            ("2026-11-01", "success"),
            ("2026-11-02", "skipped")
        ]
    );
    assert_eq!(
        outcome.stdout.lines().count(),
        5,
        "one line per date and a final summary"
    );
    assert_eq!(
        mart(
            &project,
            "events_per_customer",
            "2026-11-01",
            "SELECT SUM(events) AS n FROM t"
        ),
        "+---+\n| n |\n+---+\n| 4 |\n+---+"
    );
}

#[test]
fn select_runs_only_what_a_mart_needs() {
    let project = fixture::local_shop();
    let outcome = run_shop(&project, &["--ds", "2026-10-31", "--select", "revenue"]);
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    assert_eq!(outcome.summary()["rows"], serde_json::json!({"revenue": 2}));
    assert!(project.path("out/revenue/ds=2026-10-31/_SUCCESS").exists());
    assert!(!project.path("out/events_per_customer").exists());

    let unknown = run_shop(&project, &["--ds", "2026-10-31", "--select", "revenu"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("did you mean `revenue`"), "{}", unknown.stderr);
}

#[test]
fn an_sql_error_names_the_step_and_its_file() {
    let project = fixture::local_shop();
    project.write("sql/revenue.sql", "SELECT no_such_column FROM orders");
    let outcome = run_shop(&project, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 1);
    assert!(outcome.stderr.contains("step `revenue`"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("sql/revenue.sql"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("no_such_column"), "{}", outcome.stderr);
}

#[test]
fn a_missing_source_location_is_one_clear_line() {
    let project = fixture::local_shop();
    std::fs::remove_dir_all(project.path("exports/orders")).expect("rm");
    let outcome = run_shop(&project, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 1);
    let first_error = outcome
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        first_error.contains("source `orders`") && first_error.contains("no data files found"),
        "{first_error}"
    );
    assert!(!outcome.stderr.contains("panicked"));
}

#[test]
fn plan_prints_order_sql_and_schemas() {
    let project = fixture::local_shop();
    let mut command = project.lifemap();
    command.args(["plan", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let outcome = run_expecting(command, 0);
    let out = &outcome.stdout;
    assert!(
        out.contains("pipeline shop for ds 2026-10-31 (as_of 2026-11-01T00:00:00Z)"),
        "{out}"
    );
    let order: Vec<&str> = out
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(
        order,
        vec![
            "1. events_per_customer (inline query)",
            "2. fragile (sql/fragile.sql)",
            "3. revenue (sql/revenue.sql)"
        ]
    );
    assert!(out.contains("WHERE dt <= DATE '2026-10-31'"), "rendered SQL: {out}");
    assert!(out.contains("revenue: Float64"), "{out}");
    assert!(out.contains("first_dt: Date32"), "{out}");
}

#[test]
fn help_documents_the_exit_codes() {
    let project = Project::new();
    let mut command = project.lifemap();
    command.arg("--help");
    let outcome = run_expecting(command, 0);
    for line in [
        "75  temporary failure",
        "99  nothing to do",
        "3   data-quality failure",
        "2   configuration or usage error",
    ] {
        assert!(
            outcome.stdout.contains(line),
            "--help lacks `{line}`:\n{}",
            outcome.stdout
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let project = fixture::local_shop();
    let outcome = run_shop(&project, &["--ds", "2026-10-31", "--log-format", "json"]);
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["level"].is_string() && value["fields"].is_object(), "{line}");
    }
    // stdout holds only the summary.
    assert_eq!(outcome.stdout.lines().count(), 1);
}

#[test]
fn an_undeclared_var_on_the_command_line_is_a_usage_error() {
    let project = fixture::local_shop();
    let outcome = run_shop(&project, &["--ds", "2026-10-31", "--var", "exprts=elsewhere"]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .contains("--var exprts: the pipeline declares no var `exprts`"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("did you mean `exports`?"), "{}", outcome.stderr);
    let bad_date = run_shop(&project, &["--ds", "2026-13-01"]);
    assert_eq!(bad_date.code, 2);
    assert!(
        bad_date.stderr.contains("not a date of the form YYYY-MM-DD"),
        "{}",
        bad_date.stderr
    );
}

/// Globs, zstd, CSV options and a failing data-quality check, on one small pipeline.
const OPTIONS_PIPELINE: &str = r#"
name: options
vars:
  min_amount: 0
sources:
  sales:
    location: "exports/sales/*/part-*.csv*"
    format: csv
    csv:
      delimiter: ";"
      null_values: ["", "n/a"]
    schema:
      region: string
      amount: float
steps:
  - name: totals
    query: |
      SELECT COALESCE(region, 'unknown') AS region, SUM(amount) AS amount, COUNT(*) AS rows_read
      FROM sales GROUP BY COALESCE(region, 'unknown') ORDER BY region
checks:
  - name: amounts_reach_the_minimum
    expression: SELECT region, amount FROM totals WHERE amount < {{ var('min_amount') }}
    severity: error
  - name: regions_are_known
    expression: SELECT region FROM totals WHERE region = 'unknown'
    severity: warn
output:
  location: out
marts:
  totals: {}
"#;

fn options_project() -> Project {
    let project = Project::new();
    project.write("pipelines/options.yaml", OPTIONS_PIPELINE);
    project.write("exports/sales/a/part-1.csv", "region;amount\nnorth;10\nsouth;n/a\n");
    let compressed = zstd::encode_all(&b"region;amount\nnorth;5\n;7\n"[..], 3).expect("zstd");
    project.write("exports/sales/b/part-2.csv.zst", compressed);
    // Outside the glob: never read.
    project.write("exports/sales/c/other.csv", "region;amount\nwest;1000\n");
    project
}

#[test]
fn globs_zstd_and_csv_options_are_honoured() {
    let project = options_project();
    let mut command = project.lifemap();
    command.args(["run", "pipelines/options.yaml", "--ds", "2026-10-31"]);
    let outcome = run_expecting(command, 0);
    assert_eq!(outcome.summary()["rows"]["totals"], 3);
    let folder = project.path("out/totals/ds=2026-10-31/");
    assert_eq!(
        query_parquet(
            &SessionContext::new(),
            folder.to_str().expect("utf-8"),
            "SELECT * FROM t ORDER BY region"
        ),
        "+---------+--------+-----------+\n\
         | region  | amount | rows_read |\n\
         +---------+--------+-----------+\n\
         | north   | 15.0   | 2         |\n\
         | south   |        | 1         |\n\
         | unknown | 7.0    | 1         |\n\
         +---------+--------+-----------+"
    );
    // The warning is recorded, not fatal.
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.path("out/_runs/ds=2026-10-31/run_results.json")).expect("results"),
    )
    .expect("json");
    let warning = &results["checks"][1];
    assert_eq!(
        (
            warning["name"].as_str(),
            warning["status"].as_str(),
            warning["failing_rows"].as_u64()
        ),
        (Some("regions_are_known"), Some("failed"), Some(1))
    );
    assert_eq!(warning["examples"][0]["region"], "unknown");
}

/// A run of the options project whose error-level check `amounts_reach_the_minimum` fails.
fn failing_check_run(project: &Project) -> assert_cmd::Command {
    let mut command = project.lifemap();
    command.args([
        "run",
        "pipelines/options.yaml",
        "--ds",
        "2026-10-31",
        "--var",
        "min_amount=10",
    ]);
    command
}

#[test]
fn an_error_level_check_failure_publishes_nothing_and_exits_3() {
    let project = options_project();
    let outcome = run_expecting(failing_check_run(&project), 3);
    assert_eq!(outcome.summary()["status"], "failed");
    assert!(
        outcome
            .stderr
            .contains("data-quality checks failed: `amounts_reach_the_minimum` (1 failing rows"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("out/totals").exists(), "nothing published");
    assert!(files_below(&project.path("out/_staging")).is_empty());
}

/// A var is data: text lands in SQL as one string literal whatever it holds, and a number var
/// takes only numbers.
const VARS_PIPELINE: &str = r#"
name: vars_as_data
vars:
  label: plain
  min_amount: 0
sources:
  sales:
    location: exports/
    format: csv
    schema: { region: string, amount: float }
steps:
  - name: labelled
    query: |
      SELECT '{{ label }}' AS label, {{ var('label') | sql_string }} AS quoted, COUNT(*) AS sales
      FROM sales WHERE amount > {{ min_amount }}
output:
  location: out
marts:
  labelled: {}
"#;

#[test]
fn a_var_is_bound_as_data_not_as_sql() {
    let project = Project::new();
    project.write("pipelines/vars.yaml", VARS_PIPELINE);
    project.write("exports/sales.csv", "region,amount\nnorth,10\nsouth,0\n");
    let hostile = "x'; DROP TABLE sales; --";
    let mut command = project.lifemap();
    command.args(["run", "pipelines/vars.yaml", "--ds", "2026-10-31", "--var"]);
    command.arg(format!("label={hostile}"));
    run_expecting(command, 0);
    let folder = project.path("out/labelled/ds=2026-10-31/");
    let rows = crate::common::first_column(
        &folder,
        "SELECT label || '|' || quoted || '|' || CAST(sales AS VARCHAR) FROM t",
    );
    assert_eq!(rows, [format!("{hostile}|{hostile}|1")]);

    // Where the SQL has a number, a --var must be one: refused before anything runs.
    let mut command = project.lifemap();
    command.args([
        "run",
        "pipelines/vars.yaml",
        "--ds",
        "2026-10-30",
        "--var",
        "min_amount=0 OR 1=1",
    ]);
    let outcome = run_expecting(command, 2);
    assert!(
        outcome
            .stderr
            .contains("--var min_amount: expects a number (its default is 0); got `0 OR 1=1`"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("out/labelled/ds=2026-10-30").exists());
}

/// A lock as a run holds it: acquired at `acquired_at` with a lease of two minutes from then.
fn write_lock(project: &Project, host: &str, pid: u32, acquired_at: &str) {
    let acquired = chrono::DateTime::parse_from_rfc3339(acquired_at).expect("time");
    let expires_at = (acquired + chrono::Duration::minutes(2)).to_rfc3339();
    project.write(
        "out/_runs/ds=2026-10-31/_lock",
        serde_json::json!({"run_id": "other-run", "host": host, "pid": pid, "acquired_at": acquired_at,
                           "expires_at": expires_at})
        .to_string(),
    );
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[test]
fn a_run_of_a_ds_another_run_holds_exits_75_and_a_stale_lock_is_taken_over() {
    let project = fixture::local_shop();
    // A live holder: this test process, on this host, just now.
    let now = chrono::Utc::now().to_rfc3339();
    write_lock(&project, &this_host(), std::process::id(), &now);
    let outcome = run_shop(&project, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 75, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("another run of this pipeline holds") && outcome.stderr.contains("(run other-run on "),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("out/revenue/ds=2026-10-31").exists());
    assert!(!project.path("out/_runs/ds=2026-10-31/run_results.json").exists());

    // Another host's lock is trusted until its lease (output.lock_timeout, 2 minutes) runs out.
    write_lock(&project, "elsewhere", 1, &now);
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 75);
    let long_ago = (chrono::Utc::now() - chrono::Duration::hours(7)).to_rfc3339();
    write_lock(&project, "elsewhere", 1, &long_ago);
    let outcome = run_shop(&project, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("taking over a stale run lock"),
        "{}",
        outcome.stderr
    );
    assert!(project.path("out/revenue/ds=2026-10-31/_SUCCESS").exists());
    // Released at the end of the run.
    assert!(!project.path("out/_runs/ds=2026-10-31/_lock").exists());

    // A killed run on this host: its process is gone, so its lock is stale at once.
    let mut finished = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = finished.id();
    finished.wait().expect("wait");
    write_lock(&project, &this_host(), dead_pid, &chrono::Utc::now().to_rfc3339());
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 0);
}

#[test]
fn a_memory_limit_gives_the_same_marts_or_fails_clearly() {
    let exports = format!("{}/data/sample", env!("CARGO_MANIFEST_DIR"));
    let project = Project::new();
    let journeys = |marts: &str, limit: Option<&str>, code: i32| {
        let mut command = crate::common::bundled_run(&project, &exports, marts);
        command.arg("--no-report");
        if let Some(limit) = limit {
            command.args(["--memory-limit", limit]);
        }
        let outcome = run_expecting(command, code);
        (
            outcome,
            project.path(&format!("{marts}/customer_journey/ds=2026-10-31/")),
        )
    };
    let (_, unlimited) = journeys("unlimited", None, 0);
    // 16 MiB: work that does not fit spills to disk; the marts are the same.
    let (_, limited) = journeys("limited", Some("16MiB"), 0);
    let digest = |folder: &std::path::Path| {
        crate::common::first_column(
            folder,
            "SELECT concat_ws('|', COUNT(*), SUM(orders), SUM(revenue), COUNT(DISTINCT rfm_segment), COUNT(persona_id)) FROM t",
        )
    };
    assert_eq!(digest(&limited), digest(&unlimited));
    // Every mart, byte for byte.
    let marts = |marts: &str| crate::common::mart_bytes(&project, marts);
    let unlimited_marts = marts("unlimited");
    assert_eq!(unlimited_marts.len(), 11, "one file per mart");
    assert!(marts("limited") == unlimited_marts, "the marts differ under the limit");
    // Materialised steps past a quarter of the pool were held on disk, and read back whole.
    let on_disk = |marts: &str| -> Vec<(String, u64, u64)> {
        let results = crate::common::run_results(&project, marts);
        results["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|step| {
                let bytes = step.get("bytes_on_disk")?.as_u64()?;
                Some((step["name"].as_str()?.to_string(), step["rows"].as_u64()?, bytes))
            })
            .collect()
    };
    assert_eq!(on_disk("unlimited"), []);
    let held = on_disk("limited");
    let names: Vec<&str> = held.iter().map(|(name, _, _)| name.as_str()).collect();
    assert!(names.contains(&"person_events"), "{held:?}");
    let rows_of = |marts: &str, name: &str| {
        crate::common::run_results(&project, marts)["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|step| step["name"] == name)
            .and_then(|step| step["rows"].as_u64())
    };
    for (name, rows, bytes) in &held {
        assert_eq!(Some(*rows), rows_of("unlimited", name), "{name}");
        assert!(*bytes > 0, "{name}");
    }
    // 4 MiB cannot hold even a spilling sort: a clear error, nothing published.
    let (outcome, _) = journeys("starved", Some("4MiB"), 1);
    assert!(
        outcome.stderr.contains("Resources exhausted")
            && outcome.stderr.contains("hint: the work did not fit in --memory-limit"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("starved/customer_journey").exists());
}

#[test]
fn a_run_removes_what_killed_runs_of_its_ds_left_in_staging() {
    let project = fixture::local_shop();
    let abandoned = "ds=2026-10-31/20260101T000000-deadbeef/revenue/part-00000.parquet";
    let other_ds = "ds=2026-10-30/20260101T000000-0badf00d/revenue/part-00000.parquet";
    project.write(&format!("out/_staging/{abandoned}"), "left by a killed run of this ds");
    project.write(&format!("out/_staging/{other_ds}"), "another ds's run: it may be alive");
    assert_eq!(run_shop(&project, &["--ds", "2026-10-31"]).code, 0);
    assert_eq!(files_below(&project.path("out/_staging")), [other_ds]);
    assert!(
        !project.path("out/_staging/ds=2026-10-31").exists(),
        "no empty folders left"
    );
}

#[test]
fn a_steps_settings_hold_for_that_step_alone() {
    let project = Project::new();
    project.write("data/orders/orders.csv", "order_id,amount\no1,10\n");
    let threshold = "SELECT value FROM information_schema.df_settings \
                     WHERE name = 'datafusion.optimizer.subset_repartition_threshold'";
    // The orders pipeline with two more steps (and marts) before its `totals`.
    let pipeline = fixture::ORDERS_PIPELINE
        .replace(
            "  - name: totals\n",
            &format!(
                "  - name: tuned\n    query: {threshold}\n    settings:\n      \
                 datafusion.optimizer.subset_repartition_threshold: 2\n  \
                 - name: untuned\n    query: {threshold}\n  - name: totals\n"
            ),
        )
        .replace("marts:\n", "marts:\n  tuned: {}\n  untuned: {}\n");
    project.write("pipelines/p.yaml", &pipeline);
    let mut command = project.lifemap();
    command.args(["run", "pipelines/p.yaml", "--ds", "2026-10-31", "--no-report"]);
    let outcome = run_expecting(command, 0);
    let value = |mart: &str| {
        crate::common::first_column(
            &project.path(&format!("out/{mart}/ds=2026-10-31/")),
            "SELECT value FROM t",
        )
    };
    // DataFusion's default is 4; the step that names 2 sees 2, the next one the default again.
    assert_eq!(value("tuned"), ["2"], "{}", outcome.stderr);
    assert_eq!(value("untuned"), ["4"]);
}

/// What a scheduler reads: the last stdout line of `run` is one JSON object on every exit, with
/// the status, the exit code, the ds, and the error and its hint when there is one.
#[test]
fn every_exit_of_run_ends_stdout_with_its_json_summary() {
    let last_line = |outcome: &crate::common::Outcome, code: i32| -> serde_json::Value {
        assert_eq!(
            outcome.code, code,
            "stdout:\n{}\nstderr:\n{}",
            outcome.stdout, outcome.stderr
        );
        let summary = outcome.summary();
        assert_eq!(summary["exit_code"], code, "{summary}");
        summary
    };

    let project = fixture::local_shop();
    let success = last_line(&run_shop(&project, &["--ds", "2026-10-31"]), 0);
    assert_eq!(
        (&success["status"], &success["ds"], &success["error"], &success["hint"]),
        (
            &"success".into(),
            &"2026-10-31".into(),
            &serde_json::Value::Null,
            &serde_json::Value::Null
        )
    );

    let skipped = last_line(&run_shop(&project, &["--ds", "2026-11-05"]), 99);
    assert_eq!(
        (&skipped["status"], &skipped["ds"]),
        (&"skipped".into(), &"2026-11-05".into())
    );

    // Another run holds the lock: temporary, with what to do about it.
    write_lock(
        &project,
        &this_host(),
        std::process::id(),
        &chrono::Utc::now().to_rfc3339(),
    );
    let busy = last_line(&run_shop(&project, &["--ds", "2026-10-31"]), 75);
    assert_eq!(busy["status"], "failed");
    assert!(busy["error"].as_str().is_some_and(|e| e.contains("holds")), "{busy}");
    assert!(busy["hint"].as_str().is_some_and(|h| h.contains("retry")), "{busy}");
    std::fs::remove_file(project.path("out/_runs/ds=2026-10-31/_lock")).expect("unlock");

    project.write("sql/revenue.sql", "SELECT no_such_column FROM orders");
    let failed = last_line(&run_shop(&project, &["--ds", "2026-10-31"]), 1);
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("step `revenue`")),
        "{failed}"
    );

    // A pipeline that does not load: the file, line and key, and no run id (nothing ran).
    project.write(
        "pipelines/broken.yaml",
        "name: broken\nsources:\n  events:\n    locaton: x/\n",
    );
    let mut command = project.lifemap();
    command.args(["run", "pipelines/broken.yaml", "--ds", "2026-10-31"]);
    let invalid = last_line(&run(command), 2);
    assert_eq!(
        (&invalid["status"], &invalid["ds"]),
        (&"failed".into(), &"2026-10-31".into())
    );
    assert!(invalid["run_id"].is_null());
    let error = invalid["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("broken.yaml:4") && error.contains("locaton"),
        "{invalid}"
    );
    assert!(
        invalid["hint"].as_str().is_some_and(|h| h.contains("lifemap validate")),
        "{invalid}"
    );

    // Flags clap refuses, and a range that runs backwards.
    let bad_flag = last_line(&run_shop(&project, &["--ds", "2026-10-31", "--bogus"]), 2);
    assert!(
        bad_flag["error"].as_str().is_some_and(|e| e.contains("--bogus")),
        "{bad_flag}"
    );
    let backwards = last_line(&run_shop(&project, &["--from", "2026-10-31", "--to", "2026-10-30"]), 2);
    assert!(
        backwards["error"]
            .as_str()
            .is_some_and(|e| e.contains("--from 2026-10-31 is after --to 2026-10-30")),
        "{backwards}"
    );

    let quality = last_line(&run(failing_check_run(&options_project())), 3);
    assert!(
        quality["error"]
            .as_str()
            .is_some_and(|e| e.contains("amounts_reach_the_minimum")),
        "{quality}"
    );
}
