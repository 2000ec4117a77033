//! The domain types every module shares: messages and conversations as parsed
//! from an export, and the analysis every analyzer returns.
//!
//! These types are plain data (serde, no behaviour beyond small helpers), so
//! the parsers, the analyzers, the store and the HTTP layer agree on one shape.

use serde::{Deserialize, Serialize};

/// Who wrote a message, after normalisation of the export's own vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Agent,
    Bot,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::Bot => "bot",
        }
    }
}

/// One message of a conversation, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub role: Role,
    pub text: String,
    /// The timestamp exactly as the export wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// `timestamp` parsed to Unix milliseconds, when it could be parsed; used
    /// only to order a conversation's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// Set by the autoresponse filter; such messages are kept but never analysed.
    #[serde(default)]
    pub autoresponse: bool,
}

/// A conversation with its messages in order (timestamp order when every
/// message has one, file order otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub messages: Vec<Message>,
}

impl Conversation {
    /// Messages an analyzer looks at: everything but autoresponses.
    pub fn analysable(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter().filter(|m| !m.autoresponse)
    }

    pub fn customer_messages(&self) -> usize {
        self.analysable()
            .filter(|m| m.role == Role::Customer)
            .count()
    }

    /// Orders messages by timestamp when every message has a parsed one,
    /// keeping file order otherwise (and between equal timestamps).
    pub fn sort_messages(&mut self) {
        if self.messages.iter().all(|m| m.time_ms.is_some()) {
            self.messages.sort_by_key(|m| m.time_ms);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    Positive,
    Neutral,
    Negative,
}

impl SentimentLabel {
    /// Within this distance of 0 an LLM's sentiment score is neutral (the
    /// prompt says so).
    pub const LLM_NEUTRAL_BAND: f64 = 0.2;

    /// The label an LLM's -1..=1 score implies.
    pub fn from_llm_score(score: f64) -> Self {
        if score >= Self::LLM_NEUTRAL_BAND {
            SentimentLabel::Positive
        } else if score <= -Self::LLM_NEUTRAL_BAND {
            SentimentLabel::Negative
        } else {
            SentimentLabel::Neutral
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Positive => "positive",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Negative => "negative",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// -1.0 (most negative) ..= 1.0 (most positive).
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SatisfactionLabel {
    Satisfied,
    Neutral,
    Dissatisfied,
}

impl SatisfactionLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            SatisfactionLabel::Satisfied => "satisfied",
            SatisfactionLabel::Neutral => "neutral",
            SatisfactionLabel::Dissatisfied => "dissatisfied",
        }
    }

    /// The label a 1..=5 score implies (4–5 satisfied, 3 neutral, 1–2 dissatisfied).
    pub fn from_score(score: u8) -> Self {
        match score {
            4.. => SatisfactionLabel::Satisfied,
            3 => SatisfactionLabel::Neutral,
            _ => SatisfactionLabel::Dissatisfied,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Satisfaction {
    /// 1 (very dissatisfied) ..= 5 (very satisfied).
    pub score: u8,
    pub label: SatisfactionLabel,
}

/// The result schema every analyzer produces, the lexicon one and the LLM one alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Analysis {
    pub sentiment: Sentiment,
    pub satisfaction: Satisfaction,
    /// Whether the customer's issue was resolved; `None` when it cannot be told.
    pub resolved: Option<bool>,
    /// One sentence, at most [`SUMMARY_MAX_CHARS`] characters.
    pub summary: String,
    /// Which analyzer produced this (`lexicon`, `openai`).
    pub analyzer: String,
    /// The model behind it (`vader-support-1`, `gpt-4o`, …).
    pub model: String,
    /// What the conversation is about: one of the configured `[[topics]]`
    /// names. `None` for analyses stored before topics existed.
    #[serde(default)]
    pub topic: Option<String>,
}

/// Where an upload is in its life. The last three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Parsing,
    Analyzing,
    Saving,
    Completed,
    Failed,
    Cancelled,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Parsing => "parsing",
            Stage::Analyzing => "analyzing",
            Stage::Saving => "saving",
            Stage::Completed => "completed",
            Stage::Failed => "failed",
            Stage::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Stage::Completed | Stage::Failed | Stage::Cancelled)
    }
}

/// What became of one conversation of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Analysed during this upload.
    Analyzed,
    /// The same content was analysed before; the stored analysis was reused.
    SkippedAlreadyProcessed,
    /// The analyzer gave up on it; the reason is stored with it.
    Failed,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Analyzed => "analyzed",
            ConversationStatus::SkippedAlreadyProcessed => "skipped_already_processed",
            ConversationStatus::Failed => "failed",
        }
    }
}

/// Longest summary an analysis may carry, in characters.
pub const SUMMARY_MAX_CHARS: usize = 200;

/// Cuts `text` to at most `max` characters on a character boundary, adding an
/// ellipsis when anything was cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str, time_ms: Option<i64>) -> Message {
        Message {
            role: Role::Customer,
            text: text.into(),
            timestamp: None,
            time_ms,
            sender_name: None,
            autoresponse: false,
        }
    }

    #[test]
    fn sorts_by_time_only_when_every_message_has_one() {
        let mut c = Conversation {
            id: "c".into(),
            messages: vec![msg("b", Some(2)), msg("a", Some(1)), msg("c", Some(2))],
        };
        c.sort_messages();
        let order: Vec<_> = c.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);

        let mut c = Conversation {
            id: "c".into(),
            messages: vec![msg("b", Some(2)), msg("a", None)],
        };
        c.sort_messages();
        assert_eq!(c.messages[0].text, "b");
    }

    #[test]
    fn satisfaction_label_follows_score() {
        assert_eq!(
            SatisfactionLabel::from_score(5),
            SatisfactionLabel::Satisfied
        );
        assert_eq!(SatisfactionLabel::from_score(3), SatisfactionLabel::Neutral);
        assert_eq!(
            SatisfactionLabel::from_score(1),
            SatisfactionLabel::Dissatisfied
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("नमस्ते", 3).chars().count(), 3);
        assert_eq!(truncate_chars("short", 10), "short");
    }
}
