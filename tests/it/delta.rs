//! Delta Lake marts (`format: delta`): each published partition is one commit of the mart's Delta
//! table, a rerun replaces its partition in a new version while earlier versions stay readable,
//! `run_results.json` names the version of each mart, and leftovers of killed runs go without
//! touching files earlier versions need. On local disk and on a real S3-compatible server.

use std::collections::BTreeMap;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde_json::Value;

use crate::common::s3::{S3Target, target};
use crate::common::{Project, block_on, files_below, run_expecting};

/// Orders per day; `amount` and `seen_at` have types Delta spells differently (unsigned,
/// nanoseconds), which lifemap casts.
/// `kept_orders` carries a `forget` condition, so its replaced files are deleted at once.
fn pipeline() -> String {
    r#"
name: delta_shop
sources:
  orders:
    location: "{{ exports }}/{{ ds }}/"
    format: csv
    schema: { order_id: string, amount: string }
vars:
  exports: exports
  out: out
steps:
  - name: orders_seen
    query: |
      SELECT order_id, CAST(amount AS BIGINT UNSIGNED) AS amount,
             TIMESTAMP '{{ ds }} 06:00:00' AS seen_at
      FROM orders
  - name: kept_orders
    query: SELECT order_id FROM orders
output:
  location: "{{ out }}"
  format: delta
marts:
  orders_seen: {}
  kept_orders:
    forget: order_id = 'never'
"#
    .to_string()
}

fn orders(count: usize) -> String {
    std::iter::once("order_id,amount".to_string())
        .chain((0..count).map(|i| format!("o{i},{}", i + 1)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Delta table at `table` as of `version` (the latest when `None`).
async fn open_table(ctx: &SessionContext, table: &str, version: Option<u64>) -> deltalake_core::DeltaTable {
    let location = lifemap::storage::resolve(ctx, table).expect("location");
    lifemap::delta::open_version(&location, version)
        .await
        .expect("open")
        .expect("a Delta table")
}

/// Rows per `ds` of the Delta table at `table` as of `version` (the latest when `None`), read
/// from the files its log lists at that version.
fn rows_by_ds(ctx: &SessionContext, table: &str, version: Option<u64>) -> BTreeMap<String, usize> {
    block_on(async {
        let delta = open_table(ctx, table, version).await;
        let snapshot = delta.snapshot().expect("snapshot");
        let mut rows = BTreeMap::new();
        for file in snapshot.log_data() {
            let ds = file.partition_values_map()["ds"].clone().expect("ds");
            let url = format!("{}/{}", table.trim_end_matches('/'), file.path());
            let count = ctx
                .read_parquet(url, ParquetReadOptions::default())
                .await
                .expect("read a file the log lists")
                .count()
                .await
                .expect("count");
            *rows.entry(ds).or_insert(0) += count;
        }
        rows
    })
}

fn schema_of(ctx: &SessionContext, table: &str) -> Vec<String> {
    block_on(async {
        let schema = open_table(ctx, table, None)
            .await
            .snapshot()
            .expect("snapshot")
            .schema();
        schema
            .fields()
            .map(|field| format!("{} {}", field.name(), field.data_type()))
            .collect()
    })
}

fn delta_versions(results: &Value) -> BTreeMap<String, u64> {
    results["marts"]
        .as_array()
        .expect("marts")
        .iter()
        .map(|mart| {
            let version = mart["delta_version"].as_u64().expect("delta_version");
            (mart["name"].as_str().expect("name").to_string(), version)
        })
        .collect()
}

fn versions(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(name, v)| (name.to_string(), *v)).collect()
}

#[test]
fn a_delta_mart_commits_each_partition_and_keeps_earlier_versions_readable() {
    let project = Project::new();
    project.write("pipelines/shop.yaml", pipeline());
    project.write("exports/2026-10-01/orders.csv", orders(10));
    project.write("exports/2026-10-02/orders.csv", orders(14));
    let run = |ds: &str| {
        let mut command = project.lifemap();
        command.args(["run", "pipelines/shop.yaml", "--ds", ds]);
        run_expecting(command, 0);
        let results: Value = serde_json::from_slice(
            &std::fs::read(project.path(&format!("out/_runs/ds={ds}/run_results.json"))).expect("results"),
        )
        .expect("json");
        delta_versions(&results)
    };
    // Version 0 creates each table; each run commits one version per mart.
    assert_eq!(run("2026-10-01"), versions(&[("orders_seen", 1), ("kept_orders", 1)]));
    assert_eq!(run("2026-10-02"), versions(&[("orders_seen", 2), ("kept_orders", 2)]));
    project.write("exports/2026-10-01/orders.csv", orders(12));
    // A killed run's file in a partition: never in the log, so the next run of that ds removes it.
    project.write("out/orders_seen/ds=2026-10-01/part-dead-00000.parquet", "not parquet");
    assert_eq!(run("2026-10-01"), versions(&[("orders_seen", 3), ("kept_orders", 3)]));
    assert!(
        !project
            .path("out/orders_seen/ds=2026-10-01/part-dead-00000.parquet")
            .exists()
    );

    let ctx = SessionContext::new();
    let table = project.path("out/orders_seen");
    let table = table.to_str().expect("utf-8");
    let by_ds = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs.iter().map(|(ds, n)| (ds.to_string(), *n)).collect()
    };
    assert_eq!(
        rows_by_ds(&ctx, table, None),
        by_ds(&[("2026-10-01", 12), ("2026-10-02", 14)])
    );
    // Time travel: the versions before the rerun still read as they were published.
    assert_eq!(rows_by_ds(&ctx, table, Some(1)), by_ds(&[("2026-10-01", 10)]));
    assert_eq!(
        rows_by_ds(&ctx, table, Some(2)),
        by_ds(&[("2026-10-01", 10), ("2026-10-02", 14)])
    );
    assert_eq!(
        schema_of(&ctx, table),
        ["order_id string", "amount long", "seen_at timestamp_ntz", "ds date"]
    );
    // `_SUCCESS` (lifemap's own readers) names the same version as run_results.json.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(project.path("out/orders_seen/ds=2026-10-01/_SUCCESS")).expect("_SUCCESS"),
    )
    .expect("json");
    assert_eq!(manifest["delta_version"], 3);
    assert_eq!(manifest["rows"], 12);

    // orders_seen keeps the replaced file for time travel; kept_orders (with `forget`) does not.
    let data_files = |mart: &str| {
        files_below(&project.path(&format!("out/{mart}/ds=2026-10-01")))
            .into_iter()
            .filter(|f| f.ends_with(".parquet"))
            .count()
    };
    assert_eq!(data_files("orders_seen"), 2);
    assert_eq!(data_files("kept_orders"), 1);

    // Nothing was removed long enough ago for vacuum to delete it.
    let mut cleanup = project.lifemap();
    cleanup.args(["cleanup", "pipelines/shop.yaml"]);
    let summary = run_expecting(cleanup, 0).summary();
    assert_eq!(
        summary["vacuumed"],
        serde_json::json!({"orders_seen": 0, "kept_orders": 0})
    );
    assert_eq!(data_files("orders_seen"), 2);
}

#[test]
fn on_s3_a_delta_mart_commits_each_partition_and_keeps_earlier_versions_readable() {
    let s3: S3Target = target("delta");
    let project = Project::new();
    project.write("pipelines/shop.yaml", pipeline());
    s3.put("exports/2026-10-01/orders.csv", orders(10));
    s3.put("exports/2026-10-02/orders.csv", orders(14));
    let run = |ds: &str| {
        let mut command = project.lifemap();
        s3.configure(&mut command);
        command
            .args(["run", "pipelines/shop.yaml", "--ds", ds])
            .args(["--var", &format!("exports={}", s3.uri("exports"))])
            .args(["--var", &format!("out={}", s3.uri("out"))]);
        run_expecting(command, 0).summary()
    };
    run("2026-10-01");
    run("2026-10-02");
    s3.put("exports/2026-10-01/orders.csv", orders(12));
    run("2026-10-01");
    let results: Value = serde_json::from_slice(&s3.get("out/_runs/ds=2026-10-01/run_results.json")).expect("json");
    assert_eq!(
        delta_versions(&results),
        versions(&[("orders_seen", 3), ("kept_orders", 3)])
    );
    let ctx = s3.session();
    let table = s3.uri("out/orders_seen");
    let latest = rows_by_ds(&ctx, &table, None);
    assert_eq!(latest.get("2026-10-01"), Some(&12));
    assert_eq!(latest.get("2026-10-02"), Some(&14));
    assert_eq!(rows_by_ds(&ctx, &table, Some(2)).get("2026-10-01"), Some(&10));
    assert_eq!(s3.list("out/orders_seen/_delta_log/").len(), 4, "versions 0 to 3");
}

#[test]
fn an_unknown_mart_format_is_refused_with_its_place() {
    let project = Project::new();
    let broken = pipeline().replace("  kept_orders:\n", "  kept_orders:\n    format: iceberg\n");
    project.write("pipelines/shop.yaml", broken);
    let mut command = project.lifemap();
    command.args(["validate", "pipelines/shop.yaml"]);
    let outcome = run_expecting(command, 2);
    assert!(
        outcome
            .stderr
            .contains("marts.kept_orders.format: `iceberg` is not a mart format: use `parquet` or `delta`"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("pipelines/shop.yaml:25:5:"),
        "{}",
        outcome.stderr
    );
}
