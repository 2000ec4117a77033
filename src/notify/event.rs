//! What a webhook receives: an upload's end, an alert, a digest. Each is
//! sent as PowerPulse's JSON, or rendered as the message a Slack or a
//! Microsoft Teams incoming webhook takes (`notify.format`), with a link to
//! the dashboard's conversations when `notify.dashboard_url` is set.

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::UploadEvent;
use crate::alerts::Alert;
use crate::config::WebhookFormat;
use crate::store::SentimentCounts;
use crate::store::stats::{AgentFigures, TopicFigures};

/// An alert raised (`insight.alert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub event: &'static str,
    pub event_id: Uuid,
    pub alert: Alert,
    /// The dashboard's list of the conversations behind it (with `notify.dashboard_url`).
    pub url: Option<String>,
}

impl AlertEvent {
    pub fn new(alert: Alert, dashboard: Option<&str>) -> Self {
        let mut params = vec![("from", alert.date.clone()), ("to", alert.date.clone())];
        if let Some(t) = &alert.topic {
            params.push(("topic", t.clone()));
        }
        if let Some(a) = &alert.agent {
            params.push(("agent", a.clone()));
        }
        AlertEvent {
            event: "insight.alert",
            event_id: Uuid::new_v4(),
            url: dashboard.map(|base| conversations_link(base, &params)),
            alert,
        }
    }
}

/// The dashboard at `base`, opened on the conversations of `params` (the
/// page reads `#conversations?…` when it loads).
pub fn conversations_link(base: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect();
    format!(
        "{}/#conversations?{}",
        base.trim_end_matches('/'),
        query.join("&")
    )
}

/// `v` percent-encoded for a query string (unreserved characters kept).
fn percent(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The period a digest covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestPeriod {
    /// `daily` or `weekly`.
    pub schedule: &'static str,
    /// First and last day (UTC, `YYYY-MM-DD`), both included.
    pub from: String,
    pub to: String,
}

/// The period before, for comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousPeriod {
    pub conversations: u64,
    pub average_satisfaction: Option<f64>,
}

/// A summary of the last day or week (`insight.digest`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestEvent {
    pub event: &'static str,
    pub event_id: Uuid,
    pub period: DigestPeriod,
    pub conversations: u64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
    pub previous: PreviousPeriod,
    /// The five busiest topics and agents of the period.
    pub top_topics: Vec<TopicFigures>,
    pub top_agents: Vec<AgentFigures>,
    /// Alerts not acknowledged yet, and the newest ten of them.
    pub open_alerts: u64,
    pub alerts: Vec<Alert>,
    /// The dashboard's conversations of the period (with `notify.dashboard_url`).
    pub url: Option<String>,
}

/// Every event a webhook receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Upload(UploadEvent),
    Alert(AlertEvent),
    Digest(DigestEvent),
}

/// An event as a person reads it, for chat messages.
struct Message {
    title: String,
    lines: Vec<String>,
    link: Option<(String, String)>,
}

impl Event {
    /// `upload.completed`, `insight.alert`, `insight.digest`, …
    pub fn name(&self) -> &'static str {
        match self {
            Event::Upload(e) => e.event,
            Event::Alert(e) => e.event,
            Event::Digest(e) => e.event,
        }
    }

    /// Unique per event, the same on each retry of it.
    pub fn id(&self) -> Uuid {
        match self {
            Event::Upload(e) => e.event_id,
            Event::Alert(e) => e.event_id,
            Event::Digest(e) => e.event_id,
        }
    }

    /// The body to POST in `format`.
    pub fn body(&self, format: WebhookFormat) -> serde_json::Result<Vec<u8>> {
        match format {
            WebhookFormat::Json => match self {
                Event::Upload(e) => serde_json::to_vec(e),
                Event::Alert(e) => serde_json::to_vec(e),
                Event::Digest(e) => serde_json::to_vec(e),
            },
            WebhookFormat::Slack => serde_json::to_vec(&slack(&self.message())),
            WebhookFormat::Teams => serde_json::to_vec(&teams(&self.message())),
        }
    }

    fn message(&self) -> Message {
        match self {
            Event::Upload(e) => {
                let mut lines = vec![format!(
                    "{} conversations, {} messages ({} autoresponses filtered)",
                    e.counts.conversations, e.counts.messages, e.counts.autoresponses_filtered
                )];
                if let Some(s) = &e.sentiment {
                    lines.push(format!(
                        "sentiment: {} positive, {} neutral, {} negative",
                        s.positive, s.neutral, s.negative
                    ));
                }
                if let Some(average) = e.satisfaction.as_ref().and_then(|s| s.average) {
                    lines.push(format!("average satisfaction {average:.2} of 5"));
                }
                if e.cost_usd > 0.0 {
                    lines.push(format!("LLM cost ${:.4}", e.cost_usd));
                }
                if let Some(error) = &e.error {
                    lines.push(format!("error: {error}"));
                }
                Message {
                    title: format!("PowerPulse: upload {} {}", e.filename, e.status.as_str()),
                    lines,
                    link: None,
                }
            }
            Event::Alert(e) => {
                let who = match (&e.alert.topic, &e.alert.agent) {
                    (Some(t), _) => format!("topic {t}"),
                    (None, Some(a)) => format!("agent {a}"),
                    (None, None) => String::new(),
                };
                Message {
                    title: format!("PowerPulse alert: {who}, {}", e.alert.kind.label()),
                    lines: vec![e.alert.headline()],
                    link: e
                        .url
                        .clone()
                        .map(|u| (format!("The {} conversations", e.alert.conversations), u)),
                }
            }
            Event::Digest(e) => {
                let range = if e.period.from == e.period.to {
                    e.period.from.clone()
                } else {
                    format!("{} to {}", e.period.from, e.period.to)
                };
                let mut lines = vec![format!(
                    "{} conversations (before: {}); {} positive, {} neutral, {} negative",
                    e.conversations,
                    e.previous.conversations,
                    e.sentiment.positive,
                    e.sentiment.neutral,
                    e.sentiment.negative
                )];
                let sat = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
                lines.push(format!(
                    "average satisfaction {} (before: {})",
                    sat(e.average_satisfaction),
                    sat(e.previous.average_satisfaction)
                ));
                let busiest = |rows: Vec<(Option<String>, u64)>| {
                    rows.into_iter()
                        .map(|(n, c)| format!("{} {c}", n.unwrap_or_else(|| "(none)".into())))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                lines.push(format!(
                    "topics: {}",
                    busiest(
                        e.top_topics
                            .iter()
                            .map(|t| (t.topic.clone(), t.conversations))
                            .collect()
                    )
                ));
                lines.push(format!(
                    "agents: {}",
                    busiest(
                        e.top_agents
                            .iter()
                            .map(|a| (a.agent.clone(), a.conversations))
                            .collect()
                    )
                ));
                lines.push(format!("open alerts: {}", e.open_alerts));
                lines.extend(e.alerts.iter().map(|a| format!("• {}", a.headline())));
                Message {
                    title: format!("PowerPulse {} digest, {range}", e.period.schedule),
                    lines,
                    link: e.url.clone().map(|u| ("The conversations".to_string(), u)),
                }
            }
        }
    }
}

/// Slack's incoming webhook message: `text` (notifications, fallbacks) and
/// blocks.
fn slack(m: &Message) -> Value {
    let mut body = m.lines.join("\n");
    if let Some((label, url)) = &m.link {
        body.push_str(&format!("\n<{url}|{label}>"));
    }
    json!({
        "text": format!("{}: {}", m.title, m.lines.first().map_or("", String::as_str)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&m.title, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&body, 3000)}},
        ],
    })
}

/// A Teams workflow webhook's message: one Adaptive Card.
fn teams(m: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "TextBlock", "text": m.title, "weight": "Bolder", "size": "Medium", "wrap": true,
    })];
    blocks.extend(
        m.lines
            .iter()
            .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true, "spacing": "Small"})),
    );
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": blocks,
    });
    if let Some((label, url)) = &m.link {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": label, "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// At most `max` characters of `s`.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, Detected, Subject};

    fn alert() -> Alert {
        Detected {
            day: 20_530,
            subject: Subject::Topic("outage & power".into()),
            kind: AlertKind::NegativeShare,
            value: 0.86,
            baseline: 0.44,
            conversations: 160,
        }
        .raise(chrono::Utc::now())
    }

    #[test]
    fn an_alert_links_to_its_conversations_and_renders_for_each_format() {
        let event = Event::Alert(AlertEvent::new(alert(), Some("https://pp.example/")));
        let json: Value =
            serde_json::from_slice(&event.body(WebhookFormat::Json).unwrap()).unwrap();
        assert_eq!(json["event"], "insight.alert");
        assert_eq!(json["alert"]["kind"], "negative_share");
        assert_eq!(json["alert"]["topic"], "outage & power");
        assert!(json["alert"].get("agent").is_none());
        assert_eq!(
            json["url"],
            "https://pp.example/#conversations?from=2026-03-18&to=2026-03-18&topic=outage%20%26%20power"
        );
        let slack: Value =
            serde_json::from_slice(&event.body(WebhookFormat::Slack).unwrap()).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("86 % negative (usually 44 %)"), "{text}");
        let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("<https://pp.example/#conversations?"),
            "{section}"
        );
        let teams: Value =
            serde_json::from_slice(&event.body(WebhookFormat::Teams).unwrap()).unwrap();
        assert_eq!(teams["type"], "message");
        let card = &teams["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["actions"][0]["title"], "The 160 conversations");
        assert!(
            card["body"][1]["text"]
                .as_str()
                .unwrap()
                .contains("topic outage & power")
        );
    }

    #[test]
    fn long_texts_are_cut_for_chat_limits() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("बत्तीछैन", 4).chars().count(), 4);
    }
}
