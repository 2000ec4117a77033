//! The library's front door: [`Engine`] starts every actor over one redb
//! file and one analyzer, takes uploads and shuts down cleanly. The CLI, the
//! HTTP server and embedders all go through it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::alerts::actor::{AlertActor, CheckAlerts, FlushAlerts, SendDigest};
use crate::analyze::Analyzer;
use crate::analyze::actor::AnalyzerPool;
use crate::config::Settings;
use crate::ingest::IngestOptions;
use crate::notify::actor::{Notifier, WebhookActor};
use crate::notify::{NotifyError, Webhook, WebhookStats};
use crate::pipeline::{Drain, ResumeUpload, StartUpload, UploadActor, UploadTicket};
use crate::pipeline::{Pipeline, Submission, UploadError};
use crate::privacy::{PrivacyError, Redactor};
use crate::progress::actor::{Cancel, CancelError, GetProgress, ProgressActor};
use crate::retention::{self, RetentionReport};
use crate::search::actor::{IndexPending, IndexTrigger, SearchIndexer, StopIndexing};
use crate::spool;
use crate::store::actor::{
    Close, CloseReader, DeleteUpload, ListUploads, PutEndpointMemory, StoreActor, StoreReader,
    SweepProcessed,
};
use crate::store::{Store, StoreError, UploadRecord};

/// Threads answering read queries.
const READER_THREADS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("invalid setting {key}: {source}", key = .0.key(), source = .0)]
    Privacy(#[from] PrivacyError),
}

/// A running PowerPulse: actors, pool, store. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pipeline: Pipeline,
    uploads: Addr<UploadActor>,
    settings: Settings,
    /// Delivers webhook events, when `notify.webhook_url` is set.
    webhooks: Option<Addr<WebhookActor>>,
    webhook_stats: Arc<WebhookStats>,
    /// `[privacy]`, compiled: what a redacted export or transcript leaves out.
    redactor: Redactor,
    /// Alert checks and digests.
    alerts: Addr<AlertActor>,
    /// Builds the search index's queued pieces (`search::actor`).
    indexer: Addr<SearchIndexer>,
    index_trigger: IndexTrigger,
    /// Cancelled by `shutdown`: the indexer stops between pieces.
    index_stop: CancellationToken,
    alert_stats: Arc<crate::alerts::AlertStats>,
}

impl Engine {
    /// Opens the store and starts the actors. Must be called inside a running
    /// actix `System`.
    pub fn start(settings: Settings, analyzer: Analyzer) -> Result<Self, EngineError> {
        // Checked before the database is opened: a bad URL changes nothing.
        let webhook = Webhook::from_settings(&settings.notify)?;
        let redactor = Redactor::new(&settings.privacy)?;
        if let Analyzer::Lexicon(lexicon) = &analyzer {
            // Its tables take milliseconds to build: on a thread of their own,
            // from before the database is opened until the first upload is
            // parsed (a failed spawn only means the first analysis builds
            // them).
            let lexicon = Arc::clone(lexicon);
            let _ = std::thread::Builder::new()
                .name("powerpulse-prepare".into())
                .spawn(move || lexicon.prepare());
        }
        let store = Store::open(&settings.storage.path)?;
        // Absolute, as the paths recorded with uploads are.
        let db = &settings.storage.path;
        let spool_dir = spool::dir_for(&std::path::absolute(db).unwrap_or_else(|_| db.clone()));
        // Nothing runs yet: what the spool holds beyond the files unfinished
        // parses need, a crash left.
        match spool::sweep(&spool_dir, &store.uploads()?) {
            Ok(0) => {}
            Ok(files) => tracing::info!(files, "removed spooled uploads nothing needs"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep the spool directory"),
        }
        let snapshots = store.remove_stale_snapshots();
        if snapshots > 0 {
            tracing::info!(files = snapshots, "removed snapshot files a crash left");
        }
        if let Analyzer::OpenAi(llm) = &analyzer {
            // Each endpoint starts from what its server was found to accept.
            llm.recall(&store.endpoint_memories()?);
        }
        let writer = StoreActor::new(
            store.clone(),
            settings.storage.batch_size,
            Duration::from_millis(settings.storage.flush_ms),
        )
        .commit_when_awaited(settings.analyzer.concurrency)
        .start_dedicated();
        let reader = StoreReader::start(store.clone(), READER_THREADS);
        let progress = ProgressActor::default().start();
        let webhook_stats = Arc::new(WebhookStats::default());
        let webhooks = webhook.map(|hook| {
            WebhookActor::new(
                hook,
                reader.clone().recipient(),
                webhook_stats.clone(),
                settings.notify.queue_capacity,
            )
            .start()
        });
        let notifier = webhooks.as_ref().map(|addr| Notifier {
            to: addr.clone().recipient(),
            events: addr.clone().recipient(),
            stats: webhook_stats.clone(),
            capacity: settings.notify.queue_capacity,
        });
        let alert_stats = Arc::new(crate::alerts::AlertStats::default());
        let (alerts, alert_trigger) = AlertActor::new(
            reader.clone(),
            writer.clone(),
            notifier.clone(),
            settings.alerts.clone(),
            settings.notify.clone(),
            alert_stats.clone(),
        )
        .launch();
        let index_stop = CancellationToken::new();
        let (indexer, index_trigger) =
            SearchIndexer::new(reader.clone(), writer.clone(), index_stop.clone()).launch();
        let threads = match analyzer {
            // Lexicon analysis is CPU work: one arbiter per core.
            Analyzer::Lexicon(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            // LLM calls are I/O: one thread drives thousands.
            Analyzer::OpenAi(_) => 1,
        };
        let pool = AnalyzerPool::start(analyzer.clone(), settings.analyzer.concurrency, threads);
        let pipeline = Pipeline {
            analyzer,
            pool,
            store: writer,
            reader,
            progress,
            ingest: IngestOptions::from_settings(&settings.ingest),
            batch_size: settings.analyzer.batch_size,
            shutdown: CancellationToken::new(),
            spool_dir: Some(spool_dir),
            notifier,
            retry_failed: false,
            alerts: Some(alert_trigger),
            index: Some(index_trigger.clone()),
        };
        if let Analyzer::OpenAi(llm) = &pipeline.analyzer {
            remember_what_endpoints_learn(llm, pipeline.store.clone());
        }
        let uploads = UploadActor::new(pipeline.clone()).start();
        tracing::info!(
            db = %settings.storage.path.display(),
            analyzer = pipeline.analyzer.name(),
            model = %pipeline.analyzer.model(),
            concurrency = settings.analyzer.concurrency,
            "engine started"
        );
        // Only the actors hold the database from here on, so stopping them
        // (in `shutdown`) closes it.
        drop(store);
        Ok(Self {
            pipeline,
            uploads,
            settings,
            webhooks,
            webhook_stats,
            redactor,
            alerts,
            alert_stats,
            indexer,
            index_trigger,
            index_stop,
        })
    }

    /// The `[privacy]` policy, for whatever shows or exports text redacted
    /// (the analyzer's transcripts use the analyzer's own).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn analyzer(&self) -> &Analyzer {
        &self.pipeline.analyzer
    }

    pub fn progress(&self) -> &Addr<ProgressActor> {
        &self.pipeline.progress
    }

    pub fn reader(&self) -> &Addr<StoreReader> {
        &self.pipeline.reader
    }

    pub fn writer(&self) -> &Addr<StoreActor> {
        &self.pipeline.store
    }

    /// Webhook deliveries so far (all zero when webhooks are off).
    pub fn webhook_stats(&self) -> &WebhookStats {
        &self.webhook_stats
    }

    /// Alert checks and digests so far.
    pub fn alert_stats(&self) -> &crate::alerts::AlertStats {
        &self.alert_stats
    }

    /// The database path in use.
    pub fn db_path(&self) -> PathBuf {
        self.settings.storage.path.clone()
    }

    /// Where uploads received over the network are kept until parsed
    /// (absolute); files placed here and submitted with `remove_file_after`
    /// survive a crash during parsing, and go with their upload (see [`spool`]).
    pub fn spool_dir(&self) -> PathBuf {
        self.pipeline.spool_dir.clone().unwrap_or_default()
    }

    /// Removes a finished upload with its rows and its spooled file (the
    /// path of `DELETE /api/uploads/{id}` and of retention). Answers the
    /// record removed, `None` when there was none. The caller makes sure it
    /// is not running.
    pub async fn delete_upload(&self, upload_id: Uuid) -> Result<Option<UploadRecord>, StoreError> {
        let removed = self
            .writer()
            .send(DeleteUpload(upload_id))
            .await
            .map_err(|_| StoreError::Closed)??;
        if let Some(record) = &removed {
            spool::release(&self.spool_dir(), record);
        }
        Ok(removed)
    }

    /// Starts analysing a file in the background.
    pub async fn submit(&self, submission: Submission) -> Result<UploadTicket, UploadError> {
        self.uploads.send(StartUpload(submission)).await?
    }

    /// Continues an unfinished (or cancelled, or failed) upload in the background.
    pub async fn resume(&self, upload_id: Uuid) -> Result<UploadTicket, UploadError> {
        self.uploads.send(ResumeUpload(upload_id)).await?
    }

    /// Resumes every upload a previous process left unfinished; answers their tickets.
    pub async fn resume_unfinished(&self) -> Result<Vec<UploadTicket>, UploadError> {
        let uploads = self.pipeline.reader.send(ListUploads {}).await??;
        let mut tickets = Vec::new();
        for upload in uploads.into_iter().filter(|u| u.is_unfinished()) {
            tickets.push(self.resume(upload.id).await?);
        }
        Ok(tickets)
    }

    pub async fn cancel(&self, upload_id: Uuid) -> Result<(), CancelError> {
        self.pipeline
            .progress
            .send(Cancel { upload_id })
            .await
            .unwrap_or(Err(CancelError::NotFound(upload_id)))
    }

    /// Removes the uploads `storage.retention_days` has expired (see
    /// [`retention`]), each with [`Engine::delete_upload`], then sweeps the processed
    /// index if any went. An upload running here is never removed.
    pub async fn apply_retention(&self) -> Result<RetentionReport, EngineError> {
        let days = self.settings.storage.retention_days;
        let mut report = RetentionReport::default();
        if days == 0 {
            return Ok(report);
        }
        let closed = |_| StoreError::Closed;
        let uploads = self
            .pipeline
            .reader
            .send(ListUploads {})
            .await
            .map_err(closed)??;
        for id in retention::expired(&uploads, chrono::Utc::now(), days) {
            // A finished upload may have been resumed since it was listed.
            let live = self.progress().send(GetProgress { upload_id: id }).await;
            if live.is_ok_and(|s| s.is_some_and(|s| !s.stage.is_final())) {
                continue;
            }
            if self.delete_upload(id).await?.is_some() {
                report.uploads += 1;
            }
        }
        if report.uploads > 0 {
            report.processed_entries =
                self.writer().send(SweepProcessed).await.map_err(closed)??;
            tracing::info!(
                uploads = report.uploads,
                processed_entries = report.processed_entries,
                retention_days = days,
                "retention removed expired uploads"
            );
        }
        Ok(report)
    }

    /// Applies retention now and then every [`retention::INTERVAL`] until
    /// shutdown (when `storage.retention_days` is set): what `serve` runs.
    pub fn keep_retention(&self) {
        if self.settings.storage.retention_days == 0 {
            return;
        }
        let engine = self.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(retention::INTERVAL);
            loop {
                tokio::select! {
                    _ = engine.pipeline.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = engine.apply_retention().await {
                    tracing::error!(error = %e, "retention failed");
                }
            }
        });
    }

    /// Keeps the search index built, as `serve` does: what is queued now
    /// (an earlier process's uploads, a file without the index) is built at
    /// once, and each upload as it completes, off the ingest path.
    pub fn keep_index(&self) {
        self.index_trigger.activate();
        let _ = self.indexer.try_send(IndexPending);
    }

    /// Builds what is queued of completed uploads now and waits for it
    /// (and for whatever the indexer was doing): a search sent afterwards
    /// sees every upload completed before this call. Answers how many
    /// segments were written.
    pub async fn index_now(&self) -> Result<usize, StoreError> {
        self.indexer
            .send(IndexPending)
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Looks for alerts now and waits for the check (and anything sent to
    /// the alerts before it) to be done.
    pub async fn check_alerts(&self) {
        let _ = self.alerts.send(CheckAlerts).await;
        let _ = self.alerts.send(FlushAlerts).await;
    }

    /// What `serve` runs besides requests: an alert check every
    /// [`crate::alerts::CHECK_INTERVAL`] (the first now), and the digest
    /// at each time `notify.digest` falls due (one that fell due while the
    /// server was down, now), until shutdown.
    pub fn keep_watching(&self) {
        let engine = self.clone();
        actix_rt::spawn(async move {
            let mut checks = tokio::time::interval(crate::alerts::CHECK_INTERVAL);
            let notify = engine.settings.notify.clone();
            if let Some(due) = crate::notify::digest::last_due(&notify, chrono::Utc::now()) {
                let _ = engine.alerts.try_send(SendDigest { due });
            }
            loop {
                let until_digest = crate::notify::digest::next_due(&notify, chrono::Utc::now())
                    .map(|due| (due, (due - chrono::Utc::now()).to_std().unwrap_or_default()));
                tokio::select! {
                    _ = engine.pipeline.shutdown.cancelled() => return,
                    _ = checks.tick() => {
                        let _ = engine.alerts.try_send(CheckAlerts);
                    }
                    _ = tokio::time::sleep(until_digest.map_or(crate::alerts::CHECK_INTERVAL, |d| d.1)), if until_digest.is_some() => {
                        if let Some((due, _)) = until_digest {
                            let _ = engine.alerts.try_send(SendDigest { due });
                        }
                    }
                }
            }
        });
    }

    /// Stops taking uploads, interrupts running ones (they keep an unfinished
    /// status and resume on the next start), waits until each has stored what
    /// it has, commits everything buffered, closes the database and stops the
    /// pool. Webhook events of uploads that ended are given up to
    /// `notify.timeout_seconds` to go out. The engine is unusable afterwards.
    pub async fn shutdown(&self) {
        self.pipeline.shutdown.cancel();
        // The indexer stops after the piece it is building (what is left
        // stays queued for the next `serve`).
        self.index_stop.cancel();
        let _ = self.indexer.send(StopIndexing).await;
        let _ = self.uploads.send(Drain).await;
        // The checks of uploads that completed, and their webhooks.
        let _ = self.alerts.send(FlushAlerts).await;
        if let Some(webhooks) = &self.webhooks {
            let grace = Duration::from_secs(self.settings.notify.timeout_seconds);
            crate::notify::actor::flush(webhooks, grace).await;
        }
        if let Ok(Err(e)) = self.pipeline.store.send(Close).await {
            tracing::error!(error = %e, "final commit failed");
        }
        let _ = self.pipeline.reader.send(CloseReader).await;
        self.pipeline.pool.stop();
    }
}

/// Stores what the LLM endpoints learn about their servers as they learn it
/// (`PutEndpointMemory`), so the next run starts there.
fn remember_what_endpoints_learn(llm: &crate::analyze::OpenAiAnalyzer, store: Addr<StoreActor>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    llm.learn_into(tx);
    actix_rt::spawn(async move {
        while let Some(learned) = rx.recv().await {
            let put = PutEndpointMemory {
                key: learned.key,
                memory: learned.memory,
            };
            match store.send(put).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not store what an endpoint learnt"),
                // The store has stopped: so has the engine.
                Err(_) => return,
            }
        }
    });
}
