//! The differential fixture reader, shared by `tests/differential.rs`,
//! `benches/polarity.rs` and `examples/score_corpus.rs`.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

/// One fixture row: the text and the original 0.1.0's four scores as bits.
pub struct Row {
    pub kind: String,
    pub text: String,
    pub bits: [u64; 4],
}

/// Undo the fixture's text escaping: `\\`, `\t`, `\n`, `\r`.
pub fn unescape(field: &str) -> String {
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

pub fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors")
        .join("differential.tsv.gz")
}

/// Every row of `tests/vectors/differential.tsv.gz`.
pub fn rows() -> Vec<Row> {
    let gz = std::fs::read(fixture_path()).expect("read differential.tsv.gz");
    let mut raw = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut raw)
        .expect("gunzip differential.tsv.gz");
    raw.split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6, "malformed row: {line}");
            let hex = |i: usize| u64::from_str_radix(f[i], 16).expect("hex bits");
            Row {
                kind: f[0].to_string(),
                text: unescape(f[1]),
                bits: [hex(2), hex(3), hex(4), hex(5)],
            }
        })
        .collect()
}

/// The four scores as bits, in fixture column order.
pub fn bits(s: &vader_parity::SentimentScores) -> [u64; 4] {
    [
        s.neg.to_bits(),
        s.neu.to_bits(),
        s.pos.to_bits(),
        s.compound.to_bits(),
    ]
}
