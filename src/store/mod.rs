//! The embedded database: one redb file holding uploads, their messages,
//! outcomes and analyses, and the processed-content index.
//!
//! This is the only module that touches redb. [`Store`] is plain synchronous
//! code; its write methods are crate-private because only the `StoreActor`
//! ([`actor`]) may call them (one writer, committing per batch). Reads are
//! open to everyone in the crate through [`Store`] or the `StoreReader` actor.

pub mod actor;
mod aggregates;
mod alerts;
mod audit;
mod batches;
mod codec;
mod drilldown;
mod endpoints;
mod search;

pub use alerts::AlertWindow;
pub use batches::{BatchJob, JobState};
pub use drilldown::{DrillPage, FoundConversation};
pub use search::{BuiltSegment, IndexSize, PendingSegment, SegmentSource};
mod migrate;
pub mod stats;
mod tables;
mod upkeep;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::analyze::{FailureKind, LlmUsage};
use crate::model::{Analysis, Conversation, ConversationStatus, Message, SentimentLabel, Stage};
use tables::{ReadTables, Tables, UploadKey};
pub use upkeep::SnapshotStats;

/// redb page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Layout version written into every new file; a file with a higher one is
/// refused, one with a lower one is migrated on open (schema 1: JSON values,
/// one row per message; schema 2: no aggregates; schema 3: messages
/// compressed one conversation at a time).
pub const SCHEMA_VERSION: u64 = 4;

/// Errors of the store. Cloneable and small, so they travel in actor replies;
/// redb's own errors are flattened to text at this boundary.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} is in use by another PowerPulse process")]
    Locked { path: PathBuf },
    #[error("database {path} is read-only: {message}")]
    ReadOnly { path: PathBuf, message: String },
    #[error(
        "database {path} was written by a newer PowerPulse (schema {found}; this build reads up to {supported})"
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("cannot open database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database error: {0}")]
    Storage(String),
    #[error("corrupt {what} record in the database: {message}")]
    Corrupt { what: &'static str, message: String },
    #[error("cannot encode a {what} record: {message}")]
    Encode { what: &'static str, message: String },
    #[error("upload {0} not found")]
    UploadNotFound(Uuid),
    #[error("the database is closed (shutting down)")]
    Closed,
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
storage_error_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Counts of one upload, as stored and as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadCounts {
    pub conversations: u64,
    /// Every parsed message, autoresponses included.
    pub messages: u64,
    pub autoresponses_filtered: u64,
    pub analyzed: u64,
    pub failed: u64,
    pub skipped_already_processed: u64,
}

impl UploadCounts {
    /// Conversations that have an outcome.
    pub fn processed(&self) -> u64 {
        self.analyzed + self.failed + self.skipped_already_processed
    }
}

/// One upload as stored in `uploads-v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadRecord {
    pub id: Uuid,
    pub filename: String,
    /// The format it was read as (`csv`, `whatsapp`, `zendesk`, …).
    pub format: String,
    pub status: Stage,
    pub analyzer: String,
    pub model: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: UploadCounts,
    pub llm: LlmUsage,
    /// The first warnings (capped); `warnings_total` counts them all.
    pub warnings: Vec<String>,
    pub warnings_total: u64,
    pub error: Option<String>,
    /// The file to parse again if parsing is interrupted; cleared once the
    /// messages are all stored (spooled uploads are deleted then). Stored
    /// losslessly: a name that is not UTF-8 is kept as its bytes.
    #[serde(default, with = "lossless_path")]
    #[schema(value_type = Option<String>)]
    pub source: Option<PathBuf>,
    /// Whether every message of the file is stored. `false` while parsing and
    /// when parsing was cancelled part-way: a resume parses the file again.
    #[serde(default = "parsed_by_default")]
    pub parsed: bool,
    /// Crash-loop guard: how far the upload had got (`0` while parsing,
    /// `1 +` stored outcomes afterwards) when a process last started on it...
    #[serde(default)]
    pub progress_mark: u64,
    /// ...and how many starts in a row found it no further.
    #[serde(default)]
    pub starts_without_progress: u32,
    /// How the operator said to read the file (format, the business side's
    /// senders), when not as `[ingest]` says; a resume reads it so again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<crate::ingest::IngestChoice>,
}

/// Records written before `parsed` existed were parsed unless still parsing
/// (which `resume` checks by status).
fn parsed_by_default() -> bool {
    true
}

/// Starts in a row that may find an upload no further than the one before;
/// the next one marks it failed instead of working on it (a file that kills
/// the process would otherwise be parsed again on every start).
pub const MAX_STARTS_WITHOUT_PROGRESS: u32 = 3;

impl UploadRecord {
    /// An upload whose job stopped before a final status (a crash, a kill or
    /// a shutdown): it can be resumed.
    pub fn is_unfinished(&self) -> bool {
        !self.status.is_final()
    }

    /// Whether a resume must parse the file again.
    pub fn needs_parse(&self) -> bool {
        self.status == Stage::Parsing || !self.parsed
    }

    /// Counts one more start of work on this upload, which has got as far as
    /// `mark` (see `progress_mark`). `Err` with the reason when it is the
    /// start after [`MAX_STARTS_WITHOUT_PROGRESS`] that made none.
    pub fn count_start(&mut self, mark: u64) -> Result<(), String> {
        if mark == self.progress_mark && self.starts_without_progress > 0 {
            self.starts_without_progress += 1;
        } else {
            self.progress_mark = mark;
            self.starts_without_progress = 1;
        }
        if self.starts_without_progress > MAX_STARTS_WITHOUT_PROGRESS {
            let stage = if self.needs_parse() {
                "while parsing"
            } else {
                "while analysing"
            };
            return Err(format!(
                "given up after {MAX_STARTS_WITHOUT_PROGRESS} starts that got no further: \
                 the process stopped each time {stage} (see the logs); resume it by hand to try again"
            ));
        }
        Ok(())
    }
}

/// `Option<PathBuf>` as a JSON string when it is UTF-8, else as
/// `{"bytes": [...]}` (Unix file names are bytes), so every name round-trips.
mod lossless_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes { bytes: Vec<u8> },
    }

    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        path.as_ref()
            .map(|p| match p.to_str() {
                Some(text) => Repr::Text(text.to_string()),
                None => Repr::Bytes { bytes: bytes_of(p) },
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Repr>::deserialize(d)?.map(|r| match r {
            Repr::Text(text) => PathBuf::from(text),
            Repr::Bytes { bytes } => path_of(bytes),
        }))
    }

    #[cfg(unix)]
    fn bytes_of(p: &std::path::Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }

    #[cfg(not(unix))]
    fn bytes_of(p: &std::path::Path) -> Vec<u8> {
        p.to_string_lossy().into_owned().into_bytes()
    }

    #[cfg(unix)]
    fn path_of(bytes: Vec<u8>) -> PathBuf {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    }

    #[cfg(not(unix))]
    fn path_of(bytes: Vec<u8>) -> PathBuf {
        PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Outcome counts and LLM usage summed over an upload's stored outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct OutcomeTally {
    pub analyzed: u64,
    pub failed: u64,
    /// Of `failed`, those that failed for want of an answer (a resume tries
    /// them again).
    pub retryable: u64,
    pub skipped_already_processed: u64,
    pub llm: LlmUsage,
}

/// What became of one conversation (`conversations-v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConversationRecord {
    pub status: ConversationStatus,
    pub messages: u32,
    pub customer_messages: u32,
    pub autoresponses: u32,
    /// Time of its first message, when known (for sentiment over time).
    pub started_ms: Option<i64>,
    /// Why it failed, for `Failed`: the kind, and the message.
    #[serde(default)]
    pub failure: Option<FailureKind>,
    pub error: Option<String>,
    /// What analysing it cost (kept per conversation so an upload's totals
    /// survive a crash).
    #[serde(default)]
    pub usage: LlmUsage,
    /// Sender name of most of its agent messages (`facets::agent`).
    #[serde(default)]
    pub agent: Option<String>,
    /// The customer's language, ISO 639-1 (`facets::language`).
    #[serde(default)]
    pub language: Option<String>,
    /// The LLM endpoint that made the outcome (its last attempt's); `None`
    /// for the lexicon and for answers from the processed index.
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl ConversationRecord {
    /// The record of a conversation whose messages are all in `conversation`.
    pub fn describe(conversation: &Conversation, status: ConversationStatus) -> Self {
        Self::new(&MessageCounts::of(&conversation.messages), status)
            .with_facets(&crate::facets::Facets::of(conversation))
    }

    /// Sets the conversation's agent and language.
    pub fn with_facets(mut self, facets: &crate::facets::Facets) -> Self {
        self.agent = facets.agent.clone();
        self.language = facets.language.map(str::to_string);
        self
    }

    pub fn new(counts: &MessageCounts, status: ConversationStatus) -> Self {
        Self {
            status,
            messages: counts.messages,
            customer_messages: counts.customer_messages,
            autoresponses: counts.autoresponses,
            started_ms: counts.started_ms,
            failure: None,
            error: None,
            usage: LlmUsage::default(),
            agent: None,
            language: None,
            endpoint: None,
        }
    }
}

/// Most messages of one conversation loaded for analysis: its first and its
/// last half of this many. A conversation of a million messages is analysed
/// on its start and its end (which is all an LLM transcript keeps anyway),
/// never loaded and cloned whole.
pub const MAX_LOADED_MESSAGES: usize = 2000;

/// Messages loaded per batch at most (a batch stops at the conversation
/// that reaches it), whatever the number of conversations asked for.
pub const MAX_BATCH_MESSAGES: usize = 32_768;

/// Counts over every message of a conversation, loaded or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub messages: u32,
    /// Customer messages that are not autoresponses.
    pub customer_messages: u32,
    pub autoresponses: u32,
    /// Time of its first message, when known.
    pub started_ms: Option<i64>,
}

impl MessageCounts {
    pub fn of(messages: &[Message]) -> Self {
        let mut counts = Self::default();
        for m in messages {
            counts.add(m);
        }
        counts
    }

    fn add(&mut self, m: &Message) {
        self.messages = self.messages.saturating_add(1);
        if m.autoresponse {
            self.autoresponses = self.autoresponses.saturating_add(1);
        } else if m.role == crate::model::Role::Customer {
            self.customer_messages = self.customer_messages.saturating_add(1);
        }
        if let Some(t) = m.time_ms {
            self.started_ms = Some(self.started_ms.map_or(t, |s| s.min(t)));
        }
    }
}

/// A conversation as loaded for analysis: at most [`MAX_LOADED_MESSAGES`] of
/// its messages, and the counts of all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConversation {
    /// Shared: the analyzer reads it while the pipeline keeps it to record.
    pub conversation: Arc<Conversation>,
    pub counts: MessageCounts,
    /// Its agent and language: read as it is loaded for a costly analyzer;
    /// for a free one left to the pool's threads, which read them beside
    /// the analysis, before the conversation is recorded.
    pub facets: crate::facets::Facets,
}

/// How a caller keys a loaded conversation for the processed-content index
/// (the pipeline's analyzer content key: the store does not know it).
pub type KeyOf = Arc<dyn Fn(&LoadedConversation) -> [u8; 32] + Send + Sync>;

/// A batch of conversations still to analyse with each one's content key and
/// what the processed-content index holds for it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedPending {
    pub pending: Pending,
    pub keys: Vec<[u8; 32]>,
    pub cached: Vec<Option<Analysis>>,
}

/// A batch of conversations still to analyse, and where the scan goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub conversations: Vec<LoadedConversation>,
    /// The last conversation id scanned; `None` when nothing was left.
    pub next: Option<String>,
}

/// Which conversations a scan leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// Those with an outcome.
    Done,
    /// Those with an outcome, but for a failure to get an answer.
    DoneUnlessTransient,
}

/// A conversation being read message by message: its head, a ring of its
/// latest messages, and its counts.
struct Loading {
    id: String,
    head: Vec<Message>,
    tail: std::collections::VecDeque<Message>,
    counts: MessageCounts,
}

impl Loading {
    const HALF: usize = MAX_LOADED_MESSAGES / 2;

    fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            counts: MessageCounts::default(),
        }
    }

    fn push(&mut self, message: Message) {
        self.counts.add(&message);
        if self.head.len() < Self::HALF {
            self.head.push(message);
        } else {
            if self.tail.len() == Self::HALF {
                self.tail.pop_front();
            }
            self.tail.push_back(message);
        }
    }

    /// Messages held.
    fn loaded(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    fn finish(self) -> LoadedConversation {
        let mut messages = self.head;
        messages.extend(self.tail);
        let mut conversation = Conversation {
            id: self.id,
            messages,
        };
        conversation.sort_messages();
        LoadedConversation {
            facets: crate::facets::Facets::default(),
            conversation: Arc::new(conversation),
            counts: self.counts,
        }
    }
}

/// A parsed message on its way into `messages-v3` (see [`MessageChunks`]).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub conversation_id: String,
    /// Row number in the upload (file order), unique within the upload.
    pub seq: u64,
    pub message: Message,
}

/// A batch of parsed messages encoded for `messages-v3`: one run of blocks
/// (`codec::encode_blocks`), numbered by the batch's first row. Encoding is
/// plain CPU work done by whoever parsed the batch, so the StoreActor's
/// thread only inserts.
#[derive(Debug, Clone, Default)]
pub struct MessageChunks {
    /// The run: the smallest row number of the batch.
    run: u64,
    blocks: Vec<codec::EncodedBlock>,
}

impl MessageChunks {
    pub fn encode(rows: &[StoredMessage]) -> Self {
        let Some(run) = rows.iter().map(|r| r.seq).min() else {
            return Self::default();
        };
        let order = in_conversation_order(rows);
        let groups = order
            .chunk_by(|a, b| a.conversation_id == b.conversation_id)
            .map(|group| {
                (
                    group[0].conversation_id.as_str(),
                    group.iter().map(|r| (r.seq, &r.message)),
                )
            });
        Self {
            run,
            blocks: codec::encode_blocks(groups),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// `rows` by conversation id, each conversation's rows in seq order: the
/// distinct ids are sorted (a batch has a few thousand), then the rows are
/// placed by their id's rank in one pass. Sorting every row by its id string
/// cost a quarter of encoding a batch.
fn in_conversation_order(rows: &[StoredMessage]) -> Vec<&StoredMessage> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let mut ids: Vec<&str> = Vec::new();
    let mut seen: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
    let id_of_row: Vec<usize> = rows
        .iter()
        .map(|r| {
            *seen.entry(r.conversation_id.as_str()).or_insert_with(|| {
                ids.push(r.conversation_id.as_str());
                ids.len() - 1
            })
        })
        .collect();
    let mut by_name: Vec<usize> = (0..ids.len()).collect();
    by_name.sort_unstable_by_key(|&i| ids[i]);
    // Where each id's rows go: after the rows of every id sorted before it.
    let mut next = vec![0usize; ids.len()];
    for &i in &id_of_row {
        next[i] += 1;
    }
    let mut at = 0;
    for &i in &by_name {
        (next[i], at) = (at, at + next[i]);
    }
    let mut order = vec![first; rows.len()];
    for (row, &i) in rows.iter().zip(&id_of_row) {
        order[next[i]] = row;
        next[i] += 1;
    }
    // Rows come in file order, which is seq order; others are sorted here.
    for rows in order.chunk_by_mut(|a, b| a.conversation_id == b.conversation_id) {
        if !rows.is_sorted_by_key(|r| r.seq) {
            rows.sort_unstable_by_key(|r| r.seq);
        }
    }
    order
}

/// End (excluded) of run `run`'s keys in `messages-v3`.
fn run_end(k: UploadKey, run: u64) -> tables::MessageKey {
    match run.checked_add(1) {
        Some(next) => (k, next, "", 0),
        None => (k.wrapping_add(1), 0, "", 0),
    }
}

/// The runs of an upload's messages (one per parse batch), in file order:
/// one seek per run.
fn runs_of(t: &ReadTables, k: UploadKey) -> Result<Vec<u64>> {
    let mut runs = Vec::new();
    let mut from = 0u64;
    loop {
        let Some(entry) = t
            .messages
            .range((k, from, "", 0)..(k.wrapping_add(1), 0, "", 0))?
            .next()
        else {
            break;
        };
        let run = entry?.0.value().1;
        runs.push(run);
        match run.checked_add(1) {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(runs)
}

fn block_of(bytes: &[u8]) -> Result<codec::Block> {
    codec::Block::decode(bytes).map_err(corrupt("message"))
}

/// One run's blocks read section by section, in conversation-id order,
/// holding one decompressed block at a time. A block is decompressed only
/// when its sections are taken: until then its key says its first id, so a
/// scan of many runs decompresses only the blocks it reads from.
struct RunCursor<'t> {
    blocks: std::iter::Peekable<redb::Range<'t, tables::MessageKey, &'static [u8]>>,
    block: Option<codec::Block>,
    /// Byte offset of the next section in `block`.
    at: usize,
    /// What [`RunCursor::head_id`] last answered, and where: `Some(at)`, the
    /// section at `at` in `block`; `None`, the next block's key (a scan asks
    /// every run for its head once per conversation).
    head: Option<(Option<usize>, Option<String>)>,
}

impl<'t> RunCursor<'t> {
    /// A cursor over run `run` at its first conversation after `after`.
    fn open(t: &'t ReadTables, k: UploadKey, run: u64, after: Option<&str>) -> Result<Self> {
        let start = match after {
            None => Bound::Included((k, run, "", 0)),
            Some(after) => Bound::Excluded((k, run, after, u64::MAX)),
        };
        let mut cursor = Self {
            blocks: t
                .messages
                .range((start, Bound::Excluded(run_end(k, run))))?
                .peekable(),
            block: None,
            at: 0,
            head: None,
        };
        let Some(after) = after else {
            return Ok(cursor);
        };
        // The last block starting at or before `after` may go on past it:
        // its last id (stored uncompressed) says whether to decompress it.
        let prior = t
            .messages
            .range((k, run, "", 0)..=(k, run, after, u64::MAX))?
            .next_back();
        if let Some(entry) = prior {
            let (_, v) = entry?;
            if codec::block_last_id(v.value()).map_err(corrupt("message"))? > after {
                cursor.block = Some(block_of(v.value())?);
                while let Some((section, next)) = cursor.peek()? {
                    if section.id > after {
                        break;
                    }
                    cursor.at = next;
                }
            }
        }
        Ok(cursor)
    }

    /// The id of the next section, without decompressing a block for it.
    fn head_id(&mut self) -> Result<Option<&str>> {
        let Self {
            blocks,
            block,
            at,
            head,
        } = self;
        let position = match block {
            Some(block) if *at < block.body_len() => Some(*at),
            _ => None,
        };
        if head
            .as_ref()
            .is_none_or(|(read_at, _)| *read_at != position)
        {
            let id = match (position, block.as_ref()) {
                (Some(at), Some(block)) => block
                    .section_at(at)
                    .map_err(corrupt("message"))?
                    .map(|(s, _)| s.id.to_string()),
                _ => match blocks.peek() {
                    None => None,
                    Some(Ok((k, _))) => Some(k.value().2.to_string()),
                    Some(Err(e)) => return Err(StoreError::Storage(e.to_string())),
                },
            };
            *head = Some((position, id));
        }
        Ok(head.as_ref().and_then(|(_, id)| id.as_deref()))
    }

    /// Makes the next section readable by [`RunCursor::peek`], decompressing
    /// the next block when the current one is done.
    fn settle(&mut self) -> Result<()> {
        loop {
            if self.block.as_ref().is_some_and(|b| self.at < b.body_len()) {
                return Ok(());
            }
            self.head = None;
            match self.blocks.next() {
                None => {
                    self.block = None;
                    return Ok(());
                }
                Some(entry) => {
                    let (_, v) = entry?;
                    self.block = Some(block_of(v.value())?);
                    self.at = 0;
                }
            }
        }
    }

    /// The section at the cursor (after [`RunCursor::settle`]) and the offset
    /// of the one after it.
    fn peek(&self) -> Result<Option<(codec::Section<'_>, usize)>> {
        match &self.block {
            Some(block) => block.section_at(self.at).map_err(corrupt("message")),
            None => Ok(None),
        }
    }
}

/// One conversation's outcome on its way into the store.
#[derive(Debug, Clone)]
pub struct ConversationResult {
    pub upload_id: Uuid,
    pub conversation_id: String,
    pub record: ConversationRecord,
    pub analysis: Option<Analysis>,
    /// The key of its content in the processed-content index, which holds
    /// its analysis (a new one is added there; a reused one is there
    /// already). `None`: the analysis is stored with the row alone.
    pub content_key: Option<[u8; 32]>,
}

/// A conversation's outcome with its analysis, as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConversationRow {
    pub upload_id: Uuid,
    pub conversation_id: String,
    #[serde(flatten)]
    pub record: ConversationRecord,
    pub analysis: Option<Analysis>,
}

/// One conversation in full: messages (autoresponses flagged) and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConversationDetail {
    pub upload_id: Uuid,
    pub conversation_id: String,
    pub messages: Vec<Message>,
    pub record: Option<ConversationRecord>,
    pub analysis: Option<Analysis>,
    /// Whether personal data in the messages (texts and sender names) and
    /// in the analysis's summary was replaced by placeholders: what a
    /// reader who may not see it is shown.
    #[serde(default)]
    pub redacted: bool,
}

/// Which conversations a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ConversationFilter {
    pub sentiment: Option<SentimentLabel>,
    pub min_satisfaction: Option<u8>,
    pub max_satisfaction: Option<u8>,
    pub status: Option<ConversationStatus>,
    /// The agent's name, exactly.
    pub agent: Option<String>,
    /// A topic name, exactly.
    pub topic: Option<String>,
    /// An ISO 639-1 code, exactly.
    pub language: Option<String>,
}

impl ConversationFilter {
    fn matches(&self, record: &ConversationRecord, analysis: Option<&Analysis>) -> bool {
        if self.status.is_some_and(|s| s != record.status)
            || self
                .agent
                .as_ref()
                .is_some_and(|a| record.agent.as_ref() != Some(a))
            || self
                .language
                .as_ref()
                .is_some_and(|l| record.language.as_ref() != Some(l))
        {
            return false;
        }
        let wants_analysis = self.sentiment.is_some()
            || self.topic.is_some()
            || self.min_satisfaction.is_some()
            || self.max_satisfaction.is_some();
        match analysis {
            None => !wants_analysis,
            Some(a) => {
                self.sentiment.is_none_or(|s| s == a.sentiment.label)
                    && self
                        .topic
                        .as_ref()
                        .is_none_or(|t| a.topic.as_ref() == Some(t))
                    && self
                        .min_satisfaction
                        .is_none_or(|m| a.satisfaction.score >= m)
                    && self
                        .max_satisfaction
                        .is_none_or(|m| a.satisfaction.score <= m)
            }
        }
    }
}

/// One page of a listing; `next_cursor` continues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentimentCounts {
    pub positive: u64,
    pub neutral: u64,
    pub negative: u64,
}

/// Aggregates over one upload's outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadSummary {
    pub upload_id: Uuid,
    pub status: Stage,
    pub conversations: u64,
    pub analyzed: u64,
    pub failed: u64,
    pub skipped_already_processed: u64,
    pub sentiment: SentimentCounts,
    /// Conversations per satisfaction score 1..=5 (index 0 is score 1).
    #[schema(value_type = Vec<u64>)]
    pub satisfaction_histogram: [u64; 5],
    pub average_satisfaction: Option<f64>,
    /// Share of conversations judged resolved among those where it could be told.
    pub resolved_rate: Option<f64>,
    /// Failed conversations by kind (`invalid_reply`, `timeout`, … — see `FailureKind`).
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Mean sentiment score per day (UTC, `YYYY-MM-DD`) of the conversation's first message.
    pub sentiment_by_day: BTreeMap<String, f64>,
    /// Analysed conversations by agent, largest first.
    pub agents: Vec<stats::AgentFigures>,
    /// Analysed conversations by topic, largest first.
    pub topics: Vec<stats::TopicFigures>,
    /// Analysed conversations by the customer's language, largest first.
    pub languages: Vec<stats::LanguageFigures>,
    pub llm: LlmUsage,
    /// LLM usage and cost by the endpoint that made each outcome (empty
    /// for the lexicon).
    pub endpoints: Vec<stats::EndpointUsage>,
}

/// The redb file. Cheap to clone; every clone is the same open database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    /// What completing an upload will count, gathered as its outcomes are
    /// stored (see [`aggregates::Completions`]).
    completions: Arc<std::sync::Mutex<aggregates::Completions>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn key(id: Uuid) -> UploadKey {
    id.as_u128()
}

/// A compact value that did not decode: a corrupt record.
fn corrupt(what: &'static str) -> impl Fn(codec::CodecError) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

/// A stored record and the processed-index key of its analysis.
fn record_of(bytes: &[u8]) -> Result<(ConversationRecord, Option<[u8; 32]>)> {
    codec::decode_record(bytes).map_err(corrupt("conversation"))
}

/// A conversation's analysis: in the processed-content index under its key
/// (rows written since schema 2), or in `analyses` (migrated rows).
fn analysis_for(
    t: &ReadTables,
    k: (UploadKey, &str),
    key: Option<[u8; 32]>,
) -> Result<Option<Analysis>> {
    let found = match key {
        Some(key) => t.processed.get(&key)?,
        None => t.analyses.get(k)?,
    };
    found.map(|v| analysis_of(v.value())).transpose()
}

fn analysis_of(bytes: &[u8]) -> Result<Analysis> {
    codec::decode_analysis(bytes).map_err(corrupt("analysis"))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    })
}

/// A record as stored. A value that cannot be encoded is an error, never
/// empty bytes (which would read back as a corrupt record).
fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        what,
        message: e.to_string(),
    })
}

impl Store {
    /// Opens (creating if needed) the database at `path`, checking that this
    /// build understands its layout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot create directory {}: {e}", parent.display()),
            })?;
        }
        // redb's default page cache is 1 GiB; ours holds the hot pages of an
        // upload's batches and reads, and keeps memory predictable.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        let store = Store {
            db: Arc::new(db),
            path,
            completions: Arc::default(),
        };
        store.init_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init_schema(&self) -> Result<()> {
        // Read first: a file from a newer build is refused without a single write.
        let found = {
            let txn = tables::begin_read(&self.db)?;
            match txn.open_table(tables::META) {
                Ok(meta) => meta.get("schema_version")?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        match found {
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found: v,
                supported: SCHEMA_VERSION,
            }),
            Some(SCHEMA_VERSION) => self.add_missing_tables(),
            Some(1) => {
                migrate::from_v1(self)?;
                migrate::from_v2(self)?;
                migrate::from_v3(self)
            }
            Some(2) => {
                migrate::from_v2(self)?;
                migrate::from_v3(self)
            }
            Some(3) => migrate::from_v3(self),
            Some(v) => Err(StoreError::Open {
                path: self.path.clone(),
                message: format!("unknown schema version {v}"),
            }),
            None => self.write(|t| {
                t.meta.insert("schema_version", SCHEMA_VERSION)?;
                search::mark_built(t)
            }),
        }?;
        search::ensure_index(self)
    }

    /// Creates the tables a file written by an earlier build of the same
    /// schema lacks (tables added since, such as the batch jobs), so every
    /// read finds them, and fills those derived from the others (the
    /// drill-down's rows) in the same transaction.
    fn add_missing_tables(&self) -> Result<()> {
        let (complete, has_rows, has_shadowed) = {
            let txn = tables::begin_read(&self.db)?;
            let names: Vec<String> = txn
                .list_tables()?
                .map(|t| redb::TableHandle::name(&t).to_string())
                .collect();
            let has = |t: &str| names.iter().any(|n| n == t);
            let has_rows = has(redb::TableHandle::name(&tables::INSIGHT_ROWS));
            let has_shadowed = has(redb::TableHandle::name(&tables::INSIGHT_SHADOWED));
            match ReadTables::open(&txn) {
                Ok(_) => (true, has_rows, has_shadowed),
                Err(redb::TableError::TableDoesNotExist(_)) => (false, has_rows, has_shadowed),
                Err(e) => return Err(e.into()),
            }
        };
        if complete {
            return Ok(());
        }
        self.write(|t| {
            if !has_rows || !has_shadowed {
                let rows = aggregates::build_rows(t, !has_rows, !has_shadowed)?;
                tracing::info!(
                    rows,
                    "built the drill-down's rows (insight-rows-v1, insight-shadowed-v1)"
                );
            }
            Ok(())
        })
    }

    /// Gives a write failure on a read-only file its own, clearer error.
    fn write_error(&self, e: redb::CommitError) -> StoreError {
        use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
        match &e {
            redb::CommitError::Storage(redb::StorageError::Io(io))
                if matches!(io.kind(), ReadOnlyFilesystem | PermissionDenied) =>
            {
                StoreError::ReadOnly {
                    path: self.path.clone(),
                    message: io.to_string(),
                }
            }
            _ => StoreError::Storage(e.to_string()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut Tables<'_>) -> Result<T>) -> Result<T> {
        self.write_with(Durability::Immediate, f)
    }

    /// A write transaction committed with `durability`: `None` for work a
    /// crash may lose because it would be redone (a later `Immediate` commit
    /// makes it durable too), `Immediate` for everything else.
    fn write_with<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Tables<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        let out = {
            let mut tables = Tables::open(&txn)?;
            f(&mut tables)?
        };
        txn.commit().map_err(|e| self.write_error(e))?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTables) -> Result<T>) -> Result<T> {
        let txn = tables::begin_read(&self.db)?;
        let tables = ReadTables::open(&txn)?;
        f(&tables)
    }

    // ---- writes: StoreActor only -------------------------------------------------

    /// Stores a batch of parsed messages (see [`MessageChunks`]).
    #[cfg(test)]
    pub(crate) fn put_messages(
        &self,
        upload_id: Uuid,
        rows: &[StoredMessage],
        durable: bool,
    ) -> Result<()> {
        self.put_chunks(upload_id, &MessageChunks::encode(rows), durable)
    }

    /// Stores an encoded batch: its run of blocks, each keyed by its first
    /// conversation and row. `durable: false` for batches a crash may lose
    /// (the parse is redone); the commit that ends parsing seals them.
    pub(crate) fn put_chunks(
        &self,
        upload_id: Uuid,
        chunks: &MessageChunks,
        durable: bool,
    ) -> Result<()> {
        self.write_with(durability(durable), |t| {
            for block in &chunks.blocks {
                t.messages.insert(
                    (
                        key(upload_id),
                        chunks.run,
                        block.first_id.as_str(),
                        block.first_seq,
                    ),
                    block.bytes.as_slice(),
                )?;
            }
            if chunks.blocks.is_empty() {
                return Ok(());
            }
            // Indexed later, off this path (`store::search`).
            search::queue_run(t, key(upload_id), chunks.run)
        })
    }

    /// Commits a batch of outcomes, and optionally an upload record, in one
    /// transaction (`durable: false` for outcomes a crash may lose because
    /// redoing them costs nothing).
    pub(crate) fn save_results(
        &self,
        results: &[ConversationResult],
        upload: Option<&UploadRecord>,
        durable: bool,
    ) -> Result<()> {
        let mut completions = self.completions();
        let mut staged = aggregates::Staged::default();
        self.write_with(durability(durable), |t| {
            let mut stats = aggregates::StatsBatch::default();
            for r in results {
                let upload_key = key(r.upload_id);
                let k = (upload_key, r.conversation_id.as_str());
                let indexed = r.content_key.as_ref().filter(|_| r.analysis.is_some());
                // The row is written first: an outcome stored again gets the
                // old row back from the insert (one lookup, not two).
                let record = codec::encode_record(&r.record, indexed);
                let old = t
                    .conversations
                    .insert(k, record.as_slice())?
                    .map(|v| record_of(v.value()))
                    .transpose()?;
                // An outcome stored again replaces the old one in the figures too.
                let mut new_record = Cow::Borrowed(&r.record);
                if let Some((record, analysis_key)) = old {
                    let analysis = aggregates::stored_analysis(t, k, analysis_key)?;
                    stats
                        .get(t, upload_key)?
                        .apply(&record, analysis.as_ref(), -1);
                    staged.forget(upload_key);
                    // A failed conversation tried again: what its failed
                    // attempts cost stays on its row.
                    if record.status == ConversationStatus::Failed
                        && record.usage != LlmUsage::default()
                    {
                        let mut merged = r.record.clone();
                        merged.usage.add(&record.usage);
                        let bytes = codec::encode_record(&merged, indexed);
                        t.conversations.insert(k, bytes.as_slice())?;
                        new_record = Cow::Owned(merged);
                    }
                }
                let stored = match (&r.analysis, indexed) {
                    // The row refers to the index: one copy per content, the
                    // first one stored (rows and figures refer to it).
                    (Some(analysis), Some(content_key)) => {
                        Some(index_analysis(t, content_key, analysis, r.record.status)?)
                    }
                    (Some(analysis), None) => {
                        let bytes = codec::encode_analysis(analysis);
                        t.analyses.insert(k, bytes.as_slice())?;
                        Some(Cow::Borrowed(analysis))
                    }
                    (None, _) => None,
                };
                stats
                    .get(t, upload_key)?
                    .apply(&new_record, stored.as_deref(), 1);
                if let Some(analysis) = stored.as_deref() {
                    staged.row(&completions, k, indexed, &new_record, analysis);
                }
            }
            stats.save(t)?;
            if let Some(record) = upload {
                let k = key(record.id);
                let before = match t.uploads.insert(k, encode("upload", record)?.as_slice())? {
                    Some(v) => Some(decode::<UploadRecord>("upload", v.value())?.status),
                    None => None,
                };
                let completing =
                    record.status == Stage::Completed && before != Some(Stage::Completed);
                let gathered = if completing {
                    staged.take_for_completion(&mut completions, k)
                } else {
                    None
                };
                aggregates::on_upload_stored(t, before, record, gathered)?;
                if before.is_none() && !aggregates::has_rows(t, k)? {
                    staged.start(k, record.created_at);
                } else if record.status.is_final() {
                    // Failed or cancelled: a resume reads the rows back.
                    staged.forget(k);
                }
            }
            Ok(())
        })?;
        staged.apply(&mut completions);
        Ok(())
    }

    fn completions(&self) -> std::sync::MutexGuard<'_, aggregates::Completions> {
        // Only the StoreActor writes; a poisoned lock means a panic mid-write,
        // after which the gathered rows are not trusted.
        self.completions.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = aggregates::Completions::default();
            guard
        })
    }

    /// Removes every row of an upload (its processed-index entries stay: they
    /// remain valid answers for the same content). Answers the record it
    /// removed (whose spooled file, if any, the caller removes), `None` when
    /// there was none.
    pub(crate) fn delete_upload(&self, upload_id: Uuid) -> Result<Option<UploadRecord>> {
        let k = key(upload_id);
        self.write(|t| {
            let existed = match t.uploads.remove(k)? {
                Some(v) => Some(decode::<UploadRecord>("upload", v.value())?),
                None => None,
            };
            if existed
                .as_ref()
                .is_some_and(|r| r.status == Stage::Completed)
            {
                aggregates::uncount(t, k)?;
            }
            remove_rows(t, k)?;
            Ok(existed)
        })
        .inspect(|_| self.completions().forget(k))
    }

    /// Removes an upload's messages and outcomes but keeps its record: the
    /// start of a parse that is being redone.
    pub(crate) fn clear_upload_rows(&self, upload_id: Uuid) -> Result<()> {
        let k = key(upload_id);
        self.write(|t| {
            aggregates::uncount(t, k)?;
            remove_rows(t, k)
        })
        .inspect(|_| self.completions().forget(k))
    }

    // ---- reads ---------------------------------------------------------------------

    pub fn upload(&self, upload_id: Uuid) -> Result<Option<UploadRecord>> {
        self.read(|t| {
            t.uploads
                .get(key(upload_id))?
                .map(|v| decode("upload", v.value()))
                .transpose()
        })
    }

    /// Every upload, newest first.
    pub fn uploads(&self) -> Result<Vec<UploadRecord>> {
        let mut all = self.read(|t| {
            t.uploads
                .iter()?
                .map(|entry| {
                    let (_, v) = entry?;
                    decode::<UploadRecord>("upload", v.value())
                })
                .collect::<Result<Vec<_>>>()
        })?;
        all.sort_by_key(|u| std::cmp::Reverse(u.created_at));
        Ok(all)
    }

    /// Loads up to `limit` conversations of an upload, in conversation-id
    /// order, starting after `after`: each with at most
    /// [`MAX_LOADED_MESSAGES`] of its messages (its first and last ones) and
    /// the counts of all. Messages come in timestamp order when every loaded
    /// message has one, file order otherwise. They carry what analysis reads:
    /// their time (`time_ms`), not their timestamp's text
    /// ([`Store::conversation`] gives a conversation in full).
    pub fn load_conversations(
        &self,
        upload_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LoadedConversation>> {
        self.scan_conversations(upload_id, after, limit, usize::MAX, Skip::Nothing)
            .map(|p| p.conversations)
    }

    /// Like [`Store::load_conversations`], skipping conversations that already
    /// have an outcome (without decoding their messages), scanning at most
    /// `8 × limit` conversations and loading about [`MAX_BATCH_MESSAGES`]
    /// messages at most. `next` continues the scan; `None` once nothing is
    /// left after `after`.
    pub fn load_pending(
        &self,
        upload_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Pending> {
        self.scan_conversations(upload_id, after, limit, limit.saturating_mul(8), Skip::Done)
    }

    /// [`Store::load_pending`] that also loads conversations whose outcome
    /// is a failure to get an answer ([`FailureKind::is_transient`]): a
    /// resumed upload tries them again. (Their new outcome replaces the old
    /// one, keeping what the failed attempts cost.)
    pub fn load_pending_retrying(
        &self,
        upload_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Pending> {
        self.scan_conversations(
            upload_id,
            after,
            limit,
            limit.saturating_mul(8),
            Skip::DoneUnlessTransient,
        )
    }

    /// [`Store::load_pending`], each conversation keyed by `key_of` and
    /// looked up in the processed-content index, and its facets read when
    /// `read_facets` (else they are left for the caller): the analyse
    /// stage's whole read of a batch, on one reader thread, in one round
    /// trip.
    pub fn load_keyed(
        &self,
        upload_id: Uuid,
        after: Option<&str>,
        limit: usize,
        key_of: &KeyOf,
        read_facets: bool,
        retry_failed: bool,
    ) -> Result<KeyedPending> {
        let mut pending = if retry_failed {
            self.load_pending_retrying(upload_id, after, limit)?
        } else {
            self.load_pending(upload_id, after, limit)?
        };
        if read_facets {
            for c in &mut pending.conversations {
                c.facets = crate::facets::Facets::of(&c.conversation);
            }
        }
        let keys: Vec<[u8; 32]> = pending.conversations.iter().map(|c| key_of(c)).collect();
        let cached = if keys.is_empty() {
            Vec::new()
        } else {
            self.lookup_processed(&keys)?
        };
        Ok(KeyedPending {
            pending,
            keys,
            cached,
        })
    }

    /// The scan behind both: a merge, in conversation-id order, of the
    /// upload's runs (a conversation's messages are its sections of every
    /// run, in run order, which is file order).
    fn scan_conversations(
        &self,
        upload_id: Uuid,
        after: Option<&str>,
        limit: usize,
        max_scanned: usize,
        skip: Skip,
    ) -> Result<Pending> {
        let k = key(upload_id);
        self.read(|t| {
            let mut cursors = runs_of(t, k)?
                .into_iter()
                .map(|run| RunCursor::open(t, k, run, after))
                .collect::<Result<Vec<_>>>()?;
            let mut out: Vec<LoadedConversation> = Vec::new();
            let mut scanned = 0usize;
            let mut loaded_messages = 0usize;
            let mut next: Option<String> = None;
            // The upload's outcomes, walked alongside in the same id order
            // (one cursor, not a lookup per conversation): `done_head` is the
            // first outcome's id not below the conversation scanned.
            let mut done_rows = if skip == Skip::Nothing {
                None
            } else {
                Some(
                    t.conversations
                        .range((k, after.unwrap_or(""))..(k.wrapping_add(1), ""))?,
                )
            };
            // The id, and whether its outcome is to be tried again.
            let mut done_head: Option<(String, bool)> = None;
            loop {
                let mut smallest: Option<String> = None;
                for c in cursors.iter_mut() {
                    if let Some(head) = c.head_id()?
                        && smallest.as_deref().is_none_or(|s| head < s)
                    {
                        smallest = Some(head.to_string());
                    }
                }
                let Some(id) = smallest else {
                    break;
                };
                if out.len() >= limit
                    || scanned >= max_scanned
                    || loaded_messages >= MAX_BATCH_MESSAGES
                {
                    break;
                }
                scanned += 1;
                // Skipped without decoding its messages: it has an outcome.
                let skip_it = match done_rows.as_mut() {
                    None => false,
                    Some(rows) => {
                        while done_head
                            .as_ref()
                            .is_none_or(|(h, _)| h.as_str() < id.as_str())
                        {
                            let Some(entry) = rows.next() else { break };
                            let (kg, v) = entry?;
                            let again = skip == Skip::DoneUnlessTransient && {
                                let (record, _) = record_of(v.value())?;
                                record.status == ConversationStatus::Failed
                                    && record.failure.is_some_and(FailureKind::is_transient)
                            };
                            done_head = Some((kg.value().1.to_string(), again));
                        }
                        matches!(&done_head, Some((h, again)) if *h == id && !again)
                    }
                };
                let mut loading = (!skip_it).then(|| Loading::new(&id));
                for c in cursors.iter_mut() {
                    // Only a run holding this id decompresses its next block.
                    while c.head_id()? == Some(id.as_str()) {
                        c.settle()?;
                        let Some((section, after_it)) = c.peek()? else {
                            break;
                        };
                        if section.id != id {
                            break;
                        }
                        if let Some(l) = loading.as_mut() {
                            section
                                .messages(codec::Timestamps::TimeOnly, |_, m| l.push(m))
                                .map_err(corrupt("message"))?;
                        }
                        c.at = after_it;
                    }
                }
                if let Some(done) = loading {
                    loaded_messages += done.loaded();
                    out.push(done.finish());
                }
                next = Some(id);
            }
            Ok(Pending {
                conversations: out,
                next,
            })
        })
    }

    /// Stored analyses for content keys (see `PROCESSED`), in the same order.
    pub fn lookup_processed(&self, keys: &[[u8; 32]]) -> Result<Vec<Option<Analysis>>> {
        self.read(|t| {
            keys.iter()
                .map(|k| {
                    t.processed
                        .get(k)?
                        .map(|v| analysis_of(v.value()))
                        .transpose()
                })
                .collect()
        })
    }

    /// One page of an upload's outcomes matching `filter`, after `cursor`
    /// (a conversation id from a previous page's `next_cursor`).
    pub fn conversations(
        &self,
        upload_id: Uuid,
        filter: &ConversationFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ConversationRow>> {
        let limit = limit.max(1);
        let mut items = Vec::new();
        let mut next_cursor = None;
        self.for_each_row(upload_id, cursor, |row| {
            if !filter.matches(&row.record, row.analysis.as_ref()) {
                return Ok(true);
            }
            if items.len() == limit {
                next_cursor = items
                    .last()
                    .map(|r: &ConversationRow| r.conversation_id.clone());
                return Ok(false);
            }
            items.push(row);
            Ok(true)
        })?;
        Ok(Page { items, next_cursor })
    }

    /// Visits an upload's outcomes in conversation-id order after `cursor`,
    /// until `visit` returns `false`.
    pub fn for_each_row(
        &self,
        upload_id: Uuid,
        cursor: Option<&str>,
        mut visit: impl FnMut(ConversationRow) -> Result<bool>,
    ) -> Result<()> {
        let k = key(upload_id);
        self.read(|t| {
            let start = match cursor {
                Some(id) => Bound::Excluded((k, id)),
                None => Bound::Included((k, "")),
            };
            let end = Bound::Excluded((k.wrapping_add(1), ""));
            for entry in t.conversations.range::<(UploadKey, &str)>((start, end))? {
                let (kg, v) = entry?;
                let (_, conversation_id) = kg.value();
                let (record, analysis_key) = record_of(v.value())?;
                let analysis = analysis_for(t, (k, conversation_id), analysis_key)?;
                let row = ConversationRow {
                    upload_id,
                    conversation_id: conversation_id.to_string(),
                    record,
                    analysis,
                };
                if !visit(row)? {
                    break;
                }
            }
            Ok(())
        })
    }

    pub fn conversation(
        &self,
        upload_id: Uuid,
        conversation_id: &str,
    ) -> Result<Option<ConversationDetail>> {
        self.read(|t| conversation_in(t, upload_id, conversation_id))
    }

    /// The distinct sender names of the customers and agents of each of
    /// `conversation_ids` (in order; empty for an unknown one): what a
    /// redacted export's rows are redacted knowing.
    pub fn sender_names(
        &self,
        upload_id: Uuid,
        conversation_ids: &[String],
    ) -> Result<Vec<Vec<String>>> {
        conversation_ids
            .iter()
            .map(|id| {
                let mut names: Vec<String> = Vec::new();
                for m in self
                    .conversation(upload_id, id)?
                    .map(|c| c.messages)
                    .unwrap_or_default()
                {
                    if let (Some(name), false) = (m.sender_name, m.role == crate::model::Role::Bot)
                        && !names.contains(&name)
                    {
                        names.push(name);
                    }
                }
                Ok(names)
            })
            .collect()
    }

    /// An upload's summary, from its stored aggregates (no outcome is read).
    pub fn summary(&self, upload_id: Uuid) -> Result<UploadSummary> {
        let k = key(upload_id);
        let (upload, stats) = self.read(|t| {
            let upload = t
                .uploads
                .get(k)?
                .map(|v| decode::<UploadRecord>("upload", v.value()))
                .transpose()?
                .ok_or(StoreError::UploadNotFound(upload_id))?;
            Ok((upload, aggregates::load_stats(&t.upload_stats, k)?))
        })?;
        Ok(UploadSummary {
            upload_id,
            status: upload.status,
            conversations: upload.counts.conversations,
            analyzed: stats.analyzed,
            failed: stats.failed,
            skipped_already_processed: stats.skipped_already_processed,
            sentiment: stats.all.sentiment(),
            satisfaction_histogram: stats.satisfaction_histogram,
            average_satisfaction: stats.all.average_satisfaction(),
            resolved_rate: stats.all.resolved_rate(),
            failures_by_reason: stats.failures_by_reason,
            sentiment_by_day: stats
                .days
                .iter()
                .filter_map(|(day, f)| Some((day.clone(), f.average_score()?)))
                .collect(),
            agents: stats::agent_rows(&stats.agents),
            endpoints: stats::endpoint_rows(&stats.endpoints),
            topics: stats::topic_rows(&stats.topics),
            languages: stats::language_rows(&stats.languages),
            llm: upload.llm,
        })
    }

    /// Insights over every completed upload (see [`stats::Insights`]).
    pub fn insights(&self, query: &stats::InsightsQuery) -> Result<stats::Insights> {
        self.read(|t| aggregates::insights(t, query))
    }

    /// An upload's aggregates recomputed from its rows, for checking the
    /// stored ones (tests, benches).
    pub fn recount(&self, upload_id: Uuid) -> Result<stats::UploadStats> {
        let mut s = stats::UploadStats::default();
        self.for_each_row(upload_id, None, |row| {
            s.apply(&row.record, row.analysis.as_ref(), 1);
            Ok(true)
        })?;
        Ok(s)
    }

    /// An upload's stored aggregates.
    pub fn stats(&self, upload_id: Uuid) -> Result<stats::UploadStats> {
        self.read(|t| aggregates::load_stats(&t.upload_stats, key(upload_id)))
    }

    /// Counts an upload's stored outcomes by status and sums their LLM usage.
    pub fn tally(&self, upload_id: Uuid) -> Result<OutcomeTally> {
        let k = key(upload_id);
        self.read(|t| {
            let mut tally = OutcomeTally::default();
            for entry in t.conversations.range((k, "")..(k.wrapping_add(1), ""))? {
                let (_, v) = entry?;
                let (record, _) = record_of(v.value())?;
                match record.status {
                    ConversationStatus::Analyzed => tally.analyzed += 1,
                    ConversationStatus::Failed => {
                        tally.failed += 1;
                        if record.failure.is_some_and(FailureKind::is_transient) {
                            tally.retryable += 1;
                        }
                    }
                    ConversationStatus::SkippedAlreadyProcessed => {
                        tally.skipped_already_processed += 1
                    }
                }
                tally.llm.add(&record.usage);
            }
            // Batch result lines no outcome carries were paid for too.
            for entry in t.batch_jobs.range((k, "")..(k.wrapping_add(1), ""))? {
                let (_, v) = entry?;
                tally
                    .llm
                    .add(&decode::<BatchJob>("batch job", v.value())?.unrecorded_usage);
            }
            Ok(tally)
        })
    }

    /// Number of messages stored for an upload (for tests and checks).
    pub fn message_count(&self, upload_id: Uuid) -> Result<u64> {
        let k = key(upload_id);
        self.read(|t| {
            let mut n = 0;
            for entry in t
                .messages
                .range((k, 0, "", 0)..(k.wrapping_add(1), 0, "", 0))?
            {
                let (_, v) = entry?;
                let block = block_of(v.value())?;
                for section in block.sections().map_err(corrupt("message"))? {
                    n += section.count;
                }
            }
            Ok(n)
        })
    }

    /// Rows in the processed-content index.
    pub fn processed_len(&self) -> Result<u64> {
        self.read(|t| Ok(t.processed.len()?))
    }
}

/// One conversation in full, as a read transaction sees it (see
/// [`Store::conversation`]).
fn conversation_in(
    t: &ReadTables,
    upload_id: Uuid,
    conversation_id: &str,
) -> Result<Option<ConversationDetail>> {
    let k = key(upload_id);
    let mut conversation = Conversation {
        id: conversation_id.to_string(),
        messages: Vec::new(),
    };
    // Per run: the blocks starting with this conversation, and the
    // one before them, which may hold its start.
    for run in runs_of(t, k)? {
        let mut blocks = Vec::new();
        let range = (k, run, "", 0)..=(k, run, conversation_id, u64::MAX);
        for entry in t.messages.range(range)?.rev() {
            let (kg, v) = entry?;
            if kg.value().2 == conversation_id {
                blocks.push(block_of(v.value())?);
                continue;
            }
            // Decompressed only when it goes on to this id.
            let last = codec::block_last_id(v.value()).map_err(corrupt("message"))?;
            if last >= conversation_id {
                blocks.push(block_of(v.value())?);
            }
            break;
        }
        for block in blocks.iter().rev() {
            for section in block.sections().map_err(corrupt("message"))? {
                if section.id == conversation_id {
                    section
                        .messages(codec::Timestamps::Text, |_, m| {
                            conversation.messages.push(m)
                        })
                        .map_err(corrupt("message"))?;
                }
            }
        }
    }
    if conversation.messages.is_empty() {
        return Ok(None);
    }
    conversation.sort_messages();
    let (record, analysis) = match t.conversations.get((k, conversation_id))? {
        Some(v) => {
            let (record, analysis_key) = record_of(v.value())?;
            let analysis = analysis_for(t, (k, conversation_id), analysis_key)?;
            (Some(record), analysis)
        }
        None => (None, None),
    };
    Ok(Some(ConversationDetail {
        upload_id,
        conversation_id: conversation.id,
        messages: conversation.messages,
        record,
        analysis,
        redacted: false,
    }))
}

/// The analysis the processed-content index holds for `content_key`: the
/// one already there, else `analysis`, stored now. A fresh analysis is
/// inserted straight away (the index rarely has it: one lookup, not two),
/// and the first one put back in the rare case it was there.
fn index_analysis<'a>(
    t: &mut Tables<'_>,
    content_key: &[u8; 32],
    analysis: &'a Analysis,
    status: ConversationStatus,
) -> Result<Cow<'a, Analysis>> {
    if status == ConversationStatus::Analyzed {
        let bytes = codec::encode_analysis(analysis);
        let Some(first) = t
            .processed
            .insert(content_key, bytes.as_slice())?
            .map(|v| v.value().to_vec())
        else {
            return Ok(Cow::Borrowed(analysis));
        };
        t.processed.insert(content_key, first.as_slice())?;
        return Ok(Cow::Owned(analysis_of(&first)?));
    }
    let existing = match t.processed.get(content_key)? {
        Some(v) => Some(analysis_of(v.value())?),
        None => None,
    };
    Ok(match existing {
        Some(a) => Cow::Owned(a),
        None => {
            let bytes = codec::encode_analysis(analysis);
            t.processed.insert(content_key, bytes.as_slice())?;
            Cow::Borrowed(analysis)
        }
    })
}

fn durability(durable: bool) -> Durability {
    if durable {
        Durability::Immediate
    } else {
        Durability::None
    }
}

/// Deletes an upload's messages, outcomes and analyses (not its record).
fn remove_rows(t: &mut Tables<'_>, k: UploadKey) -> Result<()> {
    let next = k.wrapping_add(1);
    t.messages
        .retain_in((k, 0, "", 0)..(next, 0, "", 0), |_, _| false)?;
    t.conversations
        .retain_in((k, "")..(next, ""), |_, _| false)?;
    t.analyses.retain_in((k, "")..(next, ""), |_, _| false)?;
    t.batch_jobs.retain_in((k, "")..(next, ""), |_, _| false)?;
    t.batch_keys.retain_in((k, "")..(next, ""), |_, _| false)?;
    t.upload_stats.remove(k)?;
    search::remove_upload(t, k)
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::PermissionDenied
                || io.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
        {
            StoreError::ReadOnly {
                path: path.to_path_buf(),
                message: io.to_string(),
            }
        }
        other => StoreError::Open {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
