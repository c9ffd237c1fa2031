//! Helpers shared by the integration tests: a project folder per test, the real `lifemap`
//! binary, a real S3-compatible server, and reading published marts back.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tempfile::TempDir;

pub mod fixture;
pub mod proxy;
pub mod s3;
pub mod smtp;

/// A scratch project: `pipelines/`, `sql/` and data folders under a temporary directory.
pub struct Project {
    pub dir: TempDir,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifemap-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("sql")).expect("mkdir");
        Self { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Write a file (creating folders) and return its path.
    pub fn write(&self, relative: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        path
    }

    /// Write gzip-compressed content.
    pub fn write_gz(&self, relative: &str, content: &str) -> PathBuf {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(content.as_bytes()).expect("gzip");
        self.write(relative, encoder.finish().expect("gzip"))
    }

    /// `lifemap` run from the project folder, with a clean environment for S3 settings.
    pub fn lifemap(&self) -> Command {
        let mut command = Command::cargo_bin("lifemap").expect("binary");
        command.current_dir(self.dir.path());
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ENDPOINT",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_SESSION_TOKEN",
        ] {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1").env_remove("LIFEMAP_LOG");
        command
    }
}

/// The output of one command.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The JSON summary: the last line of stdout.
    pub fn summary(&self) -> serde_json::Value {
        let last = self
            .stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no stdout; stderr:\n{}", self.stderr));
        serde_json::from_str(last).unwrap_or_else(|err| panic!("last stdout line is not JSON ({err}): {last}"))
    }
}

pub fn run(mut command: Command) -> Outcome {
    let output = command.output().expect("run lifemap");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Run and insist on an exit code, showing the output when it differs.
pub fn run_expecting(command: Command, code: i32) -> Outcome {
    let outcome = run(command);
    assert_eq!(
        outcome.code, code,
        "exit code\nstdout:\n{}\nstderr:\n{}",
        outcome.stdout, outcome.stderr
    );
    outcome
}

/// `lifemap run` of the bundled customer_lifecycle pipeline for ds 2026-10-31, reading exports
/// from `exports` and publishing marts under `marts` (both relative to the project or absolute).
pub fn bundled_run(project: &Project, exports: &str, marts: &str) -> Command {
    bundled_run_for(project, exports, marts, "2026-10-31")
}

/// [`bundled_run`] for another `ds`.
pub fn bundled_run_for(project: &Project, exports: &str, marts: &str, ds: &str) -> Command {
    let mut command = project.lifemap();
    command
        .args([
            "run",
            &format!("{}/pipelines/customer_lifecycle.yaml", env!("CARGO_MANIFEST_DIR")),
        ])
        .args(["--ds", ds])
        .args([
            "--var",
            &format!("exports_uri={exports}"),
            "--var",
            &format!("marts_uri={marts}"),
        ])
        // The fixtures are a few rows with every kind of fault, and their last event is days
        // before as_of: thresholds for them, not for a real export.
        .args(["--var", "max_quarantine_share=0.5", "--var", "max_event_age=7d"]);
    command
}

/// The `run_results.json` of ds 2026-10-31 under `marts`.
pub fn run_results(project: &Project, marts: &str) -> serde_json::Value {
    let path = project.path(&format!("{marts}/_runs/ds=2026-10-31/run_results.json"));
    serde_json::from_slice(&std::fs::read(path).expect("run_results.json")).expect("json")
}

/// Serve on a random loopback port from a thread and runtime of its own, which outlive every
/// test's runtime: `serve` gets the bound listener. Returns the address.
pub fn serve_on_loopback<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            sender.send(listener.local_addr().expect("addr")).expect("send addr");
            serve(listener).await;
        });
    });
    receiver.recv().expect("server address")
}

/// A runtime for the async helpers below (tests themselves stay synchronous).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
        })
        .block_on(future)
}

/// Read Parquet files at `location` (a folder or file URL/path) with `sql` over table `t`,
/// formatted as a table for comparison.
pub fn query_parquet(ctx: &SessionContext, location: &str, sql: &str) -> String {
    block_on(async {
        let _ = ctx.deregister_table("t");
        ctx.register_parquet("t", location, ParquetReadOptions::default())
            .await
            .expect("register parquet");
        let batches: Vec<RecordBatch> = ctx.sql(sql).await.expect("sql").collect().await.expect("collect");
        pretty_format_batches(&batches).expect("format").to_string()
    })
}

/// The first column of `sql` over the Parquet files in `folder` (table `t`), as text (NULL as
/// "NULL"): queries build one `concat_ws('|', ...)` column per row to compare with expectations.
pub fn first_column(folder: &Path, sql: &str) -> Vec<String> {
    block_on(async {
        let ctx = SessionContext::new();
        ctx.register_parquet("t", folder.to_str().expect("utf-8"), ParquetReadOptions::default())
            .await
            .expect("register");
        let batches = ctx.sql(sql).await.expect("sql").collect().await.expect("collect");
        let mut out = Vec::new();
        for batch in batches {
            let column = cast(batch.column(0), &DataType::Utf8).expect("cast");
            let strings = column.as_string::<i32>();
            out.extend((0..strings.len()).map(|i| {
                if strings.is_null(i) {
                    "NULL".to_string()
                } else {
                    strings.value(i).to_string()
                }
            }));
        }
        out
    })
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Every mart's Parquet bytes by mart name (marts are written sorted; file names hold the run id);
/// what runs keep under `_state/` is not a mart.
pub fn mart_bytes(project: &Project, marts: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = project.path(marts);
    files_below(&root)
        .into_iter()
        .filter(|file| file.ends_with(".parquet") && !file.starts_with('_'))
        .map(|file| {
            let bytes = std::fs::read(root.join(&file)).expect("read mart");
            (file.split('/').next().unwrap_or_default().to_string(), bytes)
        })
        .collect()
}
