//! Analyzers: turn one conversation into one [`Analysis`].
//!
//! Plain code, no actix: [`lexicon`] is the embedded offline analyzer and
//! [`openai`] the LLM one. [`Analyzer`] picks between them by configuration;
//! the `AnalyzerActor` pool (in [`actor`]) is thin wiring over it.

pub mod actor;
pub mod estimate;
pub mod lexicon;
pub mod openai;
pub mod topics;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{AnalyzerSettings, Backend, PrivacySettings, TopicSettings};
use crate::model::{Analysis, Conversation};
pub use lexicon::LexiconAnalyzer;
pub use openai::{OpenAiAnalyzer, OpenAiError};

/// Why one conversation failed, by kind: stored with it and counted in an
/// upload's summary (`failures_by_reason`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Not JSON, not the schema, or empty, after every re-ask.
    InvalidReply,
    /// The model declined to answer.
    Refused,
    /// Cut off by the token limit.
    Truncated,
    /// Rate limited more times than a conversation waits for.
    RateLimited,
    Timeout,
    /// The connection failed or the reply was cut off.
    Connection,
    /// 5xx, 408 or 409 after every retry.
    ServerError,
    /// Refused as a request (a 4xx other than the fatal ones).
    Rejected,
    /// A reply over `max_response_bytes`.
    ReplyTooLarge,
    /// A bug: the analyzer panicked.
    Internal,
    /// Stored by an older version, which kept only the message.
    Other,
}

impl FailureKind {
    /// A failure to get any answer (no reply, a 5xx, rate limits): the
    /// conversation itself was never judged, and a resumed upload tries it
    /// again.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureKind::Timeout
                | FailureKind::Connection
                | FailureKind::ServerError
                | FailureKind::RateLimited
        )
    }

    pub const ALL: [FailureKind; 11] = [
        FailureKind::InvalidReply,
        FailureKind::Refused,
        FailureKind::Truncated,
        FailureKind::RateLimited,
        FailureKind::Timeout,
        FailureKind::Connection,
        FailureKind::ServerError,
        FailureKind::Rejected,
        FailureKind::ReplyTooLarge,
        FailureKind::Internal,
        FailureKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidReply => "invalid_reply",
            FailureKind::Refused => "refused",
            FailureKind::Truncated => "truncated",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::ServerError => "server_error",
            FailureKind::Rejected => "rejected",
            FailureKind::ReplyTooLarge => "reply_too_large",
            FailureKind::Internal => "internal",
            FailureKind::Other => "other",
        }
    }
}

/// Why nothing more can succeed: the whole upload stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FatalKind {
    QuotaExhausted,
    KeyRejected,
    /// 404: a wrong base URL or model.
    NotFound,
    /// The provider redirected (never followed).
    Redirected,
    /// The engine is stopping.
    ShuttingDown,
    /// The next call could pass the upload's `analyzer.openai.max_cost_usd`.
    BudgetExhausted,
    /// The provider did not answer for `analyzer.outage_timeout_seconds`.
    ProviderUnavailable,
    /// The provider refused a Batch API request as it was made.
    Refused,
}

/// Why one conversation could not be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyzeError {
    /// This conversation failed (bad reply after retries, refusal, …); the
    /// upload goes on and the conversation is recorded as `failed`.
    #[error("{detail}")]
    Failed { kind: FailureKind, detail: String },
    /// Nothing more can succeed (quota exhausted, key rejected): the whole
    /// upload stops with this message.
    #[error("{detail}")]
    Fatal { kind: FatalKind, detail: String },
    /// The upload was cancelled while this conversation was in flight.
    #[error("cancelled")]
    Cancelled,
}

impl AnalyzeError {
    pub fn failed(kind: FailureKind, detail: impl Into<String>) -> Self {
        AnalyzeError::Failed {
            kind,
            detail: detail.into(),
        }
    }

    pub fn fatal(kind: FatalKind, detail: impl Into<String>) -> Self {
        AnalyzeError::Fatal {
            kind,
            detail: detail.into(),
        }
    }
}

/// What calling an LLM cost for one conversation (all zero for the lexicon).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LlmUsage {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens` (kept for API clients that want one number).
    #[serde(default)]
    pub tokens: u64,
    /// Prompt tokens the provider served from its prompt cache (part of
    /// `prompt_tokens`, billed at the cached price).
    #[serde(default)]
    pub cached_tokens: u64,
    /// A reasoning model's hidden tokens (part of `completion_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
}

impl LlmUsage {
    /// Adds the tokens one reply was billed for.
    pub fn bill(&mut self, prompt: u64, completion: u64) {
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.tokens += prompt + completion;
    }

    /// Shares one packed request's usage among `n` conversations: tokens
    /// evenly (the remainder to the first), cost in proportion, the request
    /// itself (with its retries and 429s) on the first, so the shares add up
    /// to exactly the whole.
    pub fn split(&self, n: usize) -> Vec<LlmUsage> {
        let n = n.max(1);
        let share = |total: u64, first: bool| {
            let each = total / n as u64;
            if first {
                total - each * (n as u64 - 1)
            } else {
                each
            }
        };
        (0..n)
            .map(|i| {
                let first = i == 0;
                let mut u = LlmUsage {
                    prompt_tokens: share(self.prompt_tokens, first),
                    completion_tokens: share(self.completion_tokens, first),
                    cached_tokens: share(self.cached_tokens, first),
                    reasoning_tokens: share(self.reasoning_tokens, first),
                    cost_usd: self.cost_usd / n as f64,
                    ..LlmUsage::default()
                };
                u.tokens = u.prompt_tokens + u.completion_tokens;
                if first {
                    u.requests = self.requests;
                    u.retries = self.retries;
                    u.rate_limited = self.rate_limited;
                }
                u
            })
            .collect()
    }

    pub fn add(&mut self, other: &LlmUsage) {
        self.tokens += other.tokens;
        self.requests += other.requests;
        self.retries += other.retries;
        self.rate_limited += other.rate_limited;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// The outcome of analysing one conversation: the analysis or why not, what
/// it cost, and the LLM endpoint that made it (its last attempt's).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<Analysis, AnalyzeError>,
    pub usage: LlmUsage,
    pub endpoint: Option<String>,
}

impl Outcome {
    /// An outcome no endpoint had a part in.
    pub fn local(result: Result<Analysis, AnalyzeError>) -> Self {
        Self {
            result,
            usage: LlmUsage::default(),
            endpoint: None,
        }
    }
}

/// Answers conversations with nothing for an LLM to read (built on first use).
static FALLBACK: std::sync::LazyLock<LexiconAnalyzer> =
    std::sync::LazyLock::new(LexiconAnalyzer::new);

/// The configured analyzer, shared by the whole AnalyzerActor pool.
#[derive(Clone)]
pub enum Analyzer {
    Lexicon(Arc<LexiconAnalyzer>),
    OpenAi(OpenAiAnalyzer),
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Analyzer({}, {})", self.name(), self.model())
    }
}

/// Why the configured analyzer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    OpenAi(#[from] OpenAiError),
}

impl Analyzer {
    /// Builds the analyzer the settings ask for, picking topics from
    /// `topics`, its transcripts redacted as `privacy` says. `auto` picks
    /// `openai` when the API key variable is set and non-empty, `lexicon`
    /// otherwise.
    pub fn from_settings(
        settings: &AnalyzerSettings,
        topics: &[TopicSettings],
        privacy: &PrivacySettings,
    ) -> Result<Self, SetupError> {
        let backend = match settings.backend {
            Backend::Auto => {
                // Every endpoint's key: an LLM half configured is an error, not the lexicon.
                let key_set = settings
                    .openai
                    .resolved_endpoints()
                    .iter()
                    .any(|e| std::env::var(&e.api_key_env).is_ok_and(|k| !k.trim().is_empty()));
                if key_set {
                    Backend::OpenAi
                } else {
                    Backend::Lexicon
                }
            }
            explicit => explicit,
        };
        Ok(match backend {
            Backend::OpenAi => Analyzer::OpenAi(
                OpenAiAnalyzer::from_settings(settings, topics)?.with_privacy(privacy)?,
            ),
            _ => Analyzer::Lexicon(Arc::new(LexiconAnalyzer::with_topics(Arc::new(
                topics::Topics::new(topics),
            )))),
        })
    }

    pub fn lexicon() -> Self {
        Analyzer::Lexicon(Arc::new(LexiconAnalyzer::new()))
    }

    /// Whether a call costs money (and so must never be repeated needlessly).
    pub fn is_costly(&self) -> bool {
        matches!(self, Analyzer::OpenAi(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Analyzer::Lexicon(_) => LexiconAnalyzer::NAME,
            Analyzer::OpenAi(_) => OpenAiAnalyzer::NAME,
        }
    }

    /// The most analysing `conversation` can cost, retries included (0 when
    /// calls are free or the model has no price).
    pub fn worst_case_cost(&self, conversation: &Conversation) -> f64 {
        match self {
            Analyzer::Lexicon(_) => 0.0,
            Analyzer::OpenAi(a) => a.worst_case_cost(conversation),
        }
    }

    /// The LLM budget per upload in US dollars, when one is set.
    pub fn budget_usd(&self) -> Option<f64> {
        match self {
            Analyzer::Lexicon(_) => None,
            Analyzer::OpenAi(a) => a.budget_usd(),
        }
    }

    pub fn model(&self) -> String {
        match self {
            Analyzer::Lexicon(_) => LexiconAnalyzer::MODEL.to_string(),
            Analyzer::OpenAi(a) => a.model().to_string(),
        }
    }

    /// Identifies everything that shapes an analysis: two analyzers with the
    /// same fingerprint give interchangeable results.
    pub fn fingerprint(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Analyzer::Lexicon(l) => l.fingerprint().into(),
            Analyzer::OpenAi(a) => a.fingerprint().into(),
        }
    }

    /// The processed-content key of a conversation: a hash of this analyzer's
    /// fingerprint and of everything the analyzer reads (roles and texts of
    /// the non-autoresponse messages, in order). Ids and timestamps are left
    /// out, so the same conversation exported again maps to the same key.
    pub fn content_key(&self, conversation: &Conversation) -> [u8; 32] {
        // The bytes are gathered first and hashed in one call: blake3's cost
        // per call dwarfed hashing four short pieces per message.
        let fingerprint = self.fingerprint();
        // Per message: its text, the separators and the role's name (≤ 8).
        let size = conversation
            .analysable()
            .map(|m| m.text.len() + 10)
            .sum::<usize>();
        let mut bytes = Vec::with_capacity(fingerprint.len() + size);
        bytes.extend_from_slice(fingerprint.as_bytes());
        for m in conversation.analysable() {
            bytes.push(0xff);
            bytes.extend_from_slice(m.role.as_str().as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(m.text.as_bytes());
        }
        *blake3::hash(&bytes).as_bytes()
    }

    /// Analyses one conversation. A conversation with no customer message
    /// left after filtering is answered by the lexicon analyzer: there is
    /// nothing an LLM could add, so no money is spent on it.
    pub async fn analyze(
        &self,
        conversation: &Conversation,
        cancel: &CancellationToken,
    ) -> Outcome {
        if cancel.is_cancelled() {
            return Outcome::local(Err(AnalyzeError::Cancelled));
        }
        match self {
            Analyzer::OpenAi(a) if conversation.customer_messages() > 0 => {
                a.analyze(conversation, cancel).await
            }
            Analyzer::OpenAi(a) => {
                let mut analysis = FALLBACK.analyze(conversation);
                analysis.analyzer = OpenAiAnalyzer::NAME.to_string();
                analysis.model = a.model().to_string();
                Outcome::local(Ok(analysis))
            }
            Analyzer::Lexicon(l) => Outcome::local(Ok(l.analyze(conversation))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Role};

    /// Keys already stored (in `processed-v2`, batch jobs, insights) were
    /// made by hashing the pieces one by one: the key must not change.
    #[test]
    fn the_content_key_is_the_one_stored_keys_were_made_with() {
        let message = |role, text: &str, autoresponse| Message {
            role,
            text: text.into(),
            timestamp: None,
            time_ms: None,
            sender_name: None,
            autoresponse,
        };
        let conversation = Conversation {
            id: "c-1".into(),
            messages: vec![
                message(Role::Customer, "बत्ती छैन since morning", false),
                message(Role::Bot, "Dial *977# for self-service", true),
                message(Role::Agent, "Checking the line now.", false),
            ],
        };
        let analyzer = Analyzer::Lexicon(Arc::new(LexiconAnalyzer::new()));
        let mut streamed = blake3::Hasher::new();
        streamed.update(analyzer.fingerprint().as_bytes());
        for m in conversation.analysable() {
            streamed.update(&[0xff]);
            streamed.update(m.role.as_str().as_bytes());
            streamed.update(&[0]);
            streamed.update(m.text.as_bytes());
        }
        assert_eq!(
            analyzer.content_key(&conversation),
            *streamed.finalize().as_bytes()
        );
    }
}
