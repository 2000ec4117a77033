//! The aggregates at size: an upload's summary and `GET /api/insights` over
//! a year, read from a 200,000-conversation database, against the full scan
//! the summary used to make; the drill-down behind those numbers (a day's
//! page, a topic's over the year, a filter counted row by row). Also what
//! keeping them costs a completed upload (the insights are counted in its
//! final transaction).
//! Figures go into the closing notes, never into tests.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use powerpulse::model::{
    Analysis, ConversationStatus, Satisfaction, SatisfactionLabel, Sentiment, SentimentLabel, Stage,
};
use powerpulse::store::actor::{Flush, PutUpload, SaveOutcomes, StoreActor};
use powerpulse::store::stats::{DrillFilter, InsightsQuery};
use powerpulse::store::{
    ConversationRecord, ConversationResult, MessageCounts, Store, UploadCounts, UploadRecord,
};
use uuid::Uuid;

const CONVERSATIONS: usize = 200_000;
const UPLOADS: usize = 52;
const AGENTS: usize = 40;
const TOPICS: [&str; 7] = [
    "outage",
    "billing",
    "meter",
    "connection",
    "voltage",
    "payment",
    "other",
];
/// 2025-03-03, a Monday.
const START_MS: i64 = 1_740_960_000_000;
const DAY_MS: i64 = 86_400_000;

/// A deterministic spread of outcomes: conversation `i` of the year (days
/// in order, so weekly uploads each hold about a week).
fn result(upload_id: Uuid, i: usize) -> ConversationResult {
    let mix = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let satisfaction = 1 + (mix % 5) as u8;
    let label = match satisfaction {
        4..=5 => SentimentLabel::Positive,
        3 => SentimentLabel::Neutral,
        _ => SentimentLabel::Negative,
    };
    let analysis = Analysis {
        sentiment: Sentiment {
            label,
            score: (f64::from(satisfaction) - 3.0) / 2.0,
        },
        satisfaction: Satisfaction {
            score: satisfaction,
            label: SatisfactionLabel::from_score(satisfaction),
        },
        resolved: Some(!mix.is_multiple_of(3)),
        summary: "Customer reported a meter issue; issue resolved, customer thankful.".into(),
        analyzer: "lexicon".into(),
        model: "vader-support-2".into(),
        topic: Some(TOPICS[(mix >> 8) as usize % TOPICS.len()].into()),
    };
    let day = (i * 365 / CONVERSATIONS) as i64;
    let mut record = ConversationRecord::new(
        &MessageCounts {
            messages: 8,
            customer_messages: 4,
            autoresponses: 1,
            started_ms: Some(START_MS + day * DAY_MS + (mix >> 24) as i64 % DAY_MS),
        },
        ConversationStatus::Analyzed,
    );
    record.agent = Some(format!("Agent {:02}", (mix >> 32) as usize % AGENTS));
    record.language = Some(if mix.is_multiple_of(7) { "ne" } else { "en" }.into());
    ConversationResult {
        upload_id,
        conversation_id: format!("CHAT-{i:07}"),
        record,
        analysis: Some(analysis),
        content_key: Some(*blake3::hash(&i.to_le_bytes()).as_bytes()),
    }
}

fn upload(id: Uuid, conversations: u64, created_at: DateTime<Utc>) -> UploadRecord {
    UploadRecord {
        id,
        filename: "week.csv".into(),
        format: "csv".into(),
        status: Stage::Completed,
        analyzer: "lexicon".into(),
        model: "vader-support-2".into(),
        created_at,
        finished_at: Some(created_at),
        counts: UploadCounts {
            conversations,
            analyzed: conversations,
            ..Default::default()
        },
        llm: Default::default(),
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

/// Stores `uploads` completed uploads sharing `CONVERSATIONS` between them;
/// answers their ids and how long completing the last one took.
fn build(store: &Store, uploads: usize) -> (Vec<Uuid>, Duration) {
    let system = actix_rt::System::new();
    let actor = system.block_on(async {
        StoreActor::new(store.clone(), 256, Duration::from_millis(200)).start_dedicated()
    });
    let per_upload = CONVERSATIONS.div_ceil(uploads);
    let mut ids = Vec::new();
    let mut last_completion = Duration::ZERO;
    system.block_on(async {
        for (n, start) in (0..CONVERSATIONS).step_by(per_upload).enumerate() {
            let id = Uuid::from_u128(n as u128 + 1);
            let end = (start + per_upload).min(CONVERSATIONS);
            let mut record = upload(
                id,
                (end - start) as u64,
                DateTime::from_timestamp_millis(START_MS + n as i64 * 7 * DAY_MS).unwrap(),
            );
            record.status = Stage::Analyzing;
            actor
                .send(PutUpload(record.clone()))
                .await
                .unwrap()
                .unwrap();
            for chunk in (start..end).collect::<Vec<_>>().chunks(1024) {
                let results = chunk.iter().map(|i| result(id, *i)).collect();
                actor
                    .send(SaveOutcomes {
                        results,
                        durable: false,
                    })
                    .await
                    .unwrap()
                    .unwrap();
            }
            record.status = Stage::Completed;
            let t = Instant::now();
            actor.send(PutUpload(record)).await.unwrap().unwrap();
            last_completion = t.elapsed();
            ids.push(id);
        }
        actor.send(Flush).await.unwrap().unwrap();
    });
    (ids, last_completion)
}

fn aggregates(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let year = NaiveDate::from_ymd_opt(2025, 3, 3).unwrap();
    let a_year = InsightsQuery {
        from: Some(year),
        to: year.checked_add_days(chrono::Days::new(364)),
        ..Default::default()
    };
    let mut group = c.benchmark_group("aggregates");
    group.sample_size(30);
    for (name, uploads) in [("one_upload", 1), ("weekly_uploads", UPLOADS)] {
        let store = Store::open(dir.path().join(format!("{name}.redb"))).unwrap();
        let (ids, completion) = build(&store, uploads);
        eprintln!(
            "{name}: {CONVERSATIONS} conversations in {uploads} upload(s); completing the last \
             one ({} conversations) counted it in the insights in {completion:?}; database {} MB",
            CONVERSATIONS.div_ceil(uploads),
            std::fs::metadata(store.path()).unwrap().len() / 1_000_000
        );
        let biggest = ids[0];
        group.bench_function(format!("{name}/summary"), |b| {
            b.iter(|| store.summary(biggest).unwrap())
        });
        group.bench_function(format!("{name}/insights_a_year"), |b| {
            b.iter(|| store.insights(&a_year).unwrap())
        });
        let one_agent = InsightsQuery {
            agent: Some("Agent 07".into()),
            ..a_year.clone()
        };
        group.bench_function(format!("{name}/insights_a_year_one_agent"), |b| {
            b.iter(|| store.insights(&one_agent).unwrap())
        });
        let a_day = DrillFilter {
            from: year.checked_add_days(chrono::Days::new(200)),
            to: year.checked_add_days(chrono::Days::new(200)),
            ..Default::default()
        };
        group.bench_function(format!("{name}/drill_down_a_day"), |b| {
            b.iter(|| store.drill_down(&a_day, None, 50).unwrap())
        });
        let a_topic = DrillFilter {
            from: a_year.from,
            to: a_year.to,
            topic: Some("voltage".into()),
            ..Default::default()
        };
        group.bench_function(format!("{name}/drill_down_a_topic_a_year"), |b| {
            b.iter(|| store.drill_down(&a_topic, None, 50).unwrap())
        });
        let counted_by_rows = DrillFilter {
            language: Some("ne".into()),
            satisfaction_max: Some(2),
            ..a_topic.clone()
        };
        group.bench_function(format!("{name}/drill_down_counted_row_by_row"), |b| {
            b.iter(|| store.drill_down(&counted_by_rows, None, 50).unwrap())
        });
        if uploads == 1 {
            // What every summary request cost before: reading every outcome.
            group.sample_size(10);
            group.bench_function(format!("{name}/summary_by_full_scan"), |b| {
                b.iter(|| store.recount(biggest).unwrap())
            });
            group.sample_size(30);
        }
    }
    group.finish();
}

criterion_group!(benches, aggregates);
criterion_main!(benches);
