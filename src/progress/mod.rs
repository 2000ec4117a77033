//! Live state of every upload: stage, counts, LLM usage, ETA, and its
//! cancellation token.
//!
//! [`UploadProgress`] is plain code (events in, snapshot out); the
//! `ProgressActor` ([`actor`]) holds one per upload id, publishes each change
//! on a `tokio::sync::watch` channel (for SSE, the CLI bar and waiters) and
//! handles cancel requests.

pub mod actor;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::analyze::LlmUsage;
use crate::analyze::openai::router::ProviderOutage;
use crate::model::Stage;
use crate::store::OutcomeTally;

/// Errors kept in a snapshot, at most this many (the rest are counted).
const MAX_ERRORS: usize = 50;

/// What happened to an upload; sent by the pipeline to the `ProgressActor`.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    Stage(Stage),
    /// Parsing went on: totals so far.
    Parsed {
        messages: u64,
        conversations: u64,
        autoresponses: u64,
    },
    /// A row-level problem that did not stop the upload.
    Warning(String),
    /// One conversation has an outcome.
    Conversation(ConversationOutcome),
    /// An error that stops the upload (the final `Stage` follows).
    Error(String),
    /// A resumed upload starts from the outcomes an earlier run stored.
    Restored(OutcomeTally),
    /// Batch mode: where the upload's batches are.
    Batch(BatchProgress),
    /// The LLM provider is down and the upload waits for it (`None`: it
    /// answers again).
    Provider(Option<ProviderOutage>),
}

/// Batch mode (`analyzer.openai.mode = "batch"`): what the provider says
/// about the upload's current batches, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BatchProgress {
    /// The least advanced batch's status (`validating`, `in_progress`,
    /// `finalizing`, `completed`, `expired`, `cancelling`, `cancelled`,
    /// `failed`), or `preparing` while input files are uploaded.
    pub status: crate::analyze::openai::batch::BatchStatus,
    /// 1 for the first batches; follow-up batches of what failed count up.
    pub round: u32,
    /// The provider's batch ids.
    pub batch_ids: Vec<String>,
    /// Requests in the batches, and how many have finished or failed.
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone)]
pub enum ConversationOutcome {
    Analyzed(LlmUsage),
    Skipped,
    Failed { reason: String, usage: LlmUsage },
}

/// An upload's state as reported to users.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProgressSnapshot {
    pub upload_id: Uuid,
    pub filename: String,
    /// Same as `stage`; kept for clients of the original service.
    pub status: Stage,
    pub stage: Stage,
    pub total_conversations: u64,
    pub messages: u64,
    /// Conversations with an outcome (analysed, failed or skipped).
    pub processed: u64,
    pub analyzed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub autoresponses_filtered: u64,
    /// 0–100, over conversations once parsing is done.
    pub percent: f64,
    pub llm: LlmUsage,
    pub warnings: u64,
    pub errors: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub eta_seconds: Option<f64>,
    /// Batch mode only: the batches' state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchProgress>,
    /// While the LLM provider does not answer: since when, why, the next
    /// probe, and `message` (`provider unavailable: HTTP 503 since 12:04,
    /// next try 12:06`). The upload waits (its conversations are not failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderStatus>,
}

/// The provider's outage, as a progress snapshot shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProviderStatus {
    /// For people: `provider unavailable: HTTP 503 since 12:04, next try 12:06`.
    pub message: String,
    #[serde(flatten)]
    pub outage: ProviderOutage,
}

impl ProgressSnapshot {
    /// The state of an upload this process is not running, from its stored record.
    pub fn from_record(r: &crate::store::UploadRecord) -> Self {
        let processed = r.counts.processed();
        ProgressSnapshot {
            upload_id: r.id,
            filename: r.filename.clone(),
            status: r.status,
            stage: r.status,
            total_conversations: r.counts.conversations,
            messages: r.counts.messages,
            processed,
            analyzed: r.counts.analyzed,
            failed: r.counts.failed,
            skipped: r.counts.skipped_already_processed,
            autoresponses_filtered: r.counts.autoresponses_filtered,
            percent: if r.status == Stage::Completed {
                100.0
            } else if r.counts.conversations > 0 {
                processed as f64 * 100.0 / r.counts.conversations as f64
            } else {
                0.0
            },
            llm: r.llm,
            warnings: r.warnings_total,
            errors: r.error.iter().cloned().collect(),
            started_at: r.created_at,
            updated_at: r.finished_at.unwrap_or(r.created_at),
            eta_seconds: None,
            batch: None,
            provider: None,
        }
    }
}

/// One upload's progress; applies events and renders snapshots.
#[derive(Debug, Clone)]
pub struct UploadProgress {
    snapshot: ProgressSnapshot,
    /// When analysis began, for the ETA.
    analyzing_since: Option<Instant>,
    errors_total: u64,
}

impl UploadProgress {
    pub fn new(upload_id: Uuid, filename: String) -> Self {
        let now = Utc::now();
        Self {
            snapshot: ProgressSnapshot {
                upload_id,
                filename,
                status: Stage::Parsing,
                stage: Stage::Parsing,
                total_conversations: 0,
                messages: 0,
                processed: 0,
                analyzed: 0,
                failed: 0,
                skipped: 0,
                autoresponses_filtered: 0,
                percent: 0.0,
                llm: LlmUsage::default(),
                warnings: 0,
                errors: Vec::new(),
                started_at: now,
                updated_at: now,
                eta_seconds: None,
                batch: None,
                provider: None,
            },
            analyzing_since: None,
            errors_total: 0,
        }
    }

    pub fn snapshot(&self) -> &ProgressSnapshot {
        &self.snapshot
    }

    pub fn stage(&self) -> Stage {
        self.snapshot.stage
    }

    /// Applies one event. Events after a final stage are ignored, so a late
    /// message can never reopen a finished upload.
    pub fn apply(&mut self, event: ProgressEvent) {
        if self.snapshot.stage.is_final() {
            return;
        }
        let s = &mut self.snapshot;
        match event {
            ProgressEvent::Stage(stage) => {
                if stage == Stage::Analyzing && self.analyzing_since.is_none() {
                    self.analyzing_since = Some(Instant::now());
                }
                s.stage = stage;
                s.status = stage;
                if stage == Stage::Completed {
                    s.percent = 100.0;
                    s.eta_seconds = Some(0.0);
                }
                if stage.is_final() && stage != Stage::Completed {
                    s.eta_seconds = None;
                }
            }
            ProgressEvent::Parsed {
                messages,
                conversations,
                autoresponses,
            } => {
                s.messages = messages;
                s.total_conversations = conversations;
                s.autoresponses_filtered = autoresponses;
            }
            ProgressEvent::Warning(_) => s.warnings += 1,
            ProgressEvent::Conversation(outcome) => {
                s.processed += 1;
                match outcome {
                    ConversationOutcome::Analyzed(usage) => {
                        s.analyzed += 1;
                        s.llm.add(&usage);
                    }
                    ConversationOutcome::Skipped => s.skipped += 1,
                    ConversationOutcome::Failed { reason, usage } => {
                        s.failed += 1;
                        s.llm.add(&usage);
                        self.errors_total += 1;
                        if s.errors.len() < MAX_ERRORS {
                            s.errors.push(reason);
                        }
                    }
                }
                if s.total_conversations > 0 {
                    s.percent = (s.processed as f64 * 100.0 / s.total_conversations as f64)
                        .clamp(0.0, 100.0);
                }
                s.eta_seconds = self.analyzing_since.and_then(|since| {
                    let remaining = s.total_conversations.saturating_sub(s.processed);
                    let elapsed = since.elapsed().as_secs_f64();
                    (s.processed > 0).then(|| elapsed / s.processed as f64 * remaining as f64)
                });
            }
            ProgressEvent::Restored(t) => {
                s.analyzed = t.analyzed;
                s.failed = t.failed;
                s.skipped = t.skipped_already_processed;
                s.processed = t.analyzed + t.failed + t.skipped_already_processed;
                s.llm = t.llm;
                if s.total_conversations > 0 {
                    s.percent = (s.processed as f64 * 100.0 / s.total_conversations as f64)
                        .clamp(0.0, 100.0);
                }
            }
            ProgressEvent::Batch(batch) => s.batch = Some(batch),
            ProgressEvent::Provider(outage) => {
                s.provider = outage.map(|outage| ProviderStatus {
                    message: outage.headline(),
                    outage,
                });
            }
            ProgressEvent::Error(message) => {
                self.errors_total += 1;
                if s.errors.len() < MAX_ERRORS {
                    s.errors.push(message);
                }
            }
        }
        s.updated_at = Utc::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_percent_and_final_stage() {
        let mut p = UploadProgress::new(Uuid::new_v4(), "f.csv".into());
        p.apply(ProgressEvent::Parsed {
            messages: 10,
            conversations: 4,
            autoresponses: 2,
        });
        p.apply(ProgressEvent::Stage(Stage::Analyzing));
        p.apply(ProgressEvent::Conversation(ConversationOutcome::Analyzed(
            LlmUsage {
                requests: 1,
                prompt_tokens: 100,
                ..Default::default()
            },
        )));
        p.apply(ProgressEvent::Conversation(ConversationOutcome::Skipped));
        p.apply(ProgressEvent::Conversation(ConversationOutcome::Failed {
            reason: "refused: no".into(),
            usage: LlmUsage {
                requests: 3,
                retries: 2,
                ..Default::default()
            },
        }));
        let s = p.snapshot();
        assert_eq!((s.analyzed, s.skipped, s.failed, s.processed), (1, 1, 1, 3));
        assert_eq!(s.percent, 75.0);
        assert_eq!(s.llm.requests, 4);
        assert_eq!(s.llm.retries, 2);
        assert_eq!(s.errors, vec!["refused: no".to_string()]);
        assert!(s.eta_seconds.is_some());

        p.apply(ProgressEvent::Stage(Stage::Cancelled));
        p.apply(ProgressEvent::Stage(Stage::Completed));
        p.apply(ProgressEvent::Conversation(ConversationOutcome::Skipped));
        assert_eq!(p.stage(), Stage::Cancelled, "final stages are sticky");
        assert_eq!(p.snapshot().processed, 3);
    }

    #[test]
    fn a_provider_outage_shows_until_it_ends() {
        let mut p = UploadProgress::new(Uuid::new_v4(), "f.csv".into());
        let since = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:04:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let outage = ProviderOutage {
            reason: "HTTP 503".into(),
            detail: "server_error: overloaded".into(),
            since,
            next_try: since + chrono::Duration::minutes(2),
            gives_up_at: since + chrono::Duration::minutes(15),
        };
        p.apply(ProgressEvent::Provider(Some(outage.clone())));
        let shown = p.snapshot().provider.clone().unwrap();
        assert_eq!(shown.message, outage.headline());
        assert!(
            shown
                .message
                .starts_with("provider unavailable: HTTP 503 since ")
        );
        let json = serde_json::to_value(p.snapshot()).unwrap();
        assert_eq!(json["provider"]["reason"], "HTTP 503");
        assert_eq!(json["provider"]["since"], "2026-03-01T12:04:00Z");
        p.apply(ProgressEvent::Provider(None));
        assert_eq!(p.snapshot().provider, None);
        assert!(
            serde_json::to_value(p.snapshot())
                .unwrap()
                .get("provider")
                .is_none()
        );
    }

    #[test]
    fn errors_are_capped() {
        let mut p = UploadProgress::new(Uuid::new_v4(), "f.csv".into());
        for i in 0..(MAX_ERRORS + 10) {
            p.apply(ProgressEvent::Error(format!("e{i}")));
        }
        assert_eq!(p.snapshot().errors.len(), MAX_ERRORS);
    }
}
