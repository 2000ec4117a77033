//! PowerPulse analyses customer-support chat exports for sentiment and
//! satisfaction.
//!
//! Module map:
//! - [`access`]: roles, bearer tokens (kept as hashes), the server's proof of a
//!   token, audit entries.
//! - [`model`]: messages, conversations and the analysis schema shared by all.
//! - [`config`]: layered settings (defaults, `config.toml`, environment).
//! - [`facets`]: a conversation's agent and language, read from its messages.
//! - [`ingest`]: streaming parsers (CSV, JSON, JSONL, XLSX) and the autoresponse
//!   filter; the `UploadActor` that drives them.
//! - [`analyze`]: the lexicon and OpenAI analyzers; the `AnalyzerActor` pool.
//! - [`store`]: the redb file (the only module that touches redb); the `StoreActor`.
//! - [`progress`]: per-upload state, cancellation; the `ProgressActor`.
//! - [`pipeline`]: one upload's journey through the actors; [`engine`] starts them all.
//! - [`http`]: the HTTP control endpoint over the engine.
//! - [`notify`]: webhook events when an upload ends; the `WebhookActor`.
//! - [`service`]: systemd integration of `serve` (readiness, watchdog).
//! - [`export`], [`report`]: export rows and the end-of-run summary; [`telemetry`]: logging.
//! - [`retention`]: which uploads `storage.retention_days` removes; [`spool`]: the
//!   files of uploads received over HTTP, kept only while they can be needed.
//! - [`privacy`]: personal data replaced by placeholders before text leaves the machine.
//! - [`search`]: full-text search of the stored conversations (tokens, queries, segments, ranking), and the `SearchIndexer`.
//! - [`alerts`]: days that stand out from a topic's or agent's own history; the `AlertActor`.

pub mod access;
pub mod alerts;
pub mod analyze;
pub mod config;
pub mod engine;
pub mod export;
pub mod facets;
pub mod http;
pub mod ingest;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod privacy;
pub mod progress;
pub mod report;
pub mod retention;
pub mod search;
pub mod service;
pub mod spool;
pub mod store;
pub mod telemetry;

/// The README's code examples compile (`cargo test` runs them as doctests).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
