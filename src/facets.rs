//! What a conversation is, besides how it went: who handled it (the agent)
//! and which language the customer wrote in. Both are read from the
//! messages, locally, whatever the analyzer, and stored with the
//! conversation's record.
//!
//! Plain code. Language detection uses [`whatlang`] (trigram models, no
//! network, no tokens) over the customer's first messages:
//! - Devanagari is Nepali or Hindi by their common words (छ, छैन, भयो, मेरो
//!   against है, नहीं, मेरा …), which whatlang's trigrams confuse in short
//!   messages; otherwise whatlang tells Nepali, Hindi and Marathi apart;
//! - romanised Nepali ("bijuli chaina", "kina yesto bhayo") is Latin script
//!   that trigram models take for some other language: it is recognised by
//!   its common words (two distinct ones at least) before whatlang is asked;
//! - Latin text with three or more English function words ("the", "is",
//!   "my" …) making up a fifth of its words is English without asking
//!   whatlang (most support messages: this keeps detection cheap);
//! - other scripts and Latin text go to whatlang as they are; an answer it
//!   does not call reliable is kept only for text of 40 characters or more
//!   (shorter ones, "ok", "thanks!", stay unknown).
//!
//! Languages are reported as ISO 639-1 codes (`en`, `ne`, `hi`, …).

use whatlang::{Detector, Lang, Script};

use crate::model::{Conversation, Role};

/// A conversation's agent and language, read together (on the thread that
/// loads the conversation, beside the analysis rather than after it).
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

/// Customer text read for language detection: the start says enough (and
/// whatlang's time grows with it: it was 40 % of a lexicon run at 1,000).
const LANGUAGE_SAMPLE_BYTES: usize = 400;
/// Shortest text an unreliable whatlang answer is kept for.
const UNRELIABLE_MIN_CHARS: usize = 40;

/// Common romanised Nepali words that are not English words.
const ROMANISED_NEPALI: &[&str] = &[
    "cha",
    "chha",
    "chaina",
    "chhaina",
    "xa",
    "xaina",
    "bhayo",
    "bhako",
    "garnu",
    "garnus",
    "garna",
    "gareko",
    "hajur",
    "kina",
    "pani",
    "bijuli",
    "batti",
    "haru",
    "gayo",
    "aayo",
    "ayo",
    "dinus",
    "dinu",
    "bata",
    "huncha",
    "hunchha",
    "kati",
    "mero",
    "hamro",
    "tapai",
    "tapaai",
    "ramro",
    "kasto",
    "ahile",
    "aile",
    "samma",
    "paisa",
    "tiryo",
    "tirna",
    "dhanyabad",
    "dhanyawad",
    "yo",
    "tyo",
    "kaha",
    "kahile",
    "lagyo",
    "bhanda",
    "chaiyo",
];

/// The main language of the customer's messages, as an ISO 639-1 code.
pub fn language(conversation: &Conversation) -> Option<&'static str> {
    let mut sample = String::new();
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
    let script = whatlang::detect_script(text)?;
    if script == Script::Latin && romanised_nepali(text) {
        return Some("ne");
    }
    if script == Script::Latin && plainly_english(text) {
        return Some("en");
    }
    if script == Script::Devanagari {
        let nepali = count_words(text, NEPALI_WORDS);
        let hindi = count_words(text, HINDI_WORDS);
        if nepali != hindi {
            return Some(if nepali > hindi { "ne" } else { "hi" });
        }
    }
    let info = if script == Script::Devanagari {
        Detector::with_allowlist(vec![Lang::Nep, Lang::Hin, Lang::Mar]).detect(text)?
    } else {
        whatlang::detect(text)?
    };
    if !info.is_reliable() && text.chars().count() < UNRELIABLE_MIN_CHARS {
        return None;
    }
    iso_639_1(info.lang())
}

/// Common Nepali words in Devanagari that Hindi does not use.
const NEPALI_WORDS: &[&str] = &[
    "छ",
    "छैन",
    "छन्",
    "भयो",
    "भएको",
    "मेरो",
    "हाम्रो",
    "तपाईं",
    "तपाईंको",
    "लाई",
    "पनि",
    "हुन्छ",
    "थियो",
    "गर्नु",
    "गर्न",
    "गरियो",
    "गरिदिनुहोस्",
    "होला",
    "कहिले",
    "किन",
    "आयो",
    "गयो",
    "धेरै",
    "अहिले",
    "सम्म",
    "हजुर",
    "धन्यवाद",
];

/// Common Hindi words in Devanagari that Nepali does not use.
const HINDI_WORDS: &[&str] = &[
    "है",
    "हैं",
    "नहीं",
    "मेरा",
    "मेरी",
    "हमारा",
    "हमारी",
    "आपका",
    "आपकी",
    "क्या",
    "रहा",
    "रही",
    "था",
    "थी",
    "गया",
    "कब",
    "क्यों",
    "बहुत",
    "अभी",
    "तक",
    "शुक्रिया",
];

/// Words of `text` found in `list` (split on anything but letters and marks).
fn count_words(text: &str, list: &[&str]) -> usize {
    text.split(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || matches!(c, '।' | '॥'))
        .filter(|w| list.contains(w))
        .count()
}

/// English function words that are not words of the other Latin-script
/// languages whatlang knows (no "a", "no", "in", "to", "de").
const ENGLISH_WORDS: &[&str] = &[
    "the", "is", "are", "was", "were", "and", "my", "your", "i", "you", "it", "this", "that",
    "have", "has", "for", "with", "not", "but", "since", "there", "please", "can", "will", "what",
    "when", "why", "how", "our", "we", "they", "been", "would", "could", "thanks", "thank",
];

/// Whether Latin-script text is English beyond doubt: at least three distinct
/// English function words, making up a fifth of its words. Most support
/// messages are, and this spares whatlang's trigram scoring over every
/// Latin-script language.
fn plainly_english(text: &str) -> bool {
    let (mut words, mut hits) = (0usize, 0usize);
    let mut distinct: Vec<&str> = Vec::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
        .filter(|w| !w.is_empty())
    {
        words += 1;
        if let Some(known) = ENGLISH_WORDS.iter().find(|k| k.eq_ignore_ascii_case(word)) {
            hits += 1;
            if !distinct.contains(known) {
                distinct.push(known);
            }
        }
    }
    distinct.len() >= 3 && hits * 5 >= words
}

fn romanised_nepali(text: &str) -> bool {
    let mut hits: Vec<&str> = Vec::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        if let Some(known) = ROMANISED_NEPALI
            .iter()
            .find(|k| k.eq_ignore_ascii_case(word))
            && !hits.contains(known)
        {
            hits.push(known);
            if hits.len() >= 2 {
                return true;
            }
        }
    }
    false
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
