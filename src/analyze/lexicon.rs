//! The embedded offline analyzer: VADER (exact parity with the reference
//! Python vaderSentiment, via `vader-parity`) over the customer's messages,
//! corrected by support-domain cues.
//!
//! How it decides:
//! 1. Only customer messages count (autoresponses are already filtered).
//! 2. Each message gets VADER's compound score, then cue corrections:
//!    complaint cues ("on hold", "still not", "third time", "refund",
//!    "बत्ती छैन", 😡 …) pull it down; a message that VADER finds positive but
//!    that carries a complaint cue, or a repetition ("again", "फेरि") without
//!    a resolution, is sarcasm ("great, another hour on hold, thanks a lot")
//!    and is turned negative; mild positivity that is only courtesy
//!    ("please", "would like", "okay", or a question) is kept neutral;
//!    escalation cues (supervisor, regulator, social media) pull down;
//!    sincere gratitude (thanks, धन्यवाद, 🙏) and resolution cues ("works
//!    now", "restored") push up.
//! 3. The conversation's sentiment is the recency-weighted mean (message i of
//!    n weighs i + 1, the last one double), labelled with VADER's ±0.05.
//! 4. Satisfaction 1–5 starts from that score (3 + 2 × score) and moves with
//!    the ending: gratitude or resolution in the last two customer messages
//!    (+), escalation or an unresolved complaint at the end (−).
//! 5. `resolved` is true on resolution cues near the end, false on
//!    unresolved or escalation cues in the last customer message, else unknown.
//! 6. The topic is the configured one whose keywords (English and Nepali)
//!    the customer's first messages name most ([`super::topics`]); the
//!    summary names it and the outcome.
//!
//! Deterministic, no network, never fails on any text (Devanagari, emoji).

use std::sync::{Arc, OnceLock};

use aho_corasick::AhoCorasick;
use vader_parity::SentimentIntensityAnalyzer;

use super::topics::{self, Topics, overlapping_matcher};
use crate::model::{
    Analysis, Conversation, Role, SUMMARY_MAX_CHARS, Satisfaction, SatisfactionLabel, Sentiment,
    SentimentLabel, truncate_chars,
};

/// What a cue phrase signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    Complaint,
    Escalation,
    Gratitude,
    Resolution,
    Unresolved,
    Repeat,
    SincereRepeat,
    Polite,
    EscalationInContext,
    Asking,
    Context,
    /// A topic keyword: its index in [`Topics::keywords`].
    Keyword(usize),
}

/// How the summary names a topic of the default list; any other topic is
/// named as it is configured.
fn topic_phrase(topic: Option<&str>) -> String {
    match topic {
        Some("outage") => "a power outage".into(),
        Some("billing") => "a billing problem".into(),
        Some("meter") => "a meter issue".into(),
        Some("connection") => "a connection request".into(),
        Some("voltage") => "a voltage problem".into(),
        Some("payment") => "a payment issue".into(),
        None | Some(topics::FALLBACK) => "an issue".into(),
        Some(other) => format!("a {other} issue"),
    }
}

/// Complaint and frustration, including sarcasm markers. Matching ignores
/// ASCII case; Devanagari and emoji match as written.
const COMPLAINT: &[&str] = &[
    "on hold",
    "still not",
    "still no ",
    "still waiting",
    "still without",
    "not working",
    "doesn't work",
    "does not work",
    "isn't working",
    "not fixed",
    "again?",
    "another hour",
    "another outage",
    "another day",
    "another week",
    "another month",
    "third time",
    "second time",
    "fourth time",
    "for days",
    "for hours",
    "for weeks",
    "since yesterday",
    "since morning",
    "no power",
    "no electricity",
    "power cut",
    "refund",
    "overcharged",
    "double charged",
    "charged twice",
    "wrong bill",
    "cancel my",
    "worst",
    "useless",
    "ridiculous",
    "terrible",
    "horrible",
    "pathetic",
    "unacceptable",
    "disappointed",
    "disappointing",
    "fed up",
    "sick of",
    "tired of",
    "nobody",
    "no one",
    "waste of",
    "thanks for nothing",
    "for nothing",
    "joke",
    "incompetent",
    "frustrat",
    "angry",
    "annoyed",
    "not happy",
    "unhappy",
    "complain",
    "नराम्रो",
    "समस्या",
    "बत्ती छैन",
    "बिजुली छैन",
    "लाइन छैन",
    "काम गर्दैन",
    "अझै",
    "ढिलो",
    "बत्ती गयो",
    "पर्खनु पर्ने",
    "देखिएन",
    "गलत",
    "😡",
    "😠",
    "😤",
    "🤬",
    "👎",
    "😞",
    "😢",
];

/// Escalation in any context: a customer asking for it.
const ESCALATION: &[&str] = &[
    "escalate",
    "formal complaint",
    "legal action",
    "lawyer",
    "regulator",
    "ombudsman",
    "consumer court",
    "report you",
    "उजुरी",
];

/// Words that are escalation only in a message that already complains or
/// asks for someone ("talk to your supervisor", "I'll post this on
/// Facebook"); elsewhere they are news ("the Rise of Facebook"), and
/// counting them cost plain VADER's accuracy on general text.
const ESCALATION_IN_CONTEXT: &[&str] = &[
    "supervisor",
    "manager",
    "social media",
    "twitter",
    "facebook",
];

/// What makes [`ESCALATION_IN_CONTEXT`] an escalation without a complaint.
const ASKING: &[&str] = &[
    "talk to",
    "speak to",
    "speak with",
    "talk with",
    "connect me",
    "put me through",
    "post this",
    "post it",
    "post about",
    "will post",
    "going to post",
    "tweet",
];

const GRATITUDE: &[&str] = &[
    "thank",
    "thx",
    "appreciate",
    "grateful",
    "great help",
    "very helpful",
    "धन्यवाद",
    "dhanyabad",
    "dhanyavad",
    "🙏",
    "😊",
    "👍",
    "❤",
];

const RESOLUTION: &[&str] = &[
    "works now",
    "working now",
    "is working",
    "fixed",
    "resolved",
    "restored",
    "back on",
    "is back",
    "are back",
    "back now",
    "works again",
    "working again",
    "corrected",
    "came back",
    "solved",
    "that helped",
    "it helped",
    "sorted",
    "all good",
    "got it",
    "received it",
    "payment went through",
    "बत्ती आयो",
    "देखियो",
    "ठीक भयो",
    "समाधान",
];

const UNRESOLVED: &[&str] = &[
    "still not",
    "still no ",
    "not resolved",
    "not fixed",
    "no solution",
    "didn't help",
    "did not help",
    "nothing has changed",
    "nothing changed",
    "still waiting",
    "unresolved",
    "not corrected",
    "still without",
    "अझै छैन",
];

/// Words of a support exchange. With a topic's keyword, they tell a
/// support message from general text, where the support rules (praise next
/// to a repetition is sarcasm, a question's mild positivity is courtesy)
/// would misread "so happy to see you again" or "Congrats?".
const SUPPORT_CONTEXT: &[&str] = &[
    "wait",
    "service",
    "on hold",
    "ticket",
    "queue",
    "call",
    "respon",
    "reply",
    "help",
    "account",
    "number",
    "customer id",
    "complaint",
    "agent",
    "office",
    "staff",
];

/// Repetition: on its own it is no complaint ("I will check again"), but
/// next to words VADER finds positive it is the usual shape of sarcasm
/// ("Wonderful, so I just wait again").
const REPEAT: &[&str] = &["again", "as usual", "as always", "every time", "फेरि"];

/// Repetition that is sincere; each match cancels one [`REPEAT`] match.
const SINCERE_REPEAT: &[&str] = &[
    "thanks again",
    "thank you again",
    "works again",
    "working again",
];

/// Courtesy and acknowledgement words VADER scores as positive ("please",
/// "would like", "okay"), which in a support request carry no sentiment.
const POLITE: &[&str] = &[
    "please",
    "would like",
    "kindly",
    "okay",
    "ok,",
    "ok.",
    "alright",
    "noted",
    "कृपया",
];

/// Per-message cue counts.
#[derive(Debug, Default, Clone, Copy)]
struct Cues {
    complaint: u32,
    escalation: u32,
    gratitude: u32,
    resolution: u32,
    unresolved: u32,
    repeat: u32,
    polite: u32,
    escalation_in_context: u32,
    asking: u32,
    context: u32,
    /// Set by [`LexiconAnalyzer::score_message`], which alone sees VADER's score.
    sarcastic: bool,
}

impl Cues {
    /// Something in the message is wrong, so any thanks in it is politeness
    /// or sarcasm, not satisfaction.
    fn grievance(&self) -> bool {
        self.complaint > 0 || self.sarcastic
    }

    fn sincere_thanks(&self) -> bool {
        self.gratitude > 0 && !self.grievance()
    }
}

pub struct LexiconAnalyzer {
    /// Built on first use, or ahead of it by [`LexiconAnalyzer::prepare`]
    /// (the engine does so on a thread of its own while an upload parses).
    built: OnceLock<Built>,
    topics: Arc<Topics>,
    /// What shapes its analyses (see [`crate::analyze::Analyzer::fingerprint`]).
    fingerprint: String,
}

/// The analyzer's tables: VADER's and one matcher over every cue phrase and
/// topic keyword.
struct Built {
    vader: SentimentIntensityAnalyzer,
    matcher: AhoCorasick,
    /// What each matcher pattern signals, by pattern index.
    kinds: Vec<Cue>,
}

impl Built {
    fn new(topics: &Topics) -> Self {
        let mut patterns: Vec<&str> = Vec::new();
        let mut kinds = Vec::new();
        let mut add = |list: &[&'static str], cue: Cue| {
            for p in list {
                patterns.push(p);
                kinds.push(cue);
            }
        };
        add(COMPLAINT, Cue::Complaint);
        add(ESCALATION, Cue::Escalation);
        add(ESCALATION_IN_CONTEXT, Cue::EscalationInContext);
        add(ASKING, Cue::Asking);
        add(SUPPORT_CONTEXT, Cue::Context);
        add(GRATITUDE, Cue::Gratitude);
        add(RESOLUTION, Cue::Resolution);
        add(UNRESOLVED, Cue::Unresolved);
        add(REPEAT, Cue::Repeat);
        add(SINCERE_REPEAT, Cue::SincereRepeat);
        add(POLITE, Cue::Polite);
        // The topic keywords too, so a customer message is searched once for
        // both (the search was a fifth of the analyzer's time, done twice).
        for (i, keyword) in topics.keywords().iter().enumerate() {
            patterns.push(keyword);
            kinds.push(Cue::Keyword(i));
        }
        // Overlapping search: "still not" is both a complaint and unresolved.
        let matcher = overlapping_matcher(&patterns);
        Self {
            vader: SentimentIntensityAnalyzer::new(),
            matcher,
            kinds,
        }
    }
}

impl Default for LexiconAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl LexiconAnalyzer {
    pub const NAME: &'static str = "lexicon";
    /// Bumped whenever the rules change, so stored analyses are not reused.
    pub const MODEL: &'static str = "vader-support-2";

    /// The analyzer with the default topics.
    pub fn new() -> Self {
        Self::with_topics(Arc::new(Topics::default()))
    }

    pub fn with_topics(topics: Arc<Topics>) -> Self {
        Self {
            built: OnceLock::new(),
            fingerprint: format!(
                "{}/{}/topics-{}",
                Self::NAME,
                Self::MODEL,
                topics.fingerprint()
            ),
            topics,
        }
    }

    /// Builds the tables now (a caller with a spare thread saves the first
    /// analysis the wait); later calls return at once.
    pub fn prepare(&self) {
        self.built();
        self.topics.prepare();
    }

    fn built(&self) -> &Built {
        self.built.get_or_init(|| Built::new(&self.topics))
    }

    /// Its name, model and topics: what shapes its analyses.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The topics it picks from.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// A message's cues, and the topic keywords it names (each once, as
    /// indices of [`Topics::keywords`]).
    fn cues(&self, text: &str) -> (Cues, Vec<usize>) {
        let built = self.built();
        let mut c = Cues::default();
        let mut keywords = Vec::new();
        for m in built.matcher.find_overlapping_iter(text) {
            match built.kinds[m.pattern().as_usize()] {
                Cue::Complaint => c.complaint += 1,
                Cue::Escalation => c.escalation += 1,
                Cue::Gratitude => c.gratitude += 1,
                Cue::Resolution => c.resolution += 1,
                Cue::Unresolved => c.unresolved += 1,
                Cue::Repeat => c.repeat += 1,
                Cue::SincereRepeat => c.repeat = c.repeat.saturating_sub(1),
                Cue::Polite => c.polite += 1,
                Cue::EscalationInContext => c.escalation_in_context += 1,
                Cue::Asking => c.asking += 1,
                Cue::Context => c.context += 1,
                Cue::Keyword(k) => {
                    if !keywords.contains(&k) {
                        keywords.push(k);
                    }
                }
            }
        }
        (c, keywords)
    }

    /// One message's score: VADER corrected by its cues. Marks the cues
    /// sarcastic when praise sits next to a complaint or a repetition.
    /// `names_a_topic`: the message names one of the topics' keywords.
    fn score_message(&self, text: &str, c: &mut Cues, names_a_topic: bool) -> f64 {
        let scores = self.built().vader.polarity_scores(text);
        let vader = scores.compound;
        if c.escalation_in_context > 0
            && (c.complaint > 0 || c.unresolved > 0 || c.asking > 0 || vader <= -0.05)
        {
            c.escalation += 1;
        }
        let complaints = f64::from(c.complaint.min(3));
        let sincere = c.gratitude > 0 || c.resolution > 0;
        let support = c.context > 0 || names_a_topic;
        // "I would like to …", "Okay.", "What is my meter number?": mild
        // positivity that is only a request's courtesy.
        let courtesy = vader > 0.0
            && vader < 0.6
            && (support || text.split_whitespace().count() <= 3)
            && (c.polite > 0 || is_question(text));
        // VADER has no Devanagari words, so there thanks alone mark the praise.
        let praise = (vader > 0.05 && !courtesy) || c.gratitude > 0;
        // Repetition turns praise to sarcasm only about a problem: next to
        // something negative or a support topic ("Great, the bill is wrong
        // again"), not in "so happy to be back again".
        let about_a_problem = scores.neg > 0.0 || support;
        c.sarcastic = (c.complaint > 0 && (vader > 0.05 || praise))
            || (c.repeat > 0 && c.resolution == 0 && praise && about_a_problem);
        let mut s = if c.sarcastic {
            // Positive words around a complaint are sarcasm or politeness, not joy.
            -0.25 - 0.15 * complaints
        } else if courtesy && !sincere {
            // Into the neutral band (0.6 × 0.08 < 0.05), still ordered by VADER.
            vader * 0.08
        } else {
            vader - 0.3 * complaints
        };
        if c.escalation > 0 {
            s -= 0.35;
        }
        if c.sincere_thanks() {
            s += 0.25;
        }
        if c.resolution > 0 && c.unresolved == 0 {
            s += 0.35;
        }
        s.clamp(-1.0, 1.0)
    }

    pub fn analyze(&self, conversation: &Conversation) -> Analysis {
        let mut topics = self.topics.tally();
        let mut scored: Vec<(f64, Cues)> = Vec::new();
        for m in conversation.analysable() {
            match m.role {
                Role::Customer => {
                    let (mut cues, keywords) = self.cues(&m.text);
                    topics.customer_message(&keywords);
                    let score = self.score_message(&m.text, &mut cues, !keywords.is_empty());
                    scored.push((score, cues));
                }
                // The topics' own, smaller matcher: agents' words are read
                // for keywords only.
                Role::Agent => topics.agent_message(&m.text),
                Role::Bot => {}
            }
        }
        let topic = topics.pick();
        if scored.is_empty() {
            return self.finish(
                0.0,
                3,
                None,
                "No customer messages to analyse (only automated or agent messages).".into(),
                topic,
            );
        }

        let n = scored.len();
        let (mut sum, mut weights) = (0.0, 0.0);
        for (i, (s, _)) in scored.iter().enumerate() {
            let w = (i + 1) as f64 * if i + 1 == n { 2.0 } else { 1.0 };
            sum += s * w;
            weights += w;
        }
        let score = (sum / weights).clamp(-1.0, 1.0);

        let ending = &scored[n.saturating_sub(2)..];
        let last = scored[n - 1].1;
        let thanked = ending.iter().any(|(_, c)| c.sincere_thanks());
        let fixed = ending
            .iter()
            .any(|(_, c)| c.resolution > 0 && c.unresolved == 0);
        let escalated = scored[n / 2..].iter().any(|(_, c)| c.escalation > 0);
        let unresolved = last.unresolved > 0 || (last.grievance() && !fixed);

        let mut satisfaction = 3.0 + 2.0 * score;
        if thanked {
            satisfaction += 0.75;
        }
        if fixed {
            satisfaction += 0.75;
        }
        if escalated {
            satisfaction -= 1.0;
        }
        if unresolved {
            satisfaction -= 0.75;
        }
        let satisfaction = satisfaction.round().clamp(1.0, 5.0) as u8;

        let resolved = if fixed && !unresolved {
            Some(true)
        } else if unresolved || last.escalation > 0 {
            Some(false)
        } else {
            None
        };

        let phrase = topic_phrase(topic);
        let outcome = match resolved {
            Some(true) => "issue resolved",
            Some(false) => "issue not resolved",
            None => "outcome unclear",
        };
        let mood = if escalated {
            "customer asked to escalate"
        } else if thanked && score > -0.05 {
            "customer thankful"
        } else if score <= -0.05 {
            "customer frustrated"
        } else if score >= 0.05 {
            "customer satisfied"
        } else {
            "customer neutral"
        };
        let summary = format!("Customer reported {phrase}; {outcome}, {mood}.");
        self.finish(score, satisfaction, resolved, summary, topic)
    }

    fn finish(
        &self,
        score: f64,
        satisfaction: u8,
        resolved: Option<bool>,
        summary: String,
        topic: Option<&str>,
    ) -> Analysis {
        let label = if score >= 0.05 {
            SentimentLabel::Positive
        } else if score <= -0.05 {
            SentimentLabel::Negative
        } else {
            SentimentLabel::Neutral
        };
        Analysis {
            sentiment: Sentiment {
                label,
                score: (score * 1000.0).round() / 1000.0,
            },
            satisfaction: Satisfaction {
                score: satisfaction,
                label: SatisfactionLabel::from_score(satisfaction),
            },
            resolved,
            summary: truncate_chars(&summary, SUMMARY_MAX_CHARS),
            analyzer: Self::NAME.to_string(),
            model: Self::MODEL.to_string(),
            topic: topic.map(str::to_string),
        }
    }
}

/// Whether the message ends as a question (ASCII or full-width mark).
fn is_question(text: &str) -> bool {
    text.trim_end().ends_with(['?', '？'])
}

#[cfg(test)]
mod tests;
