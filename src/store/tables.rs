//! Every redb table, in one place. Names carry a version suffix so a layout
//! change can live beside the old one and migrate it (see [`legacy`]).
//!
//! Upload records are JSON (one per upload, read by people with any redb
//! tool); messages, outcomes and analyses use the compact binary encoding
//! of [`super::codec`].

use redb::{ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction};

/// Upload id as a `u128` (the UUID's bits), so keys sort and range cheaply.
pub type UploadKey = u128;

/// `"schema_version"` → the layout version this file was written with.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta-v1");

/// upload id → `UploadRecord` (JSON).
pub const UPLOADS: TableDefinition<UploadKey, &[u8]> = TableDefinition::new("uploads-v1");

/// (upload id, run, first section's conversation id, first section's row
/// number) → a block (`codec::encode_blocks`): consecutive conversations of
/// one run, in id order, each with its messages of that run in file order,
/// LZ4-compressed together to fit one page. A run is one parse batch
/// (numbered by its first row, so runs sort in file order), or all of an
/// upload's messages for a file migrated from schema 3. A conversation's
/// messages are its sections of every run, taken in run order.
/// Autoresponses are kept, flagged.
pub const MESSAGES: TableDefinition<MessageKey, &[u8]> = TableDefinition::new("messages-v3");

/// Key of [`MESSAGES`]: (upload, run, conversation id, row number).
pub type MessageKey = (UploadKey, u64, &'static str, u64);

/// (upload id, conversation id) → `ConversationRecord` (`codec`): what became
/// of it. Present only once the conversation has an outcome.
pub const CONVERSATIONS: TableDefinition<(UploadKey, &str), &[u8]> =
    TableDefinition::new("conversations-v2");

/// (upload id, conversation id) → `Analysis` (`codec`).
pub const ANALYSES: TableDefinition<(UploadKey, &str), &[u8]> = TableDefinition::new("analyses-v2");

/// content key (blake3 of analyzer fingerprint + analysable content) →
/// `Analysis` (`codec`). Lets the same conversation, uploaded again, be
/// answered without calling the analyzer. Survives deleting the upload it
/// came from.
pub const PROCESSED: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("processed-v2");

/// (upload id, job id) → `BatchJob` (JSON): an input file sent to the
/// Batch API, recorded before it is uploaded.
pub const BATCH_JOBS: TableDefinition<(UploadKey, &str), &[u8]> =
    TableDefinition::new("llm-batches-v1");

/// (upload id, job id) → the content keys of the job's requests, 32 bytes each.
pub const BATCH_KEYS: TableDefinition<(UploadKey, &str), &[u8]> =
    TableDefinition::new("llm-batch-keys-v1");

/// endpoint identity (its chat URL and model) → `EndpointMemory` (JSON):
/// what an LLM endpoint's server was found to accept (its structured-output
/// mode, its token budget's parameter), so the next run starts there.
pub const LLM_ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("llm-endpoints-v1");

/// upload id → `UploadStats` (JSON): the upload's summary figures, updated
/// in the transaction that stores or removes each of its outcomes.
pub const UPLOAD_STATS: TableDefinition<UploadKey, &[u8]> = TableDefinition::new("upload-stats-v1");

/// (day number, topic, agent) → `Figures` (`codec`): the conversations of
/// every completed upload, each counted once, by day of its first message.
/// `""` stands for no topic or no agent.
pub const INSIGHT_CELLS: TableDefinition<(i32, &str, &str), &[u8]> =
    TableDefinition::new("insight-cells-v1");

/// (conversation identity, upload id) → `Contribution` (`codec`): every
/// completed upload holding a conversation. The identity is blake3 of its id
/// and content key; the holder with the smallest upload id is the one
/// counted in `INSIGHT_CELLS`.
pub const INSIGHT_HOLDERS: TableDefinition<(&[u8; 32], UploadKey), &[u8]> =
    TableDefinition::new("insight-holders-v1");

/// (day number, counted upload id, conversation id) → `RowFacts` (`codec`):
/// every conversation `INSIGHT_CELLS` counts, once, under the holder
/// counted (the smallest upload id): what the drill-down lists, so that each
/// number of the insights leads to exactly its conversations. Changed in
/// the same transactions as the cells.
pub const INSIGHT_ROWS: TableDefinition<(i32, UploadKey, &str), &[u8]> =
    TableDefinition::new("insight-rows-v1");

/// audit entry id (a UUID v7, so keys sort by time) → `AuditEntry` (JSON):
/// one per request that needed the operator or admin role, and per
/// transcript read whole. Outlives the uploads it names.
pub const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit-v1");
/// (upload id, run) → a search segment (`search::segment`): the inverted
/// index of a run of the upload's messages (the run of `MESSAGES`), or of
/// its summaries (run [`SUMMARY_RUN`], with each analysed conversation's
/// facts): its docs, its term dictionary and its short posting lists.
/// Written by the `SearchIndexer` from a piece queued in `SEARCH_PENDING`;
/// removed with the upload's rows.
pub const SEARCH_SEGMENTS: TableDefinition<(UploadKey, u64), &[u8]> =
    TableDefinition::new("search-segments-v1");

/// (upload id, run, term) → a posting list too long to be inline in its
/// segment.
pub const SEARCH_POSTINGS: TableDefinition<(UploadKey, u64, u64), &[u8]> =
    TableDefinition::new("search-postings-v1");

/// (upload id, conversation id) → (): a conversation of a completed upload
/// that another completed upload holding it (with a smaller id) is counted
/// under. Changed with `INSIGHT_ROWS`: a search keeps a conversation only
/// from the upload the insights count it under.
pub const INSIGHT_SHADOWED: TableDefinition<(UploadKey, &str), ()> =
    TableDefinition::new("insight-shadowed-v1");

/// The run number of an upload's summaries segment (message runs are row
/// numbers, never this).
pub const SUMMARY_RUN: u64 = u64::MAX;

/// (upload id, run) → the number (`meta-v1`'s `search_seq`) a piece of the
/// index was queued under: a run of messages, queued in the transaction that
/// stores it, or (run [`SUMMARY_RUN`]) a completed upload's summaries,
/// queued in the transaction that completes it. Taken off when its segment
/// is written (only if still queued under the number its text was read
/// with); removed with the upload's rows.
pub const SEARCH_PENDING: TableDefinition<(UploadKey, u64), u64> =
    TableDefinition::new("search-pending-v1");

/// alert id (16 hex digits: its day, subject and kind hashed) → `Alert`
/// (JSON): each alert raised, once, and whether it was acknowledged.
pub const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts-v1");

/// Tables of earlier schemas, read only by the migrations, which empty and
/// delete them: schema 1's (JSON values, one row per message), and schema 2
/// and 3's messages.
pub mod legacy {
    use redb::TableDefinition;

    use super::UploadKey;

    /// Schemas 2 and 3: (upload id, conversation id, row number of the
    /// chunk's first message) → a chunk: the conversation's messages from one
    /// parse batch, in file order, LZ4-compressed alone (`codec::encode_chunk`).
    pub const CHUNKS: TableDefinition<(UploadKey, &str, u64), &[u8]> =
        TableDefinition::new("messages-v2");

    /// (upload, conversation id, row number) → `Message` JSON.
    pub const MESSAGES: TableDefinition<(UploadKey, &str, u64), &[u8]> =
        TableDefinition::new("messages-v1");
    /// (upload, conversation id) → `ConversationRecord` JSON.
    pub const CONVERSATIONS: TableDefinition<(UploadKey, &str), &[u8]> =
        TableDefinition::new("conversations-v1");
    /// (upload, conversation id) → `Analysis` JSON.
    pub const ANALYSES: TableDefinition<(UploadKey, &str), &[u8]> =
        TableDefinition::new("analyses-v1");
    /// content key → `Analysis` JSON.
    pub const PROCESSED: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("processed-v1");
}

/// Opens every table of a write transaction, creating missing ones.
pub struct Tables<'txn> {
    pub meta: redb::Table<'txn, &'static str, u64>,
    pub uploads: redb::Table<'txn, UploadKey, &'static [u8]>,
    pub messages: redb::Table<'txn, MessageKey, &'static [u8]>,
    pub conversations: redb::Table<'txn, (UploadKey, &'static str), &'static [u8]>,
    pub analyses: redb::Table<'txn, (UploadKey, &'static str), &'static [u8]>,
    pub processed: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub batch_jobs: redb::Table<'txn, (UploadKey, &'static str), &'static [u8]>,
    pub batch_keys: redb::Table<'txn, (UploadKey, &'static str), &'static [u8]>,
    pub llm_endpoints: redb::Table<'txn, &'static str, &'static [u8]>,
    pub upload_stats: redb::Table<'txn, UploadKey, &'static [u8]>,
    pub insight_cells: redb::Table<'txn, (i32, &'static str, &'static str), &'static [u8]>,
    pub insight_holders: redb::Table<'txn, (&'static [u8; 32], UploadKey), &'static [u8]>,
    pub insight_rows: redb::Table<'txn, (i32, UploadKey, &'static str), &'static [u8]>,
    pub audit: redb::Table<'txn, u128, &'static [u8]>,
    pub insight_shadowed: redb::Table<'txn, (UploadKey, &'static str), ()>,
    pub search_segments: redb::Table<'txn, (UploadKey, u64), &'static [u8]>,
    pub search_postings: redb::Table<'txn, (UploadKey, u64, u64), &'static [u8]>,
    pub search_pending: redb::Table<'txn, (UploadKey, u64), u64>,
    pub alerts: redb::Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            uploads: txn.open_table(UPLOADS)?,
            messages: txn.open_table(MESSAGES)?,
            conversations: txn.open_table(CONVERSATIONS)?,
            analyses: txn.open_table(ANALYSES)?,
            processed: txn.open_table(PROCESSED)?,
            batch_jobs: txn.open_table(BATCH_JOBS)?,
            batch_keys: txn.open_table(BATCH_KEYS)?,
            llm_endpoints: txn.open_table(LLM_ENDPOINTS)?,
            upload_stats: txn.open_table(UPLOAD_STATS)?,
            insight_cells: txn.open_table(INSIGHT_CELLS)?,
            insight_holders: txn.open_table(INSIGHT_HOLDERS)?,
            insight_rows: txn.open_table(INSIGHT_ROWS)?,
            audit: txn.open_table(AUDIT)?,
            insight_shadowed: txn.open_table(INSIGHT_SHADOWED)?,
            search_segments: txn.open_table(SEARCH_SEGMENTS)?,
            search_postings: txn.open_table(SEARCH_POSTINGS)?,
            search_pending: txn.open_table(SEARCH_PENDING)?,
            alerts: txn.open_table(ALERTS)?,
        })
    }
}

/// Read-only views of every table.
pub struct ReadTables {
    pub uploads: redb::ReadOnlyTable<UploadKey, &'static [u8]>,
    pub messages: redb::ReadOnlyTable<MessageKey, &'static [u8]>,
    pub conversations: redb::ReadOnlyTable<(UploadKey, &'static str), &'static [u8]>,
    pub analyses: redb::ReadOnlyTable<(UploadKey, &'static str), &'static [u8]>,
    pub processed: redb::ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    pub batch_jobs: redb::ReadOnlyTable<(UploadKey, &'static str), &'static [u8]>,
    pub batch_keys: redb::ReadOnlyTable<(UploadKey, &'static str), &'static [u8]>,
    pub llm_endpoints: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    pub upload_stats: redb::ReadOnlyTable<UploadKey, &'static [u8]>,
    pub insight_cells: redb::ReadOnlyTable<(i32, &'static str, &'static str), &'static [u8]>,
    pub insight_holders: redb::ReadOnlyTable<(&'static [u8; 32], UploadKey), &'static [u8]>,
    pub insight_rows: redb::ReadOnlyTable<(i32, UploadKey, &'static str), &'static [u8]>,
    pub audit: redb::ReadOnlyTable<u128, &'static [u8]>,
    pub insight_shadowed: redb::ReadOnlyTable<(UploadKey, &'static str), ()>,
    pub search_segments: redb::ReadOnlyTable<(UploadKey, u64), &'static [u8]>,
    pub search_postings: redb::ReadOnlyTable<(UploadKey, u64, u64), &'static [u8]>,
    pub search_pending: redb::ReadOnlyTable<(UploadKey, u64), u64>,
    pub alerts: redb::ReadOnlyTable<&'static str, &'static [u8]>,
}

impl ReadTables {
    pub fn open(txn: &ReadTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            uploads: txn.open_table(UPLOADS)?,
            messages: txn.open_table(MESSAGES)?,
            conversations: txn.open_table(CONVERSATIONS)?,
            analyses: txn.open_table(ANALYSES)?,
            processed: txn.open_table(PROCESSED)?,
            batch_jobs: txn.open_table(BATCH_JOBS)?,
            batch_keys: txn.open_table(BATCH_KEYS)?,
            llm_endpoints: txn.open_table(LLM_ENDPOINTS)?,
            upload_stats: txn.open_table(UPLOAD_STATS)?,
            insight_cells: txn.open_table(INSIGHT_CELLS)?,
            insight_holders: txn.open_table(INSIGHT_HOLDERS)?,
            insight_rows: txn.open_table(INSIGHT_ROWS)?,
            audit: txn.open_table(AUDIT)?,
            insight_shadowed: txn.open_table(INSIGHT_SHADOWED)?,
            search_segments: txn.open_table(SEARCH_SEGMENTS)?,
            search_postings: txn.open_table(SEARCH_POSTINGS)?,
            search_pending: txn.open_table(SEARCH_PENDING)?,
            alerts: txn.open_table(ALERTS)?,
        })
    }
}

/// Keeps `ReadableDatabase` in scope for callers of `begin_read`.
pub(crate) fn begin_read(db: &redb::Database) -> Result<ReadTransaction, redb::TransactionError> {
    db.begin_read()
}
