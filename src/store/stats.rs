//! The aggregates the store keeps beside the outcomes they count, so a
//! summary or an insights query reads a handful of values instead of every
//! analysis (see ARCHITECTURE.md, "Aggregates").
//!
//! Plain code, no redb: [`Figures`] are the counts over a set of analysed
//! conversations, kept exact under adding and taking away (sentiment scores
//! are summed in millionths, as integers, so taking one away leaves no
//! rounding behind); [`UploadStats`] is one upload's (`upload-stats-v1`);
//! [`Contribution`] is one conversation's share of the insights cells
//! (`insight-cells-v1`); [`InsightsBuilder`] turns cells into the answer of
//! `GET /api/insights`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::analyze::FailureKind;
use crate::model::{Analysis, ConversationStatus, SentimentLabel};

use super::{ConversationRecord, SentimentCounts};

/// Sentiment scores are summed in units of this (exact integer sums).
const SCORE_UNITS: f64 = 1_000_000.0;

/// Counts over a set of analysed conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub conversations: u64,
    pub positive: u64,
    pub neutral: u64,
    pub negative: u64,
    /// Sum of satisfaction scores (1–5).
    pub satisfaction_sum: u64,
    /// Conversations judged resolved, and those where it could be told.
    pub resolved: u64,
    pub resolvable: u64,
    /// Sum of sentiment scores in millionths.
    pub score_units: i64,
}

/// One analysed conversation as the figures count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub label: SentimentLabel,
    pub satisfaction: u8,
    pub resolved: Option<bool>,
    pub score_units: i64,
}

impl Counted {
    pub fn of(a: &Analysis) -> Self {
        Self {
            label: a.sentiment.label,
            satisfaction: a.satisfaction.score.clamp(1, 5),
            resolved: a.resolved,
            score_units: (a.sentiment.score.clamp(-1.0, 1.0) * SCORE_UNITS).round() as i64,
        }
    }
}

impl Figures {
    /// Adds (`sign` 1) or takes away (`sign` -1) one conversation.
    pub fn apply(&mut self, c: &Counted, sign: i8) {
        let step = |v: &mut u64, by: u64| {
            *v = if sign > 0 {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        step(&mut self.conversations, 1);
        match c.label {
            SentimentLabel::Positive => step(&mut self.positive, 1),
            SentimentLabel::Neutral => step(&mut self.neutral, 1),
            SentimentLabel::Negative => step(&mut self.negative, 1),
        }
        step(&mut self.satisfaction_sum, u64::from(c.satisfaction));
        if let Some(r) = c.resolved {
            step(&mut self.resolvable, 1);
            step(&mut self.resolved, u64::from(r));
        }
        self.score_units = self
            .score_units
            .saturating_add(i64::from(sign) * c.score_units);
    }

    /// Adds every count of `other` (or takes them away).
    pub fn merge(&mut self, other: &Figures, sign: i8) {
        let step = |v: &mut u64, by: u64| {
            *v = if sign > 0 {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        step(&mut self.conversations, other.conversations);
        step(&mut self.positive, other.positive);
        step(&mut self.neutral, other.neutral);
        step(&mut self.negative, other.negative);
        step(&mut self.satisfaction_sum, other.satisfaction_sum);
        step(&mut self.resolved, other.resolved);
        step(&mut self.resolvable, other.resolvable);
        self.score_units = self
            .score_units
            .saturating_add(i64::from(sign) * other.score_units);
    }

    pub fn is_empty(&self) -> bool {
        self.conversations == 0
    }

    pub fn sentiment(&self) -> SentimentCounts {
        SentimentCounts {
            positive: self.positive,
            neutral: self.neutral,
            negative: self.negative,
        }
    }

    pub fn average_satisfaction(&self) -> Option<f64> {
        (self.conversations > 0).then(|| self.satisfaction_sum as f64 / self.conversations as f64)
    }

    pub fn resolved_rate(&self) -> Option<f64> {
        (self.resolvable > 0).then(|| self.resolved as f64 / self.resolvable as f64)
    }

    pub fn average_score(&self) -> Option<f64> {
        (self.conversations > 0)
            .then(|| self.score_units as f64 / SCORE_UNITS / self.conversations as f64)
    }
}

/// Adds or takes away one conversation in a map of figures, dropping an
/// entry that counts nothing any more.
fn apply_at(map: &mut BTreeMap<String, Figures>, key: &str, c: &Counted, sign: i8) {
    // Found without allocating a key: nearly every outcome lands in a row
    // that exists.
    let entry = match map.get_mut(key) {
        Some(entry) => entry,
        None => map.entry(key.to_string()).or_default(),
    };
    entry.apply(c, sign);
    if entry.is_empty() {
        map.remove(key);
    }
}

/// One upload's aggregates (`upload-stats-v1`, JSON like the upload record):
/// what its summary reports, kept in the transaction that stores or removes
/// each outcome. Keys of the breakdowns are the agent, topic or language,
/// `""` when there is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadStats {
    pub analyzed: u64,
    pub failed: u64,
    pub skipped_already_processed: u64,
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Conversations per satisfaction score 1..=5.
    pub satisfaction_histogram: [u64; 5],
    pub all: Figures,
    /// By UTC day (`YYYY-MM-DD`) of the first message, when known.
    pub days: BTreeMap<String, Figures>,
    pub agents: BTreeMap<String, Figures>,
    pub topics: BTreeMap<String, Figures>,
    pub languages: BTreeMap<String, Figures>,
    /// By the LLM endpoint that made each outcome.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointFigures>,
}

/// What one LLM endpoint did for an upload: its outcomes and what they
/// cost. Integers only (cost in nano-dollars), so taking an outcome away
/// leaves no rounding behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFigures {
    pub analyzed: u64,
    pub failed: u64,
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_nano_usd: u64,
}

impl EndpointFigures {
    fn apply(&mut self, record: &ConversationRecord, sign: i8) {
        let u = &record.usage;
        let nano = (u.cost_usd.max(0.0) * 1e9).round() as u64;
        let analyzed = u64::from(record.status == ConversationStatus::Analyzed);
        let failed = u64::from(record.status == ConversationStatus::Failed);
        for (slot, n) in [
            (&mut self.analyzed, analyzed),
            (&mut self.failed, failed),
            (&mut self.requests, u.requests),
            (&mut self.retries, u.retries),
            (&mut self.rate_limited, u.rate_limited),
            (&mut self.prompt_tokens, u.prompt_tokens),
            (&mut self.completion_tokens, u.completion_tokens),
            (&mut self.cached_tokens, u.cached_tokens),
            (&mut self.reasoning_tokens, u.reasoning_tokens),
            (&mut self.cost_nano_usd, nano),
        ] {
            *slot = if sign > 0 {
                slot.saturating_add(n)
            } else {
                slot.saturating_sub(n)
            };
        }
    }

    /// The usage these figures add up to.
    pub fn usage(&self) -> crate::analyze::LlmUsage {
        crate::analyze::LlmUsage {
            requests: self.requests,
            retries: self.retries,
            rate_limited: self.rate_limited,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            tokens: self.prompt_tokens + self.completion_tokens,
            cached_tokens: self.cached_tokens,
            reasoning_tokens: self.reasoning_tokens,
            cost_usd: self.cost_nano_usd as f64 / 1e9,
        }
    }
}

/// One LLM endpoint's share of an upload, in its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointUsage {
    /// The endpoint's name (`[[analyzer.openai.endpoints]]`, or the host).
    pub endpoint: String,
    /// Conversations it analysed, and those whose last attempt it failed.
    pub analyzed: u64,
    pub failed: u64,
    pub llm: crate::analyze::LlmUsage,
}

/// The endpoints' rows, most conversations first.
pub fn endpoint_rows(map: &BTreeMap<String, EndpointFigures>) -> Vec<EndpointUsage> {
    let mut rows: Vec<EndpointUsage> = map
        .iter()
        .filter(|(_, f)| **f != EndpointFigures::default())
        .map(|(name, f)| EndpointUsage {
            endpoint: name.clone(),
            analyzed: f.analyzed,
            failed: f.failed,
            llm: f.usage(),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.analyzed
            .cmp(&a.analyzed)
            .then(a.endpoint.cmp(&b.endpoint))
    });
    rows
}

/// A UTC day as `YYYY-MM-DD`.
pub fn day_of_ms(ms: i64) -> Option<String> {
    // Digits alone (chrono's `format` cost more than the rest of the
    // outcome's figures together); chrono's years past 9999 otherwise.
    if let Some(date) = super::codec::date_text(ms.div_euclid(86_400_000)) {
        return String::from_utf8(date.to_vec()).ok();
    }
    DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string())
}

impl UploadStats {
    /// Counts (`sign` 1) or uncounts (`sign` -1) one stored outcome.
    pub fn apply(&mut self, record: &ConversationRecord, analysis: Option<&Analysis>, sign: i8) {
        let step = |v: &mut u64| {
            *v = if sign > 0 {
                v.saturating_add(1)
            } else {
                v.saturating_sub(1)
            }
        };
        match record.status {
            ConversationStatus::Analyzed => step(&mut self.analyzed),
            ConversationStatus::Failed => step(&mut self.failed),
            ConversationStatus::SkippedAlreadyProcessed => {
                step(&mut self.skipped_already_processed)
            }
        }
        if let Some(endpoint) = &record.endpoint {
            let figures = self.endpoints.entry(endpoint.clone()).or_default();
            figures.apply(record, sign);
            if *figures == EndpointFigures::default() {
                self.endpoints.remove(endpoint);
            }
        }
        if record.status == ConversationStatus::Failed {
            let kind = record.failure.unwrap_or(FailureKind::Other).as_str();
            let n = self.failures_by_reason.entry(kind.to_string()).or_default();
            step(n);
            if *n == 0 {
                self.failures_by_reason.remove(kind);
            }
        }
        let Some(a) = analysis else { return };
        let c = Counted::of(a);
        step(&mut self.satisfaction_histogram[usize::from(c.satisfaction - 1)]);
        self.all.apply(&c, sign);
        if let Some(day) = record.started_ms.and_then(day_of_ms) {
            apply_at(&mut self.days, &day, &c, sign);
        }
        apply_at(
            &mut self.agents,
            record.agent.as_deref().unwrap_or(""),
            &c,
            sign,
        );
        apply_at(&mut self.topics, a.topic.as_deref().unwrap_or(""), &c, sign);
        apply_at(
            &mut self.languages,
            record.language.as_deref().unwrap_or(""),
            &c,
            sign,
        );
    }

    pub fn is_empty(&self) -> bool {
        *self == UploadStats::default()
    }
}

/// A breakdown row for one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentFigures {
    /// The agent's name; `null` for conversations no named agent answered.
    pub agent: Option<String>,
    pub conversations: u64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
    pub resolved_rate: Option<f64>,
}

/// A breakdown row for one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicFigures {
    /// The topic's name; `null` for analyses stored before topics existed.
    pub topic: Option<String>,
    pub conversations: u64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
    pub resolved_rate: Option<f64>,
}

/// A breakdown row for one language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LanguageFigures {
    /// ISO 639-1; `null` where it could not be told.
    pub language: Option<String>,
    pub conversations: u64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
}

/// One day of insights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayFigures {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub conversations: u64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
    /// Mean sentiment score, -1..1.
    pub average_sentiment: Option<f64>,
}

fn named(key: &str) -> Option<String> {
    (!key.is_empty()).then(|| key.to_string())
}

/// Largest first, then by name: what a lead reads first.
fn by_size(map: &BTreeMap<String, Figures>) -> Vec<(&String, &Figures)> {
    let mut rows: Vec<_> = map.iter().collect();
    rows.sort_by(|a, b| b.1.conversations.cmp(&a.1.conversations).then(a.0.cmp(b.0)));
    rows
}

pub fn agent_rows(map: &BTreeMap<String, Figures>) -> Vec<AgentFigures> {
    by_size(map)
        .into_iter()
        .map(|(k, f)| AgentFigures {
            agent: named(k),
            conversations: f.conversations,
            sentiment: f.sentiment(),
            average_satisfaction: f.average_satisfaction(),
            resolved_rate: f.resolved_rate(),
        })
        .collect()
}

pub fn topic_rows(map: &BTreeMap<String, Figures>) -> Vec<TopicFigures> {
    by_size(map)
        .into_iter()
        .map(|(k, f)| TopicFigures {
            topic: named(k),
            conversations: f.conversations,
            sentiment: f.sentiment(),
            average_satisfaction: f.average_satisfaction(),
            resolved_rate: f.resolved_rate(),
        })
        .collect()
}

pub fn language_rows(map: &BTreeMap<String, Figures>) -> Vec<LanguageFigures> {
    by_size(map)
        .into_iter()
        .map(|(k, f)| LanguageFigures {
            language: named(k),
            conversations: f.conversations,
            sentiment: f.sentiment(),
            average_satisfaction: f.average_satisfaction(),
        })
        .collect()
}

/// Days since 1970-01-01 (UTC), the insights cells' first key.
pub type DayNumber = i32;

pub fn day_number(date: NaiveDate) -> DayNumber {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((date - epoch).num_days()).unwrap_or(if date < epoch {
        i32::MIN
    } else {
        i32::MAX
    })
}

pub fn date_of(day: DayNumber) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::TimeDelta::days(day.into()))
}

/// The day the insights count a conversation on: its first message's (UTC),
/// else its upload's.
pub fn day_of_start(started_ms: Option<i64>, uploaded: DateTime<Utc>) -> DayNumber {
    let at = started_ms
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(uploaded);
    day_number(at.date_naive())
}

/// One completed upload's conversation as the insights count it: which cell
/// (day, topic, agent) and what it adds there. Kept per holder in
/// `insight-holders-v1`, so the conversation can be uncounted, or counted
/// from another upload, without reading its analysis again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub day: DayNumber,
    pub topic: String,
    pub agent: String,
    pub counted: Counted,
}

impl Contribution {
    /// A conversation's day is its first message's (UTC), else the upload's.
    pub fn of(record: &ConversationRecord, analysis: &Analysis, uploaded: DateTime<Utc>) -> Self {
        Self {
            day: day_of_start(record.started_ms, uploaded),
            topic: analysis.topic.clone().unwrap_or_default(),
            agent: record.agent.clone().unwrap_or_default(),
            counted: Counted::of(analysis),
        }
    }
}

/// A conversation the insights count, as the drill-down filters it
/// (`insight-rows-v1`, keyed by its day, its counted upload and its id):
/// its cell's topic and agent (`""` for none), its language (`""` when
/// unknown) and what it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFacts {
    pub topic: String,
    pub agent: String,
    pub language: String,
    pub counted: Counted,
}

/// Which counted conversations a drill-down lists: the insights' own
/// filters (days, topic, agent), and the language, sentiment, satisfaction
/// and resolution of each conversation. `Some("")` asks for none (no topic,
/// no agent, an unknown language), as the insights report `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub topic: Option<String>,
    pub agent: Option<String>,
    pub language: Option<String>,
    pub sentiment: Option<SentimentLabel>,
    /// Satisfaction at most this (1–5).
    pub satisfaction_max: Option<u8>,
    pub resolved: Option<bool>,
}

impl DrillFilter {
    /// The insights query counting the same conversations, when this filter
    /// asks only what the insights can (days, topic, agent).
    pub fn as_insights(&self) -> Option<InsightsQuery> {
        let only_cells = self.language.is_none()
            && self.sentiment.is_none()
            && self.satisfaction_max.is_none()
            && self.resolved.is_none();
        only_cells.then(|| InsightsQuery {
            from: self.from,
            to: self.to,
            topic: self.topic.clone(),
            agent: self.agent.clone(),
        })
    }

    /// The day numbers to list, both ends included.
    pub fn days(&self) -> (DayNumber, DayNumber) {
        InsightsQuery {
            from: self.from,
            to: self.to,
            ..InsightsQuery::default()
        }
        .days()
    }

    /// Whether a counted conversation on a day within [`DrillFilter::days`] is listed.
    pub fn wants(&self, f: &RowFacts) -> bool {
        self.wants_parts([&f.topic, &f.agent, &f.language], &f.counted)
    }

    /// [`DrillFilter::wants`] of a conversation's topic, agent and language,
    /// and what it counts.
    pub fn wants_parts(&self, [topic, agent, language]: [&str; 3], counted: &Counted) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.topic, topic)
            && is(&self.agent, agent)
            && is(&self.language, language)
            && self.sentiment.is_none_or(|s| s == counted.label)
            && self
                .satisfaction_max
                .is_none_or(|m| counted.satisfaction <= m)
            && self.resolved.is_none_or(|r| counted.resolved == Some(r))
    }
}

/// Where a drill-down page starts: after this conversation, in the
/// listing's order (newest day first, then upload and conversation id; with
/// a search, best match first). Written into `next` as text.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillCursor {
    /// The search score of the last item, for a search.
    pub score: Option<f64>,
    pub day: DayNumber,
    pub upload: u128,
    pub conversation_id: String,
}

impl std::fmt::Display for DrillCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.score {
            Some(score) => write!(f, "s{:016x}", score.to_bits())?,
            None => write!(f, "b")?,
        }
        write!(
            f,
            ".{}.{:032x}.{}",
            self.day, self.upload, self.conversation_id
        )
    }
}

/// A `cursor` that no page handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor this server handed out: {0:?}")]
pub struct BadCursor(pub String);

impl std::str::FromStr for DrillCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.chars().take(80).collect());
        let mut parts = s.splitn(4, '.');
        let (Some(kind), Some(day), Some(upload), Some(conversation_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let score = match kind.strip_prefix('s') {
            Some(bits) if bits.len() == 16 => Some(f64::from_bits(
                u64::from_str_radix(bits, 16).map_err(|_| bad())?,
            )),
            _ if kind == "b" => None,
            _ => return Err(bad()),
        };
        if upload.len() != 32 {
            return Err(bad());
        }
        Ok(DrillCursor {
            score,
            day: day.parse().map_err(|_| bad())?,
            upload: u128::from_str_radix(upload, 16).map_err(|_| bad())?,
            conversation_id: conversation_id.to_string(),
        })
    }
}

/// What `GET /api/insights` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Insights {
    /// Days with conversations, oldest first.
    pub days: Vec<DayFigures>,
    /// Largest first.
    pub topics: Vec<TopicFigures>,
    /// Largest first.
    pub agents: Vec<AgentFigures>,
    /// Every conversation counted above, once.
    pub conversations: u64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
}

/// Which cells an insights query counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsightsQuery {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub topic: Option<String>,
    pub agent: Option<String>,
}

impl InsightsQuery {
    /// The day numbers to scan, both ends included.
    pub fn days(&self) -> (DayNumber, DayNumber) {
        (
            self.from.map_or(DayNumber::MIN, day_number),
            self.to.map_or(DayNumber::MAX, day_number),
        )
    }

    /// Whether a cell's topic and agent pass the filters (`""` is none).
    pub fn wants(&self, topic: &str, agent: &str) -> bool {
        self.topic.as_deref().is_none_or(|t| t == topic)
            && self.agent.as_deref().is_none_or(|a| a == agent)
    }
}

/// Sums cells into [`Insights`].
#[derive(Debug, Default)]
pub struct InsightsBuilder {
    days: BTreeMap<DayNumber, Figures>,
    topics: BTreeMap<String, Figures>,
    agents: BTreeMap<String, Figures>,
    all: Figures,
}

impl InsightsBuilder {
    pub fn add(&mut self, day: DayNumber, topic: &str, agent: &str, figures: &Figures) {
        self.days.entry(day).or_default().merge(figures, 1);
        merge_at(&mut self.topics, topic, figures);
        merge_at(&mut self.agents, agent, figures);
        self.all.merge(figures, 1);
    }

    pub fn finish(self) -> Insights {
        Insights {
            days: self
                .days
                .into_iter()
                .filter_map(|(day, f)| {
                    Some(DayFigures {
                        date: date_of(day)?.format("%Y-%m-%d").to_string(),
                        conversations: f.conversations,
                        sentiment: f.sentiment(),
                        average_satisfaction: f.average_satisfaction(),
                        average_sentiment: f.average_score(),
                    })
                })
                .collect(),
            topics: topic_rows(&self.topics),
            agents: agent_rows(&self.agents),
            conversations: self.all.conversations,
            sentiment: self.all.sentiment(),
            average_satisfaction: self.all.average_satisfaction(),
        }
    }
}

/// `BTreeMap::entry` wants an owned key; most cells hit an existing one.
fn merge_at(map: &mut BTreeMap<String, Figures>, key: &str, figures: &Figures) {
    match map.get_mut(key) {
        Some(f) => f.merge(figures, 1),
        None => {
            map.insert(key.to_string(), *figures);
        }
    }
}

#[cfg(test)]
mod tests {

    proptest::proptest! {
        #[test]
        fn day_of_ms_is_chronos_day(ms in proptest::prelude::any::<i64>(), near in -5_000_000_000_000i64..300_000_000_000_000) {
            for ms in [ms, near] {
                let chronos = DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string());
                proptest::prop_assert_eq!(day_of_ms(ms), chronos);
            }
        }
    }

    use super::*;
    use crate::model::{Satisfaction, SatisfactionLabel, Sentiment};

    fn analysis(label: SentimentLabel, score: f64, sat: u8, resolved: Option<bool>) -> Analysis {
        Analysis {
            sentiment: Sentiment { label, score },
            satisfaction: Satisfaction {
                score: sat,
                label: SatisfactionLabel::from_score(sat),
            },
            resolved,
            summary: String::new(),
            analyzer: "lexicon".into(),
            model: "m".into(),
            topic: Some("meter".into()),
        }
    }

    fn record(status: ConversationStatus, agent: Option<&str>) -> ConversationRecord {
        ConversationRecord {
            status,
            messages: 2,
            customer_messages: 1,
            autoresponses: 0,
            started_ms: Some(1_772_438_597_000),
            failure: (status == ConversationStatus::Failed).then_some(FailureKind::Timeout),
            error: None,
            usage: Default::default(),
            agent: agent.map(str::to_string),
            endpoint: None,
            language: Some("en".into()),
        }
    }

    #[test]
    fn taking_away_what_was_added_leaves_nothing() {
        let outcomes = [
            (
                record(ConversationStatus::Analyzed, Some("Sita")),
                Some(analysis(
                    SentimentLabel::Negative,
                    -0.123_456_7,
                    2,
                    Some(false),
                )),
            ),
            (
                record(ConversationStatus::SkippedAlreadyProcessed, None),
                Some(analysis(SentimentLabel::Positive, 0.9, 5, Some(true))),
            ),
            (record(ConversationStatus::Failed, Some("Ram")), None),
        ];
        let mut stats = UploadStats::default();
        for (r, a) in &outcomes {
            stats.apply(r, a.as_ref(), 1);
        }
        assert_eq!(
            (
                stats.analyzed,
                stats.skipped_already_processed,
                stats.failed
            ),
            (1, 1, 1)
        );
        assert_eq!(stats.failures_by_reason["timeout"], 1);
        assert_eq!(stats.satisfaction_histogram, [0, 1, 0, 0, 1]);
        assert_eq!(stats.all.average_satisfaction(), Some(3.5));
        assert_eq!(stats.all.resolved_rate(), Some(0.5));
        assert_eq!(
            stats.agents.len(),
            2,
            "Sita and no one; Ram's failed one has no analysis"
        );
        assert_eq!(stats.days["2026-03-02"].conversations, 2);
        let mean = stats.days["2026-03-02"].average_score().unwrap();
        assert!((mean - (0.9 - 0.123_456_7) / 2.0).abs() < 1e-6, "{mean}");
        for (r, a) in outcomes.iter().rev() {
            stats.apply(r, a.as_ref(), -1);
        }
        assert!(stats.is_empty(), "{stats:?}");
    }

    #[test]
    fn a_conversations_day_is_its_first_messages_or_the_uploads() {
        let a = analysis(SentimentLabel::Neutral, 0.0, 3, None);
        let uploaded = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut r = record(ConversationStatus::Analyzed, Some("Sita"));
        let c = Contribution::of(&r, &a, uploaded);
        assert_eq!(date_of(c.day).unwrap().to_string(), "2026-03-02");
        assert_eq!((c.topic.as_str(), c.agent.as_str()), ("meter", "Sita"));
        r.started_ms = None;
        r.agent = None;
        let c = Contribution::of(&r, &a, uploaded);
        assert_eq!(date_of(c.day).unwrap().to_string(), "2027-01-15");
        assert_eq!(c.agent, "");
    }

    #[test]
    fn insights_sum_cells_by_day_topic_and_agent() {
        let mut f = Figures::default();
        f.apply(
            &Counted::of(&analysis(SentimentLabel::Negative, -0.5, 2, Some(false))),
            1,
        );
        let mut g = Figures::default();
        g.apply(
            &Counted::of(&analysis(SentimentLabel::Positive, 0.5, 4, Some(true))),
            1,
        );
        g.apply(
            &Counted::of(&analysis(SentimentLabel::Positive, 0.7, 5, None)),
            1,
        );
        let mut b = InsightsBuilder::default();
        b.add(20_000, "meter", "Sita", &f);
        b.add(20_000, "billing", "Ram", &g);
        b.add(20_001, "billing", "", &f);
        let i = b.finish();
        assert_eq!(i.conversations, 4);
        assert_eq!(i.days.len(), 2);
        assert_eq!(i.days[0].date, "2024-10-04");
        assert_eq!(i.days[0].conversations, 3);
        assert_eq!(i.days[0].average_satisfaction, Some(11.0 / 3.0));
        assert_eq!(i.topics[0].topic.as_deref(), Some("billing"));
        assert_eq!(i.topics[0].conversations, 3);
        assert_eq!(i.agents[0].agent.as_deref(), Some("Ram"));
        assert_eq!(i.agents[0].resolved_rate, Some(1.0));
        assert!(i.agents.iter().any(|a| a.agent.is_none()));
        let q = InsightsQuery {
            topic: Some("billing".into()),
            ..Default::default()
        };
        assert!(q.wants("billing", "Sita") && !q.wants("meter", "Sita"));
        assert_eq!(q.days(), (DayNumber::MIN, DayNumber::MAX));
    }
}
