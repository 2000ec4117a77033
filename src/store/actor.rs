//! The actors over [`Store`]: `StoreActor`, the only writer, and
//! `StoreReader`, a small pool answering queries.
//!
//! `StoreActor` runs alone on its own arbiter (a dedicated OS thread), so its
//! blocking commits never stall another actor. Outcomes are buffered and
//! committed together: every `storage.batch_size` outcomes or `storage.flush_ms`
//! after the first unflushed one, whichever comes first — or at once when as
//! many senders wait on durability as the analyzer pool has actors. Every other write
//! (upload records, message batches, deletes) first commits what is buffered,
//! so writes reach the file in the order they were sent.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::stats::{DrillCursor, DrillFilter, Insights, InsightsQuery};
use super::{
    BatchJob, ConversationDetail, ConversationFilter, ConversationResult, ConversationRow,
    DrillPage, KeyOf, KeyedPending, MessageChunks, OutcomeTally, Page, SnapshotStats, Store,
    StoreError, UploadRecord, UploadSummary,
};
use crate::access::{AuditEntry, AuditFilter};
use crate::model::Analysis;

type StoreResult<T> = Result<T, StoreError>;

/// Records a new upload, or replaces an upload's record (status, counts).
/// Buffered outcomes are committed in the same transaction.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct PutUpload(pub UploadRecord);

/// Appends a batch of parsed messages to an upload (one transaction).
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct AppendMessages {
    pub upload_id: Uuid,
    /// Encoded by the sender (`MessageChunks::encode`), off this thread.
    pub chunks: MessageChunks,
    /// `false` while parsing: a crash redoes the parse anyway, and the
    /// record's move to `analyzing` (always durable) seals every batch.
    pub durable: bool,
}

/// One conversation's outcome. Answered once buffered, with a [`Durable`]
/// that resolves when the batch holding it is committed. An error reports a
/// failed earlier commit.
#[derive(Message)]
#[rtype(result = "StoreResult<Durable>")]
pub struct SaveOutcome(pub ConversationResult);

/// Several outcomes at once, committed now in one transaction. `durable:
/// false` for outcomes that cost nothing to redo (a free analyzer's): a
/// crash may lose them, the next durable commit seals them. Answered with
/// one `Durable` for all of them, resolved at that commit.
#[derive(Message)]
#[rtype(result = "StoreResult<Durable>")]
pub struct SaveOutcomes {
    pub results: Vec<ConversationResult>,
    pub durable: bool,
}

/// Resolves when an outcome is on disk (or its commit failed).
pub type Durable = oneshot::Receiver<StoreResult<()>>;

/// Removes an upload's messages and outcomes, keeping its record: a parse
/// is about to be redone.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct ClearUploadRows(pub Uuid);

/// Commits everything buffered now.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct Flush;

/// Commits what is buffered, then stops the actor and its arbiter thread,
/// closing its handle on the database (part of a clean shutdown).
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct Close;

/// Makes every `StoreReader` thread let go of the database; later queries
/// answer `StoreError::Closed`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseReader;

/// Records a batch job (durably: it is what stops a second batch being
/// paid for), with its requests' content keys when they are new.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct PutBatchJob {
    pub job: BatchJob,
    pub keys: Option<Vec<[u8; 32]>>,
}

/// Remembers what an LLM endpoint learnt about its server (durably: the
/// next run starts from it).
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct PutEndpointMemory {
    /// The endpoint's identity (`Endpoint::memory_key`).
    pub key: String,
    pub memory: crate::analyze::openai::negotiate::EndpointMemory,
}

/// Removes an upload and all its rows. Answers the record removed (`None`:
/// there was none); its spooled file is the sender's to remove
/// (`Engine::delete_upload`).
#[derive(Message)]
#[rtype(result = "StoreResult<Option<UploadRecord>>")]
pub struct DeleteUpload(pub Uuid);

/// Records an audit entry, durably (before the request it records is answered).
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct PutAudit(pub AuditEntry);

/// Removes the processed-index entries no stored conversation refers to
/// (after retention removed uploads). Answers how many went.
#[derive(Message)]
#[rtype(result = "StoreResult<u64>")]
pub struct SweepProcessed;

/// Keeps the alerts not raised before; answers those.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<crate::alerts::Alert>>")]
pub struct RaiseAlerts {
    pub detected: Vec<crate::alerts::Detected>,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Marks an alert acknowledged; answers it (`None`: no such alert).
#[derive(Message)]
#[rtype(result = "StoreResult<Option<crate::alerts::Alert>>")]
pub struct AcknowledgeAlert {
    pub id: String,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Records that the digest of the period ending on `day` went out.
#[derive(Message)]
#[rtype(result = "StoreResult<()>")]
pub struct RecordDigest {
    pub schedule: crate::config::DigestSchedule,
    pub day: super::stats::DayNumber,
}

pub struct StoreActor {
    /// `None` once closed: `Close` drops it before answering, so whoever
    /// awaited the close can open the file at once (the actor itself is
    /// dropped later, on its own thread).
    store: Option<Store>,
    pending: Vec<ConversationResult>,
    /// Told when `pending` is committed, one per buffered outcome.
    waiting: Vec<oneshot::Sender<StoreResult<()>>>,
    batch_size: usize,
    /// Commit as soon as this many outcomes are awaited by their senders:
    /// the analyzer pool's size, since a paid call keeps its actor until its
    /// outcome is on disk, so that many waiting means the pool is stalled.
    commit_when_awaited: usize,
    flush_after: Duration,
    flush_timer: Option<SpawnHandle>,
    /// The error of the last failed commit, reported to senders until a commit succeeds.
    failure: Option<StoreError>,
}

/// Bound on queued messages: senders using `send().await` wait beyond it.
const MAILBOX_CAPACITY: usize = 256;

impl StoreActor {
    pub fn new(store: Store, batch_size: usize, flush_after: Duration) -> Self {
        Self {
            store: Some(store),
            pending: Vec::with_capacity(batch_size),
            waiting: Vec::with_capacity(batch_size),
            batch_size: batch_size.max(1),
            commit_when_awaited: usize::MAX,
            flush_after,
            flush_timer: None,
            failure: None,
        }
    }

    fn store(&self) -> StoreResult<&Store> {
        self.store.as_ref().ok_or(StoreError::Closed)
    }

    /// Commits early once `n` senders wait on their outcomes' durability.
    pub fn commit_when_awaited(mut self, n: usize) -> Self {
        self.commit_when_awaited = n.max(1);
        self
    }

    /// Starts the actor on a dedicated arbiter thread.
    pub fn start_dedicated(self) -> Addr<Self> {
        let arbiter = Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| self)
    }

    /// Commits the buffered outcomes (and `upload`): durably when asked, when
    /// an upload record is written, or when anyone waits on the outcomes.
    fn commit(
        &mut self,
        ctx: &mut Context<Self>,
        upload: Option<&UploadRecord>,
        durable: bool,
    ) -> StoreResult<()> {
        if let Some(timer) = self.flush_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.pending.is_empty() && upload.is_none() {
            return match &self.failure {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
        }
        let durable = durable || upload.is_some() || !self.waiting.is_empty();
        match self.store()?.save_results(&self.pending, upload, durable) {
            Ok(()) => {
                tracing::debug!(outcomes = self.pending.len(), "committed batch");
                self.pending.clear();
                for w in self.waiting.drain(..) {
                    let _ = w.send(Ok(()));
                }
                self.failure = None;
                Ok(())
            }
            Err(e) => {
                // Keep the batch: a later commit retries it (a transient full disk
                // may clear); whoever waits on it learns of the failure now.
                tracing::error!(error = %e, "batch commit failed");
                for w in self.waiting.drain(..) {
                    let _ = w.send(Err(e.clone()));
                }
                self.failure = Some(e.clone());
                Err(e)
            }
        }
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        // Never lose buffered outcomes on shutdown.
        let _ = self.commit(ctx, None, true);
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // The arbiter was made for this actor alone.
        Arbiter::current().stop();
    }
}

impl Handler<PutUpload> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: PutUpload, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, Some(&msg.0), true)
    }
}

impl Handler<AppendMessages> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: AppendMessages, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?
            .put_chunks(msg.upload_id, &msg.chunks, msg.durable)
    }
}

impl Handler<SaveOutcome> for StoreActor {
    type Result = StoreResult<Durable>;
    fn handle(&mut self, msg: SaveOutcome, ctx: &mut Self::Context) -> Self::Result {
        self.buffer(vec![msg.0], ctx)
    }
}

impl Handler<SaveOutcomes> for StoreActor {
    type Result = StoreResult<Durable>;
    fn handle(&mut self, msg: SaveOutcomes, ctx: &mut Self::Context) -> Self::Result {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        let (tx, durable) = oneshot::channel();
        self.pending.extend(msg.results);
        let committed = self.commit(ctx, None, msg.durable);
        let _ = tx.send(committed.clone());
        committed.map(|()| durable)
    }
}

impl StoreActor {
    /// Buffers outcomes; commits when the batch is full, or arms the timer.
    fn buffer(
        &mut self,
        outcomes: Vec<ConversationResult>,
        ctx: &mut Context<Self>,
    ) -> StoreResult<Durable> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        let (tx, durable) = oneshot::channel();
        self.pending.extend(outcomes);
        self.waiting.push(tx);
        // A dropped `Durable` is nobody waiting.
        let awaited = self.waiting.iter().filter(|w| !w.is_closed()).count();
        if self.pending.len() >= self.batch_size || awaited >= self.commit_when_awaited {
            self.commit(ctx, None, true)?;
            return Ok(durable);
        }
        if self.flush_timer.is_none() {
            self.flush_timer = Some(ctx.run_later(self.flush_after, |act, ctx| {
                act.flush_timer = None;
                let _ = act.commit(ctx, None, true);
            }));
        }
        Ok(durable)
    }
}

impl Handler<ClearUploadRows> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: ClearUploadRows, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.clear_upload_rows(msg.0)
    }
}

impl Handler<Flush> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, true)
    }
}

impl Handler<Close> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) -> Self::Result {
        let result = self.commit(ctx, None, true);
        self.store = None;
        ctx.stop();
        result
    }
}

impl Handler<PutBatchJob> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: PutBatchJob, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.put_batch_job(&msg.job, msg.keys.as_deref())
    }
}

impl Handler<PutEndpointMemory> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: PutEndpointMemory, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.put_endpoint_memory(&msg.key, &msg.memory)
    }
}

impl Handler<DeleteUpload> for StoreActor {
    type Result = StoreResult<Option<UploadRecord>>;
    fn handle(&mut self, msg: DeleteUpload, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.delete_upload(msg.0)
    }
}

impl Handler<PutAudit> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: PutAudit, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.put_audit(&msg.0)
    }
}

impl Handler<SweepProcessed> for StoreActor {
    type Result = StoreResult<u64>;
    fn handle(&mut self, _: SweepProcessed, ctx: &mut Self::Context) -> Self::Result {
        // Buffered outcomes first: their entries are live.
        self.commit(ctx, None, false)?;
        self.store()?.sweep_processed()
    }
}

/// Writes search segments built by the `SearchIndexer`, each only if its
/// piece is still queued as it was read (no fsync: one lost is still
/// queued); answers how many were written.
#[derive(Message)]
#[rtype(result = "StoreResult<usize>")]
pub struct PutSegments(pub Vec<super::BuiltSegment>);

impl Handler<PutSegments> for StoreActor {
    type Result = StoreResult<usize>;
    fn handle(&mut self, msg: PutSegments, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.put_segments(&msg.0)
    }
}

impl Handler<RaiseAlerts> for StoreActor {
    type Result = StoreResult<Vec<crate::alerts::Alert>>;
    fn handle(&mut self, msg: RaiseAlerts, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.raise_alerts(&msg.detected, msg.now)
    }
}

impl Handler<AcknowledgeAlert> for StoreActor {
    type Result = StoreResult<Option<crate::alerts::Alert>>;
    fn handle(&mut self, msg: AcknowledgeAlert, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.acknowledge_alert(&msg.id, msg.now)
    }
}

impl Handler<RecordDigest> for StoreActor {
    type Result = StoreResult<()>;
    fn handle(&mut self, msg: RecordDigest, ctx: &mut Self::Context) -> Self::Result {
        self.commit(ctx, None, false)?;
        self.store()?.record_digest(msg.schedule, msg.day)
    }
}

/// Answers read queries on a few threads of its own (a `SyncArbiter`), so a
/// long export never delays the writer or the HTTP workers.
pub struct StoreReader {
    /// Shared by every reader thread; emptied by `CloseReader`. (Sync actors
    /// live as long as their address, so closing must not wait for that.)
    store: Arc<RwLock<Option<Store>>>,
}

impl StoreReader {
    pub fn start(store: Store, threads: usize) -> Addr<Self> {
        let shared = Arc::new(RwLock::new(Some(store)));
        SyncArbiter::start(threads.max(1), move || StoreReader {
            store: shared.clone(),
        })
    }

    fn with_store<T>(&self, f: impl FnOnce(&Store) -> StoreResult<T>) -> StoreResult<T> {
        match self
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(store) => f(store),
            None => Err(StoreError::Closed),
        }
    }
}

impl Actor for StoreReader {
    type Context = SyncContext<Self>;
}

impl Handler<CloseReader> for StoreReader {
    type Result = ();
    fn handle(&mut self, _: CloseReader, _: &mut Self::Context) {
        self.store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Declares a read query: its message type, reply type and the `Store` call answering it.
macro_rules! query {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } -> $out:ty = |$s:ident, $m:ident| $body:expr) => {
        $(#[$doc])*
        pub struct $name { $(pub $field: $ty),* }

        impl Message for $name {
            type Result = StoreResult<$out>;
        }

        impl Handler<$name> for StoreReader {
            type Result = StoreResult<$out>;
            fn handle(&mut self, $m: $name, _: &mut Self::Context) -> Self::Result {
                self.with_store(|$s| $body)
            }
        }
    };
}

query!(
    /// One upload's record.
    GetUpload { upload_id: Uuid } -> Option<UploadRecord> = |s, m| s.upload(m.upload_id)
);
query!(
    /// Every upload, newest first.
    ListUploads {} -> Vec<UploadRecord> = |s, _m| s.uploads()
);
query!(
    /// Conversations still without an outcome, after `after`, each with its
    /// content key (`key_of`), what the processed-content index holds for
    /// it and, when `read_facets`, its facets: a batch read for analysis in
    /// one round trip.
    LoadPending { upload_id: Uuid, after: Option<String>, limit: usize, key_of: KeyOf, read_facets: bool, retry_failed: bool } -> KeyedPending
        = |s, m| s.load_keyed(m.upload_id, m.after.as_deref(), m.limit, &m.key_of, m.read_facets, m.retry_failed)
);
query!(
    /// An upload's batch jobs, oldest round first.
    ListBatchJobs { upload_id: Uuid } -> Vec<BatchJob> = |s, m| s.batch_jobs(m.upload_id)
);
query!(
    /// The content keys of a batch job's requests.
    BatchJobKeys { upload_id: Uuid, job_id: String } -> Vec<[u8; 32]>
        = |s, m| s.batch_job_keys(m.upload_id, &m.job_id)
);
query!(
    /// Stored analyses for content keys, in order.
    LookupProcessed { keys: Vec<[u8; 32]> } -> Vec<Option<Analysis>> = |s, m| s.lookup_processed(&m.keys)
);
query!(
    /// One page of outcomes.
    ListConversations { upload_id: Uuid, filter: ConversationFilter, cursor: Option<String>, limit: usize } -> Page<ConversationRow>
        = |s, m| s.conversations(m.upload_id, &m.filter, m.cursor.as_deref(), m.limit)
);
query!(
    /// One conversation in full.
    GetConversation { upload_id: Uuid, conversation_id: String } -> Option<ConversationDetail>
        = |s, m| s.conversation(m.upload_id, &m.conversation_id)
);
query!(
    /// Each conversation's customer and agent names (`Store::sender_names`).
    GetSenderNames { upload_id: Uuid, conversation_ids: Vec<String> } -> Vec<Vec<String>>
        = |s, m| s.sender_names(m.upload_id, &m.conversation_ids)
);
query!(
    /// Aggregates over one upload.
    GetSummary { upload_id: Uuid } -> UploadSummary = |s, m| s.summary(m.upload_id)
);
query!(
    /// A consistent copy of the database (`Store::snapshot_file`) in an
    /// unnamed file in `dir`, open at its start. Send `Flush` to the
    /// `StoreActor` first so that buffered outcomes are in it.
    Snapshot { dir: std::path::PathBuf } -> (std::fs::File, SnapshotStats)
        = |s, m| s.snapshot_file(&m.dir)
);
query!(
    /// Insights over every completed upload.
    GetInsights { query: InsightsQuery } -> Insights = |s, m| s.insights(&m.query)
);
query!(
    /// The conversations behind the insights' numbers, across uploads.
    DrillDown { filter: DrillFilter, cursor: Option<DrillCursor>, limit: usize } -> DrillPage
        = |s, m| s.drill_down(&m.filter, m.cursor.as_ref(), m.limit)
);
query!(
    /// Audit entries, newest first, older than `before`.
    ListAudit { filter: AuditFilter, before: Option<Uuid>, limit: usize } -> Page<AuditEntry>
        = |s, m| s.audit(&m.filter, m.before, m.limit)
);
query!(
    /// The conversations behind the insights' numbers that match a search,
    /// best first; each item's matching text from its messages redacted by
    /// `redactor` when given.
    Search { query: crate::search::Query, filter: DrillFilter, cursor: Option<DrillCursor>, limit: usize, redactor: Option<crate::privacy::Redactor> } -> DrillPage
        = |s, m| s.search(&m.query, &m.filter, m.cursor.as_ref(), m.limit, m.redactor.as_ref())
);
query!(
    /// Pieces of the search index queued to be built, of completed uploads (at most `limit`).
    PendingSegments { limit: usize } -> Vec<super::PendingSegment> = |s, m| s.pending_segments(m.limit)
);
query!(
    /// The text a queued piece of the search index is built from (`None`: no longer queued as listed).
    ReadSegmentSource { pending: super::PendingSegment } -> Option<super::SegmentSource>
        = |s, m| s.segment_source(m.pending)
);
query!(
    /// The figures an alert check judges (`None` before any conversation).
    GetAlertWindow { settings: crate::config::AlertSettings } -> Option<super::AlertWindow>
        = |s, m| s.alert_window(&m.settings)
);
query!(
    /// Alerts of the days from `from` to `to` (`YYYY-MM-DD`), only unacknowledged ones when `open`.
    ListAlerts { from: Option<String>, to: Option<String>, open: bool } -> Vec<crate::alerts::Alert>
        = |s, m| s.alerts(m.from.as_deref(), m.to.as_deref(), m.open)
);
query!(
    /// The last day of the last digest period sent.
    LastDigest { schedule: crate::config::DigestSchedule } -> Option<super::stats::DayNumber>
        = |s, m| s.last_digest(m.schedule)
);
query!(
    /// Outcome counts and LLM usage summed over an upload's stored outcomes.
    GetTally { upload_id: Uuid } -> OutcomeTally = |s, m| s.tally(m.upload_id)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conversation, ConversationStatus, Message, Role};
    use crate::store::ConversationRecord;

    fn outcome(upload_id: Uuid, id: &str) -> ConversationResult {
        let conversation = Conversation {
            id: id.into(),
            messages: vec![Message {
                role: Role::Customer,
                text: "hi".into(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: false,
            }],
        };
        ConversationResult {
            upload_id,
            conversation_id: id.into(),
            record: ConversationRecord::describe(&conversation, ConversationStatus::Failed),
            analysis: None,
            content_key: None,
        }
    }

    #[test]
    fn commits_when_the_pool_waits_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("a.redb")).unwrap();
        actix_rt::System::new().block_on(async move {
            // Neither the batch size nor the timer will fire during the test.
            let actor = StoreActor::new(store.clone(), 1000, Duration::from_secs(3600))
                .commit_when_awaited(3)
                .start();
            let id = Uuid::new_v4();
            // Outcomes nobody waits on stay buffered.
            for i in 0..5 {
                drop(
                    actor
                        .send(SaveOutcome(outcome(id, &format!("x{i}"))))
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            assert_eq!(store.tally(id).unwrap().failed, 0);
            // Three waiters: the pool is stalled, so the batch goes out now.
            let mut durables = Vec::new();
            for i in 0..3 {
                durables.push(
                    actor
                        .send(SaveOutcome(outcome(id, &format!("y{i}"))))
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            for d in durables {
                tokio::time::timeout(Duration::from_secs(5), d)
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
            }
            assert_eq!(store.tally(id).unwrap().failed, 8);
        });
    }
}
