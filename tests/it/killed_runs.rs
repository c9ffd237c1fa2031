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
