//! What analysing an export with the LLM would cost, before anything is
//! sent: the conversations that would go out after dedupe, their tokens as
//! the provider's rate limiter counts them and as it bills them, the cost
//! in sync and in batch mode, and the time the rate limits allow.
//!
//! Two steps, so the processed-content index can be asked in between by
//! whoever holds the store: [`Draft::from_rows`] reads the export (keeping
//! per conversation only its messages until the file ends, then only its
//! key and token counts), [`Draft::finish`] takes which keys the index
//! already holds.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::openai::OpenAiAnalyzer;
use super::openai::limits::LimitSource;
use super::{Analyzer, LlmUsage};
use crate::ingest::{IngestError, Row};
use crate::model::Conversation;
use crate::privacy::Counts;

/// Completion tokens a typical reply takes (the JSON skeleton, ~20 tokens,
/// and a 15-word summary); the most a reply may take is its budget.
pub const TYPICAL_REPLY_TOKENS: u64 = 40;

/// An export read, its conversations reduced to keys and token counts.
#[derive(Debug)]
pub struct Draft {
    file: String,
    conversations: u64,
    messages: u64,
    autoresponses: u64,
    /// Conversations with nothing for an LLM to read (answered locally).
    without_customer_text: u64,
    duplicates_in_file: u64,
    /// Each distinct conversation to send: its key, what it takes, and
    /// what would be redacted from it.
    unique: Vec<([u8; 32], Tokens, Counts)>,
    warnings: u64,
}

/// One request's (or one conversation's share of a packed request's)
/// tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// As the rate limiter counts them: prompt characters / 4 + the reply budget.
    pub rate_limit: u64,
    /// Prompt tokens billed.
    pub prompt: u64,
    /// The reply budget: the most the completion can bill.
    pub reply_max: u64,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Estimate {
    pub file: String,
    pub model: String,
    pub conversations: u64,
    pub messages: u64,
    pub autoresponses: u64,
    /// Conversations answered locally: no customer text to send.
    pub without_customer_text: u64,
    /// Identical to an earlier conversation of the same file: sent once.
    pub duplicates_in_file: u64,
    /// Already analysed by an earlier upload (the processed-content index).
    pub already_processed: u64,
    /// Whether the processed-content index could be asked (not when
    /// another process holds the database).
    pub checked_processed: bool,
    /// What would be sent.
    pub conversations_to_send: u64,
    pub requests: u64,
    pub conversations_per_request: u32,
    pub rate_limit_tokens: u64,
    pub prompt_tokens: u64,
    /// A typical reply's tokens × requests.
    pub completion_tokens_expected: u64,
    /// Every reply using its whole budget.
    pub completion_tokens_max: u64,
    /// `None` when the model has no price (a local server's).
    pub cost_usd: Option<CostRange>,
    pub batch_cost_usd: Option<CostRange>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// Where those limits come from: `configured`, `announced` (by the
    /// provider, to a running server), `starting` (`auto`, before the
    /// provider said anything: tier-1 values), or `unlimited`.
    pub limits_source: String,
    /// The least time the rate limits allow (requests or tokens, whichever
    /// binds); `None` while the limits are `auto` (the provider announces
    /// them on the first call).
    pub time_bound_seconds: Option<f64>,
    /// `analyzer.openai.max_cost_usd`, when set.
    pub budget_usd: Option<f64>,
    pub warnings: u64,
    /// What would be redacted from the conversations to send.
    #[serde(default)]
    pub redaction: RedactionEstimate,
}

/// What `[privacy]` would take out of the text sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RedactionEstimate {
    /// Whether transcripts are redacted (`privacy.redact`, against the
    /// analyzer's base URL).
    pub enabled: bool,
    /// The policy's fingerprint (`redact-1-…`), when enabled.
    pub policy: Option<String>,
    /// Values that would be replaced, by kind (`phone`, `email`, `name`,
    /// …, and the operator patterns' names); kinds with none left out.
    pub values: std::collections::BTreeMap<String, u64>,
    /// Conversations with at least one value replaced.
    pub conversations: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CostRange {
    /// With typical replies.
    pub expected: f64,
    /// Every reply at its budget.
    pub max: f64,
}

impl Draft {
    /// Reads an export's rows. Conversations are keyed as the pipeline keys
    /// them (messages in timestamp order, the analyzer's fingerprint).
    pub fn from_rows(
        file: &str,
        rows: impl IntoIterator<Item = Result<Row, IngestError>>,
        analyzer: &OpenAiAnalyzer,
    ) -> Result<Self, IngestError> {
        let mut by_id: HashMap<String, Conversation> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut draft = Draft {
            file: file.to_string(),
            conversations: 0,
            messages: 0,
            autoresponses: 0,
            without_customer_text: 0,
            duplicates_in_file: 0,
            unique: Vec::new(),
            warnings: 0,
        };
        for row in rows {
            match row? {
                Row::Warning(_) => draft.warnings += 1,
                Row::Message(m) => {
                    draft.messages += 1;
                    draft.autoresponses += u64::from(m.message.autoresponse);
                    let conversation = by_id.entry(m.conversation_id).or_insert_with_key(|id| {
                        order.push(id.clone());
                        Conversation {
                            id: id.clone(),
                            messages: Vec::new(),
                        }
                    });
                    conversation.messages.push(m.message);
                }
            }
        }
        let keyed = Analyzer::OpenAi(analyzer.clone());
        let mut seen = HashSet::new();
        let mut to_send = Vec::new();
        for id in order {
            let Some(mut conversation) = by_id.remove(&id) else {
                continue;
            };
            draft.conversations += 1;
            conversation.sort_messages();
            if conversation.customer_messages() == 0 {
                draft.without_customer_text += 1;
                continue;
            }
            let key = keyed.content_key(&conversation);
            if !seen.insert(key) {
                draft.duplicates_in_file += 1;
                continue;
            }
            to_send.push((key, conversation));
        }
        let tokens = analyzer.estimate_tokens(to_send.iter().map(|(_, c)| c));
        draft.unique = to_send
            .into_iter()
            .zip(tokens)
            .map(|((key, _), (tokens, counts))| (key, tokens, counts))
            .collect();
        Ok(draft)
    }

    /// The keys to ask the processed-content index about.
    pub fn keys(&self) -> Vec<[u8; 32]> {
        self.unique.iter().map(|(k, _, _)| *k).collect()
    }

    /// The estimate, given which of [`Self::keys`] are already processed
    /// (`None`: the index could not be asked).
    pub fn finish(self, processed: Option<&[bool]>, analyzer: &OpenAiAnalyzer) -> Estimate {
        let per_request = analyzer.conversations_per_request();
        let mut already = 0;
        let mut sum = Tokens::default();
        let mut sent = 0u64;
        let mut redacted = Counts::default();
        let mut redacted_conversations = 0;
        for (i, (_, t, counts)) in self.unique.iter().enumerate() {
            if processed.and_then(|p| p.get(i)).copied().unwrap_or(false) {
                already += 1;
                continue;
            }
            sent += 1;
            redacted.add(counts);
            redacted_conversations += u64::from(!counts.is_empty());
            sum.rate_limit += t.rate_limit;
            sum.prompt += t.prompt;
            sum.reply_max += t.reply_max;
        }
        let requests = sent.div_ceil(u64::from(per_request));
        let expected_completion = requests * TYPICAL_REPLY_TOKENS * u64::from(per_request);
        let expected_completion = expected_completion.min(sum.reply_max);
        let cost = |completion: u64, batch: bool| {
            analyzer.price().map(|p| {
                let usage = LlmUsage {
                    prompt_tokens: sum.prompt,
                    completion_tokens: completion,
                    ..LlmUsage::default()
                };
                p.cost(&usage, batch)
            })
        };
        let range = |batch: bool| {
            Some(CostRange {
                expected: cost(expected_completion, batch)?,
                max: cost(sum.reply_max, batch)?,
            })
        };
        let limits = analyzer.limits();
        let minutes = |amount: u64, per_minute: Option<u32>| {
            per_minute.map(|pm| amount as f64 / f64::from(pm.max(1)) * 60.0)
        };
        let time_bound_seconds = match (
            minutes(requests, limits.requests_per_minute),
            minutes(sum.rate_limit, limits.tokens_per_minute),
        ) {
            (Some(r), Some(t)) => Some(r.max(t)),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        };
        Estimate {
            file: self.file,
            model: analyzer.model().to_string(),
            conversations: self.conversations,
            messages: self.messages,
            autoresponses: self.autoresponses,
            without_customer_text: self.without_customer_text,
            duplicates_in_file: self.duplicates_in_file,
            already_processed: already,
            checked_processed: processed.is_some(),
            conversations_to_send: sent,
            requests,
            conversations_per_request: per_request,
            rate_limit_tokens: sum.rate_limit,
            prompt_tokens: sum.prompt,
            completion_tokens_expected: expected_completion,
            completion_tokens_max: sum.reply_max,
            cost_usd: range(false),
            batch_cost_usd: range(true),
            limits_source: source_name(least_certain(limits.requests_source, limits.tokens_source))
                .into(),
            requests_per_minute: limits.requests_per_minute,
            tokens_per_minute: limits.tokens_per_minute,
            time_bound_seconds,
            budget_usd: analyzer.budget_usd(),
            warnings: self.warnings,
            redaction: RedactionEstimate {
                enabled: analyzer.redactor().is_some(),
                policy: analyzer.redactor().map(|r| r.fingerprint().to_string()),
                values: analyzer
                    .redactor()
                    .map(|r| r.named_counts(&redacted).into_iter().collect())
                    .unwrap_or_default(),
                conversations: redacted_conversations,
            },
        }
    }
}

/// Of the two limits' sources, the one that makes the bound least certain.
fn least_certain(a: LimitSource, b: LimitSource) -> LimitSource {
    let rank = |s: LimitSource| match s {
        LimitSource::Configured => 0,
        LimitSource::Announced => 1,
        LimitSource::Unlimited => 2,
        LimitSource::Starting => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}

fn source_name(source: LimitSource) -> &'static str {
    match source {
        LimitSource::Configured => "configured",
        LimitSource::Starting => "starting",
        LimitSource::Announced => "announced",
        LimitSource::Unlimited => "unlimited",
    }
}

impl Estimate {
    /// The estimate for people: one fact per line.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} conversations, {} messages ({} autoresponses)",
            self.file, self.conversations, self.messages, self.autoresponses
        );
        let processed = if self.checked_processed {
            format!("{} already analysed", self.already_processed)
        } else {
            "the processed index could not be read (the database is in use)".to_string()
        };
        let _ = writeln!(
            out,
            "  to send to {}: {} conversations in {} requests ({} without customer text, {} duplicates in the file, {processed})",
            self.model,
            self.conversations_to_send,
            self.requests,
            self.without_customer_text,
            self.duplicates_in_file,
        );
        let _ = writeln!(
            out,
            "  tokens: {} rate-limit, {} prompt, {} completion expected (at most {})",
            self.rate_limit_tokens,
            self.prompt_tokens,
            self.completion_tokens_expected,
            self.completion_tokens_max
        );
        match (self.cost_usd, self.batch_cost_usd) {
            (Some(sync), Some(batch)) => {
                let _ = writeln!(
                    out,
                    "  cost: ${:.4} sync (at most ${:.4}), ${:.4} batch (at most ${:.4})",
                    sync.expected, sync.max, batch.expected, batch.max
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  cost: unknown (no price for {}: add [analyzer.openai.prices.\"{}\"])",
                    self.model, self.model
                );
            }
        }
        let r = &self.redaction;
        if r.enabled {
            let values = if r.values.is_empty() {
                "nothing found".to_string()
            } else {
                r.values
                    .iter()
                    .map(|(kind, n)| format!("{n} {kind}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "  redacted before sending: {values} (in {} conversations; policy {})",
                r.conversations,
                r.policy.as_deref().unwrap_or("?")
            );
        } else {
            let _ = writeln!(
                out,
                "  redaction: off, transcripts are sent as written (privacy.redact; \"auto\" \
                 redacts unless the server is on this machine)"
            );
        }
        if let Some(budget) = self.budget_usd {
            let _ = writeln!(out, "  budget: ${budget:.4} per upload (max_cost_usd)");
        }
        match self.time_bound_seconds {
            Some(s) => {
                let source = match self.limits_source.as_str() {
                    "starting" => {
                        " (auto: the starting limits, until the provider announces its own)"
                    }
                    "announced" => " (as the provider announced them)",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "  time: at least {:.1} min at {} requests / {} tokens per minute{source}",
                    s / 60.0,
                    self.requests_per_minute
                        .map_or("unlimited".into(), |n| n.to_string()),
                    self.tokens_per_minute
                        .map_or("unlimited".into(), |n| n.to_string()),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  time: unknown until the provider announces its limits (set \
                     analyzer.openai.requests_per_minute and tokens_per_minute for a bound)"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::openai::models::BATCH_PRICE_FACTOR;
    use super::*;
    use crate::config::{OpenAiSettings, RateSetting};
    use crate::ingest::MessageRow;
    use crate::model::{Message, Role};

    fn row(conversation: &str, role: Role, text: &str) -> Result<Row, IngestError> {
        Ok(Row::Message(MessageRow {
            line: 1,
            conversation_id: conversation.into(),
            message: Message {
                role,
                text: text.into(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: role == Role::Bot,
            },
        }))
    }

    fn analyzer(per_request: u32) -> OpenAiAnalyzer {
        let settings = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            requests_per_minute: RateSetting::PerMinute(60),
            tokens_per_minute: RateSetting::PerMinute(6_000),
            conversations_per_request: per_request,
            max_cost_usd: Some(5.0),
            ..OpenAiSettings::default()
        };
        OpenAiAnalyzer::new(&settings, "k".to_string().into()).unwrap()
    }

    fn rows() -> Vec<Result<Row, IngestError>> {
        vec![
            row("a", Role::Bot, "Welcome, dial *977#"),
            row("a", Role::Customer, "no power since morning"),
            row("b", Role::Customer, "no power since morning"),
            row("c", Role::Bot, "Welcome"),
            row("d", Role::Customer, "my bill is wrong"),
            row("a", Role::Agent, "a crew is on the way"),
        ]
    }

    #[test]
    fn counts_what_would_be_sent_after_dedupe() {
        let a = analyzer(1);
        let draft = Draft::from_rows("x.csv", rows(), &a).unwrap();
        assert_eq!(draft.keys().len(), 3, "a, b and d are distinct content");
        // `d` was analysed by an earlier upload.
        let e = draft.finish(Some(&[false, false, true]), &a);
        assert_eq!(e.conversations, 4);
        assert_eq!(e.messages, 6);
        assert_eq!(e.autoresponses, 2);
        assert_eq!(e.without_customer_text, 1);
        assert_eq!(e.duplicates_in_file, 0);
        assert_eq!(e.already_processed, 1);
        assert_eq!(e.conversations_to_send, 2);
        assert_eq!(e.requests, 2);
        let one = a.estimate_tokens([&Conversation {
            id: "b".into(),
            messages: vec![Message {
                role: Role::Customer,
                text: "no power since morning".into(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: false,
            }],
        }])[0]
            .0;
        assert!(e.rate_limit_tokens > 2 * one.rate_limit - 1);
        assert_eq!(e.completion_tokens_max, 2 * 64);
        let cost = e.cost_usd.unwrap();
        assert!(cost.expected > 0.0 && cost.expected <= cost.max);
        let batch = e.batch_cost_usd.unwrap();
        assert!((batch.max - cost.max * BATCH_PRICE_FACTOR).abs() < 1e-12);
        // 2 requests at 60/min, or the tokens at 6,000/min: whichever binds.
        let bound = e.time_bound_seconds.unwrap();
        assert!(
            (bound - (2.0f64).max(e.rate_limit_tokens as f64 / 100.0)).abs() < 1e-9,
            "{bound}"
        );
        assert_eq!(e.budget_usd, Some(5.0));
        let text = e.render();
        assert!(text.contains("2 conversations in 2 requests"), "{text}");
        assert!(text.contains("batch"), "{text}");
    }

    #[test]
    fn what_would_be_redacted_is_counted_per_kind() {
        let a = analyzer(1)
            .with_privacy(&crate::config::PrivacySettings {
                redact: crate::config::RedactMode::On,
                ..Default::default()
            })
            .unwrap();
        let mut rows = rows();
        rows.push(row(
            "f",
            Role::Customer,
            "call 9841234567 or 01-4412345, a@b.com",
        ));
        rows.push(row("g", Role::Customer, "SC no 484.91.181, Rs. 5,998 paid"));
        let e = Draft::from_rows("x.csv", rows, &a)
            .unwrap()
            .finish(None, &a);
        assert!(e.redaction.enabled);
        assert_eq!(e.redaction.conversations, 2);
        let values: Vec<(&str, u64)> = e
            .redaction
            .values
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(values, [("email", 1), ("id", 1), ("phone", 2)]);
        assert!(
            e.render()
                .contains("redacted before sending: 1 email, 1 id, 2 phone")
        );
        // Off (a local server, `auto`): nothing is counted, and it says so.
        let plain = analyzer(1);
        let e = Draft::from_rows("x.csv", rows_with_phone(), &plain)
            .unwrap()
            .finish(None, &plain);
        assert!(!e.redaction.enabled && e.redaction.values.is_empty());
        assert!(e.render().contains("redaction: off"));
    }

    fn rows_with_phone() -> Vec<Result<Row, IngestError>> {
        vec![row("f", Role::Customer, "call 9841234567")]
    }

    #[test]
    fn identical_conversations_in_one_file_are_sent_once() {
        let a = analyzer(1);
        let mut rows = rows();
        rows.push(row("e", Role::Customer, "my bill is wrong"));
        let e = Draft::from_rows("x.csv", rows, &a)
            .unwrap()
            .finish(None, &a);
        assert_eq!(e.duplicates_in_file, 1);
        assert_eq!(e.conversations_to_send, 3);
        assert!(!e.checked_processed);
        assert!(e.render().contains("could not be read"));
    }

    #[test]
    fn packed_requests_share_the_prompt() {
        let (one, five) = (analyzer(1), analyzer(5));
        let e1 = Draft::from_rows("x.csv", rows(), &one)
            .unwrap()
            .finish(None, &one);
        let e5 = Draft::from_rows("x.csv", rows(), &five)
            .unwrap()
            .finish(None, &five);
        assert_eq!(e5.requests, 1);
        assert!(e5.prompt_tokens < e1.prompt_tokens, "{e5:?} {e1:?}");
    }
}
