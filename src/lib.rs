//! PowerPulse analyses customer-support chat exports for sentiment and
//! satisfaction.
//!
//! Module map:
//! - [`model`]: messages, conversations and the analysis schema shared by all.
//! - [`config`]: layered settings (defaults, `config.toml`, environment).
//! - [`ingest`]: streaming parsers (CSV, JSON, JSONL, XLSX) and the autoresponse
//!   filter; the `UploadActor` that drives them.
//! - [`analyze`]: the lexicon and OpenAI analyzers; the `AnalyzerActor` pool.
//! - [`store`]: the redb file (the only module that touches redb); the `StoreActor`.
//! - [`progress`]: per-upload state, cancellation; the `ProgressActor`.

pub mod analyze;
pub mod config;
pub mod engine;
pub mod export;
pub mod ingest;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod store;
pub mod telemetry;
