//! Retention (`storage.retention_days`): which uploads have expired. Plain
//! code; `Engine::apply_retention` deletes them through the `StoreActor`
//! (`DeleteUpload`, the path an HTTP delete takes, so every table stays
//! exact) and then sweeps the processed index (`SweepProcessed`).
//!
//! The processed index is shared by reference: a conversation answered from
//! it points at the entry another upload wrote. Its rule: after a pass that
//! removed uploads, the entries no remaining conversation refers to go too
//! (an expired upload's analyses do not outlive it, and the same content
//! uploaded later is analysed again); entries a remaining upload refers to
//! stay, whichever upload wrote them.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::store::UploadRecord;

/// How often `serve` applies retention after the pass at start.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub uploads: u64,
    pub processed_entries: u64,
}

/// The uploads to remove at `now` with `days` of retention (`0`: none):
/// finished ones (completed, failed or cancelled) that finished — or, for a
/// record without that time, were created — more than `days` days ago.
/// Unfinished uploads are kept whatever their age: they will be resumed.
pub fn expired(uploads: &[UploadRecord], now: DateTime<Utc>, days: u32) -> Vec<Uuid> {
    if days == 0 {
        return Vec::new();
    }
    let cutoff = now - TimeDelta::days(i64::from(days));
    uploads
        .iter()
        .filter(|u| u.status.is_final() && u.finished_at.unwrap_or(u.created_at) < cutoff)
        .map(|u| u.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::LlmUsage;
    use crate::model::Stage;
    use crate::store::UploadCounts;

    fn record(
        status: Stage,
        created_days_ago: i64,
        finished_days_ago: Option<i64>,
    ) -> UploadRecord {
        let now = now();
        UploadRecord {
            id: Uuid::new_v4(),
            filename: "a.csv".into(),
            format: "csv".into(),
            status,
            analyzer: "lexicon".into(),
            model: "lexicon".into(),
            created_at: now - TimeDelta::days(created_days_ago),
            finished_at: finished_days_ago.map(|d| now - TimeDelta::days(d)),
            counts: UploadCounts::default(),
            llm: LlmUsage::default(),
            warnings: Vec::new(),
            warnings_total: 0,
            error: None,
            source: None,
            parsed: true,
            progress_mark: 0,
            starts_without_progress: 0,
            ingest: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn only_finished_uploads_past_the_cutoff_expire() {
        let old_done = record(Stage::Completed, 40, Some(40));
        let old_failed = record(Stage::Failed, 40, Some(31));
        let old_cancelled = record(Stage::Cancelled, 40, None);
        let recent = record(Stage::Completed, 40, Some(29));
        let old_running = record(Stage::Analyzing, 90, None);
        let old_parsing = record(Stage::Parsing, 90, None);
        let all = [
            old_done.clone(),
            old_failed.clone(),
            old_cancelled.clone(),
            recent,
            old_running,
            old_parsing,
        ];
        assert_eq!(
            expired(&all, now(), 30),
            vec![old_done.id, old_failed.id, old_cancelled.id]
        );
        // Finished long after it was created: its finish time counts.
        assert_eq!(
            expired(&all, now(), 35),
            vec![old_done.id, old_cancelled.id]
        );
    }

    #[test]
    fn zero_days_keeps_everything() {
        let all = [record(Stage::Completed, 4000, Some(4000))];
        assert!(expired(&all, now(), 0).is_empty());
        assert_eq!(expired(&all, now(), 1), vec![all[0].id]);
    }
}
