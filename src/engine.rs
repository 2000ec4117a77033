//! The library's front door: [`Engine`] starts every actor over one redb
//! file and one analyzer, takes uploads and shuts down cleanly. The CLI, the
//! HTTP server and embedders all go through it.

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use crate::analyze::Analyzer;
use crate::analyze::actor::AnalyzerPool;
use crate::config::Settings;
use crate::ingest::IngestOptions;
use crate::ingest::actor::{Drain, StartUpload, UploadActor, UploadTicket};
use crate::pipeline::{Pipeline, Submission, UploadError};
use crate::progress::actor::{Cancel, CancelError, ProgressActor};
use crate::store::actor::{Flush, StoreActor, StoreReader};
use crate::store::{Store, StoreError};

/// Threads answering read queries.
const READER_THREADS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A running PowerPulse: actors, pool, store. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pipeline: Pipeline,
    uploads: Addr<UploadActor>,
    store: Store,
    settings: Settings,
}

impl Engine {
    /// Opens the store and starts the actors. Must be called inside a running
    /// actix `System`.
    pub fn start(settings: Settings, analyzer: Analyzer) -> Result<Self, EngineError> {
        let store = Store::open(&settings.storage.path)?;
        let writer = StoreActor::new(
            store.clone(),
            settings.storage.batch_size,
            Duration::from_millis(settings.storage.flush_ms),
        )
        .start_dedicated();
        let reader = StoreReader::start(store.clone(), READER_THREADS);
        let progress = ProgressActor::default().start();
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
        };
        let uploads = UploadActor::new(pipeline.clone()).start();
        tracing::info!(
            db = %settings.storage.path.display(),
            analyzer = pipeline.analyzer.name(),
            model = %pipeline.analyzer.model(),
            concurrency = settings.analyzer.concurrency,
            "engine started"
        );
        Ok(Self {
            pipeline,
            uploads,
            store,
            settings,
        })
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

    /// The database path in use.
    pub fn db_path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// Starts analysing a file in the background.
    pub async fn submit(&self, submission: Submission) -> Result<UploadTicket, UploadError> {
        self.uploads.send(StartUpload(submission)).await?
    }

    pub async fn cancel(&self, upload_id: Uuid) -> Result<(), CancelError> {
        self.pipeline
            .progress
            .send(Cancel { upload_id })
            .await
            .unwrap_or(Err(CancelError::NotFound(upload_id)))
    }

    /// Stops taking uploads, cancels running ones, waits for their final
    /// records, commits everything buffered and stops the pool.
    pub async fn shutdown(&self) {
        let _ = self.uploads.send(Drain).await;
        if let Ok(Err(e)) = self.pipeline.store.send(Flush).await {
            tracing::error!(error = %e, "final commit failed");
        }
        self.pipeline.pool.stop();
    }
}
