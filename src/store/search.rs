//! The search index in redb: one segment ([`crate::search::segment`]) per
//! run of an upload's messages (`search-segments-v1`, long posting lists in
//! `search-postings-v1`), and one of a completed upload's summaries.
//!
//! Segments are built off the ingest path. The transaction that stores a
//! run, or completes an upload, only queues its piece in
//! `search-pending-v1` under a fresh number (`meta-v1`'s `search_seq`); the
//! `SearchIndexer` (`search::actor`) later reads the piece's text back
//! ([`Store::segment_source`], a read transaction), builds the segment on
//! its own thread, and has the `StoreActor` write it
//! ([`Store::put_segments`]) only if the piece is still queued under the
//! number it read, removing it from the queue in the same transaction. A
//! delete, retention or a parse started again removes an upload's segments
//! and queued pieces together, so a segment built from text that has gone
//! since is dropped, never written: the index holds exactly the stored
//! text, and whatever is stored and not indexed is queued. A search first
//! has the indexer build what is queued of completed uploads, so it sees
//! every upload completed before it started. A file without the index
//! (written before it existed) gets every piece queued when opened
//! ([`ensure_index`]).
//!
//! A search ([`Store::search`]) reads the postings of the query's terms in
//! every segment of every completed upload, merges a conversation's docs of
//! several runs by its id, and keeps those matching every clause that the
//! insights count: found in their upload's summaries segment (analysed, with
//! the facts the drill-down filters by) and not shadowed by another holder
//! (`insight-shadowed-v1`). Then it ranks them (BM25, then newest day).

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata};

use super::drilldown::{self, RowKey};
use super::stats::{self, Contribution, DrillCursor, DrillFilter, RowFacts};
use super::tables::{ReadTables, SUMMARY_RUN, Tables, UploadKey};
use super::{
    DrillPage, Result, Store, StoreError, UploadRecord, aggregates, analysis_for, block_of, codec,
    corrupt, decode, durability, record_of,
};
use crate::model::Stage;
use crate::privacy::Redactor;
use crate::search::segment::{self, Postings, Segment, SegmentBuilder, SegmentView};
use crate::search::{self as text_search, Clause, Query};

/// The version of the index `meta-v1` says was built (`"search_index"`).
const INDEX_VERSION: u64 = 1;

fn bad(e: segment::SegmentError) -> StoreError {
    StoreError::Corrupt {
        what: "search index",
        message: e.to_string(),
    }
}

/// A piece of the index waiting to be built: a run of an upload's messages,
/// or (run [`SUMMARY_RUN`]) a completed upload's summaries, with the number
/// it was queued under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSegment {
    pub upload: UploadKey,
    pub run: u64,
    seq: u64,
}

/// The text a pending piece is built from, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentSource {
    /// The run's conversations in id order, each with its messages' texts
    /// in the run (autoresponses left out, as the analyzer leaves them).
    Run(Vec<(String, Vec<String>)>),
    /// Every analysed conversation of the upload, in id-hash order: its
    /// first message's time, what the drill-down knows of it, its summary.
    Summaries(Vec<(String, Option<i64>, RowFacts, String)>),
}

impl SegmentSource {
    /// The segment: CPU work, no database (the indexer's thread does it).
    pub fn build(&self) -> Segment {
        let mut b = SegmentBuilder::default();
        match self {
            SegmentSource::Run(conversations) => {
                for (id, texts) in conversations {
                    b.doc(id);
                    for text in texts {
                        b.text(text);
                    }
                }
            }
            SegmentSource::Summaries(rows) => {
                for (id, started_ms, facts, summary) in rows {
                    b.summary_doc(id, *started_ms, facts.clone());
                    b.text(summary);
                }
            }
        }
        b.finish()
    }
}

/// A segment built from a pending piece, to be written if it is still pending.
#[derive(Debug, Clone)]
pub struct BuiltSegment {
    pub pending: PendingSegment,
    pub segment: Segment,
}

/// Queues a piece under a fresh number (replacing any queued before).
fn queue(t: &mut Tables<'_>, k: UploadKey, run: u64) -> Result<()> {
    let seq = t.meta.get("search_seq")?.map_or(0, |v| v.value()) + 1;
    t.meta.insert("search_seq", seq)?;
    t.search_pending.insert((k, run), seq)?;
    Ok(())
}

/// Queues a run of messages just stored, in the same transaction.
pub(super) fn queue_run(t: &mut Tables<'_>, k: UploadKey, run: u64) -> Result<()> {
    queue(t, k, run)
}

/// Queues a completing upload's summaries (any segment of them before is
/// removed: it is built anew).
pub(super) fn queue_summaries(t: &mut Tables<'_>, k: UploadKey) -> Result<()> {
    remove_summaries(t, k)?;
    queue(t, k, SUMMARY_RUN)
}

/// Writes a segment (replacing any of the same piece).
fn put_segment(t: &mut Tables<'_>, k: UploadKey, run: u64, s: &Segment) -> Result<()> {
    t.search_segments.remove((k, run))?;
    t.search_postings
        .retain_in((k, run, 0)..=(k, run, u64::MAX), |_, _| false)?;
    if s.is_empty() {
        return Ok(());
    }
    t.search_segments.insert((k, run), s.value.as_slice())?;
    for (term, postings) in &s.external {
        t.search_postings
            .insert((k, run, *term), postings.as_slice())?;
    }
    Ok(())
}

/// Removes every segment and queued piece of an upload, and its shadowed
/// conversations.
pub(super) fn remove_upload(t: &mut Tables<'_>, k: UploadKey) -> Result<()> {
    let next = k.wrapping_add(1);
    t.search_segments
        .retain_in((k, 0)..(next, 0), |_, _| false)?;
    t.search_postings
        .retain_in((k, 0, 0)..(next, 0, 0), |_, _| false)?;
    t.search_pending
        .retain_in((k, 0)..(next, 0), |_, _| false)?;
    t.insight_shadowed
        .retain_in((k, "")..(next, ""), |_, _| false)?;
    Ok(())
}

/// Removes an upload's summaries segment, built or queued.
pub(super) fn remove_summaries(t: &mut Tables<'_>, k: UploadKey) -> Result<()> {
    t.search_segments.remove((k, SUMMARY_RUN))?;
    t.search_postings
        .retain_in((k, SUMMARY_RUN, 0)..=(k, SUMMARY_RUN, u64::MAX), |_, _| {
            false
        })?;
    t.search_pending.remove((k, SUMMARY_RUN))?;
    Ok(())
}

/// Records that the index is complete (a new file's is: it is empty).
pub(super) fn mark_built(t: &mut Tables<'_>) -> Result<()> {
    t.meta.insert("search_index", INDEX_VERSION)?;
    Ok(())
}

/// Queues every piece of every stored upload when the file has no index
/// (written before it existed): each run of messages, and each completed
/// upload's summaries, in one transaction with the version in `meta-v1`.
/// The `SearchIndexer` builds them (`serve` starts it at once).
pub(super) fn ensure_index(store: &Store) -> Result<()> {
    let version = {
        let txn = super::tables::begin_read(&store.db)?;
        let meta = txn.open_table(super::tables::META)?;
        meta.get("search_index")?.map(|v| v.value())
    };
    if version == Some(INDEX_VERSION) {
        return Ok(());
    }
    let queued = store.write(|t| {
        t.search_segments.retain(|_, _| false)?;
        t.search_postings.retain(|_, _| false)?;
        t.search_pending.retain(|_, _| false)?;
        let mut uploads = Vec::new();
        for entry in t.uploads.iter()? {
            let (_, v) = entry?;
            uploads.push(decode::<UploadRecord>("upload", v.value())?);
        }
        let mut queued = 0u64;
        for upload in &uploads {
            let k = upload.id.as_u128();
            let mut from = 0u64;
            loop {
                let run = match t
                    .messages
                    .range((k, from, "", 0)..(k.wrapping_add(1), 0, "", 0))?
                    .next()
                {
                    Some(first) => first?.0.value().1,
                    None => break,
                };
                queue(t, k, run)?;
                queued += 1;
                match run.checked_add(1) {
                    Some(next) => from = next,
                    None => break,
                }
            }
            if upload.status == Stage::Completed {
                queue(t, k, SUMMARY_RUN)?;
                queued += 1;
            }
        }
        mark_built(t)?;
        Ok(queued)
    })?;
    tracing::info!(db = %store.path.display(), pieces = queued, "search index queued to be built");
    Ok(())
}

impl Store {
    /// Up to `limit` pieces of the index waiting to be built, of completed
    /// uploads only (an unfinished upload's runs wait for its completion:
    /// only completed uploads are searched).
    pub fn pending_segments(&self, limit: usize) -> Result<Vec<PendingSegment>> {
        self.read(|t| {
            let mut out = Vec::new();
            let mut status: HashMap<UploadKey, bool> = HashMap::new();
            for entry in t.search_pending.iter()? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = entry?;
                let (upload, run) = k.value();
                let completed = match status.get(&upload) {
                    Some(&c) => c,
                    None => {
                        let c = match t.uploads.get(upload)? {
                            Some(v) => {
                                decode::<UploadRecord>("upload", v.value())?.status
                                    == Stage::Completed
                            }
                            None => false,
                        };
                        status.insert(upload, c);
                        c
                    }
                };
                if completed {
                    out.push(PendingSegment {
                        upload,
                        run,
                        seq: v.value(),
                    });
                }
            }
            Ok(out)
        })
    }

    /// The text a pending piece is built from; `None` when it is no longer
    /// queued under the same number (its upload deleted or parsed again).
    pub fn segment_source(&self, p: PendingSegment) -> Result<Option<SegmentSource>> {
        self.read(|t| {
            if t.search_pending.get((p.upload, p.run))?.map(|v| v.value()) != Some(p.seq) {
                return Ok(None);
            }
            if p.run == SUMMARY_RUN {
                summaries_of(t, p.upload).map(Some)
            } else {
                run_of(t, p.upload, p.run).map(|r| Some(SegmentSource::Run(r)))
            }
        })
    }

    /// Writes the segments whose pieces are still queued under the numbers
    /// they were read with, and takes those pieces off the queue; drops the
    /// others (their text has changed since). Answers how many were written.
    pub(super) fn put_segments(&self, built: &[BuiltSegment]) -> Result<usize> {
        if built.is_empty() {
            return Ok(0);
        }
        // No fsync: a segment lost to a crash is still queued, built again.
        self.write_with(durability(false), |t| {
            let mut written = 0;
            for b in built {
                let (k, run) = (b.pending.upload, b.pending.run);
                if t.search_pending.get((k, run))?.map(|v| v.value()) != Some(b.pending.seq) {
                    continue;
                }
                put_segment(t, k, run, &b.segment)?;
                t.search_pending.remove((k, run))?;
                written += 1;
            }
            Ok(written)
        })
    }

    /// Builds every queued piece of completed uploads now, on this thread:
    /// what the `SearchIndexer` does, for offline use (tests, benches).
    /// Answers how many segments were written.
    pub fn index_pending(&self) -> Result<usize> {
        let mut written = 0;
        loop {
            let pending = self.pending_segments(16)?;
            if pending.is_empty() {
                return Ok(written);
            }
            let mut built = Vec::with_capacity(pending.len());
            for p in pending {
                if let Some(source) = self.segment_source(p)? {
                    built.push(BuiltSegment {
                        pending: p,
                        segment: source.build(),
                    });
                }
            }
            // Every piece read is written or dropped (gone from the queue),
            // or was no longer queued as read: the queue shrinks each turn.
            written += self.put_segments(&built)?;
        }
    }
}

/// A run's conversations with their messages' texts, read back.
fn run_of(t: &ReadTables, k: UploadKey, run: u64) -> Result<Vec<(String, Vec<String>)>> {
    // A run's sections in id order; one conversation's may continue in the
    // next block.
    let mut conversations: Vec<(String, Vec<String>)> = Vec::new();
    let run_start = Bound::Included((k, run, "", 0));
    for entry in t
        .messages
        .range((run_start, Bound::Excluded(super::run_end(k, run))))?
    {
        let (_, v) = entry?;
        let block = block_of(v.value())?;
        for section in block.sections().map_err(corrupt("message"))? {
            if conversations.last().is_none_or(|(id, _)| id != section.id) {
                conversations.push((section.id.to_string(), Vec::new()));
            }
            let Some((_, texts)) = conversations.last_mut() else {
                continue;
            };
            section
                .messages(codec::Timestamps::TimeOnly, |_, m| {
                    if !m.autoresponse {
                        texts.push(m.text);
                    }
                })
                .map_err(corrupt("message"))?;
        }
    }
    Ok(conversations)
}

/// A completed upload's analysed conversations, in id-hash order, with
/// what the insights count of each.
fn summaries_of(t: &ReadTables, k: UploadKey) -> Result<SegmentSource> {
    let Some(upload) = t.uploads.get(k)? else {
        return Ok(SegmentSource::Summaries(Vec::new()));
    };
    let upload: UploadRecord = decode("upload", upload.value())?;
    let mut rows = Vec::new();
    for entry in t.conversations.range((k, "")..(k.wrapping_add(1), ""))? {
        let (kg, v) = entry?;
        let (_, conversation_id) = kg.value();
        let (record, content_key) = record_of(v.value())?;
        let Some(analysis) = analysis_for(t, (k, conversation_id), content_key)? else {
            continue;
        };
        let contribution = Contribution::of(&record, &analysis, upload.created_at);
        let facts = aggregates::facts_of(
            &contribution,
            record.language.as_deref().unwrap_or_default(),
        );
        rows.push((
            segment::id_hash(conversation_id),
            (
                conversation_id.to_string(),
                record.started_ms,
                facts,
                analysis.summary,
            ),
        ));
    }
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.0.cmp(&b.1.0)));
    Ok(SegmentSource::Summaries(
        rows.into_iter().map(|(_, row)| row).collect(),
    ))
}

/// A conversation's matches, gathered over its docs.
struct Candidate {
    upload: UploadKey,
    /// Where its id is: a segment (by index) and a doc of it.
    first: (usize, u32),
    /// Which clauses matched.
    matched: u128,
    /// Tokens of the message docs seen.
    length: u64,
}

/// One segment being searched: its upload, run and value.
struct Searched<'t> {
    upload: UploadKey,
    run: u64,
    value: redb::AccessGuard<'t, &'static [u8]>,
}

/// The docs of a segment matching a clause, with how often each does.
fn clause_hits(
    t: &ReadTables,
    (upload, run): (UploadKey, u64),
    view: &SegmentView<'_>,
    clause: &Clause,
) -> Result<Vec<(u32, u32)>> {
    // A list inline in the segment, or under its own key.
    let read = |term: u64, each: &mut dyn FnMut(&[u8]) -> Result<()>| -> Result<()> {
        match view.postings(term).map_err(bad)? {
            None => Ok(()),
            Some(Postings::Inline(p)) => each(p),
            Some(Postings::External) => match t.search_postings.get((upload, run, term))? {
                Some(p) => each(p.value()),
                None => Err(StoreError::Corrupt {
                    what: "search index",
                    message: "a term's posting list is missing".into(),
                }),
            },
        }
    };
    match clause {
        Clause::Word(terms) => {
            // A token may be indexed under two of the terms: its count is
            // the most any one of them has.
            let mut hits: Vec<(u32, u32)> = Vec::new();
            for term in terms {
                read(*term, &mut |p| {
                    segment::hits(p, |h| hits.push((h.doc, h.occurrences))).map_err(bad)
                })?;
            }
            hits.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(hits.len());
            for (doc, n) in hits {
                match merged.last_mut() {
                    Some((d, m)) if *d == doc => *m = (*m).max(n),
                    _ => merged.push((doc, n)),
                }
            }
            Ok(merged)
        }
        Clause::Phrase(words) => {
            let mut at: Vec<Vec<(u32, u32)>> = Vec::with_capacity(words.len());
            for terms in words {
                let mut occurrences = Vec::new();
                for term in terms {
                    read(*term, &mut |p| {
                        segment::occurrences(p, &mut occurrences).map_err(bad)
                    })?;
                }
                if occurrences.is_empty() {
                    return Ok(Vec::new());
                }
                occurrences.sort_unstable();
                occurrences.dedup();
                at.push(occurrences);
            }
            let mut found: Vec<(u32, u32)> = Vec::new();
            for &(doc, start) in &at[0] {
                let follows = at.iter().enumerate().skip(1).all(|(j, list)| {
                    start
                        .checked_add(j as u32)
                        .is_some_and(|p| list.binary_search(&(doc, p)).is_ok())
                });
                if follows {
                    match found.last_mut() {
                        Some((d, n)) if *d == doc => *n += 1,
                        _ => found.push((doc, 1)),
                    }
                }
            }
            Ok(found)
        }
    }
}

/// The order of a ranked result: best score first, then newest day, then
/// upload and conversation id (the cursor is a position in it).
fn ranked_before(a: (f64, &RowKey), b: (f64, &RowKey)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0)
        .then(b.1.0.cmp(&a.1.0))
        .then(a.1.1.cmp(&b.1.1))
        .then(a.1.2.cmp(&b.1.2))
}

impl Store {
    /// The conversations the insights count under `filter` that match
    /// `query`, best first, after `cursor`; `total` counts them all. Each
    /// item shows the text that matches best, its messages redacted by
    /// `redactor` when given (a reader who may not see personal data).
    /// What is still queued to be indexed is not searched: build it first
    /// (the HTTP handler has the `SearchIndexer` do so).
    pub fn search(
        &self,
        query: &Query,
        filter: &DrillFilter,
        cursor: Option<&DrillCursor>,
        limit: usize,
        redactor: Option<&Redactor>,
    ) -> Result<DrillPage> {
        let limit = limit.max(1);
        self.read(|t| {
            let mut ranked = rank(t, query, filter)?;
            let total = ranked.len() as u64;
            if let Some(c) = cursor {
                let at = (
                    c.score.unwrap_or(f64::INFINITY),
                    &(c.day, c.upload, c.conversation_id.clone()),
                );
                ranked.retain(|(score, key)| {
                    ranked_before(at, (*score, key)) == std::cmp::Ordering::Less
                });
            }
            // The page: the first `limit` in rank order (the rest unsorted).
            let more = ranked.len() > limit;
            if more {
                ranked
                    .select_nth_unstable_by(limit, |a, b| ranked_before((a.0, &a.1), (b.0, &b.1)));
                ranked.truncate(limit);
            }
            ranked.sort_by(|a, b| ranked_before((a.0, &a.1), (b.0, &b.1)));
            let next = match ranked.last() {
                Some((score, (day, upload, id))) if more => Some(
                    DrillCursor {
                        score: Some(*score),
                        day: *day,
                        upload: *upload,
                        conversation_id: id.clone(),
                    }
                    .to_string(),
                ),
                _ => None,
            };
            let mut items = Vec::with_capacity(ranked.len());
            for (_, key) in &ranked {
                let mut found = drilldown::found(t, key)?;
                let upload_id = found.row.upload_id;
                let detail = super::conversation_in(t, upload_id, &key.2)?;
                // A viewer's: messages and summary redacted in one session,
                // as the transcript route shows them.
                let transcript = detail.map(|d| match redactor {
                    Some(r) => {
                        let summary = found.row.analysis.as_ref().map(|a| a.summary.as_str());
                        let redacted = r.redact_transcript(&d.messages, summary);
                        if let (Some(analysis), Some(summary)) =
                            (found.row.analysis.as_mut(), redacted.summary)
                        {
                            analysis.summary = summary;
                        }
                        redacted.messages
                    }
                    None => d.messages,
                });
                let messages = transcript.as_ref().map(|messages| {
                    messages
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| !m.autoresponse)
                        .map(|(i, m)| (i, m.role, m.text.as_str()))
                        .collect::<Vec<_>>()
                });
                found.matched = text_search::best_match(
                    query,
                    messages.unwrap_or_default(),
                    found.row.analysis.as_ref().map(|a| a.summary.as_str()),
                );
                items.push(found);
            }
            Ok(DrillPage { items, total, next })
        })
    }
}

/// Every counted conversation under `filter` matching `query`, with its
/// score (in no order).
fn rank(t: &ReadTables, query: &Query, filter: &DrillFilter) -> Result<Vec<(f64, RowKey)>> {
    let clauses = query.clauses.len();
    if clauses == 0 || clauses > 128 {
        return Ok(Vec::new());
    }
    let (from, to) = filter.days();
    // Completed uploads, and when each was made (a conversation without a
    // time counts on its upload's day).
    let mut completed: HashMap<UploadKey, DateTime<Utc>> = HashMap::new();
    for entry in t.uploads.iter()? {
        let (k, v) = entry?;
        let upload = decode::<UploadRecord>("upload", v.value())?;
        if upload.status == Stage::Completed {
            completed.insert(k.value(), upload.created_at);
        }
    }
    // Conversations counted under another upload than the one searched (a
    // conversation uploaded twice): usually none.
    let mut shadowed: HashSet<(UploadKey, String)> = HashSet::new();
    for entry in t.insight_shadowed.iter()? {
        let (k, _) = entry?;
        let (upload, id) = k.value();
        shadowed.insert((upload, id.to_string()));
    }
    let mut segments: Vec<Searched<'_>> = Vec::new();
    for entry in t.search_segments.iter()? {
        let (k, v) = entry?;
        let (upload, run) = k.value();
        if completed.contains_key(&upload) {
            segments.push(Searched {
                upload,
                run,
                value: v,
            });
        }
    }
    let views = segments
        .iter()
        .map(|s| SegmentView::read(s.value.value()).map_err(bad))
        .collect::<Result<Vec<_>>>()?;
    let summaries: HashMap<UploadKey, &SegmentView<'_>> = segments
        .iter()
        .zip(&views)
        .filter(|(s, _)| s.run == SUMMARY_RUN)
        .map(|(s, v)| (s.upload, v))
        .collect();
    let (mut docs, mut tokens) = (0u64, 0u64);
    for (s, view) in segments.iter().zip(&views) {
        if s.run != SUMMARY_RUN {
            docs += view.len() as u64;
            tokens += view.tokens();
        }
    }
    let avg_len = if docs > 0 {
        tokens as f64 / docs as f64
    } else {
        0.0
    };
    let mut candidates: Vec<Candidate> = Vec::new();
    // How often each candidate matched each clause: `clauses` per candidate.
    let mut occurrences: Vec<u32> = Vec::new();
    let mut by_id: HashMap<(UploadKey, u64), usize, foldhash::fast::RandomState> =
        HashMap::default();
    // A segment's docs' candidates, once found (a doc hit by several clauses
    // is looked up once).
    let mut slots: Vec<u32> = Vec::new();
    for (index, (s, view)) in segments.iter().zip(&views).enumerate() {
        slots.clear();
        slots.resize(view.len(), u32::MAX);
        for (c, clause) in query.clauses.iter().enumerate() {
            for (doc, n) in clause_hits(t, (s.upload, s.run), view, clause)? {
                let slot = slots
                    .get_mut(doc as usize)
                    .ok_or_else(|| bad(segment::SegmentError::missing_doc()))?;
                if *slot == u32::MAX {
                    let d = view.doc(doc).map_err(bad)?;
                    // The conversation: its id's hash, probing on
                    // (astronomically unlikely) collisions.
                    let mut probe = d.id_hash;
                    let at = loop {
                        match by_id.get(&(s.upload, probe)) {
                            Some(&i) => {
                                let (seg, first) = candidates[i].first;
                                if views[seg].doc(first).map_err(bad)?.id == d.id {
                                    break i;
                                }
                                probe = probe.wrapping_add(1);
                            }
                            None => {
                                candidates.push(Candidate {
                                    upload: s.upload,
                                    first: (index, doc),
                                    matched: 0,
                                    length: 0,
                                });
                                occurrences.resize(occurrences.len() + clauses, 0);
                                by_id.insert((s.upload, probe), candidates.len() - 1);
                                break candidates.len() - 1;
                            }
                        }
                    };
                    if s.run != SUMMARY_RUN {
                        candidates[at].length += u64::from(d.length);
                    }
                    *slot = at as u32;
                }
                let at = *slot as usize;
                candidates[at].matched |= 1 << c;
                occurrences[at * clauses + c] += n;
            }
        }
    }
    let all = if clauses == 128 {
        u128::MAX
    } else {
        (1u128 << clauses) - 1
    };
    let mut df = vec![0u64; clauses];
    for candidate in &candidates {
        for (c, n) in df.iter_mut().enumerate() {
            *n += u64::from(candidate.matched & (1 << c) != 0);
        }
    }
    let mut ranked = Vec::new();
    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.matched != all {
            continue;
        }
        // Counted: analysed in a completed upload (its summaries segment
        // has it) and not counted under another holder.
        let (Some(&uploaded), Some(summary)) = (
            completed.get(&candidate.upload),
            summaries.get(&candidate.upload),
        ) else {
            continue;
        };
        let (seg, first) = candidate.first;
        let id = views[seg].doc(first).map_err(bad)?.id;
        let Some(found) = summary.find(id).map_err(bad)? else {
            continue;
        };
        if !shadowed.is_empty() && shadowed.contains(&(candidate.upload, id.to_string())) {
            continue;
        }
        let day = stats::day_of_start(found.started_ms, uploaded);
        if day < from
            || day > to
            || !filter.wants_parts([found.topic, found.agent, found.language], &found.counted)
        {
            continue;
        }
        let score = (0..clauses)
            .map(|c| {
                text_search::bm25(
                    f64::from(occurrences[i * clauses + c]),
                    df[c],
                    docs,
                    candidate.length as f64,
                    avg_len,
                )
            })
            .sum::<f64>();
        ranked.push((score, (day, candidate.upload, id.to_string())));
    }
    Ok(ranked)
}

/// How much of the index there is (for the bench and checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSize {
    pub segments: u64,
    /// Posting lists too long to be inline (a key each).
    pub postings: u64,
    /// Bytes of every key and value of the index's tables.
    pub bytes: u64,
}

impl Store {
    pub fn search_index_size(&self) -> Result<IndexSize> {
        self.read(|t| {
            let mut bytes = 0u64;
            for entry in t.search_segments.iter()? {
                bytes += 24 + entry?.1.value().len() as u64;
            }
            for entry in t.search_postings.iter()? {
                bytes += 32 + entry?.1.value().len() as u64;
            }
            Ok(IndexSize {
                segments: t.search_segments.len()?,
                postings: t.search_postings.len()?,
                bytes,
            })
        })
    }
}
