//! Broken input files: each gives a clear error naming the source (or is read), never a panic,
//! and a failed run leaves the published partitions as they were.

use crate::common::{Project, first_column, run, run_expecting};

const PIPELINE: &str = r#"
name: hostile
sources:
  lines:
    location: exports/lines/
    format: lines
  orders:
    location: exports/orders/
    format: csv
    schema: { order_id: string, amount: string }
  typed:
    location: exports/typed/
    format: csv
    schema: { id: string, amount: double }
steps:
  - name: line_stats
    query: SELECT COUNT(*) AS lines, COALESCE(MAX(length(line)), 0) AS longest FROM lines
  - name: order_count
    query: SELECT COUNT(*) AS orders FROM orders
  - name: typed_total
    query: SELECT SUM(amount) AS total FROM typed
  - name: order_amounts
    query: SELECT string_agg(order_id || '=' || amount, ' ' ORDER BY order_id) AS amounts FROM orders
output:
  location: out
marts:
  line_stats: {}
  order_count: {}
  order_amounts: {}
  typed_total: {}
"#;

/// A project that has published once from good files.
fn published_project() -> Project {
    let project = Project::new();
    project.write("pipelines/hostile.yaml", PIPELINE);
    project.write("exports/lines/good.ndjson", "{\"a\":1}\n{\"a\":2}\n");
    project.write("exports/orders/good.csv", "order_id,amount\no1,5\n");
    project.write("exports/typed/good.csv", "id,amount\na,1.5\n");
    let command = hostile_run(&project);
    run_expecting(command, 0);
    project
}

/// `lifemap run` of the hostile pipeline for ds 2026-10-31.
fn hostile_run(project: &Project) -> assert_cmd::Command {
    let mut command = project.lifemap();
    command.args(["run", "pipelines/hostile.yaml", "--ds", "2026-10-31"]);
    command
}

fn success_marker(project: &Project) -> Vec<u8> {
    std::fs::read(project.path("out/line_stats/ds=2026-10-31/_SUCCESS")).expect("_SUCCESS")
}

/// Run with `file` written, expect exit 1 naming `source` and `detail`; the published partition stays.
fn assert_refused(file: &str, content: Vec<u8>, source: &str, detail: &str) {
    let project = published_project();
    let before = success_marker(&project);
    project.write(file, content);
    let command = hostile_run(&project);
    let outcome = run(command);
    assert_eq!(outcome.code, 1, "{file}: {}", outcome.stderr);
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!("source `{source}`")) && outcome.stderr.contains(detail),
        "{file}: expected `{source}` and `{detail}` in:\n{}",
        outcome.stderr
    );
    assert_eq!(success_marker(&project), before, "the published partition is untouched");
}

#[test]
fn a_truncated_gzip_is_a_clear_error() {
    let whole = crate::common::fixture::gzip(&"{\"a\":1}\n".repeat(50_000));
    assert_refused(
        "exports/lines/cut.ndjson.gz",
        whole[..whole.len() / 2].to_vec(),
        "lines",
        "incomplete deflate stream",
    );
}

#[test]
fn invalid_utf8_is_a_clear_error() {
    assert_refused(
        "exports/lines/latin1.ndjson",
        b"{\"a\":1}\n{\"name\":\"Andr\xe9\"}\n".to_vec(),
        "lines",
        "invalid UTF-8 data for line 2",
    );
}

#[test]
fn a_csv_row_with_a_wrong_column_count_is_a_clear_error() {
    assert_refused(
        "exports/orders/bad.csv",
        b"order_id,amount\no2,5,surprise\n".to_vec(),
        "orders",
        "incorrect number of fields for line 2, expected 2 got 3",
    );
}

#[test]
fn an_empty_file_and_a_100_mb_line_are_read() {
    let project = published_project();
    project.write("exports/orders/empty.csv", "");
    let long_line = format!("{{\"a\":\"{}\"}}\n", "x".repeat(100 * 1024 * 1024));
    project.write("exports/lines/long.ndjson", &long_line);
    let command = hostile_run(&project);
    run_expecting(command, 0);
    assert_eq!(
        first_column(
            &project.path("out/line_stats/ds=2026-10-31/"),
            "SELECT concat_ws('|', lines, longest) FROM t"
        ),
        [format!("3|{}", long_line.len() - 1)]
    );
    assert_eq!(
        first_column(&project.path("out/order_count/ds=2026-10-31/"), "SELECT orders FROM t"),
        ["1"]
    );
}

#[test]
fn a_csv_file_with_an_added_or_reordered_column_is_read_by_name() {
    let project = published_project();
    project.write("exports/orders/later.csv", "order_id,amount,coupon\no2,7,SPRING\n");
    project.write("exports/orders/reordered.csv", "amount,order_id\n9,o3\n");
    let command = hostile_run(&project);
    run_expecting(command, 0);
    assert_eq!(
        first_column(
            &project.path("out/order_amounts/ds=2026-10-31/"),
            "SELECT amounts FROM t"
        ),
        ["o1=5 o2=7 o3=9"]
    );
}

#[test]
fn a_csv_file_without_a_declared_column_is_a_clear_error() {
    assert_refused(
        "exports/orders/short.csv",
        b"order_id,total\no4,5\n".to_vec(),
        "orders",
        "short.csv has no column `amount` (its header: order_id, total)",
    );
}

#[test]
fn a_value_of_the_wrong_type_for_a_declared_column_is_a_clear_error() {
    assert_refused(
        "exports/typed/bad.csv",
        b"id,amount\nb,lots\n".to_vec(),
        "typed",
        "Error while parsing value 'lots' as type 'Float64' for column 1",
    );
}
