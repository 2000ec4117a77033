//! Per-message scoring speed over the differential fixture's texts: the
//! vaderSentiment sdist sentences (tweets, reviews, editorials) and the
//! generated support-chat-like mixes (English, Nepali, emojis, caps).

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use vader_parity::SentimentIntensityAnalyzer;

fn bench(c: &mut Criterion) {
    let analyzer = SentimentIntensityAnalyzer::new();
    let rows = common::rows();
    let mut group = c.benchmark_group("polarity_scores");
    for kind in ["sdist", "mix"] {
        let texts: Vec<&str> = rows
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.text.as_str())
            .collect();
        group.throughput(Throughput::Elements(texts.len() as u64));
        group.bench_function(format!("{kind} ({} texts)", texts.len()), |b| {
            b.iter(|| {
                for t in &texts {
                    black_box(analyzer.polarity_scores(black_box(t)));
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
