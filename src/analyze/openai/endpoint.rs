//! One endpoint of the provider: its connection, its own rate limits, how
//! its server is asked for JSON and for a token budget (learnt, see
//! [`negotiate`](super::negotiate)), and what it has done (for `/metrics`).
//! The [`Router`](super::router::Router) decides which endpoint takes a call.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;

use super::Request;
use super::client::{Answer, CallError, Connection};
use super::limits::{Limits, LimitsSnapshot};
use super::models;
use super::negotiate::{BudgetParameter, EndpointMemory, StructuredMode};
use super::request::{RequestShape, body};
use crate::analyze::LlmUsage;
use crate::config::{ModelPrice, OpenAiSettings, ResolvedEndpoint, TokenParameter, TopicSettings};

/// A request's static prefix in one mode, and its rate-limit tokens.
struct Prefix {
    text: String,
    fixed_tokens: u32,
}

/// The shape requests have now, with their prefixes rendered.
struct Shaped {
    shape: RequestShape,
    single: Prefix,
    /// For `conversations_per_request` > 1.
    packed: Option<(u32, Prefix)>,
}

impl Shaped {
    fn new(shape: RequestShape, per_request: u32) -> Self {
        let prefix = |n: u32| Prefix {
            text: shape.prefix(n),
            fixed_tokens: shape.fixed_tokens(n),
        };
        Self {
            single: prefix(1),
            packed: (per_request > 1).then(|| (per_request, prefix(per_request))),
            shape,
        }
    }

    fn prefix(&self, conversations: u32) -> &Prefix {
        match &self.packed {
            Some((_, p)) if conversations > 1 => p,
            _ => &self.single,
        }
    }
}

/// A request as one endpoint sends it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: String,
    /// Rate-limit tokens: the prompt as counted, plus the reply's budget.
    pub tokens: u32,
    /// The reply's budget.
    pub reply_tokens: u32,
    /// The modes it was rendered in (a refusal steps down from these).
    pub structured: StructuredMode,
    pub budget: BudgetParameter,
}

/// What one endpoint has done since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EndpointCounters {
    /// Requests sent (probes included).
    pub requests: u64,
    /// Requests that got no answer, or a 5xx, 408 or 409.
    pub unavailable: u64,
    pub rate_limited: u64,
    /// Times it was cooled down after failing.
    pub cooldowns: u64,
    /// What its answers were billed (tokens, cost).
    pub usage: LlmUsage,
}

pub struct Endpoint {
    name: String,
    priority: u32,
    weight: u32,
    model: String,
    price: Option<ModelPrice>,
    connection: Connection,
    limits: Limits,
    /// Its identity in the database (`llm-endpoints-v1`): what it learns
    /// holds for this URL and model.
    memory_key: String,
    /// Whether its structured mode may step down (`structured_output`).
    negotiable_format: bool,
    /// Whether its budget parameter may switch (`token_parameter = "auto"`).
    auto_budget: bool,
    shaped: RwLock<Shaped>,
    per_request: u32,
    counters: Mutex<EndpointCounters>,
    /// What it last learnt or recalled: a budget parameter learnt to be the
    /// honoured one is never switched away from (no flapping).
    learned: Mutex<Option<EndpointMemory>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.connection.chat_url())
            .field("model", &self.model)
            .finish()
    }
}

impl Endpoint {
    pub fn new(
        resolved: &ResolvedEndpoint,
        settings: &OpenAiSettings,
        topics: &[TopicSettings],
        client: reqwest::Client,
        key: SecretString,
    ) -> Result<Self, super::OpenAiError> {
        let connection = Connection::new(
            client,
            &resolved.base_url,
            resolved.api_version.as_deref(),
            resolved.auth,
            key,
            Duration::from_secs(settings.timeout_seconds.max(1)),
        )?;
        let shape =
            RequestShape::new(settings, &resolved.model, &resolved.base_url).with_topics(topics);
        let per_request = settings.conversations_per_request.max(1);
        let largest_request = if per_request > 1 {
            shape.fixed_tokens(per_request) + per_request * (settings.max_transcript_tokens + 8)
        } else {
            shape.fixed_tokens(1) + settings.max_transcript_tokens + 64
        };
        Ok(Self {
            memory_key: format!("{} {}", connection.chat_url(), resolved.model),
            name: resolved.name.clone(),
            priority: resolved.priority,
            weight: resolved.weight.max(1),
            model: resolved.model.clone(),
            price: models::price(&resolved.model, &resolved.prices),
            limits: Limits::new(
                resolved.requests_per_minute,
                resolved.tokens_per_minute,
                largest_request,
                Duration::from_secs(settings.max_retry_wait_seconds),
            ),
            connection,
            negotiable_format: settings.structured_output,
            auto_budget: settings.token_parameter == TokenParameter::Auto,
            shaped: RwLock::new(Shaped::new(shape, per_request)),
            per_request,
            counters: Mutex::new(EndpointCounters::default()),
            learned: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn priority(&self) -> u32 {
        self.priority
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn price(&self) -> Option<ModelPrice> {
        self.price
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn chat_url(&self) -> &str {
        self.connection.chat_url()
    }

    pub fn memory_key(&self) -> &str {
        &self.memory_key
    }

    fn shaped(&self) -> std::sync::RwLockReadGuard<'_, Shaped> {
        self.shaped.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request shape in force (its structured mode and budget parameter).
    pub fn shape(&self) -> RequestShape {
        self.shaped().shape.clone()
    }

    pub fn structured(&self) -> StructuredMode {
        self.shaped().shape.structured()
    }

    pub fn budget(&self) -> BudgetParameter {
        self.shaped().shape.budget()
    }

    /// Rate-limit tokens of a request without its transcript.
    pub fn fixed_tokens(&self, conversations: u32) -> u32 {
        self.shaped().prefix(conversations).fixed_tokens
    }

    /// Tokens a reply of `conversations` results may use.
    pub fn reply_tokens(&self, conversations: u32) -> u32 {
        self.shaped().shape.reply_tokens(conversations)
    }

    /// Rate-limit tokens of `request` on this endpoint.
    pub fn tokens(&self, request: &Request) -> u32 {
        self.fixed_tokens(request.conversations) + request.content_tokens
    }

    /// `request` as this endpoint sends it now.
    pub fn render(&self, request: &Request) -> Rendered {
        let shaped = self.shaped();
        let prefix = shaped.prefix(request.conversations);
        Rendered {
            body: body(&prefix.text, &request.user, &request.follow_up),
            tokens: prefix.fixed_tokens + request.content_tokens,
            reply_tokens: shaped.shape.reply_tokens(request.conversations),
            structured: shaped.shape.structured(),
            budget: shaped.shape.budget(),
        }
    }

    fn reshape(&self, structured: StructuredMode, budget: BudgetParameter) {
        let mut shaped = self.shaped.write().unwrap_or_else(PoisonError::into_inner);
        let shape = shaped.shape.clone().with_mode(structured, budget);
        *shaped = Shaped::new(shape, self.per_request);
    }

    /// After the server refused `from` (the mode a request was sent in):
    /// the next mode, now in force, and what to remember. `None` when
    /// another call already stepped down from it (nothing to do but send
    /// again), when there is nothing below, or when the mode is not to be
    /// negotiated (`structured_output = false`).
    pub fn step_down(&self, from: StructuredMode, reason: &str) -> Option<EndpointMemory> {
        if !self.negotiable_format {
            return None;
        }
        let mut shaped = self.shaped.write().unwrap_or_else(PoisonError::into_inner);
        if shaped.shape.structured() != from {
            return None;
        }
        let next = from.fallback()?;
        let shape = shaped.shape.clone().with_mode(next, shaped.shape.budget());
        *shaped = Shaped::new(shape, self.per_request);
        drop(shaped);
        tracing::warn!(
            endpoint = %self.name,
            refused = from.describe(),
            now = next.describe(),
            "the server refused the structured-output mode; stepping down (remembered for this endpoint)"
        );
        Some(self.remember(reason))
    }

    /// After the server ignored or refused `from` as the token budget's
    /// parameter: the other one, now in force (under `token_parameter =
    /// "auto"` only, and once: `None` if it was switched already).
    pub fn switch_budget(&self, from: BudgetParameter, reason: &str) -> Option<EndpointMemory> {
        if !self.auto_budget {
            return None;
        }
        let mut shaped = self.shaped.write().unwrap_or_else(PoisonError::into_inner);
        if shaped.shape.budget() != from {
            return None;
        }
        if self
            .learned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|m| m.budget_parameter == Some(from))
        {
            // It was learnt to be the better one: no flapping between the two.
            return None;
        }
        let shape = shaped
            .shape
            .clone()
            .with_mode(shaped.shape.structured(), from.other());
        *shaped = Shaped::new(shape, self.per_request);
        drop(shaped);
        tracing::warn!(
            endpoint = %self.name,
            ignored = from.name(),
            now = from.other().name(),
            "the server does not honour the token budget's parameter; switching (remembered for this endpoint)"
        );
        Some(self.remember(reason))
    }

    /// What the endpoint knows now, to store.
    fn remember(&self, reason: &str) -> EndpointMemory {
        let memory = EndpointMemory {
            structured: self.negotiable_format.then(|| self.structured()),
            budget_parameter: self.auto_budget.then(|| self.budget()),
            learned_at: chrono::Utc::now(),
            reason: crate::model::truncate_chars(&self.connection.redact(reason.to_string()), 300),
        };
        *self.learned.lock().unwrap_or_else(PoisonError::into_inner) = Some(memory.clone());
        memory
    }

    /// Starts from what an earlier run learnt (within what the settings
    /// allow to negotiate).
    pub fn recall(&self, memory: &EndpointMemory) {
        let structured = match memory.structured {
            Some(m) if self.negotiable_format => m,
            _ => self.structured(),
        };
        let budget = match memory.budget_parameter {
            Some(b) if self.auto_budget => b,
            _ => self.budget(),
        };
        if (structured, budget) != (self.structured(), self.budget()) {
            tracing::info!(
                endpoint = %self.name,
                structured = structured.describe(),
                budget = budget.name(),
                learned_at = %memory.learned_at,
                "starting from what the endpoint answered before"
            );
        }
        self.reshape(structured, budget);
        *self.learned.lock().unwrap_or_else(PoisonError::into_inner) = Some(memory.clone());
    }

    /// Sets the modes outright (`check` probing from the top).
    pub fn set_modes(&self, structured: StructuredMode, budget: BudgetParameter) {
        self.reshape(structured, budget);
    }

    /// What is known now, for `check` to store after probing.
    pub fn memory(&self, reason: &str) -> EndpointMemory {
        self.remember(reason)
    }

    /// Sends a chat-completions body and learns from the answer's headers.
    pub async fn send(&self, body: String, cap: usize) -> Result<Answer, CallError> {
        self.count(|c| c.requests += 1);
        let answer = self.connection.chat(body, cap).await?;
        self.limits.observe(&answer.headers);
        Ok(answer)
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut EndpointCounters)) {
        f(&mut self.counters.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn counters(&self) -> EndpointCounters {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn limits_snapshot(&self) -> LimitsSnapshot {
        self.limits.snapshot()
    }
}
