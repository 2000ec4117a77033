//! One upload's journey through the actors: parse → store messages →
//! analyse → store outcomes → final record.
//!
//! ```text
//!   file ─▶ parser thread ─(batches)─▶ StoreActor: AppendMessages
//!                                            │
//!   StoreReader: LoadConversations ◀─────────┘ (after parsing)
//!        │ batches of `analyzer.batch_size`
//!        ▼
//!   AnalyzerPool (≤ concurrency in flight) ─▶ StoreActor: SaveOutcome ─▶ PutUpload
//!        every step ─▶ ProgressActor: Update
//! ```
//!
//! The job is a task on the actix runtime, not an actor: it only awaits
//! other actors, so it never blocks an arbiter; parsing runs on a blocking
//! thread. Cancellation is cooperative: the upload's token is checked before
//! every batch and every analyzer call, and in-flight calls race it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::analyze::actor::AnalyzerPool;
use crate::analyze::{AnalyzeError, Analyzer, LlmUsage, Outcome};
use crate::ingest::{self, IngestError, IngestOptions, Row};
use crate::model::{Analysis, Conversation, ConversationStatus, Stage};
use crate::progress::actor::{ProgressActor, Update};
use crate::progress::{ConversationOutcome, ProgressEvent};
use crate::store::actor::{
    AppendMessages, DeleteUpload, HasOutcome, LoadConversations, LookupProcessed, PutUpload,
    SaveOutcome, StoreActor, StoreReader,
};
use crate::store::{
    ConversationRecord, ConversationResult, StoreError, StoredMessage, UploadCounts, UploadRecord,
};

/// Messages written per transaction while parsing.
const PARSE_BATCH: usize = 4096;
/// Parsed batches queued between the parser thread and the store.
const PARSE_QUEUE: usize = 4;
/// Warnings kept in an upload's record; the rest are counted.
const MAX_WARNINGS: usize = 100;

/// Why an upload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Analyzer(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

impl From<MailboxError> for UploadError {
    fn from(_: MailboxError) -> Self {
        UploadError::ShuttingDown
    }
}

/// A file to analyse.
#[derive(Debug, Clone)]
pub struct Submission {
    pub path: PathBuf,
    /// The name users know the upload by (the original file name).
    pub filename: String,
    /// Remove `path` when the job ends (uploads received over HTTP).
    pub remove_file_after: bool,
}

/// The final state of an upload.
#[derive(Debug, Clone)]
pub struct UploadReport {
    pub record: UploadRecord,
    pub processing_time_seconds: f64,
}

/// The actors and settings every upload job uses.
#[derive(Clone)]
pub struct Pipeline {
    pub analyzer: Analyzer,
    pub pool: AnalyzerPool,
    pub store: Addr<StoreActor>,
    pub reader: Addr<StoreReader>,
    pub progress: Addr<ProgressActor>,
    pub ingest: IngestOptions,
    pub batch_size: usize,
}

/// Counts and usage gathered while an upload runs.
#[derive(Default)]
struct Tally {
    counts: UploadCounts,
    llm: LlmUsage,
    warnings: Vec<String>,
    warnings_total: u64,
}

impl Tally {
    fn warn(&mut self, message: String) {
        self.warnings_total += 1;
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        }
    }
}

impl Pipeline {
    fn progress(&self, upload_id: Uuid, event: ProgressEvent) {
        // Progress events are tiny and at most one per message batch or
        // conversation; the ProgressActor only updates memory, so an
        // unbounded mailbox here cannot grow faster than work is done.
        self.progress.do_send(Update { upload_id, event });
    }

    /// Runs one upload to its end. The upload must already be registered
    /// with the ProgressActor (which gave `cancel`).
    pub async fn run(
        self,
        upload_id: Uuid,
        submission: Submission,
        cancel: CancellationToken,
    ) -> Result<UploadReport, UploadError> {
        let started = Instant::now();
        let span = tracing::info_span!("upload", upload_id = %upload_id);
        let result = self
            .run_inner(upload_id, &submission, &cancel, started)
            .instrument(span)
            .await;
        if submission.remove_file_after {
            let _ = std::fs::remove_file(&submission.path);
        }
        match &result {
            Ok(report) => {
                tracing::info!(
                    status = report.record.status.as_str(),
                    conversations = report.record.counts.conversations,
                    seconds = report.processing_time_seconds,
                    "upload finished"
                );
                self.progress(upload_id, ProgressEvent::Stage(report.record.status));
            }
            Err(e) => {
                tracing::warn!(error = %e, "upload failed");
                self.progress(upload_id, ProgressEvent::Error(e.to_string()));
                self.progress(upload_id, ProgressEvent::Stage(Stage::Failed));
            }
        }
        result
    }

    async fn run_inner(
        &self,
        upload_id: Uuid,
        submission: &Submission,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<UploadReport, UploadError> {
        let reader = ingest::open(&submission.path, &self.ingest)?;
        let mut record = UploadRecord {
            id: upload_id,
            filename: submission.filename.clone(),
            format: reader.format().to_string(),
            status: Stage::Parsing,
            analyzer: self.analyzer.name().to_string(),
            model: self.analyzer.model(),
            created_at: Utc::now(),
            finished_at: None,
            counts: UploadCounts::default(),
            llm: LlmUsage::default(),
            warnings: Vec::new(),
            warnings_total: 0,
            error: None,
        };
        self.store.send(PutUpload(record.clone())).await??;

        let mut tally = Tally::default();
        if let Err(e) = self.parse(upload_id, reader, cancel, &mut tally).await {
            // A failed parse leaves the database as it was before the upload.
            self.store.send(DeleteUpload(upload_id)).await??;
            return Err(e);
        }
        record.counts = tally.counts;
        record.warnings = std::mem::take(&mut tally.warnings);
        record.warnings_total = tally.warnings_total;

        let mut final_stage = Stage::Completed;
        if cancel.is_cancelled() {
            final_stage = Stage::Cancelled;
        } else {
            record.status = Stage::Analyzing;
            self.store.send(PutUpload(record.clone())).await??;
            self.progress(upload_id, ProgressEvent::Stage(Stage::Analyzing));
            match self.analyze(upload_id, cancel, &mut tally).await {
                Ok(()) if cancel.is_cancelled() => final_stage = Stage::Cancelled,
                Ok(()) => {}
                Err(AnalyzeStop::Fatal(message)) => {
                    final_stage = Stage::Failed;
                    record.error = Some(message);
                }
                Err(AnalyzeStop::Store(e)) => {
                    // Outcomes already committed stay; the record says why it stopped.
                    final_stage = Stage::Failed;
                    record.error = Some(e.to_string());
                }
            }
        }

        self.progress(upload_id, ProgressEvent::Stage(Stage::Saving));
        record.status = final_stage;
        record.counts = tally.counts;
        record.llm = tally.llm;
        record.finished_at = Some(Utc::now());
        self.store.send(PutUpload(record.clone())).await??;
        if let Some(error) = &record.error {
            self.progress(upload_id, ProgressEvent::Error(error.clone()));
        }
        Ok(UploadReport {
            record,
            processing_time_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Streams the file's rows into the store in batches.
    async fn parse(
        &self,
        upload_id: Uuid,
        reader: ingest::RowReader,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), UploadError> {
        let (tx, mut rx) = mpsc::channel::<ParsedBatch>(PARSE_QUEUE);
        let parse_cancel = cancel.clone();
        let parser = tokio::task::spawn_blocking(move || parse_rows(reader, tx, parse_cancel));
        while let Some(batch) = rx.recv().await {
            for w in batch.warnings {
                self.progress(upload_id, ProgressEvent::Warning(w.clone()));
                tally.warn(w);
            }
            if !batch.rows.is_empty() {
                self.store
                    .send(AppendMessages {
                        upload_id,
                        rows: batch.rows,
                    })
                    .await??;
            }
            tally.counts.messages = batch.messages;
            tally.counts.conversations = batch.conversations;
            tally.counts.autoresponses_filtered = batch.autoresponses;
            self.progress(
                upload_id,
                ProgressEvent::Parsed {
                    messages: batch.messages,
                    conversations: batch.conversations,
                    autoresponses: batch.autoresponses,
                },
            );
        }
        match parser.await {
            Ok(result) => result.map_err(UploadError::from),
            Err(join) => Err(UploadError::Analyzer(format!(
                "parser thread failed: {join}"
            ))),
        }
    }

    /// Sends every conversation without an outcome to the pool, keeping the
    /// pipe full, and stores each outcome as it arrives.
    async fn analyze(
        &self,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        let window = self.pool.size() + self.batch_size;
        let mut in_flight = FuturesUnordered::new();
        // Conversations whose content is already in flight in this upload:
        // they wait for the first one's analysis instead of paying twice.
        let mut twins: HashMap<[u8; 32], Vec<Conversation>> = HashMap::new();
        let mut after: Option<String> = None;
        let mut stop: Option<AnalyzeStop> = None;

        'batches: while !cancel.is_cancelled() {
            let batch = self
                .query(LoadConversations {
                    upload_id,
                    after: after.clone(),
                    limit: self.batch_size,
                })
                .await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            let keys: Vec<[u8; 32]> = batch.iter().map(|c| self.analyzer.content_key(c)).collect();
            let cached = self.query(LookupProcessed { keys: keys.clone() }).await?;
            let done = self
                .query(HasOutcome {
                    upload_id,
                    conversation_ids: batch.iter().map(|c| c.id.clone()).collect(),
                })
                .await?;

            for (((conversation, key), cached), done) in
                batch.into_iter().zip(keys).zip(cached).zip(done)
            {
                if done {
                    continue;
                }
                if let Some(analysis) = cached {
                    self.record(upload_id, tally, &conversation, Stored::Skipped(analysis))
                        .await?;
                    continue;
                }
                if let Some(waiting) = twins.get_mut(&key) {
                    waiting.push(conversation);
                    continue;
                }
                twins.insert(key, Vec::new());
                while in_flight.len() >= window {
                    let Some(finished) = in_flight.next().await else {
                        break;
                    };
                    if let Err(e) = self.finish(upload_id, tally, finished, &mut twins).await {
                        // Stop every other call of this upload at once.
                        cancel.cancel();
                        stop = Some(e);
                        break 'batches;
                    }
                }
                in_flight.push(self.dispatch(conversation, key, cancel.clone()));
            }
        }

        while let Some(finished) = in_flight.next().await {
            if let Err(e) = self.finish(upload_id, tally, finished, &mut twins).await {
                cancel.cancel();
                stop.get_or_insert(e);
            }
        }
        match stop {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Asks the StoreReader a question, mapping both failure layers.
    async fn query<M, T>(&self, msg: M) -> Result<T, AnalyzeStop>
    where
        M: Message<Result = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
        StoreReader: Handler<M>,
    {
        self.reader
            .send(msg)
            .await
            .map_err(|_| AnalyzeStop::Fatal("engine is shutting down".into()))?
            .map_err(AnalyzeStop::Store)
    }

    fn dispatch(
        &self,
        conversation: Conversation,
        key: [u8; 32],
        cancel: CancellationToken,
    ) -> impl Future<Output = (Conversation, [u8; 32], Outcome)> + use<> {
        let pool = self.pool.clone();
        async move {
            // The pool takes the conversation by value; keep a copy for the record.
            let outcome = pool.analyze(conversation.clone(), cancel).await;
            (conversation, key, outcome)
        }
    }

    /// Stores one outcome, and settles conversations that waited on it.
    async fn finish(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        (conversation, key, outcome): (Conversation, [u8; 32], Outcome),
        twins: &mut HashMap<[u8; 32], Vec<Conversation>>,
    ) -> Result<(), AnalyzeStop> {
        tally.llm.add(&outcome.usage);
        let waiting = twins.remove(&key).unwrap_or_default();
        match outcome.result {
            Ok(analysis) => {
                for twin in &waiting {
                    self.record(upload_id, tally, twin, Stored::Skipped(analysis.clone()))
                        .await?;
                }
                self.record(
                    upload_id,
                    tally,
                    &conversation,
                    Stored::Analyzed {
                        analysis,
                        key,
                        usage: outcome.usage,
                    },
                )
                .await
            }
            // Cancelled calls leave no outcome: a resumed upload analyses them.
            Err(AnalyzeError::Cancelled) => Ok(()),
            Err(AnalyzeError::Fatal(message)) => Err(AnalyzeStop::Fatal(message)),
            Err(AnalyzeError::Failed(reason)) => {
                // Twins of a failed conversation fail with it: the same content
                // would very likely fail the same way, and paying for it twice is
                // what we promise not to do.
                for twin in &waiting {
                    let failed = Stored::Failed {
                        reason: reason.clone(),
                        usage: LlmUsage::default(),
                    };
                    self.record(upload_id, tally, twin, failed).await?;
                }
                let failed = Stored::Failed {
                    reason,
                    usage: outcome.usage,
                };
                self.record(upload_id, tally, &conversation, failed).await
            }
        }
    }

    async fn record(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        conversation: &Conversation,
        stored: Stored,
    ) -> Result<(), AnalyzeStop> {
        let (status, analysis, content_key, error, event) = match stored {
            Stored::Analyzed {
                analysis,
                key,
                usage,
            } => {
                tally.counts.analyzed += 1;
                (
                    ConversationStatus::Analyzed,
                    Some(analysis),
                    Some(key),
                    None,
                    ConversationOutcome::Analyzed(usage),
                )
            }
            Stored::Skipped(analysis) => {
                tally.counts.skipped_already_processed += 1;
                (
                    ConversationStatus::SkippedAlreadyProcessed,
                    Some(analysis),
                    None,
                    None,
                    ConversationOutcome::Skipped,
                )
            }
            Stored::Failed { reason, usage } => {
                tally.counts.failed += 1;
                (
                    ConversationStatus::Failed,
                    None,
                    None,
                    Some(reason.clone()),
                    ConversationOutcome::Failed { reason, usage },
                )
            }
        };
        let mut record = ConversationRecord::describe(conversation, status);
        record.error = error;
        self.store
            .send(SaveOutcome(ConversationResult {
                upload_id,
                conversation_id: conversation.id.clone(),
                record,
                analysis,
                content_key,
            }))
            .await
            .map_err(|_| AnalyzeStop::Fatal("engine is shutting down".into()))?
            .map_err(AnalyzeStop::Store)?;
        self.progress(upload_id, ProgressEvent::Conversation(event));
        Ok(())
    }
}

enum Stored {
    Analyzed {
        analysis: Analysis,
        key: [u8; 32],
        usage: LlmUsage,
    },
    Skipped(Analysis),
    Failed {
        reason: String,
        usage: LlmUsage,
    },
}

/// Why analysis stopped early.
enum AnalyzeStop {
    /// Nothing more can succeed (quota, key, shutdown).
    Fatal(String),
    Store(StoreError),
}

/// A batch of parsed rows and the running totals after it.
struct ParsedBatch {
    rows: Vec<StoredMessage>,
    warnings: Vec<String>,
    messages: u64,
    conversations: u64,
    autoresponses: u64,
}

/// The parser thread: reads rows, groups them into batches, counts.
fn parse_rows(
    reader: ingest::RowReader,
    tx: mpsc::Sender<ParsedBatch>,
    cancel: CancellationToken,
) -> Result<(), IngestError> {
    let mut conversations: HashSet<String> = HashSet::new();
    let (mut messages, mut autoresponses) = (0u64, 0u64);
    let mut rows = Vec::with_capacity(PARSE_BATCH);
    let mut warnings = Vec::new();
    for item in reader {
        match item? {
            Row::Message(m) => {
                // The row counter, not the file line: several messages of a
                // minified JSON file share one line.
                let seq = messages;
                messages += 1;
                autoresponses += u64::from(m.message.autoresponse);
                if !conversations.contains(&m.conversation_id) {
                    conversations.insert(m.conversation_id.clone());
                }
                rows.push(StoredMessage {
                    conversation_id: m.conversation_id,
                    seq,
                    message: m.message,
                });
            }
            Row::Warning(w) => warnings.push(w.to_string()),
        }
        if rows.len() >= PARSE_BATCH || warnings.len() >= PARSE_BATCH {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let batch = ParsedBatch {
                rows: std::mem::replace(&mut rows, Vec::with_capacity(PARSE_BATCH)),
                warnings: std::mem::take(&mut warnings),
                messages,
                conversations: conversations.len() as u64,
                autoresponses,
            };
            if tx.blocking_send(batch).is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx.blocking_send(ParsedBatch {
        rows,
        warnings,
        messages,
        conversations: conversations.len() as u64,
        autoresponses,
    });
    Ok(())
}
