//! The frozen oracle vectors: every row of `tests/vectors/frozen.tsv`,
//! captured from Python vaderSentiment 3.3.2 before implementation, must
//! match bit-for-bit on all four rounded fields (invariant 1). The audit
//! sentences double as the `defect_m1_*` through `defect_m4_*` regression
//! tests, named for the incumbent defect mechanism each pins.

use std::collections::HashSet;
use std::path::PathBuf;
use vader_parity::SentimentIntensityAnalyzer;

fn frozen_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors")
        .join("frozen.tsv")
}

/// Undo the frozen.tsv text escaping: `\\`, `\t`, `\n`, `\r`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Row {
    id: String,
    text: String,
    neg: f64,
    neu: f64,
    pos: f64,
    compound: f64,
}

fn rows() -> Vec<Row> {
    let raw = std::fs::read_to_string(frozen_path()).unwrap_or_default();
    assert!(!raw.is_empty(), "missing frozen.tsv");
    let mut rows = Vec::new();
    for line in raw.lines() {
        if line.is_empty() || line.as_bytes().first() == Some(&b'#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 7, "malformed frozen row: {line}");
        let parse = |idx: usize| -> f64 {
            let field = fields.get(idx).copied().unwrap_or_default();
            let value = field.parse::<f64>();
            assert!(value.is_ok(), "bad float {field} in row: {line}");
            value.unwrap_or_default()
        };
        rows.push(Row {
            id: fields.first().copied().unwrap_or_default().to_string(),
            text: unescape(fields.get(1).copied().unwrap_or_default()),
            neg: parse(2),
            neu: parse(3),
            pos: parse(4),
            compound: parse(5),
        });
    }
    rows
}

#[test]
fn frozen_corpus_shape_is_intact() {
    let rows = rows();
    assert_eq!(rows.len(), 177, "frozen corpus row count drifted");
    let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "duplicate vector ids");
    // The header must still pin the oracle.
    let raw = std::fs::read_to_string(frozen_path()).unwrap_or_default();
    let header_ok = raw.lines().take(5).any(|l| {
        l == "# oracle: vaderSentiment 3.3.2 (PyPI sdist sha256 5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9)"
    });
    assert!(header_ok, "frozen.tsv oracle header drifted");
}

#[test]
fn every_frozen_vector_matches_the_reference_exactly() {
    let analyzer = SentimentIntensityAnalyzer::new();
    for row in rows() {
        let scores = analyzer.polarity_scores(&row.text);
        let same = scores.neg.to_bits() == row.neg.to_bits()
            && scores.neu.to_bits() == row.neu.to_bits()
            && scores.pos.to_bits() == row.pos.to_bits()
            && scores.compound.to_bits() == row.compound.to_bits();
        assert!(
            same,
            "row {} {:?}: got {:?}, oracle (neg {}, neu {}, pos {}, compound {})",
            row.id, row.text, scores, row.neg, row.neu, row.pos, row.compound
        );
    }
}

fn compound_of(text: &str) -> f64 {
    SentimentIntensityAnalyzer::new()
        .polarity_scores(text)
        .compound
}

#[test]
fn defect_m1_at_least_exemption_is_live() {
    // The incumbent's dead `least_check` branch scored this -0.3089.
    assert_eq!(compound_of("he is at least smart"), 0.4019);
    assert_eq!(
        compound_of("Roger Dodger is at least compelling as a variation on the theme."),
        0.2263
    );
    assert_eq!(compound_of("at least good"), 0.4404);
    // The damped path stays damped.
    assert_eq!(
        compound_of("Roger Dodger is one of the least compelling variations on this theme."),
        -0.1695
    );
}

#[test]
fn defect_m2_exact_sequences_only() {
    // "shittiest" is not "the shit": the incumbent scored this +3.0-based.
    assert_eq!(compound_of("these are the shittiest of times"), -0.6597);
    // No forward-window overreach onto "to die for" while scoring "die".
    assert_eq!(compound_of("that dessert was to die for"), -0.5994);
    // "so" must not match inside "person"; the real booster still fires.
    assert_eq!(compound_of("the person was good"), 0.4404);
    assert_eq!(compound_of("the person was so happy"), 0.6948);
    // "sort of" survives as a dampener even though "so" sits inside "sort".
    assert_eq!(compound_of("it was sort of good"), 0.3832);
    assert_eq!(
        compound_of("VADER is very smart, handsome, and funny."),
        0.8545
    );
    assert_eq!(
        compound_of("Other sentiment analysis tools can be quite bad."),
        -0.5849
    );
}

#[test]
fn defect_m3_zero_sum_takes_no_emphasis() {
    // The incumbent's two-arm branch pushed these negative.
    assert_eq!(compound_of("is?"), 0.0);
    assert_eq!(compound_of("the meeting is at noon!"), 0.0);
}

#[test]
fn defect_m4_negation_trigram_precedence() {
    // A bare "this" two back is not "never this"; the incumbent sign-flipped both.
    assert_eq!(compound_of("wasnt this really good"), -0.3865);
    assert_eq!(compound_of("not really doubt good"), -0.0734);
}
