//! The bundled pipeline on a Ballista cluster: a real `lifemap scheduler` and two
//! `lifemap executor` processes on loopback, reading and writing the S3 test server, against a
//! local run of the same `ds` on the same exports: the same marts, the same report, the same exit
//! code when a check fails.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::s3::{S3Target, target};
use crate::common::{Project, files_below, query_parquet, run_expecting};

/// The pseudonymisation key every process of the test has in its environment.
const PII_KEY: &str = "cluster-test-pseudonymisation-key";

/// A pipeline hashing a personal column as its source is read: on a cluster the hashing runs on
/// the executors, under the key in their own environment.
const PRIVATE_PIPELINE: &str = r#"
name: private
vars:
  exports_uri: exports
  marts_uri: marts
storage:
  s3:
    endpoint: ${AWS_ENDPOINT:-}
sources:
  customers:
    location: "{{ exports_uri }}/customers/"
    format: csv
    schema: { customer_id: string, email: string, signup_at: string, country: string, acquisition_channel: string }
    pii:
      email: hash
steps:
  - name: contacts
    query: SELECT customer_id, email FROM customers
output:
  location: "{{ marts_uri }}"
marts:
  contacts: {}
"#;

/// The marts of the bundled pipeline.
const MARTS: [&str; 11] = [
    "customer_journey",
    "lifecycle_funnel",
    "cohort_retention",
    "lifecycle_status",
    "nps_monthly",
    "activity_heatmap",
    "kpi_summary",
    "personas",
    "trend_series",
    "trend_summary",
    "quarantine",
];

/// Child processes killed when the test ends, however it ends.
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, processes: &mut Processes) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        for (name, child) in &mut processes.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited before listening: {status}");
            }
        }
        assert!(Instant::now() < deadline, "nothing listens on port {port} after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lifemap <args>` in the background, with the S3 server's credentials in its environment only;
/// its log (info and up) goes to `<logs>/<name>.log`.
fn spawn(name: &str, s3: &S3Target, args: &[String], logs: &Path, processes: &mut Processes) {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifemap"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &s3.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret)
        .env("AWS_ENDPOINT", &s3.endpoint)
        .env("AWS_REGION", &s3.region)
        .env("AWS_ALLOW_HTTP", "true")
        .env("LIFEMAP_PII_KEY", PII_KEY)
        .env("LIFEMAP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| panic!("starting {name}: {err}"));
    processes.0.push((name.to_string(), child));
}

/// A scheduler and two executors logging into `logs`; the scheduler's port.
fn start_cluster(s3: &S3Target, logs: &Path, processes: &mut Processes) -> u16 {
    let scheduler = free_port();
    spawn(
        "scheduler",
        s3,
        &[
            "scheduler".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            scheduler.to_string(),
        ],
        logs,
        processes,
    );
    wait_for_port(scheduler, processes);
    for executor in ["executor-1", "executor-2"] {
        let (flight, grpc) = (free_port(), free_port());
        let mut args: Vec<String> = [
            "executor",
            "--scheduler",
            &format!("127.0.0.1:{scheduler}"),
            "--bind",
            "127.0.0.1",
            "--external-host",
            "127.0.0.1",
            "--port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--concurrent-tasks",
            "2",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        // One executor bounded by lifemap, the other by Ballista's default.
        if executor == "executor-1" {
            args.extend(["--memory-limit".to_string(), "1GiB".to_string()]);
        }
        spawn(executor, s3, &args, logs, processes);
        wait_for_port(flight, processes);
    }
    scheduler
}

/// Every mart's rows, in a stable order, as text: numbers rounded where sums of floats may add up
/// in another order on another partitioning.
fn mart_rows(s3: &S3Target, marts: &str, mart: &str) -> String {
    let location = s3.uri(&format!("{marts}/{mart}/ds=2026-10-31/"));
    let ctx = s3.session();
    let columns = crate::common::block_on(async {
        ctx.register_parquet("t", &location, Default::default())
            .await
            .expect("mart");
        ctx.table("t").await.expect("table").schema().as_arrow().clone()
    });
    let select: Vec<String> = columns
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            datafusion::arrow::datatypes::DataType::Float64 | datafusion::arrow::datatypes::DataType::Float32 => {
                format!("round(\"{0}\", 9) AS \"{0}\"", field.name())
            }
            _ => format!("\"{}\"", field.name()),
        })
        .collect();
    let order: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
    query_parquet(
        &s3.session(),
        &location,
        &format!("SELECT {} FROM t ORDER BY {}", select.join(", "), order.join(", ")),
    )
}

#[test]
fn the_bundled_pipeline_on_a_ballista_cluster_gives_the_marts_of_a_local_run() {
    let s3 = target("cluster");
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    for file in files_below(&sample) {
        s3.put(
            &format!("exports/{file}"),
            std::fs::read(sample.join(&file)).expect("sample file"),
        );
    }
    let project = Project::new();
    let bundled = format!("{}/pipelines/customer_lifecycle.yaml", env!("CARGO_MANIFEST_DIR"));
    // `pipeline` on the S3 exports, its marts under `marts`, its report delivered to
    // `<project>/outbox-<marts>`, with the pseudonymisation key the cluster's processes have.
    let run = |pipeline: &str, marts: &str, args: &[&str], code: i32| {
        let mut command = project.lifemap();
        s3.configure(&mut command);
        command.env("LIFEMAP_OUTBOX", project.path(&format!("outbox-{marts}")));
        command.env("LIFEMAP_PII_KEY", PII_KEY);
        command.env_remove("LIFEMAP_REPORT_TRANSPORT");
        command
            .args([
                "run",
                pipeline,
                "--ds",
                "2026-10-31",
                "--var",
                &format!("exports_uri={}", s3.uri("exports")),
                "--var",
                &format!("marts_uri={}", s3.uri(marts)),
            ])
            .args(args);
        run_expecting(command, code)
    };
    let local = run(&bundled, "local", &[], 0);

    let mut processes = Processes(Vec::new());
    let logs = project.path("logs");
    std::fs::create_dir_all(&logs).expect("logs folder");
    let scheduler = start_cluster(&s3, &logs, &mut processes);
    let engine = format!("df://127.0.0.1:{scheduler}");
    let cluster_run = run(&bundled, "cluster", &["--engine", &engine], 0);

    let (local, cluster) = (local.summary(), cluster_run.summary());
    assert_eq!(cluster["status"], "success");
    assert_eq!(cluster["rows"], local["rows"], "rows per mart");
    // The client lists the exports and keeps the inventory, whatever runs the SQL.
    assert_eq!(cluster["inputs"], local["inputs"], "export objects listed");
    assert!(!s3.get("cluster/_state/inventory.json").is_empty());
    for mart in MARTS {
        let expected = mart_rows(&s3, "local", mart);
        assert!(expected.lines().count() > 4, "{mart} has rows:\n{expected}");
        assert_eq!(mart_rows(&s3, "cluster", mart), expected, "mart {mart}");
    }
    // The report, rendered on the client from the cluster's marts, is the local run's.
    assert_eq!(cluster["report"], "sent");
    let report = |marts: &str| {
        let html = std::fs::read_to_string(project.path(&format!("outbox-{marts}/2026-10-31-customer_lifecycle.html")))
            .expect("the report in the outbox");
        // The footer names the run, which differs; everything else must not.
        let run_id = html.find(" · run ").expect("the footer names the run");
        let end = html[run_id..].find('\n').map_or(html.len(), |n| run_id + n);
        format!("{}{}", &html[..run_id], &html[end..])
    };
    let (from_cluster, from_local) = (report("cluster"), report("local"));
    let first_difference = from_cluster.lines().zip(from_local.lines()).find(|(a, b)| a != b);
    assert!(
        first_difference.is_none() && from_cluster.len() == from_local.len(),
        "the reports differ first at {first_difference:?}"
    );

    // Incremental on the cluster: after a file is filed late into a kept partition, the next run
    // computes that partition alone, reads the others as the first run kept them, and publishes
    // the marts of a local run over the same exports.
    s3.put(
        "exports/events/dt=2026-10-30/part-late.ndjson",
        concat!(
            r#"{"event_id":"late-cluster-1","customer_id":"late-c","event_type":"review_posted","channel":"web","occurred_at":"2026-10-30T12:00:00Z"}"#,
            "\n"
        ),
    );
    run(&bundled, "local", &["--no-report"], 0);
    run(&bundled, "cluster", &["--engine", &engine, "--no-report"], 0);
    let results: serde_json::Value =
        serde_json::from_slice(&s3.get("cluster/_runs/ds=2026-10-31/run_results.json")).expect("run_results.json");
    let staged = results["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["name"] == "staged_events")
        .expect("staged_events")["details"]["incremental"]
        .clone();
    assert_eq!(staged["computed"], 1, "{staged}");
    assert_eq!(staged["why_computed"]["objects added or removed"], 1, "{staged}");
    assert!(staged["kept"].as_u64().unwrap_or(0) > 300, "{staged}");
    for mart in MARTS {
        assert_eq!(
            mart_rows(&s3, "cluster", mart),
            mart_rows(&s3, "local", mart),
            "mart {mart}, incremental"
        );
    }
    let journeys = mart_rows(&s3, "cluster", "customer_journey");
    assert!(journeys.contains("late-c"), "the late event counts");

    // A failed check on a cluster is exit 3 there too: nothing published, nothing sent.
    let failed = run(
        &bundled,
        "cluster-failed",
        &["--engine", &engine, "--var", "max_quarantine_share=0"],
        3,
    );
    assert!(failed.stderr.contains("events_mostly_parse"), "{}", failed.stderr);
    let published: Vec<String> = s3
        .list("cluster-failed/")
        .into_iter()
        .filter(|key| key.ends_with(".parquet") && !key.starts_with("cluster-failed/_state/"))
        .collect();
    assert!(published.is_empty(), "{published:?}");
    assert!(!project.path("outbox-cluster-failed").exists());

    // Personal columns are hashed on the executors under their own key, as a local run does.
    project.write("private.yaml", PRIVATE_PIPELINE);
    run("private.yaml", "private-local", &[], 0);
    run("private.yaml", "private-cluster", &["--engine", &engine], 0);
    let hashed = mart_rows(&s3, "private-local", "contacts");
    assert!(hashed.lines().count() > 100 && !hashed.contains('@'), "{hashed}");
    assert_eq!(mart_rows(&s3, "private-cluster", "contacts"), hashed);

    // The held steps lived in the run's staging folder, which is gone.
    assert!(
        s3.list("cluster/_staging/").is_empty(),
        "{:?}",
        s3.list("cluster/_staging/")
    );
    // Every process read the credentials from its own environment, and none printed them.
    let scheduler_log = std::fs::read_to_string(logs.join("scheduler.log")).expect("scheduler log");
    assert!(
        scheduler_log.contains("Job finished successfully"),
        "the scheduler ran the steps:\n{scheduler_log}"
    );
    for name in ["scheduler", "executor-1", "executor-2"] {
        let log = std::fs::read_to_string(logs.join(format!("{name}.log"))).expect("log");
        assert!(!log.contains(s3.secret.as_str()), "{name} logged the secret");
        assert!(!log.contains(PII_KEY), "{name} logged the pseudonymisation key");
    }
    // `--memory-limit 1GiB` became the executor's pool: three quarters, split between 2 tasks.
    let bounded = std::fs::read_to_string(logs.join("executor-1.log")).expect("log");
    assert!(
        bounded.contains("Executor memory pool: 768.0 MiB (configured via --memory-pool-size), split across 2 vcores (384.0 MiB/vcore)"),
        "{bounded}"
    );
    let by_default = std::fs::read_to_string(logs.join("executor-2.log")).expect("log");
    assert!(
        by_default.contains("% of host memory)") || by_default.contains("% of cgroup memory limit)"),
        "{by_default}"
    );
    let printed = format!("{}{}", cluster_run.stdout, cluster_run.stderr);
    assert!(!printed.contains(s3.secret.as_str()));
}

#[test]
fn a_cluster_run_refuses_what_it_cannot_honour_before_connecting() {
    let project = Project::new();
    project.write("in/orders.csv.gz", crate::common::fixture::gzip("id\n1\n"));
    project.write(
        "p.yaml",
        r#"name: declared
sources:
  orders: { location: "in/", format: csv, compression: gzip, schema: { id: string } }
steps:
  - { name: counted, query: "SELECT COUNT(*) AS n FROM orders" }
output: { location: out }
marts:
  counted: {}
"#,
    );
    // Nothing listens on port 9: the run must stop at the pipeline, not at the connection.
    let mut command = project.lifemap();
    command.args(["run", "p.yaml", "--ds", "2026-10-31", "--engine", "df://127.0.0.1:9"]);
    let outcome = run_expecting(command, 2);
    assert!(
        outcome.stderr.contains("sources.orders.compression"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("taken from file names"), "{}", outcome.stderr);

    let mut command = project.lifemap();
    command.args(["run", "p.yaml", "--engine", "spark://x"]);
    let outcome = run_expecting(command, 2);
    assert!(outcome.stderr.contains("df://scheduler:50050"), "{}", outcome.stderr);
}
