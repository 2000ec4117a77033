//! Context words: what the words around a number say it is. An identifier
//! (`SC no. 484.91.181`), something to keep (`ticket 48213`), or a phone
//! number (`call me on 4412345`).

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::PrivacyError;

/// What a context word says about the number near it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cue {
    Id,
    Keep,
    Phone,
}

/// Words that say a number nearby is a phone number (built in).
const PHONE_WORDS: &[&str] = &[
    "phone",
    "ph",
    "tel",
    "telephone",
    "mobile",
    "mob",
    "cell",
    "call",
    "contact",
    "landline",
    "whatsapp",
    "viber",
    "फोन",
    "मोबाइल",
    "सम्पर्क",
];

/// Words that may stand between a context word and its number without
/// breaking the link: `SC no. 484.91.181`, `account number is 123456`,
/// `ग्राहक नं ५४३२१`.
const FILLER: &[&str] = &[
    "no",
    "nos",
    "num",
    "number",
    "numbers",
    "nr",
    "nbr",
    "id",
    "is",
    "was",
    "my",
    "our",
    "the",
    "of",
    "s",
    "it",
    "its",
    "code",
    "here",
    "nambar",
    "nam",
    "ho",
    "hai",
    "नं",
    "नम्बर",
    "नंबर",
    "हो",
    "को",
    "छ",
    "आईडी",
];

/// The most characters between a context word and its number, in either
/// direction, for the link to hold when the words between are not filler.
pub(super) const BEFORE_CHARS: usize = 40;
pub(super) const AFTER_CHARS: usize = 24;

/// A context word found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hit {
    pub range: Range<usize>,
    pub cue: Cue,
}

pub(super) struct Cues {
    words: AhoCorasick,
    /// The cue of each pattern of `words`.
    cues: Vec<Cue>,
}

impl Cues {
    pub fn new(id: &[String], keep: &[String]) -> Result<Self, PrivacyError> {
        let mut words = Vec::new();
        let mut cues = Vec::new();
        for (list, cue) in [(id, Cue::Id), (keep, Cue::Keep)] {
            for w in list {
                let w = w.trim();
                if w.is_empty() {
                    return Err(PrivacyError::Words(
                        "privacy.id_context and keep_context may not list an empty word".into(),
                    ));
                }
                words.push(w.to_string());
                cues.push(cue);
            }
        }
        for w in PHONE_WORDS {
            words.push(w.to_string());
            cues.push(Cue::Phone);
        }
        Ok(Self {
            words: words_matcher(&words)?,
            cues,
        })
    }

    /// The context words of `text`, in order.
    pub fn find(&self, text: &str) -> Vec<Hit> {
        whole_words(&self.words, text)
            .map(|(range, pattern)| Hit {
                range,
                cue: self.cues[pattern],
            })
            .collect()
    }
}

/// A case-insensitive matcher of whole words or phrases, longest first.
pub(super) fn words_matcher(words: &[String]) -> Result<AhoCorasick, PrivacyError> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(words)
        .map_err(|e| PrivacyError::Words(format!("cannot build the word list: {e}")))
}

/// Where `matcher` finds whole words in `text` (see [`word_bounded`]), with
/// the index of the word found.
pub(super) fn whole_words<'a>(
    matcher: &'a AhoCorasick,
    text: &'a str,
) -> impl Iterator<Item = (Range<usize>, usize)> + 'a {
    matcher
        .find_iter(text)
        .filter(|m| word_bounded(text, m.range()))
        .map(|m| (m.range(), m.pattern().as_usize()))
}

/// Whether `range` of `text` is a word of its own: no letter or digit right
/// before it, nor right after it, unless a plural `s` (`accounts`); a word
/// ending in Devanagari may take a suffix (`ग्राहकको`), and one ending in
/// punctuation (`s.c.`) needs nothing after it.
pub(super) fn word_bounded(text: &str, range: Range<usize>) -> bool {
    let before = text[..range.start].chars().next_back();
    if before.is_some_and(is_word_char) {
        return false;
    }
    let word = &text[range.clone()];
    let Some(last) = word.chars().next_back() else {
        return false;
    };
    if !last.is_alphanumeric() || is_devanagari(last) {
        return true;
    }
    let mut after = text[range.end..].chars();
    match after.next() {
        None => true,
        Some('s' | 'S') => !after.next().is_some_and(is_word_char),
        Some(c) => !is_word_char(c),
    }
}

pub(super) fn is_devanagari(c: char) -> bool {
    ('\u{0900}'..='\u{097F}').contains(&c)
}

/// Letters and digits of any script, Devanagari's signs and the joiners
/// that shape it.
pub(super) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_devanagari(c) || c == '\u{200C}' || c == '\u{200D}'
}

/// Whether `gap`, the text between a context word and its number, holds
/// only filler words and punctuation: `no. `, ` number is `, `: `.
pub(super) fn is_filler(gap: &str) -> bool {
    if gap.chars().count() > 32 {
        return false;
    }
    gap.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ':' | '#' | '=' | '-' | '(' | ')' | ',' | '.' | '\'' | '’' | '/' | '।'
            )
    })
    .filter(|t| !t.is_empty())
    .enumerate()
    .all(|(i, token)| i < 4 && FILLER.iter().any(|f| f.eq_ignore_ascii_case(token)))
}

/// What the words around `range` say about it: the cue of a context word
/// right before it (only filler between), else the cue of the nearest one
/// before it within [`BEFORE_CHARS`], else that of an identifier word
/// within [`AFTER_CHARS`] after it (`484.91.181 is my SC number`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Around {
    /// The cue right before, only filler between.
    pub adjacent: Option<Cue>,
    /// The cue of the nearest word before, or of an identifier word after.
    pub near: Option<Cue>,
}

pub(super) fn around(text: &str, hits: &[Hit], range: &Range<usize>) -> Around {
    let mut out = Around::default();
    if let Some(before) = hits.iter().rev().find(|h| h.range.end <= range.start) {
        let gap = &text[before.range.end..range.start];
        if is_filler(gap) {
            out.adjacent = Some(before.cue);
            out.near = Some(before.cue);
            return out;
        }
        if gap.chars().count() <= BEFORE_CHARS {
            out.near = Some(before.cue);
            return out;
        }
    }
    if let Some(after) = hits.iter().find(|h| h.range.start >= range.end)
        && after.cue == Cue::Id
        && text[range.end..after.range.start].chars().count() <= AFTER_CHARS
    {
        out.near = Some(Cue::Id);
    }
    out
}
