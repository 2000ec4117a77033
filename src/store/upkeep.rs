//! Upkeep of the redb file: consistent snapshots (backups), the sweep of the
//! processed-content index after retention, and compaction.
//!
//! redb has no online-backup API, so a snapshot copies every table, as one
//! read transaction sees them, into a fresh redb file: writers go on while
//! it is taken, and it holds exactly what was committed when it began.

use std::collections::HashSet;
use std::path::Path;

use redb::{
    Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize};

use super::tables::{self, ReadTables};
use super::{CACHE_BYTES, Result, Store, StoreError, open_error, record_of};

/// Rows copied per write transaction of a snapshot: the copy's memory stays
/// bounded whatever the size of the database. (Tiny in tests, so they cross
/// batch boundaries.)
const COPY_BATCH: u64 = if cfg!(test) { 3 } else { 20_000 };

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub uploads: u64,
    /// Rows copied, every table together.
    pub rows: u64,
}

/// Copies every row of `from` into the table `def` of `to`, in key order,
/// committing every [`COPY_BATCH`] rows without fsync (the snapshot's last
/// commit makes them durable).
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &impl ReadableTable<K, V>,
    to: &Database,
    def: TableDefinition<K, V>,
) -> Result<u64> {
    let mut rows = from.iter()?;
    let mut copied = 0u64;
    loop {
        let mut txn = to.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut more = false;
        {
            let mut table = txn.open_table(def)?;
            for entry in rows.by_ref() {
                let (k, v) = entry?;
                table.insert(k.value(), v.value())?;
                copied += 1;
                if copied.is_multiple_of(COPY_BATCH) {
                    more = true;
                    break;
                }
            }
        }
        txn.commit()?;
        if !more {
            return Ok(copied);
        }
    }
}

impl Store {
    /// Writes a consistent copy of the database into `dest`, a new redb file
    /// (`dest` must not exist or be empty): every table as one read
    /// transaction sees it, so the copy is the database as of that moment
    /// while writers go on. The copy is durable when this returns.
    pub fn snapshot_to(&self, dest: &Path) -> Result<SnapshotStats> {
        let out = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dest)
            .map_err(|e| open_error(dest, e))?;
        self.snapshot_into(&out)
    }

    /// Copies every table, as one read transaction sees them, into `out`
    /// (a new, empty database), durably.
    fn snapshot_into(&self, out: &Database) -> Result<SnapshotStats> {
        let txn = tables::begin_read(&self.db)?;
        let src = ReadTables::open(&txn)?;
        let meta = txn.open_table(tables::META)?;
        let mut rows = copy_table(&meta, out, tables::META)?;
        let uploads = copy_table(&src.uploads, out, tables::UPLOADS)?;
        rows += uploads;
        rows += copy_table(&src.messages, out, tables::MESSAGES)?;
        rows += copy_table(&src.conversations, out, tables::CONVERSATIONS)?;
        rows += copy_table(&src.analyses, out, tables::ANALYSES)?;
        rows += copy_table(&src.processed, out, tables::PROCESSED)?;
        rows += copy_table(&src.batch_jobs, out, tables::BATCH_JOBS)?;
        rows += copy_table(&src.batch_keys, out, tables::BATCH_KEYS)?;
        rows += copy_table(&src.llm_endpoints, out, tables::LLM_ENDPOINTS)?;
        rows += copy_table(&src.upload_stats, out, tables::UPLOAD_STATS)?;
        rows += copy_table(&src.insight_cells, out, tables::INSIGHT_CELLS)?;
        rows += copy_table(&src.insight_holders, out, tables::INSIGHT_HOLDERS)?;
        rows += copy_table(&src.insight_rows, out, tables::INSIGHT_ROWS)?;
        rows += copy_table(&src.audit, out, tables::AUDIT)?;
        rows += copy_table(&src.insight_shadowed, out, tables::INSIGHT_SHADOWED)?;
        rows += copy_table(&src.search_segments, out, tables::SEARCH_SEGMENTS)?;
        rows += copy_table(&src.search_postings, out, tables::SEARCH_POSTINGS)?;
        rows += copy_table(&src.search_pending, out, tables::SEARCH_PENDING)?;
        rows += copy_table(&src.alerts, out, tables::ALERTS)?;
        // A table added to the schema and not here would be silently left
        // out of every backup: refuse instead.
        let copied = [
            tables::META.name(),
            tables::UPLOADS.name(),
            tables::MESSAGES.name(),
            tables::CONVERSATIONS.name(),
            tables::ANALYSES.name(),
            tables::PROCESSED.name(),
            tables::BATCH_JOBS.name(),
            tables::BATCH_KEYS.name(),
            tables::LLM_ENDPOINTS.name(),
            tables::UPLOAD_STATS.name(),
            tables::INSIGHT_CELLS.name(),
            tables::INSIGHT_HOLDERS.name(),
            tables::INSIGHT_ROWS.name(),
            tables::AUDIT.name(),
            tables::INSIGHT_SHADOWED.name(),
            tables::SEARCH_SEGMENTS.name(),
            tables::SEARCH_POSTINGS.name(),
            tables::SEARCH_PENDING.name(),
            tables::ALERTS.name(),
        ];
        for table in txn.list_tables()? {
            if !copied.contains(&table.name()) {
                return Err(StoreError::Storage(format!(
                    "table {} is not copied by snapshots (store/upkeep.rs)",
                    table.name()
                )));
            }
        }
        // An empty durable commit seals the ones made without fsync.
        let txn = out.begin_write()?;
        txn.commit()?;
        Ok(SnapshotStats { uploads, rows })
    }

    /// A snapshot ([`Store::snapshot_to`]) in an unnamed file in `dir`,
    /// open for reading from its start; the file is gone once the handle is
    /// dropped, and a crash while it is written or sent leaves nothing
    /// behind (on Linux it never has a name: `O_TMPFILE`; elsewhere it is
    /// unlinked as soon as it is made). `dir` should be on the database's
    /// file system (it may be as large as the database).
    pub fn snapshot_file(&self, dir: &Path) -> Result<(std::fs::File, SnapshotStats)> {
        use std::io::Seek;
        let io = |e: std::io::Error| StoreError::Storage(format!("cannot write a snapshot: {e}"));
        let mut file = tempfile::tempfile_in(dir).map_err(io)?;
        let backend = redb::backends::FileBackend::new(file.try_clone().map_err(io)?)
            .map_err(|e| StoreError::Storage(format!("cannot write a snapshot: {e}")))?;
        let out = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| StoreError::Storage(format!("cannot write a snapshot: {e}")))?;
        let stats = self.snapshot_into(&out)?;
        drop(out);
        file.rewind().map_err(io)?;
        Ok((file, stats))
    }

    /// Removes the named snapshot files an earlier version left beside the
    /// database when it crashed while taking one (`.powerpulse-snapshot-*.redb`;
    /// snapshots have no name now). Only files untouched for an hour go: a
    /// snapshot being written is committed to every few milliseconds.
    /// Answers how many went.
    pub fn remove_stale_snapshots(&self) -> usize {
        const STALE: std::time::Duration = std::time::Duration::from_secs(3600);
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let snapshot = name.starts_with(".powerpulse-snapshot-") && name.ends_with(".redb");
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
            if snapshot && stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Removes the processed-index entries that no stored conversation
    /// refers to (the analyses of deleted or expired uploads). Answers how
    /// many went. One write transaction: a row written later that reuses a
    /// removed entry writes it back (`save_results` carries the analysis).
    pub(crate) fn sweep_processed(&self) -> Result<u64> {
        self.write(|t| {
            let mut live: HashSet<[u8; 32]> = HashSet::new();
            for entry in t.conversations.iter()? {
                let (_, v) = entry?;
                if let (_, Some(key)) = record_of(v.value())? {
                    live.insert(key);
                }
            }
            let before = t.processed.len()?;
            t.processed.retain(|key, _| live.contains(key))?;
            Ok(before - t.processed.len()?)
        })
    }

    /// Rewrites the file without its free pages, so it shrinks after
    /// deletes. Needs the database alone: `self` must be its only handle
    /// (no actor may hold a clone). Answers whether anything was moved.
    pub fn compact(self) -> Result<bool> {
        let path = self.path.clone();
        let mut db = std::sync::Arc::try_unwrap(self.db).map_err(|_| StoreError::Open {
            path: path.clone(),
            message: "compacting needs the database alone, and it is shared".into(),
        })?;
        // redb repeats its passes until one moves nothing.
        db.compact().map_err(|e| StoreError::Storage(e.to_string()))
    }
}
