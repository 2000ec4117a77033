//! Score every text of the differential fixture `passes` times (default 1),
//! for instruction counts: run it under callgrind with 0 and with 1 pass,
//! and the difference is the scoring alone.
//!
//! ```text
//! cargo build --release --example score_corpus -p vader-parity
//! valgrind --tool=callgrind target/release/examples/score_corpus 1
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use vader_parity::SentimentIntensityAnalyzer;

fn main() {
    let passes: usize = std::env::args()
        .nth(1)
        .map_or(1, |a| a.parse().expect("passes"));
    let analyzer = SentimentIntensityAnalyzer::new();
    let rows = common::rows();
    let mut sum = 0.0;
    for _ in 0..passes {
        for r in &rows {
            sum += analyzer.polarity_scores(&r.text).compound;
        }
    }
    println!("{} texts x {passes} passes, compound sum {sum}", rows.len());
}
