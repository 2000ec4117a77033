//! The LLM analyzer: one combined chat-completions call per conversation to
//! any OpenAI-compatible API (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp
//! server), over one or several endpoints whose limits add up and that
//! stand in for each other, retried with backoff, accounted per call.
//!
//! - [`client`]: the one HTTP layer of every provider call (auth, status
//!   mapping, `Retry-After`, the retry rule), shared with [`batch`].
//! - [`endpoint`]: one endpoint's connection, limits ([`limits`]) and the
//!   request shape it has negotiated ([`negotiate`], [`request`]).
//! - [`router`]: which endpoint takes a call; cooldowns and outages.
//! - [`prompt`], [`reply`], [`pack`], [`models`]: what is asked, how the
//!   answer is read, K conversations per request, prices.

pub mod batch;
pub mod client;
pub mod endpoint;
pub mod limits;
pub mod models;
pub mod negotiate;
mod pack;
pub mod prompt;
pub mod reply;
pub mod request;
pub mod router;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AnalyzeError, FailureKind, FatalKind, LlmUsage, Outcome, estimate};
use crate::config::{AnalyzerSettings, ModelPrice, OpenAiSettings, TopicSettings};
use crate::model::Conversation;
use crate::privacy::{self, Counts, Redactor};
use client::{CallError, Class};
use endpoint::Endpoint;
use limits::{Announced, LimitSource, LimitsSnapshot};
use negotiate::{BudgetParameter, EndpointMemory, StructuredMode};
use pack::Packer;
use reply::ReplyError;
use request::json_string;
use router::{Report, Router, Stop};

#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error(
        "the OpenAI analyzer needs an API key in the environment variable {var} (set it, or use --analyzer lexicon)"
    )]
    MissingKey { var: String },
    #[error("invalid base_url {url:?}: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("invalid setting {key}: {source}", key = .0.key(), source = .0)]
    Privacy(#[from] crate::privacy::PrivacyError),
}

/// What one probe request ([`OpenAiAnalyzer::probe`]) found.
#[derive(Debug, Clone)]
pub struct Probe {
    pub status: u16,
    pub elapsed: Duration,
    /// The limits the answer announced (`x-ratelimit-*`).
    pub announced: Announced,
    /// The budget parameter sent, and whether the reply kept to it (`None`
    /// when the answer did not say how many tokens it used).
    pub budget: BudgetParameter,
    pub budget_honoured: Option<bool>,
}

/// Why a probe failed: no answer, or an answer that is not a success (its
/// text redacted of the key).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer from {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered HTTP {status}: {detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
        announced: Announced,
    },
}

/// 429s do not use up `max_retries` (the endpoint's pause handles them),
/// but a conversation gives up after this many.
const MAX_RATE_LIMITED: u32 = 50;

/// Each backoff is at least this many times the one before (as it really
/// was, pauses included).
const GAP_GROWTH: f64 = 1.25;

/// Characters of an invalid reply quoted back in a re-ask.
const REASK_REPLY_CHARS: usize = 2000;
/// The most tokens a re-ask adds (the quoted reply, the note, the framing).
const REASK_EXTRA_TOKENS: u64 = REASK_REPLY_CHARS as u64 / 4 + 80;

/// What an endpoint learnt about its server, for the database
/// (`llm-endpoints-v1`), keyed by [`Endpoint::memory_key`].
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub key: String,
    pub memory: EndpointMemory,
}

/// Whether a reply of `used` tokens kept to a budget of `budget`: a server
/// that ignores the parameter sent may run well past it (a little over is
/// rounding, or a stop token counted).
pub fn ignores_budget(used: u64, budget: u32) -> bool {
    used > u64::from(budget) + u64::from(budget / 8) + 2
}

struct Inner {
    /// Identifies the topic list the model picks from (part of the fingerprint).
    topics: String,
    /// The names a reply's `topic` must be one of.
    topic_names: Vec<String>,
    settings: OpenAiSettings,
    router: Router,
    /// Gathers conversations into packed requests
    /// (`conversations_per_request` > 1).
    packer: Option<Packer>,
    /// Where what the endpoints learn goes (the engine stores it).
    learned: Mutex<Option<mpsc::UnboundedSender<Learned>>>,
}

/// The OpenAI-compatible analyzer. Cheap to clone: one instance (one HTTP
/// connection pool, one router over the endpoints) serves the whole pool.
#[derive(Clone)]
pub struct OpenAiAnalyzer {
    inner: Arc<Inner>,
    /// Replaces personal data in every transcript before it is sent
    /// (`[privacy]`); `None`: transcripts go as the export wrote them.
    redactor: Option<Redactor>,
}

impl std::fmt::Debug for OpenAiAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAnalyzer")
            .field("endpoints", &self.inner.router.endpoints())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// One request, whatever endpoint sends it: the user message, the
/// conversations it carries, and a re-ask's messages after it. Each endpoint
/// renders it in its own mode ([`Endpoint::render`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// A transcript, or K of them packed.
    pub user: String,
    /// How many conversations it carries (1, or K packed).
    pub conversations: u32,
    /// After a re-ask: the invalid reply and the note on it, as JSON
    /// messages separated by a comma; empty otherwise.
    pub follow_up: String,
    /// Rate-limit tokens of `user` and `follow_up`.
    pub content_tokens: u32,
}

impl Request {
    pub fn new(user: String, conversations: u32) -> Self {
        Self {
            content_tokens: prompt::estimate_tokens(&user),
            user,
            conversations,
            follow_up: String::new(),
        }
    }
}

/// What [`OpenAiAnalyzer::call`] ended with.
struct Called<T> {
    result: Result<T, AnalyzeError>,
    usage: LlmUsage,
    /// The endpoint of the last attempt.
    endpoint: Option<String>,
}

impl OpenAiAnalyzer {
    pub const NAME: &'static str = "openai";

    /// The analyzer `[analyzer]` describes: every endpoint's key read from
    /// its environment variable; the model picks each conversation's topic
    /// from `topics`.
    pub fn from_settings(
        settings: &AnalyzerSettings,
        topics: &[TopicSettings],
    ) -> Result<Self, OpenAiError> {
        Self::build(
            &settings.openai,
            |var| {
                std::env::var(var)
                    .ok()
                    .filter(|k| !k.trim().is_empty())
                    .map(SecretString::from)
                    .ok_or_else(|| OpenAiError::MissingKey {
                        var: var.to_string(),
                    })
            },
            topics,
            settings.outage_failures,
            Duration::from_secs(settings.outage_timeout_seconds),
        )
    }

    /// Reads each endpoint's key from the environment variable the settings
    /// name (outages as the defaults say).
    pub fn from_env(
        settings: &OpenAiSettings,
        topics: &[TopicSettings],
    ) -> Result<Self, OpenAiError> {
        let analyzer = AnalyzerSettings {
            openai: settings.clone(),
            ..AnalyzerSettings::default()
        };
        Self::from_settings(&analyzer, topics)
    }

    /// An analyzer picking from the default topics, `api_key` for every endpoint.
    pub fn new(settings: &OpenAiSettings, api_key: SecretString) -> Result<Self, OpenAiError> {
        Self::with_topics(settings, api_key, &TopicSettings::defaults())
    }

    /// An analyzer with `api_key` for every endpoint (outages as the
    /// defaults say).
    pub fn with_topics(
        settings: &OpenAiSettings,
        api_key: SecretString,
        topics: &[TopicSettings],
    ) -> Result<Self, OpenAiError> {
        let analyzer = AnalyzerSettings {
            openai: settings.clone(),
            ..AnalyzerSettings::default()
        };
        Self::with_key(&analyzer, api_key, topics)
    }

    /// The analyzer `[analyzer]` describes, with `api_key` for every endpoint.
    pub fn with_key(
        settings: &AnalyzerSettings,
        api_key: SecretString,
        topics: &[TopicSettings],
    ) -> Result<Self, OpenAiError> {
        Self::build(
            &settings.openai,
            |_| Ok(api_key.clone()),
            topics,
            settings.outage_failures,
            Duration::from_secs(settings.outage_timeout_seconds),
        )
    }

    fn build(
        settings: &OpenAiSettings,
        key_of: impl Fn(&str) -> Result<SecretString, OpenAiError>,
        topics: &[TopicSettings],
        outage_failures: u32,
        outage_timeout: Duration,
    ) -> Result<Self, OpenAiError> {
        let client = client::http_client(Duration::from_secs(settings.timeout_seconds))?;
        let endpoints = settings
            .resolved_endpoints()
            .iter()
            .map(|e| Endpoint::new(e, settings, topics, client.clone(), key_of(&e.api_key_env)?))
            .collect::<Result<Vec<_>, _>>()?;
        let per_request = settings.conversations_per_request.max(1);
        // Until `with_privacy` says otherwise, the default policy: redacted
        // unless every endpoint is on this machine.
        let redactor = redactor_for(&crate::config::PrivacySettings::default(), settings)?;
        Ok(Self {
            redactor,
            inner: Arc::new(Inner {
                topics: crate::analyze::topics::Topics::new(topics)
                    .fingerprint()
                    .to_string(),
                topic_names: topics.iter().map(|t| t.name.clone()).collect(),
                settings: settings.clone(),
                router: Router::new(endpoints, outage_failures, outage_timeout),
                packer: (per_request > 1).then(|| Packer::new(per_request as usize)),
                learned: Mutex::new(None),
            }),
        })
    }

    /// This analyzer under the policy of `settings`: whether transcripts
    /// are redacted (`redact`, against the endpoints' base URLs: a transcript
    /// may go to any of them, so it is redacted when any one calls for it)
    /// and how.
    pub fn with_privacy(
        mut self,
        settings: &crate::config::PrivacySettings,
    ) -> Result<Self, OpenAiError> {
        self.redactor = redactor_for(settings, &self.inner.settings)?;
        Ok(self)
    }

    /// The policy transcripts are redacted under, when they are.
    pub fn redactor(&self) -> Option<&Redactor> {
        self.redactor.as_ref()
    }

    /// The endpoints, in the order configured.
    pub fn endpoints(&self) -> &[Endpoint] {
        self.inner.router.endpoints()
    }

    /// The endpoint named `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints().iter().find(|e| e.name() == name)
    }

    /// The endpoint a request is shaped by when no particular one sends it
    /// (estimates; batch mode's first choice): the first of the lowest tier.
    pub fn primary(&self) -> &Endpoint {
        let endpoints = self.endpoints();
        endpoints
            .iter()
            .min_by_key(|e| e.priority())
            .unwrap_or(&endpoints[0])
    }

    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The primary endpoint's model (what the upload records as its model).
    pub fn model(&self) -> &str {
        self.primary().model()
    }

    /// The topics a reply must pick from.
    pub fn topic_names(&self) -> &[String] {
        &self.inner.topic_names
    }

    /// Every model the endpoints use, once each, in order.
    fn models(&self) -> Vec<&str> {
        let mut models: Vec<&str> = Vec::new();
        for e in self.endpoints() {
            if !models.contains(&e.model()) {
                models.push(e.model());
            }
        }
        models
    }

    /// Identifies what shapes an analysis: the models (several endpoints of
    /// one model give interchangeable results), the prompt, the topics, and
    /// with redaction its policy's fingerprint too (an analysis made from
    /// other text, redacted otherwise or not at all, is not reused).
    pub fn fingerprint(&self) -> String {
        let mut fingerprint = format!(
            "{}/{}/{}/topics-{}",
            Self::NAME,
            self.models().join("+"),
            prompt::PROMPT_VERSION,
            self.inner.topics
        );
        if let Some(r) = &self.redactor {
            fingerprint.push('/');
            fingerprint.push_str(r.fingerprint());
        }
        fingerprint
    }

    /// The limits of every endpoint together: their sum, or `None` when
    /// one has none; the least certain source.
    pub fn limits(&self) -> LimitsSnapshot {
        let snapshots: Vec<LimitsSnapshot> = self
            .endpoints()
            .iter()
            .map(Endpoint::limits_snapshot)
            .collect();
        let sum = |f: fn(&LimitsSnapshot) -> Option<u32>| {
            snapshots
                .iter()
                .map(f)
                .try_fold(0u32, |a, n| n.map(|n| a.saturating_add(n)))
        };
        let least_certain = |f: fn(&LimitsSnapshot) -> LimitSource| {
            snapshots
                .iter()
                .map(f)
                .max_by_key(|s| match s {
                    LimitSource::Configured => 0,
                    LimitSource::Announced => 1,
                    LimitSource::Unlimited => 2,
                    LimitSource::Starting => 3,
                })
                .unwrap_or(LimitSource::Configured)
        };
        LimitsSnapshot {
            requests_per_minute: sum(|s| s.requests_per_minute),
            requests_source: least_certain(|s| s.requests_source),
            tokens_per_minute: sum(|s| s.tokens_per_minute),
            tokens_source: least_certain(|s| s.tokens_source),
        }
    }

    /// Where what the endpoints learn about their servers goes from now on.
    pub fn learn_into(&self, to: mpsc::UnboundedSender<Learned>) {
        *self
            .inner
            .learned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(to);
    }

    fn learnt(&self, endpoint: &Endpoint, memory: EndpointMemory) {
        let to = self
            .inner
            .learned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(to) = to {
            let _ = to.send(Learned {
                key: endpoint.memory_key().to_string(),
                memory,
            });
        }
    }

    /// Starts each endpoint from what it learnt in an earlier run (by
    /// [`Endpoint::memory_key`]).
    pub fn recall(&self, memories: &[(String, EndpointMemory)]) {
        for e in self.endpoints() {
            if let Some((_, m)) = memories.iter().find(|(k, _)| k == e.memory_key()) {
                e.recall(m);
            }
        }
    }

    /// The transcript one conversation is sent as: the one place text
    /// becomes what a request carries (sync, packed, batch files, retries
    /// and re-asks all start from it, whichever endpoint sends it), so the
    /// one place it is redacted, before long messages are trimmed (a number
    /// cut in half would not be recognised). Also what was redacted.
    pub fn transcript(&self, conversation: &Conversation) -> (String, Counts) {
        let s = &self.inner.settings;
        let (max_message, max_total) = (s.max_message_tokens, s.max_transcript_tokens);
        match &self.redactor {
            Some(r) => {
                let redacted = r.redact_analysable(conversation);
                let text = prompt::transcript(&redacted.conversation, max_message, max_total);
                (text, redacted.counts)
            }
            None => (
                prompt::transcript(conversation, max_message, max_total),
                Counts::default(),
            ),
        }
    }

    /// The request for one conversation.
    pub fn request(&self, conversation: &Conversation) -> Request {
        Request::new(self.transcript(conversation).0, 1)
    }

    /// The most analysing one conversation can cost, in US dollars, on the
    /// dearest endpoint: every attempt `max_retries` allows, each a re-ask
    /// as long as one gets, each reply using its whole budget; 0 for
    /// unpriced models. (429s are not billed.)
    pub fn worst_case_cost(&self, conversation: &Conversation) -> f64 {
        let request = self.request(conversation);
        let attempts = u64::from(self.inner.settings.max_retries) + 1;
        self.endpoints()
            .iter()
            .filter_map(|e| {
                let price = e.price()?;
                let reply = u64::from(e.reply_tokens(1));
                let prompt =
                    u64::from(e.tokens(&request)).saturating_sub(reply) + REASK_EXTRA_TOKENS;
                let usage = LlmUsage {
                    prompt_tokens: prompt * attempts,
                    completion_tokens: reply * attempts,
                    ..LlmUsage::default()
                };
                Some(price.cost(&usage, false))
            })
            .fold(0.0, f64::max)
    }

    pub fn mode(&self) -> crate::config::LlmMode {
        self.inner.settings.mode
    }

    /// Batch mode: rounds of batches before sync calls take the rest.
    pub fn batch_rounds(&self) -> u32 {
        self.inner.settings.batch_rounds
    }

    /// Batch mode: the first wait between polls.
    pub fn batch_poll(&self) -> Duration {
        Duration::from_millis(self.inner.settings.batch_poll_ms.max(1))
    }

    /// `analyzer.openai.max_cost_usd`.
    pub fn budget_usd(&self) -> Option<f64> {
        self.inner.settings.max_cost_usd
    }

    /// The primary endpoint's price.
    pub fn price(&self) -> Option<ModelPrice> {
        self.primary().price()
    }

    pub fn conversations_per_request(&self) -> u32 {
        self.inner.settings.conversations_per_request.max(1)
    }

    /// What sending `conversations` would take, per conversation: packed
    /// `conversations_per_request` at a time, as [`Self::analyze`] sends them
    /// (a packed request's tokens shared evenly among its conversations),
    /// shaped as the primary endpoint shapes them, and what would be
    /// redacted from it.
    pub fn estimate_tokens<'a>(
        &self,
        conversations: impl IntoIterator<Item = &'a Conversation>,
    ) -> Vec<(estimate::Tokens, Counts)> {
        let (transcripts, counts): (Vec<String>, Vec<Counts>) = conversations
            .into_iter()
            .map(|c| self.transcript(c))
            .unzip();
        let per_request = self.conversations_per_request() as usize;
        let endpoint = self.primary();
        let mut out = Vec::with_capacity(transcripts.len());
        for chunk in transcripts.chunks(per_request) {
            let n = chunk.len() as u32;
            let user_tokens = if per_request == 1 {
                prompt::estimate_tokens(&chunk[0])
            } else {
                prompt::estimate_tokens(&prompt::packed_transcript(
                    chunk.iter().map(String::as_str),
                ))
            };
            // A pack leaves with the packed prefix whatever its size (a
            // short one at an upload's tail).
            let shape_of = per_request as u32;
            let reply = u64::from(endpoint.reply_tokens(shape_of));
            let rate_limit = u64::from(endpoint.fixed_tokens(shape_of)) + u64::from(user_tokens);
            let share = |x: u64, i: u64| x / u64::from(n) + u64::from(i < x % u64::from(n));
            for i in 0..u64::from(n) {
                out.push(estimate::Tokens {
                    rate_limit: share(rate_limit, i),
                    prompt: share(rate_limit - reply, i),
                    reply_max: share(reply, i),
                });
            }
        }
        out.into_iter().zip(counts).collect()
    }

    /// `request` followed by the model's invalid reply and a note saying what
    /// was wrong with it: asking the same question again at temperature 0
    /// would get the same answer back. (Batch mode's follow-up rounds send
    /// these too.)
    pub fn reask(&self, request: &Request, bad_reply: &str, problem: &ReplyError) -> Request {
        let reply = crate::model::truncate_chars(bad_reply, REASK_REPLY_CHARS);
        let note = match problem {
            ReplyError::Truncated => format!(
                "Your reply was cut off by the token limit. Answer again with only the JSON \
                 object, with a summary of one short sentence (at most {} characters).",
                crate::model::SUMMARY_MAX_CHARS
            ),
            other => format!(
                "Your reply was not valid ({}). Answer again with only the JSON object the \
                 schema describes, nothing else.",
                crate::model::truncate_chars(&other.to_string(), 200)
            ),
        };
        let follow_up = format!(
            "{{\"role\":\"assistant\",\"content\":{}}},{{\"role\":\"user\",\"content\":{}}}",
            json_string(&reply),
            json_string(&note)
        );
        let extra = prompt::estimate_tokens(&reply) + prompt::estimate_tokens(&note) + 8;
        Request {
            user: request.user.clone(),
            conversations: request.conversations,
            follow_up,
            content_tokens: request.content_tokens + extra,
        }
    }

    /// Analyses one conversation: paced, routed, retried, cancellable. With
    /// `conversations_per_request` > 1 it travels in a packed request with
    /// others, and alone when the packed reply has no valid result for it.
    pub async fn analyze(
        &self,
        conversation: &Conversation,
        cancel: &CancellationToken,
    ) -> Outcome {
        if let Some(packer) = &self.inner.packer {
            let (transcript, _) = self.transcript(conversation);
            match packer.submit(self, transcript, cancel).await {
                pack::Packed::Done(outcome) => return outcome,
                pack::Packed::Alone(mut usage) => {
                    let mut outcome = self.analyze_alone(conversation, cancel).await;
                    usage.add(&outcome.usage);
                    outcome.usage = usage;
                    return outcome;
                }
            }
        }
        self.analyze_alone(conversation, cancel).await
    }

    /// One conversation in a request of its own.
    async fn analyze_alone(
        &self,
        conversation: &Conversation,
        cancel: &CancellationToken,
    ) -> Outcome {
        let topics = self.topic_names();
        let called = self
            .call(self.request(conversation), cancel, |model, content| {
                reply::validate(content, Self::NAME, model, topics)
            })
            .await;
        Outcome {
            result: called.result,
            usage: called.usage,
            endpoint: called.endpoint,
        }
    }

    /// Sends `first` until `read` accepts a reply: routed to an endpoint,
    /// paced by its limits, retried with backoff (elsewhere after a failure
    /// to answer), an invalid reply re-asked with a note, a refused
    /// structured-output mode or budget parameter renegotiated, cancellable.
    /// `read` gets the answering endpoint's model and the reply's content.
    async fn call<T>(
        &self,
        first: Request,
        cancel: &CancellationToken,
        read: impl Fn(&str, &str) -> Result<T, ReplyError>,
    ) -> Called<T> {
        let inner = &self.inner;
        let router = &inner.router;
        let several = router.endpoints().len() > 1;
        // What is sent next: the request, or a re-ask after an invalid reply.
        let mut next: Option<Request> = None;
        let mut usage = LlmUsage::default();
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        // Endpoints that failed to answer this call: tried last.
        let mut avoid = 0u64;
        let mut endpoint_name: Option<String> = None;
        // The last pause between a failure and its retry that we chose (no
        // Retry-After), as it really was: pauses can stretch it, and each
        // one must be longer than the one before, or the provider sees
        // retries at a constant interval, not a backoff.
        let mut last_gap = Duration::ZERO;
        let mut gap_from: Option<std::time::Instant> = None;
        let result = loop {
            if cancel.is_cancelled() {
                break Err(AnalyzeError::Cancelled);
            }
            let request = next.as_ref().unwrap_or(&first);
            let ticket = match router.acquire(request, avoid, cancel).await {
                Ok(t) => t,
                Err(Stop::Cancelled) => break Err(AnalyzeError::Cancelled),
                Err(Stop::Fatal { kind, detail }) => break Err(AnalyzeError::fatal(kind, detail)),
            };
            let endpoint = ticket.endpoint();
            let index = ticket.index();
            endpoint_name = Some(endpoint.name().to_string());
            if usage.requests > 0 {
                usage.retries += 1;
            }
            usage.requests += 1;
            if let Some(from) = gap_from.take() {
                last_gap = from.elapsed();
            }
            let rendered = endpoint.render(request);
            let sent = tokio::select! {
                a = endpoint.send(rendered.body, inner.settings.max_response_bytes) => a,
                _ = cancel.cancelled() => break Err(AnalyzeError::Cancelled),
            };
            let error = match sent {
                Ok(answer) => match answer.error() {
                    Some(e) => e,
                    None => {
                        tracing::debug!(
                            endpoint = endpoint.name(),
                            status = answer.status.as_u16(),
                            ms = answer.elapsed.as_millis() as u64,
                            bytes = answer.body.len(),
                            "chat completion"
                        );
                        router.report(ticket, Report::Answered);
                        let parsed = reply::parse(&answer.body, |c| read(endpoint.model(), c));
                        self.bill(
                            &mut usage,
                            endpoint,
                            &parsed,
                            rendered.tokens - rendered.reply_tokens,
                        );
                        if let Some(u) = parsed.usage
                            && ignores_budget(u.completion_tokens, rendered.reply_tokens)
                            && let Some(m) = endpoint.switch_budget(
                                rendered.budget,
                                &format!(
                                    "a reply used {} tokens of a {} budget sent as {}",
                                    u.completion_tokens,
                                    rendered.reply_tokens,
                                    rendered.budget.name()
                                ),
                            )
                        {
                            self.learnt(endpoint, m);
                        }
                        match parsed.analysis {
                            Ok(analysis) => break Ok(analysis),
                            Err(e) => {
                                // The server is fine; the answer was not. Say
                                // what was wrong (bounded by `max_retries`),
                                // no backoff.
                                let reason = e.to_string();
                                let kind = e.kind();
                                next = match (&e, &parsed.content) {
                                    (
                                        ReplyError::Json(_)
                                        | ReplyError::Schema(_)
                                        | ReplyError::Truncated
                                        | ReplyError::Empty,
                                        Some(content),
                                    ) => Some(self.reask(&first, content, &e)),
                                    _ => None,
                                };
                                failures += 1;
                                if failures > inner.settings.max_retries {
                                    break Err(AnalyzeError::failed(kind, reason));
                                }
                                if next.is_none() {
                                    self.pause(
                                        failures,
                                        &mut last_gap,
                                        &mut gap_from,
                                        None,
                                        cancel,
                                    )
                                    .await;
                                }
                                continue;
                            }
                        }
                    }
                },
                Err(e) => e,
            };
            // A server that cannot take the structured-output mode or the
            // budget parameter sent: try the next one, at once, uncounted.
            if negotiate::refuses_format(&error) {
                router.report(ticket, Report::Answered);
                match endpoint.step_down(rendered.structured, &error.to_string()) {
                    Some(m) => {
                        self.learnt(endpoint, m);
                        continue;
                    }
                    // Another call stepped down already: send it again.
                    None if endpoint.structured() != rendered.structured => continue,
                    None => {}
                }
                break Err(AnalyzeError::failed(
                    FailureKind::Rejected,
                    format!("request rejected ({error}); no structured-output mode is left to try"),
                ));
            }
            if negotiate::refuses_parameter(&error, rendered.budget) {
                router.report(ticket, Report::Answered);
                match endpoint.switch_budget(rendered.budget, &error.to_string()) {
                    Some(m) => {
                        self.learnt(endpoint, m);
                        continue;
                    }
                    None if endpoint.budget() != rendered.budget => continue,
                    None => {}
                }
                break Err(AnalyzeError::failed(
                    FailureKind::Rejected,
                    format!("request rejected ({error})"),
                ));
            }
            let (kind, reason, wait) = match error.class() {
                Class::Unavailable => {
                    let outage = router.report(ticket, Report::Unavailable(&error));
                    avoid |= 1 << (index % 64);
                    if outage {
                        // The provider is down: this call waits for it with
                        // the others, its retries untouched.
                        continue;
                    }
                    let kind = match &error {
                        CallError::Timeout(_) => FailureKind::Timeout,
                        CallError::Connection(_) => FailureKind::Connection,
                        _ => FailureKind::ServerError,
                    };
                    let wait = error.retry_after().map(|d| endpoint.limits().clamp_wait(d));
                    (kind, error.to_string(), wait)
                }
                Class::RateLimited => {
                    router.report(ticket, Report::RateLimited(error.retry_after()));
                    usage.rate_limited += 1;
                    rate_limited += 1;
                    if rate_limited >= MAX_RATE_LIMITED {
                        break Err(AnalyzeError::failed(
                            FailureKind::RateLimited,
                            format!("rate limited {rate_limited} times: {error}"),
                        ));
                    }
                    // The endpoint's pause is set; no backoff of our own.
                    continue;
                }
                Class::Unusable(kind) => {
                    let detail = unusable(kind, endpoint, &error, several);
                    // The router stops the call when no endpoint is left.
                    router.report(ticket, Report::Out { kind, detail });
                    continue;
                }
                Class::Refused => {
                    router.report(ticket, Report::Answered);
                    let status = error.status().unwrap_or_default();
                    let message = error
                        .api_error()
                        .map(|e| e.message.clone())
                        .unwrap_or_default();
                    break Err(AnalyzeError::failed(
                        FailureKind::Rejected,
                        format!("request rejected (HTTP {status}): {message}"),
                    ));
                }
                Class::TooLarge => {
                    router.report(ticket, Report::Answered);
                    break Err(AnalyzeError::failed(
                        FailureKind::ReplyTooLarge,
                        format!(
                            "the reply is larger than {} bytes (analyzer.openai.max_response_bytes)",
                            inner.settings.max_response_bytes
                        ),
                    ));
                }
            };
            failures += 1;
            if failures > inner.settings.max_retries {
                break Err(AnalyzeError::failed(kind, reason));
            }
            tracing::debug!(attempt = failures, reason = %self.redact(&reason), "retrying");
            if !self
                .pause(failures, &mut last_gap, &mut gap_from, wait, cancel)
                .await
            {
                break Err(AnalyzeError::Cancelled);
            }
        };
        // A reason quotes the provider (error bodies, a redirect's location),
        // which may echo a key: it never leaves here with it.
        let result = result.map_err(|e| match e {
            AnalyzeError::Failed { kind, detail } => {
                AnalyzeError::failed(kind, self.redact(&detail))
            }
            AnalyzeError::Fatal { kind, detail } => AnalyzeError::fatal(kind, self.redact(&detail)),
            other => other,
        });
        Called {
            result,
            usage,
            endpoint: endpoint_name,
        }
    }

    /// Waits before retry `failure`: the provider's `Retry-After` when it
    /// gave one, else the backoff, longer than the last one was. False when
    /// cancelled meanwhile.
    async fn pause(
        &self,
        failure: u32,
        last_gap: &mut Duration,
        gap_from: &mut Option<std::time::Instant>,
        asked: Option<Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let max_wait = Duration::from_secs(self.inner.settings.max_retry_wait_seconds);
        let wait = asked.unwrap_or_else(|| {
            *gap_from = Some(std::time::Instant::now());
            client::backoff(failure)
                .max(last_gap.mul_f64(GAP_GROWTH))
                .min(max_wait)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = cancel.cancelled() => false,
        }
    }

    /// Adds what one answered request was billed for, at its endpoint's
    /// price; without `usage` in the reply, the estimate (the prompt as
    /// counted for the limits, the reply's characters / 4).
    fn bill<T>(
        &self,
        usage: &mut LlmUsage,
        endpoint: &Endpoint,
        parsed: &reply::Parsed<T>,
        prompt_tokens: u32,
    ) {
        let mut this = LlmUsage::default();
        match parsed.usage {
            Some(u) => {
                this.bill(u.prompt_tokens, u.completion_tokens);
                this.cached_tokens = u.prompt_tokens_details.cached_tokens;
                this.reasoning_tokens = u.completion_tokens_details.reasoning_tokens;
            }
            None => this.bill(
                u64::from(prompt_tokens),
                parsed.content_chars.div_ceil(4) as u64,
            ),
        }
        if let Some(price) = endpoint.price() {
            this.cost_usd = price.cost(&this, false);
        }
        endpoint.count(|c| c.usage.add(&this));
        usage.add(&this);
    }

    /// `text` without any endpoint's key.
    fn redact(&self, text: &str) -> String {
        self.endpoints()
            .iter()
            .fold(text.to_string(), |t, e| e.connection().redact(t))
    }

    /// One cheap request to endpoint `index` (a completion of a one-line
    /// prompt with the smallest budget, not paced, not retried) to see that
    /// the endpoint, the key and the model answer, what limits the provider
    /// announces, and whether the reply keeps to the budget parameter (under
    /// `token_parameter = "auto"`, one that does not is switched, and the
    /// probe sent again).
    pub async fn probe(&self, index: usize) -> Result<Probe, ProbeError> {
        let endpoint = &self.endpoints()[index];
        loop {
            let shape = endpoint.shape();
            let (body, budget) = shape.probe_body();
            let url = endpoint.chat_url().to_string();
            let answer = endpoint
                .connection()
                .chat(body, 64 * 1024)
                .await
                .map_err(|e| ProbeError::Unreachable {
                    url: url.clone(),
                    detail: self.redact(&e.to_string()),
                })?;
            let announced = Announced::from_headers(&answer.headers);
            if let Some(error) = answer.error() {
                if negotiate::refuses_parameter(&error, shape.budget())
                    && endpoint
                        .switch_budget(shape.budget(), &error.to_string())
                        .is_some()
                {
                    continue;
                }
                let detail = match &error {
                    CallError::Status { error, .. } => self.redact(&error.to_string()),
                    other => self.redact(&other.to_string()),
                };
                return Err(ProbeError::Refused {
                    url,
                    status: answer.status.as_u16(),
                    detail,
                    announced,
                });
            }
            let used = reply::parse(&answer.body, |_| Ok(())).usage;
            let honoured = used.map(|u| !ignores_budget(u.completion_tokens, budget));
            if honoured == Some(false)
                && endpoint
                    .switch_budget(
                        shape.budget(),
                        &format!(
                            "check: a one-token probe sent as {} used {} tokens",
                            shape.budget().name(),
                            used.map_or(0, |u| u.completion_tokens)
                        ),
                    )
                    .is_some()
            {
                continue;
            }
            return Ok(Probe {
                status: answer.status.as_u16(),
                elapsed: answer.elapsed,
                announced,
                budget: shape.budget(),
                budget_honoured: honoured,
            });
        }
    }

    /// Finds the structured-output mode endpoint `index`'s server takes,
    /// from the most exact down (`check`): one short request per mode until
    /// one is not refused for its `response_format`. The mode that works
    /// (now in force), or the answer that stopped the search.
    pub async fn negotiate(&self, index: usize) -> Result<StructuredMode, ProbeError> {
        let endpoint = &self.endpoints()[index];
        if self.inner.settings.structured_output {
            endpoint.set_modes(StructuredMode::JsonSchema, endpoint.budget());
        }
        let sample = Request::new(
            "C: The power went out this morning.\nA: It is back now.\nC: Thanks, it works."
                .to_string(),
            1,
        );
        loop {
            let rendered = endpoint.render(&sample);
            let url = endpoint.chat_url().to_string();
            let answer = endpoint
                .connection()
                .chat(rendered.body, 1024 * 1024)
                .await
                .map_err(|e| ProbeError::Unreachable {
                    url: url.clone(),
                    detail: self.redact(&e.to_string()),
                })?;
            let Some(error) = answer.error() else {
                return Ok(rendered.structured);
            };
            if negotiate::refuses_format(&error)
                && endpoint
                    .step_down(rendered.structured, &error.to_string())
                    .is_some()
            {
                continue;
            }
            return Err(ProbeError::Refused {
                url,
                status: answer.status.as_u16(),
                detail: self.redact(&error.to_string()),
                announced: Announced::from_headers(&answer.headers),
            });
        }
    }
}

/// The redactor `privacy` calls for over `settings`' endpoints: a
/// transcript may go to any of them, so it is redacted when one calls for it.
fn redactor_for(
    privacy: &crate::config::PrivacySettings,
    settings: &OpenAiSettings,
) -> Result<Option<Redactor>, OpenAiError> {
    let anywhere = settings
        .resolved_endpoints()
        .iter()
        .any(|e| privacy::applies(privacy.redact, &e.base_url));
    Ok(anywhere.then(|| Redactor::new(privacy)).transpose()?)
}

/// Why an endpoint is of no more use, in words.
fn unusable(kind: FatalKind, endpoint: &Endpoint, error: &CallError, several: bool) -> String {
    let message = error
        .api_error()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    let status = error.status().unwrap_or_default();
    let text = match kind {
        FatalKind::QuotaExhausted => {
            format!("the provider says the quota is exhausted: {message}")
        }
        FatalKind::KeyRejected => format!("the API key was rejected ({status}): {message}"),
        FatalKind::NotFound => format!(
            "{} answered 404 (wrong base_url or model?): {message}",
            endpoint.chat_url()
        ),
        _ => error.to_string(),
    };
    let text = endpoint.connection().redact(text);
    if several {
        format!("endpoint {}: {text}", endpoint.name())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthStyle, EndpointSettings, RateSetting};
    use crate::model::{Message, Role};

    fn settings() -> OpenAiSettings {
        OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            ..Default::default()
        }
    }

    fn conversation(text: &str) -> Conversation {
        Conversation {
            id: "c1".into(),
            messages: vec![Message {
                role: Role::Customer,
                text: text.into(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: false,
            }],
        }
    }

    #[test]
    fn the_key_never_shows_in_debug() {
        let a = OpenAiAnalyzer::new(&settings(), SecretString::from("sk-very-secret")).unwrap();
        let debug = format!("{a:?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn missing_key_names_the_variable() {
        let s = OpenAiSettings {
            api_key_env: "POWERPULSE_TEST_SURELY_UNSET_KEY".into(),
            ..settings()
        };
        let err = OpenAiAnalyzer::from_env(&s, &[]).unwrap_err();
        assert!(err.to_string().contains("POWERPULSE_TEST_SURELY_UNSET_KEY"));
        // Each endpoint's own variable is asked for.
        let s = OpenAiSettings {
            endpoints: vec![EndpointSettings {
                name: "second".into(),
                api_key_env: Some("POWERPULSE_TEST_SURELY_UNSET_TOO".into()),
                ..EndpointSettings::default()
            }],
            ..settings()
        };
        let err = OpenAiAnalyzer::from_env(&s, &[]).unwrap_err();
        assert!(err.to_string().contains("POWERPULSE_TEST_SURELY_UNSET_TOO"));
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["not a url", "ftp://example.com/v1"] {
            let s = OpenAiSettings {
                base_url: url.into(),
                ..settings()
            };
            assert!(matches!(
                OpenAiAnalyzer::new(&s, SecretString::from("k")),
                Err(OpenAiError::InvalidBaseUrl { .. })
            ));
        }
    }

    #[test]
    fn requests_share_a_byte_identical_prefix_and_are_valid_json() {
        let a = OpenAiAnalyzer::new(&settings(), SecretString::from("k")).unwrap();
        let e = a.primary();
        let one = e.render(&a.request(&conversation("no power since morning")));
        let two = e
            .render(&a.request(&conversation("\"quotes\" and\nnewlines")))
            .body;
        let v: serde_json::Value = serde_json::from_str(&one.body).unwrap();
        serde_json::from_str::<serde_json::Value>(&two).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["temperature"], 0);
        assert_eq!(v["response_format"]["json_schema"]["strict"], true);
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "C: no power since morning");
        let common = one
            .body
            .bytes()
            .zip(two.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            common >= one.body.find("\"role\":\"user\"").unwrap(),
            "the system part is shared"
        );
        assert!(one.tokens > e.fixed_tokens(1));
    }

    #[test]
    fn transcripts_are_redacted_before_they_are_trimmed_and_the_policy_is_in_the_fingerprint() {
        let local = OpenAiAnalyzer::new(&settings(), SecretString::from("k")).unwrap();
        assert!(local.redactor().is_none(), "auto: a server on this machine");
        let plain = local.fingerprint();
        let on = local
            .clone()
            .with_privacy(&crate::config::PrivacySettings {
                redact: crate::config::RedactMode::On,
                ..Default::default()
            })
            .unwrap();
        let body = |a: &OpenAiAnalyzer, c: &Conversation| a.primary().render(&a.request(c)).body;
        // A number at the very end of a long message, which trimming would
        // cut in half, and a name from the sender.
        let long = format!("{} call 9841234567", "no power ".repeat(300));
        let mut c = conversation(&long);
        c.messages[0].sender_name = Some("Sita Sharma".into());
        c.messages[0].text.push_str(" - Sita");
        let sent = body(&on, &c);
        assert!(
            !sent.contains("9841234567") && !sent.contains("Sita"),
            "{sent}"
        );
        assert!(
            sent.contains("<PHONE_1>") && sent.contains("<NAME_1>"),
            "{sent}"
        );
        assert!(body(&local, &c).contains("Sita"));
        // A number where trimming would cut the message (its first 798
        // characters are kept): redacted whole first, nothing of it is sent.
        let cut = format!("{} 9841234567 {}", "x".repeat(793), "y".repeat(2000));
        let sent = body(&on, &conversation(&cut));
        assert!(!sent.contains("98412"), "{sent}");
        assert_eq!(
            on.fingerprint(),
            format!("{plain}/{}", on.redactor().unwrap().fingerprint())
        );
        // The default policy for a provider elsewhere is to redact; with
        // several endpoints, one elsewhere is enough.
        let remote = OpenAiAnalyzer::new(
            &OpenAiSettings {
                base_url: "https://api.openai.com/v1".into(),
                ..settings()
            },
            SecretString::from("k"),
        )
        .unwrap();
        assert!(remote.redactor().is_some());
        let mixed = OpenAiAnalyzer::new(
            &OpenAiSettings {
                endpoints: vec![
                    EndpointSettings {
                        name: "here".into(),
                        ..EndpointSettings::default()
                    },
                    EndpointSettings {
                        name: "there".into(),
                        base_url: Some("https://api.openai.com/v1".into()),
                        ..EndpointSettings::default()
                    },
                ],
                ..settings()
            },
            SecretString::from("k"),
        )
        .unwrap();
        assert!(mixed.redactor().is_some());
        let off = remote
            .with_privacy(&crate::config::PrivacySettings {
                redact: crate::config::RedactMode::Off,
                ..Default::default()
            })
            .unwrap();
        assert!(off.redactor().is_none());
    }

    #[test]
    fn azure_style_url_and_no_structured_output() {
        let s = OpenAiSettings {
            base_url: "https://x.openai.azure.com/openai/deployments/gpt4o/".into(),
            api_version: Some("2024-10-21".into()),
            auth: AuthStyle::ApiKey,
            structured_output: false,
            ..settings()
        };
        let a = OpenAiAnalyzer::new(&s, SecretString::from("k")).unwrap();
        assert_eq!(
            a.primary().chat_url(),
            "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        let body = a.primary().render(&a.request(&conversation("hi"))).body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("response_format").is_none());
    }

    #[test]
    fn several_endpoints_inherit_what_they_leave_out() {
        let s = OpenAiSettings {
            requests_per_minute: RateSetting::PerMinute(100),
            tokens_per_minute: RateSetting::PerMinute(10_000),
            endpoints: vec![
                EndpointSettings {
                    name: "east".into(),
                    ..EndpointSettings::default()
                },
                EndpointSettings {
                    name: "azure".into(),
                    base_url: Some("https://x.openai.azure.com".into()),
                    deployment: Some("gpt4o-prod".into()),
                    requests_per_minute: Some(RateSetting::PerMinute(50)),
                    priority: 1,
                    ..EndpointSettings::default()
                },
            ],
            ..settings()
        };
        let a = OpenAiAnalyzer::new(&s, SecretString::from("k")).unwrap();
        let names: Vec<&str> = a.endpoints().iter().map(Endpoint::name).collect();
        assert_eq!(names, ["east", "azure"]);
        assert_eq!(a.primary().name(), "east");
        assert_eq!(
            a.endpoints()[1].chat_url(),
            "https://x.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions"
        );
        assert_eq!(a.endpoints()[1].model(), "gpt4o-prod");
        // Limits add up; the fingerprint names each model once.
        assert_eq!(a.limits().requests_per_minute, Some(150));
        assert_eq!(a.limits().tokens_per_minute, Some(20_000));
        assert_eq!(a.fingerprint().split('/').nth(1), Some("gpt-4o+gpt4o-prod"));
        let one = OpenAiAnalyzer::new(&settings(), SecretString::from("k")).unwrap();
        assert_eq!(one.primary().name(), "127.0.0.1:9");
        assert_eq!(one.fingerprint().split('/').nth(1), Some("gpt-4o"));
    }

    #[test]
    fn a_budget_is_ignored_only_well_past_it() {
        assert!(!ignores_budget(64, 64));
        assert!(!ignores_budget(74, 64), "rounding");
        assert!(ignores_budget(80, 64));
        assert!(!ignores_budget(3, 1));
        assert!(ignores_budget(40, 1));
    }
}
