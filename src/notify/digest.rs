//! The digest (`notify.digest`): when one is due, which days it covers, and
//! what it says. Plain code; the alerts' actor sends it.
//!
//! A daily digest is due each day at `digest_hour` (UTC) and covers the
//! day before; a weekly one on `digest_weekday` at that hour, covering the
//! seven days before. The store remembers the last period sent, so each
//! period goes once, and one that fell due while the server was down goes
//! when it starts.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Utc};
use uuid::Uuid;

use super::event::{DigestEvent, DigestPeriod, PreviousPeriod, conversations_link};
use crate::alerts::Alert;
use crate::config::{DigestSchedule, NotifySettings};
use crate::store::stats::Insights;

/// Topics and agents a digest names.
const TOP: usize = 5;
/// Open alerts a digest lists.
const ALERTS: usize = 10;

/// The latest time at or before `now` a digest was due; `None` when off.
pub fn last_due(s: &NotifySettings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let today = now
        .date_naive()
        .and_hms_opt(u32::from(s.digest_hour), 0, 0)?
        .and_utc();
    let mut due = if today <= now {
        today
    } else {
        today - TimeDelta::days(1)
    };
    match s.digest {
        DigestSchedule::Off => None,
        DigestSchedule::Daily => Some(due),
        DigestSchedule::Weekly => {
            let want = s.digest_weekday.to_chrono();
            while due.weekday() != want {
                due -= TimeDelta::days(1);
            }
            Some(due)
        }
    }
}

/// The first time after `now` a digest is due; `None` when off.
pub fn next_due(s: &NotifySettings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let step = match s.digest {
        DigestSchedule::Off => return None,
        DigestSchedule::Daily => TimeDelta::days(1),
        DigestSchedule::Weekly => TimeDelta::days(7),
    };
    let last = last_due(s, now)?;
    Some(if last > now { last } else { last + step })
}

/// The days (first, last; both included) a digest due at `due` covers.
pub fn period(schedule: DigestSchedule, due: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = due.date_naive() - Days::new(1);
    let days = if schedule == DigestSchedule::Weekly {
        7
    } else {
        1
    };
    (last - Days::new(days - 1), last)
}

/// The digest of a period from its insights, the period before's, and the
/// alerts still open (newest first).
pub fn build(
    s: &NotifySettings,
    (from, to): (NaiveDate, NaiveDate),
    now: &Insights,
    before: &Insights,
    open: &[Alert],
) -> DigestEvent {
    let date = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    DigestEvent {
        event: "insight.digest",
        event_id: Uuid::new_v4(),
        period: DigestPeriod {
            schedule: if s.digest == DigestSchedule::Weekly {
                "weekly"
            } else {
                "daily"
            },
            from: date(from),
            to: date(to),
        },
        conversations: now.conversations,
        sentiment: now.sentiment,
        average_satisfaction: now.average_satisfaction,
        previous: PreviousPeriod {
            conversations: before.conversations,
            average_satisfaction: before.average_satisfaction,
        },
        top_topics: now.topics.iter().take(TOP).cloned().collect(),
        top_agents: now.agents.iter().take(TOP).cloned().collect(),
        open_alerts: open.len() as u64,
        alerts: open.iter().take(ALERTS).cloned().collect(),
        url: s
            .dashboard_url
            .as_deref()
            .map(|base| conversations_link(base, &[("from", date(from)), ("to", date(to))])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Weekday;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn settings(digest: DigestSchedule) -> NotifySettings {
        NotifySettings {
            digest,
            digest_hour: 8,
            digest_weekday: Weekday::Monday,
            ..NotifySettings::default()
        }
    }

    #[test]
    fn a_daily_digest_is_due_each_day_at_its_hour_about_the_day_before() {
        let s = settings(DigestSchedule::Daily);
        // Wednesday 2026-03-18.
        assert_eq!(
            last_due(&s, at("2026-03-18T07:59:00Z")),
            Some(at("2026-03-17T08:00:00Z"))
        );
        assert_eq!(
            last_due(&s, at("2026-03-18T08:00:00Z")),
            Some(at("2026-03-18T08:00:00Z"))
        );
        assert_eq!(
            next_due(&s, at("2026-03-18T08:00:00Z")),
            Some(at("2026-03-19T08:00:00Z"))
        );
        assert_eq!(
            next_due(&s, at("2026-03-18T07:00:00Z")),
            Some(at("2026-03-18T08:00:00Z"))
        );
        let (from, to) = period(s.digest, at("2026-03-18T08:00:00Z"));
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2026-03-17".into(), "2026-03-17".into())
        );
        assert_eq!(
            last_due(&settings(DigestSchedule::Off), at("2026-03-18T09:00:00Z")),
            None
        );
    }

    #[test]
    fn a_weekly_digest_is_due_on_its_weekday_about_the_week_before() {
        let s = settings(DigestSchedule::Weekly);
        // Wednesday: the Monday before; next Monday next.
        assert_eq!(
            last_due(&s, at("2026-03-18T12:00:00Z")),
            Some(at("2026-03-16T08:00:00Z"))
        );
        assert_eq!(
            next_due(&s, at("2026-03-18T12:00:00Z")),
            Some(at("2026-03-23T08:00:00Z"))
        );
        // Monday before the hour: the Monday a week before.
        assert_eq!(
            last_due(&s, at("2026-03-16T07:00:00Z")),
            Some(at("2026-03-09T08:00:00Z"))
        );
        assert_eq!(
            next_due(&s, at("2026-03-16T07:00:00Z")),
            Some(at("2026-03-16T08:00:00Z"))
        );
        let (from, to) = period(s.digest, at("2026-03-16T08:00:00Z"));
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2026-03-09".into(), "2026-03-15".into())
        );
    }

    #[test]
    fn the_digest_says_the_period_its_busiest_and_its_open_alerts() {
        let mut s = settings(DigestSchedule::Daily);
        s.dashboard_url = Some("https://pp.example".into());
        let day = NaiveDate::from_ymd_opt(2026, 3, 17).unwrap();
        let now = Insights {
            days: vec![],
            topics: vec![],
            agents: vec![],
            conversations: 180,
            sentiment: Default::default(),
            average_satisfaction: Some(2.9),
        };
        let before = Insights {
            conversations: 150,
            average_satisfaction: Some(3.4),
            ..now.clone()
        };
        let d = build(&s, (day, day), &now, &before, &[]);
        assert_eq!(d.period.from, "2026-03-17");
        assert_eq!((d.conversations, d.previous.conversations), (180, 150));
        assert_eq!(d.previous.average_satisfaction, Some(3.4));
        assert_eq!(d.open_alerts, 0);
        assert_eq!(
            d.url.as_deref(),
            Some("https://pp.example/#conversations?from=2026-03-17&to=2026-03-17")
        );
    }
}
