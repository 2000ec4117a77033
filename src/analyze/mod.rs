//! Analyzers: turn one conversation into one [`Analysis`].
//!
//! Plain code, no actix: [`lexicon`] is the embedded offline analyzer and
//! [`openai`] the LLM one. [`Analyzer`] picks between them by configuration;
//! the `AnalyzerActor` pool (in [`actor`]) is thin wiring over it.

pub mod lexicon;
pub mod openai;

use serde::{Deserialize, Serialize};

use crate::model::{Analysis, Conversation};

/// Why one conversation could not be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyzeError {
    /// This conversation failed (bad reply after retries, refusal, …); the
    /// upload goes on and the conversation is recorded as `failed`.
    #[error("{0}")]
    Failed(String),
    /// Nothing more can succeed (quota exhausted, key rejected): the whole
    /// upload stops with this message.
    #[error("{0}")]
    Fatal(String),
    /// The upload was cancelled while this conversation was in flight.
    #[error("cancelled")]
    Cancelled,
}

/// What calling an LLM cost for one conversation (all zero for the lexicon).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmUsage {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl LlmUsage {
    pub fn add(&mut self, other: &LlmUsage) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.rate_limited += other.rate_limited;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// The outcome of analysing one conversation: the analysis or why not, and
/// what it cost.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<Analysis, AnalyzeError>,
    pub usage: LlmUsage,
}
