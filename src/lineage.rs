//! Lineage: OpenLineage 2-0-2 RunEvents for each run (START, then COMPLETE, FAIL or ABORT), with
//! the sources read and the mart partitions written as datasets.
//!
//! Configured the way OpenLineage's own clients are, from the environment:
//!
//! - `OPENLINEAGE_URL` (and `OPENLINEAGE_ENDPOINT`, default `api/v1/lineage`;
//!   `OPENLINEAGE_API_KEY`, sent as a bearer token): POST each event there;
//! - `OPENLINEAGE__TRANSPORT__TYPE=file` with `OPENLINEAGE__TRANSPORT__LOG_FILE_PATH`: append each
//!   event to that file, one JSON object per line;
//! - `OPENLINEAGE_NAMESPACE`: the job's namespace (default `lifemap`);
//! - `OPENLINEAGE_PARENT_ID` / `OPENLINEAGE_ROOT_PARENT_ID`: `namespace/job/run-uuid` of the task
//!   that started lifemap (as the OpenLineage Airflow provider's macros give them);
//! - `OPENLINEAGE_DISABLED=true`: nothing is sent.
//!
//! Off when none is set. An endpoint that is down or refuses an event never fails a run: the
//! event is dropped with a warning. The events are built here by hand (serde_json) rather than
//! with `openlineage-client` 0.0.5: the few facets lifemap sends are plain JSON, and CI
//! validates every event against the spec's JSON schemas.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json";
// A URI naming lifemap and its version (no public repository URL to point at).
const PRODUCER: &str = concat!("urn:lifemap:", env!("CARGO_PKG_VERSION"));
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where events go.
#[derive(Debug, Clone)]
enum Transport {
    Http { url: String, api_key: Option<String> },
    File(PathBuf),
}

/// A run's lineage emitter; does nothing when lineage is not configured.
#[derive(Debug, Clone)]
pub struct Lineage {
    transport: Option<Transport>,
    namespace: String,
    job: String,
    run_id: Uuid,
    parent: Option<(String, String, String)>,
    root: Option<(String, String, String)>,
}

/// How a run ended, for its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Complete,
    Fail,
    Abort,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

/// A data-quality check's result, as the `dataQualityAssertions` facet reports it.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub name: String,
    pub kind: String,
    pub success: bool,
    pub severity: String,
}

/// A dataset read or written: where, its columns, and what the run learned about it.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// `s3://bucket/path`, `file:///path` or a local path.
    pub location: String,
    /// Column name and type.
    pub fields: Vec<(String, String)>,
    /// Rows, bytes and files written (outputs).
    pub statistics: Option<(u64, u64, usize)>,
    pub assertions: Vec<Assertion>,
}

/// `namespace/job/run-uuid`, as OpenLineage's clients pass a parent run.
fn parse_parent(text: &str) -> Option<(String, String, String)> {
    let (namespace, rest) = text.split_once('/')?;
    let (job, run) = rest.rsplit_once('/')?;
    let run = Uuid::parse_str(run).ok()?;
    (!namespace.is_empty() && !job.is_empty()).then(|| (namespace.to_string(), job.to_string(), run.to_string()))
}

fn facet(schema: &str, name: &str, body: Value) -> Value {
    let mut body = body;
    if let Value::Object(map) = &mut body {
        map.insert("_producer".into(), json!(PRODUCER));
        map.insert(
            "_schemaURL".into(),
            json!(format!("https://openlineage.io/spec/facets/{schema}#/$defs/{name}")),
        );
    }
    body
}

/// OpenLineage's dataset naming: `s3://bucket` and the key; `file` and the absolute path.
fn naming(location: &str) -> (String, String) {
    match url::Url::parse(location) {
        Ok(url) if url.scheme() == "s3" => (
            format!("s3://{}", url.host_str().unwrap_or_default()),
            url.path().trim_matches('/').to_string(),
        ),
        Ok(url) if url.scheme() == "file" => ("file".to_string(), url.path().trim_end_matches('/').to_string()),
        _ => {
            let absolute = std::path::absolute(location).unwrap_or_else(|_| PathBuf::from(location));
            (
                "file".to_string(),
                absolute.to_string_lossy().trim_end_matches('/').to_string(),
            )
        }
    }
}

impl Dataset {
    fn event_json(&self, output: bool) -> Value {
        let (namespace, name) = naming(&self.location);
        let mut facets = serde_json::Map::new();
        if !self.fields.is_empty() {
            let fields: Vec<Value> = self
                .fields
                .iter()
                .map(|(name, kind)| json!({"name": name, "type": kind}))
                .collect();
            facets.insert(
                "schema".into(),
                facet(
                    "1-2-0/SchemaDatasetFacet.json",
                    "SchemaDatasetFacet",
                    json!({"fields": fields}),
                ),
            );
        }
        let assertions = (!self.assertions.is_empty()).then(|| {
            let assertions: Vec<Value> = self
                .assertions
                .iter()
                .map(|a| json!({"name": a.name, "assertion": a.kind, "success": a.success, "severity": a.severity}))
                .collect();
            facet(
                "1-1-0/DataQualityAssertionsDatasetFacet.json",
                "DataQualityAssertionsDatasetFacet",
                json!({"assertions": assertions}),
            )
        });
        let mut dataset = json!({"namespace": namespace, "name": name, "facets": facets});
        if output {
            if let Some(assertions) = assertions {
                dataset["facets"]["dataQualityAssertions"] = assertions;
            }
            if let Some((rows, bytes, files)) = self.statistics {
                dataset["outputFacets"] = json!({"outputStatistics": facet(
                    "1-0-2/OutputStatisticsOutputDatasetFacet.json",
                    "OutputStatisticsOutputDatasetFacet",
                    json!({"rowCount": rows, "size": bytes, "fileCount": files}),
                )});
            }
        } else if let Some(assertions) = assertions {
            dataset["inputFacets"] = json!({"dataQualityAssertions": assertions});
        }
        dataset
    }
}

impl Lineage {
    /// The emitter for a run of `job`, configured from the environment.
    pub fn from_env(job: &str) -> Lineage {
        Self::from_vars(job, |name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    fn from_vars(job: &str, var: impl Fn(&str) -> Option<String>) -> Lineage {
        let disabled = var("OPENLINEAGE_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let transport = if disabled {
            None
        } else if var("OPENLINEAGE__TRANSPORT__TYPE").as_deref() == Some("file") {
            var("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH").map(|path| Transport::File(PathBuf::from(path)))
        } else {
            var("OPENLINEAGE_URL").map(|base| {
                let endpoint = var("OPENLINEAGE_ENDPOINT").unwrap_or_else(|| "api/v1/lineage".to_string());
                Transport::Http {
                    url: format!("{}/{}", base.trim_end_matches('/'), endpoint.trim_start_matches('/')),
                    api_key: var("OPENLINEAGE_API_KEY"),
                }
            })
        };
        let parent = var("OPENLINEAGE_PARENT_ID").and_then(|text| {
            let parsed = parse_parent(&text);
            if parsed.is_none() {
                tracing::warn!(value = %text, "OPENLINEAGE_PARENT_ID is not namespace/job/run-uuid: ignored");
            }
            parsed
        });
        Lineage {
            transport,
            namespace: var("OPENLINEAGE_NAMESPACE").unwrap_or_else(|| "lifemap".to_string()),
            job: job.to_string(),
            run_id: Uuid::now_v7(),
            root: var("OPENLINEAGE_ROOT_PARENT_ID").and_then(|text| parse_parent(&text)),
            parent,
        }
    }

    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// The run's id in lineage events (a UUID, as OpenLineage requires).
    pub fn run_id(&self) -> String {
        self.run_id.to_string()
    }

    /// The event of `kind` for this run.
    pub fn event(&self, kind: EventType, inputs: &[Dataset], outputs: &[Dataset], error: Option<&str>) -> Value {
        let mut run_facets = serde_json::Map::new();
        run_facets.insert(
            "processing_engine".into(),
            facet(
                "1-1-1/ProcessingEngineRunFacet.json",
                "ProcessingEngineRunFacet",
                json!({"version": env!("CARGO_PKG_VERSION"), "name": "lifemap"}),
            ),
        );
        if let Some(own) = &self.parent {
            let (namespace, job, run) = own;
            let mut parent = json!({"run": {"runId": run}, "job": {"namespace": namespace, "name": job}});
            let (root_namespace, root_job, root_run) = self.root.as_ref().unwrap_or(own);
            parent["root"] =
                json!({"run": {"runId": root_run}, "job": {"namespace": root_namespace, "name": root_job}});
            run_facets.insert(
                "parent".into(),
                facet("1-2-0/ParentRunFacet.json", "ParentRunFacet", parent),
            );
        }
        if let Some(message) = error {
            run_facets.insert(
                "errorMessage".into(),
                facet(
                    "1-0-1/ErrorMessageRunFacet.json",
                    "ErrorMessageRunFacet",
                    json!({"message": message, "programmingLanguage": "Rust"}),
                ),
            );
        }
        json!({
            "eventType": kind.as_str(),
            "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "producer": PRODUCER,
            "schemaURL": format!("{SPEC}#/$defs/RunEvent"),
            "run": {"runId": self.run_id(), "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": self.job,
                "facets": {"jobType": facet(
                    "2-0-4/JobTypeJobFacet.json",
                    "JobTypeJobFacet",
                    json!({"processingType": "BATCH", "integration": "LIFEMAP", "jobType": "PIPELINE"}),
                )},
            },
            "inputs": inputs.iter().map(|d| d.event_json(false)).collect::<Vec<_>>(),
            "outputs": outputs.iter().map(|d| d.event_json(true)).collect::<Vec<_>>(),
        })
    }

    /// Send the event of `kind`; a failure is a warning, never the run's.
    pub async fn emit(&self, kind: EventType, inputs: &[Dataset], outputs: &[Dataset], error: Option<&str>) {
        let Some(transport) = &self.transport else {
            return;
        };
        let event = self.event(kind, inputs, outputs, error);
        let outcome = match transport {
            Transport::Http { url, api_key } => post(url, api_key.as_deref(), &event).await,
            Transport::File(path) => append(path, &event),
        };
        match outcome {
            Ok(()) => tracing::debug!(event = kind.as_str(), "lineage event sent"),
            Err(message) => tracing::warn!(event = kind.as_str(), error = %message, "lineage event not sent"),
        }
    }
}

async fn post(url: &str, api_key: Option<&str>, event: &Value) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|err| err.to_string())?;
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(event.to_string());
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|err| format!("{url}: {err}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", response.status()))
    }
}

fn append(path: &std::path::Path, event: &Value) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| format!("{}: {err}", path.display()))?;
    writeln!(file, "{event}").map_err(|err| format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_named_as_openlineage_names_them() {
        assert_eq!(
            naming("s3://acme/marts/revenue/ds=2026-10-31/"),
            ("s3://acme".to_string(), "marts/revenue/ds=2026-10-31".to_string())
        );
        assert_eq!(
            naming("file:///data/exports/orders/"),
            ("file".to_string(), "/data/exports/orders".to_string())
        );
    }

    #[test]
    fn a_parent_is_namespace_job_and_run_uuid() {
        let run = "01932f6e-7f4b-7a9c-8d2e-3f4a5b6c7d8e";
        assert_eq!(
            parse_parent(&format!("airflow/lifemap_customer_lifecycle.run_pipeline/{run}")),
            Some((
                "airflow".to_string(),
                "lifemap_customer_lifecycle.run_pipeline".to_string(),
                run.to_string()
            ))
        );
        assert_eq!(parse_parent("airflow/job/not-a-uuid"), None);
        let lineage = Lineage::from_vars("shop", |name| match name {
            "OPENLINEAGE_PARENT_ID" => Some(format!("airflow/dag.task/{run}")),
            _ => None,
        });
        assert!(!lineage.enabled(), "no transport configured: off");
        let event = lineage.event(EventType::Start, &[], &[], None);
        assert_eq!(event["run"]["facets"]["parent"]["run"]["runId"], run);
        assert_eq!(event["run"]["facets"]["parent"]["root"]["job"]["name"], "dag.task");
    }
}
