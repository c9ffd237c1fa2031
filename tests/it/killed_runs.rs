//! Killing a run at any point: a reader following `_SUCCESS` always sees one whole run, and the
//! next run completes (the killed run's lock is stale at once: its process is gone).

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
        serde_json::json!({"run_id": "live-run", "host": "elsewhere", "pid": 1, "acquired_at": now}).to_string(),
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
