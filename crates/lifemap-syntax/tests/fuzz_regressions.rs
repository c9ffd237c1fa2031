//! The fuzz targets' seed inputs (`fuzz/seeds/<target>/`) and every crash a fuzzer found
//! (`fuzz/regressions/<target>/`) replay through the same function as the target, on stable.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files: Vec<PathBuf> = ["seeds", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flatten()
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs for {target} under {}", fuzz.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) -> Vec<String> {
    let mut names = Vec::new();
    for file in inputs(target) {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics again", file.display());
        names.push(file.file_name().unwrap_or_default().to_string_lossy().into_owned());
    }
    names
}

#[test]
fn pipeline_file_inputs_replay_without_panics() {
    let replayed = replay("pipeline_file", lifemap_syntax::fuzzing::pipeline_file);
    assert!(replayed.contains(&"laughs.yaml".to_string()), "{replayed:?}");
}

#[test]
fn rows_inputs_replay_without_panics() {
    let replayed = replay("rows", lifemap_syntax::fuzzing::rows);
    assert!(replayed.contains(&"events.ndjson".to_string()), "{replayed:?}");
}
