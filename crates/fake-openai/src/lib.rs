//! A fake OpenAI-compatible chat-completions server, owned by PowerPulse, so
//! the LLM analyzer's rate limiting, retries and accounting can be tested and
//! benchmarked over real HTTP on 127.0.0.1. It behaves like the real service
//! where a client can tell:
//!
//! - **Rate limits** per minute on requests and tokens, enforced
//!   continuously by token buckets refilling at limit/60 per second. OpenAI
//!   documents a bucket holding a whole minute; this one holds **six
//!   seconds' worth** (limit/10), because the real service enforces its
//!   limits over short windows and punishes a client that bursts a minute's
//!   quota at once. Over the limit: 429 with `retry-after-ms` (the exact wait
//!   until enough capacity is back), `retry-after` (whole seconds, rounded
//!   up) and an OpenAI-style error body; a 429 takes no quota. Every answer
//!   carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the
//!   limits configured, resets as Go durations (`12ms`, `1.5s`, `6m0s`).
//! - **Token counting** as OpenAI's limiter does ([`rate_limit_tokens`]).
//! - **Replies fitted to the request's JSON schema**, deterministic per
//!   conversation and seed, lightly content-aware ([`validate`] checks them).
//! - **Latency** (fixed, uniform or log-normal; never before a 429) and
//!   **faults**: 500, 503, dropped connections, truncated bodies, fenced
//!   JSON, refusals, hangs, non-JSON content and schema violations, each with
//!   its own probability ([`Faults`]).
//! - **Hostile answers**, scripted per request ([`Hostile`]): absurd
//!   `retry-after` values, redirects, oversized bodies, invalid content.
//! - **Today's models**: reasoning models ([`is_reasoning_model`]: `o1`,
//!   `o3`, `o4`, `gpt-5` but not its `chat` variants) refuse `max_tokens`
//!   and a `temperature` other than 1 with OpenAI's 400s, and spend
//!   [`reasoning_tokens`] by `reasoning_effort`, counted in
//!   `completion_tokens` and reported in
//!   `usage.completion_tokens_details.reasoning_tokens`. Every model takes
//!   `max_completion_tokens` (else `max_tokens`) as the budget of reasoning
//!   plus content: a reply over it stops there, `finish_reason` `length`,
//!   its content cut.
//! - **A local server** ([`ServerKind::LlamaCppPython`]): plays
//!   llama-cpp-python's OpenAI-compatible server, which answers
//!   `response_format` `json_schema` with a 500 carrying pydantic's
//!   "Input should be 'text' or 'json_object'", ignores
//!   `max_completion_tokens`, and follows the keys and types of
//!   `{"type": "json_object", "schema": …}`. Either kind follows a JSON
//!   schema spelled out in the system prompt when the request names none.
//! - **Prompt caching**: `usage.prompt_tokens_details.cached_tokens` is the
//!   longest prefix (whole 128-token blocks, at least 1,024 tokens) shared
//!   with a recent prompt, as OpenAI reports it.
//! - **Files and Batch APIs**: JSONL input files checked line by line (and
//!   against OpenAI's 200 MB / 50,000-request limits), batches that go
//!   `validating` → `in_progress` → `finalizing` → `completed`, or `failed`,
//!   `expired`, `cancelling` → `cancelled`, on the schedule and with the
//!   per-line faults of [`BatchConfig`], changeable mid-batch with
//!   [`FakeServer::update`]. A batch line's reply is the one the
//!   synchronous endpoint gives the same body. Batches take nothing from
//!   the synchronous rate limits.
//! - **Stats** ([`FakeServer::stats`] or `GET /stats`): requests, 429s,
//!   400s, tokens (cached and reasoning too), conversations answered more
//!   than once (synchronously or in batches), peak concurrency, requests
//!   that ignored a retry-after, keys and API versions seen, files uploaded,
//!   batches created and cancelled, batch lines answered and failed;
//!   [`FakeServer::batches`] lists every batch created.
//!
//! Routes, each under any prefix (`/v1`, Azure's `/openai/deployments/NAME`
//! with `?api-version=`, a proxy's path) or none:
//! `POST …/chat/completions`; `POST …/files` (multipart: `purpose` =
//! `batch`, `file`), `GET …/files/{id}`, `GET …/files/{id}/content`,
//! `DELETE …/files/{id}`; `POST …/batches` (`input_file_id`, `endpoint` =
//! `/v1/chat/completions`, `completion_window` = `24h`, `metadata`),
//! `GET …/batches` (newest first; `limit`, `after`), `GET …/batches/{id}`,
//! `POST …/batches/{id}/cancel`. And `GET /v1/models`, `GET /stats`.
//!
//! ```no_run
//! use std::time::Duration;
//! use fake_openai::{FakeConfig, FakeServer, Faults, Latency};
//!
//! let server = FakeServer::start(FakeConfig {
//!     latency: Latency::Fixed(Duration::from_millis(20)),
//!     requests_per_minute: Some(3_000),
//!     faults: Faults::uniform(0.05),
//!     ..Default::default()
//! })?;
//! // Point the client at server.base_url(), run it, then:
//! assert_eq!(server.stats().conversations_answered_more_than_once, 0);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Modules: `config` (what the fake does), `limits` (buckets and headers),
//! `schema` (reply generation and validation), `reply` (parameter checks and
//! the chat.completion with its usage), `cache` (prompt caching), `batch`
//! (files and batches, without HTTP), `stats` (counters), `server` (HTTP:
//! lifecycle and chat/completions), `batch_http` (HTTP: files and batches).

mod batch;
mod batch_http;
mod cache;
mod config;
mod limits;
mod reply;
mod schema;
mod server;
mod stats;

pub use config::{BatchConfig, FakeConfig, Faults, Hostile, Latency, ServerKind};
pub use limits::{go_duration, rate_limit_tokens};
pub use reply::{is_reasoning_model, reasoning_tokens};
pub use schema::validate;
pub use server::FakeServer;
pub use stats::Stats;

#[cfg(test)]
mod tests;
