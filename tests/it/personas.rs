//! Personas and trend mapping of the bundled pipeline on the bundled sample.

use crate::common::{Project, bundled_run, files_below, first_column, run_expecting, run_results};

fn run_on_sample(project: &Project, marts: &str) -> serde_json::Value {
    run_expecting(
        bundled_run(project, &format!("{}/data/sample", env!("CARGO_MANIFEST_DIR")), marts),
        0,
    );
    run_results(project, marts)
}

fn strings(project: &Project, mart_folder: &str, sql: &str) -> Vec<String> {
    first_column(&project.path(mart_folder), sql)
}

#[test]
fn personas_and_trends_on_the_bundled_sample() {
    let project = Project::new();
    let results = run_on_sample(&project, "a");
    let step = results["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "persona_assignments")
        .expect("step");
    let details = &step["details"];
    let k = details["k"].as_u64().expect("k");
    assert!((2..=8).contains(&k), "{details}");
    assert_eq!(details["chosen_by"], "silhouette");
    assert_eq!(
        details["silhouettes"].as_array().map(Vec::len),
        Some(7),
        "k = 2..8 were all tried"
    );
    assert!(details["inertia"].as_f64().is_some_and(|i| i > 0.0));
    assert_eq!(details["skipped_rows"], 0, "every buyer has all five features");

    let personas = "a/personas/ds=2026-10-31/";
    let names = strings(&project, personas, "SELECT persona_name FROM t ORDER BY persona_id");
    assert_eq!(names.len() as u64, k);
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.chars().next().is_some_and(char::is_uppercase) && !n.contains("log_")),
        "{names:?}"
    );
    // Ids follow descending monetary centroid; shares add up; every buyer is in exactly one persona.
    assert_eq!(
        strings(
            &project,
            personas,
            "SELECT CAST(bool_and(ok) AS VARCHAR) FROM (SELECT z_log_monetary >= lead(z_log_monetary) OVER (ORDER BY persona_id) OR lead(z_log_monetary) OVER (ORDER BY persona_id) IS NULL AS ok FROM t)"
        ),
        vec!["true"]
    );
    assert_eq!(
        strings(
            &project,
            personas,
            "SELECT CAST(round(SUM(share), 9) AS VARCHAR) FROM t"
        ),
        vec!["1.0"]
    );
    let buyers = strings(
        &project,
        "a/customer_journey/ds=2026-10-31/",
        "SELECT CAST(COUNT(*) AS VARCHAR) FROM t WHERE orders > 0 AND persona_id IS NOT NULL",
    );
    assert_eq!(
        strings(&project, personas, "SELECT CAST(SUM(customers) AS VARCHAR) FROM t"),
        buyers
    );

    // The sample's eco_friendly share grows all year: trend mapping finds it.
    let eco = strings(
        &project,
        "a/trend_summary/ds=2026-10-31/",
        "SELECT concat_ws('|', metric, trend, weeks) FROM t WHERE dimension_value = 'eco_friendly' ORDER BY metric",
    );
    assert_eq!(
        eco,
        vec!["customers|emerging|26", "orders|emerging|26", "revenue|emerging|26"]
    );
    assert_eq!(
        strings(
            &project,
            "a/trend_series/ds=2026-10-31/",
            "SELECT concat_ws('|', MIN(week_start), MAX(week_start), COUNT(DISTINCT week_start)) FROM t"
        ),
        vec!["2026-04-27|2026-10-19|26"],
        "the 26 complete ISO weeks before as_of 2026-11-01: 2026-04-27 is 25 weeks before 2026-10-19"
    );

    // Same input, same seed: the same personas, byte for byte.
    run_on_sample(&project, "b");
    let bytes = |root: &str| -> Vec<u8> {
        let folder = project.path(&format!("{root}/personas/ds=2026-10-31"));
        let file = files_below(&folder)
            .into_iter()
            .find(|f| f.ends_with(".parquet"))
            .expect("file");
        std::fs::read(folder.join(file)).expect("read")
    };
    assert_eq!(bytes("a"), bytes("b"));
}

/// A kmeans step outside the bundled pipeline: two obvious groups on one line, a row with a NULL
/// feature that is counted, not clustered, and ids numbered by descending `spend` centroid.
#[test]
fn a_kmeans_step_clusters_any_table_and_counts_rows_it_cannot_place() {
    let project = Project::new();
    project.write(
        "pipelines/segments.yaml",
        r#"
name: segments
sources:
  shoppers:
    location: exports/shoppers.csv
    format: csv
    schema: { id: string, spend: float }
steps:
  - name: segments
    kmeans: { input: shoppers, id: id, features: [spend], k: 2, order_by: spend }
  - name: labelled
    query: SELECT s.id, s.spend, g.persona_id FROM shoppers s LEFT JOIN segments g ON g.id = s.id ORDER BY s.id
output:
  location: out
marts:
  labelled: {}
"#,
    );
    project.write("exports/shoppers.csv", "id,spend\na,1\nb,2\nc,3\nd,101\ne,102\nf,\n");
    let mut command = project.lifemap();
    command.args(["run", "pipelines/segments.yaml", "--ds", "2026-10-31"]);
    run_expecting(command, 0);
    let details = &run_results(&project, "out")["steps"][0]["details"];
    assert_eq!(
        (details["k"].as_u64(), details["chosen_by"].as_str()),
        (Some(2), Some("configured"))
    );
    assert_eq!(details["skipped_rows"], 1);
    assert_eq!(
        details["sizes"],
        serde_json::json!([2, 3]),
        "persona 1 is the high spenders"
    );
    assert_eq!(
        first_column(
            &project.path("out/labelled/ds=2026-10-31/"),
            "SELECT concat_ws('|', id, COALESCE(CAST(persona_id AS VARCHAR), 'none')) FROM t ORDER BY id"
        ),
        vec!["a|2", "b|2", "c|2", "d|1", "e|1", "f|none"]
    );
}
