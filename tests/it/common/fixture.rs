//! A small shop whose marts are easy to work out by hand.
//!
//! Events (NDJSON, Hive-partitioned by `dt`, some gzip'd and some not), orders (CSV) and customers
//! (Parquet). For `ds = 2026-10-31`:
//! - events_per_customer: c1 → 2 events (e1 on 10-30, e3 on 10-31; e4 on 11-01 is after ds),
//!   c2 → 1 event (e2 on 10-30);
//! - revenue by country of completed orders: DE 10.5 (o1, c1), US 4.5 (o2, c2); o3 is refunded.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;

pub const PIPELINE: &str = r#"
name: shop
description: A tiny shop for tests.
vars:
  exports: exports
  out: out
  fail: "false"
sources:
  events:
    location: "{{ exports }}/events/"
    format: ndjson
    schema:
      event_id: string
      customer_id: string
      event_type: string
      occurred_at: timestamp
    partitions:
      dt: date
    ds_partition: "dt={{ ds }}"
  orders:
    location: "{{ exports }}/orders/"
    format: csv
    schema:
      order_id: string
      customer_id: string
      amount: float
      status: string
  customers:
    location: "{{ exports }}/customers/"
    format: parquet
steps:
  - name: events_per_customer
    query: |
      SELECT customer_id, COUNT(*) AS events, MIN(dt) AS first_dt
      FROM events
      WHERE dt <= DATE '{{ ds }}'
      GROUP BY customer_id
      ORDER BY customer_id
  - name: fragile
    sql: fragile.sql
  - name: revenue
    sql: revenue.sql
output:
  location: "{{ out }}"
marts:
  events_per_customer: {}
  fragile: {}
  revenue:
    parquet:
      compression: snappy
"#;

/// Fails at execution time (not planning) when `fail` is true: 'completed' is no integer.
pub const FRAGILE_SQL: &str =
    "SELECT CAST(status AS INT) AS n FROM orders WHERE {{ var('fail') }} AND order_id IS NOT NULL\n";

pub const REVENUE_SQL: &str = "\
-- Completed revenue by the customer's country.
SELECT c.country, SUM(o.amount) AS revenue, COUNT(DISTINCT o.customer_id) AS customers
FROM orders o
JOIN customers c ON c.customer_id = o.customer_id
WHERE o.status = 'completed'
GROUP BY c.country
ORDER BY c.country
";

/// The export files: (path relative to the exports root, content).
pub fn exports() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "events/dt=2026-10-30/part-0.ndjson.gz".into(),
            gzip(concat!(
                r#"{"event_id":"e1","customer_id":"c1","event_type":"view","occurred_at":"2026-10-30T10:00:00+02:00"}"#,
                "\n",
                r#"{"event_id":"e2","customer_id":"c2","event_type":"view","occurred_at":"2026-10-30T11:00:00Z"}"#,
                "\n"
            )),
        ),
        (
            "events/dt=2026-10-31/part-0.ndjson".into(),
            concat!(
                r#"{"event_id":"e3","customer_id":"c1","event_type":"purchase","occurred_at":"2026-10-31T09:00:00Z"}"#,
                "\n"
            )
            .into(),
        ),
        (
            "events/dt=2026-11-01/part-0.ndjson.gz".into(),
            gzip(concat!(
                r#"{"event_id":"e4","customer_id":"c1","event_type":"view","occurred_at":"2026-11-01T08:00:00Z"}"#,
                "\n"
            )),
        ),
        (
            "orders/orders.csv".into(),
            b"order_id,customer_id,amount,status\no1,c1,10.5,completed\no2,c2,4.5,completed\no3,c1,2.0,refunded\n"
                .to_vec(),
        ),
        ("customers/customers.parquet".into(), customers_parquet()),
        // Bookkeeping files beside data must not be read as data.
        ("customers/_SUCCESS".into(), Vec::new()),
    ]
}

/// A late event for c2 on 10-31, arriving after the first run.
pub fn late_event() -> (String, Vec<u8>) {
    (
        "events/dt=2026-10-31/part-1.ndjson".into(),
        concat!(
            r#"{"event_id":"e5","customer_id":"c2","event_type":"view","occurred_at":"2026-10-31T12:00:00Z"}"#,
            "\n"
        )
        .into(),
    )
}

pub fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

fn customers_parquet() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["c1", "c2"])),
            Arc::new(StringArray::from(vec!["DE", "US"])),
        ],
    )
    .expect("batch");
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    out
}

/// Write the pipeline and its SQL into a project; the exports go wherever the caller puts them.
pub fn install_pipeline(project: &super::Project) -> std::path::PathBuf {
    project.write("sql/fragile.sql", FRAGILE_SQL);
    project.write("sql/revenue.sql", REVENUE_SQL);
    project.write("pipelines/shop.yaml", PIPELINE)
}

/// The shop pipeline's text with `storage.s3` settings (`key: value` lines) for its S3 client.
pub fn shop_with_s3_settings(settings: &[&str]) -> String {
    let block: String = settings.iter().map(|line| format!("    {line}\n")).collect();
    PIPELINE.replace("sources:", &format!("storage:\n  s3:\n{block}sources:"))
}

/// Pipeline, SQL and exports in a local project.
pub fn local_shop() -> super::Project {
    let project = super::Project::new();
    install_pipeline(&project);
    for (path, content) in exports() {
        project.write(&format!("exports/{path}"), content);
    }
    project
}

pub const EVENTS_PER_CUSTOMER_1031: &str = "\
+-------------+--------+------------+
| customer_id | events | first_dt   |
+-------------+--------+------------+
| c1          | 2      | 2026-10-30 |
| c2          | 1      | 2026-10-30 |
+-------------+--------+------------+";

pub const REVENUE_1031: &str = "\
+---------+---------+-----------+
| country | revenue | customers |
+---------+---------+-----------+
| DE      | 10.5    | 1         |
| US      | 4.5     | 1         |
+---------+---------+-----------+";

/// The smallest valid pipeline: a CSV of orders (`data/orders/`) and one step summing them into
/// the mart `totals`. `lifemap validate`'s cases break it one place at a time (their expected
/// line numbers count from its first line).
pub const ORDERS_PIPELINE: &str = "\
name: v
sources:
  orders:
    location: data/orders/
    format: csv
    schema:
      order_id: string
      amount: float
steps:
  - name: totals
    query: SELECT SUM(amount) AS total FROM orders
output:
  location: out
marts:
  totals: {}
";
