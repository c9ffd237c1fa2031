//! `lifemap sample-data` and the bundled pipeline on it.

use std::io::Read;

use crate::common::{Project, bundled_run, files_below, mart_bytes, run_expecting};

fn generate(project: &Project, out: &str, seed: &str) -> serde_json::Value {
    generate_with(project, out, seed, "60", &[])
}

fn generate_with(project: &Project, out: &str, seed: &str, customers: &str, extra: &[&str]) -> serde_json::Value {
    let mut command = project.lifemap();
    command.args([
        "sample-data",
        "--customers",
        customers,
        "--days",
        "40",
        "--seed",
        seed,
        "--out",
        out,
    ]);
    command.args(extra);
    let outcome = run_expecting(command, 0);
    serde_json::from_str(outcome.stdout.trim()).expect("stats JSON")
}

fn gunzip(path: &std::path::Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let project = Project::new();
    let first = generate(&project, "a", "7");
    let second = generate(&project, "b", "7");
    let other = generate(&project, "c", "8");
    assert_eq!(first, second);
    let files = files_below(&project.path("a"));
    assert_eq!(files, files_below(&project.path("b")));
    for file in &files {
        assert_eq!(
            std::fs::read(project.path(&format!("a/{file}"))).ok(),
            std::fs::read(project.path(&format!("b/{file}"))).ok(),
            "{file}"
        );
    }
    assert_ne!(
        std::fs::read(project.path("a/orders/orders.csv.gz")).ok(),
        std::fs::read(project.path("c/orders/orders.csv.gz")).ok()
    );
    assert_ne!(first, other);
}

#[test]
fn the_files_hold_what_the_stats_say_in_the_contract_layout() {
    let project = Project::new();
    let stats = generate(&project, "x", "1");
    let files = files_below(&project.path("x"));
    let event_files: Vec<&String> = files.iter().filter(|f| f.starts_with("events/dt=")).collect();
    assert!(event_files.iter().all(|f| f.ends_with("/part-00000.ndjson.gz")));
    assert_eq!(stats["files"].as_u64(), Some(files.len() as u64));

    // Every event line is counted once; truncated lines are bad rows on top of the events.
    let lines: usize = event_files
        .iter()
        .map(|f| gunzip(&project.path(&format!("x/{f}"))).lines().count())
        .sum();
    let events = stats["events"].as_u64().expect("events") as usize;
    assert!(lines >= events, "{lines} lines for {events} events");
    let orders = gunzip(&project.path("x/orders/orders.csv.gz"));
    assert_eq!(
        orders.lines().next(),
        Some("order_id,customer_id,ordered_at,amount,currency,category,channel,status")
    );
    assert_eq!(
        orders.lines().count() as u64 - 1,
        stats["orders"].as_u64().expect("orders")
    );
    let customers = std::fs::read_to_string(project.path("x/customers/customers.csv")).expect("customers");
    assert_eq!(customers.lines().count(), 61);
    let feedback = std::fs::read_to_string(project.path("x/feedback/feedback.csv")).expect("feedback");
    assert_eq!(
        feedback.lines().count() as u64 - 1,
        stats["feedback"].as_u64().expect("feedback")
    );
}

#[test]
fn the_bundled_pipeline_runs_on_generated_data() {
    let project = Project::new();
    generate(&project, "exports", "3");
    let command = bundled_run(&project, "exports", "marts");
    let outcome = run_expecting(command, 0);
    let summary = outcome.summary();
    assert_eq!(summary["status"], "success");
    assert!(
        summary["rows"]["customer_journey"].as_u64().is_some_and(|n| n > 0),
        "{summary}"
    );
    assert!(project.path("marts/quarantine/ds=2026-10-31/_SUCCESS").exists());
}

#[test]
fn parquet_exports_give_the_marts_of_the_same_events_as_ndjson() {
    let project = Project::new();
    // Enough customers for every kind of bad event row.
    let ndjson = generate_with(&project, "ndjson", "5", "400", &[]);
    let parquet = generate_with(&project, "parquet", "5", "400", &["--events-format", "parquet"]);
    let event_files: Vec<String> = files_below(&project.path("parquet/events"));
    assert!(!event_files.is_empty());
    assert!(
        event_files
            .iter()
            .all(|f| f.starts_with("dt=") && f.ends_with("/part-00000.parquet"))
    );
    for key in [
        "customers",
        "prospects",
        "events",
        "orders",
        "feedback",
        "late_events",
        "files",
    ] {
        assert_eq!(ndjson[key], parquet[key], "{key}");
    }

    run_expecting(bundled_run(&project, "ndjson", "marts-ndjson"), 0);
    let mut command = bundled_run(&project, "parquet", "marts-parquet");
    command.args(["--var", "events_format=parquet"]);
    run_expecting(command, 0);

    let mut from_ndjson = mart_bytes(&project, "marts-ndjson");
    let mut from_parquet = mart_bytes(&project, "marts-parquet");
    assert_eq!(from_ndjson.len(), 11);
    // A truncated NDJSON line cannot be a Parquet row: the one difference is in the quarantine.
    from_ndjson.remove("quarantine");
    from_parquet.remove("quarantine");
    assert!(from_ndjson == from_parquet, "marts differ between the export formats");

    let by_reason = |marts: &str| {
        crate::common::first_column(
            &project.path(&format!("{marts}/quarantine/ds=2026-10-31/")),
            "SELECT concat(reason, '=', COUNT(*)) FROM t WHERE source = 'events' GROUP BY reason ORDER BY reason",
        )
    };
    let ndjson_reasons = by_reason("marts-ndjson");
    let parquet_reasons = by_reason("marts-parquet");
    let malformed: Vec<&String> = ndjson_reasons.iter().filter(|r| r.starts_with("malformed=")).collect();
    assert_eq!(malformed.len(), 1, "{ndjson_reasons:?}");
    let truncated: u64 = malformed[0]["malformed=".len()..].parse().expect("count");
    let bad_rows = |stats: &serde_json::Value| stats["bad_rows"].as_u64().expect("bad_rows");
    assert_eq!(bad_rows(&ndjson) - bad_rows(&parquet), truncated);
    let without_malformed: Vec<&String> = ndjson_reasons.iter().filter(|r| !r.starts_with("malformed=")).collect();
    assert_eq!(parquet_reasons.iter().collect::<Vec<_>>(), without_malformed);
}
