//! `lifemap sample-data` and the bundled pipeline on it.

use std::io::Read;

use crate::common::{Project, bundled_run, files_below, run_expecting};

fn generate(project: &Project, out: &str, seed: &str) -> serde_json::Value {
    let mut command = project.lifemap();
    command.args([
        "sample-data",
        "--customers",
        "60",
        "--days",
        "40",
        "--seed",
        seed,
        "--out",
        out,
    ]);
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
