//! Numbers: phone numbers, payment cards, IPv4 addresses and identifiers,
//! told apart from the numbers the analysis needs (amounts, units, dates,
//! times, USSD codes, tickets).
//!
//! A text's digits are read as groups (`984`, `123`, `4567`), and groups
//! joined by a short separator (`-`, `.`, a space, brackets) form chains:
//! `+977-984-123-4567` is one chain of four groups. Groups inside a kept
//! number (`Rs. 5,998`, `2026-03-01`, `10:30`, `220V`, `*977#`) take no part.
//! Each chain is read from its left, the longest run of groups that is
//! something being taken first, so two numbers written one after the other
//! (`9841234567 9812345678`) come out as two. Devanagari digits count as
//! digits (`९८४१२३४५६७`).

use std::ops::Range;
use std::sync::LazyLock;

use phonenumber::country;
use regex::Regex;

use super::context::{self, Cue, Cues, Hit};
use super::{Found, Kind, PrivacyError, taken};

/// Groups a candidate may span, and the most digits it may have (a
/// 19-digit card, `00` + a 15-digit international number).
const MAX_GROUPS: usize = 6;
const MAX_DIGITS: usize = 19;

/// The regions national numbers are read in.
pub(super) struct Phones {
    regions: Vec<country::Id>,
    /// Their codes (`NP`), to find their country codes (977) when the
    /// metadata is first read.
    names: Vec<String>,
    country_codes: std::sync::OnceLock<Vec<u16>>,
}

impl Phones {
    pub fn new(regions: &[String]) -> Result<Self, PrivacyError> {
        // The metadata is read on first use (about 60 ms), not here: an
        // engine that never redacts never pays for it.
        Ok(Self {
            regions: Self::check(regions)?,
            names: regions
                .iter()
                .map(|r| r.trim().to_ascii_uppercase())
                .collect(),
            country_codes: std::sync::OnceLock::new(),
        })
    }

    pub fn check(regions: &[String]) -> Result<Vec<country::Id>, PrivacyError> {
        regions
            .iter()
            .map(|r| {
                r.trim()
                    .to_ascii_uppercase()
                    .parse::<country::Id>()
                    .map_err(|_| PrivacyError::Region(r.clone()))
            })
            .collect()
    }

    /// `digits` as a valid phone number: its E.164 form, and whether it is
    /// a fixed line (written without its trunk prefix, such a number is
    /// only taken with a phone word near it: any 8 digits are a valid
    /// Nepali landline).
    fn read(&self, digits: &str, international: bool) -> Option<(String, bool)> {
        let valid = |number: phonenumber::PhoneNumber| {
            number.is_valid().then(|| {
                let fixed = matches!(
                    number.number_type(&phonenumber::metadata::DATABASE),
                    phonenumber::Type::FixedLine
                );
                (
                    number.format().mode(phonenumber::Mode::E164).to_string(),
                    fixed,
                )
            })
        };
        if international {
            let written = if digits.starts_with("00") {
                digits.to_string()
            } else {
                format!("+{digits}")
            };
            // `00` is the international prefix of the first region (and
            // of most countries).
            return phonenumber::parse(self.regions.first().copied(), &written)
                .ok()
                .and_then(valid);
        }
        self.regions
            .iter()
            .find_map(|r| phonenumber::parse(Some(*r), digits).ok().and_then(valid))
            .or_else(|| {
                // `9779841234567`: a region's country code without its `+`.
                let codes = self.country_codes.get_or_init(|| {
                    self.names
                        .iter()
                        .filter_map(|n| phonenumber::metadata::DATABASE.by_id(n.as_str()))
                        .map(|m| m.country_code())
                        .collect()
                });
                let number = phonenumber::parse(None, format!("+{digits}")).ok()?;
                codes
                    .contains(&number.code().value())
                    .then(|| valid(number))
                    .flatten()
            })
    }
}

/// What [`find`] needs of the policy.
pub(super) struct Rules<'a> {
    pub phones: &'a Phones,
    pub cues: &'a Cues,
    pub id_min_digits: usize,
}

/// A run of digits.
#[derive(Debug, Clone)]
struct Group {
    /// Its digits in the text.
    range: Range<usize>,
    /// Its digits, ASCII, in the caller's buffer.
    digits: Range<usize>,
    /// Right after a `+` (or `(+`): the start of an international number.
    plus: bool,
    /// Right after letters and a `-` or `/` (`TKT-88213`, `INC/2231`): part
    /// of a code, never a phone or card number.
    code: bool,
    /// Right after `#` (`#48213`): a reference, kept.
    hash: bool,
    /// Inside a kept number (an amount, a date, …).
    kept: bool,
    /// Joined to the next group by a separator.
    joined: bool,
}

/// The numbers of `text` that are personal data, added to `found` where
/// nothing found before overlaps them.
pub(super) fn find(text: &str, rules: &Rules<'_>, found: &mut Vec<Found>) {
    if !text.bytes().any(|b| b.is_ascii_digit()) && !has_devanagari_digit(text) {
        return;
    }
    // Devanagari digits are read as ASCII ones; `map` takes positions back.
    let (text, map) = normalise(text);
    let kept = kept_ranges(&text);
    let mut buffer = String::new();
    let mut groups = groups(&text, &mut buffer);
    for g in &mut groups {
        let original = mapped(&map, &g.range);
        g.kept = kept
            .iter()
            .any(|k| k.start <= g.range.start && g.range.end <= k.end)
            || taken(found, &original);
    }
    let mut hits: Option<Vec<Hit>> = None;
    let mut start = 0;
    while start < groups.len() {
        // A chain: joined groups, none kept.
        if groups[start].kept {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        while end < groups.len() && groups[end - 1].joined && !groups[end].kept {
            end += 1;
        }
        let chain = &groups[start..end];
        let hits = hits.get_or_insert_with(|| rules.cues.find(&text));
        let reader = Reader {
            text: &text,
            buffer: &buffer,
            rules,
            hits,
        };
        let mut i = 0;
        while i < chain.len() {
            let last = (i + MAX_GROUPS).min(chain.len());
            let taken_here = (i..last)
                .rev()
                .find_map(|j| reader.classify(&chain[i..=j]).map(|f| (j, f)));
            match taken_here {
                Some((j, (range, kind, value))) => {
                    found.push(Found {
                        range: mapped(&map, &range),
                        kind,
                        value,
                    });
                    i = j + 1;
                }
                None => i += 1,
            }
        }
        start = end;
    }
}

struct Reader<'a> {
    text: &'a str,
    buffer: &'a str,
    rules: &'a Rules<'a>,
    hits: &'a [Hit],
}

impl Reader<'_> {
    /// What the run of `groups` is, if it is personal data: its range in
    /// the text, its kind and its normalised value.
    fn classify(&self, groups: &[Group]) -> Option<(Range<usize>, Kind, String)> {
        let first = &groups[0];
        let last = &groups[groups.len() - 1];
        let digits: String = groups
            .iter()
            .map(|g| &self.buffer[g.digits.clone()])
            .collect();
        let n = digits.len();
        if n > MAX_DIGITS {
            return None;
        }
        let gaps: Vec<&str> = groups
            .windows(2)
            .map(|w| &self.text[w[0].range.end..w[1].range.start])
            .collect();
        let mut range = first.range.start..last.range.end;
        let international = first.plus || (digits.starts_with("00") && n > 10);
        if first.plus {
            range.start = self.text[..range.start].rfind('+').unwrap_or(range.start);
        }
        // `(+977) 984…`, `(01) 4412345`: the bracket goes with it.
        if self.text[..range.start].ends_with('(') && self.text[range.clone()].contains(')') {
            range.start -= 1;
        }
        // Four dotted numbers of at most 255: an IPv4 address.
        if groups.len() == 4
            && gaps.iter().all(|g| *g == ".")
            && !first.plus
            && !self.dotted_on(&range)
        {
            let parts: Vec<u16> = groups
                .iter()
                .filter_map(|g| {
                    let d = &self.buffer[g.digits.clone()];
                    (d.len() <= 3).then(|| d.parse().ok()).flatten()
                })
                .filter(|v| *v <= 255)
                .collect();
            if parts.len() == 4 {
                let value = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[3]);
                return Some((range, Kind::Ip, value));
            }
        }
        if first.code || first.hash {
            // `TKT-88213`, `#48213`: a reference someone made, unless a
            // context word calls it an identifier.
            return self.identifier(&range, &digits, false);
        }
        // Card numbers start 2 to 6 (Mastercard, Amex, Visa, Discover,
        // UnionPay, RuPay) or 8 (RuPay).
        if !international
            && (13..=19).contains(&n)
            && matches!(digits.as_bytes()[0], b'2'..=b'6' | b'8')
            && gaps.iter().all(|g| matches!(*g, " " | "-"))
            && luhn(&digits)
            && !digits.bytes().all(|b| b == digits.as_bytes()[0])
        {
            return Some((range, Kind::Card, digits));
        }
        let around = context::around(self.text, self.hits, &range);
        if around.adjacent == Some(Cue::Id) && n >= self.rules.id_min_digits {
            return Some((range, Kind::Id, digits));
        }
        let plausible = if international {
            (8..=MAX_DIGITS).contains(&n)
        } else {
            (6..=15).contains(&n)
        };
        if plausible && let Some((e164, fixed)) = self.rules.phones.read(&digits, international) {
            let trunk = digits.starts_with('0');
            let said = around.near == Some(Cue::Phone);
            let keep = around.adjacent == Some(Cue::Keep);
            if !fixed || international || (!keep && (trunk || said)) {
                return Some((range, Kind::Phone, e164));
            }
        }
        if around.adjacent == Some(Cue::Keep) {
            return None;
        }
        // A local number without its area code, said to be a phone.
        if around.near == Some(Cue::Phone) && (6..=8).contains(&n) && !international {
            return Some((range, Kind::Phone, digits));
        }
        self.identifier(&range, &digits, around.near == Some(Cue::Id))
    }

    /// An identifier if a context word says so (`near`, or right before it).
    fn identifier(
        &self,
        range: &Range<usize>,
        digits: &str,
        near: bool,
    ) -> Option<(Range<usize>, Kind, String)> {
        if digits.len() < self.rules.id_min_digits {
            return None;
        }
        let around = context::around(self.text, self.hits, range);
        (near || around.near == Some(Cue::Id) || around.adjacent == Some(Cue::Id)).then(|| {
            // A code's letters go with its digits: `CUST-00123` is one value.
            let start = code_start(self.text, range.start);
            (start..range.end, Kind::Id, digits.to_string())
        })
    }

    /// Whether more dotted digits continue the run on either side (a
    /// version such as `1.2.3.4.5` is no address).
    fn dotted_on(&self, range: &Range<usize>) -> bool {
        let before = self.text[..range.start]
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>();
        let after = self.text[range.end..].chars().take(2).collect::<Vec<_>>();
        let digit_after_dot = |cs: &[char]| cs.len() == 2 && cs[0] == '.' && cs[1].is_ascii_digit();
        digit_after_dot(&before) || digit_after_dot(&after)
    }
}

/// Where the code a run of digits ends (`CUST-00123`, `NEA/4412`,
/// `NEA1234567`) starts: its letters go with its digits.
fn code_start(text: &str, digits_start: usize) -> usize {
    let head = &text[..digits_start];
    let letters = head
        .strip_suffix(['-', '/'])
        .filter(|h| h.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(head);
    let start = letters
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric())
        .last()
        .map_or(letters.len(), |(i, _)| i);
    if start < letters.len() {
        start
    } else {
        digits_start
    }
}

/// The Luhn check of payment card numbers.
pub(super) fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Separators that join the groups of one number: `984-123-4567`,
/// `98412 34567`, `484.91.181`, `(01) 4412345`.
fn joins(gap: &str) -> bool {
    !gap.is_empty()
        && gap.chars().count() <= 3
        && gap.chars().all(|c| {
            matches!(
                c,
                ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}' | '\u{2010}' | '\u{2011}' | '\u{2013}'
            )
        })
        && gap.chars().filter(|c| *c == ' ').count() <= 2
}

fn groups(text: &str, buffer: &mut String) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let head = &text[..start];
        let mut back = head.chars().rev();
        let plus = matches!(
            (back.next(), back.next()),
            (Some('+'), _) | (Some(' '), Some('+'))
        );
        let code = {
            let mut back = head.chars().rev();
            matches!(back.next(), Some('-' | '/')) && back.next().is_some_and(|c| c.is_alphabetic())
        };
        let hash = head.ends_with('#') || head.ends_with("# ");
        // Attached to letters or digits-with-letters (`abc123`, `12ab`):
        // a word, not a number (`v2`, `4G`).
        let glued_before = head.chars().next_back().is_some_and(char::is_alphabetic);
        let glued_after =
            text[i..].chars().next().is_some_and(char::is_alphabetic) && !unit_after(&text[i..]);
        if let Some(prev) = groups.last_mut() {
            prev.joined = joins(&text[prev.range.end..start]);
        }
        let d = buffer.len();
        buffer.push_str(&text[start..i]);
        groups.push(Group {
            range: start..i,
            digits: d..buffer.len(),
            plus,
            code,
            hash,
            kept: false,
            joined: false,
        });
        if glued_before || glued_after {
            // `v2`, `4G`, `NEA123` are words, not numbers; a phone-length
            // run stays one even when glued (`call9841234567`).
            let g = groups.last_mut().expect("just pushed");
            g.kept = g.range.len() < 7;
        }
    }
    groups
}

/// Whether a unit or suffix follows right after digits (`220V`, `5kWh`,
/// `10am`, `2nd`): letters that do not make the number a word.
fn unit_after(rest: &str) -> bool {
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphabetic())
        .take(6)
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        word.as_str(),
        "v" | "kv"
            | "kva"
            | "w"
            | "kw"
            | "kwh"
            | "a"
            | "amp"
            | "amps"
            | "hz"
            | "am"
            | "pm"
            | "st"
            | "nd"
            | "rd"
            | "th"
            | "hrs"
            | "hr"
            | "h"
            | "min"
            | "mins"
            | "k"
            | "rs"
    )
}

fn has_devanagari_digit(text: &str) -> bool {
    text.chars().any(|c| ('०'..='९').contains(&c))
}

/// `text` with Devanagari digits made ASCII, and (then) the position in
/// `text` of each byte of the result.
fn normalise(text: &str) -> (std::borrow::Cow<'_, str>, Option<Vec<usize>>) {
    if !has_devanagari_digit(text) {
        return (std::borrow::Cow::Borrowed(text), None);
    }
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        if ('०'..='९').contains(&c) {
            out.push(char::from(b'0' + (c as u32 - '०' as u32) as u8));
            map.push(i);
        } else {
            out.push(c);
            map.extend(std::iter::repeat_n(i, c.len_utf8()));
        }
    }
    map.push(text.len());
    (std::borrow::Cow::Owned(out), Some(map))
}

fn mapped(map: &Option<Vec<usize>>, range: &Range<usize>) -> Range<usize> {
    match map {
        None => range.clone(),
        Some(m) => m[range.start]..m[range.end],
    }
}

/// Amounts before or after their currency, dates, times, units and USSD
/// codes: kept.
static KEPT: LazyLock<[Regex; 6]> = LazyLock::new(|| {
    let amount = r"[0-9]{1,3}(?:,[0-9]{2,3})+(?:\.[0-9]{1,2})?|[0-9]{1,9}(?:\.[0-9]{1,2})?";
    [
        // Rs. 5,998 · NPR 1200 · रु. ५००० · $12.50
        Regex::new(&format!(r"(?i)(?:rs|nrs|npr|inr|usd|रु|रू)\.?\s?(?:{amount})|\$\s?(?:{amount})"))
            .expect("amount"),
        // 5,998 rupees · 500/- · 1200 रुपैयाँ
        Regex::new(&format!(
            r"(?i)(?:{amount})\s?(?:/-|rupees?|rupiya|rs\.?|npr|रुपैयाँ|रुपियाँ|रूपैयाँ|रुपैंया)"
        ))
        .expect("amount after"),
        // 2026-03-01 · 2082/11/17 · 01/03/2026 · 1/3/26
        Regex::new(
            r"(?:19|20)[0-9]{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[0-2])|(?:0?[1-9]|[12][0-9]|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)[0-9]{2}|(?:0?[1-9]|[12][0-9]|3[01])/(?:0?[1-9]|1[0-2])/[0-9]{2}",
        )
        .expect("date"),
        // 10:30 · 09:15:02 · 4.30 pm · 5 baje
        Regex::new(
            r"(?i)(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?(?:\s?(?:am|pm|a\.m\.|p\.m\.))?|(?:[01]?[0-9]|2[0-3])(?:\.[0-5][0-9])?\s?(?:am|pm|a\.m\.|p\.m\.|baje|बजे)",
        )
        .expect("time"),
        // 220V · 11 kV · 450 units · 5 kWh · 15 A · 60 Hz · 16 sq mm · 20%
        Regex::new(
            r"(?i)[0-9]{1,6}(?:\.[0-9]{1,3})?\s?(?:kwh|kw|kva|kv|v|volts?|w|watts?|units?|amps?|a|hz|sq\.?\s?mm|mm|%|percent|भोल्ट|युनिट|यूनिट|एम्पियर)",
        )
        .expect("unit"),
        // *977# · *400*1#
        Regex::new(r"\*[0-9*]+#").expect("ussd"),
    ]
});

/// Where `text` holds numbers that are kept.
fn kept_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for (i, re) in KEPT.iter().enumerate() {
        for m in re.find_iter(text) {
            let r = m.range();
            let ascii_word_start = text[r.clone()]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
            let before = text[..r.start].chars().next_back();
            let after = text[r.end..].chars().next();
            // Not the middle of a longer number or word.
            let before_ok = match before {
                None => true,
                Some(c) if c.is_ascii_digit() => false,
                Some(c) if ascii_word_start => !c.is_alphanumeric(),
                Some('.' | ':' | ',') => {
                    !text[..r.start - 1].ends_with(|c: char| c.is_ascii_digit())
                }
                Some(_) => true,
            };
            let ends_in_word = text[..r.end].ends_with(|c: char| c.is_alphabetic());
            let after_ok = match after {
                None => true,
                Some(c) if c.is_ascii_digit() => false,
                Some(c) if ends_in_word => !c.is_alphanumeric(),
                Some('.' | ':' | ',' | '-' | '/') => {
                    // `10:30.` ends a sentence; `10:30.5` or `01-44` go on.
                    !text[r.end + 1..].starts_with(|c: char| c.is_ascii_digit())
                }
                Some(_) => true,
            };
            // A unit is kept only on a short number (a 10-digit phone
            // number followed by `a` is still a phone number).
            let short = i != 4 || text[r.clone()].bytes().filter(u8::is_ascii_digit).count() <= 6;
            if before_ok && after_ok && short {
                out.push(r);
            }
        }
    }
    out
}
