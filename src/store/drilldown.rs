//! The drill-down: the conversations behind each number of the insights,
//! across uploads. `insight-rows-v1` holds every conversation the insights
//! count, once, keyed by (day, counted upload, conversation id), so a day,
//! a topic or agent row, or a chart bar lists exactly the conversations it
//! counts. Listed newest day first, then by upload and conversation id.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::stats::{self, DayNumber, DrillCursor, DrillFilter, RowFacts};
use super::tables::{ReadTables, UploadKey};
use super::{ConversationRow, Result, Store, StoreError, aggregates, analysis_for, codec};
use super::{corrupt, record_of};

/// One conversation a drill-down lists: its result, the day the insights
/// count it on and, for a search, what matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FoundConversation {
    #[serde(flatten)]
    pub row: ConversationRow,
    /// The day the insights count it on (UTC, `YYYY-MM-DD`): its first
    /// message's, else its upload's.
    pub date: String,
    /// With `q`: the message (or the summary) that matches best.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<crate::search::Snippet>,
}

/// One page of a drill-down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillPage {
    pub items: Vec<FoundConversation>,
    /// Every conversation matching, on all pages: the number the insights
    /// show for the same filters.
    pub total: u64,
    /// The `cursor` of the next page; `null` on the last one.
    pub next: Option<String>,
}

/// A listed row's key: (day, counted upload, conversation id).
pub(super) type RowKey = (DayNumber, UploadKey, String);

fn facts_of(bytes: &[u8]) -> Result<RowFacts> {
    codec::decode_row_facts(bytes).map_err(corrupt("insights row"))
}

/// The end (excluded) of day `day`'s rows, `Unbounded` for the last day.
fn day_end(day: DayNumber) -> Bound<(DayNumber, UploadKey, &'static str)> {
    match day.checked_add(1) {
        Some(next) => Bound::Excluded((next, 0, "")),
        None => Bound::Unbounded,
    }
}

/// Visits the rows within the filter's days, newest day first (each day in
/// key order), from just after `cursor`, until `visit` answers `false`.
pub(super) fn walk_newest_first(
    t: &ReadTables,
    filter: &DrillFilter,
    cursor: Option<&DrillCursor>,
    mut visit: impl FnMut(RowKey, &RowFacts) -> bool,
) -> Result<()> {
    let (from, to) = filter.days();
    if from > to {
        return Ok(());
    }
    let mut day = cursor.map_or(to, |c| c.day.min(to));
    loop {
        // The newest day at or before `day` that has rows.
        let Some(last) = t
            .insight_rows
            .range::<(DayNumber, UploadKey, &str)>((Bound::Unbounded, day_end(day)))?
            .next_back()
        else {
            return Ok(());
        };
        let d = last?.0.value().0;
        if d < from {
            return Ok(());
        }
        let start = match cursor {
            Some(c) if c.day == d => Bound::Excluded((d, c.upload, c.conversation_id.as_str())),
            _ => Bound::Included((d, 0, "")),
        };
        for entry in t.insight_rows.range((start, day_end(d)))? {
            let (k, v) = entry?;
            let (d, upload, id) = k.value();
            let facts = facts_of(v.value())?;
            if filter.wants(&facts) && !visit((d, upload, id.to_string()), &facts) {
                return Ok(());
            }
        }
        match d.checked_sub(1) {
            Some(before) if before >= from => day = before,
            _ => return Ok(()),
        }
    }
}

/// The listed conversations matching `filter`, counted: from the cells when
/// the filter is one the insights answer (the same number by construction,
/// checked by `store::tests`), else by reading the rows.
fn total(t: &ReadTables, filter: &DrillFilter) -> Result<u64> {
    if let Some(query) = filter.as_insights() {
        return Ok(aggregates::insights(t, &query)?.conversations);
    }
    let (from, to) = filter.days();
    if from > to {
        return Ok(0);
    }
    let mut n = 0;
    for entry in t
        .insight_rows
        .range::<(DayNumber, UploadKey, &str)>((Bound::Included((from, 0, "")), day_end(to)))?
    {
        let (_, v) = entry?;
        if filter.wants(&facts_of(v.value())?) {
            n += 1;
        }
    }
    Ok(n)
}

/// The result of a listed row, as the per-upload listing gives it.
pub(super) fn found(t: &ReadTables, (day, upload, id): &RowKey) -> Result<FoundConversation> {
    let k = (*upload, id.as_str());
    let (record, analysis_key) = match t.conversations.get(k)? {
        Some(v) => record_of(v.value())?,
        None => {
            return Err(StoreError::Corrupt {
                what: "insights row",
                message: format!("no outcome for conversation {id:?}"),
            });
        }
    };
    let analysis = analysis_for(t, k, analysis_key)?;
    Ok(FoundConversation {
        row: ConversationRow {
            upload_id: Uuid::from_u128(*upload),
            conversation_id: id.clone(),
            record,
            analysis,
        },
        date: stats::date_of(*day)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        matched: None,
    })
}

impl Store {
    /// One page of the conversations the insights count under `filter`,
    /// newest day first, after `cursor`; `total` counts them all.
    pub fn drill_down(
        &self,
        filter: &DrillFilter,
        cursor: Option<&DrillCursor>,
        limit: usize,
    ) -> Result<DrillPage> {
        let limit = limit.max(1);
        self.read(|t| {
            let mut keys: Vec<RowKey> = Vec::with_capacity(limit);
            let mut more = false;
            walk_newest_first(t, filter, cursor, |key, _| {
                if keys.len() == limit {
                    more = true;
                    return false;
                }
                keys.push(key);
                true
            })?;
            let next = match keys.last() {
                Some((day, upload, id)) if more => Some(
                    DrillCursor {
                        score: None,
                        day: *day,
                        upload: *upload,
                        conversation_id: id.clone(),
                    }
                    .to_string(),
                ),
                _ => None,
            };
            let items = keys
                .iter()
                .map(|key| found(t, key))
                .collect::<Result<Vec<_>>>()?;
            Ok(DrillPage {
                items,
                total: total(t, filter)?,
                next,
            })
        })
    }
}
