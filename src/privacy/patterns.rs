//! The recognisers that are patterns: e-mail addresses, IBANs, IPv6
//! addresses, the operator's deny-list and `[[privacy.patterns]]`.

use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexBuilder};

use super::context::{self, is_word_char};
use super::{Found, Kind, PrivacyError, taken};
use crate::config::PatternSettings;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    // Local parts and domains in any script (internationalised addresses:
    // `सीता.शर्मा@…`).
    Regex::new(
        r"[\p{L}\p{M}\p{N}._%+\-]+@[\p{L}\p{M}\p{N}\-]+(?:\.[\p{L}\p{M}\p{N}\-]+)*\.\p{L}{2,24}",
    )
    .expect("email")
});

/// Two letters, two check digits, 11 to 30 letters or digits, in groups of
/// four or not.
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}").expect("iban"));

pub(super) fn emails(text: &str, found: &mut Vec<Found>) {
    if !text.contains('@') {
        return;
    }
    for m in EMAIL.find_iter(text) {
        let range = m.range();
        if taken(found, &range) {
            continue;
        }
        found.push(Found {
            value: m.as_str().to_lowercase(),
            range,
            kind: Kind::Email,
        });
    }
}

pub(super) fn ibans(text: &str, found: &mut Vec<Found>) {
    // Fifteen characters at least, two of them digits: most texts have none.
    if text.len() < 15 || text.bytes().filter(u8::is_ascii_digit).count() < 4 {
        return;
    }
    for m in IBAN.find_iter(text) {
        let start = m.start();
        if text[..start].chars().next_back().is_some_and(is_word_char) {
            continue;
        }
        // The pattern may run on into the next word (`… 32 and`): the
        // longest prefix ending on a word boundary that checks is the IBAN.
        let candidate = m.as_str();
        let ends = candidate
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .filter(|&end| !text[start + end..].starts_with(|c: char| c.is_ascii_alphanumeric()))
            .rev();
        for end in ends {
            let compact: String = candidate[..end]
                .chars()
                .filter(|c| *c != ' ')
                .map(|c| c.to_ascii_uppercase())
                .collect();
            if compact.len() < 15 {
                break;
            }
            let range = start..start + end;
            if iban_checks(&compact) && !taken(found, &range) {
                found.push(Found {
                    range,
                    kind: Kind::Iban,
                    value: compact,
                });
                break;
            }
        }
    }
}

/// ISO 13616: the country and check digits moved to the end, letters as
/// 10..35, the whole number mod 97 is 1.
pub(super) fn iban_checks(iban: &str) -> bool {
    if !(15..=34).contains(&iban.len()) || !iban.is_ascii() {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut remainder = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

pub(super) fn ipv6(text: &str, found: &mut Vec<Found>) {
    if text.bytes().filter(|b| *b == b':').count() < 2 {
        return;
    }
    let is_part = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
    let mut rest = text.char_indices().peekable();
    while let Some((start, c)) = rest.next() {
        if !is_part(c) || text[..start].chars().next_back().is_some_and(is_word_char) {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = rest.peek() {
            if !is_part(c) {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        if text[end..].starts_with(is_word_char) {
            continue;
        }
        let candidate = text[start..end].trim_end_matches(['.', ':']);
        let range = start..start + candidate.len();
        let colons = candidate.matches(':').count();
        if colons >= 2
            && candidate.contains(|c: char| c.is_ascii_hexdigit())
            && let Ok(ip) = candidate.parse::<Ipv6Addr>()
            && !taken(found, &range)
        {
            found.push(Found {
                range,
                kind: Kind::Ip,
                value: ip.to_string(),
            });
        }
    }
}

/// `privacy.deny`: words and phrases always redacted.
pub(super) struct Deny {
    words: AhoCorasick,
}

impl Deny {
    pub fn new(words: &[String]) -> Result<Option<Self>, PrivacyError> {
        let words: Vec<String> = words
            .iter()
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            words: context::words_matcher(&words)?,
        }))
    }

    pub fn find(&self, text: &str, found: &mut Vec<Found>) {
        for (range, _) in context::whole_words(&self.words, text) {
            found.push(Found {
                value: text[range.clone()].to_lowercase(),
                range,
                kind: Kind::Denied,
            });
        }
    }
}

/// One `[[privacy.patterns]]` entry, compiled.
pub(super) struct Pattern {
    index: u16,
    name: String,
    /// The name in capitals: `<LABEL_n>`.
    label: String,
    regex: Regex,
    context: Option<AhoCorasick>,
}

/// Most operator patterns a policy may have.
const MAX_PATTERNS: usize = 64;

impl Pattern {
    pub fn new(index: usize, settings: &PatternSettings) -> Result<Self, PrivacyError> {
        let fail = |reason: String| PrivacyError::Pattern {
            index,
            name: settings.name.clone(),
            reason,
        };
        if index >= MAX_PATTERNS {
            return Err(fail(format!("at most {MAX_PATTERNS} patterns")));
        }
        let name = settings.name.trim();
        let well_named = !name.is_empty()
            && name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_named {
            return Err(fail(
                "a name is 1 to 32 lower-case letters, digits or _, starting with a letter".into(),
            ));
        }
        let builtin = super::Kind::BUILT_IN
            .iter()
            .filter_map(|k| k.builtin_name())
            .chain(["redacted"]);
        if builtin.clone().any(|b| b == name) {
            return Err(fail(format!(
                "the name is a built-in kind ({})",
                builtin.collect::<Vec<_>>().join(", ")
            )));
        }
        let regex = RegexBuilder::new(&settings.regex)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| fail(format!("invalid regex: {e}")))?;
        if regex.is_match("") {
            return Err(fail("the regex matches the empty text".into()));
        }
        let context = if settings.context.iter().any(|w| !w.trim().is_empty()) {
            let words: Vec<String> = settings
                .context
                .iter()
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect();
            Some(context::words_matcher(&words)?)
        } else {
            None
        };
        Ok(Self {
            index: index as u16,
            label: name.to_ascii_uppercase(),
            name: name.to_string(),
            regex,
            context,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn find(&self, text: &str, found: &mut Vec<Found>) {
        let mut words: Option<Vec<Range<usize>>> = None;
        for m in self.regex.find_iter(text) {
            let range = m.range();
            if range.is_empty() {
                continue;
            }
            if let Some(context) = &self.context {
                let words = words.get_or_insert_with(|| {
                    context::whole_words(context, text)
                        .map(|(r, _)| r)
                        .collect()
                });
                let near = words.iter().any(|w| {
                    (w.end <= range.start
                        && text[w.end..range.start].chars().count() <= context::BEFORE_CHARS)
                        || (w.start >= range.end
                            && text[range.end..w.start].chars().count() <= context::AFTER_CHARS)
                });
                if !near {
                    continue;
                }
            }
            found.push(Found {
                value: m.as_str().trim().to_string(),
                range,
                kind: Kind::Pattern(self.index),
            });
        }
    }
}
