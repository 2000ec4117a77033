//! Keeping the aggregates of [`super::stats`] in their tables, inside the
//! write transaction that changes what they count:
//!
//! - an upload's [`UploadStats`] (`upload-stats-v1`) follow each outcome
//!   stored, replaced or removed;
//! - the insights cells (`insight-cells-v1`) count completed uploads: an
//!   upload's conversations are counted in the transaction that stores it as
//!   `completed`, and uncounted in the one that deletes it. A conversation
//!   held by several completed uploads (same id, same content) is counted
//!   once, from the holder with the smallest upload id; when that one goes,
//!   the next holder's contribution takes its place (`insight-holders-v1`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use redb::{ReadableTable, ReadableTableMetadata};

use super::stats::{
    Contribution, Counted, DayNumber, Figures, Insights, InsightsBuilder, InsightsQuery, RowFacts,
    UploadStats,
};
use super::tables::{ReadTables, Tables, UploadKey};
use super::{
    ConversationRecord, Result, StoreError, UploadRecord, analysis_of, codec, corrupt, record_of,
};
use crate::model::{Analysis, Stage};

/// An upload's stats as stored (default when it has none yet).
pub(super) fn load_stats(
    table: &impl ReadableTable<UploadKey, &'static [u8]>,
    k: UploadKey,
) -> Result<UploadStats> {
    match table.get(k)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
            what: "upload stats",
            message: e.to_string(),
        }),
        None => Ok(UploadStats::default()),
    }
}

pub(super) fn save_stats(t: &mut Tables<'_>, k: UploadKey, stats: &UploadStats) -> Result<()> {
    if stats.is_empty() {
        t.upload_stats.remove(k)?;
        return Ok(());
    }
    let bytes = serde_json::to_vec(stats).map_err(|e| StoreError::Encode {
        what: "upload stats",
        message: e.to_string(),
    })?;
    t.upload_stats.insert(k, bytes.as_slice())?;
    Ok(())
}

/// The analysis a stored row refers to (write-transaction view).
pub(super) fn stored_analysis(
    t: &Tables<'_>,
    k: (UploadKey, &str),
    key: Option<[u8; 32]>,
) -> Result<Option<Analysis>> {
    let found = match key {
        Some(key) => t.processed.get(&key)?,
        None => t.analyses.get(k)?,
    };
    found.map(|v| analysis_of(v.value())).transpose()
}

/// Who a conversation is across uploads: its id and what was analysed (the
/// content key covers the analyzer and the analysable text). Rows migrated
/// from schema 1 have no content key: they are their upload's alone.
fn identity(upload: UploadKey, conversation_id: &str, content_key: Option<&[u8; 32]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(conversation_id.len() as u64).to_le_bytes());
    h.update(conversation_id.as_bytes());
    match content_key {
        Some(key) => {
            h.update(&[0]);
            h.update(key);
        }
        None => {
            h.update(&[1]);
            h.update(&upload.to_le_bytes());
        }
    }
    *h.finalize().as_bytes()
}

/// One analysed conversation of a completed upload, as the insights count
/// it: who it is across uploads, its id and language (for the drill-down's
/// rows) and its contribution to the cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CompletedRow {
    pub identity: [u8; 32],
    pub conversation_id: String,
    pub language: String,
    pub contribution: Contribution,
}

impl CompletedRow {
    fn facts(&self) -> RowFacts {
        facts_of(&self.contribution, &self.language)
    }
}

pub(super) fn facts_of(c: &Contribution, language: &str) -> RowFacts {
    RowFacts {
        topic: c.topic.clone(),
        agent: c.agent.clone(),
        language: language.to_string(),
        counted: c.counted,
    }
}

/// Changes to `insight-rows-v1`, written at the end of a transaction in key
/// order (a completed upload's rows come in identity order, which is random
/// in days: sorted, the B-tree is walked leaf after leaf).
#[derive(Default)]
struct RowChanges {
    removed: Vec<(DayNumber, UploadKey, String)>,
    added: Vec<((DayNumber, UploadKey, String), RowFacts)>,
    /// Conversations of a completed upload counted under another holder
    /// (`insight-shadowed-v1`), and those no longer so.
    shadowed: Vec<(UploadKey, String)>,
    unshadowed: Vec<(UploadKey, String)>,
}

impl RowChanges {
    fn remove(&mut self, day: DayNumber, upload: UploadKey, conversation_id: &str) {
        self.removed
            .push((day, upload, conversation_id.to_string()));
    }

    fn add(&mut self, day: DayNumber, upload: UploadKey, conversation_id: &str, facts: RowFacts) {
        self.added
            .push(((day, upload, conversation_id.to_string()), facts));
    }

    fn shadow(&mut self, upload: UploadKey, conversation_id: &str) {
        self.shadowed.push((upload, conversation_id.to_string()));
    }

    fn unshadow(&mut self, upload: UploadKey, conversation_id: &str) {
        self.unshadowed.push((upload, conversation_id.to_string()));
    }

    fn apply(mut self, t: &mut Tables<'_>) -> Result<()> {
        self.unshadowed.sort_unstable();
        for (upload, id) in &self.unshadowed {
            t.insight_shadowed.remove((*upload, id.as_str()))?;
        }
        self.shadowed.sort_unstable();
        for (upload, id) in &self.shadowed {
            t.insight_shadowed.insert((*upload, id.as_str()), ())?;
        }
        self.removed.sort_unstable();
        for (day, upload, id) in &self.removed {
            t.insight_rows.remove((*day, *upload, id.as_str()))?;
        }
        self.added.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((day, upload, id), facts) in &self.added {
            t.insight_rows.insert(
                (*day, *upload, id.as_str()),
                codec::encode_row_facts(facts).as_slice(),
            )?;
        }
        Ok(())
    }
}

/// Changes to insights cells, applied at the end of a transaction: by
/// (day, topic, agent), borrowing the names from contributions that outlive
/// it (a completed upload's rows: no two names copied per row).
#[derive(Default)]
struct CellChanges<'a>(BTreeMap<Cell<'a>, (Figures, Figures)>);

/// An insights cell: (day, topic, agent).
type Cell<'a> = (DayNumber, Cow<'a, str>, Cow<'a, str>);

impl<'a> CellChanges<'a> {
    fn count(&mut self, c: &'a Contribution, sign: i8) {
        let cell = (
            c.day,
            Cow::Borrowed(c.topic.as_str()),
            Cow::Borrowed(c.agent.as_str()),
        );
        self.add(cell, &c.counted, sign);
    }

    fn count_owned(&mut self, c: Contribution, sign: i8) {
        self.add(
            (c.day, Cow::Owned(c.topic), Cow::Owned(c.agent)),
            &c.counted,
            sign,
        );
    }

    fn add(&mut self, cell: Cell<'a>, counted: &Counted, sign: i8) {
        let (plus, minus) = self.0.entry(cell).or_default();
        if sign > 0 {
            plus.apply(counted, 1);
        } else {
            minus.apply(counted, 1);
        }
    }

    fn apply(self, t: &mut Tables<'_>) -> Result<()> {
        for ((day, topic, agent), (plus, minus)) in self.0 {
            let k = (day, topic.as_ref(), agent.as_ref());
            let mut figures = match t.insight_cells.get(k)? {
                Some(v) => codec::decode_figures(v.value()).map_err(corrupt("insights cell"))?,
                None => Figures::default(),
            };
            figures.merge(&plus, 1);
            figures.merge(&minus, -1);
            if figures.is_empty() {
                t.insight_cells.remove(k)?;
            } else {
                t.insight_cells
                    .insert(k, codec::encode_figures(&figures).as_slice())?;
            }
        }
        Ok(())
    }
}

/// The holder counted for `identity`: (upload, its contribution).
fn counted_holder(
    t: &Tables<'_>,
    identity: &[u8; 32],
) -> Result<Option<(UploadKey, Contribution)>> {
    let mut range = t
        .insight_holders
        .range((identity, 0u128)..=(identity, u128::MAX))?;
    match range.next() {
        Some(entry) => {
            let (k, v) = entry?;
            let contribution =
                codec::decode_contribution(v.value()).map_err(corrupt("insights holder"))?;
            Ok(Some((k.value().1, contribution)))
        }
        None => Ok(None),
    }
}

/// The holder counted for each of `ids` (sorted, each once). Few holders
/// against many ids (a first upload, a large one): one walk over the
/// holders between the first and last identity, merged with the ids. Many:
/// a lookup per id.
fn counted_holders(
    t: &Tables<'_>,
    ids: &[[u8; 32]],
) -> Result<Vec<Option<(UploadKey, Contribution)>>> {
    let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
        return Ok(Vec::new());
    };
    if t.insight_holders.len()? > 8 * ids.len() as u64 {
        return ids.iter().map(|id| counted_holder(t, id)).collect();
    }
    let mut found = vec![None; ids.len()];
    let mut at = 0;
    for entry in t
        .insight_holders
        .range((first, 0u128)..=(last, u128::MAX))?
    {
        let (k, v) = entry?;
        let (id, upload) = k.value();
        while at < ids.len() && ids[at] < *id {
            at += 1;
        }
        if at == ids.len() {
            break;
        }
        // The first holder of an identity is the one with the smallest upload id.
        if ids[at] == *id && found[at].is_none() {
            let contribution =
                codec::decode_contribution(v.value()).map_err(corrupt("insights holder"))?;
            found[at] = Some((upload, contribution));
        }
    }
    Ok(found)
}

/// Counts a completed upload's conversations in the insights (the cells
/// and the drill-down's rows). `gathered`: its rows when [`Completions`]
/// has them, else they are read back here.
pub(super) fn count_completed(
    t: &mut Tables<'_>,
    upload: &UploadRecord,
    gathered: Option<Vec<CompletedRow>>,
) -> Result<()> {
    let k = upload.id.as_u128();
    let rows = match gathered {
        Some(rows) => {
            #[cfg(debug_assertions)]
            {
                let mut read = read_contributions(t, upload)?;
                let mut gathered = rows.clone();
                read.sort_unstable_by_key(|a| a.identity);
                gathered.sort_unstable_by_key(|a| a.identity);
                debug_assert!(
                    read == gathered,
                    "gathered contributions differ from the rows"
                );
            }
            rows
        }
        None => read_contributions(t, upload)?,
    };
    // The holders are keyed by hashes: inserted in key order, their B-tree
    // is walked leaf after leaf instead of at random.
    let order = identity_order(&rows);
    let ids: Vec<[u8; 32]> = order.iter().map(|&i| rows[i].identity).collect();
    let holders = counted_holders(t, &ids)?;
    let mut changes = CellChanges::default();
    let mut listed = RowChanges::default();
    for (&i, counted) in order.iter().zip(&holders) {
        let row = &rows[i];
        let contribution = &row.contribution;
        let bytes = codec::encode_contribution(contribution);
        if t.insight_holders
            .insert((&row.identity, k), bytes.as_slice())?
            .is_some()
        {
            // Already held (counted before): nothing changes.
            continue;
        }
        match counted {
            None => {
                changes.count(contribution, 1);
                listed.add(contribution.day, k, &row.conversation_id, row.facts());
            }
            Some((first, previous)) if k < *first => {
                changes.count(previous, -1);
                changes.count(contribution, 1);
                listed.remove(previous.day, *first, &row.conversation_id);
                listed.add(contribution.day, k, &row.conversation_id, row.facts());
                listed.shadow(*first, &row.conversation_id);
            }
            Some(_) => listed.shadow(k, &row.conversation_id),
        }
    }
    changes.apply(t)?;
    listed.apply(t)?;
    super::search::queue_summaries(t, k)
}

/// The indices of `rows` in identity order. Identities are hashes: sorted
/// by their first eight bytes as integers, then by the whole identity where
/// those are equal (a fifth of counting an upload went into comparing and
/// moving whole rows).
fn identity_order(rows: &[CompletedRow]) -> Vec<usize> {
    let prefix = |id: &[u8; 32]| u64::from_be_bytes(id[..8].try_into().unwrap_or_default());
    let mut keyed: Vec<(u64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (prefix(&row.identity), i))
        .collect();
    keyed.sort_unstable();
    for tied in keyed.chunk_by_mut(|a, b| a.0 == b.0) {
        if tied.len() > 1 {
            tied.sort_unstable_by(|a, b| rows[a.1].identity.cmp(&rows[b.1].identity));
        }
    }
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Every analysed row of an upload as the insights count it, read back.
fn read_contributions(t: &Tables<'_>, upload: &UploadRecord) -> Result<Vec<CompletedRow>> {
    let k = upload.id.as_u128();
    let mut rows = Vec::new();
    for entry in t.conversations.range((k, "")..(k.wrapping_add(1), ""))? {
        let (kg, v) = entry?;
        let (_, conversation_id) = kg.value();
        let (record, content_key) = record_of(v.value())?;
        let Some(analysis) = stored_analysis(t, (k, conversation_id), content_key)? else {
            continue;
        };
        rows.push(CompletedRow {
            identity: identity(k, conversation_id, content_key.as_ref()),
            conversation_id: conversation_id.to_string(),
            language: record.language.clone().unwrap_or_default(),
            contribution: Contribution::of(&record, &analysis, upload.created_at),
        });
    }
    Ok(rows)
}

/// Builds `insight-rows-v1` (`rows`) and `insight-shadowed-v1`
/// (`shadowed`) from the holders, for a file written before the tables
/// existed: each completed upload's analysed rows, listed where that upload
/// is the holder counted, shadowed where it is not.
pub(super) fn build_rows(t: &mut Tables<'_>, rows: bool, shadowed: bool) -> Result<u64> {
    let mut completed = Vec::new();
    for entry in t.uploads.iter()? {
        let (_, v) = entry?;
        let upload = super::decode::<UploadRecord>("upload", v.value())?;
        if upload.status == Stage::Completed {
            completed.push(upload);
        }
    }
    let mut listed = RowChanges::default();
    for upload in &completed {
        let k = upload.id.as_u128();
        for row in read_contributions(t, upload)? {
            match counted_holder(t, &row.identity)? {
                Some((first, _)) if first == k && rows => {
                    listed.add(row.contribution.day, k, &row.conversation_id, row.facts());
                }
                Some((first, _)) if first != k && shadowed => {
                    listed.shadow(k, &row.conversation_id);
                }
                _ => {}
            }
        }
    }
    let n = (listed.added.len() + listed.shadowed.len()) as u64;
    listed.apply(t)?;
    Ok(n)
}

/// Whether an upload has any conversation row.
pub(super) fn has_rows(t: &Tables<'_>, k: UploadKey) -> Result<bool> {
    Ok(t.conversations
        .range((k, "")..(k.wrapping_add(1), ""))?
        .next()
        .is_some())
}

/// Rows gathered for [`count_completed`] across all uploads, at most this
/// many (an upload past it is read back at completion instead).
const MAX_GATHERED_ROWS: usize = 100_000;

/// What completing an upload will count, gathered while its outcomes are
/// stored, so that the transaction completing it (the one a user waits on
/// at the end of every upload) does not read every row back. Memory only,
/// and only for uploads this process saw from their first row: a restart,
/// a replaced outcome, a cleared or deleted upload, or too many rows, and
/// the rows are read back as before (in debug builds both ways, compared).
#[derive(Default)]
pub(super) struct Completions {
    uploads: HashMap<UploadKey, Gathered>,
    rows: usize,
}

struct Gathered {
    created_at: chrono::DateTime<chrono::Utc>,
    rows: Vec<CompletedRow>,
}

impl Completions {
    pub(super) fn forget(&mut self, k: UploadKey) {
        if let Some(gone) = self.uploads.remove(&k) {
            self.rows -= gone.rows.len();
        }
    }
}

/// Changes to [`Completions`] made by one write transaction, applied once
/// it has committed.
#[derive(Default)]
pub(super) struct Staged {
    ops: Vec<Op>,
    /// Uploads whose rows this transaction changed.
    touched: std::collections::HashSet<UploadKey>,
}

enum Op {
    Start(UploadKey, chrono::DateTime<chrono::Utc>),
    Row(UploadKey, CompletedRow),
    Forget(UploadKey),
}

impl Staged {
    /// A new upload with no rows yet: its rows are gathered from now on.
    pub(super) fn start(&mut self, k: UploadKey, created_at: chrono::DateTime<chrono::Utc>) {
        self.ops.push(Op::Start(k, created_at));
    }

    /// A row stored with its analysis (a new row: a replaced one forgets).
    pub(super) fn row(
        &mut self,
        completions: &Completions,
        (k, conversation_id): (UploadKey, &str),
        content_key: Option<&[u8; 32]>,
        record: &ConversationRecord,
        analysis: &Analysis,
    ) {
        self.touched.insert(k);
        if let Some(gathered) = completions.uploads.get(&k) {
            self.ops.push(Op::Row(
                k,
                CompletedRow {
                    identity: identity(k, conversation_id, content_key),
                    conversation_id: conversation_id.to_string(),
                    language: record.language.clone().unwrap_or_default(),
                    contribution: Contribution::of(record, analysis, gathered.created_at),
                },
            ));
        }
    }

    pub(super) fn forget(&mut self, k: UploadKey) {
        self.touched.insert(k);
        self.ops.push(Op::Forget(k));
    }

    /// What [`count_completed`] may use for `k`: the gathered rows, unless
    /// this transaction changed them too. Either way `k` is done with (rows
    /// staged for it find nothing to join when applied).
    pub(super) fn take_for_completion(
        &mut self,
        completions: &mut Completions,
        k: UploadKey,
    ) -> Option<Vec<CompletedRow>> {
        let gathered = completions.uploads.remove(&k)?;
        completions.rows -= gathered.rows.len();
        (!self.touched.contains(&k)).then_some(gathered.rows)
    }

    /// Applies the changes of a committed transaction.
    pub(super) fn apply(self, completions: &mut Completions) {
        for op in self.ops {
            match op {
                Op::Start(k, created_at) => {
                    completions.forget(k);
                    completions.uploads.insert(
                        k,
                        Gathered {
                            created_at,
                            rows: Vec::new(),
                        },
                    );
                }
                Op::Row(k, row) => {
                    if completions.rows >= MAX_GATHERED_ROWS {
                        completions.forget(k);
                    } else if let Some(gathered) = completions.uploads.get_mut(&k) {
                        gathered.rows.push(row);
                        completions.rows += 1;
                    }
                }
                Op::Forget(k) => completions.forget(k),
            }
        }
    }
}

/// Uncounts an upload's conversations from the insights (before its rows
/// go): the cells and the drill-down's rows, each conversation handed to
/// its next holder when there is one.
pub(super) fn uncount(t: &mut Tables<'_>, k: UploadKey) -> Result<()> {
    if t.insight_holders.is_empty()? {
        return Ok(());
    }
    let mut held: Vec<([u8; 32], String)> = Vec::new();
    for entry in t.conversations.range((k, "")..(k.wrapping_add(1), ""))? {
        let (kg, v) = entry?;
        let (_, conversation_id) = kg.value();
        let (record, content_key) = record_of(v.value())?;
        if record.status != crate::model::ConversationStatus::Failed {
            held.push((
                identity(k, conversation_id, content_key.as_ref()),
                conversation_id.to_string(),
            ));
        }
    }
    let mut changes = CellChanges::default();
    let mut listed = RowChanges::default();
    for (id, conversation_id) in held {
        let counted = counted_holder(t, &id)?;
        let removed = match t.insight_holders.remove((&id, k))? {
            Some(v) => codec::decode_contribution(v.value()).map_err(corrupt("insights holder"))?,
            None => continue,
        };
        if counted.is_some_and(|(first, _)| first != k) {
            listed.unshadow(k, &conversation_id);
        } else {
            listed.remove(removed.day, k, &conversation_id);
            changes.count_owned(removed, -1);
            if let Some((next_upload, next)) = counted_holder(t, &id)? {
                listed.unshadow(next_upload, &conversation_id);
                // Its language is its record's (the holders keep the cell only).
                let language = match t
                    .conversations
                    .get((next_upload, conversation_id.as_str()))?
                {
                    Some(v) => record_of(v.value())?.0.language.unwrap_or_default(),
                    None => String::new(),
                };
                listed.add(
                    next.day,
                    next_upload,
                    &conversation_id,
                    facts_of(&next, &language),
                );
                changes.count_owned(next, 1);
            }
        }
    }
    changes.apply(t)?;
    listed.apply(t)
}

/// Counts a change of an upload's record: counted in the insights when it
/// becomes `completed`, uncounted when it stops being so.
pub(super) fn on_upload_stored(
    t: &mut Tables<'_>,
    before: Option<Stage>,
    now: &UploadRecord,
    gathered: Option<Vec<CompletedRow>>,
) -> Result<()> {
    let was = before == Some(Stage::Completed);
    let is = now.status == Stage::Completed;
    match (was, is) {
        (false, true) => count_completed(t, now, gathered),
        (true, false) => {
            uncount(t, now.id.as_u128())?;
            super::search::remove_summaries(t, now.id.as_u128())
        }
        _ => Ok(()),
    }
}

/// Rebuilds an upload's stats from its rows (the schema 2 → 3 migration).
pub(super) fn rebuild_stats(t: &mut Tables<'_>, k: UploadKey) -> Result<()> {
    let mut stats = UploadStats::default();
    for entry in t.conversations.range((k, "")..(k.wrapping_add(1), ""))? {
        let (kg, v) = entry?;
        let (_, conversation_id) = kg.value();
        let (record, content_key): (ConversationRecord, _) = record_of(v.value())?;
        let analysis = stored_analysis(t, (k, conversation_id), content_key)?;
        stats.apply(&record, analysis.as_ref(), 1);
    }
    save_stats(t, k, &stats)
}

/// Sums the insights cells a query asks for.
pub(super) fn insights(t: &ReadTables, query: &InsightsQuery) -> Result<Insights> {
    let (from, to) = query.days();
    let mut builder = InsightsBuilder::default();
    if from > to {
        return Ok(builder.finish());
    }
    let end = match to.checked_add(1) {
        Some(next) => Bound::Excluded((next, "", "")),
        None => Bound::Unbounded,
    };
    for entry in t
        .insight_cells
        .range::<(i32, &str, &str)>((Bound::Included((from, "", "")), end))?
    {
        let (kg, v) = entry?;
        let (day, topic, agent) = kg.value();
        if !query.wants(topic, agent) {
            continue;
        }
        let figures = codec::decode_figures(v.value()).map_err(corrupt("insights cell"))?;
        builder.add(day, topic, agent, &figures);
    }
    Ok(builder.finish())
}

/// Stats touched by one transaction, written back at its end.
#[derive(Default)]
pub(super) struct StatsBatch(HashMap<UploadKey, UploadStats>);

impl StatsBatch {
    pub(super) fn get(&mut self, t: &Tables<'_>, k: UploadKey) -> Result<&mut UploadStats> {
        Ok(match self.0.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(load_stats(&t.upload_stats, k)?)
            }
        })
    }

    pub(super) fn save(self, t: &mut Tables<'_>) -> Result<()> {
        for (k, stats) in self.0 {
            save_stats(t, k, &stats)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SentimentLabel;

    #[test]
    fn identity_order_is_the_order_of_whole_identities() {
        let contribution = Contribution {
            day: 0,
            topic: String::new(),
            agent: String::new(),
            counted: Counted {
                label: SentimentLabel::Neutral,
                satisfaction: 3,
                resolved: None,
                score_units: 0,
            },
        };
        // Pseudo-random identities, and a few that share their first eight
        // bytes and differ after them (the tie-break).
        let mut ids: Vec<[u8; 32]> = (0u64..500)
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect();
        for tail in [9u8, 3, 7, 0, 255] {
            let mut id = [0x42; 32];
            id[31] = tail;
            ids.push(id);
        }
        let rows: Vec<CompletedRow> = ids
            .iter()
            .map(|id| CompletedRow {
                identity: *id,
                conversation_id: String::new(),
                language: String::new(),
                contribution: contribution.clone(),
            })
            .collect();
        let got: Vec<[u8; 32]> = identity_order(&rows)
            .iter()
            .map(|&i| rows[i].identity)
            .collect();
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
