//! Reading a chat-completions reply into an [`Analysis`], strictly: the
//! content must be JSON of the result schema (a markdown fence around it is
//! accepted); anything else is a [`ReplyError`] and the call is retried.

use serde::Deserialize;

use crate::analyze::FailureKind;
use crate::model::{
    Analysis, SUMMARY_MAX_CHARS, Satisfaction, SatisfactionLabel, Sentiment, SentimentLabel,
    truncate_chars,
};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplyError {
    #[error("unreadable response body: {0}")]
    Body(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("reply cut short (finish_reason length)")]
    Truncated,
    #[error("empty reply")]
    Empty,
    #[error("invalid JSON reply: {0}")]
    Json(String),
    #[error("reply violates the schema: {0}")]
    Schema(String),
}

impl ReplyError {
    /// The failure a conversation is recorded with when this was the last word.
    pub fn kind(&self) -> FailureKind {
        match self {
            ReplyError::Refused(_) => FailureKind::Refused,
            ReplyError::Truncated => FailureKind::Truncated,
            ReplyError::Body(_)
            | ReplyError::Empty
            | ReplyError::Json(_)
            | ReplyError::Schema(_) => FailureKind::InvalidReply,
        }
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ChoiceMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The content JSON as the schema describes it; numbers are read loosely
/// and checked by hand so the error says what was wrong.
#[derive(Deserialize)]
struct Content {
    sentiment: RawSentiment,
    satisfaction: RawSatisfaction,
    resolved: Option<bool>,
    summary: String,
}

#[derive(Deserialize)]
struct RawSentiment {
    label: SentimentLabel,
    score: f64,
}

#[derive(Deserialize)]
struct RawSatisfaction {
    score: f64,
    /// Parsed so that a label outside the enum is a schema violation; the
    /// label stored is derived from the score.
    #[allow(dead_code)]
    label: Option<SatisfactionLabel>,
}

/// What a reply body held: the analysis (or why not) and the usage to bill.
pub struct Parsed {
    pub analysis: Result<Analysis, ReplyError>,
    pub usage: Option<Usage>,
    /// Characters of the content, to estimate completion tokens without `usage`.
    pub content_chars: usize,
    /// The content itself when it was not a valid analysis, to quote back
    /// in a re-ask.
    pub content: Option<String>,
}

/// Strips a surrounding markdown code fence (```json … ``` or ``` … ```).
pub fn strip_fence(content: &str) -> &str {
    let t = content.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

pub fn parse(body: &[u8], analyzer: &str, model: &str) -> Parsed {
    let completion: Completion = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => {
            return Parsed {
                analysis: Err(ReplyError::Body(truncate_chars(&e.to_string(), 200))),
                usage: None,
                content_chars: 0,
                content: None,
            };
        }
    };
    let usage = completion.usage;
    let Some(choice) = completion.choices.into_iter().next() else {
        return Parsed {
            analysis: Err(ReplyError::Empty),
            usage,
            content_chars: 0,
            content: None,
        };
    };
    let message = choice.message.unwrap_or(ChoiceMessage {
        content: None,
        refusal: None,
    });
    let content_chars = message.content.as_deref().map_or(0, |c| c.chars().count());
    let analysis = (|| {
        if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
            return Err(ReplyError::Refused(truncate_chars(&refusal, 120)));
        }
        if choice.finish_reason.as_deref() == Some("length") {
            return Err(ReplyError::Truncated);
        }
        let content = message
            .content
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .ok_or(ReplyError::Empty)?;
        validate(strip_fence(content), analyzer, model)
    })();
    let content = match &analysis {
        Err(ReplyError::Refused(_)) | Ok(_) => None,
        Err(_) => Some(message.content.unwrap_or_default()),
    };
    Parsed {
        analysis,
        usage,
        content_chars,
        content,
    }
}

/// Checks a content JSON against the result schema.
///
/// The satisfaction label is derived from its score (the score is the
/// fact; a mismatched label is a slip we need not pay to retry). Scores a
/// hair outside their range (float noise) are clamped; clearly out of range
/// is a violation. A summary over 200 characters is shortened.
pub fn validate(json: &str, analyzer: &str, model: &str) -> Result<Analysis, ReplyError> {
    let c: Content = serde_json::from_str(json).map_err(|e| {
        // serde quotes the offending value: keep the message short.
        let text = truncate_chars(&e.to_string(), 200);
        if e.is_data() {
            ReplyError::Schema(text)
        } else {
            ReplyError::Json(text)
        }
    })?;
    const SLACK: f64 = 1e-6;
    let s = c.sentiment.score;
    if !s.is_finite() || !(-1.0 - SLACK..=1.0 + SLACK).contains(&s) {
        return Err(ReplyError::Schema(format!(
            "sentiment.score {s} is outside -1..1"
        )));
    }
    let sat = c.satisfaction.score;
    if sat.fract() != 0.0 || !(1.0..=5.0).contains(&sat) {
        return Err(ReplyError::Schema(format!(
            "satisfaction.score {sat} is not an integer 1..5"
        )));
    }
    let sat = sat as u8;
    if c.summary.trim().is_empty() {
        return Err(ReplyError::Schema("summary is empty".into()));
    }
    Ok(Analysis {
        sentiment: Sentiment {
            label: c.sentiment.label,
            score: s.clamp(-1.0, 1.0),
        },
        satisfaction: Satisfaction {
            score: sat,
            label: SatisfactionLabel::from_score(sat),
        },
        resolved: c.resolved,
        summary: truncate_chars(c.summary.trim(), SUMMARY_MAX_CHARS),
        analyzer: analyzer.to_string(),
        model: model.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"sentiment":{"label":"negative","score":-0.6},"satisfaction":{"score":2,"label":"dissatisfied"},"resolved":false,"summary":"Outage not fixed."}"#;

    fn body(content: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "choices": [{"message": {"content": content, "refusal": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30}
        }))
        .unwrap()
    }

    #[test]
    fn a_good_reply_and_its_usage() {
        let p = parse(&body(GOOD), "openai", "gpt-4o");
        let a = p.analysis.unwrap();
        assert_eq!(a.sentiment.label, SentimentLabel::Negative);
        assert_eq!(a.satisfaction.score, 2);
        assert_eq!(a.resolved, Some(false));
        assert_eq!(a.model, "gpt-4o");
        assert_eq!(
            p.usage,
            Some(Usage {
                prompt_tokens: 120,
                completion_tokens: 30
            })
        );
    }

    #[test]
    fn fenced_replies_are_accepted() {
        for fenced in [
            format!("```json\n{GOOD}\n```"),
            format!("```\n{GOOD}```"),
            format!("  {GOOD}  "),
        ] {
            assert!(
                parse(&body(&fenced), "openai", "m").analysis.is_ok(),
                "{fenced}"
            );
        }
    }

    #[test]
    fn each_violation_is_named() {
        let cases = [
            (
                r#"{"sentiment":{"label":"meh","score":0},"satisfaction":{"score":3,"label":"neutral"},"resolved":null,"summary":"x"}"#,
                "schema",
            ),
            (
                r#"{"sentiment":{"label":"neutral","score":3.0},"satisfaction":{"score":3,"label":"neutral"},"resolved":null,"summary":"x"}"#,
                "outside",
            ),
            (
                r#"{"sentiment":{"label":"neutral","score":0},"satisfaction":{"score":3.5,"label":"neutral"},"resolved":null,"summary":"x"}"#,
                "integer",
            ),
            (
                r#"{"sentiment":{"label":"neutral","score":0},"satisfaction":{"score":9,"label":"neutral"},"resolved":null,"summary":"x"}"#,
                "integer",
            ),
            (
                r#"{"sentiment":{"label":"neutral","score":0},"resolved":null,"summary":"x"}"#,
                "schema",
            ),
            (
                r#"{"sentiment":{"label":"neutral","score":0},"satisfaction":{"score":3,"label":"neutral"},"resolved":null,"summary":" "}"#,
                "empty",
            ),
            (r#"{"sentiment": "#, "invalid JSON"),
            ("I think the customer is happy", "invalid JSON"),
        ];
        for (content, expected) in cases {
            let err = parse(&body(content), "openai", "m").analysis.unwrap_err();
            assert!(err.to_string().contains(expected), "{content}: {err}");
        }
    }

    #[test]
    fn refusals_truncation_and_garbage_bodies() {
        let refusal = serde_json::to_vec(&serde_json::json!({
            "choices": [{"message": {"content": null, "refusal": "I can't help with that"}, "finish_reason": "stop"}]
        }))
        .unwrap();
        assert!(matches!(
            parse(&refusal, "o", "m").analysis,
            Err(ReplyError::Refused(_))
        ));
        let cut = serde_json::to_vec(&serde_json::json!({
            "choices": [{"message": {"content": "{\"sentiment\":"}, "finish_reason": "length"}]
        }))
        .unwrap();
        assert_eq!(
            parse(&cut, "o", "m").analysis.unwrap_err(),
            ReplyError::Truncated
        );
        let half = &body(GOOD)[..40];
        assert!(matches!(
            parse(half, "o", "m").analysis,
            Err(ReplyError::Body(_))
        ));
        assert!(matches!(
            parse(b"{\"choices\":[]}", "o", "m").analysis,
            Err(ReplyError::Empty)
        ));
    }

    #[test]
    fn noise_is_clamped_labels_derived_summaries_shortened() {
        let content = format!(
            r#"{{"sentiment":{{"label":"positive","score":1.0000001}},"satisfaction":{{"score":4,"label":"dissatisfied"}},"resolved":true,"summary":"{}"}}"#,
            "x".repeat(300)
        );
        let a = validate(&content, "o", "m").unwrap();
        assert_eq!(a.sentiment.score, 1.0);
        assert_eq!(a.satisfaction.label, SatisfactionLabel::Satisfied);
        assert_eq!(a.summary.chars().count(), SUMMARY_MAX_CHARS);
    }
}
