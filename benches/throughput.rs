//! Component throughput: ingest MB/s per format, lexicon conversations/s,
//! store analyses/s, redaction messages/s. Figures go into the closing
//! notes, never into tests.

#[path = "../examples/support/synth.rs"]
mod synth;

use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use powerpulse::analyze::LexiconAnalyzer;
use powerpulse::config::IngestSettings;
use powerpulse::ingest::{self, IngestOptions, Row};
use powerpulse::model::{Conversation, Message, Role};

const CONVERSATIONS: usize = 8_000;

fn fixtures(dir: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let rows = synth::generate(CONVERSATIONS, 7);
    let csv = dir.join("bench.csv");
    synth::write_csv(&rows, std::fs::File::create(&csv).unwrap()).unwrap();

    let as_json = |m: &synth::SynthMessage| {
        serde_json::json!({
            "conversation_id": m.conversation_id, "sender": m.role,
            "sender_name": m.sender_name, "message": m.text, "timestamp": m.timestamp,
        })
    };
    let json = dir.join("bench.json");
    let all: Vec<_> = rows.iter().map(as_json).collect();
    serde_json::to_writer(std::fs::File::create(&json).unwrap(), &all).unwrap();
    let jsonl = dir.join("bench.jsonl");
    let mut lines = String::new();
    for m in &rows {
        lines.push_str(&as_json(m).to_string());
        lines.push('\n');
    }
    std::fs::write(&jsonl, lines).unwrap();

    let xlsx = dir.join("bench.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in [
        "conversation_id",
        "sender",
        "sender_name",
        "message",
        "timestamp",
    ]
    .iter()
    .enumerate()
    {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (i, m) in rows.iter().enumerate() {
        let r = i as u32 + 1;
        for (c, v) in [
            m.conversation_id.as_str(),
            m.role,
            &m.sender_name,
            &m.text,
            &m.timestamp,
        ]
        .iter()
        .enumerate()
        {
            sheet.write_string(r, c as u16, *v).unwrap();
        }
    }
    book.save(&xlsx).unwrap();
    vec![
        ("csv", csv),
        ("json", json),
        ("jsonl", jsonl),
        ("xlsx", xlsx),
    ]
}

fn count_rows(path: &Path, opts: &IngestOptions) -> usize {
    ingest::open(path, opts)
        .unwrap()
        .filter(|r| matches!(r, Ok(Row::Message(_))))
        .count()
}

fn ingest_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let opts = IngestOptions::from_settings(&IngestSettings::default());
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (format, path) in fixtures(dir.path()) {
        let bytes = std::fs::metadata(&path).unwrap().len();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_with_input(BenchmarkId::from_parameter(format), &path, |b, p| {
            b.iter(|| count_rows(p, &opts))
        });
    }
    group.finish();
}

/// The synthetic export grouped into conversations, as the pipeline reads them back.
fn conversations(n: usize) -> Vec<Conversation> {
    let opts = IngestOptions::from_settings(&IngestSettings::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.csv");
    synth::write_csv(
        &synth::generate(n, 11),
        std::fs::File::create(&path).unwrap(),
    )
    .unwrap();
    let mut by_id: std::collections::BTreeMap<String, Vec<Message>> = Default::default();
    for row in ingest::open(&path, &opts).unwrap() {
        if let Ok(Row::Message(m)) = row {
            by_id.entry(m.conversation_id).or_default().push(m.message);
        }
    }
    by_id
        .into_iter()
        .map(|(id, messages)| Conversation { id, messages })
        .collect()
}

fn lexicon_throughput(c: &mut Criterion) {
    let convs = conversations(2_000);
    let customer: usize = convs
        .iter()
        .map(|c| {
            c.messages
                .iter()
                .filter(|m| m.role == Role::Customer)
                .count()
        })
        .sum();
    eprintln!(
        "lexicon bench: {} conversations, {:.1} customer messages each",
        convs.len(),
        customer as f64 / convs.len() as f64
    );
    let analyzer = LexiconAnalyzer::new();
    let mut group = c.benchmark_group("lexicon");
    group.throughput(Throughput::Elements(convs.len() as u64));
    group.bench_function("analyze", |b| {
        b.iter(|| {
            for conv in &convs {
                std::hint::black_box(analyzer.analyze(conv));
            }
        })
    });
    group.finish();
}

fn store_throughput(c: &mut Criterion) {
    use powerpulse::model::ConversationStatus;
    use powerpulse::store::actor::{Flush, SaveOutcome, SaveOutcomes, StoreActor};
    use powerpulse::store::{ConversationRecord, ConversationResult, Store};

    let convs = conversations(2_000);
    let analyzer = LexiconAnalyzer::new();
    let analyses: Vec<_> = convs.iter().map(|c| (c, analyzer.analyze(c))).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench.redb")).unwrap();
    let system = actix_rt::System::new();
    let actor = system.block_on(async {
        StoreActor::new(store, 256, Duration::from_millis(200)).start_dedicated()
    });
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(analyses.len() as u64));
    group.sample_size(20);
    group.bench_function("save_outcomes", |b| {
        b.iter(|| {
            system.block_on(async {
                let upload_id = uuid::Uuid::new_v4();
                for (conv, analysis) in &analyses {
                    actor
                        .send(SaveOutcome(ConversationResult {
                            upload_id,
                            conversation_id: conv.id.clone(),
                            record: ConversationRecord::describe(
                                conv,
                                ConversationStatus::Analyzed,
                            ),
                            analysis: Some(analysis.clone()),
                            content_key: Some(*blake3::hash(conv.id.as_bytes()).as_bytes()),
                        }))
                        .await
                        .unwrap()
                        .unwrap();
                }
                actor.send(Flush).await.unwrap().unwrap();
            })
        })
    });
    let result = |upload_id, conv: &Conversation, analysis: &powerpulse::model::Analysis| {
        ConversationResult {
            upload_id,
            conversation_id: conv.id.clone(),
            record: ConversationRecord::describe(conv, ConversationStatus::Analyzed),
            analysis: Some(analysis.clone()),
            content_key: Some(*blake3::hash(conv.id.as_bytes()).as_bytes()),
        }
    };
    group.bench_function("save_outcome_batches_of_256", |b| {
        b.iter(|| {
            system.block_on(async {
                let upload_id = uuid::Uuid::new_v4();
                for chunk in analyses.chunks(256) {
                    let batch = chunk.iter().map(|(c, a)| result(upload_id, c, a)).collect();
                    let save = SaveOutcomes {
                        results: batch,
                        durable: true,
                    };
                    actor.send(save).await.unwrap().unwrap();
                }
                actor.send(Flush).await.unwrap().unwrap();
            })
        })
    });
    group.finish();
}

/// Redaction as the LLM analyzer does it (`Redactor::redact_analysable`,
/// one session per conversation, sender names known): on the synthetic
/// export (some personal data: account numbers, amounts, dates), and on the
/// labelled set, where most messages carry a planted value or a look-alike.
fn redaction_throughput(c: &mut Criterion) {
    use powerpulse::config::PrivacySettings;
    use powerpulse::privacy::Redactor;

    let redactor = Redactor::new(&PrivacySettings::default()).unwrap();
    let synthetic = conversations(2_000);
    let labelled: Vec<Conversation> = include_str!("../tests/data/privacy_eval.jsonl")
        .lines()
        .map(|line| {
            let chat: serde_json::Value = serde_json::from_str(line).unwrap();
            let messages = chat["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message {
                    role: if m["role"] == "customer" {
                        Role::Customer
                    } else {
                        Role::Agent
                    },
                    // `[[kind:value]]` marks taken out.
                    text: regex::Regex::new(r"\[\[[a-z]+:(.*?)\]\]")
                        .unwrap()
                        .replace_all(m["text"].as_str().unwrap(), "$1")
                        .into_owned(),
                    timestamp: None,
                    time_ms: None,
                    sender_name: m["sender_name"].as_str().map(String::from),
                    autoresponse: false,
                })
                .collect();
            Conversation {
                id: chat["id"].as_str().unwrap().to_string(),
                messages,
            }
        })
        .collect();
    let mut group = c.benchmark_group("redaction");
    for (name, convs) in [("synthetic", &synthetic), ("labelled", &labelled)] {
        let messages: usize = convs.iter().map(|c| c.analysable().count()).sum();
        eprintln!(
            "redaction bench {name}: {} conversations, {messages} messages",
            convs.len()
        );
        group.throughput(Throughput::Elements(messages as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for conv in convs.iter() {
                    std::hint::black_box(redactor.redact_analysable(conv));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    ingest_throughput,
    lexicon_throughput,
    store_throughput,
    redaction_throughput
);
criterion_main!(benches);
