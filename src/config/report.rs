//! The `report:` section compiled: templates read, recipients parsed, delivery settings resolved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use sha2::{Digest, Sha256};

use lifemap_syntax::suggest::did_you_mean;
use lifemap_syntax::units::parse_bytes;

use super::diagnostics::{Compiler, is_plain_identifier};
use super::files::{normalize, read_inside};
use super::model::{Mart, Report, Secret, SmtpSettings, SmtpTls, TemplateFile, Transport};
use super::template::TemplateContext;
use lifemap_syntax::pipeline::{RawDelivery, RawReport, RawSmtp};

pub const DEFAULT_MAX_BYTES: u64 = 5_000_000;

pub(super) fn compile_report(
    c: &mut Compiler<'_>,
    raw: RawReport,
    pipeline_file: &Path,
    ctx: &TemplateContext,
    marts: &[Mart],
    hasher: &mut Sha256,
) -> Option<Report> {
    let template_dir = normalize(
        &pipeline_file
            .parent()
            .unwrap_or(Path::new("."))
            .join(raw.template_dir.as_deref().unwrap_or("../report-templates")),
    );
    let html = read_template(c, &template_dir, "template", &raw.template, hasher);
    let text = read_template(c, &template_dir, "text_template", &raw.text_template, hasher);
    check_marts(c, &raw, marts);
    let queries = compile_queries(c, &raw, ctx, hasher);
    let from = mailboxes(c, "from", std::slice::from_ref(&raw.from));
    let to = mailboxes(c, "to", &raw.to);
    let cc = mailboxes(c, "cc", &raw.cc);
    let reply_to = raw
        .reply_to
        .as_ref()
        .map(|value| mailboxes(c, "reply_to", std::slice::from_ref(value)))
        .and_then(|mut list| list.pop());
    if from.len() != 1 {
        c.report(&["report:", "from:"], "report.from", "give exactly one sender address");
    }
    if to.is_empty() && cc.is_empty() {
        c.report(&["report:", "to:"], "report.to", "the report has no recipient");
    }
    let max_bytes = max_bytes(c, raw.max_size.as_deref());
    let transport = compile_transport(c, raw.delivery.unwrap_or_default(), ctx);
    let from = from.into_iter().next()?;
    Some(Report {
        html: html?,
        text: text?,
        subject: raw.subject,
        marts: raw.marts,
        queries,
        from,
        to,
        cc,
        reply_to,
        attach_csv: raw.attach_csv,
        max_bytes,
        transport: transport?,
    })
}

/// A template file under `template_dir`; its text goes into the pipeline's hash.
fn read_template(
    c: &mut Compiler<'_>,
    template_dir: &Path,
    key: &str,
    file: &str,
    hasher: &mut Sha256,
) -> Option<TemplateFile> {
    match read_inside(template_dir, file, "template") {
        Ok((path, source)) => {
            hasher.update(source.as_bytes());
            Some(TemplateFile { path, source })
        }
        Err(message) => {
            c.report_with_hint(
                &["report:", &format!("{key}:")],
                format!("report.{key}"),
                message,
                Some(format!(
                    "templates are files under template_dir ({})",
                    template_dir.display()
                )),
            );
            None
        }
    }
}

/// The marts a report reads and attaches are marts of the pipeline, and what it attaches it reads.
fn check_marts(c: &mut Compiler<'_>, raw: &RawReport, marts: &[Mart]) {
    let mart_names: Vec<&str> = marts.iter().map(|m| m.name.as_str()).collect();
    for (key, list) in [("marts", &raw.marts), ("attach_csv", &raw.attach_csv)] {
        for name in list {
            if !mart_names.contains(&name.as_str()) {
                let hint =
                    did_you_mean(name, mart_names.iter().copied()).map(|close| format!("did you mean `{close}`?"));
                c.report_with_hint(
                    &["report:", &format!("{key}:"), name.as_str()],
                    format!("report.{key}"),
                    format!("`{name}` is not a mart of this pipeline"),
                    hint,
                );
            } else if key == "attach_csv" && !raw.marts.contains(name) {
                c.report(
                    &["report:", "attach_csv:", name.as_str()],
                    "report.attach_csv",
                    format!("`{name}` is attached but not in `report.marts`"),
                );
            }
        }
    }
}

/// The report's queries, templated as SQL; their names are plain and not those of marts.
fn compile_queries(
    c: &mut Compiler<'_>,
    raw: &RawReport,
    ctx: &TemplateContext,
    hasher: &mut Sha256,
) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (name, sql) in &raw.queries {
        let key = format!("report.queries.{name}");
        if !is_plain_identifier(name) || raw.marts.contains(name) {
            c.report(
                &["report:", "queries:", &format!("{name}:")],
                key.clone(),
                "a query name is lower-case letters, digits and `_`, and not the name of a mart",
            );
        }
        hasher.update(sql.as_bytes());
        match ctx.render_sql(&key, sql) {
            Ok(rendered) => queries.push((name.clone(), rendered)),
            Err(message) => c.report(&["report:", "queries:", &format!("{name}:")], key, message),
        }
    }
    queries
}

/// Addresses of one header: each value `${ENV}`-filled, and may hold several, comma-separated.
fn mailboxes(c: &mut Compiler<'_>, key: &str, values: &[String]) -> Vec<Mailbox> {
    let mut out = Vec::new();
    for value in values {
        let Some(done) = c.env_value(&format!("report.{key}"), value) else {
            continue;
        };
        for address in done.value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match address.parse::<Mailbox>() {
                Ok(mailbox) => out.push(mailbox),
                Err(err) => c.report(
                    &["report:", &format!("{key}:")],
                    format!("report.{key}"),
                    format!("`{address}` is not an email address: {err}"),
                ),
            }
        }
    }
    out
}

/// The largest message the report may become (`max_size`), in bytes.
fn max_bytes(c: &mut Compiler<'_>, raw: Option<&str>) -> u64 {
    let max_size = raw
        .and_then(|value| c.env_value("report.max_size", value))
        .map(|done| done.value)
        .filter(|value| !value.is_empty());
    match max_size.as_deref() {
        None => DEFAULT_MAX_BYTES,
        Some(text) => parse_bytes(text).unwrap_or_else(|message| {
            c.report(&["report:", "max_size:"], "report.max_size", message);
            DEFAULT_MAX_BYTES
        }),
    }
}

/// Delivery: the outbox (a folder, the default) or an SMTP server.
fn compile_transport(c: &mut Compiler<'_>, delivery: RawDelivery, ctx: &TemplateContext) -> Option<Transport> {
    let transport_name = delivery
        .transport
        .as_deref()
        .and_then(|value| c.env_value("report.delivery.transport", value))
        .map(|done| done.value)
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| "outbox".into());
    match transport_name.as_str() {
        "outbox" => {
            let folder = delivery
                .outbox
                .as_deref()
                .and_then(|value| c.templated("report.delivery.outbox", &["outbox:"], value, ctx))
                .unwrap_or_else(|| "output/outbox".into());
            Some(Transport::Outbox(PathBuf::from(folder)))
        }
        "smtp" => compile_smtp(c, delivery.smtp.unwrap_or_default()).map(Transport::Smtp),
        other => {
            c.report(
                &["report:", "transport:"],
                "report.delivery.transport",
                format!("`{other}` is not a transport: use `outbox` or `smtp`"),
            );
            None
        }
    }
}

/// A setting of the `smtp:` section, `${ENV}`-filled; empty counts as unset.
fn smtp_text(c: &mut Compiler<'_>, key: &str, value: Option<&str>) -> Option<String> {
    let done = c.env_value(&format!("report.delivery.smtp.{key}"), value?)?;
    (!done.value.is_empty()).then_some(done.value)
}

/// A number of the `smtp:` section, or `default` (with a report when it is not one).
fn smtp_number<T: std::str::FromStr>(
    c: &mut Compiler<'_>,
    key: &str,
    value: Option<&str>,
    default: T,
    what: &str,
) -> T {
    match smtp_text(c, key, value) {
        None => default,
        Some(text) => text.parse::<T>().unwrap_or_else(|_| {
            c.report(
                &["smtp:", &format!("{key}:")],
                format!("report.delivery.smtp.{key}"),
                format!("`{text}` is not {what}"),
            );
            default
        }),
    }
}

fn compile_smtp(c: &mut Compiler<'_>, raw: RawSmtp) -> Option<SmtpSettings> {
    let host = smtp_text(c, "host", raw.host.as_deref());
    let tls = match smtp_text(c, "tls", raw.tls.as_deref()).as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Implicit,
        Some("none") => SmtpTls::None,
        Some(other) => {
            c.report(
                &["smtp:", "tls:"],
                "report.delivery.smtp.tls",
                format!("`{other}` is not a TLS mode: use `starttls`, `tls` or `none`"),
            );
            SmtpTls::StartTls
        }
    };
    let default_port = match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
    };
    let port = smtp_number(c, "port", raw.port.as_deref(), default_port, "a port number");
    let ca_pem = smtp_text(c, "ca_file", raw.ca_file.as_deref()).and_then(|file| match std::fs::read(&file) {
        Ok(pem) => Some(pem),
        Err(err) => {
            c.report(
                &["smtp:", "ca_file:"],
                "report.delivery.smtp.ca_file",
                format!("cannot read {file}: {err}"),
            );
            None
        }
    });
    let (username, password) = smtp_credentials(c, &raw);
    let timeout = c.duration(
        "report.delivery.smtp.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(30),
    );
    let retry_backoff = c.duration(
        "report.delivery.smtp.retry_backoff",
        raw.retry_backoff.as_deref(),
        Duration::from_secs(2),
    );
    let retries = smtp_number(c, "retries", raw.retries.as_deref(), 3, "a number of retries");
    let Some(host) = host else {
        c.report(
            &["report:", "smtp:"],
            "report.delivery.smtp.host",
            "the smtp transport needs a host",
        );
        return None;
    };
    Some(SmtpSettings {
        host,
        port,
        tls,
        ca_pem,
        username,
        password,
        timeout,
        retries,
        retry_backoff,
    })
}

/// The SMTP credentials from the environment variables the pipeline names. No credentials is a
/// valid setup (a local relay), so unset variables are fine; one without the other is a mistake.
fn smtp_credentials(c: &mut Compiler<'_>, raw: &RawSmtp) -> (Option<Secret>, Option<Secret>) {
    let username = raw
        .username_env
        .as_deref()
        .and_then(|name| (c.env)(name))
        .map(Secret::new);
    let password = raw
        .password_env
        .as_deref()
        .and_then(|name| (c.env)(name))
        .map(Secret::new);
    if username.is_some() != password.is_some() {
        c.report(
            &["smtp:", "username_env:"],
            "report.delivery.smtp",
            format!(
                "only one of the credentials is set: `{}` and `{}` go together",
                raw.username_env.as_deref().unwrap_or("username_env"),
                raw.password_env.as_deref().unwrap_or("password_env")
            ),
        );
    }
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
name: t
sources:
  s:
    location: s.csv
    format: csv
steps:
  - name: m
    query: SELECT 1 AS x
output:
  location: out
marts:
  m: {}
report:
  template: r.html
  text_template: r.txt
  subject: "s"
  from: a@example.com
  to: ["b@example.com, c@example.com"]
  marts: [m]
  delivery:
    transport: smtp
    smtp:
      host: mail.example.com
"#;

    fn compile_with(smtp: &str, marts: &str, env: &[(&str, &str)]) -> Result<crate::config::Pipeline, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("report-templates")).expect("mkdir");
        std::fs::write(dir.path().join("report-templates/r.html"), "<p>{{ ds }}</p>").expect("write");
        std::fs::write(dir.path().join("report-templates/r.txt"), "{{ ds }}").expect("write");
        let yaml = PIPELINE
            .replace(
                "      host: mail.example.com\n",
                &format!("      host: mail.example.com\n{smtp}"),
            )
            .replace("  marts: [m]\n", &format!("  marts: [{marts}]\n"));
        let path = dir.path().join("pipelines/t.yaml");
        let raw = crate::config::parse(&path, &yaml).map_err(|d| d.to_string())?;
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        crate::config::compile(&path, &yaml, raw, &Default::default(), &lookup).map_err(|d| d.to_string())
    }

    #[test]
    fn a_template_outside_the_template_folder_is_refused() {
        for escape in ["../pipelines/t.yaml", "/etc/passwd"] {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
            std::fs::create_dir_all(dir.path().join("report-templates")).expect("mkdir");
            std::fs::write(dir.path().join("report-templates/r.txt"), "{{ ds }}").expect("write");
            let yaml = PIPELINE.replace("template: r.html", &format!("template: {escape}"));
            let path = dir.path().join("pipelines/t.yaml");
            std::fs::write(&path, &yaml).expect("write");
            let raw = crate::config::parse(&path, &yaml).expect("parses");
            let errors = crate::config::compile(&path, &yaml, raw, &Default::default(), &|_: &str| None)
                .map(|_| ())
                .expect_err("escaping template accepted")
                .to_string();
            assert!(
                errors.contains(&format!("report.template: `{escape}` is not a file inside")),
                "{errors}"
            );
        }
    }

    fn smtp(pipeline: &crate::config::Pipeline) -> SmtpSettings {
        match &pipeline.report.as_ref().expect("report").transport {
            Transport::Smtp(settings) => settings.clone(),
            Transport::Outbox(_) => panic!("outbox"),
        }
    }

    #[test]
    fn smtp_tls_modes_pick_their_ports_and_credentials_come_from_the_environment() {
        let default = smtp(&compile_with("", "m", &[]).expect("compiles"));
        assert_eq!(
            (default.tls, default.port, default.retries),
            (SmtpTls::StartTls, 587, 3)
        );
        assert_eq!(default.retry_backoff, Duration::from_secs(2));
        assert!(default.username.is_none() && default.password.is_none());

        let implicit = smtp(
            &compile_with(
                "      tls: tls\n      username_env: U\n      password_env: P\n",
                "m",
                &[("U", "reports"), ("P", "s3cret")],
            )
            .expect("compiles"),
        );
        assert_eq!((implicit.tls, implicit.port), (SmtpTls::Implicit, 465));
        assert_eq!(implicit.username.as_ref().map(Secret::expose), Some("reports"));
        assert_eq!(implicit.password.as_ref().map(Secret::expose), Some("s3cret"));

        let relay = smtp(&compile_with("      tls: none\n      port: \"2525\"\n", "m", &[]).expect("compiles"));
        assert_eq!((relay.tls, relay.port), (SmtpTls::None, 2525));

        let pipeline = compile_with("", "m", &[]).expect("compiles");
        let report = pipeline.report.expect("report");
        let to: Vec<String> = report.to.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(to, vec!["b@example.com", "c@example.com"]);
    }

    #[test]
    fn report_settings_that_cannot_work_are_errors_with_their_key() {
        let half =
            compile_with("      username_env: U\n      password_env: P\n", "m", &[("U", "x")]).expect_err("fails");
        assert!(half.contains("`U` and `P` go together"), "{half}");
        let unknown = compile_with("", "mm", &[]).expect_err("fails");
        assert!(
            unknown.contains("`mm` is not a mart of this pipeline") && unknown.contains("did you mean `m`?"),
            "{unknown}"
        );
        let ca = compile_with("      ca_file: /nonexistent/ca.pem\n", "m", &[]).expect_err("fails");
        assert!(
            ca.contains("report.delivery.smtp.ca_file") && ca.contains("cannot read /nonexistent/ca.pem"),
            "{ca}"
        );
        let tls = compile_with("      tls: ssl\n", "m", &[]).expect_err("fails");
        assert!(
            tls.contains("report.delivery.smtp.tls") && tls.contains("`ssl` is not a TLS mode"),
            "{tls}"
        );
    }
}
