//! Search at size: `cargo bench --bench search`.
//!
//! Builds a database of 1,000,000 messages (ten weekly uploads of the
//! synthetic support chats, 133,000 conversations; Nepali in Devanagari
//! and in Latin letters among them) through the `StoreActor`, as the
//! pipeline writes it: messages in parse batches of 8,192 (each queued for
//! the index), outcomes, completion; then the index built as `serve`'s
//! `SearchIndexer` builds it after each completion (timed: work done off
//! the ingest path). Then a mix of the searches a support
//! lead types (a rare reference number, common words, two words, phrases,
//! Nepali both ways, a search within a topic), each run `ROUNDS` times
//! (50 results a page, each with the message that matched): latency
//! p50/p99 per query and over the mix (each with the check a search makes
//! that nothing is left to index), and the index's size. What indexing
//! costs the ingest path is `benches/end_to_end.rs`'s lexicon run against
//! a build without the index (`POWERPULSE_BASELINE`).
//!
//! Figures are printed, never asserted: these machines are noisy.

#[path = "../examples/support/synth.rs"]
mod synth;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use powerpulse::model::{
    Analysis, ConversationStatus, Message, Role, Satisfaction, SatisfactionLabel, Sentiment,
    SentimentLabel, Stage,
};
use powerpulse::search::Query;
use powerpulse::store::actor::{AppendMessages, Flush, PutUpload, SaveOutcomes, StoreActor};
use powerpulse::store::stats::DrillFilter;
use powerpulse::store::{
    ConversationRecord, ConversationResult, MessageChunks, MessageCounts, Store, StoredMessage,
    UploadCounts, UploadRecord,
};
use uuid::Uuid;

const MESSAGES: usize = 1_000_000;
const UPLOADS: usize = 10;
const BATCH: usize = 8_192;
const ROUNDS: usize = 30;

fn upload(id: Uuid, created_at: DateTime<Utc>, status: Stage) -> UploadRecord {
    UploadRecord {
        id,
        filename: "week.csv".into(),
        format: "csv".into(),
        status,
        analyzer: "lexicon".into(),
        model: "vader-support-2".into(),
        created_at,
        finished_at: Some(created_at),
        counts: UploadCounts::default(),
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

fn role(raw: &str) -> Role {
    match raw {
        "customer" => Role::Customer,
        "agent" => Role::Agent,
        _ => Role::Bot,
    }
}

/// The synthetic rows as the parser stores them.
fn stored(rows: &[synth::SynthMessage], week: i64) -> Vec<StoredMessage> {
    rows.iter()
        .enumerate()
        .map(|(seq, r)| {
            let time_ms = DateTime::parse_from_rfc3339(&r.timestamp)
                .ok()
                .map(|t| t.timestamp_millis() + week * 7 * 86_400_000);
            StoredMessage {
                conversation_id: r.conversation_id.clone(),
                seq: seq as u64,
                message: Message {
                    role: role(r.role),
                    text: r.text.clone(),
                    timestamp: None,
                    time_ms,
                    sender_name: Some(r.sender_name.clone()),
                    autoresponse: r.role == "bot" || r.text.contains("*977#"),
                },
            }
        })
        .collect()
}

/// A conversation's outcome: a summary in the lexicon's words, a topic
/// from its first customer message.
fn outcome(upload_id: Uuid, id: &str, messages: &[&Message]) -> ConversationResult {
    let first = messages
        .iter()
        .find(|m| m.role == Role::Customer)
        .map_or("", |m| m.text.as_str())
        .to_lowercase();
    let topic = if first.contains("power") || first.contains("बत्ती") || first.contains("light")
    {
        "outage"
    } else if first.contains("bill") || first.contains("बिल") {
        "billing"
    } else if first.contains("meter") || first.contains("मिटर") {
        "meter"
    } else {
        "payment"
    };
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Customer)
        .map_or("", |m| m.text.as_str());
    let happy = last.contains("hank") || last.contains("धन्यवाद");
    let (label, score) = if happy {
        (SentimentLabel::Positive, 5)
    } else {
        (SentimentLabel::Negative, 2)
    };
    let mut counts = MessageCounts::default();
    for m in messages {
        counts.messages += 1;
        counts.started_ms = match (counts.started_ms, m.time_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut record = ConversationRecord::new(&counts, ConversationStatus::Analyzed);
    record.agent = messages
        .iter()
        .find(|m| m.role == Role::Agent)
        .and_then(|m| m.sender_name.clone());
    record.language = Some(if first.is_ascii() { "en" } else { "ne" }.into());
    ConversationResult {
        upload_id,
        conversation_id: id.to_string(),
        record,
        analysis: Some(Analysis {
            sentiment: Sentiment {
                label,
                score: if happy { 0.6 } else { -0.5 },
            },
            satisfaction: Satisfaction {
                score,
                label: SatisfactionLabel::from_score(score),
            },
            resolved: Some(happy),
            summary: format!(
                "Customer reported a {topic} issue; {}",
                if happy {
                    "issue resolved, customer thankful."
                } else {
                    "issue not resolved, customer frustrated."
                }
            ),
            analyzer: "lexicon".into(),
            model: "vader-support-2".into(),
            topic: Some(topic.into()),
        }),
        content_key: Some(*blake3::hash(format!("{upload_id}/{id}").as_bytes()).as_bytes()),
    }
}

/// Builds the database; answers the time the store spent appending batches
/// (queued for the index), and a reference number from the last upload.
fn build(store: &Store) -> (Duration, String) {
    let system = actix_rt::System::new();
    let actor = system.block_on(async {
        StoreActor::new(store.clone(), 256, Duration::from_millis(200)).start_dedicated()
    });
    let per_upload = MESSAGES / UPLOADS;
    let mut appending = Duration::ZERO;
    let mut reference = String::new();
    system.block_on(async {
        for week in 0..UPLOADS {
            let id = Uuid::from_u128(week as u128 + 1);
            let created =
                DateTime::from_timestamp(1_772_438_400 + week as i64 * 7 * 86_400, 0).unwrap();
            actor
                .send(PutUpload(upload(id, created, Stage::Analyzing)))
                .await
                .unwrap()
                .unwrap();
            // ~7.5 messages a conversation: a little over the week's share, cut.
            let mut rows = synth::generate(per_upload * 10 / 74, week as u64 + 100);
            rows.truncate(per_upload);
            let rows = stored(&rows, week as i64);
            if let Some(r) = rows
                .iter()
                .rev()
                .find(|r| r.message.text.contains("ticket"))
            {
                reference = r
                    .message
                    .text
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|w| w.len() == 6)
                    .unwrap_or_default()
                    .to_string();
            }
            for batch in rows.chunks(BATCH) {
                let chunks = MessageChunks::encode(batch);
                let t = Instant::now();
                actor
                    .send(AppendMessages {
                        upload_id: id,
                        chunks,
                        durable: false,
                    })
                    .await
                    .unwrap()
                    .unwrap();
                appending += t.elapsed();
            }
            let mut by_id: std::collections::BTreeMap<&str, Vec<&Message>> = Default::default();
            for r in &rows {
                by_id
                    .entry(&r.conversation_id)
                    .or_default()
                    .push(&r.message);
            }
            let results: Vec<ConversationResult> =
                by_id.iter().map(|(c, ms)| outcome(id, c, ms)).collect();
            for chunk in results.chunks(1024) {
                actor
                    .send(SaveOutcomes {
                        results: chunk.to_vec(),
                        durable: false,
                    })
                    .await
                    .unwrap()
                    .unwrap();
            }
            actor
                .send(PutUpload(upload(id, created, Stage::Completed)))
                .await
                .unwrap()
                .unwrap();
        }
        actor.send(Flush).await.unwrap().unwrap();
    });
    (appending, reference)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU time this thread has used: a search runs on one thread, so on a
/// machine busy with other work this is what it takes on an idle one
/// (wall-clock time is printed beside it).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.redb");
    let store = Store::open(&path).unwrap();
    let started = Instant::now();
    let (appending, reference) = build(&store);
    let stored = started.elapsed();
    let indexing = Instant::now();
    let segments = store.index_pending().unwrap();
    let indexing = indexing.elapsed();
    let size = store.search_index_size().unwrap();
    println!(
        "{MESSAGES} messages in {UPLOADS} uploads stored in {:.1} s (appending batches: {:.1} s); \
         indexed afterwards, on one thread, in {:.1} s ({segments} segments written); \
         database {:.1} MiB; index: {} segments, {} long posting lists, {:.1} MiB of keys and values",
        stored.as_secs_f64(),
        appending.as_secs_f64(),
        indexing.as_secs_f64(),
        std::fs::metadata(&path).unwrap().len() as f64 / 1048576.0,
        size.segments,
        size.postings,
        size.bytes as f64 / 1048576.0,
    );
    let outage = DrillFilter {
        topic: Some("outage".into()),
        ..Default::default()
    };
    let everything = DrillFilter::default();
    let queries: Vec<(&str, String, &DrillFilter)> = vec![
        ("reference number", reference.clone(), &everything),
        ("rare word", "Baneshwor".into(), &everything),
        ("common word", "outage".into(), &everything),
        ("two words", "meter reading".into(), &everything),
        ("phrase", "\"no power\"".into(), &everything),
        (
            "phrase and word",
            "\"power cut\" Lalitpur".into(),
            &everything,
        ),
        ("devanagari", "बत्ती छैन".into(), &everything),
        ("romanised", "batti chaina".into(), &everything),
        ("within a topic", "transformer".into(), &outage),
        ("plural", "refunds".into(), &everything),
    ];
    let (mut all, mut all_cpu) = (Vec::new(), Vec::new());
    println!("query                 total   wall p50   p99    cpu p50   p99 (ms)");
    for (name, q, filter) in &queries {
        let query = Query::parse(q);
        let (mut times, mut cpu) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
        let mut total = 0;
        for _ in 0..ROUNDS {
            let (t, c) = (Instant::now(), thread_cpu());
            // What a search asks the indexer first: nothing is queued.
            assert_eq!(store.index_pending().unwrap(), 0);
            let page = store.search(&query, filter, None, 50, None).unwrap();
            cpu.push(thread_cpu().saturating_sub(c));
            times.push(t.elapsed());
            total = page.total;
        }
        times.sort();
        cpu.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<20} {total:>7} {:>8.2} {:>6.2} {:>8.2} {:>6.2}   ({q})",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&cpu, 0.5)),
            ms(percentile(&cpu, 0.99)),
        );
        all.extend(times);
        all_cpu.extend(cpu);
    }
    all.sort();
    all_cpu.sort();
    println!(
        "the mix ({} searches, 50 results a page): wall p50 {:.2} ms, p99 {:.2} ms; CPU p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        percentile(&all_cpu, 0.5).as_secs_f64() * 1e3,
        percentile(&all_cpu, 0.99).as_secs_f64() * 1e3,
    );
}
