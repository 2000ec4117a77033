//! The LLM analyzer: one combined chat-completions call per conversation to
//! any OpenAI-compatible API (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp
//! server), paced by [`limits`], retried with backoff, accounted per call.

pub mod batch;
pub mod limits;
pub mod models;
mod pack;
pub mod prompt;
pub mod reply;
pub mod request;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::{AnalyzeError, FailureKind, FatalKind, LlmUsage, Outcome, estimate};
use crate::config::{AuthStyle, ModelPrice, OpenAiSettings, TopicSettings};
use crate::model::Conversation;
use crate::privacy::{self, Counts, Redactor};
use limits::{Announced, Limits, LimitsSnapshot};
use pack::Packer;
use reply::ReplyError;
use request::{RequestShape, json_string};

#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error(
        "the OpenAI analyzer needs an API key in the environment variable {var} (set it, or use --analyzer lexicon)"
    )]
    MissingKey { var: String },
    #[error("invalid analyzer.openai.base_url {url:?}: {reason}")]
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

/// Base of the exponential backoff, and its ceiling.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// 429s do not use up `max_retries` (the pool pause handles them), but a
/// conversation gives up after this many.
const MAX_RATE_LIMITED: u32 = 50;

struct Inner {
    /// Identifies the topic list the model picks from (part of the fingerprint).
    topics: String,
    /// The names a reply's `topic` must be one of.
    topic_names: Vec<String>,
    client: reqwest::Client,
    url: String,
    key: SecretString,
    auth: AuthStyle,
    model: String,
    price: Option<ModelPrice>,
    settings: OpenAiSettings,
    /// Everything in the request body before the transcript, pre-serialised:
    /// the static prefix is identical bytes on every call.
    body_prefix: String,
    /// Rate-limit tokens of the request without its transcript.
    fixed_tokens: u32,
    /// Tokens the reply may use (reasoning included): billed at most.
    reply_tokens: u32,
    limits: Limits,
    /// Gathers conversations into packed requests
    /// (`conversations_per_request` > 1).
    packer: Option<Packer>,
    shape: RequestShape,
}

/// The OpenAI-compatible analyzer. Cheap to clone: one instance (one HTTP
/// connection pool, one set of limiters) serves the whole pool.
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
            .field("url", &self.inner.url)
            .field("model", &self.inner.model)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// One request: its body and its rate-limit tokens.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: String,
    pub tokens: u32,
}

/// How one HTTP attempt ended.
enum Attempt<T> {
    Done(reply::Parsed<T>),
    /// Retry after the server's `Retry-After` when it gave one, else after
    /// the usual backoff; `kind` is the failure if retries run out.
    Retry {
        kind: FailureKind,
        reason: String,
        after: Option<Duration>,
    },
    /// Retry once the pool pause (already set) is over.
    RateLimited(String),
    Fatal(FatalKind, String),
    Failed(FailureKind, String),
}

impl<T> Attempt<T> {
    fn retry(kind: FailureKind, reason: String) -> Self {
        Attempt::Retry {
            kind,
            reason,
            after: None,
        }
    }
}

/// Each backoff is at least this many times the one before (as it really
/// was, pool pauses included).
const GAP_GROWTH: f64 = 1.25;

/// Characters of an invalid reply quoted back in a re-ask.
const REASK_REPLY_CHARS: usize = 2000;
/// The most tokens a re-ask adds (the quoted reply, the note, the framing).
const REASK_EXTRA_TOKENS: u64 = REASK_REPLY_CHARS as u64 / 4 + 80;

impl OpenAiAnalyzer {
    pub const NAME: &'static str = "openai";

    /// Reads the key from the environment variable the settings name; the
    /// model picks each conversation's topic from `topics`.
    pub fn from_env(
        settings: &OpenAiSettings,
        topics: &[TopicSettings],
    ) -> Result<Self, OpenAiError> {
        let key = std::env::var(&settings.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| OpenAiError::MissingKey {
                var: settings.api_key_env.clone(),
            })?;
        Self::with_topics(settings, SecretString::from(key), topics)
    }

    /// An analyzer picking from the default topics.
    pub fn new(settings: &OpenAiSettings, api_key: SecretString) -> Result<Self, OpenAiError> {
        Self::with_topics(settings, api_key, &TopicSettings::defaults())
    }

    pub fn with_topics(
        settings: &OpenAiSettings,
        api_key: SecretString,
        topics: &[TopicSettings],
    ) -> Result<Self, OpenAiError> {
        let base = settings.base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| OpenAiError::InvalidBaseUrl {
            url: settings.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(OpenAiError::InvalidBaseUrl {
                url: settings.base_url.clone(),
                reason: "must be http or https".into(),
            });
        }
        let mut url = format!("{base}/chat/completions");
        if let Some(v) = &settings.api_version {
            url.push_str("?api-version=");
            url.push_str(v);
        }
        // reqwest is built without a default crypto provider; install ring
        // once for the process (a no-op when one is already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Until `with_privacy` says otherwise, the default policy: redacted
        // unless the server is on this machine.
        let defaults = crate::config::PrivacySettings::default();
        let redactor = privacy::applies(defaults.redact, &settings.base_url)
            .then(|| Redactor::new(&defaults))
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(4096)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OpenAiError::Client(e.to_string()))?;

        let shape = RequestShape::new(settings).with_topics(topics);
        let body_prefix = shape.prefix(1);
        let fixed_tokens = shape.fixed_tokens(1);
        let max_request_tokens = fixed_tokens + settings.max_transcript_tokens + 64;
        let per_request = settings.conversations_per_request.max(1);
        let packer = (per_request > 1).then(|| {
            Packer::new(
                per_request as usize,
                shape.prefix(per_request),
                shape.fixed_tokens(per_request),
            )
        });
        let largest_request = if per_request > 1 {
            shape.fixed_tokens(per_request) + per_request * (settings.max_transcript_tokens + 8)
        } else {
            max_request_tokens
        };
        Ok(Self {
            inner: Arc::new(Inner {
                topics: crate::analyze::topics::Topics::new(topics)
                    .fingerprint()
                    .to_string(),
                topic_names: topics.iter().map(|t| t.name.clone()).collect(),
                client,
                url,
                key: api_key,
                auth: settings.auth,
                model: settings.model.clone(),
                price: models::price(&settings.model, &settings.prices),
                body_prefix,
                fixed_tokens,
                reply_tokens: shape.reply_tokens(1),
                limits: Limits::new(
                    settings.requests_per_minute,
                    settings.tokens_per_minute,
                    largest_request,
                    Duration::from_secs(settings.max_retry_wait_seconds),
                ),
                packer,
                shape,
                settings: settings.clone(),
            }),
            redactor,
        })
    }

    /// This analyzer under the policy of `settings`: whether transcripts
    /// are redacted (`redact`, against this analyzer's base URL) and how.
    pub fn with_privacy(
        mut self,
        settings: &crate::config::PrivacySettings,
    ) -> Result<Self, OpenAiError> {
        self.redactor = privacy::applies(settings.redact, &self.inner.settings.base_url)
            .then(|| Redactor::new(settings))
            .transpose()?;
        Ok(self)
    }

    /// The policy transcripts are redacted under, when they are.
    pub fn redactor(&self) -> Option<&Redactor> {
        self.redactor.as_ref()
    }

    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The topics a reply must pick from.
    pub fn topic_names(&self) -> &[String] {
        &self.inner.topic_names
    }

    /// With redaction, its policy's fingerprint too: an analysis made from
    /// other text (redacted otherwise, or not at all) is not reused. Without
    /// it, the fingerprint analyses were stored under before redaction
    /// existed.
    pub fn fingerprint(&self) -> String {
        let mut fingerprint = format!(
            "{}/{}/{}/topics-{}",
            Self::NAME,
            self.inner.model,
            prompt::PROMPT_VERSION,
            self.inner.topics
        );
        if let Some(r) = &self.redactor {
            fingerprint.push('/');
            fingerprint.push_str(r.fingerprint());
        }
        fingerprint
    }

    pub fn limits(&self) -> LimitsSnapshot {
        self.inner.limits.snapshot()
    }

    /// The transcript one conversation is sent as: the one place text
    /// becomes what a request carries (sync, packed, batch files, retries
    /// and re-asks all start from it), so the one place it is redacted,
    /// before long messages are trimmed (a number cut in half would not be
    /// recognised). Also what was redacted.
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

    /// The request body and its rate-limit token count for one conversation.
    pub fn request(&self, conversation: &Conversation) -> Request {
        let (transcript, _) = self.transcript(conversation);
        Request {
            tokens: self.inner.fixed_tokens + prompt::estimate_tokens(&transcript),
            body: request::body(&self.inner.body_prefix, &transcript),
        }
    }

    /// The most analysing one conversation can cost, in US dollars: every
    /// attempt `max_retries` allows, each a re-ask as long as one gets, each
    /// reply using its whole budget; 0 for an unpriced model. (429s are not
    /// billed.)
    pub fn worst_case_cost(&self, conversation: &Conversation) -> f64 {
        let Some(price) = self.inner.price else {
            return 0.0;
        };
        let reply = u64::from(self.inner.reply_tokens);
        let prompt =
            u64::from(self.request(conversation).tokens).saturating_sub(reply) + REASK_EXTRA_TOKENS;
        let attempts = u64::from(self.inner.settings.max_retries) + 1;
        let usage = LlmUsage {
            prompt_tokens: prompt * attempts,
            completion_tokens: reply * attempts,
            ..LlmUsage::default()
        };
        price.cost(&usage, false)
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

    pub fn price(&self) -> Option<ModelPrice> {
        self.inner.price
    }

    pub fn conversations_per_request(&self) -> u32 {
        self.inner.settings.conversations_per_request.max(1)
    }

    /// What sending `conversations` would take, per conversation: packed
    /// `conversations_per_request` at a time, as [`Self::analyze`] sends them
    /// (a packed request's tokens shared evenly among its conversations),
    /// and what would be redacted from it.
    pub fn estimate_tokens<'a>(
        &self,
        conversations: impl IntoIterator<Item = &'a Conversation>,
    ) -> Vec<(estimate::Tokens, Counts)> {
        let (transcripts, counts): (Vec<String>, Vec<Counts>) = conversations
            .into_iter()
            .map(|c| self.transcript(c))
            .unzip();
        let per_request = self.conversations_per_request() as usize;
        let shape = &self.inner.shape;
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
            let reply = u64::from(shape.reply_tokens(shape_of));
            let rate_limit = u64::from(shape.fixed_tokens(shape_of)) + u64::from(user_tokens);
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
        let base = request.body.strip_suffix("]}").unwrap_or(&request.body);
        let body = format!(
            "{base},{{\"role\":\"assistant\",\"content\":{}}},{{\"role\":\"user\",\"content\":{}}}]}}",
            json_string(&reply),
            json_string(&note)
        );
        let extra = prompt::estimate_tokens(&reply) + prompt::estimate_tokens(&note) + 8;
        Request {
            body,
            tokens: request.tokens + extra,
        }
    }

    /// Analyses one conversation: paced, retried, cancellable. With
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
        let model = self.inner.model.clone();
        let (result, usage) = self
            .call(self.request(conversation), cancel, |content| {
                reply::validate(content, Self::NAME, &model, self.topic_names())
            })
            .await;
        Outcome { result, usage }
    }

    /// Sends `first` until `read` accepts a reply: paced by the limits,
    /// retried with backoff, an invalid reply re-asked with a note,
    /// cancellable; the usage says what it all cost.
    async fn call<T>(
        &self,
        first: Request,
        cancel: &CancellationToken,
        read: impl Fn(&str) -> Result<T, ReplyError>,
    ) -> (Result<T, AnalyzeError>, LlmUsage) {
        // What is sent next: the request, or a re-ask after an invalid reply.
        let mut next: Option<Request> = None;
        let mut usage = LlmUsage::default();
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        // The last pause between a failure and its retry that we chose (no
        // Retry-After), as it really was: a pool-wide 429 pause can stretch
        // it, and each such pause must be longer than the one before, or the
        // provider sees retries at a constant interval, not a backoff.
        let mut last_gap = Duration::ZERO;
        let mut gap_from: Option<std::time::Instant> = None;
        let result = loop {
            if cancel.is_cancelled() {
                break Err(AnalyzeError::Cancelled);
            }
            let request = next.as_ref().unwrap_or(&first);
            let tokens = request.tokens;
            tokio::select! {
                _ = self.inner.limits.acquire(tokens) => {}
                _ = cancel.cancelled() => break Err(AnalyzeError::Cancelled),
            }
            if usage.requests > 0 {
                usage.retries += 1;
            }
            usage.requests += 1;
            if let Some(from) = gap_from.take() {
                last_gap = from.elapsed();
            }
            let attempt = tokio::select! {
                a = self.attempt(&request.body, &read) => a,
                _ = cancel.cancelled() => break Err(AnalyzeError::Cancelled),
            };
            let (retry_kind, retry_reason, wait) = match attempt {
                Attempt::Done(parsed) => {
                    self.bill(&mut usage, &parsed, tokens);
                    match parsed.analysis {
                        Ok(analysis) => break Ok(analysis),
                        Err(e) => {
                            // The server is fine; the answer was not. Say what
                            // was wrong (bounded by `max_retries`), no backoff.
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
                            (kind, reason, next.is_some().then_some(Duration::ZERO))
                        }
                    }
                }
                Attempt::RateLimited(reason) => {
                    usage.rate_limited += 1;
                    rate_limited += 1;
                    if rate_limited >= MAX_RATE_LIMITED {
                        break Err(AnalyzeError::failed(
                            FailureKind::RateLimited,
                            format!("rate limited {rate_limited} times: {reason}"),
                        ));
                    }
                    // The pool pause is already set; no backoff of our own.
                    continue;
                }
                Attempt::Retry {
                    kind,
                    reason,
                    after,
                } => (kind, reason, after.map(|d| self.inner.limits.clamp_wait(d))),
                Attempt::Fatal(kind, reason) => break Err(AnalyzeError::fatal(kind, reason)),
                Attempt::Failed(kind, reason) => break Err(AnalyzeError::failed(kind, reason)),
            };
            failures += 1;
            if failures > self.inner.settings.max_retries {
                break Err(AnalyzeError::failed(retry_kind, retry_reason));
            }
            tracing::debug!(attempt = failures, reason = %self.redact(retry_reason), "retrying");
            // The server's Retry-After when it gave one, else our backoff,
            // longer than the last one was.
            let wait = wait.unwrap_or_else(|| {
                gap_from = Some(std::time::Instant::now());
                backoff(failures)
                    .max(last_gap.mul_f64(GAP_GROWTH))
                    .min(self.inner.limits.max_wait())
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => break Err(AnalyzeError::Cancelled),
            }
        };
        if let Some(price) = self.inner.price {
            usage.cost_usd = price.cost(&usage, false);
        }
        // A reason quotes the provider (error bodies, a redirect's location),
        // which may echo the key: it never leaves here with it.
        let result = result.map_err(|e| match e {
            AnalyzeError::Failed { kind, detail } => {
                AnalyzeError::failed(kind, self.redact(detail))
            }
            AnalyzeError::Fatal { kind, detail } => AnalyzeError::fatal(kind, self.redact(detail)),
            other => other,
        });
        (result, usage)
    }

    /// Adds what one answered request was billed for; without `usage` in
    /// the reply, the estimate (the prompt as counted for the limits, the
    /// reply's characters / 4).
    fn bill<T>(&self, usage: &mut LlmUsage, parsed: &reply::Parsed<T>, tokens: u32) {
        match parsed.usage {
            Some(u) => {
                usage.bill(u.prompt_tokens, u.completion_tokens);
                usage.cached_tokens += u.prompt_tokens_details.cached_tokens;
                usage.reasoning_tokens += u.completion_tokens_details.reasoning_tokens;
            }
            None => usage.bill(
                u64::from(tokens.saturating_sub(self.inner.reply_tokens)),
                parsed.content_chars.div_ceil(4) as u64,
            ),
        }
    }

    /// The chat-completions URL requests go to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// One cheap request (a one-token completion of a one-word prompt, not
    /// paced, not retried) to see that the endpoint, the key and the model
    /// answer, and what limits the provider announces.
    pub async fn probe(&self) -> Result<Probe, ProbeError> {
        let inner = &self.inner;
        let mut request = inner
            .client
            .post(&inner.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(inner.shape.probe_body());
        request = match inner.auth {
            AuthStyle::Bearer => request.bearer_auth(inner.key.expose_secret()),
            AuthStyle::ApiKey => request.header("api-key", inner.key.expose_secret()),
        };
        let started = std::time::Instant::now();
        let response = request.send().await.map_err(|e| ProbeError::Unreachable {
            url: inner.url.clone(),
            detail: without_url(&e),
        })?;
        let status = response.status();
        let announced = Announced::from_headers(response.headers());
        let elapsed = started.elapsed();
        if status.is_success() {
            return Ok(Probe {
                status: status.as_u16(),
                elapsed,
                announced,
            });
        }
        let detail = if status.is_redirection() {
            "a redirect (not followed)".to_string()
        } else {
            // Enough for an error message, whatever the server sends.
            let mut response = response;
            let mut body = Vec::new();
            while body.len() < 64 * 1024 {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            let (code, message) = api_error(&body);
            self.redact(format!("{code} {message}").trim().to_string())
        };
        Err(ProbeError::Refused {
            url: inner.url.clone(),
            status: status.as_u16(),
            detail,
            announced,
        })
    }

    /// `text` with every occurrence of the API key replaced.
    fn redact(&self, text: String) -> String {
        let key = self.inner.key.expose_secret();
        if key.is_empty() || !text.contains(key) {
            return text;
        }
        text.replace(key, "[redacted]")
    }

    /// One HTTP request and what to do about its answer.
    async fn attempt<T>(
        &self,
        body: &str,
        read: impl Fn(&str) -> Result<T, ReplyError>,
    ) -> Attempt<T> {
        let inner = &self.inner;
        let mut request = inner
            .client
            .post(&inner.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        request = match inner.auth {
            AuthStyle::Bearer => request.bearer_auth(inner.key.expose_secret()),
            AuthStyle::ApiKey => request.header("api-key", inner.key.expose_secret()),
        };
        let started = std::time::Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (kind, what) = if e.is_timeout() {
                    (FailureKind::Timeout, "timed out")
                } else {
                    (FailureKind::Connection, "connection failed")
                };
                return Attempt::retry(kind, format!("request {what}: {}", without_url(&e)));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        inner.limits.observe(&headers);
        if status.is_redirection() {
            // Never followed: a redirect would carry the key (Azure's
            // `api-key` header survives reqwest's cross-host redirects).
            // Its query (which may carry anything) is left out.
            let location = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(
                    || "nowhere".to_string(),
                    |l| {
                        let shown = match reqwest::Url::parse(l) {
                            Ok(mut url) => {
                                url.set_query(None);
                                url.to_string()
                            }
                            Err(_) => l.split('?').next().unwrap_or_default().to_string(),
                        };
                        crate::model::truncate_chars(&shown, 200)
                    },
                );
            return Attempt::Fatal(
                FatalKind::Redirected,
                format!(
                    "{} answered HTTP {} redirecting to {location}; redirects are not followed \
                 (set analyzer.openai.base_url to the final address)",
                    inner.url,
                    status.as_u16()
                ),
            );
        }
        let bytes = match read_capped(response, inner.settings.max_response_bytes).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Attempt::Failed(
                    FailureKind::ReplyTooLarge,
                    format!(
                        "the reply is larger than {} bytes (analyzer.openai.max_response_bytes)",
                        inner.settings.max_response_bytes
                    ),
                );
            }
            Err(BodyError::Cut(e)) => {
                return Attempt::retry(
                    FailureKind::Connection,
                    format!("response cut off: {}", without_url(&e)),
                );
            }
        };
        tracing::debug!(
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            bytes = bytes.len(),
            "chat completion"
        );
        let error_text = || api_error(&bytes);
        // Retry-After is honoured on every retryable status, as the OpenAI
        // SDKs do (read only for an error: most answers are successes).
        let after = || limits::retry_after(&headers);
        match status {
            s if s.is_success() => Attempt::Done(reply::parse(&bytes, read)),
            StatusCode::TOO_MANY_REQUESTS => {
                let (code, message) = error_text();
                if code.contains("insufficient_quota") {
                    return Attempt::Fatal(
                        FatalKind::QuotaExhausted,
                        format!("the provider says the quota is exhausted: {message}"),
                    );
                }
                let wait = after().unwrap_or_else(|| backoff(1).max(Duration::from_secs(1)));
                inner.limits.pause_for(wait);
                Attempt::RateLimited(format!("429 {message}"))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let (_, message) = error_text();
                Attempt::Fatal(
                    FatalKind::KeyRejected,
                    format!("the API key was rejected ({}): {message}", status.as_u16()),
                )
            }
            StatusCode::NOT_FOUND => {
                let (_, message) = error_text();
                Attempt::Fatal(
                    FatalKind::NotFound,
                    format!(
                        "{} answered 404 (wrong base_url or model?): {message}",
                        inner.url
                    ),
                )
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT => Attempt::Retry {
                kind: FailureKind::ServerError,
                reason: format!("HTTP {}", status.as_u16()),
                after: after(),
            },
            s if s.is_server_error() => Attempt::Retry {
                kind: FailureKind::ServerError,
                reason: format!("HTTP {}", s.as_u16()),
                after: after(),
            },
            s => {
                let (_, message) = error_text();
                Attempt::Failed(
                    FailureKind::Rejected,
                    format!("request rejected (HTTP {}): {message}", s.as_u16()),
                )
            }
        }
    }
}

/// Why a reply body could not be read whole.
enum BodyError {
    TooLarge,
    Cut(reqwest::Error),
}

/// Reads a reply body, refusing one over `cap` bytes before it is held.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Cut)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Exponential backoff with jitter: a random wait between 3/4 of and the
/// whole of min(cap, base × 2^attempt). The jitter spreads a pool's retries;
/// keeping it to a quarter makes each wait longer than the one before (a
/// full-jitter wait can come out shorter, which looks like no backoff at all
/// to a provider).
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP)
        .as_secs_f64();
    Duration::from_secs_f64(rand::rng().random_range(ceiling * 0.75..=ceiling))
}

/// A reqwest error without the URL (which may carry an Azure key or secrets
/// in query parameters on some deployments).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// `(code or type, message)` of an OpenAI-style error body.
fn api_error(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let e = &v["error"];
    let code = [&e["code"], &e["type"]]
        .iter()
        .filter_map(|x| x.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let message = e["message"]
        .as_str()
        .map(|m| crate::model::truncate_chars(m, 200))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let Request {
            body: one,
            tokens: t1,
        } = a.request(&conversation("no power since morning"));
        let two = a.request(&conversation("\"quotes\" and\nnewlines")).body;
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        serde_json::from_str::<serde_json::Value>(&two).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["temperature"], 0);
        assert_eq!(v["response_format"]["json_schema"]["strict"], true);
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "C: no power since morning");
        let common = one
            .bytes()
            .zip(two.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            common >= one.find("\"role\":\"user\"").unwrap(),
            "the system part is shared"
        );
        assert!(t1 > a.inner.fixed_tokens);
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
        // A number at the very end of a long message, which trimming would
        // cut in half, and a name from the sender.
        let long = format!("{} call 9841234567", "no power ".repeat(300));
        let mut c = conversation(&long);
        c.messages[0].sender_name = Some("Sita Sharma".into());
        c.messages[0].text.push_str(" - Sita");
        let body = on.request(&c).body;
        assert!(
            !body.contains("9841234567") && !body.contains("Sita"),
            "{body}"
        );
        assert!(
            body.contains("<PHONE_1>") && body.contains("<NAME_1>"),
            "{body}"
        );
        assert!(local.request(&c).body.contains("Sita"));
        // A number where trimming would cut the message (its first 798
        // characters are kept): redacted whole first, nothing of it is sent.
        let cut = format!("{} 9841234567 {}", "x".repeat(793), "y".repeat(2000));
        let body = on.request(&conversation(&cut)).body;
        assert!(!body.contains("98412"), "{body}");
        assert_eq!(
            on.fingerprint(),
            format!("{plain}/{}", on.redactor().unwrap().fingerprint())
        );
        // The default policy for a provider elsewhere is to redact.
        let remote = OpenAiAnalyzer::new(
            &OpenAiSettings {
                base_url: "https://api.openai.com/v1".into(),
                ..settings()
            },
            SecretString::from("k"),
        )
        .unwrap();
        assert!(remote.redactor().is_some());
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
            a.inner.url,
            "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        let body = a.request(&conversation("hi")).body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("response_format").is_none());
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP);
            assert!(d <= BACKOFF_BASE * 2u32.pow(attempt.min(10)));
        }
    }

    #[test]
    fn error_bodies_are_read() {
        let (code, message) = api_error(
            br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert!(code.contains("insufficient_quota"));
        assert_eq!(message, "You exceeded your current quota");
        let (code, message) = api_error(b"<html>bad gateway</html>");
        assert!(code.is_empty());
        assert!(message.contains("bad gateway"));
    }
}
