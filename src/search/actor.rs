//! `SearchIndexer`: builds the search index's queued pieces off the ingest
//! path, one batch at a time, on a thread of its own.
//!
//! The store queues a piece (a run of messages, a completed upload's
//! summaries) in the transaction that stores what it indexes; building its
//! segment — reading the text back, tokenising it, encoding postings — is
//! this actor's. `IndexPending` reads a few queued pieces of completed
//! uploads (`PendingSegments`), reads each one's text (`ReadSegmentSource`,
//! on a `StoreReader` thread), builds the segments here, and sends them to
//! the `StoreActor` (`PutSegments`), which writes each only if its piece is
//! still queued as read; until nothing of a completed upload is queued. It
//! is an `AtomicResponse`: one batch at a time, and an `IndexPending` sent
//! by a search is answered once everything queued before it is built.
//! `serve` sends one at start (what an earlier process left, or a file
//! without the index) and one when an upload completes ([`IndexTrigger`]);
//! other commands never build the index (the next `serve` does). The actor
//! only ever talks to the store's actors, so `Engine::shutdown` stops it
//! (`stop`, checked between pieces; `StopIndexing`) before the database
//! closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::store::actor::{
    PendingSegments, PutSegments, ReadSegmentSource, StoreActor, StoreReader,
};
use crate::store::{BuiltSegment, StoreError};

/// Queued pieces read at a time: a few runs of 8,192 messages each, so a
/// batch is written in one transaction and a stop waits for little.
const BATCH: usize = 4;

/// Builds every queued piece of completed uploads; answers how many
/// segments were written.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct IndexPending;

/// Answered once the indexer is idle (after `stop` is cancelled, no
/// further piece is built).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopIndexing;

pub struct SearchIndexer {
    reader: Addr<StoreReader>,
    writer: Addr<StoreActor>,
    stop: CancellationToken,
    /// An `IndexPending` from the trigger is queued.
    queued: Arc<AtomicBool>,
}

/// What the pipeline holds to have completed uploads indexed, without
/// waiting: at most one `IndexPending` queued (it builds everything queued
/// when it runs), and only in a process that keeps the index (`serve`).
#[derive(Clone)]
pub struct IndexTrigger {
    to: Recipient<IndexPending>,
    queued: Arc<AtomicBool>,
    active: Arc<AtomicBool>,
}

impl IndexTrigger {
    /// From now on, completed uploads are indexed as they complete.
    pub fn activate(&self) {
        self.active.store(true, Ordering::Release);
    }

    pub fn upload_completed(&self) {
        if self.active.load(Ordering::Acquire)
            && !self.queued.swap(true, Ordering::AcqRel)
            && self.to.try_send(IndexPending).is_err()
        {
            self.queued.store(false, Ordering::Release);
            tracing::debug!("indexing not queued: the indexer has stopped");
        }
    }
}

impl SearchIndexer {
    pub fn new(
        reader: Addr<StoreReader>,
        writer: Addr<StoreActor>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            reader,
            writer,
            stop,
            queued: Arc::default(),
        }
    }

    /// Starts it on an arbiter thread of its own (it builds segments there,
    /// blocking that thread only); answers its address and the pipeline's
    /// trigger (inactive until [`IndexTrigger::activate`]).
    pub fn launch(self) -> (Addr<Self>, IndexTrigger) {
        let queued = self.queued.clone();
        let arbiter = Arbiter::new();
        let addr = Self::start_in_arbiter(&arbiter.handle(), move |_| self);
        let trigger = IndexTrigger {
            to: addr.clone().recipient(),
            queued,
            active: Arc::default(),
        };
        (addr, trigger)
    }
}

impl Actor for SearchIndexer {
    type Context = Context<Self>;
}

/// A mailbox error is the store shutting down.
fn closed(_: MailboxError) -> StoreError {
    StoreError::Closed
}

impl Handler<IndexPending> for SearchIndexer {
    type Result = AtomicResponse<Self, Result<usize, StoreError>>;

    fn handle(&mut self, _: IndexPending, _: &mut Self::Context) -> Self::Result {
        self.queued.store(false, Ordering::Release);
        let (reader, writer, stop) = (self.reader.clone(), self.writer.clone(), self.stop.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let mut written = 0;
                while !stop.is_cancelled() {
                    let pending = reader
                        .send(PendingSegments { limit: BATCH })
                        .await
                        .map_err(closed)??;
                    if pending.is_empty() {
                        break;
                    }
                    let mut built = Vec::with_capacity(pending.len());
                    for p in pending {
                        if stop.is_cancelled() {
                            break;
                        }
                        // None: no longer queued as listed (deleted, parsed again).
                        if let Some(source) = reader
                            .send(ReadSegmentSource { pending: p })
                            .await
                            .map_err(closed)??
                        {
                            built.push(BuiltSegment {
                                pending: p,
                                segment: source.build(),
                            });
                        }
                    }
                    // Each piece read is now written or dropped, or was
                    // queued again since: the queue of what was listed
                    // shrinks every turn.
                    written += writer.send(PutSegments(built)).await.map_err(closed)??;
                }
                if written > 0 {
                    tracing::debug!(segments = written, "search index built");
                }
                Ok(written)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<StopIndexing> for SearchIndexer {
    type Result = ();
    fn handle(&mut self, _: StopIndexing, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
