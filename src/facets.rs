//! What a conversation is, besides how it went: who handled it (the agent)
//! and which language the customer wrote in. Both are read from the
//! messages, locally, whatever the analyzer, and stored with the
//! conversation's record.
//!
//! Plain code. Language detection uses [`whatlang`] (trigram models, no
//! network, no tokens) over the customer's first messages:
//! - Devanagari is Nepali or Hindi by their common words and Nepali's verb
//!   endings (छ, छैन, भयो, मेरो, -यो, -एन, -एको against है, नहीं, मेरा …),
//!   which whatlang's trigrams confuse in short messages; otherwise whatlang
//!   tells Nepali, Hindi and Marathi apart;
//! - romanised Nepali ("bijuli chaina", "kina yesto bhayo") is Latin script
//!   that trigram models take for some other language: it is recognised by
//!   its common words (two distinct ones at least) before whatlang is asked;
//! - Latin text with two or more distinct English function words ("the",
//!   "is", "my" …) making up a fifth of its words is English without asking
//!   whatlang (most support messages: this keeps detection cheap);
//! - other scripts and the remaining Latin text go to whatlang; an answer it
//!   does not call reliable is kept only for text of 40 characters or more
//!   (shorter ones, "ok", "thanks!", stay unknown).
//!
//! Languages are reported as ISO 639-1 codes (`en`, `ne`, `hi`, …).

use std::collections::HashMap;
use std::sync::LazyLock;

use whatlang::{Detector, Lang, Script};

use crate::model::{Conversation, Role};

/// A conversation's agent and language, read together (for a free analyzer
/// on the pool's threads beside the analysis, so the batch's reading is
/// shared out like its analysis; for a costly one as its batch is loaded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facets {
    pub agent: Option<String>,
    pub language: Option<&'static str>,
}

impl Facets {
    pub fn of(conversation: &Conversation) -> Self {
        Self {
            agent: agent(conversation),
            language: language(conversation),
        }
    }
}

/// The conversation's agent: the sender name of most of its agent messages
/// (the first one among equals). `None` when no agent message has a name.
pub fn agent(conversation: &Conversation) -> Option<String> {
    // (name, messages, first position): conversations have few agents.
    let mut names: Vec<(&str, u32, usize)> = Vec::new();
    for (i, m) in conversation.analysable().enumerate() {
        if m.role != Role::Agent {
            continue;
        }
        let Some(name) = m
            .sender_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        match names.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => entry.1 += 1,
            None => names.push((name, 1, i)),
        }
    }
    names
        .into_iter()
        .max_by_key(|(_, count, first)| (*count, std::cmp::Reverse(*first)))
        .map(|(name, _, _)| crate::model::truncate_chars(name, MAX_AGENT_CHARS))
}

/// Longest agent name kept, in characters.
pub const MAX_AGENT_CHARS: usize = 100;

/// Shortest text an unreliable whatlang answer is kept for.
const UNRELIABLE_MIN_CHARS: usize = 40;

/// Customer text read for language detection: the start says enough (and
/// whatlang's time grows with it: it was 40 % of a lexicon run at 1,000).
const LANGUAGE_SAMPLE_BYTES: usize = 400;

/// The main language of the customer's messages, as an ISO 639-1 code.
pub fn language(conversation: &Conversation) -> Option<&'static str> {
    // The sample ends with the message that takes it past the limit.
    let mut sample = String::with_capacity(2 * LANGUAGE_SAMPLE_BYTES);
    for m in conversation
        .analysable()
        .filter(|m| m.role == Role::Customer)
    {
        if sample.len() >= LANGUAGE_SAMPLE_BYTES {
            break;
        }
        sample.push_str(&m.text);
        sample.push('\n');
    }
    language_of_text(&sample)
}

/// The language of `text` (see the module's notes).
pub fn language_of_text(text: &str) -> Option<&'static str> {
    let script = script_of(text)?;
    match script {
        Script::Latin => {
            let words = LatinWords::count(text);
            if words.romanised_nepali >= 2 {
                return Some("ne");
            }
            if words.english_distinct >= 2 && words.english * 5 >= words.total {
                return Some("en");
            }
        }
        Script::Devanagari => {
            let (nepali, hindi) = devanagari_markers(text);
            if nepali != hindi {
                return Some(if nepali > hindi { "ne" } else { "hi" });
            }
        }
        _ => {}
    }
    let info = if script == Script::Devanagari {
        Detector::with_allowlist(vec![Lang::Nep, Lang::Hin, Lang::Mar]).detect(text)?
    } else {
        whatlang::detect(text)?
    };
    // A guess whatlang itself does not trust, on a short text, is no answer.
    if !info.is_reliable() && text.chars().count() < UNRELIABLE_MIN_CHARS {
        return None;
    }
    iso_639_1(info.lang())
}

/// The script most of `text`'s letters are in, as whatlang says; ASCII text
/// (most exports) is Latin when it has a letter at all, answered without
/// whatlang's walk of every character through every script.
fn script_of(text: &str) -> Option<Script> {
    if text.is_ascii() {
        return text
            .bytes()
            .any(|b| b.is_ascii_alphabetic())
            .then_some(Script::Latin);
    }
    whatlang::detect_script(text)
}

/// Common Nepali words in Devanagari that Hindi does not use (sorted), and
/// endings of Nepali verb forms and postpositions ("काटियो", "देखिएन", "तिरिएको").
const NEPALI_WORDS: &[&str] = &[
    "अहिले",
    "आयो",
    "कहिले",
    "किन",
    "गयो",
    "गरिदिनुहोस्",
    "गरियो",
    "गरें",
    "गर्दा",
    "गर्न",
    "गर्नु",
    "छ",
    "छन्",
    "छु",
    "छैन",
    "तपाईं",
    "तपाईंको",
    "तर",
    "थियो",
    "धन्यवाद",
    "धेरै",
    "पनि",
    "भएको",
    "भएन",
    "भयो",
    "मेरो",
    "लाई",
    "सम्म",
    "हजुर",
    "हाम्रो",
    "हिजो",
    "हुन्छ",
    "होला",
];
const NEPALI_ENDINGS: &[&str] = &["यो", "एन", "एको", "ेको", "छैन", "छन्", "ैन", "हरू"];

/// Common Hindi words in Devanagari that Nepali does not use. Sorted.
const HINDI_WORDS: &[&str] = &[
    "अभी",
    "आपका",
    "आपकी",
    "कब",
    "क्या",
    "क्यों",
    "गई",
    "गया",
    "तक",
    "था",
    "थी",
    "नहीं",
    "पर",
    "बहुत",
    "मेरा",
    "मेरी",
    "रहा",
    "रही",
    "लेकिन",
    "शुक्रिया",
    "हमारा",
    "हमारी",
    "है",
    "हैं",
];

/// Nepali and Hindi marker words in Devanagari text.
fn devanagari_markers(text: &str) -> (usize, usize) {
    let (mut nepali, mut hindi) = (0, 0);
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || matches!(c, '।' | '॥'))
        .filter(|w| !w.is_empty())
    {
        if NEPALI.find(word.as_bytes()).is_some()
            || NEPALI_ENDINGS.iter().any(|e| word.ends_with(e))
        {
            nepali += 1;
        } else if HINDI.find(word.as_bytes()).is_some() {
            hindi += 1;
        }
    }
    (nepali, hindi)
}

/// English function words that are not words of the other Latin-script
/// languages whatlang knows (no "a", "no", "in", "to", "de"). Sorted.
const ENGLISH_WORDS: &[&str] = &[
    "and", "are", "been", "but", "can", "could", "for", "has", "have", "how", "i", "is", "it",
    "my", "our", "please", "since", "thank", "thanks", "that", "the", "there", "they", "this",
    "was", "we", "were", "what", "when", "why", "will", "with", "would", "you", "your",
];

/// Common romanised Nepali words that are not English words. Sorted.
const ROMANISED_NEPALI: &[&str] = &[
    "aayo",
    "ahile",
    "aile",
    "ayo",
    "bata",
    "batti",
    "bhako",
    "bhanda",
    "bhayo",
    "bijuli",
    "cha",
    "chaina",
    "chaiyo",
    "chha",
    "chhaina",
    "dhanyabad",
    "dhanyawad",
    "dinu",
    "dinus",
    "gareko",
    "garna",
    "garnu",
    "garnus",
    "gayo",
    "hajur",
    "hamro",
    "haru",
    "huncha",
    "hunchha",
    "kaha",
    "kahile",
    "kasto",
    "kati",
    "kina",
    "lagyo",
    "mero",
    "paisa",
    "pani",
    "ramro",
    "samma",
    "tapaai",
    "tapai",
    "tirna",
    "tiryo",
    "tyo",
    "xa",
    "xaina",
    "yo",
];

/// A fixed word list, looked up by hash: a binary search of string
/// compares was most of the cost of detecting a language.
struct WordList(HashMap<&'static [u8], usize, foldhash::fast::FixedState>);

impl WordList {
    fn new(words: &'static [&'static str]) -> Self {
        let mut map = HashMap::with_capacity_and_hasher(words.len(), Default::default());
        for (i, w) in words.iter().enumerate() {
            map.insert(w.as_bytes(), i);
        }
        Self(map)
    }

    /// The word's index in the list.
    fn find(&self, word: &[u8]) -> Option<usize> {
        self.0.get(word).copied()
    }
}

static ENGLISH: LazyLock<WordList> = LazyLock::new(|| WordList::new(ENGLISH_WORDS));
static ROMANISED: LazyLock<WordList> = LazyLock::new(|| WordList::new(ROMANISED_NEPALI));
static NEPALI: LazyLock<WordList> = LazyLock::new(|| WordList::new(NEPALI_WORDS));
static HINDI: LazyLock<WordList> = LazyLock::new(|| WordList::new(HINDI_WORDS));

/// Counts over the words of Latin-script text, in one pass.
#[derive(Default)]
struct LatinWords {
    total: usize,
    english: usize,
    english_distinct: usize,
    romanised_nepali: usize,
}

impl LatinWords {
    fn count(text: &str) -> Self {
        let mut c = LatinWords::default();
        // Distinct hits, by index in their (short) lists.
        let (mut english_seen, mut nepali_seen) = (0u64, 0u64);
        let mut lower = [0u8; 12];
        // By bytes: no byte of a multi-byte character is ASCII, so words
        // split exactly as by characters.
        for word in text
            .as_bytes()
            .split(|b| !b.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
        {
            c.total += 1;
            // No listed word is longer: longer ones are counted, not looked up.
            let Some(buf) = lower.get_mut(..word.len()) else {
                continue;
            };
            for (b, w) in buf.iter_mut().zip(word) {
                *b = w.to_ascii_lowercase();
            }
            if let Some(i) = ENGLISH.find(buf) {
                c.english += 1;
                english_seen |= 1 << i;
            } else if let Some(i) = ROMANISED.find(buf) {
                nepali_seen |= 1 << i;
            }
        }
        c.english_distinct = english_seen.count_ones() as usize;
        c.romanised_nepali = nepali_seen.count_ones() as usize;
        c
    }
}

/// ISO 639-1 for the languages whatlang knows (Esperanto and the rest all
/// have one; none is left out).
fn iso_639_1(lang: Lang) -> Option<&'static str> {
    use Lang::*;
    Some(match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    fn message(role: Role, name: Option<&str>, text: &str) -> Message {
        Message {
            role,
            text: text.into(),
            timestamp: None,
            time_ms: None,
            sender_name: name.map(str::to_string),
            autoresponse: false,
        }
    }

    proptest::proptest! {
        #[test]
        fn the_script_is_whatlangs(text in "[\\x00-\\x7f]{0,80}|\\PC{0,40}") {
            proptest::prop_assert_eq!(script_of(&text), whatlang::detect_script(&text));
        }
    }

    fn conversation(messages: Vec<Message>) -> Conversation {
        Conversation {
            id: "c".into(),
            messages,
        }
    }

    #[test]
    fn the_agent_is_the_most_frequent_named_one_the_first_among_equals() {
        let c = conversation(vec![
            message(Role::Customer, Some("Hari"), "hi"),
            message(Role::Agent, Some("Sita"), "hello"),
            message(Role::Agent, Some(" Ram "), "taking over"),
            message(Role::Agent, Some("Ram"), "done"),
            message(Role::Bot, Some("Bot"), "bye"),
        ]);
        assert_eq!(agent(&c).as_deref(), Some("Ram"));
        let c = conversation(vec![
            message(Role::Agent, Some("Sita"), "hello"),
            message(Role::Agent, Some("Ram"), "hi"),
        ]);
        assert_eq!(agent(&c).as_deref(), Some("Sita"));
        let mut c = conversation(vec![
            message(Role::Agent, None, "hello"),
            message(Role::Agent, Some("  "), "hello"),
            message(Role::Agent, Some("Canned"), "dial *977#"),
        ]);
        c.messages[2].autoresponse = true;
        assert_eq!(agent(&c), None, "unnamed, blank and autoresponses");
    }

    #[test]
    fn languages_of_a_nepal_utility_desk() {
        let cases = [
            (
                "There is no power in our street since morning, please help.",
                Some("en"),
            ),
            ("हाम्रो घरमा बिहानदेखि बत्ती छैन, कहिले आउँछ?", Some("ne")),
            ("मेरो बिल धेरै आयो, कृपया जाँच गरिदिनुहोस्।", Some("ne")),
            ("bijuli chaina hajur, kina yesto bhayo?", Some("ne")),
            (
                "mero meter ko reading milena, kati tirna parcha?",
                Some("ne"),
            ),
            ("हमारे घर में सुबह से बिजली नहीं है, क्या हुआ?", Some("hi")),
            ("ok", None),
            ("My meter display is blank.\nOkay.", Some("en")),
            (
                "Power cut again in Lalitpur ward 3, what is happening?",
                Some("en"),
            ),
            ("खल्तीबाट पैसा काटियो तर बिल तिरिएको देखिएन।", Some("ne")),
            (
                "Hola, no tengo luz en mi casa desde la mañana, por favor ayúdenme.",
                Some("es"),
            ),
            (
                "Bonjour, je n'ai plus d'électricité depuis ce matin.",
                Some("fr"),
            ),
            ("🙏🙏", None),
        ];
        for (text, expected) in cases {
            assert_eq!(language_of_text(text), expected, "{text}");
        }
    }

    #[test]
    fn the_word_lists_are_distinct_and_fit_the_buffer() {
        for list in [ENGLISH_WORDS, ROMANISED_NEPALI] {
            assert!(list.iter().all(|w| w.len() <= 12 && w.is_ascii()));
            assert!(list.len() <= 64, "the distinct hits are a u64 bitset");
        }
        for list in [ENGLISH_WORDS, ROMANISED_NEPALI, NEPALI_WORDS, HINDI_WORDS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }

    #[test]
    fn a_word_list_finds_its_words_and_nothing_else() {
        for words in [ENGLISH_WORDS, ROMANISED_NEPALI, NEPALI_WORDS, HINDI_WORDS] {
            let list = WordList::new(words);
            for (i, w) in words.iter().enumerate() {
                assert_eq!(list.find(w.as_bytes()), Some(i), "{w}");
                let mut longer = w.to_string();
                longer.push('x');
                assert_eq!(list.find(longer.as_bytes()), None, "{longer}");
                let shorter = &w.as_bytes()[..w.len() - 1];
                let listed = words.iter().position(|x| x.as_bytes() == shorter);
                assert_eq!(list.find(shorter), listed, "{w}");
            }
        }
        let list = WordList::new(&["गरिदिनुहोस्"]);
        assert_eq!(list.find("गरिदिनुहोस्".as_bytes()), Some(0));
        assert_eq!(list.find("गरिदिनुहोला".as_bytes()), None);
        assert_eq!(list.find(b""), None);
    }

    #[test]
    fn only_customer_messages_decide() {
        let c = conversation(vec![
            message(Role::Customer, None, "बिहानदेखि बत्ती छैन, धेरै समस्या भयो।"),
            message(
                Role::Agent,
                Some("Sita"),
                "Sorry for the trouble, we are checking the line in your area now.",
            ),
        ]);
        assert_eq!(language(&c), Some("ne"));
        let c = conversation(vec![message(
            Role::Agent,
            Some("Sita"),
            "Hello, how can I help you today?",
        )]);
        assert_eq!(language(&c), None);
    }
}
