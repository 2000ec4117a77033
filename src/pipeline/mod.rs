//! One upload's journey: parse → analyse → record, then the final record.
//!
//! ```text
//!  file ─▶ parse (blocking thread) ─ 8k messages ─▶ StoreActor: AppendMessages (no fsync)
//!                                                          │ PutUpload `analyzing` (fsync)
//!  StoreReader: LoadPending (keyed, looked up) ◀───────────┘  (batches of `analyzer.batch_size`)
//!       │
//!       ├─ free analyzer:   AnalyzerPool::analyze_all (one message per thread)
//!       │                     ─▶ StoreActor: SaveOutcomes (one transaction, no fsync)
//!       └─ costly analyzer: AnalyzerPool lease per call (≤ concurrency in flight)
//!                             ─▶ StoreActor: SaveOutcome (batched, fsync before the lease goes)
//!  every batch ─▶ ProgressActor: Update;  the end ─▶ PutUpload (fsync: seals every batch)
//!  a final state ─▶ WebhookActor: UploadEnded (try_send: never waited on; when webhooks are on)
//! ```
//!
//! One file per stage over plain, unit-tested code: [`parse`] (rows →
//! batches), [`analyse`] (the plan for a batch, identical conversations),
//! [`record`] (outcome → stored row and tally). The stages share only the
//! types in this file; [`actor`] is the `UploadActor` that runs each upload
//! as a job.
//!
//! A job is a task on the actix runtime, not an actor: it only awaits other
//! actors, so it never blocks an arbiter; parsing and opening files run on
//! blocking threads. Cancellation is cooperative: the upload's token is
//! checked before every batch and every analyzer call, and in-flight calls
//! race it.

pub mod actor;
mod analyse;
mod batch;
mod budget;
mod parse;
mod record;

use std::path::PathBuf;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use actor::{Drain, ResumeUpload, StartUpload, UploadActor, UploadTicket};

use crate::analyze::actor::AnalyzerPool;
use crate::analyze::openai::router::ProviderOutage;
use crate::analyze::{Analyzer, FailureKind, FatalKind, LlmUsage};
use crate::ingest::{self, IngestChoice, IngestError, IngestOptions};
use crate::model::{Analysis, Stage};
use crate::notify::UploadEnd;
use crate::notify::actor::Notifier;
use crate::progress::ProgressEvent;
use crate::progress::actor::{GetProgress, ProgressActor, Update};
use crate::store::actor::{
    ClearUploadRows, DeleteUpload, GetTally, GetUpload, PutUpload, StoreActor, StoreReader,
};
use crate::store::{LoadedConversation, OutcomeTally, StoreError, UploadCounts, UploadRecord};

/// Warnings kept in an upload's record; the rest are counted.
const MAX_WARNINGS: usize = 100;

/// Why an upload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The analyzer can do nothing more (quota, key, a redirect, shutdown).
    #[error("{detail}")]
    AnalyzerStopped { kind: FatalKind, detail: String },
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
    /// How to read it, where it differs from `[ingest]` (an operator's
    /// choice in a preview, `analyze --format`/`--agent`).
    pub ingest: IngestChoice,
}

impl Submission {
    /// A file to read as `[ingest]` says.
    pub fn file(path: PathBuf, filename: String, remove_file_after: bool) -> Self {
        Self {
            path,
            filename,
            remove_file_after,
            ingest: IngestChoice::default(),
        }
    }
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
    /// Told of every upload's end, when webhooks are on (never waited on).
    pub notifier: Option<Notifier>,
    /// This run also tries again the conversations that failed for want of
    /// an answer (set for a resumed upload).
    pub retry_failed: bool,
    /// Asked for an alert check when an upload completes (never waited on).
    pub alerts: Option<crate::alerts::actor::AlertTrigger>,
    /// Asked to index an upload when it completes (never waited on).
    pub index: Option<crate::search::actor::IndexTrigger>,
}

/// A free analyzer's settled batches on their way to the store: the last
/// one settled, to record, and the one sent before it, to wait for. One
/// batch is committed at a time, in order.
#[derive(Default)]
struct Recording {
    settled: Option<Vec<(LoadedConversation, Settled)>>,
    saving: Option<record::Saving>,
}

/// Counts and usage gathered while an upload runs.
#[derive(Default)]
struct Tally {
    counts: UploadCounts,
    llm: LlmUsage,
    warnings: Vec<String>,
    warnings_total: u64,
    /// How many of `warnings` (the first ones) are notices.
    notices: usize,
}

impl Tally {
    fn warn(&mut self, message: String) {
        self.warnings_total += 1;
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        }
    }

    /// A warning about the whole upload: listed before the row warnings,
    /// and kept whatever their number (there are a few at most).
    fn notice(&mut self, message: String) {
        self.warnings_total += 1;
        let first_row_warning = self.warnings.len().min(self.notices);
        self.warnings.insert(first_row_warning, message);
        self.notices += 1;
        if self.warnings.len() > MAX_WARNINGS + self.notices {
            self.warnings.pop();
        }
    }
}

impl Pipeline {
    /// Progress events are tiny and at most one message per batch or per
    /// paid call; the ProgressActor only updates memory, so an unbounded
    /// mailbox here cannot grow faster than work is done.
    fn progress(&self, upload_id: Uuid, event: ProgressEvent) {
        self.progress.do_send(Update {
            upload_id,
            events: vec![event],
        });
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
        let opts = self.ingest.clone().with_choice(&submission.ingest);
        // A spooled upload is named as the user knows it (its name may also
        // name a WhatsApp chat's other party).
        let name = if submission.remove_file_after {
            submission.filename.clone()
        } else {
            path.display().to_string()
        };
        let reader = open_off_thread(path, name, opts).await?;
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
            ingest: (!submission.ingest.is_empty()).then(|| submission.ingest.clone()),
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
        let filename = record.filename.clone();
        let span = tracing::info_span!("upload", upload_id = %upload_id);
        let result = self
            .drive(
                record,
                Some(reader),
                OutcomeTally::default(),
                remove_file_after,
                &cancel,
                Instant::now(),
            )
            .instrument(span.clone())
            .await;
        // An interrupted upload keeps its file: the next start parses it again.
        let finished_badly = result.is_err() && !matches!(result, Err(UploadError::Interrupted));
        if let (true, true, Some(source)) = (remove_file_after, finished_badly, source) {
            let _ = std::fs::remove_file(source);
        }
        // In the upload's span: its end is logged with its id.
        span.in_scope(|| self.report_end(upload_id, &filename, &result));
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
        let filename = record.filename.clone();
        let span = tracing::info_span!("upload", upload_id = %upload_id);
        let job = async {
            let started = Instant::now();
            tracing::info!(status = record.status.as_str(), "resuming upload");
            if record.status.is_final() {
                // Asked for by a person: a fresh run of attempts.
                record.starts_without_progress = 0;
            }
            // Outcomes an earlier run stored (none when the parse is redone:
            // its rows are cleared first).
            let mut before = if record.needs_parse() {
                OutcomeTally::default()
            } else {
                self.query(GetTally { upload_id })
                    .await
                    .map_err(AnalyzeStop::into_upload)?
            };
            let mark = if record.needs_parse() {
                0
            } else {
                1 + before.analyzed + before.failed + before.skipped_already_processed
            };
            // Conversations that failed for want of an answer (an outage,
            // say) are tried again: they are pending, not failed. What their
            // attempts cost stays counted.
            before.failed -= before.retryable;
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
                let spooled = self
                    .spool_dir
                    .as_ref()
                    .is_some_and(|dir| source.starts_with(dir));
                let name = if spooled {
                    record.filename.clone()
                } else {
                    source.display().to_string()
                };
                let opts = match &record.ingest {
                    Some(choice) => self.ingest.clone().with_choice(choice),
                    None => self.ingest.clone(),
                };
                let reader = match open_off_thread(source, name, opts).await {
                    Ok(reader) => reader,
                    // The kept file no longer reads as an export (damaged on
                    // disk): no resume ever will. The upload ends failed,
                    // saying why, and the file goes (after the record no
                    // longer names it: a crash in between leaves it to the
                    // sweep at start). A file of the user's own, or one that
                    // cannot be read for now, stays for them to mend.
                    Err(UploadError::Ingest(e))
                        if spooled
                            && !matches!(e, IngestError::Io { .. } | IngestError::Agents(_)) =>
                    {
                        tracing::error!(error = %e, "the kept file cannot be parsed again");
                        let kept = record.clone();
                        record.status = Stage::Failed;
                        record.error = Some(e.to_string());
                        record.finished_at = Some(Utc::now());
                        record.source = None;
                        self.store.send(PutUpload(record.clone())).await??;
                        if let Some(dir) = &self.spool_dir {
                            crate::spool::release(dir, &kept);
                        }
                        return Ok(UploadReport {
                            record,
                            processing_time_seconds: started.elapsed().as_secs_f64(),
                        });
                    }
                    Err(e) => return Err(e),
                };
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
            let this = Pipeline {
                retry_failed: true,
                ..self.clone()
            };
            this.drive(record, reader, before, spooled, &cancel, started)
                .await
        };
        let result = job.instrument(span.clone()).await;
        span.in_scope(|| self.report_end(upload_id, &filename, &result));
        result
    }

    /// Marks an upload failed after an internal error (a panic in its job or
    /// its parser thread: a bug): the record says so, and progress watchers
    /// see it end.
    pub async fn fail_after_panic(&self, upload_id: Uuid, message: &str) {
        let error = UploadError::Internal(message.to_string()).to_string();
        let mut end = UploadEnd {
            upload_id,
            filename: String::new(),
            status: Stage::Failed,
            counts: UploadCounts::default(),
            llm: LlmUsage::default(),
            error: Some(error.clone()),
            finished_at: Utc::now(),
            paused: None,
        };
        if let Ok(Ok(Some(mut record))) = self.reader.send(GetUpload { upload_id }).await {
            end.filename = record.filename.clone();
            end.counts = record.counts;
            end.llm = record.llm;
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
        self.notify(end);
    }

    /// While an upload is analysed by the LLM: shows the provider's outages
    /// on its progress, and tells the webhook once each time it pauses
    /// (`upload.paused`). Stops when the guard is dropped.
    fn watch_outages(&self, upload_id: Uuid, filename: &str) -> Option<Watching> {
        let Analyzer::OpenAi(llm) = &self.analyzer else {
            return None;
        };
        let mut outages = llm.router().outage();
        let this = self.clone();
        let filename = filename.to_string();
        let task = actix_rt::spawn(async move {
            let mut paused = false;
            loop {
                let outage = outages.borrow_and_update().clone();
                match (&outage, paused) {
                    (None, false) => {}
                    (Some(o), false) => {
                        paused = true;
                        tracing::warn!(%upload_id, "{}: the upload waits for it", o.headline());
                        this.notify_paused(upload_id, &filename, o.clone()).await;
                        this.progress(upload_id, ProgressEvent::Provider(outage));
                    }
                    (Some(_), true) => this.progress(upload_id, ProgressEvent::Provider(outage)),
                    (None, true) => {
                        paused = false;
                        this.progress(upload_id, ProgressEvent::Provider(None));
                    }
                }
                if outages.changed().await.is_err() {
                    return;
                }
            }
        });
        Some(Watching(task))
    }

    /// `upload.paused` to the webhook, with the upload's counts so far.
    async fn notify_paused(&self, upload_id: Uuid, filename: &str, outage: ProviderOutage) {
        if self.notifier.is_none() {
            return;
        }
        let now = self
            .progress
            .send(GetProgress { upload_id })
            .await
            .ok()
            .flatten();
        let mut counts = UploadCounts::default();
        let mut llm = LlmUsage::default();
        if let Some(s) = now {
            counts.conversations = s.total_conversations;
            counts.messages = s.messages;
            counts.autoresponses_filtered = s.autoresponses_filtered;
            counts.analyzed = s.analyzed;
            counts.failed = s.failed;
            counts.skipped_already_processed = s.skipped;
            llm = s.llm;
        }
        self.notify(UploadEnd {
            upload_id,
            filename: filename.to_string(),
            status: Stage::Analyzing,
            counts,
            llm,
            error: Some(outage.headline()),
            finished_at: Utc::now(),
            paused: Some(outage),
        });
    }

    /// Tells the webhook (when one is configured) how an upload ended, and
    /// asks for an alert check when it completed.
    fn notify(&self, end: UploadEnd) {
        if end.status == Stage::Completed
            && let Some(alerts) = &self.alerts
        {
            alerts.upload_completed();
        }
        if end.status == Stage::Completed
            && let Some(index) = &self.index
        {
            index.upload_completed();
        }
        if let Some(notifier) = &self.notifier {
            notifier.upload_ended(end);
        }
    }

    fn is_spooled(&self, path: &std::path::Path) -> bool {
        self.spool_dir
            .as_deref()
            .is_some_and(|dir| crate::spool::holds(dir, path))
    }

    fn report_end(
        &self,
        upload_id: Uuid,
        filename: &str,
        result: &Result<UploadReport, UploadError>,
    ) {
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
                let r = &report.record;
                self.notify(UploadEnd {
                    upload_id,
                    filename: r.filename.clone(),
                    status: r.status,
                    counts: r.counts,
                    llm: r.llm,
                    error: r.error.clone(),
                    finished_at: r.finished_at.unwrap_or_else(Utc::now),
                    paused: None,
                });
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
                self.notify(UploadEnd {
                    upload_id,
                    filename: filename.to_string(),
                    status: Stage::Failed,
                    counts: UploadCounts::default(),
                    llm: LlmUsage::default(),
                    error: Some(e.to_string()),
                    finished_at: Utc::now(),
                    paused: None,
                });
            }
        }
    }

    /// Parse (when `reader` is given), analyse, and write the final record;
    /// `before` is what an earlier run of the upload stored.
    async fn drive(
        &self,
        mut record: UploadRecord,
        reader: Option<ingest::RowReader>,
        before: OutcomeTally,
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
                        let removed = self.store.send(DeleteUpload(upload_id)).await??;
                        // Nothing will parse its file again.
                        if let (true, Some(dir), Some(record)) =
                            (remove_source_after_parse, &self.spool_dir, &removed)
                        {
                            crate::spool::release(dir, record);
                        }
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
            // The commit that seals the parse (fsync). Queued first, it
            // precedes every outcome's commit; a free analyzer reads and
            // analyses meanwhile, paid calls wait for it.
            let sealing = self.store.send(PutUpload(record.clone()));
            let sealed = async {
                sealing.await??;
                // Only once `analyzing` is on disk: a crash before it parses again.
                if let Some(source) = parsed_source.take() {
                    let _ = std::fs::remove_file(source);
                }
                Ok::<(), UploadError>(())
            };
            let analysed = if self.analyzer.is_costly() {
                sealed.await?;
                self.progress(upload_id, ProgressEvent::Stage(Stage::Analyzing));
                let _watching = self.watch_outages(upload_id, &record.filename);
                self.analyse(upload_id, cancel, &mut tally).await
            } else {
                self.progress(upload_id, ProgressEvent::Stage(Stage::Analyzing));
                let (sealed, analysed) =
                    futures_util::join!(sealed, self.analyse(upload_id, cancel, &mut tally));
                sealed?;
                analysed
            };
            match analysed {
                Ok(()) if cancel.is_cancelled() => final_stage = Stage::Cancelled,
                Ok(()) => {}
                // Stopped by the engine's shutdown (a batch still running, a
                // call cut short): not a failure, the next start resumes it.
                Err(AnalyzeStop::Fatal { .. }) if self.shutdown.is_cancelled() => {
                    final_stage = Stage::Cancelled;
                }
                Err(AnalyzeStop::Fatal {
                    detail: message, ..
                }) => {
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
            .map_err(|_| AnalyzeStop::shutting_down())?
            .map_err(AnalyzeStop::Store)
    }
}

/// What became of one conversation, ready to be recorded.
#[derive(Debug, Clone)]
enum Settled {
    Analyzed {
        analysis: Analysis,
        key: [u8; 32],
        usage: LlmUsage,
        /// The LLM endpoint that made it.
        endpoint: Option<String>,
    },
    /// Answered by the analysis of identical content (`key`).
    Skipped { analysis: Analysis, key: [u8; 32] },
    Failed {
        kind: FailureKind,
        reason: String,
        usage: LlmUsage,
        /// The LLM endpoint of its last attempt.
        endpoint: Option<String>,
    },
}

impl Settled {
    /// What a conversation with identical content gets: the same analysis,
    /// answered rather than paid for again, or the same failure (the same
    /// content would very likely fail the same way, and paying for it twice
    /// is what we promise not to do), with no usage of its own.
    fn for_twin(&self) -> Settled {
        match self {
            Settled::Analyzed { analysis, key, .. } | Settled::Skipped { analysis, key } => {
                Settled::Skipped {
                    analysis: analysis.clone(),
                    key: *key,
                }
            }
            Settled::Failed { kind, reason, .. } => Settled::Failed {
                kind: *kind,
                reason: reason.clone(),
                usage: LlmUsage::default(),
                endpoint: None,
            },
        }
    }
}

/// Why analysis stopped early.
enum AnalyzeStop {
    /// Nothing more can succeed (quota, key, shutdown).
    Fatal {
        kind: FatalKind,
        detail: String,
    },
    Store(StoreError),
}

impl AnalyzeStop {
    fn shutting_down() -> Self {
        AnalyzeStop::Fatal {
            kind: FatalKind::ShuttingDown,
            detail: "the engine is shutting down".into(),
        }
    }

    fn into_upload(self) -> UploadError {
        match self {
            AnalyzeStop::Fatal { kind, detail } => UploadError::AnalyzerStopped { kind, detail },
            AnalyzeStop::Store(e) => UploadError::Store(e),
        }
    }
}

/// Watches an upload's provider while it lives ([`Pipeline::watch_outages`]).
struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens an export on a blocking thread (an XLSX is checked and its shared
/// strings read on open, a zip unpacked), never on an actor's; `name` is
/// how messages name it.
async fn open_off_thread(
    path: PathBuf,
    name: String,
    opts: IngestOptions,
) -> Result<ingest::RowReader, UploadError> {
    tokio::task::spawn_blocking(move || ingest::open_named(&path, &name, &opts))
        .await
        .map_err(|e| UploadError::Internal(format!("the parser thread failed: {e}")))?
        .map_err(UploadError::from)
}
