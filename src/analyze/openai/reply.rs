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
    #[serde(default)]
    pub prompt_tokens_details: PromptDetails,
    #[serde(default)]
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct PromptDetails {
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct CompletionDetails {
    /// Hidden reasoning tokens (included in `completion_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// One result as the schema describes it; numbers are read loosely and
/// checked by hand so the error says what was wrong.
#[derive(Deserialize)]
struct Content {
    sentiment: f64,
    satisfaction: f64,
    resolved: Option<bool>,
    summary: String,
    /// One of the configured topics (the schema's enum).
    #[serde(default)]
    topic: Option<String>,
}

/// What a reply body held: its content read as `T` (or why not) and the
/// usage to bill.
pub struct Parsed<T> {
    pub analysis: Result<T, ReplyError>,
    pub usage: Option<Usage>,
    /// Characters of the content, to estimate completion tokens without `usage`.
    pub content_chars: usize,
    /// The content itself when it was not valid, to quote back in a re-ask.
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

/// Reads a chat-completions body; `read` turns its content (fence
/// stripped) into `T`.
pub fn parse<T>(body: &[u8], read: impl FnOnce(&str) -> Result<T, ReplyError>) -> Parsed<T> {
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
        read(strip_fence(content))
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

/// A JSON error as a [`ReplyError`]: a value of the wrong shape is a schema
/// violation, anything else is not JSON.
fn json_error(e: serde_json::Error) -> ReplyError {
    // serde quotes the offending value: keep the message short.
    let text = truncate_chars(&e.to_string(), 200);
    if e.is_data() {
        ReplyError::Schema(text)
    } else {
        ReplyError::Json(text)
    }
}

/// Checks a content JSON against the result schema.
///
/// Labels are derived from the scores (the scores are the facts; asking for
/// labels too would cost tokens and invite contradictions). Scores a hair
/// outside their range (float noise) are clamped; clearly out of range is a
/// violation. A summary over 200 characters is shortened.
///
/// With `topics`, the reply must name one of them (a server without strict
/// structured output may answer anything): else it is a violation, re-asked.
pub fn validate(
    json: &str,
    analyzer: &str,
    model: &str,
    topics: &[String],
) -> Result<Analysis, ReplyError> {
    let c: Content = serde_json::from_str(json).map_err(json_error)?;
    analysis(c, analyzer, model, topics)
}

fn analysis(
    c: Content,
    analyzer: &str,
    model: &str,
    topics: &[String],
) -> Result<Analysis, ReplyError> {
    const SLACK: f64 = 1e-6;
    let s = c.sentiment;
    if !s.is_finite() || !(-1.0 - SLACK..=1.0 + SLACK).contains(&s) {
        return Err(ReplyError::Schema(format!(
            "sentiment {s} is outside -1..1"
        )));
    }
    let sat = c.satisfaction;
    if sat.fract() != 0.0 || !(1.0..=5.0).contains(&sat) {
        return Err(ReplyError::Schema(format!(
            "satisfaction {sat} is not an integer 1..5"
        )));
    }
    let sat = sat as u8;
    if c.summary.trim().is_empty() {
        return Err(ReplyError::Schema("summary is empty".into()));
    }
    let topic = c.topic.map(|t| t.trim().to_string());
    if !topics.is_empty() && !topic.as_ref().is_some_and(|t| topics.contains(t)) {
        return Err(ReplyError::Schema(format!(
            "topic {} is not one of {}",
            topic.map_or_else(|| "is missing: it".to_string(), |t| format!("{t:?}")),
            topics.join(", ")
        )));
    }
    let score = s.clamp(-1.0, 1.0);
    Ok(Analysis {
        sentiment: Sentiment {
            label: SentimentLabel::from_llm_score(score),
            score,
        },
        satisfaction: Satisfaction {
            score: sat,
            label: SatisfactionLabel::from_score(sat),
        },
        resolved: c.resolved,
        summary: truncate_chars(c.summary.trim(), SUMMARY_MAX_CHARS),
        analyzer: analyzer.to_string(),
        model: model.to_string(),
        topic: topic.filter(|t| !t.is_empty()),
    })
}

/// A packed reply's results, by position in the request: `None` where the
/// reply gave no result for that chat (or gave it twice, or an invalid one:
/// that chat is asked again on its own).
#[derive(Debug)]
pub struct PackedResults {
    pub results: Vec<Result<Analysis, ReplyError>>,
    /// Results naming a ref the request did not have.
    pub unknown: usize,
}

#[derive(Deserialize)]
struct PackedContent {
    results: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Ref {
    #[serde(rename = "ref")]
    reference: serde_json::Value,
}

/// Checks a packed reply of `count` chats. The reply as a whole fails only
/// when it is not `{"results": [...]}`; each result stands on its own.
pub fn validate_packed(
    json: &str,
    count: usize,
    analyzer: &str,
    model: &str,
    topics: &[String],
) -> Result<PackedResults, ReplyError> {
    let packed: PackedContent = serde_json::from_str(json).map_err(json_error)?;
    let mut results: Vec<Result<Analysis, ReplyError>> = (0..count)
        .map(|i| Err(ReplyError::Schema(format!("no result for ref {}", i + 1))))
        .collect();
    let mut seen = vec![0u32; count];
    let mut unknown = 0;
    for item in packed.results {
        let index = serde_json::from_value::<Ref>(item.clone())
            .ok()
            .and_then(|r| r.reference.as_f64())
            .filter(|r| r.fract() == 0.0 && *r >= 1.0 && *r <= count as f64)
            .map(|r| r as usize - 1);
        let Some(index) = index else {
            unknown += 1;
            continue;
        };
        seen[index] += 1;
        results[index] = if seen[index] > 1 {
            Err(ReplyError::Schema(format!(
                "ref {} answered twice",
                index + 1
            )))
        } else {
            serde_json::from_value::<Content>(item)
                .map_err(json_error)
                .and_then(|c| analysis(c, analyzer, model, topics))
        };
    }
    Ok(PackedResults { results, unknown })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"sentiment":-0.6,"satisfaction":2,"resolved":false,"summary":"Outage not fixed."}"#;

    fn read(content: &str) -> Result<Analysis, ReplyError> {
        validate(content, "openai", "gpt-4o", &[])
    }

    fn body(content: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "choices": [{"message": {"content": content, "refusal": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30}
        }))
        .unwrap()
    }

    #[test]
    fn a_good_reply_and_its_usage() {
        let p = parse(&body(GOOD), read);
        let a = p.analysis.unwrap();
        assert_eq!(a.sentiment.label, SentimentLabel::Negative);
        assert_eq!(a.satisfaction.score, 2);
        assert_eq!(a.resolved, Some(false));
        assert_eq!(a.model, "gpt-4o");
        assert_eq!(
            p.usage,
            Some(Usage {
                prompt_tokens: 120,
                completion_tokens: 30,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn the_topic_must_be_one_of_the_list() {
        let topics = ["outage".to_string(), "billing".to_string()];
        let with = |topic: &str| {
            format!(
                r#"{{"sentiment":0.5,"satisfaction":4,"resolved":true,"summary":"Fixed.","topic":{topic}}}"#
            )
        };
        let a = validate(&with("\"billing\""), "o", "m", &topics).unwrap();
        assert_eq!(a.topic.as_deref(), Some("billing"));
        let e = validate(&with("\"tariffs\""), "o", "m", &topics).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"tariffs\" is not one of outage, billing"),
            "{e}"
        );
        let e = validate(GOOD, "o", "m", &topics).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(
            validate(GOOD, "o", "m", &[]).unwrap().topic,
            None,
            "no list, no check"
        );
    }

    #[test]
    fn fenced_replies_are_accepted() {
        for fenced in [
            format!("```json\n{GOOD}\n```"),
            format!("```\n{GOOD}```"),
            format!("  {GOOD}  "),
        ] {
            assert!(parse(&body(&fenced), read).analysis.is_ok(), "{fenced}");
        }
    }

    #[test]
    fn each_violation_is_named() {
        let cases = [
            (
                r#"{"sentiment":"meh","satisfaction":3,"resolved":null,"summary":"x"}"#,
                "schema",
            ),
            (
                r#"{"sentiment":3.0,"satisfaction":3,"resolved":null,"summary":"x"}"#,
                "outside",
            ),
            (
                r#"{"sentiment":0,"satisfaction":3.5,"resolved":null,"summary":"x"}"#,
                "integer",
            ),
            (
                r#"{"sentiment":0,"satisfaction":9,"resolved":null,"summary":"x"}"#,
                "integer",
            ),
            (r#"{"sentiment":0,"resolved":null,"summary":"x"}"#, "schema"),
            (
                r#"{"sentiment":0,"satisfaction":3,"resolved":null,"summary":" "}"#,
                "empty",
            ),
            (r#"{"sentiment": "#, "invalid JSON"),
            ("I think the customer is happy", "invalid JSON"),
        ];
        for (content, expected) in cases {
            let err = parse(&body(content), read).analysis.unwrap_err();
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
            parse(&refusal, read).analysis,
            Err(ReplyError::Refused(_))
        ));
        let cut = serde_json::to_vec(&serde_json::json!({
            "choices": [{"message": {"content": "{\"sentiment\":"}, "finish_reason": "length"}]
        }))
        .unwrap();
        assert_eq!(
            parse(&cut, read).analysis.unwrap_err(),
            ReplyError::Truncated
        );
        let half = &body(GOOD)[..40];
        assert!(matches!(
            parse(half, read).analysis,
            Err(ReplyError::Body(_))
        ));
        assert!(matches!(
            parse(b"{\"choices\":[]}", read).analysis,
            Err(ReplyError::Empty)
        ));
    }

    #[test]
    fn noise_is_clamped_labels_derived_summaries_shortened() {
        let content = format!(
            r#"{{"sentiment":1.0000001,"satisfaction":4,"resolved":true,"summary":"{}"}}"#,
            "x".repeat(300)
        );
        let a = validate(&content, "o", "m", &[]).unwrap();
        assert_eq!(a.sentiment.score, 1.0);
        assert_eq!(a.sentiment.label, SentimentLabel::Positive);
        assert_eq!(a.satisfaction.label, SatisfactionLabel::Satisfied);
        assert_eq!(a.summary.chars().count(), SUMMARY_MAX_CHARS);
        for (score, label) in [
            (0.19, SentimentLabel::Neutral),
            (-0.19, SentimentLabel::Neutral),
            (0.2, SentimentLabel::Positive),
            (-0.2, SentimentLabel::Negative),
        ] {
            let content = format!(
                r#"{{"sentiment":{score},"satisfaction":3,"resolved":null,"summary":"s"}}"#
            );
            assert_eq!(
                validate(&content, "o", "m", &[]).unwrap().sentiment.label,
                label
            );
        }
    }

    #[test]
    fn cached_and_reasoning_tokens_are_read() {
        let body = serde_json::to_vec(&serde_json::json!({
            "choices": [{"message": {"content": GOOD}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2000, "completion_tokens": 300,
                "prompt_tokens_details": {"cached_tokens": 1536},
                "completion_tokens_details": {"reasoning_tokens": 256}}
        }))
        .unwrap();
        let usage = parse(&body, read).usage.unwrap();
        assert_eq!(usage.prompt_tokens_details.cached_tokens, 1536);
        assert_eq!(usage.completion_tokens_details.reasoning_tokens, 256);
    }

    #[test]
    fn packed_replies_map_back_by_ref() {
        let item = |r: serde_json::Value, sentiment: f64| {
            serde_json::json!({"ref": r, "sentiment": sentiment, "satisfaction": 3,
                "resolved": null, "summary": "s"})
        };
        let reply = serde_json::json!({"results": [
            item(2.into(), 0.5),
            item(1.into(), -0.5),
            item(4.into(), 0.0),
            item(2.into(), 0.1),
            item("x".into(), 0.0),
            {"ref": 3, "sentiment": 7, "satisfaction": 3, "resolved": null, "summary": "s"},
        ]});
        let packed = validate_packed(&reply.to_string(), 5, "o", "m", &[]).unwrap();
        assert_eq!(packed.results.len(), 5);
        assert_eq!(packed.results[0].as_ref().unwrap().sentiment.score, -0.5);
        assert!(
            packed.results[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(
            packed.results[2]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
        assert_eq!(packed.results[3].as_ref().unwrap().sentiment.score, 0.0);
        assert!(
            packed.results[4]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("no result")
        );
        assert_eq!(packed.unknown, 1);
        assert!(matches!(
            validate_packed("[1,2]", 2, "o", "m", &[]),
            Err(ReplyError::Schema(_))
        ));
    }
}
