//! Senders' names: each part of the names a conversation's customers and
//! agents have in the export (`Message::sender_name`), wherever it appears
//! in its texts. `Sita Kumari Sharma` makes `Sita`, `Kumari` and `Sharma`
//! the same person: `Sharma ji` and `sita` both become that person's
//! placeholder, and `Sita Sharma` one placeholder, not two.

use super::context::{is_devanagari, is_word_char};
use super::{Found, Kind, taken};

/// Words of a sender name that are not a name: titles, roles, the
/// utility's own words.
const NOT_NAMES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "dr",
    "er",
    "sir",
    "madam",
    "maam",
    "ji",
    "jee",
    "dai",
    "didi",
    "bhai",
    "customer",
    "client",
    "agent",
    "support",
    "team",
    "helpdesk",
    "help",
    "desk",
    "care",
    "service",
    "services",
    "center",
    "centre",
    "officer",
    "staff",
    "operator",
    "admin",
    "user",
    "guest",
    "unknown",
    "anonymous",
    "bot",
    "system",
    "live",
    "chat",
    "the",
    "and",
    "of",
    "na",
    "null",
    "none",
    "nea",
    "श्री",
    "जी",
    "ज्यू",
    "दाइ",
    "दिदी",
];

/// Name parts that are also everyday words: taken only written with a
/// capital (`Bill` the customer, not `my bill`), or where someone says it
/// is their name (`I am bill`, `bill here`).
const EVERYDAY_WORDS: &[&str] = &[
    "bill", "will", "may", "mark", "hope", "joy", "grace", "rose", "sunny", "summer", "faith",
    "dawn", "ray", "art", "rich", "page", "light", "power", "case", "chance", "king", "young",
    "white", "black", "brown", "green", "long", "little", "asha", "shanti", "jyoti", "bijuli",
];

/// Nepali postpositions written onto a name: `रामको` (Ram's), `सीतालाई`.
const DEVANAGARI_SUFFIXES: &[&str] = &[
    "को",
    "का",
    "की",
    "लाई",
    "ले",
    "जी",
    "ज्यू",
    "सँग",
    "बाट",
    "मा",
    "हरू",
];

#[derive(Debug, Clone)]
struct Part {
    /// Lower case.
    text: String,
    person: usize,
    capital_only: bool,
    devanagari: bool,
}

/// The names of one conversation's senders.
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    parts: Vec<Part>,
    /// Each person's name, lower case, parts joined by a space: their
    /// placeholder's value.
    people: Vec<String>,
}

impl Names {
    /// Adds a sender's name (once per distinct name).
    pub fn add(&mut self, name: &str) {
        let parts: Vec<String> = name
            .split(|c: char| !is_word_char(c))
            .filter(|p| !p.is_empty())
            .map(str::to_lowercase)
            .collect();
        let useful: Vec<&String> = parts
            .iter()
            .filter(|p| {
                p.chars().count() >= 2
                    && !p.chars().any(|c| c.is_ascii_digit())
                    && !NOT_NAMES.contains(&p.as_str())
            })
            .collect();
        if useful.is_empty() {
            return;
        }
        let whole = useful
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if self.people.contains(&whole) {
            return;
        }
        let person = self.people.len();
        self.people.push(whole);
        for p in useful {
            // A part two people share stays the first one's.
            if self.parts.iter().any(|known| known.text == *p) {
                continue;
            }
            self.parts.push(Part {
                capital_only: EVERYDAY_WORDS.contains(&p.as_str()),
                devanagari: p.chars().any(is_devanagari),
                text: p.clone(),
                person,
            });
        }
    }

    /// Adds each run of name words in `text` (of one person, with only
    /// spaces between) to `found`, where nothing found before overlaps it.
    pub fn find(&self, text: &str, found: &mut Vec<Found>) {
        if self.parts.is_empty() {
            return;
        }
        let mut run: Option<(usize, usize, usize)> = None; // start, end, person
        let before = found.len();
        let flush = |run: &mut Option<(usize, usize, usize)>, found: &mut Vec<Found>| {
            if let Some((start, end, person)) = run.take()
                && !taken(&found[..before], &(start..end))
            {
                found.push(Found {
                    range: start..end,
                    kind: Kind::Name,
                    value: self.people[person].clone(),
                });
            }
        };
        for (start, end) in words(text) {
            let word = &text[start..end];
            let Some(person) = self.person_of(word, || introduced(text, start, end)) else {
                flush(&mut run, found);
                continue;
            };
            match &mut run {
                Some((_, run_end, run_person))
                    if *run_person == person
                        && text[*run_end..start].chars().all(char::is_whitespace) =>
                {
                    *run_end = end;
                }
                _ => {
                    flush(&mut run, found);
                    run = Some((start, end, person));
                }
            }
        }
        flush(&mut run, found);
    }

    fn person_of(&self, word: &str, introduced: impl Fn() -> bool) -> Option<usize> {
        self.parts
            .iter()
            .find(|p| matches_part(word, p, &introduced))
            .map(|p| p.person)
    }
}

/// Whether the word at `start..end` is said to be a name: `I am bill`,
/// `this is bill`, `my name is bill`, `bill here`, `bill ji`.
fn introduced(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].trim_end().to_lowercase();
    let after = text[end..].trim_start().to_lowercase();
    [
        "i am",
        "i'm",
        "im",
        "this is",
        "name is",
        "name:",
        "naam",
        "mero naam",
    ]
    .iter()
    .any(|w| {
        before.ends_with(w)
            && !before[..before.len() - w.len()].ends_with(|c: char| c.is_alphanumeric())
    }) || ["here", "ji", "jee", "speaking"].iter().any(|w| {
        after.starts_with(w) && !after[w.len()..].starts_with(|c: char| c.is_alphanumeric())
    })
}

fn matches_part(word: &str, part: &Part, introduced: impl Fn() -> bool) -> bool {
    if part.devanagari {
        return word
            .strip_prefix(part.text.as_str())
            .is_some_and(|rest| rest.is_empty() || DEVANAGARI_SUFFIXES.contains(&rest));
    }
    if word.len() != part.text.len() && word.is_ascii() {
        return false;
    }
    let same = if word.is_ascii() {
        word.eq_ignore_ascii_case(&part.text)
    } else {
        word.to_lowercase() == part.text
    };
    same && (!part.capital_only || word.starts_with(char::is_uppercase) || introduced())
}

/// The words of `text`, as byte ranges.
fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.find(|(_, c)| is_word_char(*c))?;
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if !is_word_char(c) {
                end = i;
                break;
            }
            chars.next();
        }
        Some((start, end))
    })
}
