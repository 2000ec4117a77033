//! Stage 1, parse: the export's rows, in batches, into the store.
//!
//! [`Batcher`] is plain code (rows in, batches with running totals out) and
//! is tested alone. The wiring runs it on a blocking thread that sends
//! progress once per batch and hands each batch to a second thread, the
//! storer, which encodes it and sends it to the `StoreActor`, waiting for a
//! commit after queueing the next (so a slow disk slows parsing, never
//! memory): reading, encoding and committing overlap.
//! Batches are committed without fsync: a crash while parsing redoes the
//! parse, and the durable commit that moves the upload to `analyzing` seals
//! them all.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Pipeline, Tally, UploadError};
use crate::ingest::{self, IngestError, Row};
use crate::progress::ProgressEvent;
use crate::progress::actor::Update;
use crate::store::actor::AppendMessages;
use crate::store::{MessageChunks, StoredMessage};

/// Messages per batch (one store transaction each, one run of blocks).
/// Smaller batches let the storer start sooner and finish sooner after the
/// parser (16,384 left it idle for a fifth of an 8,000-conversation parse);
/// larger ones mean fewer runs for readers to merge.
const PARSE_BATCH: usize = 8_192;

/// A batch of parsed rows and the running totals after it.
#[derive(Debug, Default)]
pub(super) struct ParsedBatch {
    pub rows: Vec<StoredMessage>,
    pub warnings: Vec<String>,
    /// Warnings about the whole upload (what was left out, guessed roles):
    /// kept first and whatever the cap.
    pub notices: Vec<String>,
    pub messages: u64,
    pub conversations: u64,
    pub autoresponses: u64,
}

/// Rows a batch reserves room for up front: a whole default batch (8,192),
/// so it is not grown and copied on the way; a larger configured batch grows
/// past it.
const MAX_RESERVED_ROWS: usize = 16_384;

/// Groups rows into batches of `size` messages (or warnings), numbering the
/// messages in file order and counting as it goes.
pub(super) struct Batcher {
    size: usize,
    /// Every id seen (foldhash, seeded per process: SipHash cost a tenth
    /// of the parse thread).
    conversations: HashSet<String, foldhash::fast::RandomState>,
    /// The id of the last message: a conversation's messages mostly come
    /// together, and the set is asked only when the id changes.
    last_id: Option<String>,
    messages: u64,
    autoresponses: u64,
    rows: Vec<StoredMessage>,
    warnings: Vec<String>,
    notices: Vec<String>,
}

impl Batcher {
    pub fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            conversations: HashSet::default(),
            last_id: None,
            messages: 0,
            autoresponses: 0,
            rows: Vec::with_capacity(size.clamp(1, MAX_RESERVED_ROWS)),
            warnings: Vec::new(),
            notices: Vec::new(),
        }
    }

    /// Takes one row; a full batch comes back.
    pub fn push(&mut self, row: Row) -> Option<ParsedBatch> {
        match row {
            Row::Message(m) => {
                // The row counter, not the file line: several messages of a
                // minified JSON file share one line.
                let seq = self.messages;
                self.messages += 1;
                self.autoresponses += u64::from(m.message.autoresponse);
                if self.last_id.as_ref() != Some(&m.conversation_id) {
                    if !self.conversations.contains(&m.conversation_id) {
                        self.conversations.insert(m.conversation_id.clone());
                    }
                    match &mut self.last_id {
                        Some(last) => last.clone_from(&m.conversation_id),
                        None => self.last_id = Some(m.conversation_id.clone()),
                    }
                }
                self.rows.push(StoredMessage {
                    conversation_id: m.conversation_id,
                    seq,
                    message: m.message,
                });
            }
            Row::Warning(w) if w.is_notice() => self.notices.push(w.to_string()),
            Row::Warning(w) => self.warnings.push(w.to_string()),
        }
        (self.rows.len() >= self.size || self.warnings.len() >= self.size).then(|| self.take())
    }

    /// What is left: the last batch (possibly empty).
    pub fn take(&mut self) -> ParsedBatch {
        ParsedBatch {
            rows: std::mem::replace(
                &mut self.rows,
                Vec::with_capacity(self.size.min(MAX_RESERVED_ROWS)),
            ),
            warnings: std::mem::take(&mut self.warnings),
            notices: std::mem::take(&mut self.notices),
            messages: self.messages,
            conversations: self.conversations.len() as u64,
            autoresponses: self.autoresponses,
        }
    }
}

/// How parsing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParseEnd {
    /// Every row of the file is stored.
    Complete,
    /// Cancelled (or the store refused a batch) before the end of the file.
    Stopped,
}

/// Reads every row, handing each full batch (and the last) to `sink`; stops
/// early when `cancel` fires or `sink` says no.
pub(super) fn parse_rows(
    rows: impl Iterator<Item = Result<Row, IngestError>>,
    batch: usize,
    cancel: &CancellationToken,
    mut sink: impl FnMut(ParsedBatch) -> bool,
) -> Result<ParseEnd, IngestError> {
    let mut batcher = Batcher::new(batch);
    for row in rows {
        if let Some(full) = batcher.push(row?)
            && (cancel.is_cancelled() || !sink(full))
        {
            return Ok(ParseEnd::Stopped);
        }
    }
    if cancel.is_cancelled() || !sink(batcher.take()) {
        return Ok(ParseEnd::Stopped);
    }
    Ok(ParseEnd::Complete)
}

/// What the parser thread brings back besides how it ended.
#[derive(Default)]
struct Parsed {
    last: ParsedBatch,
    tally: Tally,
    store_error: Option<UploadError>,
}

/// The storer thread: encodes each batch of rows and sends it to the
/// `StoreActor`, waiting for a batch's commit only after queueing the next
/// (so a slow disk slows parsing, never memory). Ends at the first store
/// error, which it returns (dropping `batches` tells the parser to stop).
fn store_batches(
    batches: std::sync::mpsc::Receiver<Vec<StoredMessage>>,
    store: &actix::Addr<crate::store::actor::StoreActor>,
    runtime: &tokio::runtime::Handle,
    upload_id: Uuid,
) -> Option<UploadError> {
    let settle = |request: actix::dev::Request<_, AppendMessages>| match runtime.block_on(request) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(UploadError::from(e)),
        Err(_) => Some(UploadError::ShuttingDown),
    };
    let mut committing = None;
    for rows in batches {
        let chunks = MessageChunks::encode(&rows);
        drop(rows);
        if chunks.is_empty() {
            continue;
        }
        let queued = store.send(AppendMessages {
            upload_id,
            chunks,
            durable: false,
        });
        if let Some(previous) = committing.replace(queued)
            && let Some(e) = settle(previous)
        {
            return Some(e);
        }
    }
    committing.and_then(settle)
}

impl Pipeline {
    /// Streams the file's rows into the store. `Ok(true)` when every row is
    /// stored, `Ok(false)` when cancelled before the end of the file.
    pub(super) async fn parse(
        &self,
        upload_id: Uuid,
        reader: ingest::RowReader,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<bool, UploadError> {
        let store = self.store.clone();
        let progress = self.progress.clone();
        let cancel = cancel.clone();
        // The threads wait on the StoreActor's answers through this runtime
        // (the actix system thread drives it meanwhile).
        let runtime = tokio::runtime::Handle::current();
        let thread = tokio::task::spawn_blocking(move || {
            let mut parsed = Parsed::default();
            // Two threads: this one reads rows into batches; the storer
            // encodes each batch and hands it to the StoreActor, so reading,
            // encoding and committing overlap. The channel holds one batch:
            // the parser is at most two batches ahead of the store.
            let (end, store_error) = std::thread::scope(|scope| {
                let (batches, received) = std::sync::mpsc::sync_channel(1);
                let storer = std::thread::Builder::new()
                    .name("powerpulse-storer".into())
                    .spawn_scoped(scope, || {
                        store_batches(received, &store, &runtime, upload_id)
                    });
                let storer = match storer {
                    Ok(storer) => storer,
                    Err(e) => {
                        let e = UploadError::Internal(format!("cannot start a thread: {e}"));
                        return (Ok(ParseEnd::Stopped), Some(e));
                    }
                };
                let end = parse_rows(reader, PARSE_BATCH, &cancel, |mut batch| {
                    let mut events = Vec::with_capacity(batch.warnings.len() + 1);
                    for w in std::mem::take(&mut batch.notices) {
                        events.push(ProgressEvent::Warning(w.clone()));
                        parsed.tally.notice(w);
                    }
                    for w in std::mem::take(&mut batch.warnings) {
                        events.push(ProgressEvent::Warning(w.clone()));
                        parsed.tally.warn(w);
                    }
                    events.push(ProgressEvent::Parsed {
                        messages: batch.messages,
                        conversations: batch.conversations,
                        autoresponses: batch.autoresponses,
                    });
                    let rows = std::mem::take(&mut batch.rows);
                    parsed.last = batch;
                    // A closed channel: the storer stopped on a store error.
                    if !rows.is_empty() && batches.send(rows).is_err() {
                        return false;
                    }
                    progress.do_send(Update { upload_id, events });
                    true
                });
                drop(batches);
                let store_error = storer.join().unwrap_or_else(|_| {
                    Some(UploadError::Internal("the storer thread panicked".into()))
                });
                (end, store_error)
            });
            // A failed commit is in `store_error`, which the caller checks first.
            parsed.store_error = store_error;
            (end, parsed)
        });
        let (end, parsed) = thread
            .await
            .map_err(|e| UploadError::Internal(format!("the parser thread failed: {e}")))?;
        let end = end?;
        if let Some(e) = parsed.store_error {
            return Err(e);
        }
        tally.counts.messages = parsed.last.messages;
        tally.counts.conversations = parsed.last.conversations;
        tally.counts.autoresponses_filtered = parsed.last.autoresponses;
        tally.warnings = parsed.tally.warnings;
        tally.warnings_total = parsed.tally.warnings_total;
        Ok(end == ParseEnd::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{MessageRow, Warning};
    use crate::model::{Message, Role};

    fn message(id: &str, autoresponse: bool) -> Result<Row, IngestError> {
        Ok(Row::Message(MessageRow {
            line: 1,
            conversation_id: id.into(),
            message: Message {
                role: Role::Customer,
                text: "hi".into(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse,
            },
        }))
    }

    #[test]
    fn batches_number_rows_in_file_order_and_count_as_they_go() {
        let rows = vec![
            message("a", false),
            message("b", true),
            Ok(Row::Warning(Warning::new(3, "odd"))),
            message("a", false),
            message("c", false),
        ];
        let mut batches = Vec::new();
        let end = parse_rows(rows.into_iter(), 2, &CancellationToken::new(), |b| {
            batches.push(b);
            true
        })
        .unwrap();
        assert_eq!(end, ParseEnd::Complete);
        let seqs: Vec<Vec<u64>> = batches
            .iter()
            .map(|b| b.rows.iter().map(|r| r.seq).collect())
            .collect();
        assert_eq!(seqs, vec![vec![0, 1], vec![2, 3], vec![]]);
        let last = batches.last().unwrap();
        assert_eq!(
            (last.messages, last.conversations, last.autoresponses),
            (4, 3, 1)
        );
        assert_eq!(batches[1].warnings, vec!["line 3: odd"]);
    }

    #[test]
    fn each_conversation_counts_once_however_its_messages_come() {
        let ids = ["a", "a", "b", "b", "a", "c", "c", "b", "a"];
        let rows = ids.iter().map(|id| message(id, false));
        let mut batches = Vec::new();
        parse_rows(rows, 4, &CancellationToken::new(), |b| {
            batches.push(b);
            true
        })
        .unwrap();
        let counts: Vec<u64> = batches.iter().map(|b| b.conversations).collect();
        assert_eq!(counts, [2, 3, 3]);
    }

    #[test]
    fn cancel_or_a_refusing_sink_stops_early_and_says_so() {
        let rows = || (0..10).map(|i| message(&format!("c{i}"), false));
        let cancel = CancellationToken::new();
        let mut seen = 0;
        let end = parse_rows(rows(), 3, &cancel, |_| {
            seen += 1;
            cancel.cancel();
            true
        })
        .unwrap();
        assert_eq!((end, seen), (ParseEnd::Stopped, 1));
        let end = parse_rows(rows(), 3, &CancellationToken::new(), |_| false).unwrap();
        assert_eq!(end, ParseEnd::Stopped);
    }

    #[test]
    fn an_error_stops_parsing_with_the_error() {
        let rows = vec![
            message("a", false),
            Err(IngestError::Empty {
                file: "x.csv".into(),
            }),
        ];
        let err = parse_rows(rows.into_iter(), 10, &CancellationToken::new(), |_| true);
        assert!(matches!(err, Err(IngestError::Empty { .. })));
    }
}
