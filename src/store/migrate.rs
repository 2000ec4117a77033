//! Schema 1 → 2: JSON values and one row per message become the compact
//! encoding of [`super::codec`] and one chunk per conversation. Schema 2 → 3
//! ([`from_v2`]): the aggregates are built from the outcomes. Schema 3 → 4
//! ([`from_v3`]): the per-conversation chunks become blocks of many
//! conversations compressed together.
//!
//! The rows move in transactions of bounded size ([`ROWS_PER_COMMIT`],
//! [`CHUNKS_PER_COMMIT`]), each taking them out of the old table as it
//! writes them to the new one, so memory stays bounded and a migration
//! interrupted by a crash simply goes on at the next open (the schema
//! version turns only in the last transaction, which also deletes the
//! emptied old tables).

use redb::{ReadableTable, TableDefinition};

use super::tables::{self, UploadKey, legacy};
use super::{Result, SCHEMA_VERSION, Store, StoreError, aggregates, codec};
use crate::model::{Analysis, Message};

/// Rows moved per transaction.
const ROWS_PER_COMMIT: usize = 20_000;
/// Messages per chunk when regrouping old rows.
const MESSAGES_PER_CHUNK: usize = 512;
/// Chunks moved per transaction from schema 3 (a chunk holds up to a parse
/// batch's 16,384 messages, so the messages are bounded too).
const CHUNKS_PER_COMMIT: usize = 5_000;
/// Messages moved per transaction from schema 3 at most (beyond the chunk
/// that reaches it).
const MESSAGES_PER_COMMIT: usize = 100_000;

fn json<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        message: format!("schema-1 record: {e}"),
    })
}

pub(super) fn from_v1(store: &Store) -> Result<()> {
    tracing::info!(db = %store.path.display(), "migrating the database from schema 1 to 2");
    while move_messages(store)? {}
    while move_keyed(store, legacy::CONVERSATIONS, tables::CONVERSATIONS, |b| {
        let mut record: super::ConversationRecord = json("conversation", b)?;
        if record.status == crate::model::ConversationStatus::Failed && record.failure.is_none() {
            // Schema 1 kept only the message.
            record.failure = Some(crate::analyze::FailureKind::Other);
        }
        Ok(codec::encode_record(&record, None))
    })? {}
    while move_keyed(store, legacy::ANALYSES, tables::ANALYSES, |b| {
        Ok(codec::encode_analysis(&json::<Analysis>("analysis", b)?))
    })? {}
    while move_processed(store)? {}
    let txn = store.db.begin_write()?;
    // Empty by now.
    txn.delete_table(legacy::MESSAGES)?;
    txn.delete_table(legacy::CONVERSATIONS)?;
    txn.delete_table(legacy::ANALYSES)?;
    txn.delete_table(legacy::PROCESSED)?;
    txn.open_table(tables::META)?.insert("schema_version", 2)?;
    txn.commit()?;
    tracing::info!("database migrated to schema 2");
    Ok(())
}

/// Schema 2 → 3: the aggregates (`upload-stats-v1`, `insight-cells-v1`,
/// `insight-holders-v1`) are built from the stored outcomes, one upload per
/// transaction. The first transaction empties them, so an interrupted
/// migration starts over cleanly at the next open; the version turns 3 in
/// the last one.
pub(super) fn from_v2(store: &Store) -> Result<()> {
    tracing::info!(db = %store.path.display(), "migrating the database from schema 2 to 3 (building aggregates)");
    let uploads = store.write(|t| {
        t.upload_stats.retain(|_, _| false)?;
        t.insight_cells.retain(|_, _| false)?;
        t.insight_holders.retain(|_, _| false)?;
        let mut uploads = Vec::new();
        for entry in t.uploads.iter()? {
            let (_, v) = entry?;
            uploads.push(super::decode::<super::UploadRecord>("upload", v.value())?);
        }
        Ok(uploads)
    })?;
    for upload in &uploads {
        store.write(|t| {
            aggregates::rebuild_stats(t, upload.id.as_u128())?;
            if upload.status == crate::model::Stage::Completed {
                aggregates::count_completed(t, upload, None)?;
            }
            Ok(())
        })?;
    }
    store.write(|t| {
        t.meta.insert("schema_version", 3)?;
        Ok(())
    })?;
    tracing::info!(uploads = uploads.len(), "database migrated to schema 3");
    Ok(())
}

/// Schema 3 → 4: `messages-v2`'s chunks (one conversation of one batch each,
/// compressed alone) become `messages-v3`'s blocks. The chunks are read in
/// key order, so each upload's come as one run (run 0) in conversation-id
/// order, each conversation's messages in file order: the blocks read back
/// exactly what the chunks held. A conversation cut by a transaction
/// boundary goes on in the next block of the same run, which the readers
/// expect anyway.
pub(super) fn from_v3(store: &Store) -> Result<()> {
    tracing::info!(db = %store.path.display(), "migrating the database from schema 3 to 4 (message blocks)");
    while move_chunks(store)? {}
    let txn = store.db.begin_write()?;
    // Empty by now.
    txn.delete_table(legacy::CHUNKS)?;
    // Creates every table an older schema-3 build had not (batch jobs).
    let mut all = tables::Tables::open(&txn)?;
    all.meta.insert("schema_version", SCHEMA_VERSION)?;
    drop(all);
    txn.commit()?;
    tracing::info!("database migrated to schema 4");
    Ok(())
}

/// One conversation's messages read from schema 3's chunks.
type Chunked = (UploadKey, String, Vec<(u64, Message)>);
/// A key of schema 3's `messages-v2`, owned.
type ChunkKey = (UploadKey, String, u64);

/// Moves up to [`CHUNKS_PER_COMMIT`] chunks (or about
/// [`MESSAGES_PER_COMMIT`] messages) into blocks; `false` when none were left.
fn move_chunks(store: &Store) -> Result<bool> {
    let txn = store.db.begin_write()?;
    let mut conversations: Vec<Chunked> = Vec::new();
    let mut bounds: Option<(ChunkKey, ChunkKey)> = None;
    {
        let old = txn.open_table(legacy::CHUNKS)?;
        let (mut chunks, mut messages) = (0usize, 0usize);
        for entry in old.iter()? {
            let (k, v) = entry?;
            let (upload, conversation, first) = k.value();
            let here = (upload, conversation.to_string(), first);
            bounds = Some(match bounds.take() {
                None => (here.clone(), here),
                Some((from, _)) => (from, here),
            });
            let same = conversations
                .last()
                .is_some_and(|(u, c, _)| *u == upload && c == conversation);
            if !same {
                conversations.push((upload, conversation.to_string(), Vec::new()));
            }
            let Some((_, _, rows)) = conversations.last_mut() else {
                continue;
            };
            let before = rows.len();
            codec::decode_chunk(v.value(), |seq, m| rows.push((seq, m))).map_err(|e| {
                StoreError::Corrupt {
                    what: "message",
                    message: e.to_string(),
                }
            })?;
            messages += rows.len() - before;
            chunks += 1;
            if chunks >= CHUNKS_PER_COMMIT || messages >= MESSAGES_PER_COMMIT {
                break;
            }
        }
    }
    let Some((from, to)) = bounds else {
        return Ok(false);
    };
    {
        let mut new = txn.open_table(tables::MESSAGES)?;
        for conversation in conversations.iter_mut() {
            // Chunks of one conversation are in first-row order and never
            // overlap; sorting keeps file order even if one did.
            conversation.2.sort_by_key(|(seq, _)| *seq);
        }
        for upload in conversations.chunk_by(|a, b| a.0 == b.0) {
            let groups = upload
                .iter()
                .map(|(_, id, rows)| (id.as_str(), rows.iter().map(|(seq, m)| (*seq, m))));
            for block in codec::encode_blocks(groups) {
                new.insert(
                    (upload[0].0, 0, block.first_id.as_str(), block.first_seq),
                    block.bytes.as_slice(),
                )?;
            }
        }
        remove_moved(&txn, legacy::CHUNKS, &from, &to)?;
    }
    txn.commit()?;
    Ok(true)
}

/// Takes the rows just moved, `from..=to`, out of a legacy message table
/// (in the transaction that wrote them to their new place).
fn remove_moved(
    txn: &redb::WriteTransaction,
    def: TableDefinition<'static, (UploadKey, &'static str, u64), &'static [u8]>,
    from: &ChunkKey,
    to: &ChunkKey,
) -> Result<()> {
    let mut old = txn.open_table(def)?;
    old.retain_in(
        (from.0, from.1.as_str(), from.2)..=(to.0, to.1.as_str(), to.2),
        |_, _| false,
    )?;
    Ok(())
}

/// Moves up to [`ROWS_PER_COMMIT`] messages; `false` when none were left.
fn move_messages(store: &Store) -> Result<bool> {
    let txn = store.db.begin_write()?;
    let mut rows: Vec<(UploadKey, String, u64, Message)> = Vec::new();
    {
        let old = txn.open_table(legacy::MESSAGES)?;
        for entry in old.iter()?.take(ROWS_PER_COMMIT) {
            let (k, v) = entry?;
            let (upload, conversation, seq) = k.value();
            rows.push((
                upload,
                conversation.to_string(),
                seq,
                json("message", v.value())?,
            ));
        }
    }
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(false);
    };
    let (from, to) = (
        (first.0, first.1.clone(), first.2),
        (last.0, last.1.clone(), last.2),
    );
    {
        let mut new = txn.open_table(legacy::CHUNKS)?;
        // Rows come in key order: consecutive rows of one conversation form chunks.
        let mut start = 0;
        while start < rows.len() {
            let (upload, conversation) = (rows[start].0, &rows[start].1);
            let mut end = start + 1;
            while end < rows.len()
                && end - start < MESSAGES_PER_CHUNK
                && rows[end].0 == upload
                && rows[end].1 == *conversation
            {
                end += 1;
            }
            let chunk = codec::encode_chunk(rows[start..end].iter().map(|r| (r.2, &r.3)));
            new.insert(
                (upload, conversation.as_str(), rows[start].2),
                chunk.as_slice(),
            )?;
            start = end;
        }
        remove_moved(&txn, legacy::MESSAGES, &from, &to)?;
    }
    txn.commit()?;
    Ok(true)
}

/// Moves up to [`ROWS_PER_COMMIT`] rows keyed by (upload, conversation id),
/// re-encoding each value.
fn move_keyed(
    store: &Store,
    old_def: TableDefinition<'static, (UploadKey, &'static str), &'static [u8]>,
    new_def: TableDefinition<'static, (UploadKey, &'static str), &'static [u8]>,
    convert: impl Fn(&[u8]) -> Result<Vec<u8>>,
) -> Result<bool> {
    let txn = store.db.begin_write()?;
    let mut rows: Vec<(UploadKey, String, Vec<u8>)> = Vec::new();
    {
        let old = txn.open_table(old_def)?;
        for entry in old.iter()?.take(ROWS_PER_COMMIT) {
            let (k, v) = entry?;
            let (upload, conversation) = k.value();
            rows.push((upload, conversation.to_string(), convert(v.value())?));
        }
    }
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(false);
    };
    let (from, to) = ((first.0, first.1.clone()), (last.0, last.1.clone()));
    {
        let mut new = txn.open_table(new_def)?;
        for (upload, conversation, value) in &rows {
            new.insert((*upload, conversation.as_str()), value.as_slice())?;
        }
        let mut old = txn.open_table(old_def)?;
        old.retain_in((from.0, from.1.as_str())..=(to.0, to.1.as_str()), |_, _| {
            false
        })?;
    }
    txn.commit()?;
    Ok(true)
}

fn move_processed(store: &Store) -> Result<bool> {
    let txn = store.db.begin_write()?;
    let mut rows: Vec<([u8; 32], Vec<u8>)> = Vec::new();
    {
        let old = txn.open_table(legacy::PROCESSED)?;
        for entry in old.iter()?.take(ROWS_PER_COMMIT) {
            let (k, v) = entry?;
            let analysis: Analysis = json("analysis", v.value())?;
            rows.push((*k.value(), codec::encode_analysis(&analysis)));
        }
    }
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(false);
    };
    let (from, to) = (first.0, last.0);
    {
        let mut new = txn.open_table(tables::PROCESSED)?;
        for (k, v) in &rows {
            new.insert(k, v.as_slice())?;
        }
        let mut old = txn.open_table(legacy::PROCESSED)?;
        old.retain_in::<&[u8; 32], _>(&from..=&to, |_, _| false)?;
    }
    txn.commit()?;
    Ok(true)
}
