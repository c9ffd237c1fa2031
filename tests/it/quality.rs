//! Declared data-quality checks: each kind finds exactly the rows that break it, severities decide
//! what is published, `lifemap check` runs them alone, and `row_count` compares with the previous
//! published partition.

use serde_json::Value;

use crate::common::{Project, files_below, run_expecting};

/// Six orders whose faults are known: o2 twice, one order without id, one without customer,
/// one of an unknown customer (c9) with an unknown status. The newest is 2026-10-20T10:00Z.
const ORDERS: &str = "\
order_id,customer_id,ordered_at,status
o1,c1,2026-10-01T10:00:00Z,completed
o2,c1,2026-10-05T10:00:00Z,completed
o2,c2,2026-10-06T10:00:00Z,refunded
o3,,2026-10-10T10:00:00Z,completed
o4,c9,2026-10-20T10:00:00Z,lost
,c2,2026-10-12T10:00:00Z,completed
";

const CUSTOMERS: &str = "customer_id,name\nc1,Ada\nc2,Grace\n";

fn pipeline(severity: &str) -> String {
    format!(
        r#"
name: shop_checks
sources:
  orders:
    location: exports/orders/
    format: csv
    csv: {{ null_values: [""] }}
    schema: {{ order_id: string, customer_id: string, ordered_at: string, status: string }}
  customers:
    location: exports/customers/
    format: csv
    schema: {{ customer_id: string, name: string }}
steps:
  - name: stg_orders
    query: |
      SELECT *, CASE WHEN status NOT IN ('completed', 'refunded') THEN 'unknown_status' END AS reject_reason
      FROM orders
  - name: quarantine
    query: SELECT 'orders' AS source, order_id AS raw, reject_reason AS reason FROM stg_orders WHERE reject_reason IS NOT NULL
checks:
  - name: orders_have_a_customer
    severity: {severity}
    table: orders
    not_null: [customer_id]
  - name: order_ids_are_unique
    severity: {severity}
    table: orders
    unique: [order_id]
  - name: customer_ids_are_unique
    table: customers
    unique: [customer_id]
  - name: statuses_are_known
    severity: {severity}
    table: orders
    accepted_values: {{ column: status, values: [completed, refunded] }}
  - name: orders_of_known_customers
    severity: {severity}
    table: orders
    relationships: {{ column: customer_id, to: customers, field: customer_id }}
  - name: at_least_ten_orders
    severity: {severity}
    table: orders
    row_count: {{ min: 10 }}
  - name: at_most_ten_orders
    table: orders
    row_count: {{ max: 10 }}
  - name: orders_within_two_days
    severity: {severity}
    table: orders
    freshness: {{ column: ordered_at, max_age: 2d }}
  - name: orders_within_fifteen_days
    table: orders
    freshness: {{ column: ordered_at, max_age: 15d }}
  - name: a_tenth_quarantined_at_most
    severity: {severity}
    quarantine_share: {{ source: orders, max: 0.1 }}
  - name: a_fifth_quarantined_at_most
    quarantine_share: {{ source: orders, max: 0.2 }}
output:
  location: out
marts:
  stg_orders: {{}}
"#
    )
}

fn project(severity: &str) -> Project {
    let project = Project::new();
    project.write("pipelines/shop.yaml", pipeline(severity));
    project.write("exports/orders/orders.csv", ORDERS);
    project.write("exports/customers/customers.csv", CUSTOMERS);
    project
}

fn check_outcome<'a>(checks: &'a Value, name: &str) -> &'a Value {
    checks
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {checks}"))
}

#[test]
fn each_declared_check_finds_exactly_the_rows_that_break_it() {
    let project = project("warn");
    let mut command = project.lifemap();
    command.args(["check", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let outcome = run_expecting(command, 0);
    let summary = outcome.summary();
    assert_eq!(summary["status"], "success");
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["warnings"], 7);
    let checks = &summary["checks"];
    let expect = |name: &str, kind: &str, status: &str, failing_rows: u64| {
        let check = check_outcome(checks, name);
        assert_eq!(check["kind"], kind, "{check}");
        assert_eq!(check["status"], status, "{check}");
        assert_eq!(check["failing_rows"], failing_rows, "{check}");
        check.clone()
    };

    let missing = expect("orders_have_a_customer", "not_null", "failed", 1);
    assert_eq!(missing["examples"][0]["order_id"], "o3");
    let repeated = expect("order_ids_are_unique", "unique", "failed", 1);
    assert_eq!(
        repeated["examples"][0],
        serde_json::json!({"order_id": "o2", "copies": 2})
    );
    expect("customer_ids_are_unique", "unique", "passed", 0);
    let unknown = expect("statuses_are_known", "accepted_values", "failed", 1);
    assert_eq!(unknown["examples"][0]["status"], "lost");
    let orphan = expect("orders_of_known_customers", "relationships", "failed", 1);
    assert_eq!(orphan["examples"][0]["customer_id"], "c9");
    let too_few = expect("at_least_ten_orders", "row_count", "failed", 1);
    assert_eq!(too_few["examples"][0]["row_count"], 6);
    expect("at_most_ten_orders", "row_count", "passed", 0);
    let stale = expect("orders_within_two_days", "freshness", "failed", 1);
    assert_eq!(stale["examples"][0]["latest"], "2026-10-20T10:00:00");
    expect("orders_within_fifteen_days", "freshness", "passed", 0);
    // One of six orders (o4, status `lost`) is quarantined: 0.1667.
    let share = expect("a_tenth_quarantined_at_most", "quarantine_share", "failed", 1);
    assert_eq!(share["examples"][0]["quarantined"], 1);
    assert_eq!(share["examples"][0]["rows_read"], 6);
    expect("a_fifth_quarantined_at_most", "quarantine_share", "passed", 0);

    // `check` publishes nothing and writes no run results.
    assert!(
        files_below(&project.path("out")).is_empty(),
        "{:?}",
        files_below(&project.path("out"))
    );
}

#[test]
fn plan_shows_the_sql_each_declared_check_runs() {
    let project = project("warn");
    let mut command = project.lifemap();
    command.args(["plan", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let outcome = run_expecting(command, 0);
    for expected in [
        "check order_ids_are_unique (unique, warn)",
        "SELECT \"order_id\", COUNT(*) AS copies FROM \"orders\" WHERE \"order_id\" IS NOT NULL GROUP BY \"order_id\" HAVING COUNT(*) > 1",
        "check orders_within_two_days (freshness, warn)",
        "INTERVAL '172800 seconds'",
    ] {
        assert!(
            outcome.stdout.contains(expected),
            "`{expected}` not in:\n{}",
            outcome.stdout
        );
    }
}

#[test]
fn an_error_level_failure_exits_3_and_a_run_publishes_nothing() {
    let project = project("error");
    let mut check = project.lifemap();
    check.args(["check", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let outcome = run_expecting(check, 3);
    let summary = outcome.summary();
    assert_eq!(summary["errors"], 7);
    assert!(outcome.stderr.contains("orders_have_a_customer"), "{}", outcome.stderr);

    let mut run = project.lifemap();
    run.args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let outcome = run_expecting(run, 3);
    assert_eq!(outcome.summary()["status"], "failed");
    assert!(!project.path("out/stg_orders/ds=2026-10-31").exists());
    let results: Value = serde_json::from_slice(
        &std::fs::read(project.path("out/_runs/ds=2026-10-31/run_results.json")).expect("run_results.json"),
    )
    .expect("json");
    let failed: Vec<&Value> = results["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 7, "{results}");
}

const GROWING: &str = r#"
name: growing
sources:
  orders:
    location: "exports/{{ ds }}/"
    format: csv
    schema: { order_id: string }
steps:
  - name: orders_seen
    query: SELECT order_id FROM orders
checks:
  - name: orders_seen_stable
    severity: error
    table: orders_seen
    row_count: { max_change_percent: 50 }
output:
  location: out
marts:
  orders_seen: {}
"#;

fn orders(count: usize) -> String {
    std::iter::once("order_id".to_string())
        .chain((0..count).map(|i| format!("o{i}")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn row_count_change_is_measured_against_the_previous_published_partition() {
    let project = Project::new();
    project.write("pipelines/growing.yaml", GROWING);
    project.write("exports/2026-10-01/orders.csv", orders(10));
    project.write("exports/2026-10-02/orders.csv", orders(14));
    project.write("exports/2026-10-03/orders.csv", orders(30));
    let run = |ds: &str, code: i32| {
        let mut command = project.lifemap();
        command.args(["run", "pipelines/growing.yaml", "--ds", ds]);
        run_expecting(command, code);
        let results: Value = serde_json::from_slice(
            &std::fs::read(project.path(&format!("out/_runs/ds={ds}/run_results.json"))).expect("run_results.json"),
        )
        .expect("json");
        results["checks"][0].clone()
    };
    // No earlier partition: nothing to compare with, the check passes.
    let first = run("2026-10-01", 0);
    assert_eq!(first["status"], "passed");
    assert!(first.get("compared_with_ds").is_none(), "{first}");
    // 10 → 14 is +40 %.
    let second = run("2026-10-02", 0);
    assert_eq!(second["status"], "passed");
    assert_eq!(second["compared_with_ds"], "2026-10-01");
    // 14 → 30 is +114 %: blocked, and the partition is not published.
    let third = run("2026-10-03", 3);
    assert_eq!(third["status"], "failed");
    assert_eq!(third["compared_with_ds"], "2026-10-02");
    assert_eq!(
        third["examples"][0],
        serde_json::json!({"row_count": 30, "previous_rows": 14})
    );
    assert!(!project.path("out/orders_seen/ds=2026-10-03").exists());
    // A rerun of an earlier ds compares with the partition before it, not with a later one.
    let rerun = run("2026-10-02", 0);
    assert_eq!(rerun["compared_with_ds"], "2026-10-01");
}

#[test]
fn a_check_with_two_kinds_or_an_unknown_table_is_refused_with_its_place() {
    let project = project("warn");
    let broken = pipeline("warn")
        .replace(
            "    table: customers\n    unique: [customer_id]\n",
            "    table: customers\n    unique: [customer_id]\n    not_null: [name]\n",
        )
        .replace("to: customers,", "to: customer,");
    project.write("pipelines/shop.yaml", broken);
    let mut command = project.lifemap();
    command.args(["validate", "pipelines/shop.yaml"]);
    let outcome = run_expecting(command, 2);
    let text = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(
        text.contains("pipelines/shop.yaml:29:5: checks.customer_ids_are_unique"),
        "{text}"
    );
    assert!(text.contains("exactly one of"), "{text}");
    assert!(text.contains("found not_null, unique"), "{text}");
    assert!(
        text.contains("shop.yaml:40:30: checks.orders_of_known_customers: check `orders_of_known_customers` reads `customer`, which is neither a source nor a step"),
        "{text}"
    );
    assert!(text.contains("did you mean `customers`?"), "{text}");
}
