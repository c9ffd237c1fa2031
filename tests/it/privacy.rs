//! Personal data: columns a source marks `pii` are hashed (HMAC-SHA-256 under LIFEMAP_PII_KEY)
//! or dropped as the source is read, so no mart, result file, report or log holds them in clear.

use std::path::Path;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::common::{Project, block_on, bundled_run, files_below, run_expecting};

const PIPELINE: &str = r#"
name: private
sources:
  customers:
    location: exports/
    format: csv
    schema: { customer_id: string, email: string, phone: string }
    pii:
      email: hash
      phone: drop
steps:
  - name: contacts
    query: SELECT * FROM customers ORDER BY customer_id
output:
  location: out
marts:
  contacts: {}
"#;

/// Every file below `dir` as text: Parquet files as their rows, others as they are.
fn texts_below(dir: &Path) -> Vec<(String, String)> {
    files_below(dir)
        .into_iter()
        .map(|relative| {
            let path = dir.join(&relative);
            let text = if relative.ends_with(".parquet") {
                block_on(async {
                    let ctx = SessionContext::new();
                    let frame = ctx
                        .read_parquet(path.to_str().expect("utf-8"), ParquetReadOptions::default())
                        .await
                        .expect("read parquet");
                    let batches = frame.collect().await.expect("collect");
                    pretty_format_batches(&batches).expect("format").to_string()
                })
            } else {
                String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned()
            };
            (relative, text)
        })
        .collect()
}

#[test]
fn personal_columns_are_hashed_or_dropped_as_the_source_is_read() {
    let project = Project::new();
    project.write("pipelines/private.yaml", PIPELINE);
    project.write(
        "exports/customers.csv",
        "customer_id,email,phone\nc1,ada@example.com,+44 20 7946 0018\nc2,,+1 555 0100\n",
    );

    // Without the key the run does not start: nothing is read, nothing is written.
    let mut command = project.lifemap();
    command.args(["run", "pipelines/private.yaml", "--ds", "2026-10-31"]);
    command.env_remove("LIFEMAP_PII_KEY");
    let outcome = run_expecting(command, 2);
    assert!(
        outcome
            .stderr
            .contains("source `customers` declares personal columns to hash (pii: email, phone); set LIFEMAP_PII_KEY"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path("out/contacts").exists());

    let mut command = project.lifemap();
    command.args(["run", "pipelines/private.yaml", "--ds", "2026-10-31"]);
    command
        .env("LIFEMAP_PII_KEY", "test-key")
        .env("LIFEMAP_LOG", "lifemap=trace,info");
    let outcome = run_expecting(command, 0);
    let marts = texts_below(&project.path("out"));
    let contacts = &marts
        .iter()
        .find(|(name, _)| name.starts_with("contacts/") && name.ends_with(".parquet"))
        .expect("contacts mart")
        .1;
    // HMAC-SHA-256("test-key", "ada@example.com"), worked out with Python's hmac module.
    assert_eq!(
        contacts.to_string(),
        "+-------------+------------------------------------------------------------------+\n\
         | customer_id | email                                                            |\n\
         +-------------+------------------------------------------------------------------+\n\
         | c1          | 0bd4d556f72ae6adff66c209a9bace1c625f24fedcd8c3612b7dbf3e8d2d9a53 |\n\
         | c2          |                                                                  |\n\
         +-------------+------------------------------------------------------------------+"
    );
    for (name, text) in marts.iter().chain(
        [
            ("stdout".to_string(), outcome.stdout),
            ("stderr".to_string(), outcome.stderr),
        ]
        .iter(),
    ) {
        for secret in ["ada@example.com", "7946 0018", "555 0100", "test-key"] {
            assert!(!text.contains(secret), "{name} holds {secret}:\n{text}");
        }
    }
}

#[test]
fn no_output_of_the_bundled_run_holds_a_customer_email() {
    // The fixture's customers have emails, and one (no id) is quarantined with its raw record.
    let project = crate::lifecycle::shop();
    let mut command = bundled_run(&project, "exports", "marts");
    command.args(["--log-format", "json", "-v"]);
    command.env("LIFEMAP_OUTBOX", project.path("outbox"));
    let outcome = run_expecting(command, 0);
    let quarantined = texts_below(&project.path("marts/quarantine"));
    assert!(
        quarantined
            .iter()
            .any(|(_, text)| text.contains("| customers | ,2026-10-12T15:00:00Z,US,direct")),
        "the customer without an id is quarantined: {quarantined:?}"
    );
    let mut outputs = texts_below(&project.path("marts"));
    outputs.extend(texts_below(&project.path("outbox")));
    assert!(
        outputs.iter().any(|(name, _)| name.ends_with(".html")),
        "a report was written"
    );
    outputs.push(("stdout".into(), outcome.stdout));
    outputs.push(("stderr".into(), outcome.stderr));
    let emails: Vec<String> = (1..=6)
        .map(|i| format!("c{i}@example.com"))
        .chain(["nobody@example.com".to_string()])
        .collect();
    for (name, text) in &outputs {
        for email in &emails {
            assert!(!text.contains(email.as_str()), "{name} holds {email}");
        }
    }
}

/// Whether `text` holds `token` on its own (not inside a longer id or a run id's hex digits).
fn holds_token(text: &str, token: &str) -> bool {
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(token).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + token.len()..].chars().next();
        !before.is_some_and(is_id_char) && !after.is_some_and(is_id_char)
    })
}

/// The rows of every mart of a run, as text.
fn mart_texts(marts: &Path) -> Vec<(String, String)> {
    texts_below(marts)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".parquet"))
        .collect()
}

#[test]
fn a_forgotten_customer_leaves_every_mart_with_their_anonymous_trail() {
    // c5 browsed as anonymous a5, logged in, bought o5; one of their events is quarantined.
    let project = crate::lifecycle::shop();
    // An earlier ds, whose marts hold c5 too (their events are before it).
    project.write(
        "exports/events/dt=2026-10-30/part-0.ndjson",
        r#"{"event_id":"e30","occurred_at":"2026-10-30T10:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    );
    let outbox = project.path("outbox");
    let run_ds = |ds: &str| {
        let mut command = crate::common::bundled_run_for(&project, "exports", "marts", ds);
        command.env("LIFEMAP_OUTBOX", &outbox);
        run_expecting(command, 0)
    };
    run_ds("2026-10-30");
    run_ds("2026-10-31");
    let earlier = mart_texts(&project.path("marts/customer_journey/ds=2026-10-30"));
    assert!(earlier.iter().any(|(_, text)| text.contains("| c5 ")), "{earlier:?}");
    let before = mart_texts(&project.path("marts"));
    for person in ["| c5 ", "\"customer_id\":\"c5\""] {
        assert!(
            before.iter().any(|(_, text)| text.contains(person)),
            "{person} is in the marts before"
        );
    }
    let journeys_before = crate::common::first_column(
        &project.path("marts/customer_journey/ds=2026-10-31/"),
        "SELECT COUNT(*) FROM t",
    );

    project.write("exports/suppressions/requests.csv", "customer_id\nc5\n");
    let outcome = run_ds("2026-10-31");
    // Every partition of every mart (10-30's rewritten), what runs keep, the archived reports,
    // the outbox: no trace of c5, their device or their email.
    let mut outputs = texts_below(&project.path("marts"));
    outputs.extend(texts_below(&outbox));
    assert!(
        outputs.iter().any(|(name, _)| name.starts_with("_reports/")),
        "reports archived"
    );
    for (name, text) in &outputs {
        for trace in ["c5", "a5", "c5@example.com"] {
            assert!(!holds_token(text, trace), "{name} still holds {trace}:\n{text}");
        }
    }
    let results = crate::common::run_results(&project, "marts");
    assert_eq!(results["forgotten_in_history"]["partitions"], 2, "{}", outcome.stderr);
    let journeys_after = crate::common::first_column(
        &project.path("marts/customer_journey/ds=2026-10-31/"),
        "SELECT COUNT(*) FROM t",
    );
    let count = |rows: &[String]| rows[0].parse::<u64>().expect("count");
    // a5 was c5 (stitched), so exactly one person goes.
    assert_eq!(count(&journeys_after), count(&journeys_before) - 1);
}
