//! Alerts in redb (`alerts-v1`): each raised once, under its id (its day,
//! subject and kind), acknowledged in place; and the daily figures the
//! rule judges, read from the insights cells. The digest's last period
//! sent lives in `meta-v1`, so a period's digest goes once across restarts.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use redb::ReadableTable;

use super::stats::DayNumber;
use super::tables::Tables;
use super::{Result, Store, codec, corrupt, decode, encode};
use crate::alerts::rule::Series;
use crate::alerts::{Alert, Detected};
use crate::config::{AlertSettings, DigestSchedule};

/// The days an alert check judges and the figures it needs for them.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertWindow {
    pub series: Series,
    /// The days judged, both included: back `lookback_days` from the newest
    /// day with conversations.
    pub from: DayNumber,
    pub to: DayNumber,
}

fn meta_key(schedule: DigestSchedule) -> &'static str {
    match schedule {
        DigestSchedule::Weekly => "digest_weekly_last",
        _ => "digest_daily_last",
    }
}

impl Store {
    /// The figures an alert check needs: the days it judges and the history
    /// before them. `None` when there are no conversations yet.
    pub fn alert_window(&self, s: &AlertSettings) -> Result<Option<AlertWindow>> {
        self.read(|t| {
            let Some(last) = t.insight_cells.last()? else {
                return Ok(None);
            };
            let to = last.0.value().0;
            let from = to.saturating_sub(i32::from(s.lookback_days) - 1);
            let history = (i32::from(s.weeks) * 7).max(i32::from(s.recent_days));
            let start = from.saturating_sub(history);
            let mut series = Series::default();
            for entry in t
                .insight_cells
                .range::<(i32, &str, &str)>((Bound::Included((start, "", "")), Bound::Unbounded))?
            {
                let (k, v) = entry?;
                let (day, topic, agent) = k.value();
                let figures = codec::decode_figures(v.value()).map_err(corrupt("insights cell"))?;
                series.add(day, topic, agent, &figures);
            }
            Ok(Some(AlertWindow { series, from, to }))
        })
    }

    /// Keeps the alerts not raised before; answers those, as stored.
    pub(crate) fn raise_alerts(
        &self,
        detected: &[Detected],
        now: DateTime<Utc>,
    ) -> Result<Vec<Alert>> {
        if detected.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|t| {
            let mut raised = Vec::new();
            for d in detected {
                let id = d.id();
                if t.alerts.get(id.as_str())?.is_some() {
                    continue;
                }
                let alert = d.raise(now);
                t.alerts
                    .insert(id.as_str(), encode("alert", &alert)?.as_slice())?;
                raised.push(alert);
            }
            Ok(raised)
        })
    }

    /// Marks an alert acknowledged (once: a second time keeps the first
    /// time). `None` when there is no such alert.
    pub(crate) fn acknowledge_alert(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Alert>> {
        self.write(|t| {
            let Some(mut alert) = stored(t, id)? else {
                return Ok(None);
            };
            if !alert.acknowledged {
                alert.acknowledged = true;
                alert.acknowledged_at = Some(now);
                t.alerts.insert(id, encode("alert", &alert)?.as_slice())?;
            }
            Ok(Some(alert))
        })
    }

    /// The alerts of days from `from` to `to` (`YYYY-MM-DD`, both included;
    /// open ends when `None`), only unacknowledged ones when `open`: newest
    /// day first, then by topic or agent and kind.
    pub fn alerts(&self, from: Option<&str>, to: Option<&str>, open: bool) -> Result<Vec<Alert>> {
        let mut alerts = self.read(|t| {
            let mut out = Vec::new();
            for entry in t.alerts.iter()? {
                let (_, v) = entry?;
                let alert: Alert = decode("alert", v.value())?;
                let date = alert.date.as_str();
                if from.is_some_and(|f| date < f)
                    || to.is_some_and(|t| date > t)
                    || (open && alert.acknowledged)
                {
                    continue;
                }
                out.push(alert);
            }
            Ok(out)
        })?;
        alerts.sort_by(|a, b| {
            b.date
                .cmp(&a.date)
                .then_with(|| a.topic.is_none().cmp(&b.topic.is_none()))
                .then_with(|| a.topic.cmp(&b.topic))
                .then_with(|| a.agent.cmp(&b.agent))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        Ok(alerts)
    }

    /// The last day of the last digest period sent on `schedule`.
    pub fn last_digest(&self, schedule: DigestSchedule) -> Result<Option<DayNumber>> {
        let txn = super::tables::begin_read(&self.db)?;
        let meta = txn.open_table(super::tables::META)?;
        Ok(meta
            .get(meta_key(schedule))?
            .and_then(|v| i32::try_from(v.value() as i64).ok()))
    }

    /// Records that the digest of the period ending on `day` was sent.
    pub(crate) fn record_digest(&self, schedule: DigestSchedule, day: DayNumber) -> Result<()> {
        self.write(|t| {
            t.meta.insert(meta_key(schedule), day as i64 as u64)?;
            Ok(())
        })
    }
}

fn stored(t: &Tables<'_>, id: &str) -> Result<Option<Alert>> {
    t.alerts
        .get(id)?
        .map(|v| decode::<Alert>("alert", v.value()))
        .transpose()
}
