//! Storage faults between `lifemap` and the real S3 test server, injected by a TCP proxy:
//! throttling (503 SlowDown), dropped connections, stalls and an upload cut in the middle are
//! survived through object_store's bounded retries; an outage that outlasts them exits 75 with
//! the published marts as they were and no report sent.

use std::time::Duration;

use super::{s3_command, s3_mart};
use crate::common::fixture::{self, EVENTS_PER_CUSTOMER_1031};
use crate::common::proxy::{Fault, FaultProxy, Request};
use crate::common::s3::{S3Target, target};
use crate::common::{Outcome, Project, files_below, run};

/// The shop pipeline with short timeouts, a mart big enough to upload in one ~3 MB request,
/// and a report delivered to the outbox.
fn faulty_shop(test: &str) -> (Project, S3Target, FaultProxy) {
    let s3 = target(test);
    let project = Project::new();
    fixture::install_pipeline(&project);
    let pipeline = fixture::shop_with_s3_settings(&[
        "max_retries: 4",
        "retry_timeout: 30s",
        "request_timeout: 2s",
        "connect_timeout: 1s",
    ])
    .replace(
            "output:",
            "  - name: big\n    query: SELECT value AS n, sha256(CAST(value AS VARCHAR)) AS digest FROM generate_series(1, 100000)\noutput:",
        )
        .replace("marts:\n", "marts:\n  big: {}\n")
        + "report:\n  template: shop.html.j2\n  text_template: shop.txt.j2\n  subject: \"Shop {{ ds }}\"\n  from: reports@example.com\n  to: [boss@example.com]\n  marts: [events_per_customer]\n  delivery:\n    outbox: outbox\n";
    project.write("pipelines/shop.yaml", pipeline);
    project.write(
        "report-templates/shop.html.j2",
        "<html><body>{{ data.events_per_customer|length }} customers</body></html>",
    );
    project.write(
        "report-templates/shop.txt.j2",
        "{{ data.events_per_customer|length }} customers",
    );
    for (path, content) in fixture::exports() {
        s3.put(&format!("exports/{path}"), content);
    }
    let proxy = FaultProxy::start(&s3.endpoint);
    (project, s3, proxy)
}

/// `lifemap run --ds 2026-10-31` of the shop through the proxy.
fn run_through(project: &Project, s3: &S3Target, proxy: &FaultProxy, extra: &[&str]) -> Outcome {
    let mut via_proxy = s3.clone();
    via_proxy.endpoint = proxy.endpoint.clone();
    let mut command = s3_command(project, &via_proxy, &["--ds", "2026-10-31"]);
    command.args(extra);
    run(command)
}

fn events_per_customer(s3: &S3Target) -> String {
    s3_mart(
        s3,
        "events_per_customer",
        "2026-10-31",
        "SELECT * FROM t ORDER BY customer_id",
    )
}

fn count(injected: &[(Request, Fault)], wanted: fn(&Fault) -> bool) -> usize {
    injected.iter().filter(|(_, fault)| wanted(fault)).count()
}

#[test]
fn transient_faults_are_survived() {
    let (project, s3, proxy) = faulty_shop("transient");
    let mut seen = 0;
    let mut events_throttled = false;
    let mut upload_cut = false;
    proxy.set_rule(move |request| {
        seen += 1;
        match seen {
            1 => return Fault::SlowDown,
            2 => return Fault::Drop,
            3 => return Fault::Stall(Duration::from_secs(3)),
            _ => {}
        }
        if request.method == "GET" && request.target.contains("/exports/events/") && !events_throttled {
            events_throttled = true;
            return Fault::SlowDown;
        }
        if request.method == "PUT" && request.content_length > 1_000_000 && !upload_cut {
            upload_cut = true;
            return Fault::Cut(request.content_length / 2);
        }
        Fault::Pass
    });

    let outcome = run_through(&project, &s3, &proxy, &[]);
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);

    let injected = proxy.injected();
    assert_eq!(count(&injected, |f| *f == Fault::SlowDown), 2, "{injected:?}");
    assert_eq!(count(&injected, |f| *f == Fault::Drop), 1, "{injected:?}");
    assert_eq!(count(&injected, |f| matches!(f, Fault::Stall(_))), 1, "{injected:?}");
    assert_eq!(count(&injected, |f| matches!(f, Fault::Cut(_))), 1, "{injected:?}");

    assert_eq!(events_per_customer(&s3), EVENTS_PER_CUSTOMER_1031);
    // The upload cut in half was sent again whole.
    assert_eq!(
        s3_mart(&s3, "big", "2026-10-31", "SELECT COUNT(*) AS n, SUM(n) AS total FROM t"),
        "+--------+------------+\n| n      | total      |\n+--------+------------+\n| 100000 | 5000050000 |\n+--------+------------+"
    );
    let sent: Vec<String> = files_below(&project.path("outbox"))
        .into_iter()
        .filter(|name| name.ends_with(".eml"))
        .collect();
    assert_eq!(sent.len(), 1, "one report: {sent:?}");
}

#[test]
fn an_outage_that_outlasts_the_retries_exits_75_and_changes_nothing() {
    let (project, s3, proxy) = faulty_shop("outage");
    // Published without a report, so that a successful rerun would send one.
    assert_eq!(run_through(&project, &s3, &proxy, &["--no-report"]).code, 0);
    let published = s3.list("out/events_per_customer/ds=2026-10-31/");
    assert!(files_below(&project.path("outbox")).is_empty());

    // Late data that a successful rerun would publish; the storage goes down after the first
    // object of the rerun is staged.
    let (path, content) = fixture::late_event();
    s3.put(&format!("exports/{path}"), content);
    let mut staged = false;
    proxy.set_rule(move |request| {
        if staged {
            return Fault::SlowDown;
        }
        staged = request.method == "PUT" && request.target.contains("/_staging/");
        Fault::Pass
    });
    let outcome = run_through(&project, &s3, &proxy, &[]);
    assert_eq!(outcome.code, 75, "stderr:\n{}", outcome.stderr);
    assert!(outcome.stderr.contains("safe to retry"), "{}", outcome.stderr);
    assert!(
        count(&proxy.injected(), |f| *f == Fault::SlowDown) > 4,
        "the outage outlasted the retries: {:?}",
        proxy.injected()
    );

    assert_eq!(s3.list("out/events_per_customer/ds=2026-10-31/"), published);
    assert_eq!(events_per_customer(&s3), EVENTS_PER_CUSTOMER_1031);
    assert!(files_below(&project.path("outbox")).is_empty(), "no report sent");
}
