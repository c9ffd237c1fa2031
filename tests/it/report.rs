//! The executive report: rendered from the published marts, delivered once per ds to a real SMTP
//! server or the outbox, archived, and opened in a real headless browser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mail_parser::{MessageParser, MimeHeaders};

use crate::common::smtp::{SmtpServer, closed_port, tls_files};
use crate::common::{Project, bundled_run, files_below, first_column, run, run_expecting, run_results};

fn sample_exports() -> String {
    format!("{}/data/sample", env!("CARGO_MANIFEST_DIR"))
}

/// The bundled pipeline on the bundled sample data, delivering to `<project>/outbox`.
fn sample_run(project: &Project) -> assert_cmd::Command {
    outbox_run(project, &sample_exports())
}

/// The bundled pipeline on `exports`, delivering to `<project>/outbox`.
fn outbox_run(project: &Project, exports: &str) -> assert_cmd::Command {
    let mut command = bundled_run(project, exports, "marts");
    command.env("LIFEMAP_OUTBOX", project.path("outbox"));
    for var in [
        "LIFEMAP_REPORT_TRANSPORT",
        "LIFEMAP_SMTP_HOST",
        "LIFEMAP_SMTP_PORT",
        "LIFEMAP_SMTP_TLS",
        "LIFEMAP_SMTP_USERNAME",
        "LIFEMAP_SMTP_PASSWORD",
        "LIFEMAP_SMTP_CA_FILE",
        "LIFEMAP_REPORT_TO",
        "LIFEMAP_REPORT_FROM",
        "LIFEMAP_REPORT_MAX_SIZE",
    ] {
        command.env_remove(var);
    }
    command
}

fn smtp_run(project: &Project, port: u16) -> assert_cmd::Command {
    let mut command = sample_run(project);
    command
        .env("LIFEMAP_REPORT_TRANSPORT", "smtp")
        .env("LIFEMAP_SMTP_HOST", "127.0.0.1")
        .env("LIFEMAP_SMTP_PORT", port.to_string())
        .env("LIFEMAP_SMTP_TLS", "none")
        .env("LIFEMAP_SMTP_RETRIES", "2")
        .env("LIFEMAP_SMTP_RETRY_BACKOFF", "10ms")
        .env("LIFEMAP_REPORT_TO", "ceo@example.com, cfo@example.com")
        .env("LIFEMAP_REPORT_FROM", "Lifecycle analytics <analytics@example.com>");
    command
}

fn marker(project: &Project) -> PathBuf {
    project.path("marts/_runs/ds=2026-10-31/delivery.json")
}

/// `value` as the report prints it: thousands grouped, no decimals.
fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if value < 0.0 { format!("−{out}") } else { out }
}

fn kpis(project: &Project) -> BTreeMap<String, f64> {
    first_column(
        &project.path("marts/kpi_summary/ds=2026-10-31/"),
        "SELECT concat_ws('|', metric, CAST(value AS VARCHAR)) FROM t",
    )
    .into_iter()
    .filter_map(|row| {
        let (metric, value) = row.split_once('|')?;
        Some((metric.to_string(), value.parse().ok()?))
    })
    .collect()
}

#[test]
fn the_sample_report_lands_in_the_outbox_once_per_ds_and_again_with_resend() {
    let project = Project::new();
    let outcome = run_expecting(sample_run(&project), 0);
    assert_eq!(outcome.summary()["report"], "sent", "{}", outcome.stderr);
    let outbox = project.path("outbox");
    assert_eq!(
        files_below(&outbox),
        vec![
            "2026-10-31-customer_lifecycle.eml",
            "2026-10-31-customer_lifecycle.html"
        ]
    );
    let archive = std::fs::read_to_string(project.path("marts/_reports/ds=2026-10-31/report.html")).expect("archive");
    assert!(
        archive.contains("data:image/png;base64,"),
        "images are embedded in the archive"
    );
    assert!(!archive.contains("cid:"), "no cid: reference is left in the archive");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(marker(&project)).expect("marker")).expect("json");
    assert_eq!(record["status"], "sent");
    assert_eq!(record["recipients"], serde_json::json!(["executives@example.com"]));
    assert_eq!(run_results(&project, "marts")["report"]["transport"], "outbox");

    // A rerun of the same ds (a scheduler's retry, a backfill) sends nothing new.
    std::fs::remove_dir_all(&outbox).expect("empty the outbox");
    let rerun = run_expecting(sample_run(&project), 0);
    assert_eq!(rerun.summary()["report"], "already_sent");
    assert!(files_below(&outbox).is_empty(), "{:?}", files_below(&outbox));

    let mut resend = sample_run(&project);
    resend.arg("--resend");
    assert_eq!(run_expecting(resend, 0).summary()["report"], "sent");
    assert_eq!(files_below(&outbox).len(), 2);

    // --no-report publishes and leaves the outbox alone.
    std::fs::remove_dir_all(&outbox).expect("empty the outbox");
    let mut quiet = sample_run(&project);
    quiet.args(["--no-report", "--resend"]);
    let outcome = crate::common::run(quiet);
    assert_eq!(outcome.code, 2, "--resend and --no-report conflict");
    let mut quiet = sample_run(&project);
    quiet.arg("--no-report");
    assert!(run_expecting(quiet, 0).summary()["report"].is_null());
    assert!(files_below(&outbox).is_empty());
}

#[test]
fn a_partial_run_publishes_its_marts_and_sends_nothing() {
    let project = Project::new();
    let mut partial = sample_run(&project);
    partial.args(["--select", "kpi_summary"]);
    let outcome = run_expecting(partial, 0);
    assert_eq!(outcome.summary()["rows"]["kpi_summary"], 7);
    assert!(outcome.summary()["report"].is_null());
    assert!(files_below(&project.path("outbox")).is_empty());
    assert!(!marker(&project).exists() && !project.path("marts/_reports").exists());
}

#[test]
fn smtp_delivery_sends_one_multipart_message_whose_numbers_are_the_marts() {
    let server = SmtpServer::start();
    let project = Project::new();
    let outcome = run_expecting(smtp_run(&project, server.port), 0);
    assert_eq!(outcome.summary()["report"], "sent", "{}", outcome.stderr);
    let received = server.received();
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.from, "analytics@example.com");
    assert_eq!(mail.to, vec!["ceo@example.com", "cfo@example.com"]);

    let message = MessageParser::default().parse(&mail.data).expect("a MIME message");
    assert_eq!(message.subject(), Some("Customer lifecycle report · 31 October 2026"));
    let to: Vec<String> = message
        .to()
        .expect("To")
        .iter()
        .filter_map(|a| a.address().map(str::to_owned))
        .collect();
    assert_eq!(to, vec!["ceo@example.com", "cfo@example.com"]);
    let root = message.content_type().expect("content type");
    assert_eq!((root.ctype(), root.subtype()), ("multipart", Some("mixed")));

    let text = message.body_text(0).expect("a text part");
    let html = message.body_html(0).expect("an HTML part");
    // The numbers in both parts are the published marts' numbers.
    let kpis = kpis(&project);
    let revenue = format!("${}", grouped(kpis["revenue"]));
    let orders = grouped(kpis["orders"]);
    assert!(text.contains(&format!("- Revenue: {revenue}")), "{text}");
    assert!(text.contains(&format!("- Orders: {orders}")), "{text}");
    assert!(html.contains(&revenue), "revenue {revenue} in the HTML");
    let funnel = first_column(
        &project.path("marts/lifecycle_funnel/ds=2026-10-31/"),
        "SELECT CAST(persons AS VARCHAR) FROM t WHERE breakdown = 'all' AND entry_month = DATE '2026-09-01' ORDER BY step",
    );
    assert_eq!(funnel.len(), 5);
    for persons in &funnel {
        assert!(
            html.contains(&format!(">{}</td>", grouped(persons.parse().expect("count")))),
            "funnel {persons}"
        );
    }

    // Every cid: reference has its image part, and every image part is referenced.
    let mut referenced: Vec<String> = html
        .match_indices("cid:")
        .map(|(at, _)| html[at + 4..].split('"').next().unwrap_or_default().to_string())
        .collect();
    referenced.sort();
    let mut images: Vec<String> = message
        .parts
        .iter()
        .filter(|part| part.content_type().is_some_and(|ct| ct.ctype() == "image"))
        .filter_map(|part| part.content_id().map(str::to_owned))
        .collect();
    images.sort();
    assert!(!referenced.is_empty());
    assert_eq!(referenced, images);
    for part in message
        .parts
        .iter()
        .filter(|p| p.content_type().is_some_and(|ct| ct.ctype() == "image"))
    {
        assert!(part.contents().starts_with(b"\x89PNG"), "images are PNG");
    }
    // Every image has alt text.
    for img in html.split("<img").skip(1) {
        let tag = img.split('>').next().unwrap_or_default();
        assert!(tag.contains("alt=\"") && !tag.contains("alt=\"\""), "{tag}");
    }
    // The CSS was inlined: styles are attributes; the one <style> left holds the phone layout's
    // @media rules, which cannot be attributes.
    assert!(
        html.contains("<td class=\"header\" style=\"background-color: #0f766e;"),
        "CSS inlined"
    );
    let kept: Vec<&str> = html
        .split("<style")
        .skip(1)
        .map(|s| s.split("</style>").next().unwrap_or_default())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].trim_start_matches(|c| c != '@').starts_with("@media"),
        "{kept:?}"
    );
    assert!(!kept[0].contains(".outer"), "{kept:?}");
    // The KPI table is attached as CSV.
    let attachment = message
        .attachments()
        .find(|part| part.attachment_name() == Some("kpi_summary-2026-10-31.csv"))
        .expect("the KPI table attached as CSV");
    assert!(String::from_utf8_lossy(attachment.contents()).starts_with("metric,value,previous_value,change"));

    // A rerun does not send again.
    run_expecting(smtp_run(&project, server.port), 0);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn an_smtp_server_that_is_down_gives_exit_75_and_no_marker_then_the_retry_sends() {
    let project = Project::new();
    let outcome = run_expecting(smtp_run(&project, closed_port()), 75);
    assert!(outcome.stderr.contains("after 3 attempts"), "{}", outcome.stderr);
    assert!(!marker(&project).exists(), "no delivery marker after a failed send");
    // The marts were published before delivery was attempted.
    assert!(project.path("marts/kpi_summary/ds=2026-10-31/_SUCCESS").exists());

    let server = SmtpServer::start();
    run_expecting(smtp_run(&project, server.port), 0);
    assert_eq!(server.received().len(), 1);
    assert!(marker(&project).exists());
}

/// Delivery over TLS that trusts the test CA, with the server's account in the environment.
fn tls_run(project: &Project, port: u16, mode: &str, trust_test_ca: bool) -> assert_cmd::Command {
    let mut command = smtp_run(project, port);
    command
        .env("LIFEMAP_SMTP_TLS", mode)
        .env("LIFEMAP_SMTP_USERNAME", "reports@example.com")
        .env("LIFEMAP_SMTP_PASSWORD", "s3cret");
    if trust_test_ca {
        command.env("LIFEMAP_SMTP_CA_FILE", tls_files().0);
    }
    command
}

#[test]
fn starttls_delivery_logs_in_with_credentials_from_the_environment() {
    let server = SmtpServer::start_starttls("reports@example.com", "s3cret");
    let project = Project::new();
    run_expecting(tls_run(&project, server.port, "starttls", true), 0);
    // The server offers AUTH only after STARTTLS: a login means the session was encrypted.
    assert_eq!(
        server.logins(),
        vec![("reports@example.com".to_string(), "s3cret".to_string())]
    );
    assert_eq!(server.received().len(), 1);
    assert!(marker(&project).exists());

    // A certificate the client does not trust fails at once (no retries), sends nothing.
    let untrusted = Project::new();
    let outcome = run_expecting(tls_run(&untrusted, server.port, "starttls", false), 1);
    assert!(
        outcome.stderr.contains("report.delivery.smtp.ca_file"),
        "{}",
        outcome.stderr
    );
    assert_eq!(server.received().len(), 1);
    assert!(!marker(&untrusted).exists());

    // A refused password is a 5xx reply: exit 1, not retried, no marker.
    let refused = Project::new();
    let mut command = tls_run(&refused, server.port, "starttls", true);
    command.env("LIFEMAP_SMTP_PASSWORD", "wrong");
    let outcome = run_expecting(command, 1);
    assert!(outcome.stderr.contains("refused the message"), "{}", outcome.stderr);
    assert_eq!(server.logins().len(), 2, "one attempt with the wrong password");
    assert!(!marker(&refused).exists());
}

#[test]
fn implicit_tls_delivery_sends_through_a_tls_port() {
    let server = SmtpServer::start_implicit_tls();
    let project = Project::new();
    let mut command = tls_run(&project, server.port, "tls", true);
    // The relay behind the TLS port takes mail without AUTH.
    command
        .env_remove("LIFEMAP_SMTP_USERNAME")
        .env_remove("LIFEMAP_SMTP_PASSWORD");
    run_expecting(command, 0);
    let received = server.received();
    assert_eq!(received.len(), 1);
    let message = MessageParser::default().parse(&received[0].data).expect("mime");
    assert_eq!(message.subject(), Some("Customer lifecycle report · 31 October 2026"));
}

#[test]
fn a_message_over_the_size_budget_is_not_sent() {
    let project = Project::new();
    let mut command = sample_run(&project);
    command.env("LIFEMAP_REPORT_MAX_SIZE", "20KB");
    let outcome = run_expecting(command, 1);
    assert!(
        outcome.stderr.contains("over the report's max_size of 20000 bytes"),
        "{}",
        outcome.stderr
    );
    assert!(files_below(&project.path("outbox")).is_empty());
    assert!(!marker(&project).exists());
}

#[test]
fn lifemap_report_renders_a_preview_from_published_marts_without_sending() {
    let project = Project::new();
    let mut publish = sample_run(&project);
    publish.arg("--no-report");
    run_expecting(publish, 0);
    let mut preview = project.lifemap();
    preview
        .args([
            "report",
            &format!("{}/pipelines/customer_lifecycle.yaml", env!("CARGO_MANIFEST_DIR")),
            "--ds",
            "2026-10-31",
            "--var",
            "marts_uri=marts",
            "--out",
            "preview.html",
        ])
        .env("LIFEMAP_OUTBOX", project.path("outbox"));
    let outcome = run_expecting(preview, 0);
    let printed: serde_json::Value = serde_json::from_str(outcome.stdout.trim()).expect("json");
    assert_eq!(printed["subject"], "Customer lifecycle report · 31 October 2026");
    let html = std::fs::read_to_string(project.path("preview.html")).expect("preview");
    assert!(html.contains("Headline numbers") && html.contains("data:image/png;base64,"));
    assert!(!marker(&project).exists() && files_below(&project.path("outbox")).is_empty());

    // Before any run there is nothing to render: a clear error.
    let mut early = project.lifemap();
    early.args([
        "report",
        &format!("{}/pipelines/customer_lifecycle.yaml", env!("CARGO_MANIFEST_DIR")),
        "--ds",
        "2026-10-30",
        "--var",
        "marts_uri=marts",
    ]);
    let outcome = run_expecting(early, 1);
    assert!(
        outcome.stderr.contains("has no published partition for ds 2026-10-30"),
        "{}",
        outcome.stderr
    );
}

const TINY_PIPELINE: &str = r#"
name: tiny
vars:
  marts_uri: marts
sources:
  sales:
    location: exports/sales.csv
    format: csv
    schema:
      category: string
      amount: double
steps:
  - name: by_category
    query: SELECT category, SUM(amount) AS amount FROM sales GROUP BY category ORDER BY category
checks:
  - name: no_negative_sales
    expression: SELECT * FROM by_category WHERE amount < 0
output:
  location: "{{ marts_uri }}"
marts:
  by_category: {}
report:
  template: tiny.html.j2
  text_template: tiny.txt.j2
  subject: "Sales {{ ds }}: {{ data.by_category|length }} categories"
  from: reports@example.com
  to: [boss@example.com]
  marts: [by_category]
  delivery:
    outbox: outbox
"#;

const TINY_HTML: &str = r#"<html><body><table>
{% for row in data.by_category %}<tr><td>{{ row.category }}</td><td>{{ row.amount|currency(decimals=2) }}</td></tr>
{% endfor %}</table></body></html>
"#;

fn tiny_project(sales: &str, html: &str) -> Project {
    let project = Project::new();
    project.write("pipelines/tiny.yaml", TINY_PIPELINE);
    project.write("report-templates/tiny.html.j2", html);
    project.write(
        "report-templates/tiny.txt.j2",
        "{% for row in data.by_category %}{{ row.category }} {{ row.amount }}\n{% endfor %}",
    );
    project.write("exports/sales.csv", sales);
    project
}

fn tiny_run(project: &Project) -> assert_cmd::Command {
    let mut command = project.lifemap();
    command.args(["run", "pipelines/tiny.yaml", "--ds", "2026-10-31"]);
    command
}

#[test]
fn a_failed_run_sends_nothing_and_templates_escape_what_the_data_holds() {
    let project = tiny_project("category,amount\n<script>alert(1)</script>,5.5\nbooks,-3\n", TINY_HTML);
    let outcome = run_expecting(tiny_run(&project), 3);
    assert!(outcome.stderr.contains("no_negative_sales"), "{}", outcome.stderr);
    assert!(
        files_below(&project.path("outbox")).is_empty(),
        "a failed run sends nothing"
    );
    assert!(
        !project.path("marts/_reports").exists() && !project.path("marts/_runs/ds=2026-10-31/delivery.json").exists()
    );

    project.write(
        "exports/sales.csv",
        "category,amount\n<script>alert(1)</script>,5.5\nbooks,3\n",
    );
    run_expecting(tiny_run(&project), 0);
    let html = std::fs::read_to_string(project.path("outbox/2026-10-31-tiny.html")).expect("report");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("<td>$5.50</td>") && html.contains("<td>$3.00</td>"),
        "{html}"
    );
    let eml = std::fs::read_to_string(project.path("outbox/2026-10-31-tiny.eml")).expect("eml");
    assert!(eml.contains("Subject: Sales 2026-10-31: 2 categories"), "{eml}");
    // The plain-text part is not HTML-escaped.
    let message = MessageParser::default().parse(eml.as_bytes()).expect("mime");
    assert!(
        message
            .body_text(0)
            .expect("text")
            .contains("<script>alert(1)</script> 5.5")
    );
}

#[test]
fn validate_renders_the_templates_and_names_an_undefined_variable() {
    let ok = tiny_project("category,amount\n", TINY_HTML);
    let mut validate = ok.lifemap();
    validate.args(["validate", "pipelines/tiny.yaml"]);
    let outcome = run_expecting(validate, 0);
    assert!(
        outcome.stdout.contains("report templates rendered"),
        "{}",
        outcome.stdout
    );

    // A misspelt column inside a loop is found too: validate renders one made-up row per mart.
    let broken = tiny_project(
        "category,amount\n",
        "<p>\n{% for row in data.by_category %}{{ row.amount_total }}{% endfor %}\n</p>\n",
    );
    let mut validate = broken.lifemap();
    validate.args(["validate", "pipelines/tiny.yaml"]);
    let outcome = run_expecting(validate, 2);
    assert!(
        outcome.stdout.contains("tiny.html.j2, line 2: undefined value"),
        "{}",
        outcome.stdout
    );

    // The bundled templates render against the bundled marts' schemas.
    let project = Project::new();
    let mut validate = project.lifemap();
    validate.args([
        "validate",
        &format!("{}/pipelines/customer_lifecycle.yaml", env!("CARGO_MANIFEST_DIR")),
    ]);
    let outcome = run_expecting(validate, 0);
    assert!(
        outcome.stdout.contains("report templates rendered"),
        "{}",
        outcome.stdout
    );
}

/// The report a run of the sample data renders, with the run's id (random) masked.
fn sample_report(project: &Project) -> (String, String) {
    run_expecting(sample_run(project), 0);
    let eml = std::fs::read(project.path("outbox/2026-10-31-customer_lifecycle.eml")).expect("eml");
    let message = MessageParser::default().parse(&eml).expect("mime");
    let run_id = run_results(project, "marts")["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let mask = |text: &str| text.replace(&run_id, "[run id]");
    (
        mask(&message.body_html(0).expect("html")),
        mask(&message.body_text(0).expect("text")),
    )
}

#[test]
fn the_sample_report_matches_its_snapshots() {
    let project = Project::new();
    let (html, text) = sample_report(&project);
    insta::assert_snapshot!("sample_report_text", text);
    insta::assert_snapshot!("sample_report_html", html);
}

fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
}

fn chromium(binary: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn the_archived_report_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(binary) = find_chromium() else {
        assert!(
            std::env::var_os("LIFEMAP_REQUIRE_BROWSER").is_none(),
            "LIFEMAP_REQUIRE_BROWSER is set but no chromium is on PATH"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium; .ci/run installs it)");
        return;
    };
    let project = Project::new();
    run_expecting(sample_run(&project), 0);
    let archive = std::fs::read_to_string(project.path("marts/_reports/ds=2026-10-31/report.html")).expect("archive");
    // A copy that writes what the browser loaded into its title, for --dump-dom to show.
    let probe = archive.replace(
        "</body>",
        "<script>window.addEventListener('load', () => { const images = [...document.images]; \
         const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length; \
         document.title = 'images=' + images.length + ' broken=' + broken + ' text=' + document.body.innerText.length; });</script></body>",
    );
    let probe_path = project.write("probe.html", probe);
    let dom = chromium(
        &binary,
        &project.path("profile-1"),
        &[
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("file://{}", probe_path.display()),
        ],
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_default();
    let count = |key: &str| -> usize {
        title
            .split_whitespace()
            .find_map(|part| part.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in the title `{title}`"))
    };
    let expected_images = archive.matches("<img").count();
    assert!(expected_images >= 2);
    assert_eq!(count("images="), expected_images);
    assert_eq!(count("broken="), 0, "every image loaded");
    assert!(count("text=") > 1000, "the page has its text");

    // A screenshot of the page as a reader sees it, which is not blank.
    let screenshot = project.path("report.png");
    let archive_path = project.path("marts/_reports/ds=2026-10-31/report.html");
    let shot = chromium(
        &binary,
        &project.path("profile-2"),
        &[
            "--window-size=680,2400",
            &format!("--screenshot={}", screenshot.display()),
            &format!("file://{}", archive_path.display()),
        ],
    );
    assert!(screenshot.exists(), "{}", String::from_utf8_lossy(&shot.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&screenshot).expect("png")));
    let mut reader = decoder.read_info().expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("frame");
    let channels = info.color_type.samples();
    let distinct: std::collections::HashSet<&[u8]> = pixels.chunks(channels).take(info.width as usize * 1200).collect();
    assert!(
        distinct.len() > 50,
        "the screenshot is not blank ({} colours)",
        distinct.len()
    );
    if let Some(target) = std::env::var_os("LIFEMAP_SAVE_SCREENSHOT") {
        std::fs::copy(&screenshot, target).expect("save screenshot");
    }
}

#[test]
fn the_smtp_password_reaches_no_log_result_or_error() {
    let server = SmtpServer::start_starttls("reports@example.com", "s3cret-Pa55word");
    // Accepted, then refused: the most verbose logs of both runs, their results and errors.
    let mut outputs = Vec::new();
    for password in ["s3cret-Pa55word", "wrong-Pa55word"] {
        let project = Project::new();
        let mut command = tls_run(&project, server.port, "starttls", true);
        // Everything lifemap and the mail client log (the engine's trace output would only slow this down).
        command
            .env("LIFEMAP_SMTP_PASSWORD", password)
            .env("LIFEMAP_LOG", "lifemap=trace,lettre=trace,rustls=trace,info")
            .args(["--log-format", "json"]);
        let outcome = run(command);
        outputs.push(outcome.stdout);
        outputs.push(outcome.stderr);
        outputs.push(
            std::fs::read_to_string(project.path("marts/_runs/ds=2026-10-31/run_results.json")).expect("results"),
        );
    }
    assert_eq!(server.logins().len(), 2);
    use base64::Engine as _;
    for password in ["s3cret-Pa55word", "wrong-Pa55word"] {
        // AUTH PLAIN sends base64("\0user\0password"): neither form may show.
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("\0reports@example.com\0{password}"));
        for text in &outputs {
            assert!(
                !text.contains(password) && !text.contains(&auth),
                "{password} leaked:\n{text}"
            );
        }
    }
}

#[test]
fn a_data_value_in_the_subject_cannot_add_mail_headers() {
    let project = tiny_project(
        "category,amount\n\"books\r\nBcc: evil@example.com\r\nX-Injected: yes\",5.5\n",
        TINY_HTML,
    );
    let pipeline = TINY_PIPELINE.replace(
        "subject: \"Sales {{ ds }}: {{ data.by_category|length }} categories\"",
        "subject: \"Top category {{ data.by_category[0].category }}\"",
    );
    assert_ne!(pipeline, TINY_PIPELINE);
    project.write("pipelines/tiny.yaml", pipeline);
    run_expecting(tiny_run(&project), 0);
    let eml = std::fs::read(project.path("outbox/2026-10-31-tiny.eml")).expect("eml");
    let message = MessageParser::default().parse(&eml[..]).expect("mime");
    assert_eq!(
        message.subject(),
        Some("Top category books Bcc: evil@example.com X-Injected: yes")
    );
    assert!(message.bcc().is_none(), "no Bcc header");
    assert!(message.header("X-Injected").is_none(), "no injected header");
    let to: Vec<String> = message
        .to()
        .and_then(|to| to.as_list())
        .map(|list| list.iter().filter_map(|a| a.address().map(str::to_string)).collect())
        .unwrap_or_default();
    assert_eq!(to, ["boss@example.com"]);
}

/// A clean export, as a new user's first one often is: no row quarantined, no survey answer, and
/// every first purchase older than the cohort window. Each of those marts is empty, and the report
/// is still rendered and sent. Its periods and windows are the pipeline's settings (7-day KPIs,
/// a 14-day conversion window), never a fixed 30 days.
#[test]
fn a_report_of_empty_marts_is_sent_and_names_the_configured_periods() {
    let project = Project::new();
    project.write(
        "exports/events/dt=2026-10-31/part-0.ndjson",
        [
            r#"{"event_id":"e1","occurred_at":"2026-09-20T10:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"ad_click","channel":"search","properties":{}}"#,
            r#"{"event_id":"e2","occurred_at":"2026-09-21T10:00:00Z","customer_id":"c1","anonymous_id":null,"event_type":"product_view","channel":"web","properties":{}}"#,
            r#"{"event_id":"e3","occurred_at":"2026-10-28T09:00:00Z","customer_id":"c2","anonymous_id":null,"event_type":"email_open","channel":"email","properties":{}}"#,
            r#"{"event_id":"e4","occurred_at":"2026-10-29T12:00:00Z","customer_id":"c3","anonymous_id":null,"event_type":"page_view","channel":"web","properties":{}}"#,
        ]
        .join("\n"),
    );
    project.write(
        "exports/orders/orders.csv",
        "order_id,customer_id,ordered_at,amount,currency,category,channel,status\n\
         o1,c1,2025-03-05T10:00:00Z,40.00,USD,home,web,completed\n\
         o2,c2,2025-03-10T10:00:00Z,25.00,USD,beauty,web,completed\n\
         o3,c3,2025-04-01T10:00:00Z,60.00,USD,sports,app,completed\n",
    );
    project.write(
        "exports/customers/customers.csv",
        "customer_id,email,signup_at,country,acquisition_channel\n\
         c1,c1@example.com,2025-03-01T10:00:00Z,DE,search\n\
         c2,c2@example.com,2025-03-01T10:00:00Z,US,email\n\
         c3,c3@example.com,2025-03-01T10:00:00Z,GB,direct\n",
    );
    project.write(
        "exports/feedback/feedback.csv",
        "response_id,customer_id,responded_at,nps_score,comment\n",
    );
    let mut command = outbox_run(&project, "exports");
    command.args(["--var", "kpi_days=7", "--var", "conversion_window_days=14"]);
    let outcome = run_expecting(command, 0);
    assert_eq!(outcome.summary()["report"], "sent", "{}", outcome.stderr);
    let rows = outcome.summary()["rows"].clone();
    assert_eq!(
        (&rows["quarantine"], &rows["nps_monthly"], &rows["cohort_retention"]),
        (&0.into(), &0.into(), &0.into()),
        "{rows}"
    );

    let eml = std::fs::read(project.path("outbox/2026-10-31-customer_lifecycle.eml")).expect("eml");
    let message = MessageParser::default().parse(&eml).expect("mime");
    let html = message.body_html(0).expect("html").into_owned();
    let text = message.body_text(0).expect("text").into_owned();
    for part in [&html, &text] {
        for fixed in ["30 days", "30-day", "Previous 30", "Last 30"] {
            assert!(!part.contains(fixed), "`{fixed}` in:\n{part}");
        }
        assert!(
            part.contains("7 days to 31 October against the 7 days before"),
            "{part}"
        );
        assert!(part.contains("No input row was quarantined."), "{part}");
    }
    assert!(html.contains("Last 7 days") && html.contains("Previous 7"), "{html}");
    // September's entrants: the latest month whose 14-day window has closed.
    assert!(
        html.contains("the latest month whose 14-day conversion window has closed"),
        "{html}"
    );
}

#[test]
fn a_retry_after_a_crash_before_the_marker_sends_the_same_message_id_and_resend_a_new_one() {
    let server = SmtpServer::start();
    let project = Project::new();
    run_expecting(smtp_run(&project, server.port), 0);
    // A crash between the server's acceptance and the delivery marker: no marker, so the retry
    // sends again, as the same message.
    std::fs::remove_file(marker(&project)).expect("remove the marker");
    run_expecting(smtp_run(&project, server.port), 0);
    let mut resend = smtp_run(&project, server.port);
    resend.arg("--resend");
    run_expecting(resend, 0);
    let ids: Vec<String> = server
        .received()
        .iter()
        .map(|mail| {
            let message = MessageParser::default().parse(&mail.data).expect("a MIME message");
            message.message_id().expect("a Message-ID").to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], ids[1], "a retry is the same message");
    assert_ne!(ids[1], ids[2], "--resend is a new one");
    assert!(ids[0].starts_with("2026-10-31.customer-lifecycle.1."), "{}", ids[0]);
    assert!(ids[2].starts_with("2026-10-31.customer-lifecycle.2."), "{}", ids[2]);
    assert!(ids[0].ends_with("@example.com"), "{}", ids[0]);
}
