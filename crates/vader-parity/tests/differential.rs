//! Differential parity of this fork against the original crates.io
//! `vader-parity` 0.1.0: every score, bit for bit.
//!
//! `tests/vectors/differential.tsv.gz` holds the original's outputs for
//! 11,492 texts: every 4th of the 23,703 sentences of the vaderSentiment
//! 3.3.2 sdist (`additional_resources/hutto_ICWSM_2014/*_GroundTruth.txt`)
//! and 5,566 edge, random-word and random-codepoint strings. The full sdist
//! set is checked by digest when the sdist is unpacked locally (set
//! `VADER_SDIST_DIR` to the `hutto_ICWSM_2014` directory, or let
//! `cargo run --example lexicon_quality` of PowerPulse fetch it into
//! `target/vader-data`); without it that test only says it skipped, so
//! `cargo test` needs no network.
//!
//! How the fixture was made (outside this repository): a throwaway binary
//! depending on `vader-parity = "=0.1.0"` from crates.io read a generated
//! corpus of kind/text rows and printed each row with the four scores'
//! `f64::to_bits` in hex; a script kept every 4th sdist row plus all the
//! others and gzipped them, and hashed the scores of all sdist rows into
//! `SDIST_DIGEST`.

mod common;

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use vader_parity::SentimentIntensityAnalyzer;

/// sha256 over one line `neg\tneu\tpos\tcompound\n` (f64 bits, 16 hex
/// digits each) per sdist sentence, in file order, from the original 0.1.0.
const SDIST_DIGEST: &str = "67e1fcd81dff799a24ad25a47caabc421dce4fc1828f98638dbe4106a1d37041";
const SDIST_ROWS: usize = 23_703;
const SDIST_SETS: [&str; 4] = [
    "tweets_GroundTruth.txt",
    "movieReviewSnippets_GroundTruth.txt",
    "amazonReviewSnippets_GroundTruth.txt",
    "nytEditorialSnippets_GroundTruth.txt",
];

#[test]
fn fixture_scores_equal_the_original_bit_for_bit() {
    let analyzer = SentimentIntensityAnalyzer::new();
    let rows = common::rows();
    assert_eq!(rows.len(), 11_492, "fixture row count drifted");
    let mut differences = Vec::new();
    for row in &rows {
        let got = common::bits(&analyzer.polarity_scores(&row.text));
        if got != row.bits {
            differences.push(format!(
                "{} {:?}: {got:x?} != {:x?}",
                row.kind, row.text, row.bits
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} rows differ from vader-parity 0.1.0:\n{}",
        differences.len(),
        rows.len(),
        differences
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The sentences of the four ground-truth files: the third tab-separated
/// column onward of every CRLF line, as the fixture generator read them.
fn sdist_sentences(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for set in SDIST_SETS {
        let raw = std::fs::read_to_string(dir.join(set)).expect("read sdist set");
        for line in raw.split('\n') {
            let parts: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
            if parts.len() >= 3 {
                out.push(parts[2..].join("\t"));
            }
        }
    }
    out
}

#[test]
fn full_sdist_scores_hash_to_the_original_digest() {
    let dir = std::env::var_os("VADER_SDIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/vader-data")
        });
    if !SDIST_SETS.iter().all(|s| dir.join(s).exists()) {
        eprintln!("skipped: no sdist sentences in {}", dir.display());
        return;
    }
    let analyzer = SentimentIntensityAnalyzer::new();
    let sentences = sdist_sentences(&dir);
    assert_eq!(sentences.len(), SDIST_ROWS);
    let mut hasher = Sha256::new();
    for text in &sentences {
        let [neg, neu, pos, compound] = common::bits(&analyzer.polarity_scores(text));
        hasher.update(format!(
            "{neg:016x}\t{neu:016x}\t{pos:016x}\t{compound:016x}\n"
        ));
    }
    assert_eq!(format!("{:x}", hasher.finalize()), SDIST_DIGEST);
}
