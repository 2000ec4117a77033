//! Webhook notifications: when an upload completes, fails or is cancelled
//! ([`UploadEvent`]), when an alert is raised and when a digest is due
//! ([`event`]), an event is POSTed to `notify.webhook_url` — as JSON, or as
//! a Slack or Teams message (`notify.format`) — signed with `notify.secret`
//! (`X-PowerPulse-Signature: sha256=<hex HMAC-SHA256 of the body>`),
//! retried with exponential backoff.
//!
//! This file is plain code: the upload event, the signature, the retry rule
//! and the [`Webhook`] client that makes one delivery; [`digest`] decides
//! when a digest is due and what it says. [`actor::WebhookActor`] is the
//! wiring: the pipeline and the alerts hand it events without waiting, at
//! most `notify.queue_capacity` are pending (beyond that one is dropped and
//! counted), and it delivers one at a time, so a slow or dead receiver
//! never holds up an upload.

pub mod actor;
pub mod digest;
pub mod event;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::analyze::LlmUsage;
use crate::analyze::openai::router::ProviderOutage;
use crate::config::{NotifySettings, WebhookFormat};
use crate::model::Stage;
use crate::store::{SentimentCounts, UploadCounts, UploadSummary};
pub use event::Event;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-PowerPulse-Signature";
/// The header naming the event (`upload.completed`, …).
pub const EVENT_HEADER: &str = "X-PowerPulse-Event";
/// The event's id, the same on every attempt: receivers can drop repeats.
pub const DELIVERY_HEADER: &str = "X-PowerPulse-Delivery";

/// Longest wait between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot build the webhook client: {0}")]
    Client(String),
}

/// What a webhook receives, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadEvent {
    /// `upload.completed`, `upload.failed`, `upload.cancelled`, or
    /// `upload.paused` (the LLM provider stopped answering; the upload
    /// waits for it).
    pub event: &'static str,
    /// Unique per event, the same on each retry of it.
    pub event_id: Uuid,
    pub upload_id: Uuid,
    pub filename: String,
    pub status: Stage,
    pub counts: UploadCounts,
    /// Conversations by sentiment (absent when nothing was stored, e.g. an
    /// unreadable file).
    pub sentiment: Option<SentimentCounts>,
    pub satisfaction: Option<Satisfaction>,
    /// Estimated LLM cost in US dollars (0 for the lexicon analyzer).
    pub cost_usd: f64,
    pub llm: LlmUsage,
    /// Why the upload failed, stopped or paused.
    pub error: Option<String>,
    /// When the upload ended (absent from `upload.paused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// `upload.paused`: the provider's outage (since, reason, next probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderOutage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Satisfaction {
    /// Mean score (1–5) over analysed conversations.
    pub average: Option<f64>,
    /// Conversations per score 1..=5 (index 0 is score 1).
    pub histogram: [u64; 5],
}

/// How an upload ended (or paused), as the pipeline knows it.
#[derive(Debug, Clone)]
pub struct UploadEnd {
    pub upload_id: Uuid,
    pub filename: String,
    pub status: Stage,
    pub counts: UploadCounts,
    pub llm: LlmUsage,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
    /// It did not end: it paused, the provider being down.
    pub paused: Option<ProviderOutage>,
}

/// The event's name for a final status, or for a pause; `None` for a
/// status that is not an end.
pub fn event_name(status: Stage, paused: bool) -> Option<&'static str> {
    if paused {
        return Some("upload.paused");
    }
    match status {
        Stage::Completed => Some("upload.completed"),
        Stage::Failed => Some("upload.failed"),
        Stage::Cancelled => Some("upload.cancelled"),
        Stage::Parsing | Stage::Analyzing | Stage::Saving => None,
    }
}

impl UploadEvent {
    /// The event for `end`, with the stored summary when there is one.
    pub fn new(end: UploadEnd, summary: Option<&UploadSummary>) -> Option<Self> {
        Some(UploadEvent {
            event: event_name(end.status, end.paused.is_some())?,
            event_id: Uuid::new_v4(),
            upload_id: end.upload_id,
            filename: end.filename,
            status: end.status,
            counts: end.counts,
            sentiment: summary.map(|s| s.sentiment),
            satisfaction: summary.map(|s| Satisfaction {
                average: s.average_satisfaction,
                histogram: s.satisfaction_histogram,
            }),
            cost_usd: end.llm.cost_usd,
            llm: end.llm,
            error: end.error,
            finished_at: end.paused.is_none().then_some(end.finished_at),
            provider: end.paused,
        })
    }
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What an answer means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A passing trouble (a timeout, overload, a server error): try again.
    Retry,
    /// The receiver refused it (400, 404, a redirect…): trying again would
    /// get the same answer.
    GiveUp,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::GiveUp,
    }
}

/// The wait before retry number `retry` (1 for the first): `first`,
/// doubling each time, at most a minute.
pub fn backoff(first: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    first.saturating_mul(factor).min(BACKOFF_CAP)
}

/// Deliveries so far, for `/metrics`, and the events pending now.
#[derive(Debug, Default)]
pub struct WebhookStats {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    /// Events queued or being delivered: what bounds the queue.
    pending: AtomicU64,
}

impl WebhookStats {
    /// Takes a place in a queue of `capacity` for one event; `false` (and
    /// the event counted as dropped) when it is full.
    pub fn reserve(&self, capacity: usize) -> bool {
        let capacity = capacity as u64;
        let reserved = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            self.count_dropped();
        }
        reserved
    }

    /// An event left the queue (delivered, given up, or never sent).
    pub fn release(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Events queued or being delivered.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Events given up after their attempts (or refused by the receiver).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Events never attempted: the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text for these counters.
    pub fn render(&self, out: &mut String) {
        let name = "powerpulse_webhook_events_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook events by result: delivered, failed (attempts used up or \
             refused), dropped (queue full)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (result, n) in [
            ("delivered", self.delivered()),
            ("failed", self.failed()),
            ("dropped", self.dropped()),
        ] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        let name = "powerpulse_webhook_retries_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook delivery attempts that were retries."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", self.retries());
        let name = "powerpulse_webhook_pending";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook events queued or being delivered."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", self.pending());
    }
}

/// The HTTP side of webhooks: one client, the URL, the secret.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<SecretString>,
    max_attempts: u32,
    first_backoff: Duration,
    format: WebhookFormat,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's path and query may carry a token: only its host.
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Webhook {
    /// `None` when no webhook is configured.
    pub fn from_settings(settings: &NotifySettings) -> Result<Option<Self>, NotifyError> {
        let Some(url) = settings.webhook_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        // Checked when the settings were loaded; this only guards embedders.
        let url = reqwest::Url::parse(url)
            .map_err(|e| NotifyError::Client(format!("notify.webhook_url is not a URL ({e})")))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_seconds.clamp(1, 10)))
            // A redirect would resend the signed body somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("powerpulse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Some(Webhook {
            client,
            url,
            secret: settings
                .secret
                .clone()
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            max_attempts: settings.max_attempts.max(1),
            first_backoff: Duration::from_millis(settings.backoff_ms),
            format: settings.format,
        }))
    }

    /// The receiver's host, for logs (never the whole URL).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("?")
    }

    /// Delivers `event` in the configured format, retrying as [`verdict`]
    /// and [`backoff`] say; counts the result in `stats`. Answers whether it
    /// was delivered.
    pub async fn deliver(&self, event: &Event, stats: &WebhookStats) -> bool {
        let (name, event_id) = (event.name(), event.id());
        let body = match event.body(self.format) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise a webhook event");
                stats.failed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let signature = self
            .secret
            .as_ref()
            .map(|s| sign(s.expose_secret().as_bytes(), &body));
        // Shared by every attempt, not copied.
        let body = bytes::Bytes::from(body);
        let mut attempt = 1;
        loop {
            let mut request = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, name)
                .header(DELIVERY_HEADER, event_id.to_string())
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header(SIGNATURE_HEADER, signature);
            }
            let (verdict, what, asked_wait) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    (
                        verdict(status.as_u16()),
                        format!("HTTP {}", status.as_u16()),
                        // A receiver's Retry-After (429, 503) is honoured, up to the cap.
                        crate::analyze::openai::limits::retry_after(response.headers()),
                    )
                }
                // Without the URL: it may carry a token.
                Err(e) => (Verdict::Retry, connection_error(&e), None),
            };
            match verdict {
                Verdict::Delivered => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(event = name, %event_id, attempt, "webhook delivered");
                    return true;
                }
                Verdict::Retry if attempt < self.max_attempts => {
                    let wait = backoff(self.first_backoff, attempt)
                        .max(asked_wait.unwrap_or_default().min(BACKOFF_CAP));
                    tracing::debug!(
                        event = name,
                        %event_id,
                        host = self.host(),
                        answer = %what,
                        attempt,
                        retry_in_ms = wait.as_millis() as u64,
                        "webhook attempt failed; retrying"
                    );
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Verdict::Retry | Verdict::GiveUp => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        event = name,
                        %event_id,
                        host = self.host(),
                        answer = %what,
                        attempts = attempt,
                        "webhook not delivered"
                    );
                    return false;
                }
            }
        }
    }
}

/// A failed request's kind, without its URL.
fn connection_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            sign(b"Jefe", b"what do ya want for nothing!"),
            sign(b"Jefe", b"what do ya want for nothing?")
        );
    }

    #[test]
    fn only_passing_trouble_is_retried() {
        for (status, expected) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (429, Verdict::Retry),
            (408, Verdict::Retry),
            (400, Verdict::GiveUp),
            (404, Verdict::GiveUp),
            (301, Verdict::GiveUp),
            (410, Verdict::GiveUp),
        ] {
            assert_eq!(verdict(status), expected, "{status}");
        }
    }

    #[test]
    fn the_queue_holds_at_most_its_capacity() {
        let stats = WebhookStats::default();
        assert!(stats.reserve(2));
        assert!(stats.reserve(2));
        assert!(!stats.reserve(2));
        assert_eq!((stats.pending(), stats.dropped()), (2, 1));
        stats.release();
        assert!(stats.reserve(2));
        for _ in 0..5 {
            stats.release();
        }
        // Never below zero, whatever is released.
        assert_eq!(stats.pending(), 0);
        assert!(stats.reserve(1));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let first = Duration::from_millis(500);
        let waits: Vec<_> = (1..=9).map(|r| backoff(first, r)).collect();
        assert_eq!(waits[0], first);
        assert_eq!(waits[1], Duration::from_secs(1));
        assert_eq!(waits[3], Duration::from_secs(4));
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(backoff(first, 9), BACKOFF_CAP);
        assert_eq!(backoff(first, u32::MAX), BACKOFF_CAP);
    }

    fn end(status: Stage) -> UploadEnd {
        UploadEnd {
            upload_id: Uuid::nil(),
            filename: "chats.csv".into(),
            status,
            counts: UploadCounts::default(),
            llm: LlmUsage {
                cost_usd: 0.25,
                ..LlmUsage::default()
            },
            error: None,
            finished_at: Utc::now(),
            paused: None,
        }
    }

    #[test]
    fn only_final_states_and_pauses_are_events() {
        assert_eq!(
            UploadEvent::new(end(Stage::Completed), None).map(|e| e.event),
            Some("upload.completed")
        );
        assert_eq!(
            UploadEvent::new(end(Stage::Cancelled), None).map(|e| e.event),
            Some("upload.cancelled")
        );
        assert_eq!(
            UploadEvent::new(end(Stage::Failed), None).map(|e| e.event),
            Some("upload.failed")
        );
        assert!(UploadEvent::new(end(Stage::Analyzing), None).is_none());
        let json = serde_json::to_value(UploadEvent::new(end(Stage::Completed), None)).unwrap();
        assert_eq!(json["cost_usd"], 0.25);
        assert_eq!(json["status"], "completed");
        assert!(json["sentiment"].is_null());
        assert!(json["finished_at"].is_string());
        assert!(json.get("provider").is_none());
        let outage = ProviderOutage {
            reason: "HTTP 503".into(),
            detail: "server_error: overloaded".into(),
            since: Utc::now(),
            next_try: Utc::now(),
            gives_up_at: Utc::now(),
        };
        let paused = UploadEnd {
            paused: Some(outage),
            ..end(Stage::Analyzing)
        };
        let json = serde_json::to_value(UploadEvent::new(paused, None)).unwrap();
        assert_eq!(json["event"], "upload.paused");
        assert_eq!(json["status"], "analyzing");
        assert_eq!(json["provider"]["reason"], "HTTP 503");
        assert!(json.get("finished_at").is_none(), "it has not finished");
    }

    #[test]
    fn debug_shows_neither_url_nor_secret() {
        let settings = NotifySettings {
            webhook_url: Some("https://hooks.example/T0KEN/path?sig=abc".into()),
            secret: Some("hunter2".into()),
            ..NotifySettings::default()
        };
        let hook = Webhook::from_settings(&settings).unwrap().unwrap();
        let debug = format!("{hook:?}");
        assert!(debug.contains("hooks.example"), "{debug}");
        assert!(
            !debug.contains("T0KEN") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
