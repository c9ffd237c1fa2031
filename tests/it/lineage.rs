//! OpenLineage: a run POSTs START and COMPLETE (FAIL on failure) to a real local HTTP server,
//! with the sources as inputs, the mart partitions as outputs (schema, rows, bytes), the checks as
//! assertions and the parent run it was given; a file transport writes the same events; an
//! endpoint that is down never fails the run. (CI validates the events against the spec's JSON
//! schemas: tests/lineage/schema_check.sh.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::fixture::local_shop;
use crate::common::{Project, run_expecting};

/// A lineage endpoint: records each POST's path, headers and JSON body, answers `status`.
struct Endpoint {
    url: String,
    received: Arc<Mutex<Vec<(String, String, Value)>>>,
}

fn endpoint(status: u16) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                headers.push_str(&line);
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
            sink.lock().expect("sink").push((path, headers, event));
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Endpoint { url, received }
}

fn shop_run(project: &Project) -> assert_cmd::Command {
    let mut command = project.lifemap();
    command
        .args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31"])
        .env_remove("OPENLINEAGE_URL")
        .env_remove("OPENLINEAGE__TRANSPORT__TYPE")
        .env_remove("OPENLINEAGE_PARENT_ID");
    command
}

fn output<'a>(event: &'a Value, suffix: &str) -> &'a Value {
    event["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no output named …{suffix}: {event}"))
}

#[test]
fn a_run_posts_start_and_complete_with_its_datasets_checks_and_parent() {
    let server = endpoint(200);
    let project = local_shop();
    let parent = "01932f6e-7f4b-7a9c-8d2e-3f4a5b6c7d8e";
    let mut command = shop_run(&project);
    command
        .env("OPENLINEAGE_URL", &server.url)
        .env("OPENLINEAGE_API_KEY", "lineage-key")
        .env("OPENLINEAGE_NAMESPACE", "acme")
        .env(
            "OPENLINEAGE_PARENT_ID",
            format!("airflow/shop_dag.run_pipeline/{parent}"),
        );
    let summary = run_expecting(command, 0).summary();
    let results: Value = serde_json::from_slice(
        &std::fs::read(project.path("out/_runs/ds=2026-10-31/run_results.json")).expect("results"),
    )
    .expect("json");
    let received = server.received.lock().expect("received").clone();
    assert_eq!(received.len(), 2, "{received:?}");
    let (path, headers, start) = &received[0];
    assert_eq!(path, "/api/v1/lineage");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("authorization: bearer lineage-key"),
        "{headers}"
    );
    let complete = &received[1].2;
    assert_eq!(start["eventType"], "START");
    assert_eq!(complete["eventType"], "COMPLETE");
    let run_id = results["lineage_run_id"].as_str().expect("lineage_run_id");
    assert_eq!(start["run"]["runId"], run_id);
    assert_eq!(complete["run"]["runId"], run_id);
    assert_eq!(
        complete["job"],
        serde_json::json!({
            "namespace": "acme",
            "name": "shop",
            "facets": complete["job"]["facets"].clone(),
        })
    );
    assert_eq!(complete["run"]["facets"]["parent"]["run"]["runId"], parent);
    assert_eq!(
        complete["run"]["facets"]["parent"]["job"]["name"],
        "shop_dag.run_pipeline"
    );

    // Inputs: the three sources, the events with their declared columns and partition.
    let inputs: Vec<&str> = complete["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(inputs.len(), 3);
    let exports = project.path("exports");
    assert!(
        inputs.contains(&format!("{}/events", exports.display()).as_str()),
        "{inputs:?}"
    );
    let events = &complete["inputs"][0];
    assert_eq!(events["namespace"], "file");
    let columns: Vec<&str> = events["facets"]["schema"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(columns, ["event_id", "customer_id", "event_type", "occurred_at", "dt"]);

    // Outputs: each mart partition, with what run_results.json says of it.
    for mart in results["marts"].as_array().expect("marts") {
        let name = mart["name"].as_str().expect("name");
        let dataset = output(complete, &format!("out/{name}/ds=2026-10-31"));
        let statistics = &dataset["outputFacets"]["outputStatistics"];
        assert_eq!(statistics["rowCount"], mart["rows"], "{name}");
        assert_eq!(statistics["size"], mart["bytes"], "{name}");
    }
    let revenue = output(complete, "out/revenue/ds=2026-10-31");
    let fields: Vec<&str> = revenue["facets"]["schema"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(fields, ["country", "revenue", "customers"]);
    assert_eq!(summary["status"], "success");
}

#[test]
fn a_failed_run_sends_fail_with_its_error_and_a_down_endpoint_fails_nothing() {
    let server = endpoint(200);
    let project = local_shop();
    project.write("sql/revenue.sql", "SELECT no_such_column FROM orders");
    let mut command = shop_run(&project);
    command.env("OPENLINEAGE_URL", &server.url);
    run_expecting(command, 1);
    let received = server.received.lock().expect("received").clone();
    let fail = &received.last().expect("an event").2;
    assert_eq!(fail["eventType"], "FAIL");
    let message = fail["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("step `revenue`"), "{message}");
    assert_eq!(fail["run"]["facets"]["errorMessage"]["programmingLanguage"], "Rust");

    // An endpoint that refuses every event, then one that is not there: the run succeeds.
    let refusing = endpoint(503);
    let healthy = local_shop();
    let mut command = shop_run(&healthy);
    command.env("OPENLINEAGE_URL", &refusing.url);
    let outcome = run_expecting(command, 0);
    assert!(outcome.stderr.contains("lineage event not sent"), "{}", outcome.stderr);
    let mut command = shop_run(&healthy);
    command.env(
        "OPENLINEAGE_URL",
        format!("http://127.0.0.1:{}", crate::common::smtp::closed_port()),
    );
    run_expecting(command, 0);
}

#[test]
fn the_file_transport_appends_one_event_per_line() {
    let project = local_shop();
    let log = project.path("lineage.jsonl");
    let mut command = shop_run(&project);
    command
        .env("OPENLINEAGE__TRANSPORT__TYPE", "file")
        .env("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", &log);
    run_expecting(command, 0);
    let text = std::fs::read_to_string(&log).expect("lineage file");
    let kinds: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON event per line")["eventType"].to_string())
        .collect();
    assert_eq!(kinds, ["\"START\"", "\"COMPLETE\""]);
}
