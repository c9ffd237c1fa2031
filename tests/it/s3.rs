//! The engine against a real S3-compatible server over HTTP (in-process s3s-fs, or Garage when
//! `LIFEMAP_TEST_S3_ENDPOINT` is set): no mock of object_store anywhere.

use crate::common::fixture::{self, EVENTS_PER_CUSTOMER_1031, REVENUE_1031};
use crate::common::s3::{S3Target, target};
use crate::common::{Outcome, Project, query_parquet, run};

/// A project whose exports live in S3 and whose marts are published to S3.
fn s3_shop(test: &str) -> (Project, S3Target) {
    let s3 = target(test);
    let project = Project::new();
    fixture::install_pipeline(&project);
    for (path, content) in fixture::exports() {
        s3.put(&format!("exports/{path}"), content);
    }
    (project, s3)
}

fn run_on_s3(project: &Project, s3: &S3Target, args: &[&str]) -> Outcome {
    run(s3_command(project, s3, args))
}

/// `lifemap run` of the shop pipeline reading and publishing on `s3`.
fn s3_command(project: &Project, s3: &S3Target, args: &[&str]) -> assert_cmd::Command {
    let mut command = project.lifemap();
    s3.configure(&mut command);
    command
        .args(["run", "pipelines/shop.yaml"])
        .args([
            "--var",
            &format!("exports={}", s3.uri("exports")),
            "--var",
            &format!("out={}", s3.uri("out")),
        ])
        .args(args);
    command
}

fn s3_mart(s3: &S3Target, mart: &str, ds: &str, sql: &str) -> String {
    query_parquet(&s3.session(), &s3.uri(&format!("out/{mart}/ds={ds}/")), sql)
}

#[test]
fn reads_csv_ndjson_gzip_and_parquet_from_s3_and_publishes_marts_there() {
    let (project, s3) = s3_shop("roundtrip");
    let outcome = run_on_s3(&project, &s3, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    assert_eq!(outcome.summary()["rows"]["events_per_customer"], 2);

    assert_eq!(
        s3_mart(
            &s3,
            "events_per_customer",
            "2026-10-31",
            "SELECT * FROM t ORDER BY customer_id"
        ),
        EVENTS_PER_CUSTOMER_1031
    );
    assert_eq!(
        s3_mart(&s3, "revenue", "2026-10-31", "SELECT * FROM t ORDER BY country"),
        REVENUE_1031
    );
    let published = s3.list("out/revenue/ds=2026-10-31/");
    assert_eq!(published.len(), 2, "{published:?}");
    assert!(published.contains(&"out/revenue/ds=2026-10-31/_SUCCESS".to_string()));
    let results: serde_json::Value =
        serde_json::from_slice(&s3.get("out/_runs/ds=2026-10-31/run_results.json")).expect("json");
    assert_eq!(results["status"], "success");
    assert!(s3.list("out/_staging/").is_empty(), "staging cleaned up");

    // The secret never appears in what lifemap prints or writes.
    let secret = &s3.secret;
    assert!(!outcome.stdout.contains(secret.as_str()) && !outcome.stderr.contains(secret.as_str()));
    assert!(!String::from_utf8_lossy(&s3.get("out/_runs/ds=2026-10-31/run_results.json")).contains(secret.as_str()));
}

/// `pipelines/days.yaml`: one source `days` of `format`, Hive-partitioned by `dt`, and one
/// materialized step `per_day` (its plan is logged at debug level) published as a mart.
fn write_days_pipeline(project: &Project, format: &str, query: &str) {
    project.write(
        "pipelines/days.yaml",
        format!(
            r#"
name: days
vars:
  exports: exports
  out: out
sources:
  days:
    location: "{{{{ exports }}}}/days/"
    format: {format}
    partitions:
      dt: date
steps:
  - name: per_day
    materialize: true
    query: "{query}"
output:
  location: "{{{{ out }}}}"
marts:
  per_day: {{}}
"#
        ),
    );
}

/// `lifemap run pipelines/days.yaml --ds 2026-10-31` with exports and marts on `s3`.
fn days_run(project: &Project, s3: &S3Target) -> assert_cmd::Command {
    let mut command = project.lifemap();
    s3.configure(&mut command);
    command.args([
        "run",
        "pipelines/days.yaml",
        "--ds",
        "2026-10-31",
        "--var",
        &format!("exports={}", s3.uri("exports")),
        "--var",
        &format!("out={}", s3.uri("out")),
    ]);
    command
}

/// Forty daily `lines` files, the later ones fetched while earlier ones are parsed, and one day
/// after `ds` that must not be read (the in-flight limits are unit-tested in read_ahead.rs).
#[test]
fn reads_many_daily_files_from_s3_each_once_and_whole() {
    let s3 = target("many-days");
    let project = Project::new();
    write_days_pipeline(
        &project,
        "lines",
        "SELECT dt, COUNT(*) AS lines, SUM(CAST(json_get_str(line, 'n') AS BIGINT)) AS total \
         FROM days WHERE dt <= DATE '{{ ds }}' GROUP BY dt",
    );
    // Day k (2026-09-22 + k, k = 0..39) holds k + 1 lines with n = 1000 k + j, j = 0..k.
    let first = chrono::NaiveDate::from_ymd_opt(2026, 9, 22).expect("date");
    for k in 0..=40u64 {
        let day = first + chrono::Days::new(k);
        let lines: String = (0..=k).map(|j| format!("{{\"n\":\"{}\"}}\n", 1000 * k + j)).collect();
        s3.put(
            &format!("exports/days/dt={day}/part-0.ndjson.gz"),
            fixture::gzip(&lines),
        );
    }
    let outcome = run(days_run(&project, &s3));
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);

    // 40 days, 1 + 2 + ... + 40 = 820 lines; the n sum to 1000 (Σk² + Σk) + Σk(k+1)/2 over
    // k = 0..39 = 1000 (20,540 + 780) + 10,660. A whole day k has lines = k + 1 and
    // total = 2001 k (k + 1) / 2.
    assert_eq!(
        s3_mart(
            &s3,
            "per_day",
            "2026-10-31",
            "SELECT COUNT(*) AS days, MIN(dt) AS first, MAX(dt) AS last, SUM(lines) AS lines, SUM(total) AS total, \
             COUNT(*) FILTER (WHERE 2 * total = 2001 * lines * (lines - 1)) AS whole_days, \
             MAX(lines) FILTER (WHERE dt = DATE '2026-10-31') AS lines_on_ds FROM t"
        ),
        "\
+------+------------+------------+-------+----------+------------+-------------+
| days | first      | last       | lines | total    | whole_days | lines_on_ds |
+------+------------+------------+-------+----------+------------+-------------+
| 40   | 2026-09-22 | 2026-10-31 | 820   | 21330660 | 40         | 40          |
+------+------------+------------+-------+----------+------------+-------------+"
    );
}

/// Twelve daily Parquet files of 4 row groups, split into byte ranges among 4 partitions (as
/// DataFusion splits large files), read ahead whole, filtered by a column the row groups carry
/// statistics for.
#[test]
fn reads_parquet_files_split_among_partitions_from_s3() {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    let s3 = target("parquet-days");
    let project = Project::new();
    write_days_pipeline(
        &project,
        "parquet",
        "SELECT dt, COUNT(*) AS even_rows, SUM(n) AS total \
         FROM days WHERE kind = 'even' AND dt <= DATE '{{ ds }}' GROUP BY dt",
    );
    // Day k (2026-10-20 + k, k = 0..11) holds n = 1000 k + j, j = 0..99, `even` when j is.
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
    ]));
    let first = chrono::NaiveDate::from_ymd_opt(2026, 10, 20).expect("date");
    for k in 0..=12i64 {
        let n: Vec<i64> = (0..100).map(|j| 1000 * k + j).collect();
        let kind: Vec<&str> = (0..100).map(|j| if j % 2 == 0 { "even" } else { "odd" }).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(n)), Arc::new(StringArray::from(kind))],
        )
        .expect("batch");
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(25))
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let day = first + chrono::Days::new(k as u64);
        s3.put(&format!("exports/days/dt={day}/part-0.parquet"), bytes);
    }
    let mut command = days_run(&project, &s3);
    command
        .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "4")
        .env("DATAFUSION_OPTIMIZER_REPARTITION_FILE_MIN_SIZE", "0")
        .env("LIFEMAP_LOG", "lifemap=debug");
    let outcome = run(command);
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    // The files were read in byte ranges (the plan shows `file:start..end`).
    assert!(
        outcome.stderr.contains("part-0.parquet:0.."),
        "no split file in the plan:\n{}",
        outcome.stderr
    );

    // 12 days of 50 even rows; the even n of day k sum to 50,000 k + 2,450: over k = 0..11,
    // 50,000 × 66 + 2,450 × 12.
    assert_eq!(
        s3_mart(
            &s3,
            "per_day",
            "2026-10-31",
            "SELECT COUNT(*) AS days, MIN(dt) AS first, MAX(dt) AS last, SUM(even_rows) AS even_rows, \
             SUM(total) AS total, COUNT(*) FILTER (WHERE even_rows = 50) AS whole_days FROM t"
        ),
        "\
+------+------------+------------+-----------+---------+------------+
| days | first      | last       | even_rows | total   | whole_days |
+------+------------+------------+-----------+---------+------------+
| 12   | 2026-10-20 | 2026-10-31 | 600       | 3329400 | 12         |
+------+------------+------------+-----------+---------+------------+"
    );
}

#[test]
fn on_s3_a_failure_between_marts_keeps_the_previous_partition() {
    let (project, s3) = s3_shop("failure");
    assert_eq!(run_on_s3(&project, &s3, &["--ds", "2026-10-31"]).code, 0);
    let before = s3.list("out/events_per_customer/ds=2026-10-31/");
    let (path, content) = fixture::late_event();
    s3.put(&format!("exports/{path}"), content);

    let outcome = run_on_s3(&project, &s3, &["--ds", "2026-10-31", "--var", "fail=true"]);
    assert_eq!(outcome.code, 1, "stderr:\n{}", outcome.stderr);
    assert_eq!(s3.list("out/events_per_customer/ds=2026-10-31/"), before);
    assert_eq!(
        s3_mart(
            &s3,
            "events_per_customer",
            "2026-10-31",
            "SELECT * FROM t ORDER BY customer_id"
        ),
        EVENTS_PER_CUSTOMER_1031
    );
    assert!(s3.list("out/_staging/").is_empty());
}

#[test]
fn on_s3_a_rerun_replaces_only_its_partition() {
    let (project, s3) = s3_shop("rerun");
    assert_eq!(run_on_s3(&project, &s3, &["--ds", "2026-10-30"]).code, 0);
    let other = s3.list("out/revenue/ds=2026-10-30/");
    let data = |names: &[String]| {
        names
            .iter()
            .find(|n| n.ends_with(".parquet"))
            .map(|n| s3.get(n))
            .expect("a data file")
    };
    assert_eq!(run_on_s3(&project, &s3, &["--ds", "2026-10-31"]).code, 0);
    let first = s3.list("out/revenue/ds=2026-10-31/");
    let first_bytes = data(&first);
    assert_eq!(run_on_s3(&project, &s3, &["--ds", "2026-10-31"]).code, 0);
    let second = s3.list("out/revenue/ds=2026-10-31/");
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 2, "the earlier run's file is removed: {second:?}");
    assert_ne!(first, second);
    assert_eq!(first_bytes, data(&second), "a rerun writes byte-identical Parquet");
    assert_eq!(s3.list("out/revenue/ds=2026-10-30/"), other);
    assert_eq!(
        s3_mart(&s3, "revenue", "2026-10-31", "SELECT * FROM t ORDER BY country"),
        REVENUE_1031
    );
}

#[test]
fn refused_credentials_are_a_configuration_error() {
    let (project, s3) = s3_shop("badkey");
    let mut command = project.lifemap();
    s3.configure(&mut command);
    command
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31"])
        .args([
            "--var",
            &format!("exports={}", s3.uri("exports")),
            "--var",
            &format!("out={}", s3.uri("out")),
        ]);
    let outcome = run(command);
    assert_eq!(outcome.code, 2, "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("hint: check the S3 credentials"),
        "{}",
        outcome.stderr
    );
    assert!(!outcome.stderr.contains("wrong-secret"));
    assert!(!outcome.stderr.contains("panicked"));
}

#[test]
fn unreachable_storage_is_a_temporary_failure() {
    let project = Project::new();
    fixture::install_pipeline(&project);
    // Fewer, faster retries than the defaults so the test is quick.
    project.write(
        "pipelines/shop.yaml",
        fixture::shop_with_s3_settings(&["max_retries: 1", "retry_timeout: 2s", "connect_timeout: 1s"]),
    );
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut command = project.lifemap();
    command
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{closed_port}"))
        .env("AWS_REGION", "us-east-1")
        .args([
            "run",
            "pipelines/shop.yaml",
            "--ds",
            "2026-10-31",
            "--var",
            "exports=s3://nowhere/exports",
            "--var",
            "out=s3://nowhere/out",
        ]);
    let outcome = run(command);
    assert_eq!(outcome.code, 75, "stderr:\n{}", outcome.stderr);
    assert_eq!(outcome.summary()["exit_code"], 75);
    assert!(outcome.stderr.contains("safe to retry"), "{}", outcome.stderr);
}

#[test]
fn missing_credentials_are_reported_before_any_request() {
    let project = Project::new();
    fixture::install_pipeline(&project);
    let mut command = project.lifemap();
    command.args([
        "run",
        "pipelines/shop.yaml",
        "--ds",
        "2026-10-31",
        "--var",
        "exports=s3://b/exports",
    ]);
    let outcome = run(command);
    assert_eq!(outcome.code, 2, "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("no S3 credentials for bucket `b`"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn on_s3_a_ds_whose_lock_another_run_holds_is_not_run() {
    let (project, s3) = s3_shop("lock");
    let held = serde_json::json!({
        "run_id": "other-run", "host": "elsewhere", "pid": 1, "acquired_at": chrono::Utc::now().to_rfc3339(),
        "expires_at": (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339()
    });
    s3.put("out/_runs/ds=2026-10-31/_lock", held.to_string());
    let outcome = run_on_s3(&project, &s3, &["--ds", "2026-10-31"]);
    assert_eq!(outcome.code, 75, "stderr:\n{}", outcome.stderr);
    assert!(s3.list("out/revenue/").is_empty());
    // The holder's lock is untouched: the refused run neither replaced nor removed it.
    let lock: serde_json::Value = serde_json::from_slice(&s3.get("out/_runs/ds=2026-10-31/_lock")).expect("json");
    assert_eq!(lock["run_id"], "other-run");
}

#[test]
fn the_s3_secret_reaches_no_log_result_plan_or_error() {
    let (project, s3) = s3_shop("secrets");
    let verbose = "lifemap=trace,object_store=trace,reqwest=trace,info";
    let mut texts = Vec::new();

    let mut command = s3_command(&project, &s3, &["--ds", "2026-10-31", "--log-format", "json"]);
    command.env("LIFEMAP_LOG", verbose);
    let outcome = run(command);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    texts.extend([outcome.stdout, outcome.stderr]);
    texts.push(String::from_utf8_lossy(&s3.get("out/_runs/ds=2026-10-31/run_results.json")).into_owned());

    let mut plan = project.lifemap();
    s3.configure(&mut plan);
    plan.env("LIFEMAP_LOG", verbose)
        .args(["plan", "pipelines/shop.yaml", "--ds", "2026-10-31"])
        .args(["--var", &format!("exports={}", s3.uri("exports"))]);
    let outcome = run(plan);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    texts.extend([outcome.stdout, outcome.stderr]);

    // A refused secret: the error names the problem, not the secret.
    let wrong = "wrong-Secret-0123456789";
    let mut refused = project.lifemap();
    s3.configure(&mut refused);
    refused
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .env("LIFEMAP_LOG", verbose)
        .args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31"])
        .args(["--var", &format!("exports={}", s3.uri("exports"))]);
    let outcome = run(refused);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    texts.extend([outcome.stdout, outcome.stderr]);

    for text in &texts {
        for secret in [s3.secret.as_str(), wrong] {
            assert!(!text.contains(secret), "the secret leaked:\n{text}");
        }
    }
}

mod storage_faults;

/// On S3 an object re-exported with the same size is told by its ETag, and a run removes what a
/// killed run left there (no folders, no rename) before anything else.
#[test]
fn on_s3_a_same_size_re_export_is_told_by_its_etag_and_leftovers_go_first() {
    let (project, s3) = s3_shop("inputs");
    let first = run_on_s3(&project, &s3, &["--ds", "2026-10-31"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.summary()["inputs"]["new"], 5);

    // o1 re-exported at 12.5 instead of 10.5: the same number of bytes.
    s3.put(
        "exports/orders/orders.csv",
        "order_id,customer_id,amount,status\no1,c1,12.5,completed\no2,c2,4.5,completed\no3,c1,2.0,refunded\n",
    );
    s3.put("out/_staging/ds=2026-10-31/dead-run/revenue/part-0.parquet", "staged");
    s3.put("out/revenue/ds=2026-10-31/part-dead-run-00000.parquet", "uncommitted");
    let second = run_on_s3(&project, &s3, &["--ds", "2026-10-31"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(
        second.summary()["inputs"],
        serde_json::json!({"objects": 5, "new": 0, "late": 0, "changed": 1, "removed": 0, "removed_partitions": 0})
    );
    assert!(s3.list("out/_staging/").is_empty());
    let partition = s3.list("out/revenue/ds=2026-10-31/");
    assert_eq!(partition.len(), 2, "_SUCCESS and one data file: {partition:?}");
    assert!(!partition.iter().any(|name| name.contains("dead-run")));
    assert_eq!(
        s3_mart(&s3, "revenue", "2026-10-31", "SELECT * FROM t ORDER BY country"),
        "\
+---------+---------+-----------+
| country | revenue | customers |
+---------+---------+-----------+
| DE      | 12.5    | 1         |
| US      | 4.5     | 1         |
+---------+---------+-----------+"
    );
}

#[test]
fn on_s3_of_ten_runs_of_one_ds_started_together_exactly_one_proceeds() {
    // Garage (in CI) accepts `If-None-Match` and ignores it: the claims decide, not the store.
    let (project, s3) = s3_shop("ten-at-once");
    crate::locks::slow_shop(&project);
    let commands = (0..10)
        .map(|_| s3_command(&project, &s3, &["--ds", "2026-10-31"]))
        .collect();
    let outcomes = crate::locks::together(commands);
    crate::locks::exactly_one_proceeded(&outcomes);
    assert!(s3.list("out/_runs/ds=2026-10-31/_lock").is_empty());
    assert!(s3.list("out/_runs/ds=2026-10-31/_lock.claims/").is_empty());
}
