//! What changed in the exports between runs: new, late, re-exported and removed objects, and a
//! removed partition stopping the run (`_state/inventory.json`).

use datafusion::prelude::SessionContext;

use crate::common::fixture::{self, late_event};
use crate::common::{Outcome, Project, files_below, query_parquet, run_expecting};

fn run_shop(project: &Project, ds: &str, code: i32) -> Outcome {
    let mut command = project.lifemap();
    command.args(["run", "pipelines/shop.yaml", "--ds", ds]);
    run_expecting(command, code)
}

fn inputs_of(project: &Project, ds: &str) -> serde_json::Value {
    let path = project.path(&format!("out/_runs/ds={ds}/run_results.json"));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("run_results.json")).expect("json");
    results["inputs"].clone()
}

fn events_per_customer(project: &Project, ds: &str) -> String {
    let folder = project.path(&format!("out/events_per_customer/ds={ds}/"));
    query_parquet(
        &SessionContext::new(),
        folder.to_str().expect("utf-8 path"),
        "SELECT * FROM t ORDER BY customer_id",
    )
}

/// The paths of a list in `inputs`, relative to the exports folder.
fn relative(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|path| {
            let path = path.as_str().expect("a path");
            path[path.find("exports/").expect("under exports/") + "exports/".len()..].to_string()
        })
        .collect()
}

#[test]
fn late_changed_and_removed_exports_are_reported_and_a_removed_partition_stops_the_run() {
    let project = fixture::local_shop();

    // First run: nothing to compare with. Five objects: three event files, orders, customers
    // (`customers/_SUCCESS` is bookkeeping, not listed).
    let first = run_shop(&project, "2026-10-31", 0);
    assert_eq!(
        first.summary()["inputs"],
        serde_json::json!({"objects": 5, "new": 5, "late": 0, "changed": 0, "removed": 0, "removed_partitions": 0})
    );
    let inputs = inputs_of(&project, "2026-10-31");
    assert_eq!(inputs["compared_with"], serde_json::Value::Null);
    assert_eq!(inputs["not_compared"], "no earlier successful run");
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project.path("out/_state/inventory.json")).expect("inventory.json"))
            .expect("json");
    assert_eq!(
        inventory["sources"]["events"]["objects"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(project.path("out/_runs/ds=2026-10-31/inputs.json").exists());

    // A late event filed into 10-31 (read already), orders re-exported with one more order, and a
    // new day: one late, one changed, one new.
    let (late_path, late_content) = late_event();
    project.write(&format!("exports/{late_path}"), late_content);
    project.write(
        "exports/orders/orders.csv",
        "order_id,customer_id,amount,status\no1,c1,10.5,completed\no2,c2,4.5,completed\no3,c1,2.0,refunded\n\
         o4,c2,5.5,completed\n",
    );
    project.write(
        "exports/events/dt=2026-11-02/part-0.ndjson",
        r#"{"event_id":"e6","customer_id":"c1","event_type":"view","occurred_at":"2026-11-02T08:00:00Z"}"#,
    );
    let second = run_shop(&project, "2026-11-01", 0);
    assert_eq!(
        second.summary()["inputs"],
        serde_json::json!({"objects": 7, "new": 1, "late": 1, "changed": 1, "removed": 0, "removed_partitions": 0})
    );
    let inputs = inputs_of(&project, "2026-11-01");
    assert_eq!(inputs["compared_with"]["ds"], "2026-10-31");
    assert_eq!(relative(&inputs["late"]), ["events/dt=2026-10-31/part-1.ndjson"]);
    assert_eq!(relative(&inputs["changed"]), ["orders/orders.csv"]);
    assert!(second.stderr.contains("folded into this run"), "{}", second.stderr);
    // Folded in: c2's late event counts (e2, e5); c1 has e1, e3, e4 up to 11-01.
    let folded = "\
+-------------+--------+------------+
| customer_id | events | first_dt   |
+-------------+--------+------------+
| c1          | 3      | 2026-10-30 |
| c2          | 2      | 2026-10-30 |
+-------------+--------+------------+";
    assert_eq!(events_per_customer(&project, "2026-11-01"), folded);

    // A read partition disappears: exit 3 before anything is computed, the marts untouched.
    let published = files_below(&project.path("out/events_per_customer/ds=2026-11-01"));
    std::fs::remove_dir_all(project.path("exports/events/dt=2026-10-30")).expect("remove a partition");
    let refused = run_shop(&project, "2026-11-01", 3);
    let summary = refused.summary();
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["inputs"]["removed_partitions"], 1);
    assert_eq!(
        summary["error"],
        "1 partition(s) an earlier run listed are gone from the exports: events: dt=2026-10-30"
    );
    assert!(
        summary["hint"]
            .as_str()
            .is_some_and(|hint| hint.contains("allow_removed_partitions")),
        "{summary}"
    );
    assert_eq!(
        inputs_of(&project, "2026-11-01")["removed_partitions"],
        serde_json::json!(["events: dt=2026-10-30"])
    );
    assert_eq!(
        files_below(&project.path("out/events_per_customer/ds=2026-11-01")),
        published
    );
    assert_eq!(events_per_customer(&project, "2026-11-01"), folded);

    // Allowed by the source: reported, and the run rebuilds without it (c1: e3, e4; c2: e5).
    let pipeline = std::fs::read_to_string(project.path("pipelines/shop.yaml")).expect("pipeline");
    project.write(
        "pipelines/shop.yaml",
        pipeline.replace(
            "    ds_partition: \"dt={{ ds }}\"\n",
            "    ds_partition: \"dt={{ ds }}\"\n    allow_removed_partitions: true\n",
        ),
    );
    let allowed = run_shop(&project, "2026-11-01", 0);
    assert_eq!(allowed.summary()["inputs"]["removed_partitions"], 1);
    assert_eq!(allowed.summary()["inputs"]["removed"], 1);
    assert_eq!(
        events_per_customer(&project, "2026-11-01"),
        "\
+-------------+--------+------------+
| customer_id | events | first_dt   |
+-------------+--------+------------+
| c1          | 2      | 2026-10-31 |
| c2          | 1      | 2026-10-31 |
+-------------+--------+------------+"
    );
}

#[test]
fn an_unreadable_inventory_is_a_warning_and_the_run_goes_on() {
    let project = fixture::local_shop();
    project.write("out/_state/inventory.json", "{ truncated");
    let outcome = run_shop(&project, "2026-10-31", 0);
    assert_eq!(outcome.summary()["inputs"]["new"], 5);
    let why = inputs_of(&project, "2026-10-31")["not_compared"].clone();
    assert!(
        why.as_str()
            .is_some_and(|why| why.starts_with("the last run's inventory is unreadable")),
        "{why}"
    );
    // Replaced by this run's.
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project.path("out/_state/inventory.json")).expect("inventory.json"))
            .expect("json");
    assert_eq!(inventory["ds"], "2026-10-31");
}
