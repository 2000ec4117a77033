//! Incident alerts: a topic's or an agent's day that stands out from its
//! own history (volume up, negative share up, satisfaction down).
//!
//! [`rule`] decides, as plain code over daily figures. The types here are
//! what it decides ([`Detected`]) and what is kept and shown ([`Alert`]):
//! each alert is stored once (its id is its day, subject and kind), and
//! acknowledged by someone. [`actor::AlertActor`] is the wiring: after each
//! completed upload and hourly in `serve` it reads the figures of the
//! recent days from the `StoreReader`, asks [`rule::judge`], has the
//! `StoreActor` keep the new ones, and sends each new one as an
//! `insight.alert` webhook.

pub mod actor;
pub mod rule;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::stats::{self, DayNumber};

/// How often `serve` looks for alerts besides after each completed upload.
pub const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Alert checks and digests so far, for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertStats {
    checks: std::sync::atomic::AtomicU64,
    raised: std::sync::atomic::AtomicU64,
    digests: std::sync::atomic::AtomicU64,
}

impl AlertStats {
    pub fn checks(&self) -> u64 {
        self.checks.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn raised(&self) -> u64 {
        self.raised.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn digests(&self) -> u64 {
        self.digests.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A check done, having raised `raised` alerts.
    pub(crate) fn count_check(&self, raised: usize) {
        self.raised
            .fetch_add(raised as u64, std::sync::atomic::Ordering::AcqRel);
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn count_digest(&self) {
        self.digests
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Prometheus text for these counters.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, n) in [
            (
                "powerpulse_alert_checks_total",
                "Alert checks done (after each completed upload, and hourly in serve).",
                self.checks(),
            ),
            (
                "powerpulse_alerts_raised_total",
                "Alerts raised.",
                self.raised(),
            ),
            ("powerpulse_digests_total", "Digests sent.", self.digests()),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {n}");
        }
    }
}

/// What an alert is about: a topic or an agent, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Topic(String),
    Agent(String),
}

impl Subject {
    pub fn name(&self) -> &str {
        match self {
            Subject::Topic(n) | Subject::Agent(n) => n,
        }
    }

    /// `topic` or `agent`.
    pub fn dimension(&self) -> &'static str {
        match self {
            Subject::Topic(_) => "topic",
            Subject::Agent(_) => "agent",
        }
    }
}

/// Which figure stands out.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// More conversations than usual.
    Volume,
    /// A larger share of negative conversations than usual.
    NegativeShare,
    /// A lower average satisfaction than usual.
    Satisfaction,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [
        AlertKind::Volume,
        AlertKind::NegativeShare,
        AlertKind::Satisfaction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Volume => "volume",
            AlertKind::NegativeShare => "negative_share",
            AlertKind::Satisfaction => "satisfaction",
        }
    }

    /// How a person reads it: "volume", "negative share", "satisfaction".
    pub fn label(self) -> &'static str {
        match self {
            AlertKind::Volume => "volume",
            AlertKind::NegativeShare => "negative share",
            AlertKind::Satisfaction => "satisfaction",
        }
    }
}

/// A day that stands out, as [`rule::judge`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub day: DayNumber,
    pub subject: Subject,
    pub kind: AlertKind,
    /// The day's figure: conversations, a share (0–1) or a mean (1–5).
    pub value: f64,
    /// What the subject usually has (the nearer of its two baselines).
    pub baseline: f64,
    /// The subject's conversations that day.
    pub conversations: u64,
}

impl Detected {
    /// The alert's id: its day, subject and kind, hashed (the same day,
    /// subject and kind is the same alert, raised once).
    pub fn id(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&self.day.to_le_bytes());
        h.update(self.subject.dimension().as_bytes());
        h.update(&[0]);
        h.update(self.subject.name().as_bytes());
        h.update(&[0]);
        h.update(self.kind.as_str().as_bytes());
        hex::encode(&h.finalize().as_bytes()[..8])
    }

    /// The alert this raises at `now`.
    pub fn raise(&self, now: DateTime<Utc>) -> Alert {
        let (topic, agent) = match &self.subject {
            Subject::Topic(n) => (Some(n.clone()), None),
            Subject::Agent(n) => (None, Some(n.clone())),
        };
        Alert {
            id: self.id(),
            date: stats::date_of(self.day)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            topic,
            agent,
            kind: self.kind,
            value: self.value,
            baseline: self.baseline,
            conversations: self.conversations,
            raised_at: now,
            acknowledged: false,
            acknowledged_at: None,
        }
    }
}

/// A stored alert (`alerts-v1`), as the API and the webhook show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// Stable: the same day, subject and kind always has this id.
    pub id: String,
    /// The day that stands out (UTC, `YYYY-MM-DD`).
    pub date: String,
    /// The topic, for a topic's alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The agent, for an agent's alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub kind: AlertKind,
    /// The day's figure: conversations (volume), a share 0–1
    /// (negative_share) or a mean 1–5 (satisfaction).
    pub value: f64,
    /// What the topic or agent usually has, in the same unit.
    pub baseline: f64,
    /// Its conversations that day (what the dashboard's link lists).
    pub conversations: u64,
    pub raised_at: DateTime<Utc>,
    pub acknowledged: bool,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

impl Alert {
    /// One line for a person: "2026-03-18 · topic outage · negative share
    /// 86 % (usually 44 %) · 160 conversations".
    pub fn headline(&self) -> String {
        let who = match (&self.topic, &self.agent) {
            (Some(t), _) => format!("topic {t}"),
            (None, Some(a)) => format!("agent {a}"),
            (None, None) => String::new(),
        };
        let (value, usual) = match self.kind {
            AlertKind::Volume => (
                format!("{:.0} conversations", self.value),
                format!("{:.0}", self.baseline),
            ),
            AlertKind::NegativeShare => (
                format!("{:.0} % negative", 100.0 * self.value),
                format!("{:.0} %", 100.0 * self.baseline),
            ),
            AlertKind::Satisfaction => (
                format!("satisfaction {:.2}", self.value),
                format!("{:.2}", self.baseline),
            ),
        };
        format!(
            "{} · {who} · {}: {value} (usually {usual}) · {} conversations",
            self.date,
            self.kind.label(),
            self.conversations
        )
    }
}
