//! SIGTERM and SIGINT, sent for real to a running `lifemap run` at several stages: it stops with
//! exit code 130 and a `cancelled` JSON line, its staging and locks gone, nothing half-published
//! (the previous marts intact, or, once publishing had begun, every mart of the stopped run), and
//! the next run starts at once. A second signal exits at once, and the next run clears up.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

use crate::common::proxy::{Fault, FaultProxy};
use crate::common::s3::target;
use crate::common::{Project, files_below, mart_bytes};

/// A guard against a run that never stops, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn exports() -> String {
    format!("{}/data/sample", env!("CARGO_MANIFEST_DIR"))
}

/// `lifemap run` of the bundled pipeline on the sample data, as a child process.
fn bundled(project: &Project, ds: &str, marts: &str) -> Command {
    let mut command = Command::cargo_bin("lifemap").expect("binary");
    command
        .current_dir(project.path(""))
        .arg("run")
        .arg(format!(
            "{}/pipelines/customer_lifecycle.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["--ds", ds])
        .args(["--var", &format!("exports_uri={}", exports())])
        .args(["--var", &format!("marts_uri={marts}")])
        .env("LIFEMAP_OUTBOX", project.path("outbox"))
        .env("NO_COLOR", "1")
        .env_remove("LIFEMAP_LOG");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT",
        "AWS_REGION",
    ] {
        command.env_remove(var);
    }
    command
}

/// A started run whose stderr lines arrive on `lines`.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
}

fn start(mut command: Command) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lifemap");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let stdout = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    Running { child, lines, stdout }
}

impl Running {
    /// Wait until a stderr line contains `marker`.
    fn wait_for(&self, marker: &str) {
        let deadline = Instant::now() + HANG_GUARD;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(marker) => return,
                Ok(line) => seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("the run never logged `{marker}`:\n{}", seen.join("\n"));
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Wait for the exit (right after a signal: how long it takes to stop); its code and the
    /// last line of stdout, parsed.
    fn finish(mut self) -> (i32, Value) {
        let signalled = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if signalled.elapsed() > HANG_GUARD {
                let _ = self.child.kill();
                panic!("the run did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Reported, not asserted: speed belongs in benchmarks.
        eprintln!("exited {} ms after the wait began", signalled.elapsed().as_millis());
        let stdout = self.stdout.join().expect("stdout");
        let last = stdout.lines().last().unwrap_or_else(|| panic!("no stdout"));
        let summary = serde_json::from_str(last).unwrap_or_else(|err| panic!("not JSON ({err}): {last}"));
        (status.code().expect("an exit code, not a death by signal"), summary)
    }
}

/// No staging files and no lock left under `marts` (a local output folder).
fn assert_nothing_left(marts: &Path, ds: &str) {
    let staged: Vec<String> = files_below(&marts.join("_staging"));
    assert!(staged.is_empty(), "staging left behind: {staged:?}");
    assert!(
        !marts.join(format!("_runs/ds={ds}/_lock")).exists(),
        "the ds lock is left"
    );
    assert!(!marts.join("_state/_lock").exists(), "the state lock is left");
}

fn assert_cancelled(code: i32, summary: &Value, ds: &str) {
    assert_eq!(code, 130, "{summary}");
    assert_eq!(summary["status"], "cancelled", "{summary}");
    assert_eq!(summary["exit_code"], 130, "{summary}");
    assert_eq!(summary["ds"], ds, "{summary}");
}

/// The run id each mart's `_SUCCESS` of `ds` names.
fn committing_runs(marts: &Path, ds: &str) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(marts)
        .expect("marts")
        .flatten()
        .filter_map(|mart| std::fs::read(mart.path().join(format!("ds={ds}/_SUCCESS"))).ok())
        .map(|bytes| {
            let manifest: Value = serde_json::from_slice(&bytes).expect("manifest");
            manifest["run_id"].as_str().expect("run_id").to_string()
        })
        .collect();
    runs.dedup();
    runs
}

#[test]
fn sigterm_while_computing_keeps_the_previous_marts_and_the_next_run_starts_at_once() {
    let project = Project::new();
    let marts = project.path("marts");
    let (code, _) = {
        let running = start(bundled(&project, "2026-10-31", "marts"));
        running.finish()
    };
    assert_eq!(code, 0);
    let before = mart_bytes(&project, "marts");

    // Clustering the personas follows persona_features and takes a while: marts written before it
    // are staged, the rest not yet.
    let lineage = project.path("lineage.jsonl");
    let mut command = bundled(&project, "2026-10-31", "marts");
    command
        .env("OPENLINEAGE__TRANSPORT__TYPE", "file")
        .env("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", &lineage);
    let running = start(command);
    running.wait_for("step=persona_features");
    running.signal("TERM");
    let (code, summary) = running.finish();
    assert_cancelled(code, &summary, "2026-10-31");
    assert_nothing_left(&marts, "2026-10-31");
    // Lineage hears of it: START, then ABORT.
    let kinds: Vec<String> = std::fs::read_to_string(&lineage)
        .expect("lineage events")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json")["eventType"].to_string())
        .collect();
    assert_eq!(kinds, ["\"START\"", "\"ABORT\""]);
    assert_eq!(mart_bytes(&project, "marts"), before, "the previous marts are intact");
    let results: Value =
        serde_json::from_slice(&std::fs::read(marts.join("_runs/ds=2026-10-31/run_results.json")).expect("results"))
            .expect("json");
    assert_eq!(results["status"], "cancelled");

    let next = start(bundled(&project, "2026-10-31", "marts")).finish();
    assert_eq!(next.0, 0, "{}", next.1);
}

#[test]
fn sigint_while_publishing_or_sending_publishes_every_mart_and_sends_nothing() {
    let project = Project::new();
    let marts = project.path("marts");
    // A mail server that accepts the connection and never greets: delivery waits on it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let mut command = bundled(&project, "2026-10-30", "marts");
    command
        .env("LIFEMAP_REPORT_TRANSPORT", "smtp")
        .env("LIFEMAP_SMTP_HOST", "127.0.0.1")
        .env("LIFEMAP_SMTP_PORT", port.to_string())
        .env("LIFEMAP_SMTP_TLS", "none")
        .env("LIFEMAP_SMTP_RETRIES", "0");
    let running = start(command);
    running.wait_for("publishing");
    running.signal("INT");
    let (code, summary) = running.finish();
    assert_cancelled(code, &summary, "2026-10-30");
    assert_nothing_left(&marts, "2026-10-30");
    // Publishing is not cut short: every mart is the stopped run's.
    let run_id = summary["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(committing_runs(&marts, "2026-10-30"), [run_id]);
    assert!(!marts.join("_runs/ds=2026-10-30/delivery.json").exists());
    assert!(files_below(&project.path("outbox")).is_empty());

    // The next run (to the outbox) sends the report the stopped one did not.
    let (code, summary) = start(bundled(&project, "2026-10-30", "marts")).finish();
    assert_eq!(code, 0, "{summary}");
    assert!(
        !files_below(&project.path("outbox")).is_empty(),
        "the report is in the outbox"
    );
    drop(silent);
}

#[test]
fn sigterm_while_reading_a_stalled_store_stops_and_keeps_the_previous_marts() {
    let s3 = target("sigterm-reading");
    for file in files_below(Path::new(&exports())) {
        let content = std::fs::read(Path::new(&exports()).join(&file)).expect("read export");
        s3.put(&format!("exports/{file}"), content);
    }
    let proxy = FaultProxy::start(&s3.endpoint);
    let project = Project::new();
    let on_s3 = |endpoint: &str| {
        let mut command = bundled(&project, "2026-10-31", &s3.uri("marts"));
        command
            .args(["--var", &format!("exports_uri={}", s3.uri("exports"))])
            .args(["--no-report"])
            .env("AWS_ACCESS_KEY_ID", &s3.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret)
            .env("AWS_ENDPOINT", endpoint)
            .env("AWS_REGION", &s3.region)
            .env("AWS_ALLOW_HTTP", "true");
        command
    };
    let (code, summary) = start(on_s3(&s3.endpoint)).finish();
    assert_eq!(code, 0, "{summary}");
    let published = |name: &str| s3.list(&format!("marts/{name}/ds=2026-10-31/"));
    let before = published("customer_journey");

    // Every read of an export hangs; listings and the lock pass.
    proxy.set_rule(|request| {
        if request.method == "GET" && request.target.contains("/exports/") && !request.target.contains("list-type") {
            Fault::Stall(Duration::from_secs(600))
        } else {
            Fault::Pass
        }
    });
    let running = start(on_s3(&proxy.endpoint));
    running.wait_for("run starting");
    // Let it reach the stalled reads.
    std::thread::sleep(Duration::from_millis(1500));
    running.signal("TERM");
    let (code, summary) = running.finish();
    assert_cancelled(code, &summary, "2026-10-31");
    assert_eq!(
        published("customer_journey"),
        before,
        "the previous partition is intact"
    );
    assert!(s3.list("marts/_staging/").is_empty());
    assert!(s3.list("marts/_runs/ds=2026-10-31/_lock").is_empty());
    assert!(s3.list("marts/_state/_lock").is_empty());
    proxy.set_rule(|_| Fault::Pass);
    let (code, summary) = start(on_s3(&s3.endpoint)).finish();
    assert_eq!(code, 0, "{summary}");
}

#[test]
fn a_second_signal_exits_at_once_and_the_next_run_clears_what_it_left() {
    let project = Project::new();
    let running = start(bundled(&project, "2026-10-31", "marts"));
    running.wait_for("step=persona_features");
    running.signal("TERM");
    running.signal("TERM");
    let (code, summary) = running.finish();
    assert_eq!(code, 130, "{summary}");
    assert_eq!(summary["status"], "cancelled");
    let (code, summary) = start(bundled(&project, "2026-10-31", "marts")).finish();
    assert_eq!(code, 0, "{summary}");
    assert_nothing_left(&project.path("marts"), "2026-10-31");
}
