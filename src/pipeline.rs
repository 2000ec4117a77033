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

use crate::analyze::actor::{AnalyzerPool, Lease};
use crate::analyze::{AnalyzeError, Analyzer, LlmUsage, Outcome};
use crate::ingest::{self, IngestError, IngestOptions, Row};
use crate::model::{Analysis, ConversationStatus, Stage};
use crate::progress::actor::{ProgressActor, Update};
use crate::progress::{ConversationOutcome, ProgressEvent};
use crate::store::actor::{
    AppendMessages, ClearUploadRows, DeleteUpload, GetTally, GetUpload, HasOutcome,
    LoadConversations, LookupProcessed, PutUpload, SaveOutcome, StoreActor, StoreReader,
};
use crate::store::{
    ConversationRecord, ConversationResult, LoadedConversation, StoreError, StoredMessage,
    UploadCounts, UploadRecord,
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
    #[error("interrupted by shutdown; the upload resumes on the next start")]
    Interrupted,
    #[error("upload {0} not found")]
    NotFound(Uuid),
    #[error("upload {0} is already running")]
    AlreadyRunning(Uuid),
    #[error("upload {0} has already completed")]
    AlreadyCompleted(Uuid),
    /// The upload cannot be resumed as it is (the reason says why).
    #[error("upload {id} cannot be resumed: {reason}")]
    NotResumable { id: Uuid, reason: String },
    /// A bug: a panic inside the upload's job (caught; the upload is failed).
    #[error("internal error: {0}")]
    Internal(String),
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
    /// Cancelled when the engine shuts down; every upload's token is a child.
    pub shutdown: CancellationToken,
    /// Where HTTP uploads are kept until parsed (so a crash can parse again).
    pub spool_dir: Option<PathBuf>,
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

    /// Opens a new upload's file and records the upload (status `parsing`),
    /// so that once this returns a crash cannot lose it: the next start
    /// parses it again. Bad input fails here, before anything is stored.
    pub async fn create(
        &self,
        upload_id: Uuid,
        submission: &Submission,
    ) -> Result<(UploadRecord, ingest::RowReader), UploadError> {
        let path = submission.path.clone();
        let opts = self.ingest.clone();
        // XLSX is read whole on open: keep it off the actor threads.
        let reader = open_off_thread(path, opts).await?;
        let record = UploadRecord {
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
            source: Some(std::path::absolute(&submission.path).unwrap_or(submission.path.clone())),
            parsed: false,
            progress_mark: 0,
            starts_without_progress: 1,
        };
        self.store.send(PutUpload(record.clone())).await??;
        Ok((record, reader))
    }

    /// Runs a created upload to its end. The upload must already be
    /// registered with the ProgressActor (which gave `cancel`).
    pub async fn run(
        self,
        record: UploadRecord,
        reader: ingest::RowReader,
        remove_file_after: bool,
        cancel: CancellationToken,
    ) -> Result<UploadReport, UploadError> {
        let upload_id = record.id;
        let source = record.source.clone();
        let span = tracing::info_span!("upload", upload_id = %upload_id);
        let result = self
            .drive(
                record,
                Some(reader),
                remove_file_after,
                &cancel,
                Instant::now(),
            )
            .instrument(span)
            .await;
        // An interrupted upload keeps its file: the next start parses it again.
        let finished_badly = result.is_err() && !matches!(result, Err(UploadError::Interrupted));
        if let (true, true, Some(source)) = (remove_file_after, finished_badly, source) {
            let _ = std::fs::remove_file(source);
        }
        self.report_end(upload_id, &result);
        result
    }

    /// Continues an upload a previous process did not finish (or a cancelled
    /// or failed one, on request): parsing again if its messages are not all
    /// stored, then analysing only the conversations without a stored outcome.
    ///
    /// Each start is counted in the record before any work (the crash-loop
    /// guard): an upload that [`crate::store::MAX_STARTS_WITHOUT_PROGRESS`] starts in a row
    /// got no further is marked failed instead.
    pub async fn resume(
        self,
        mut record: UploadRecord,
        cancel: CancellationToken,
    ) -> Result<UploadReport, UploadError> {
        let upload_id = record.id;
        let span = tracing::info_span!("upload", upload_id = %upload_id);
        let job = async {
            let started = Instant::now();
            tracing::info!(status = record.status.as_str(), "resuming upload");
            if record.status.is_final() {
                // Asked for by a person: a fresh run of attempts.
                record.starts_without_progress = 0;
            }
            let mark = if record.needs_parse() {
                0
            } else {
                let before = self
                    .query(GetTally { upload_id })
                    .await
                    .map_err(AnalyzeStop::into_upload)?;
                1 + before.analyzed + before.failed + before.skipped_already_processed
            };
            if let Err(reason) = record.count_start(mark) {
                tracing::error!(%reason, "not resuming the upload");
                record.status = Stage::Failed;
                record.error = Some(reason);
                record.finished_at = Some(Utc::now());
                self.store.send(PutUpload(record.clone())).await??;
                return Ok(UploadReport {
                    record,
                    processing_time_seconds: started.elapsed().as_secs_f64(),
                });
            }
            let reader = if record.needs_parse() {
                let source = record
                    .source
                    .clone()
                    .ok_or_else(|| UploadError::NotResumable {
                        id: upload_id,
                        reason: "its parsing did not finish and the uploaded file was not kept; \
                                 upload the file again"
                            .into(),
                    })?;
                let reader = open_off_thread(source, self.ingest.clone()).await?;
                self.store.send(ClearUploadRows(upload_id)).await??;
                record.counts = UploadCounts::default();
                Some(reader)
            } else {
                None
            };
            record.error = None;
            record.finished_at = None;
            // The start is on disk before any work: a crash now still counts.
            self.store.send(PutUpload(record.clone())).await??;
            // Spooled files (HTTP uploads) live next to the database and go once parsed.
            let spooled = record.source.as_deref().is_some_and(|p| self.is_spooled(p));
            self.drive(record, reader, spooled, &cancel, started).await
        };
        let result = job.instrument(span).await;
        self.report_end(upload_id, &result);
        result
    }

    /// Marks an upload failed after an internal error (a panic in its job or
    /// its parser thread: a bug): the record says so, and progress watchers
    /// see it end.
    pub async fn fail_after_panic(&self, upload_id: Uuid, message: &str) {
        let error = UploadError::Internal(message.to_string()).to_string();
        if let Ok(Ok(Some(mut record))) = self.reader.send(GetUpload { upload_id }).await {
            record.status = Stage::Failed;
            record.error = Some(error.clone());
            record.finished_at = Some(Utc::now());
            if let Ok(Err(e)) | Err(e) = self
                .store
                .send(PutUpload(record))
                .await
                .map_err(|e| StoreError::Storage(e.to_string()))
            {
                tracing::error!(error = %e, "could not record the failed upload");
            }
        }
        self.progress(upload_id, ProgressEvent::Error(error));
        self.progress(upload_id, ProgressEvent::Stage(Stage::Failed));
    }

    fn is_spooled(&self, path: &std::path::Path) -> bool {
        self.spool_dir
            .as_deref()
            .is_some_and(|dir| path.starts_with(dir))
    }

    fn report_end(&self, upload_id: Uuid, result: &Result<UploadReport, UploadError>) {
        match result {
            Ok(report) => {
                tracing::info!(
                    status = report.record.status.as_str(),
                    conversations = report.record.counts.conversations,
                    seconds = report.processing_time_seconds,
                    "upload finished"
                );
                if let Some(error) = &report.record.error {
                    self.progress(upload_id, ProgressEvent::Error(error.clone()));
                }
                self.progress(upload_id, ProgressEvent::Stage(report.record.status));
            }
            Err(UploadError::Interrupted) => {
                tracing::info!("upload interrupted by shutdown; it resumes on the next start");
                self.progress(
                    upload_id,
                    ProgressEvent::Error(UploadError::Interrupted.to_string()),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "upload failed");
                self.progress(upload_id, ProgressEvent::Error(e.to_string()));
                self.progress(upload_id, ProgressEvent::Stage(Stage::Failed));
            }
        }
    }

    /// Parse (when `reader` is given), analyse, and write the final record.
    async fn drive(
        &self,
        mut record: UploadRecord,
        reader: Option<ingest::RowReader>,
        remove_source_after_parse: bool,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<UploadReport, UploadError> {
        let upload_id = record.id;
        // Parse counts come from parsing, or from the record of an earlier run.
        let mut tally = Tally {
            counts: record.counts,
            ..Tally::default()
        };
        // A spooled file to delete once `analyzing` is committed (never
        // before: a crash in between would leave nothing to parse again).
        let mut parsed_source = None;
        if let Some(reader) = reader {
            let complete = match self.parse(upload_id, reader, cancel, &mut tally).await {
                Ok(complete) => complete,
                Err(e) => {
                    if matches!(e, UploadError::Ingest(_)) {
                        // Bad input leaves the database as it was before the upload.
                        self.store.send(DeleteUpload(upload_id)).await??;
                    }
                    return Err(e);
                }
            };
            if self.shutdown.is_cancelled() {
                // Parsing stopped part-way: it is redone on the next start.
                return Err(UploadError::Interrupted);
            }
            record.counts = tally.counts;
            record.warnings = std::mem::take(&mut tally.warnings);
            record.warnings_total = tally.warnings_total;
            // A parse cancelled part-way keeps `parsed == false` and its file:
            // a resume parses the whole file again.
            record.parsed = complete;
            if complete && remove_source_after_parse {
                parsed_source = record.source.take();
            }
        } else {
            self.progress(
                upload_id,
                ProgressEvent::Parsed {
                    messages: record.counts.messages,
                    conversations: record.counts.conversations,
                    autoresponses: record.counts.autoresponses_filtered,
                },
            );
        }
        // Outcomes stored before (by an earlier run of this upload) count too.
        let before = self
            .query(GetTally { upload_id })
            .await
            .map_err(AnalyzeStop::into_upload)?;
        tally.counts.analyzed = before.analyzed;
        tally.counts.failed = before.failed;
        tally.counts.skipped_already_processed = before.skipped_already_processed;
        tally.llm = before.llm;
        if before.analyzed + before.failed + before.skipped_already_processed > 0 {
            self.progress(upload_id, ProgressEvent::Restored(before));
        }

        let mut final_stage = Stage::Completed;
        if cancel.is_cancelled() {
            final_stage = Stage::Cancelled;
        } else {
            record.status = Stage::Analyzing;
            self.store.send(PutUpload(record.clone())).await??;
            if let Some(source) = parsed_source.take() {
                let _ = std::fs::remove_file(source);
            }
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
        record.counts = tally.counts;
        record.llm = tally.llm;
        if final_stage == Stage::Cancelled && self.shutdown.is_cancelled() {
            // Not the user's cancel: keep the upload resumable.
            self.store.send(PutUpload(record)).await??;
            return Err(UploadError::Interrupted);
        }
        self.progress(upload_id, ProgressEvent::Stage(Stage::Saving));
        record.status = final_stage;
        record.finished_at = Some(Utc::now());
        self.store.send(PutUpload(record.clone())).await??;
        Ok(UploadReport {
            record,
            processing_time_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Streams the file's rows into the store in batches. `Ok(false)` when
    /// cancelled before the end of the file.
    async fn parse(
        &self,
        upload_id: Uuid,
        reader: ingest::RowReader,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<bool, UploadError> {
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
            Err(join) => Err(UploadError::Internal(format!(
                "the parser thread failed: {join}"
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
        let mut twins = Twins::default();
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
            after = Some(last.conversation.id.clone());
            let keys: Vec<[u8; 32]> = batch
                .iter()
                .map(|c| content_key(&self.analyzer, c))
                .collect();
            let cached = self.query(LookupProcessed { keys: keys.clone() }).await?;
            let done = self
                .query(HasOutcome {
                    upload_id,
                    conversation_ids: batch.iter().map(|c| c.conversation.id.clone()).collect(),
                })
                .await?;

            for (((conversation, key), cached), done) in
                batch.into_iter().zip(keys).zip(cached).zip(done)
            {
                if done {
                    continue;
                }
                if let Some(analysis) = cached.or_else(|| twins.recent.get(&key).cloned()) {
                    let skipped = Stored::Skipped(analysis);
                    self.record(upload_id, tally, &conversation, skipped, None)
                        .await?;
                    continue;
                }
                if let Some(waiting) = twins.in_flight.get_mut(&key) {
                    waiting.push(conversation);
                    continue;
                }
                twins.in_flight.insert(key, Vec::new());
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
        conversation: LoadedConversation,
        key: [u8; 32],
        cancel: CancellationToken,
    ) -> impl Future<Output = Finished> + use<> {
        let pool = self.pool.clone();
        let keep_lease = self.analyzer.is_costly();
        async move {
            let Some(lease) = pool.lease(&cancel).await else {
                let outcome = Outcome {
                    result: Err(AnalyzeError::Cancelled),
                    usage: LlmUsage::default(),
                };
                return (conversation, key, outcome, None);
            };
            // The pool takes the conversation by value; keep a copy for the record.
            let outcome = lease
                .analyze(conversation.conversation.clone(), cancel)
                .await;
            (conversation, key, outcome, keep_lease.then_some(lease))
        }
    }

    /// Stores one outcome, and settles conversations that waited on it.
    async fn finish(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        (conversation, key, outcome, lease): Finished,
        twins: &mut Twins,
    ) -> Result<(), AnalyzeStop> {
        tally.llm.add(&outcome.usage);
        let waiting = twins.in_flight.remove(&key).unwrap_or_default();
        match outcome.result {
            Ok(analysis) => {
                twins.remember(key, &analysis);
                for twin in &waiting {
                    let skipped = Stored::Skipped(analysis.clone());
                    self.record(upload_id, tally, twin, skipped, None).await?;
                }
                let analyzed = Stored::Analyzed {
                    analysis,
                    key,
                    usage: outcome.usage,
                };
                self.record(upload_id, tally, &conversation, analyzed, lease)
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
                    self.record(upload_id, tally, twin, failed, None).await?;
                }
                let failed = Stored::Failed {
                    reason,
                    usage: outcome.usage,
                };
                self.record(upload_id, tally, &conversation, failed, lease)
                    .await
            }
        }
    }

    async fn record(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        conversation: &LoadedConversation,
        stored: Stored,
        lease: Option<Lease>,
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
        let mut record = ConversationRecord::new(&conversation.counts, status);
        record.error = error;
        if let ConversationOutcome::Analyzed(usage) | ConversationOutcome::Failed { usage, .. } =
            &event
        {
            record.usage = *usage;
        }
        let durable = self
            .store
            .send(SaveOutcome(ConversationResult {
                upload_id,
                conversation_id: conversation.conversation.id.clone(),
                record,
                analysis,
                content_key,
            }))
            .await
            .map_err(|_| AnalyzeStop::Fatal("engine is shutting down".into()))?
            .map_err(AnalyzeStop::Store)?;
        if let Some(lease) = lease {
            // The actor stays reserved until the outcome is on disk: calls that
            // cost money and are not yet durable never exceed the pool size.
            actix::spawn(async move {
                let _ = durable.await;
                drop(lease);
            });
        }
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

/// Identical conversations within one upload: they wait for the first one's
/// analysis instead of paying twice.
#[derive(Default)]
struct Twins {
    /// Content in flight → conversations waiting for its analysis.
    in_flight: HashMap<[u8; 32], Vec<LoadedConversation>>,
    /// Analyses finished here but perhaps not yet committed to the
    /// processed-content index (which only shows committed rows).
    recent: HashMap<[u8; 32], Analysis>,
}

/// Recent analyses kept; older ones are long committed (a batch commits
/// within `storage.flush_ms`), so the store answers for them.
const RECENT_ANALYSES: usize = 4096;

impl Twins {
    fn remember(&mut self, key: [u8; 32], analysis: &Analysis) {
        if self.recent.len() >= RECENT_ANALYSES {
            self.recent.clear();
        }
        self.recent.insert(key, analysis.clone());
    }
}

/// What a dispatched call gives back: the conversation, its content key, the
/// outcome, and the actor's lease when it must outlive the call.
type Finished = (LoadedConversation, [u8; 32], Outcome, Option<Lease>);

/// Why analysis stopped early.
enum AnalyzeStop {
    /// Nothing more can succeed (quota, key, shutdown).
    Fatal(String),
    Store(StoreError),
}

impl AnalyzeStop {
    fn into_upload(self) -> UploadError {
        match self {
            AnalyzeStop::Fatal(m) => UploadError::Analyzer(m),
            AnalyzeStop::Store(e) => UploadError::Store(e),
        }
    }
}

/// A batch of parsed rows and the running totals after it.
struct ParsedBatch {
    rows: Vec<StoredMessage>,
    warnings: Vec<String>,
    messages: u64,
    conversations: u64,
    autoresponses: u64,
}

/// The processed-content key of a loaded conversation: what the analyzer
/// reads, and (for a conversation too long to load whole) how many messages
/// it has, so a long conversation is not taken for its own start and end.
fn content_key(analyzer: &Analyzer, loaded: &LoadedConversation) -> [u8; 32] {
    let key = analyzer.content_key(&loaded.conversation);
    if loaded.conversation.messages.len() == loaded.counts.messages as usize {
        return key;
    }
    let mut h = blake3::Hasher::new();
    h.update(&key);
    h.update(&loaded.counts.messages.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Opens an export on a blocking thread (an XLSX is checked and its shared
/// strings read on open), never on an actor's.
async fn open_off_thread(
    path: PathBuf,
    opts: IngestOptions,
) -> Result<ingest::RowReader, UploadError> {
    tokio::task::spawn_blocking(move || ingest::open(&path, &opts))
        .await
        .map_err(|e| UploadError::Internal(format!("the parser thread failed: {e}")))?
        .map_err(UploadError::from)
}

/// The parser thread: reads rows, groups them into batches, counts.
/// `Ok(true)` at the end of the file, `Ok(false)` when stopped early.
fn parse_rows(
    reader: ingest::RowReader,
    tx: mpsc::Sender<ParsedBatch>,
    cancel: CancellationToken,
) -> Result<bool, IngestError> {
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
                return Ok(false);
            }
            let batch = ParsedBatch {
                rows: std::mem::replace(&mut rows, Vec::with_capacity(PARSE_BATCH)),
                warnings: std::mem::take(&mut warnings),
                messages,
                conversations: conversations.len() as u64,
                autoresponses,
            };
            if tx.blocking_send(batch).is_err() {
                return Ok(false);
            }
        }
    }
    if cancel.is_cancelled() {
        return Ok(false);
    }
    let sent = tx.blocking_send(ParsedBatch {
        rows,
        warnings,
        messages,
        conversations: conversations.len() as u64,
        autoresponses,
    });
    Ok(sent.is_ok())
}
