//! Killing a run at any point: a reader following `_SUCCESS` always sees one whole run, and the
//! next run completes (the killed run's lock is stale at once: its process is gone).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

use crate::common::{Project, bundled_run, run_expecting};

/// Every published partition below `marts` is whole: its `_SUCCESS` lists files that all exist,
/// with the sizes and row counts it says, all written by the one run it names.
fn assert_partitions_whole(marts: &Path, after: &str) -> usize {
    let mut partitions = 0;
    for mart in std::fs::read_dir(marts).expect("marts folder").flatten() {
        let name = mart.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') {
            continue;
        }
        for partition in std::fs::read_dir(mart.path()).expect("mart folder").flatten() {
            let marker = partition.path().join("_SUCCESS");
            let manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&marker)
                    .unwrap_or_else(|_| panic!("{after}: {} has no _SUCCESS", partition.path().display())),
            )
            .expect("manifest");
            let run_id = manifest["run_id"].as_str().expect("run id");
            let mut rows = 0;
            for file in manifest["files"].as_array().expect("files") {
                let file_name = file["name"].as_str().expect("name");
                assert!(
                    file_name.contains(run_id),
                    "{after}: {name}: {file_name} is not of run {run_id}"
                );
                let path = partition.path().join(file_name);
                let bytes = std::fs::metadata(&path)
                    .unwrap_or_else(|_| panic!("{after}: {name}: {file_name} is missing"))
                    .len();
                assert_eq!(
                    bytes,
                    file["bytes"].as_u64().expect("bytes"),
                    "{after}: {name}: {file_name}"
                );
                let reader = SerializedFileReader::new(std::fs::File::open(&path).expect("open")).expect("parquet");
                rows += reader.metadata().file_metadata().num_rows() as u64;
            }
            assert_eq!(rows, manifest["rows"].as_u64().expect("rows"), "{after}: {name}");
            partitions += 1;
        }
    }
    partitions
}

#[test]
fn twenty_kills_at_every_point_of_a_run_never_leave_a_torn_partition() {
    let project = Project::new();
    let exports = format!("{}/data/sample", env!("CARGO_MANIFEST_DIR"));
    let run = |project: &Project| {
        let mut command = bundled_run(project, &exports, "marts");
        command.arg("--no-report");
        command
    };
    run_expecting(run(&project), 0);
    let marts = project.path("marts");
    let published = assert_partitions_whole(&marts, "the first run");
    assert_eq!(published, 11, "every mart of the bundled pipeline is published");

    let binary = std::process::Command::cargo_bin("lifemap").expect("binary");
    let program = binary.get_program().to_owned();
    for kill in 0..20u64 {
        let mut command = std::process::Command::new(&program);
        command
            .current_dir(project.path(""))
            .args(["-q", "run"])
            .arg(format!(
                "{}/pipelines/customer_lifecycle.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["--ds", "2026-10-31", "--no-report"])
            .args(["--var", &format!("exports_uri={exports}"), "--var", "marts_uri=marts"])
            .env_remove("LIFEMAP_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = command.spawn().expect("spawn");
        // Kill points spread over a whole run (about a second here): start, steps, writing, publishing.
        std::thread::sleep(Duration::from_millis(kill * 70));
        let _ = child.kill(); // SIGKILL; the run may have finished already.
        child.wait().expect("wait");
        assert_eq!(
            assert_partitions_whole(&marts, &format!("kill {kill} after {} ms", kill * 70)),
            published
        );
    }

    // The next run takes over the dead runs' lock and completes.
    let outcome = run_expecting(run(&project), 0);
    assert_eq!(outcome.summary()["status"], "success");
    assert_eq!(assert_partitions_whole(&marts, "the last run"), published);
}

/// What killed runs leave, made by hand in the shop's outputs: a staging folder, a file moved into
/// a published partition that its `_SUCCESS` does not list, and a partition with no `_SUCCESS`.
fn leave_leftovers(project: &Project) {
    project.write("out/_staging/ds=2026-10-31/dead-run/revenue/part-0.parquet", "staged");
    project.write("out/_staging/ds=2026-10-30/dead-run/revenue/part-0.parquet", "staged");
    project.write("out/revenue/ds=2026-10-31/part-dead-run-00000.parquet", "uncommitted");
    project.write(
        "out/revenue/ds=2026-10-29/part-dead-run-00000.parquet",
        "never committed",
    );
}

fn published(project: &Project) -> Vec<String> {
    let mut files = crate::common::files_below(&project.path("out/revenue"));
    files.sort();
    files
}

#[test]
fn a_run_and_lifemap_cleanup_remove_what_killed_runs_left() {
    let project = crate::common::fixture::local_shop();
    let mut command = project.lifemap();
    command.args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    run_expecting(command, 0);
    let committed = published(&project);

    // A run of 10-31 clears its own date before anything else: even one that then fails (the
    // `fragile` step) has removed them, and the committed partition is as it was.
    leave_leftovers(&project);
    let mut failing = project.lifemap();
    failing.args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31", "--var", "fail=true"]);
    let outcome = run_expecting(failing, 1);
    assert!(
        outcome.stderr.contains("removed what a killed run had left"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("out/_staging/ds=2026-10-31").exists());
    assert!(
        project.path("out/_staging/ds=2026-10-30/dead-run").exists(),
        "another date's is left"
    );
    let mut expected = committed.clone();
    expected.push("ds=2026-10-29/part-dead-run-00000.parquet".into());
    expected.sort();
    assert_eq!(published(&project), expected);

    // `lifemap cleanup` does every date: 10-30's staging, 10-29's uncommitted file.
    leave_leftovers(&project);
    let mut cleanup = project.lifemap();
    cleanup.args(["cleanup", "pipelines/shop.yaml"]);
    let outcome = run_expecting(cleanup, 0);
    let summary = outcome.summary();
    assert_eq!(summary["dates"], 3, "{summary}");
    assert_eq!(summary["removed"], serde_json::json!({"staged": 2, "uncommitted": 2}));
    assert_eq!(summary["busy"], serde_json::json!([]));
    let dates: Vec<&str> = summary["cleaned"]
        .as_array()
        .expect("cleaned")
        .iter()
        .filter_map(|date| date["ds"].as_str())
        .collect();
    assert_eq!(dates, ["2026-10-29", "2026-10-30", "2026-10-31"]);
    assert_eq!(published(&project), committed);
    assert!(crate::common::files_below(&project.path("out/_staging")).is_empty());
    // The committed partition is still what a reader gets.
    assert_partitions_whole(&project.path("out"), "after cleanup");

    // Nothing left: a second cleanup removes nothing.
    let mut again = project.lifemap();
    again.args(["cleanup", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let summary = run_expecting(again, 0).summary();
    assert_eq!(summary["dates"], 1);
    assert_eq!(summary["removed"], serde_json::json!({"staged": 0, "uncommitted": 0}));

    // A date whose lock a run on another host holds (and not for long) is left alone: exit 75.
    leave_leftovers(&project);
    let now = chrono::Utc::now().to_rfc3339();
    project.write(
        "out/_runs/ds=2026-10-31/_lock",
        serde_json::json!({"run_id": "live-run", "host": "elsewhere", "pid": 1, "acquired_at": now,
                           "expires_at": (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339()})
        .to_string(),
    );
    let mut busy = project.lifemap();
    busy.args(["cleanup", "pipelines/shop.yaml"]);
    let summary = run_expecting(busy, 75).summary();
    assert_eq!(summary["busy"], serde_json::json!(["2026-10-31"]));
    assert_eq!(summary["removed"], serde_json::json!({"staged": 1, "uncommitted": 1}));
    assert!(project.path("out/_staging/ds=2026-10-31/dead-run").exists());
    assert!(
        project
            .path("out/revenue/ds=2026-10-31/part-dead-run-00000.parquet")
            .exists()
    );
}

/// Where a killed-run test publishes: a local folder or an S3 prefix, and how to read what a
/// reader following `_SUCCESS` sees there.
struct Output<'a> {
    marts_uri: String,
    configure: &'a dyn Fn(&mut std::process::Command),
    /// An object below the output, by path relative to it; `None` when absent.
    get: &'a dyn Fn(&str) -> Option<Vec<u8>>,
}

const MARTS: [&str; 11] = [
    "activity_heatmap",
    "cohort_retention",
    "customer_journey",
    "kpi_summary",
    "lifecycle_funnel",
    "lifecycle_status",
    "nps_monthly",
    "personas",
    "quarantine",
    "trend_series",
    "trend_summary",
];

/// Every mart's files of ds 2026-10-31 as its `_SUCCESS` lists them.
fn committed_marts(output: &Output<'_>) -> BTreeMap<String, Vec<Vec<u8>>> {
    MARTS
        .iter()
        .map(|mart| {
            let folder = format!("{mart}/ds=2026-10-31");
            let manifest =
                (output.get)(&format!("{folder}/_SUCCESS")).unwrap_or_else(|| panic!("{folder} has no _SUCCESS"));
            let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
            let files = manifest["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|file| {
                    let name = file["name"].as_str().expect("name");
                    (output.get)(&format!("{folder}/{name}")).unwrap_or_else(|| panic!("{folder}/{name} is missing"))
                })
                .collect();
            (mart.to_string(), files)
        })
        .collect()
}

/// SIGKILL at `kills` points spread over incremental runs of the bundled pipeline (every other
/// one recomputing all it keeps, so that kills land while kept files and `state.json` are
/// written); after each kill the next run must succeed and publish the marts of `expected`.
fn kill_incremental_runs(output: &Output<'_>, kills: u64, expected: &BTreeMap<String, Vec<Vec<u8>>>) {
    let exports = format!("{}/data/sample", env!("CARGO_MANIFEST_DIR"));
    let binary = std::process::Command::cargo_bin("lifemap").expect("binary");
    let program = binary.get_program().to_owned();
    let project = Project::new();
    let command = |extra: &[&str]| {
        let mut command = std::process::Command::new(&program);
        command
            .current_dir(project.path(""))
            .args(["-q", "run"])
            .arg(format!(
                "{}/pipelines/customer_lifecycle.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["--ds", "2026-10-31", "--no-report"])
            .args(["--var", &format!("exports_uri={exports}"), "--var"])
            .arg(format!("marts_uri={}", output.marts_uri))
            .args(["--var", "max_quarantine_share=0.5", "--var", "max_event_age=7d"])
            .args(extra)
            .env_remove("LIFEMAP_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        (output.configure)(&mut command);
        command
    };
    let finish = |mut command: std::process::Command, after: &str| {
        let outcome = command.output().expect("run");
        assert!(
            outcome.status.success(),
            "{after}: {}",
            String::from_utf8_lossy(&outcome.stderr)
        );
        assert!(
            committed_marts(output) == *expected,
            "{after}: the marts differ from a full rebuild's"
        );
    };
    // How long a run that recomputes everything takes here: the kills are spread over it.
    let started = std::time::Instant::now();
    finish(command(&["--full-refresh"]), "the first run");
    let span = started.elapsed().as_millis() as u64;
    for kill in 0..kills {
        let extra: &[&str] = if kill % 2 == 0 { &["--full-refresh"] } else { &[] };
        let mut child = command(extra).spawn().expect("spawn");
        let after_ms = span * kill / kills;
        std::thread::sleep(Duration::from_millis(after_ms));
        let _ = child.kill(); // SIGKILL; the run may have finished already.
        child.wait().expect("wait");
        finish(command(&[]), &format!("the run after kill {kill} ({after_ms} ms in)"));
    }
}

/// The bundled pipeline's marts of ds 2026-10-31 from a full rebuild with nothing kept.
fn full_rebuild() -> BTreeMap<String, Vec<Vec<u8>>> {
    let project = Project::new();
    let exports = format!("{}/data/sample", env!("CARGO_MANIFEST_DIR"));
    let mut command = bundled_run(&project, &exports, "marts");
    command.arg("--no-report");
    run_expecting(command, 0);
    let root = project.path("marts");
    let get = |relative: &str| std::fs::read(root.join(relative)).ok();
    committed_marts(&Output {
        marts_uri: String::new(),
        configure: &|_| {},
        get: &get,
    })
}

#[test]
fn killed_incremental_runs_on_local_disk_leave_state_the_next_run_trusts() {
    let expected = full_rebuild();
    let project = Project::new();
    let root = project.path("marts");
    let get = |relative: &str| std::fs::read(root.join(relative)).ok();
    let output = Output {
        marts_uri: root.display().to_string(),
        configure: &|_| {},
        get: &get,
    };
    kill_incremental_runs(&output, 22, &expected);
}

#[test]
fn killed_incremental_runs_on_s3_leave_state_the_next_run_trusts() {
    let expected = full_rebuild();
    let s3 = crate::common::s3::target("killed-incremental");
    let get = |relative: &str| {
        // object_store lists below a folder, not by a key's prefix.
        let name = format!("marts/{relative}");
        let folder = name.rsplit_once('/').map_or("", |(folder, _)| folder);
        s3.list(folder).contains(&name).then(|| s3.get(&name))
    };
    let configure = |command: &mut std::process::Command| {
        command
            .env("AWS_ACCESS_KEY_ID", &s3.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret)
            .env("AWS_ENDPOINT", &s3.endpoint)
            .env("AWS_REGION", &s3.region)
            .env("AWS_ALLOW_HTTP", "true");
    };
    let output = Output {
        marts_uri: s3.uri("marts"),
        configure: &configure,
        get: &get,
    };
    kill_incremental_runs(&output, 20, &expected);
}
