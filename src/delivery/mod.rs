//! Delivery: the rendered report archived next to the marts and sent once per `ds`.
//!
//! ```text
//!   <output>/_reports/ds=<ds>/report.html     the report with its images embedded (every run)
//!   <output>/_runs/ds=<ds>/delivery.json      written after the message was accepted
//! ```
//!
//! The marker is what makes delivery exactly-once per `ds` for a scheduler that retries: a rerun
//! finds it and sends nothing (unless `--resend`); a failed send leaves no marker, so the retry
//! sends. The message is one MIME tree: `multipart/alternative` of a plain-text part and a
//! `multipart/related` HTML part with its PNG images by Content-ID, wrapped in
//! `multipart/mixed` when CSV files are attached.

pub mod error;

use std::path::Path;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::config::{Pipeline, Report, SmtpSettings, SmtpTls, Transport};
use crate::context::RunContext;
use crate::error::Error;
use crate::layout::{OutputLayout, REPORT_ARCHIVE};
use crate::report::Rendered;
use crate::storage;
use error::DeliveryError;

pub use crate::layout::DELIVERY_MARKER as MARKER;

/// `delivery.json`, and what `run_results.json` says of the report.
/// Whether this run sent the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    /// An earlier run of this ds sent it.
    AlreadySent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub status: DeliveryStatus,
    /// 1 for the first delivery of this ds's report, then one more per `--resend`.
    #[serde(default = "first_delivery")]
    pub delivery: u32,
    pub transport: String,
    pub message_id: String,
    pub subject: String,
    pub recipients: Vec<String>,
    pub bytes: u64,
    pub run_id: String,
    pub sent_at: String,
    /// Where the rendered report is archived.
    pub archive: String,
    /// The outbox files, for the outbox transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_file: Option<String>,
    pub attempts: u32,
}

fn delivery_error(message: impl Into<String>, temporary: bool) -> Error {
    Error::Delivery(DeliveryError {
        message: message.into(),
        temporary,
    })
}

/// The MIME message of a rendered report.
pub fn build_message(report: &Report, rendered: &Rendered, message_id: &str) -> Result<Message, Error> {
    let png = ContentType::parse("image/png").map_err(|err| delivery_error(err.to_string(), false))?;
    let mut related = MultiPart::related().singlepart(SinglePart::html(rendered.html.clone()));
    for image in &rendered.images {
        related = related.singlepart(Attachment::new_inline(image.cid.clone()).body(image.png.clone(), png.clone()));
    }
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(rendered.text.clone()))
        .multipart(related);
    let body = if rendered.attachments.is_empty() {
        alternative
    } else {
        let mut mixed = MultiPart::mixed().multipart(alternative);
        for file in &rendered.attachments {
            let content_type =
                ContentType::parse(file.content_type).map_err(|err| delivery_error(err.to_string(), false))?;
            mixed = mixed.singlepart(Attachment::new(file.filename.clone()).body(file.body.clone(), content_type));
        }
        mixed
    };
    let mut builder = Message::builder()
        .from(report.from.clone())
        .subject(rendered.subject.clone())
        .message_id(Some(message_id.to_string()))
        .date_now();
    for to in &report.to {
        builder = builder.to(to.clone());
    }
    for cc in &report.cc {
        builder = builder.cc(cc.clone());
    }
    if let Some(reply_to) = &report.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    builder
        .multipart(body)
        .map_err(|err| delivery_error(format!("building the message: {err}"), false))
}

/// The marker of an earlier delivery of this `ds`, if there is one.
pub async fn read_marker(layout: &OutputLayout) -> Result<Option<DeliveryRecord>, Error> {
    let folder = layout.runs();
    let Some(bytes) = storage::get(&folder, MARKER).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|err| {
        delivery_error(
            format!("{}{MARKER} is not a delivery marker: {err}", folder.folder_url()),
            false,
        )
    })
}

fn first_delivery() -> u32 {
    1
}

/// The Message-ID of the `delivery`-th delivery of a `ds`'s report: the same for every attempt
/// of that delivery, so that a retry after a crash between the server's acceptance and the
/// delivery marker is the same message to mail systems that drop duplicates (a run id would make
/// it a second, different one). Scoped to the output location (two deployments may run
/// pipelines of one name) and the recipients (other recipients, another message); the domain is
/// the sender's. Not to the content: a retry renders it again, with its own run id.
fn message_id(pipeline: &str, report: &Report, layout: &crate::layout::OutputLayout, delivery: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut scope = Sha256::new();
    scope.update(layout.root().url.as_str().as_bytes());
    for recipient in report.to.iter().chain(&report.cc) {
        scope.update(recipient.email.to_string().as_bytes());
    }
    let scope = scope.finalize();
    let scope: String = scope.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    format!(
        "<{}.{}.{delivery}.{scope}@{}>",
        layout.ds(),
        pipeline.replace('_', "-"),
        report.from.email.domain()
    )
}

/// Archive the report, then send it unless this `ds` was sent before (and `resend` is off).
pub async fn deliver(
    run: &RunContext<'_>,
    report: &Report,
    rendered: &Rendered,
    resend: bool,
) -> Result<DeliveryRecord, Error> {
    let (pipeline, run_id, ds) = (run.pipeline, run.run_id.as_str(), run.ds());
    let archive = run.layout.reports();
    storage::put(&archive, REPORT_ARCHIVE, rendered.standalone_html().into_bytes()).await?;
    let archive_url = format!("{}{REPORT_ARCHIVE}", archive.folder_url());

    let earlier = read_marker(&run.layout).await?;
    if !resend && let Some(mut earlier) = earlier {
        tracing::info!(ds = %ds, sent_at = %earlier.sent_at, "report already sent for this ds; --resend sends it again");
        earlier.status = DeliveryStatus::AlreadySent;
        return Ok(earlier);
    }
    let delivery = earlier.map_or(1, |sent| sent.delivery + 1);
    let message_id = message_id(&pipeline.name, report, &run.layout, delivery);
    let message = build_message(report, rendered, &message_id)?;
    let bytes = message.formatted();
    if bytes.len() as u64 > report.max_bytes {
        return Err(delivery_error(
            format!(
                "the message is {} bytes, over the report's max_size of {} bytes; nothing was sent \
                 (fewer or smaller charts, fewer attachments, or a larger report.max_size if every \
                 recipient's server accepts it)",
                bytes.len(),
                report.max_bytes
            ),
            false,
        ));
    }
    let recipients: Vec<String> = message.envelope().to().iter().map(ToString::to_string).collect();
    let (transport, outbox_file, attempts) = match &report.transport {
        Transport::Outbox(folder) => {
            let file = write_outbox(folder, pipeline, rendered, &bytes)?;
            ("outbox".to_string(), Some(file), 1)
        }
        Transport::Smtp(settings) => {
            let attempts = send_smtp(settings, &message, &bytes).await?;
            (format!("smtp://{}:{}", settings.host, settings.port), None, attempts)
        }
    };
    let record = DeliveryRecord {
        status: DeliveryStatus::Sent,
        delivery,
        transport,
        message_id,
        subject: rendered.subject.clone(),
        recipients,
        bytes: bytes.len() as u64,
        run_id: run_id.to_string(),
        sent_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        archive: archive_url,
        outbox_file,
        attempts,
    };
    let body = serde_json::to_vec_pretty(&record).map_err(|err| delivery_error(err.to_string(), false))?;
    storage::put(&run.layout.runs(), MARKER, body).await?;
    tracing::info!(transport = %record.transport, bytes = record.bytes, recipients = record.recipients.len(), "report sent");
    Ok(record)
}

/// `<folder>/<ds>-<pipeline>.eml` (the message as it would be sent) and `.html` (for a browser),
/// each written to a temporary name and renamed, so a reader never sees half a file.
fn write_outbox(folder: &Path, pipeline: &Pipeline, rendered: &Rendered, eml: &[u8]) -> Result<String, Error> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(folder).map_err(io_error(folder))?;
    let stem = format!("{}-{}", pipeline.date.ds_string(), pipeline.name);
    let html = rendered.standalone_html();
    for (extension, body) in [("html", html.as_bytes()), ("eml", eml)] {
        let path = folder.join(format!("{stem}.{extension}"));
        let partial = folder.join(format!(".{stem}.{extension}.partial"));
        std::fs::write(&partial, body).map_err(io_error(&partial))?;
        std::fs::rename(&partial, &path).map_err(io_error(&path))?;
    }
    Ok(folder.join(format!("{stem}.eml")).display().to_string())
}

fn smtp_transport(settings: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, Error> {
    type Transport = AsyncSmtpTransport<Tokio1Executor>;
    let tls_error =
        |err: lettre::transport::smtp::Error| delivery_error(format!("TLS setup for {}: {err}", settings.host), false);
    let builder = match (settings.tls, &settings.ca_pem) {
        (SmtpTls::None, _) => Transport::builder_dangerous(settings.host.as_str()),
        (SmtpTls::StartTls, None) => Transport::starttls_relay(&settings.host).map_err(tls_error)?,
        (SmtpTls::Implicit, None) => Transport::relay(&settings.host).map_err(tls_error)?,
        // A private root: the same modes, with the extra certificate trusted.
        (mode, Some(pem)) => {
            let parameters = TlsParameters::builder(settings.host.clone())
                .add_root_certificate(Certificate::from_pem(pem).map_err(tls_error)?)
                .build_rustls()
                .map_err(tls_error)?;
            let tls = if mode == SmtpTls::Implicit {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            };
            Transport::builder_dangerous(settings.host.as_str()).tls(tls)
        }
    };
    let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.credentials(Credentials::new(
            user.expose().to_string(),
            password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// Send with retries; returns the number of attempts made.
async fn send_smtp(settings: &SmtpSettings, message: &Message, bytes: &[u8]) -> Result<u32, Error> {
    let transport = smtp_transport(settings)?;
    let mut wait = settings.retry_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match transport.send_raw(message.envelope(), bytes).await {
            Ok(_) => return Ok(attempt),
            // A 5xx reply (a refused address, failed authentication) will not change on retry.
            Err(err) if err.is_permanent() => {
                return Err(delivery_error(
                    format!("{}:{} refused the message: {err}", settings.host, settings.port),
                    false,
                ));
            }
            // Nor will a certificate this client does not trust.
            Err(err) if is_tls_failure(&err) => {
                return Err(delivery_error(
                    format!(
                        "TLS with {}:{} failed: {err} (a server with a private certificate authority \
                         needs report.delivery.smtp.ca_file)",
                        settings.host, settings.port
                    ),
                    false,
                ));
            }
            Err(err) if attempt > settings.retries => {
                return Err(delivery_error(
                    format!(
                        "could not send through {}:{} after {attempt} attempts: {err}",
                        settings.host, settings.port
                    ),
                    true,
                ));
            }
            Err(err) => {
                tracing::warn!(attempt, error = %err, wait_ms = wait.as_millis() as u64, "sending the report failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// lettre reports a refused certificate as a connection error; its cause says what it is.
fn is_tls_failure(err: &lettre::transport::smtp::Error) -> bool {
    crate::error::chain(err).any(|cause| cause.to_string().contains("invalid peer certificate")) || err.is_tls()
}
