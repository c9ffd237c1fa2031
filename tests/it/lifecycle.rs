//! The bundled pipeline on a hand-built shop whose every number is worked out below, by hand.
//!
//! ds = 2026-10-31 (a Saturday), as_of = 2026-11-01T00:00Z in UTC, conversion window 30 days.
//! Mondays of the weeks involved: 09-14, 09-21, 09-28, 10-05, 10-12, 10-19, 10-26.
//!
//! | person | what happens |
//! |---|---|
//! | c1 | email_open 10-05 10:00, product_view 10-06, order o1 10-07 (50), order o1b 10-20 (30), page_view e14 10-24 08:00 (sent twice: a copy at 09:00 is a duplicate), review_posted 10-25 18:00, NPS 10 on 10-26; e1 sent twice identically |
//! | c2 | ad_click, product_view and order o2 (20) all at 10-10 12:00 (equal timestamps); refunded o7; NPS 6 |
//! | c3 | ad_impression 09-28 (entry month September), add_to_cart 10-02, order o3 10-03 (40); NPS 8 |
//! | c4 | social_engagement 08-01, product_view 09-15: 45 days later, outside the window; no order |
//! | c5 | anonymous a5 landing_page_view 10-08 09:00, login (c5 + a5) 10-09 00:30, product_view 10-09 01:00, order o5 10-15 09:00 (60) |
//! | c6 | store order o6 10-12 15:00 (100), no events at all |
//! | a7 | anonymous ad_impression 10-20 15:00 and ad_click 10-26 02:00 (a Monday in UTC, a Sunday in New York) |
//!
//! Every event sits in the `dt=2026-10-31` partition, shuffled, with one bad row of each kind.

use std::collections::BTreeMap;

use crate::common::{Project, bundled_run, first_column, run_expecting, run_results};

const EVENTS: &[&str] = &[
    r#"{"event_id":"e12","occurred_at":"2026-10-09T01:00:00Z","customer_id":"c5","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{"category":"home"}}"#,
    r#"{"event_id":"e3","occurred_at":"2026-10-25T18:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"review_posted","channel":"web","properties":{}}"#,
    r#"{"event_id":"e90","occurred_at":"#,
    r#"{"event_id":"e2","occurred_at":"2026-10-06T12:00:00+02:00","customer_id":"c1","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{"category":"eco_friendly"}}"#,
    r#"{"event_id":"e1","occurred_at":"2026-10-05T10:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"email_open","channel":"email","properties":{"campaign":"oct"}}"#,
    r#"{"event_id":"e14","occurred_at":"2026-10-24T09:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e5","occurred_at":"2026-10-10T12:00:00Z","customer_id":"c2","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e4","occurred_at":"2026-10-10T12:00:00Z","customer_id":"c2","anonymous_id":null,"event_type":"ad_click","channel":"search","properties":{}}"#,
    r#"{"event_id":"e91","occurred_at":"2026-10-10T12:00:00Z","customer_id":null,"anonymous_id":null,"event_type":"ad_click","channel":"search","properties":{}}"#,
    r#"{"event_id":"e6","occurred_at":"2026-09-28T09:00:00Z","customer_id":"c3","anonymous_id":null,"event_type":"ad_impression","channel":"display","properties":{}}"#,
    r#"{"event_id":"e7","occurred_at":"2026-10-02T09:00:00Z","customer_id":"c3","anonymous_id":null,"event_type":"add_to_cart","channel":"web","properties":{}}"#,
    r#"{"event_id":"e1","occurred_at":"2026-10-05T10:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"email_open","channel":"email","properties":{"campaign":"oct"}}"#,
    r#"{"event_id":"e8","occurred_at":"2026-08-01T09:00:00Z","customer_id":"c4","anonymous_id":null,"event_type":"social_engagement","channel":"social","properties":{}}"#,
    r#"{"event_id":"e92","occurred_at":"yesterday","customer_id":"c1","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    // A local time without an offset: which instant it names is unknown.
    r#"{"event_id":"e93","occurred_at":"2026-10-12T09:00:00","customer_id":"c1","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e9","occurred_at":"2026-09-15T09:00:00Z","customer_id":"c4","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e10","occurred_at":"2026-10-08T09:00:00Z","customer_id":null,"anonymous_id":"a5","event_type":"landing_page_view","channel":"search","properties":{}}"#,
    r#"{"event_id":"e11","occurred_at":"2026-10-09T00:30:00Z","customer_id":"c5","anonymous_id":"a5","event_type":"login","channel":"web","properties":{}}"#,
    r#"{"occurred_at":"2026-10-09T00:30:00Z","customer_id":"c5","event_type":"login","channel":"web"}"#,
    r#"{"event_id":"e13","occurred_at":"2026-10-20T15:00:00Z","customer_id":null,"anonymous_id":"a7","event_type":"ad_impression","channel":"display","properties":{}}"#,
    r#"{"event_id":"e15","occurred_at":"2026-10-26T02:00:00Z","customer_id":null,"anonymous_id":"a7","event_type":"ad_click","channel":"display","properties":{}}"#,
    r#"{"event_id":"e14","occurred_at":"2026-10-24T08:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e16","occurred_at":"2026-11-01T10:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
];

const ORDERS: &str = "\
order_id,customer_id,ordered_at,amount,currency,category,channel,status
o1,c1,2026-10-07T10:00:00Z,50.00,USD,home,web,completed
o1b,c1,2026-10-20T10:00:00Z,30.00,USD,eco_friendly,web,completed
o2,c2,2026-10-10T12:00:00Z,20.00,USD,beauty,web,completed
o3,c3,2026-10-03T09:00:00Z,40.00,USD,home,web,completed
o5,c5,2026-10-15T09:00:00Z,60.00,USD,sports,app,completed
o6,c6,2026-10-12T15:00:00Z,100.00,USD,electronics,store,completed
o7,c2,2026-10-22T10:00:00Z,15.00,USD,beauty,web,refunded
o8,,2026-10-22T10:00:00Z,15.00,USD,beauty,web,completed
o9,c3,2026-10-22T10:00:00Z,-5.00,USD,home,web,completed
o10,c3,2026-10-22T10:00:00Z,5.00,USD,home,web,pending_review
,c3,2026-10-22T10:00:00Z,5.00,USD,home,web,completed
o11,c3,soon,5.00,USD,home,web,completed
o13,c3,2026-10-12 09:00:00,5.00,USD,home,web,completed
o12,c1,2026-11-01T10:00:00Z,70.00,USD,home,web,completed
";

const FEEDBACK: &str = "\
response_id,customer_id,responded_at,nps_score,comment
r1,c1,2026-10-26T10:00:00Z,10,Great
r2,c2,2026-10-11T10:00:00Z,6,Slow delivery
r3,c3,2026-10-05T10:00:00Z,8,\"Fine, thanks\"
r4,c3,2026-10-06T10:00:00Z,11,Off the scale
r5,c3,whenever,7,No time
";

const CUSTOMERS: &str = "\
customer_id,email,signup_at,country,acquisition_channel
c1,c1@example.com,2026-10-05T10:30:00Z,DE,email
c2,c2@example.com,2026-10-10T11:00:00Z,US,search
c3,c3@example.com,2026-09-28T10:00:00Z,GB,display
c4,c4@example.com,2026-08-01T10:00:00Z,US,social
c5,c5@example.com,2026-10-09T00:30:00Z,IN,search
c6,c6@example.com,2026-10-12T15:00:00Z,US,direct
,nobody@example.com,2026-10-12T15:00:00Z,US,direct
c8,c8@example.com,someday,US,direct
";

pub(crate) fn shop() -> Project {
    let project = Project::new();
    project.write("exports/events/dt=2026-10-31/part-0.ndjson", EVENTS.join("\n") + "\n");
    project.write_gz("exports/orders/orders.csv.gz", ORDERS);
    project.write("exports/feedback/feedback.csv", FEEDBACK);
    project.write("exports/customers/customers.csv", CUSTOMERS);
    project
}

fn run_lifecycle(project: &Project, timezone: &str) {
    let mut command = bundled_run(project, "exports", "marts");
    command.env("LIFEMAP_TIMEZONE", timezone);
    let outcome = run_expecting(command, 0);
    let results = run_results(project, "marts");
    let checks: Vec<(&str, &str)> = results["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or("")))
        .collect();
    assert!(
        checks.len() == 13 && checks.iter().all(|(_, s)| *s == "passed"),
        "{checks:?}\n{}",
        outcome.stderr
    );
}

/// Rows of `SELECT concat_ws('|', ...)`-style queries over a mart partition.
fn rows(project: &Project, mart: &str, sql: &str) -> Vec<String> {
    first_column(&project.path(&format!("marts/{mart}/ds=2026-10-31/")), sql)
}

#[test]
fn funnel_levels_by_entry_month_and_channel() {
    let project = shop();
    run_lifecycle(&project, "UTC");
    let funnel = rows(
        &project,
        "lifecycle_funnel",
        "SELECT concat_ws('|', entry_month, breakdown, breakdown_value, string_agg(CAST(persons AS VARCHAR), ',' ORDER BY step)) \
         FROM t GROUP BY entry_month, breakdown, breakdown_value ORDER BY entry_month, breakdown, breakdown_value",
    );
    assert_eq!(
        funnel,
        vec![
            // c4: the consideration came 45 days after the start, outside the 30-day window.
            "2026-08-01|all|all|1,0,0,0,0",
            "2026-08-01|channel|social|1,0,0,0,0",
            // c3 started in September; its consideration and order in October still count.
            "2026-09-01|all|all|1,1,1,0,0",
            "2026-09-01|channel|display|1,1,1,0,0",
            // c1 (out of order in the file), c2 (equal timestamps), c5 (stitched), a7 (awareness only).
            "2026-10-01|all|all|4,3,3,1,1",
            "2026-10-01|channel|display|1,0,0,0,0",
            "2026-10-01|channel|email|1,1,1,1,1",
            "2026-10-01|channel|search|2,2,2,0,0",
        ]
    );
    let conversions = rows(
        &project,
        "lifecycle_funnel",
        "SELECT concat_ws('|', step, step_name, round(conversion_from_previous, 4), round(conversion_from_start, 4)) \
         FROM t WHERE entry_month = DATE '2026-10-01' AND breakdown = 'all' ORDER BY step",
    );
    assert_eq!(
        conversions,
        vec![
            "1|awareness|1.0|1.0",
            "2|consideration|0.75|0.75",
            "3|purchase|1.0|0.75",
            "4|retention|0.3333|0.25",
            // Advocacy, like retention, is a share of the purchasers (3), not of the retained (1).
            "5|advocacy|0.3333|0.25"
        ]
    );
}

#[test]
fn journeys_stitch_identities_and_imply_earlier_stages() {
    let project = shop();
    run_lifecycle(&project, "UTC");
    let journeys = rows(
        &project,
        "customer_journey",
        "SELECT concat_ws('|', person_id, is_known, awareness_at, coalesce(CAST(consideration_at AS VARCHAR), '-'), \
         coalesce(CAST(purchase_at AS VARCHAR), '-'), coalesce(CAST(retention_at AS VARCHAR), '-'), \
         coalesce(CAST(advocacy_at AS VARCHAR), '-'), current_stage, coalesce(CAST(days_to_purchase AS VARCHAR), '-'), orders, revenue, customer_status, \
         coalesce(CAST(latest_nps AS VARCHAR), '-')) FROM t ORDER BY person_id",
    );
    assert_eq!(
        journeys,
        vec![
            "anon:a7|false|2026-10-20T15:00:00|-|-|-|-|awareness|-|0|0.00|prospect|-",
            "c1|true|2026-10-05T10:00:00|2026-10-06T10:00:00|2026-10-07T10:00:00|2026-10-20T10:00:00|2026-10-25T18:00:00|advocacy|2.0|2|80.00|new|10",
            "c2|true|2026-10-10T12:00:00|2026-10-10T12:00:00|2026-10-10T12:00:00|-|-|purchase|0.0|1|20.00|new|6",
            "c3|true|2026-09-28T09:00:00|2026-10-02T09:00:00|2026-10-03T09:00:00|-|-|purchase|5.0|1|40.00|new|8",
            "c4|true|2026-08-01T09:00:00|2026-09-15T09:00:00|-|-|-|consideration|-|0|0.00|prospect|-",
            // The anonymous landing page view (a5) belongs to c5 once a5 logs in as c5.
            "c5|true|2026-10-08T09:00:00|2026-10-09T01:00:00|2026-10-15T09:00:00|-|-|purchase|7.0|1|60.00|new|-",
            // A store purchase with no events: every earlier stage is implied by the order.
            "c6|true|2026-10-12T15:00:00|2026-10-12T15:00:00|2026-10-12T15:00:00|-|-|purchase|0.0|1|100.00|new|-",
        ]
    );
    // RFM over the five buyers: recency c1 11, c2 21, c3 28, c5 16, c6 19 days; frequency c1 2, others 1;
    // monetary c2 20 < c3 40 < c5 60 < c1 80 < c6 100. NTILE(5) of five persons gives each its rank.
    let rfm = rows(
        &project,
        "customer_journey",
        "SELECT concat_ws('|', person_id, recency_days, r_score, f_score, m_score, rfm_segment) FROM t WHERE orders > 0 ORDER BY person_id",
    );
    assert_eq!(
        rfm,
        vec![
            "c1|11|5|5|4|champions",
            "c2|21|2|1|1|hibernating",
            "c3|28|1|2|2|lost",
            "c5|16|4|3|3|loyal",
            "c6|19|3|4|5|loyal"
        ]
    );
}

#[test]
fn cohorts_nps_kpis_and_quarantine() {
    let project = shop();
    run_lifecycle(&project, "UTC");
    assert_eq!(
        rows(
            &project,
            "cohort_retention",
            "SELECT concat_ws('|', cohort_month, period, cohort_size, active_customers, retention_rate, revenue, cumulative_revenue_per_customer) FROM t"
        ),
        vec!["2026-10-01|0|5|5|1.0|300.00|60.0"]
    );
    assert_eq!(
        rows(
            &project,
            "nps_monthly",
            "SELECT concat_ws('|', month, responses, promoters, passives, detractors, nps) FROM t"
        ),
        vec!["2026-10-01|3|1|1|1|0.0"]
    );
    // Current: 10-02 to 11-01; previous: 09-02 to 10-02. Active customers are buyers: c1, c2, c3, c5
    // and c6 ordered in the current period, nobody in the previous one (c3's and c4's events then
    // are not purchases).
    assert_eq!(
        rows(
            &project,
            "kpi_summary",
            "SELECT concat_ws('|', metric, value, coalesce(CAST(previous_value AS VARCHAR), '-'), coalesce(CAST(change AS VARCHAR), '-')) FROM t"
        ),
        vec![
            "revenue|300.0|0.0|300.0",
            "orders|6.0|0.0|6.0",
            "active_customers|5.0|0.0|5.0",
            "new_customers|5.0|0.0|5.0",
            "repeat_purchase_rate|0.2|-|-",
            "nps|0.0|-|-",
            "median_days_to_purchase|2.0|-|-",
        ]
    );
    let quarantine: BTreeMap<String, String> = rows(
        &project,
        "quarantine",
        "SELECT concat_ws('|', source, reason, COUNT(*)) FROM t GROUP BY source, reason ORDER BY source, reason",
    )
    .into_iter()
    .map(|row| {
        let (key, count) = row.rsplit_once('|').expect("row");
        (key.to_string(), count.to_string())
    })
    .collect();
    let expected: BTreeMap<String, String> = [
        ("customers|bad_timestamp", "1"),
        ("customers|missing_id", "1"),
        ("events|bad_timestamp", "2"),
        ("events|duplicate", "2"),
        ("events|malformed", "1"),
        ("events|missing_id", "2"),
        ("feedback|bad_score", "1"),
        ("feedback|bad_timestamp", "1"),
        ("orders|bad_amount", "1"),
        ("orders|bad_timestamp", "2"),
        ("orders|missing_customer", "1"),
        ("orders|missing_id", "1"),
        ("orders|unknown_status", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(quarantine, expected);
    // A quarantined CSV row is the record as it arrived: an empty field keeps its place (o8 has
    // no customer) and a quoted field keeps its quotes, so every one is a line of the export.
    for (source, export) in [("orders", ORDERS), ("feedback", FEEDBACK)] {
        let raws = rows(
            &project,
            "quarantine",
            &format!("SELECT raw FROM t WHERE source = '{source}' ORDER BY raw"),
        );
        assert!(!raws.is_empty());
        for raw in &raws {
            assert!(
                export.lines().any(|line| line == raw),
                "{source}: `{raw}` is no line of the export"
            );
        }
    }
    // The later copy of e14 is the duplicate; the kept copy is the earliest.
    assert_eq!(
        rows(
            &project,
            "quarantine",
            "SELECT raw FROM t WHERE reason = 'duplicate' AND raw LIKE '%e14%'"
        ),
        vec![EVENTS[5].to_string()]
    );
    assert_eq!(
        rows(&project, "quarantine", "SELECT DISTINCT CAST(ds AS VARCHAR) FROM t"),
        vec!["2026-10-31"]
    );
}

#[test]
fn weekly_lifecycle_and_heatmap_in_utc_and_in_new_york() {
    let project = shop();
    run_lifecycle(&project, "UTC");
    let weeks_sql = "SELECT concat_ws('|', week_start, string_agg(CAST(persons AS VARCHAR), ',' ORDER BY CASE status WHEN 'new' THEN 1 \
                     WHEN 'returning' THEN 2 WHEN 'resurrecting' THEN 3 ELSE 4 END)) FROM t \
                     WHERE week_start >= DATE '2026-09-14' GROUP BY week_start ORDER BY week_start";
    // new, returning, resurrecting, dormant
    assert_eq!(
        rows(&project, "lifecycle_status", weeks_sql),
        vec![
            "2026-09-14|0,0,1,0", // c4 comes back after its first week (07-27)
            "2026-09-21|0,0,0,1",
            "2026-09-28|1,0,0,0",
            "2026-10-05|3,0,0,1",
            "2026-10-12|1,1,0,2",
            "2026-10-19|1,0,1,2",
            "2026-10-26|0,1,0,1", // a7's Monday 02:00 UTC click
        ]
    );
    let heatmap_sql =
        "SELECT concat_ws('|', day_of_week, hour, events, persons) FROM t WHERE events > 0 ORDER BY day_of_week, hour";
    assert_eq!(
        rows(&project, "activity_heatmap", heatmap_sql),
        vec![
            "1|2|1|1", "1|10|1|1", "2|10|1|1", "2|15|1|1", "4|9|1|1", "5|0|1|1", "5|1|1|1", "6|8|1|1", "6|12|2|1",
            "7|18|1|1"
        ]
    );
    assert_eq!(
        rows(&project, "activity_heatmap", "SELECT COUNT(*) FROM t"),
        vec!["168"]
    );

    // In New York (UTC-4 until 11-01), a7's click is on Sunday 10-25 at 22:00: the week before.
    let project = shop();
    run_lifecycle(&project, "America/New_York");
    let weeks = rows(&project, "lifecycle_status", weeks_sql);
    assert_eq!(weeks.last().map(String::as_str), Some("2026-10-26|0,0,0,2"));
    assert_eq!(weeks[5], "2026-10-19|1,0,1,2");
    assert_eq!(
        rows(&project, "activity_heatmap", heatmap_sql),
        vec![
            "1|6|1|1", "2|6|1|1", "2|11|1|1", "4|5|1|1", "4|20|1|1", "4|21|1|1", "6|4|1|1", "6|8|2|1", "7|14|1|1",
            "7|22|1|1"
        ]
    );
}

/// Every mart's bytes by mart name.
fn snapshot(project: &Project) -> BTreeMap<String, Vec<u8>> {
    crate::common::mart_bytes(project, "marts")
}

/// Late arrivals: exports file events by day of arrival, so the partitions after ds (up to the
/// allowance, 2 days) hold events stamped before as_of, which count. Rows of those partitions
/// stamped later, or with no usable timestamp, belong to a later ds, and partitions beyond the
/// allowance are not read.
const LATE_1101: &[&str] = &[
    // c4, stamped 10-30 10:00: counts for ds 10-31.
    r#"{"event_id":"e20","occurred_at":"2026-10-30T10:00:00Z","customer_id":"c4","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{}}"#,
    // c4 again, stamped after as_of: ds 11-01's.
    r#"{"event_id":"e21","occurred_at":"2026-11-01T10:00:00Z","customer_id":"c4","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    // c2 at 02:00 UTC on 11-01: after as_of in UTC, but 22:00 on 10-31 in New York.
    r#"{"event_id":"e23","occurred_at":"2026-11-01T02:00:00Z","customer_id":"c2","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    // A copy of e5 (c2, 10-10): a duplicate of ds 10-31.
    r#"{"event_id":"e5","occurred_at":"2026-10-10T12:00:00Z","customer_id":"c2","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{}}"#,
    // No id, stamped 10-31: quarantined with ds 10-31. The same stamped 11-01: not this ds's.
    r#"{"event_id":"e24","occurred_at":"2026-10-31T08:00:00Z","customer_id":null,"anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e25","occurred_at":"2026-11-01T08:00:00Z","customer_id":null,"anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    // No usable timestamp, or not JSON at all: nothing says they belong to ds 10-31.
    r#"{"event_id":"e26","occurred_at":"tomorrow","customer_id":"c4","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    r#"{"event_id":"e27","occurr"#,
];

#[test]
fn late_filed_events_count_for_the_ds_they_were_stamped_in() {
    let project = shop();
    run_lifecycle(&project, "UTC");
    let before = snapshot(&project);
    assert_eq!(before.len(), 11, "one file per mart");
    project.write(
        "exports/events/dt=2026-11-01/part-0.ndjson",
        LATE_1101.join("\n") + "\n",
    );
    // Three days late: beyond the allowance, so never read for ds 10-31 (c4 would be seen on 10-31).
    project.write(
        "exports/events/dt=2026-11-03/part-0.ndjson",
        r#"{"event_id":"e22","occurred_at":"2026-10-31T12:00:00Z","customer_id":"c4","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    );
    // An order stamped at as_of belongs to the next ds.
    project.write_gz(
        "exports/orders/orders.csv.gz",
        &format!("{ORDERS}o13,c4,2026-11-01T00:00:00Z,10.00,USD,home,web,completed\n"),
    );
    run_lifecycle(&project, "UTC");
    let last_seen = |project: &Project| {
        rows(
            project,
            "customer_journey",
            "SELECT concat_ws('|', person_id, last_seen_at, orders) FROM t WHERE person_id IN ('c2', 'c4') ORDER BY person_id",
        )
    };
    assert_eq!(
        last_seen(&project),
        vec!["c2|2026-10-10T12:00:00|1", "c4|2026-10-30T10:00:00|0"]
    );
    // c4 is active again in the week of 10-26 (resurrecting), and the heatmap has its Friday 10:00 event.
    let last_week = rows(
        &project,
        "lifecycle_status",
        "SELECT concat_ws('|', status, persons) FROM t WHERE week_start = DATE '2026-10-26' ORDER BY status",
    );
    assert_eq!(last_week, vec!["dormant|1", "new|0", "resurrecting|1", "returning|1"]);
    assert_eq!(
        rows(
            &project,
            "activity_heatmap",
            "SELECT concat_ws('|', events, persons) FROM t WHERE day_of_week = 5 AND hour = 10"
        ),
        vec!["1|1"]
    );
    let late_quarantine = rows(
        &project,
        "quarantine",
        "SELECT concat_ws('|', reason, COUNT(*)) FROM t WHERE source = 'events' GROUP BY reason ORDER BY reason",
    );
    // Before: bad_timestamp 2, duplicate 2, malformed 1, missing_id 2.
    assert_eq!(
        late_quarantine,
        vec!["bad_timestamp|2", "duplicate|3", "malformed|1", "missing_id|3"]
    );
    assert_eq!(
        rows(
            &project,
            "quarantine",
            "SELECT raw FROM t WHERE raw LIKE '%e24%' OR raw LIKE '%e25%' OR raw LIKE '%e26%' OR raw LIKE '%e27%'"
        ),
        vec![LATE_1101[4].to_string()]
    );
    // Documented: a run made before late data lands differs from a rerun after it.
    let after = snapshot(&project);
    let changed: Vec<&String> = before
        .keys()
        .filter(|mart| before.get(*mart) != after.get(*mart))
        .collect();
    // (The week of 10-26 is not complete at as_of, so the trend marts do not see c4's event.)
    assert_eq!(
        changed,
        vec!["activity_heatmap", "customer_journey", "lifecycle_status", "quarantine"]
    );

    // Once late data has settled, newer exports change nothing: a rerun gives the same bytes.
    project.write(
        "exports/events/dt=2026-11-05/part-0.ndjson",
        r#"{"event_id":"e28","occurred_at":"2026-10-29T12:00:00Z","customer_id":"c4","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
    );
    run_lifecycle(&project, "UTC");
    assert!(
        snapshot(&project) == after,
        "a rerun after data beyond the allowance changed the marts"
    );

    // West of UTC, events stamped before as_of sit in the next UTC day's partition even when
    // nothing is late: c2's 22:00 page view on 10-31 in New York counts.
    let project = shop();
    project.write(
        "exports/events/dt=2026-11-01/part-0.ndjson",
        LATE_1101.join("\n") + "\n",
    );
    run_lifecycle(&project, "America/New_York");
    assert_eq!(
        last_seen(&project),
        vec!["c2|2026-11-01T02:00:00|1", "c4|2026-10-30T10:00:00|0"]
    );
}

#[test]
fn rfm_scores_are_ntile_of_the_buyers_on_the_sample() {
    // journey_base computes the scores from ROW_NUMBER and the buyer count (NTILE buffers every
    // buyer); DataFusion's own NTILE over the published mart is the reference. The sample has
    // 1,425 buyers; forgetting one leaves 1,424, so the larger first buckets are exercised too.
    let project = Project::new();
    let exports = project.path("exports");
    copy_folder(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample"),
        &exports,
    );
    let scores = |marts: &str| -> (String, String, String) {
        let mut command = bundled_run(&project, exports.to_str().expect("utf-8"), marts);
        command.arg("--no-report");
        run_expecting(command, 0);
        let checked = first_column(
            &project.path(&format!("{marts}/customer_journey/ds=2026-10-31/")),
            "SELECT concat_ws('|', COUNT(*), MIN(person_id),
                    SUM(CASE WHEN r_score = r AND f_score = f AND m_score = m THEN 1 ELSE 0 END))
             FROM (
               SELECT person_id, r_score, f_score, m_score,
                 NTILE(5) OVER (ORDER BY recency_days DESC, person_id) AS r,
                 NTILE(5) OVER (ORDER BY frequency, person_id) AS f,
                 NTILE(5) OVER (ORDER BY monetary, person_id) AS m
               FROM t WHERE orders > 0
             )",
        );
        match checked[0].split('|').collect::<Vec<_>>()[..] {
            [buyers, first, agreeing] => (buyers.to_string(), first.to_string(), agreeing.to_string()),
            _ => panic!("unexpected {checked:?}"),
        }
    };
    let (buyers, first_buyer, agreeing) = scores("all");
    assert_eq!((buyers.as_str(), agreeing.as_str()), ("1425", "1425"));
    std::fs::create_dir_all(exports.join("suppressions")).expect("mkdir");
    std::fs::write(
        exports.join("suppressions/forget.csv"),
        format!("customer_id\n{first_buyer}\n"),
    )
    .expect("write");
    let (buyers, _, agreeing) = scores("one_forgotten");
    assert_eq!((buyers.as_str(), agreeing.as_str()), ("1424", "1424"));
}

fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
