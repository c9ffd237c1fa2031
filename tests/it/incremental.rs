//! Incremental steps: runs that keep the staged events between them publish the marts a full
//! rebuild publishes, whatever the order of the runs and whatever happens to the exports or the
//! kept state in between.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{Project, files_below, run_expecting};

const PIPELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/customer_lifecycle.yaml");

/// A run of the bundled pipeline over `exports` for `ds`, publishing under `marts`, in a time
/// zone other than UTC.
fn lifecycle_run(project: &Project, ds: &str, marts: &str, extra: &[&str]) -> serde_json::Value {
    let mut command = project.lifemap();
    command
        .args(["run", PIPELINE, "--ds", ds, "--no-report"])
        .args(["--var", "exports_uri=exports", "--var", &format!("marts_uri={marts}")])
        .args(["--var", "max_quarantine_share=0.5", "--var", "max_event_age=30d"])
        .env("LIFEMAP_TIMEZONE", "America/New_York")
        .args(extra);
    let outcome = run_expecting(command, 0);
    let results_path = project.path(&format!("{marts}/_runs/ds={ds}/run_results.json"));
    let mut results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results_path).expect("run_results.json")).expect("json");
    results["stderr"] = outcome.stderr.into();
    results
}

/// Every mart's files of `ds` under `marts`, by mart (file names hold run ids: left out).
fn marts_of(root: &Path, ds: &str) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut marts: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for file in files_below(root) {
        let parts: Vec<&str> = file.split('/').collect();
        if parts.len() == 3
            && !parts[0].starts_with('_')
            && parts[1] == format!("ds={ds}")
            && parts[2].ends_with(".parquet")
        {
            marts
                .entry(parts[0].to_string())
                .or_default()
                .push(std::fs::read(root.join(&file)).expect("mart file"));
        }
    }
    marts
}

/// Check the incremental run's marts of `ds` against a full rebuild from the same exports, in an
/// output of its own with nothing kept.
fn assert_same_as_full_rebuild(project: &Project, ds: &str, after: &str) {
    let full = format!("full/{}", after.replace(' ', "_"));
    lifecycle_run(project, ds, &full, &[]);
    let incremental = marts_of(&project.path("inc"), ds);
    let rebuilt = marts_of(&project.path(&full), ds);
    assert_eq!(rebuilt.len(), 11, "{after}: every mart published");
    assert_eq!(
        incremental.keys().collect::<Vec<_>>(),
        rebuilt.keys().collect::<Vec<_>>(),
        "{after}"
    );
    for (mart, files) in &rebuilt {
        assert!(
            incremental[mart] == *files,
            "{after}: mart {mart} of {ds} differs from a full rebuild"
        );
    }
}

/// What the staged_events step did in a run.
fn staged(results: &serde_json::Value) -> serde_json::Value {
    results["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["name"] == "staged_events")
        .expect("staged_events ran")["details"]["incremental"]
        .clone()
}

fn deliver(project: &Project, day: &str) {
    let from = project.path(&format!("incoming/dt={day}"));
    let to = project.path(&format!("exports/events/dt={day}"));
    std::fs::rename(from, to).expect("deliver a day");
}

#[test]
fn incremental_runs_in_any_order_publish_the_marts_of_a_full_rebuild() {
    let project = Project::new();
    let mut generate = project.lifemap();
    generate.args([
        "sample-data",
        "--customers",
        "120",
        "--days",
        "45",
        "--end",
        "2026-09-03",
        "--seed",
        "11",
        "--out",
        "exports",
    ]);
    run_expecting(generate, 0);
    // The exports arrive day by day: the last six days wait aside.
    std::fs::create_dir_all(project.path("incoming")).expect("incoming");
    for day in [
        "2026-08-29",
        "2026-08-30",
        "2026-08-31",
        "2026-09-01",
        "2026-09-02",
        "2026-09-03",
    ] {
        std::fs::rename(
            project.path(&format!("exports/events/dt={day}")),
            project.path(&format!("incoming/dt={day}")),
        )
        .expect("set a day aside");
    }
    for day in ["2026-08-29", "2026-08-30"] {
        deliver(&project, day);
    }
    // A device seen anonymously, a malformed line, and the first copy of an event sent twice.
    project.write(
        "exports/events/dt=2026-08-29/part-extra.ndjson",
        concat!(
            r#"{"event_id":"anon-1","anonymous_id":"device-9","event_type":"ad_click","channel":"paid_search","occurred_at":"2026-08-29T09:00:00-04:00"}"#,
            "\n",
            r#"{"event_id":"anon-2","anonymous_id":"device-9","event_type":"product_view","channel":"web","occurred_at":"2026-08-29T09:05:00-04:00"}"#,
            "\n",
            "{not json\n",
            r#"{"event_id":"twice-1","customer_id":"c-extra","event_type":"product_view","channel":"app","occurred_at":"2026-08-29T10:00:00Z"}"#,
            "\n",
        ),
    );

    // A first run, with nothing kept: every partition is computed.
    let first = lifecycle_run(&project, "2026-08-29", "inc", &[]);
    assert_eq!(staged(&first)["state"], "none yet");
    assert_eq!(staged(&first)["kept"], 0);
    assert_same_as_full_rebuild(&project, "2026-08-29", "the first run");

    // The next day, at an ISO week's end: only the partition that arrived is computed.
    deliver(&project, "2026-08-31");
    let second = lifecycle_run(&project, "2026-08-30", "inc", &[]);
    assert_eq!(staged(&second)["computed"], 1, "{}", staged(&second));
    assert_same_as_full_rebuild(&project, "2026-08-30", "the next day");

    // Days later, over a month's end: the device logs in as a customer (its earlier events move
    // to her), and the event sent twice arrives again, stamped earlier.
    deliver(&project, "2026-09-01");
    project.write(
        "exports/events/dt=2026-09-01/part-extra.ndjson",
        concat!(
            r#"{"event_id":"login-1","anonymous_id":"device-9","customer_id":"c-extra","event_type":"product_view","channel":"web","occurred_at":"2026-09-01T08:00:00-04:00"}"#,
            "\n",
            r#"{"event_id":"twice-1","customer_id":"c-extra","event_type":"product_view","channel":"app","occurred_at":"2026-08-29T08:00:00Z"}"#,
            "\n",
        ),
    );
    deliver(&project, "2026-09-02");
    deliver(&project, "2026-09-03");
    let gap = lifecycle_run(&project, "2026-09-01", "inc", &[]);
    assert_eq!(staged(&gap)["computed"], 3, "{}", staged(&gap));
    assert_same_as_full_rebuild(&project, "2026-09-01", "a gap");

    // An earlier day run again, after later ones: nothing to compute.
    let earlier = lifecycle_run(&project, "2026-08-31", "inc", &[]);
    assert_eq!(staged(&earlier)["computed"], 0, "{}", staged(&earlier));
    assert_same_as_full_rebuild(&project, "2026-08-31", "an earlier day");

    // A file filed late into a partition already kept, and another re-exported with new content.
    project.write(
        "exports/events/dt=2026-08-30/part-late.ndjson",
        concat!(
            r#"{"event_id":"late-1","customer_id":"c-extra","event_type":"review_posted","channel":"web","occurred_at":"2026-08-30T12:00:00Z"}"#,
            "\n"
        ),
    );
    let extra = project.path("exports/events/dt=2026-08-29/part-extra.ndjson");
    let mut text = std::fs::read_to_string(&extra).expect("extra");
    text.push_str(concat!(
        r#"{"event_id":"anon-3","anonymous_id":"device-9","event_type":"add_to_cart","channel":"web","occurred_at":"2026-08-29T11:00:00-04:00"}"#,
        "\n"
    ));
    std::fs::write(&extra, text).expect("re-export");
    let corrected = lifecycle_run(&project, "2026-09-01", "inc", &[]);
    let why = &staged(&corrected)["why_computed"];
    assert_eq!(why["objects added or removed"], 1, "{why}");
    assert_eq!(why["objects replaced"], 1, "{why}");
    assert_same_as_full_rebuild(&project, "2026-09-01", "late and re-exported files");

    // A backfill over all of it reuses what is kept.
    let mut backfill = project.lifemap();
    backfill
        .args([
            "run",
            PIPELINE,
            "--from",
            "2026-08-29",
            "--to",
            "2026-09-01",
            "--no-report",
        ])
        .args(["--var", "exports_uri=exports", "--var", "marts_uri=inc"])
        .args(["--var", "max_quarantine_share=0.5", "--var", "max_event_age=30d"])
        .env("LIFEMAP_TIMEZONE", "America/New_York");
    run_expecting(backfill, 0);
    for ds in ["2026-08-29", "2026-08-30"] {
        assert_same_as_full_rebuild(&project, ds, &format!("a backfill, {ds}"));
    }

    // Damaged state: a kept file truncated is computed again; a state.json that is not one, or
    // one another lifemap wrote, is rebuilt with a warning.
    let kept_folder = project.path("inc/_state/steps/staged_events/dt=2026-08-31");
    let kept_file = files_below(&kept_folder).into_iter().next().expect("a kept file");
    let bytes = std::fs::read(kept_folder.join(&kept_file)).expect("kept file");
    std::fs::write(kept_folder.join(&kept_file), &bytes[..bytes.len() / 2]).expect("truncate");
    let truncated = lifecycle_run(&project, "2026-09-01", "inc", &[]);
    assert_eq!(
        staged(&truncated)["why_computed"]["kept files missing or truncated"],
        1,
        "{}",
        staged(&truncated)
    );
    assert_same_as_full_rebuild(&project, "2026-09-01", "a truncated kept file");

    let state_file = project.path("inc/_state/steps/staged_events/state.json");
    let state = std::fs::read_to_string(&state_file).expect("state.json");
    std::fs::write(&state_file, &state[..state.len() / 3]).expect("truncate state.json");
    let unreadable = lifecycle_run(&project, "2026-09-01", "inc", &[]);
    assert!(
        staged(&unreadable)["state"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rebuilt: "),
        "{}",
        staged(&unreadable)
    );
    assert!(
        unreadable["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be used")
    );
    assert_same_as_full_rebuild(&project, "2026-09-01", "an unreadable state");

    let state = std::fs::read_to_string(&state_file).expect("state.json");
    let foreign = state.replace(
        &format!("\"lifemap_version\":\"{}\"", env!("CARGO_PKG_VERSION")),
        "\"lifemap_version\":\"0.0.1\"",
    );
    assert_ne!(foreign, state);
    std::fs::write(&state_file, foreign).expect("foreign state");
    let rebuilt = lifecycle_run(&project, "2026-09-01", "inc", &[]);
    assert_eq!(
        staged(&rebuilt)["state"],
        format!(
            "rebuilt: written by lifemap 0.0.1, this is {}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_same_as_full_rebuild(&project, "2026-09-01", "another version's state");

    // --full-refresh computes everything again, and leaves no file the state does not list.
    let refreshed = lifecycle_run(&project, "2026-09-01", "inc", &["--full-refresh"]);
    assert_eq!(staged(&refreshed)["kept"], 0);
    assert_eq!(
        staged(&refreshed)["why_computed"]["full refresh"],
        staged(&refreshed)["partitions"]
    );
    assert_same_as_full_rebuild(&project, "2026-09-01", "a full refresh");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    let listed: usize = state["partitions"]
        .as_object()
        .expect("partitions")
        .values()
        .map(|p| p["files"].as_array().expect("files").len())
        .sum();
    let on_disk = files_below(&project.path("inc/_state/steps/staged_events"))
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .count();
    assert_eq!(listed, on_disk);
}

/// A small deterministic generator (SplitMix64): the same sequence on every machine.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The first event id of a generated partition, for sending it again on another day.
fn first_event_id(project: &Project, day: &str) -> String {
    use std::io::Read;
    let folder = project.path(&format!("exports/events/dt={day}"));
    let file = files_below(&folder)
        .into_iter()
        .find(|f| f.ends_with(".gz"))
        .expect("a generated file");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(folder.join(file)).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    let line: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    line["event_id"].as_str().expect("event_id").to_string()
}

/// One change to the exports between two runs, as exports really change.
fn change_exports(project: &Project, change: u64, step: usize, dice: &mut Dice) -> &'static str {
    let day = |dice: &mut Dice| format!("2026-08-{:02}", 22 + dice.below(8));
    match change {
        0 => {
            // Filed late into a partition runs have kept.
            project.write(
                &format!("exports/events/dt={}/part-late-{step}.ndjson", day(dice)),
                format!(
                    "{{\"event_id\":\"late-{step}\",\"customer_id\":\"c-late-{step}\",\"event_type\":\"product_view\",\"channel\":\"web\",\"occurred_at\":\"2026-08-20T10:00:00Z\"}}\n"
                ),
            );
            "a late file"
        }
        1 => {
            // An event sent again days later (stamped earlier: the copy kept changes).
            let id = first_event_id(project, &day(dice));
            project.write(
                &format!("exports/events/dt=2026-08-30/part-again-{step}.ndjson"),
                format!(
                    "{{\"event_id\":\"{id}\",\"customer_id\":\"c-again\",\"event_type\":\"ad_click\",\"channel\":\"email\",\"occurred_at\":\"2026-08-01T00:00:00Z\"}}\n"
                ),
            );
            "an event id on two days"
        }
        2 => {
            // An order refunded in a later export.
            let path = project.path("exports/orders/orders.csv.gz");
            let mut text = String::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("orders"))
                .read_to_string(&mut text)
                .expect("gunzip");
            std::fs::write(
                &path,
                crate::common::fixture::gzip(&text.replacen(",completed", ",refunded", 1)),
            )
            .expect("refund");
            "a refund"
        }
        3 => {
            // A survey answer, and a broken line to quarantine.
            project.write(
                &format!("exports/feedback/more-{step}.csv"),
                format!("response_id,customer_id,responded_at,nps_score,comment\nR-{step},c-late-0,2026-08-25T10:00:00Z,10,Great\n"),
            );
            project.write(
                &format!("exports/events/dt={}/part-bad-{step}.ndjson", day(dice)),
                "{\"event_id\": \n",
            );
            "an NPS answer and a broken line"
        }
        _ => "nothing: days pass",
    }
}

#[test]
fn random_sequences_of_runs_and_export_changes_publish_the_marts_of_full_rebuilds() {
    let project = Project::new();
    let mut generate = project.lifemap();
    generate.args([
        "sample-data",
        "--customers",
        "80",
        "--days",
        "40",
        "--end",
        "2026-09-02",
        "--seed",
        "23",
        "--out",
        "exports",
    ]);
    run_expecting(generate, 0);
    // Days after the last activity, with an empty export: thresholds are crossed without a row.
    project.write("exports/events/dt=2026-09-20/part-0.ndjson", "");
    let dates = [
        "2026-08-24",
        "2026-08-30",
        "2026-08-31",
        "2026-09-01",
        "2026-09-02",
        "2026-09-20",
    ];
    let mut dice = Dice(0x5EED_2026_1207);
    for step in 0..7 {
        // Every kind of change comes up; the dates run in a random order.
        let change = change_exports(&project, step as u64 % 5, step, &mut dice);
        let ds = dates[dice.below(dates.len() as u64) as usize];
        let mut command = project.lifemap();
        command
            .args(["run", PIPELINE, "--ds", ds, "--no-report"])
            .args(["--var", "exports_uri=exports", "--var", "marts_uri=inc"])
            .args(["--var", "max_quarantine_share=0.5", "--var", "max_event_age=60d"])
            .env("LIFEMAP_TIMEZONE", "Asia/Kolkata");
        run_expecting(command, 0);
        let full = format!("full/{step}");
        let mut rebuild = project.lifemap();
        rebuild
            .args(["run", PIPELINE, "--ds", ds, "--no-report"])
            .args(["--var", "exports_uri=exports", "--var", &format!("marts_uri={full}")])
            .args(["--var", "max_quarantine_share=0.5", "--var", "max_event_age=60d"])
            .env("LIFEMAP_TIMEZONE", "Asia/Kolkata");
        run_expecting(rebuild, 0);
        let incremental = marts_of(&project.path("inc"), ds);
        let rebuilt = marts_of(&project.path(&full), ds);
        assert_eq!(rebuilt.len(), 11, "step {step}");
        assert!(
            incremental == rebuilt,
            "step {step}: after {change}, the marts of {ds} differ from a full rebuild"
        );
    }
}
