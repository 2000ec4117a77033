//! Full-text search over every conversation the insights count: message
//! text and summaries, words in any order, quoted phrases, Nepali in
//! Devanagari and in Latin letters, ranked (BM25), with the best matching
//! message shown.
//!
//! Plain code, no redb: [`text`] (tokens, loose keys, terms), [`query`]
//! (`q` read into clauses), [`segment`] (the inverted index of one run of
//! messages or of an upload's summaries, and its encoding), the ranking
//! ([`bm25`]) and [`best_match`] (which text of a conversation to show, and
//! where its words are). The store keeps the segments in redb and queues
//! each piece to index in the transaction that stores its text
//! (`store/search.rs`); [`actor::SearchIndexer`] builds them off the ingest
//! path, and each is written only if its text is still what it was built
//! from, so the index is exact through deletes, retention and resumes.

pub mod actor;
pub mod query;
pub mod segment;
pub mod text;

use serde::{Deserialize, Serialize};

pub use query::{Clause, Query};

use crate::model::Role;

/// BM25's term-frequency saturation and length normalisation (the usual
/// values).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The BM25 weight of a clause occurring `tf` times in a conversation of
/// `len` tokens, when `df` of the `n` conversations searched hold it and
/// they average `avg_len` tokens.
pub fn bm25(tf: f64, df: u64, n: u64, len: f64, avg_len: f64) -> f64 {
    let (df, n) = (df as f64, n.max(1) as f64);
    let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
    let norm = if avg_len > 0.0 { len / avg_len } else { 1.0 };
    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * norm))
}

/// Where a match was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MatchSource {
    Message,
    Summary,
}

/// The text of a conversation that matches a search best, cut around its
/// first match when long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snippet {
    pub source: MatchSource,
    /// For a message: its index in the transcript (0 for the first).
    pub index: Option<usize>,
    /// For a message: who wrote it.
    pub role: Option<Role>,
    /// The text (up to about 300 characters; `…` marks a cut).
    pub text: String,
    /// The matched words: `[start, end)` character (Unicode scalar) offsets in `text`.
    #[schema(value_type = Vec<Vec<usize>>)]
    pub highlights: Vec<[usize; 2]>,
}

/// Characters a snippet keeps of a long text, and before its first match.
const SNIPPET_CHARS: usize = 300;
const SNIPPET_LEAD: usize = 80;

/// What of `text` matches `query`: how many clauses, and the byte ranges
/// of the tokens matched.
fn matches_in(query: &Query, text: &str) -> (usize, Vec<(usize, usize)>) {
    let mut tokens: Vec<(Vec<u64>, usize, usize)> = Vec::new();
    text::tokens(text, |t| {
        let mut terms = Vec::with_capacity(2);
        text::index_terms(&t, |term| terms.push(term));
        tokens.push((terms, t.start, t.end));
    });
    let fits =
        |i: usize, alternatives: &[u64]| tokens[i].0.iter().any(|t| alternatives.contains(t));
    let mut clauses = 0;
    let mut ranges = Vec::new();
    for clause in &query.clauses {
        let words = clause.positions();
        let mut found = false;
        for start in 0..tokens.len() {
            if start + words.len() <= tokens.len()
                && words.iter().enumerate().all(|(j, w)| fits(start + j, w))
            {
                found = true;
                ranges.extend((start..start + words.len()).map(|i| (tokens[i].1, tokens[i].2)));
            }
        }
        clauses += usize::from(found);
    }
    ranges.sort_unstable();
    ranges.dedup();
    (clauses, ranges)
}

/// The text that matches `query` best among a conversation's messages
/// (`(role, text)` in transcript order, autoresponses excluded by the
/// caller as the index excludes them) and its summary: the one matching
/// the most clauses, the earliest among equals; `None` when none matches.
pub fn best_match<'a>(
    query: &Query,
    messages: impl IntoIterator<Item = (usize, Role, &'a str)>,
    summary: Option<&str>,
) -> Option<Snippet> {
    let mut best: Option<(usize, Snippet)> = None;
    let mut consider = |source, index, role, text: &str| {
        let (clauses, ranges) = matches_in(query, text);
        if clauses == 0 || best.as_ref().is_some_and(|(b, _)| *b >= clauses) {
            return;
        }
        best = Some((clauses, cut(source, index, role, text, &ranges)));
    };
    for (index, role, text) in messages {
        consider(MatchSource::Message, Some(index), Some(role), text);
    }
    if let Some(summary) = summary {
        consider(MatchSource::Summary, None, None, summary);
    }
    best.map(|(_, s)| s)
}

/// A snippet of `text` with its matched byte `ranges` as character offsets,
/// cut to [`SNIPPET_CHARS`] around the first when longer.
fn cut(
    source: MatchSource,
    index: Option<usize>,
    role: Option<Role>,
    text: &str,
    ranges: &[(usize, usize)],
) -> Snippet {
    let char_at = |byte: usize| text[..byte].chars().count();
    let total = text.chars().count();
    let first = ranges.first().map_or(0, |r| char_at(r.0));
    let (from, to) = if total <= SNIPPET_CHARS {
        (0, total)
    } else {
        let from = first
            .saturating_sub(SNIPPET_LEAD)
            .min(total - SNIPPET_CHARS);
        (from, from + SNIPPET_CHARS)
    };
    let lead = usize::from(from > 0);
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(text.chars().skip(from).take(to - from));
    if to < total {
        out.push('…');
    }
    let highlights = ranges
        .iter()
        .map(|&(s, e)| (char_at(s), char_at(e)))
        .filter(|&(s, e)| s >= from && e <= to)
        .map(|(s, e)| [s - from + lead, e - from + lead])
        .collect();
    Snippet {
        source,
        index,
        role,
        text: out,
        highlights,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn highlighted(s: &Snippet) -> Vec<String> {
        let chars: Vec<char> = s.text.chars().collect();
        s.highlights
            .iter()
            .map(|[a, b]| chars[*a..*b].iter().collect())
            .collect()
    }

    #[test]
    fn the_message_matching_most_clauses_is_shown_with_its_words() {
        let q = Query::parse("\"power cut\" lalitpur");
        let messages = [
            (0, Role::Customer, "Power is off"),
            (1, Role::Agent, "Is it a power cut in your area?"),
            (2, Role::Customer, "Yes, a POWER CUT in Lalitpur again"),
        ];
        let s = best_match(&q, messages, Some("power cut reported")).unwrap();
        assert_eq!(
            (s.source, s.index, s.role),
            (MatchSource::Message, Some(2), Some(Role::Customer))
        );
        assert_eq!(highlighted(&s), ["POWER", "CUT", "Lalitpur"]);
        // Only the summary has it.
        let s = best_match(
            &Query::parse("reported"),
            messages,
            Some("power cut reported"),
        )
        .unwrap();
        assert_eq!((s.source, s.index), (MatchSource::Summary, None));
        assert!(best_match(&Query::parse("meter"), messages, None).is_none());
        // Words apart are not the phrase.
        assert!(best_match(&Query::parse("\"power off\""), messages, None).is_none());
    }

    #[test]
    fn nepali_matches_in_either_script_and_long_texts_are_cut_around_it() {
        let q = Query::parse("batti chaina");
        let s = best_match(
            &q,
            [(0, Role::Customer, "नमस्ते, हाम्रो घरमा बिहानदेखि बत्ती छैन।")],
            None,
        )
        .unwrap();
        assert_eq!(highlighted(&s), ["बत्ती", "छैन"]);
        let long = format!(
            "{} the meter is broken {}",
            "x ".repeat(400),
            "y ".repeat(400)
        );
        let s = best_match(
            &Query::parse("meter"),
            [(0, Role::Agent, long.as_str())],
            None,
        )
        .unwrap();
        assert!(
            s.text.starts_with('…') && s.text.ends_with('…'),
            "{}",
            s.text
        );
        assert!(s.text.chars().count() <= SNIPPET_CHARS + 2);
        assert_eq!(highlighted(&s), ["meter"]);
    }

    #[test]
    fn rarer_and_more_frequent_weigh_more() {
        let common = bm25(1.0, 900, 1000, 50.0, 50.0);
        let rare = bm25(1.0, 3, 1000, 50.0, 50.0);
        assert!(rare > common && common > 0.0);
        assert!(bm25(3.0, 3, 1000, 50.0, 50.0) > rare);
        assert!(bm25(1.0, 3, 1000, 500.0, 50.0) < rare, "in a longer text");
    }
}
