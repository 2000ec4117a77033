use proptest::prelude::*;

use super::*;
use crate::model::Message;

fn conv(messages: &[(Role, &str)]) -> Conversation {
    Conversation {
        id: "c".into(),
        messages: messages
            .iter()
            .map(|(role, text)| Message {
                role: *role,
                text: text.to_string(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: *role == Role::Bot,
            })
            .collect(),
    }
}

fn customer(text: &str) -> Conversation {
    conv(&[(Role::Agent, "How can I help?"), (Role::Customer, text)])
}

use SentimentLabel::{Negative as Neg, Neutral as Neu, Positive as Pos};

/// Short support messages with the label a support lead would give them.
const LABELLED: &[(&str, SentimentLabel)] = &[
    ("great, another hour on hold, thanks a lot", Neg),
    ("thanks for nothing", Neg),
    (
        "Wow, third time I'm calling about this. Amazing service.",
        Neg,
    ),
    ("Sure, great, the power is still not back.", Neg),
    ("Lovely, charged twice again this month", Neg),
    (
        "I want to speak to your supervisor, this is unacceptable",
        Neg,
    ),
    ("No power since yesterday and nobody answers", Neg),
    ("Fantastic, my bill doubled. Refund me.", Neg),
    ("This is the worst service I have ever had", Neg),
    ("I'm fed up, still waiting for the technician", Neg),
    ("Nice job, now the meter doesn't work at all", Neg),
    ("I will post this on social media", Neg),
    ("बत्ती छैन, अझै आएन 😡", Neg),
    ("धेरै नराम्रो सेवा, समस्या अझै छ", Neg),
    ("Still no electricity. Useless.", Neg),
    ("Thank you so much, it works now!", Pos),
    ("Thanks, the power is back on", Pos),
    ("Great, that fixed it. Appreciate your help.", Pos),
    ("धन्यवाद, बत्ती आयो 🙏", Pos),
    ("Perfect, problem solved, thank you", Pos),
    ("You were very helpful, thanks!", Pos),
    ("All good now 👍", Pos),
    ("Payment went through, thanks a lot", Pos),
    ("dhanyabad, it is working now", Pos),
    ("What is my meter number?", Neu),
    ("I would like to change the name on my account.", Neu),
    ("My customer id is 4432.", Neu),
    ("When is the next bill due?", Neu),
    ("मेरो मिटर नम्बर के हो?", Neu),
    ("Can you send me the invoice for March?", Neu),
    ("I moved to a new house last week.", Neu),
    ("Please check the reading for April.", Neu),
    ("Wonderful, so I just wait again. Amazing service.", Neg),
    ("Great, the lights went out again as usual", Neg),
    ("वाह, फेरि बत्ती गयो। धन्यवाद है!", Neg),
    ("Thanks again, it's working again!", Pos),
    ("Alright, I will check again tomorrow.", Neu),
    ("Okay.", Neu),
    ("Could you kindly send me the tariff sheet?", Neu),
    ("भुक्तानी देखियो, धन्यवाद 👍", Pos),
];

#[test]
fn beats_plain_vader_on_support_text() {
    let lexicon = LexiconAnalyzer::new();
    let vader = SentimentIntensityAnalyzer::new();
    let vader_label = |t: &str| {
        let c = vader.polarity_scores(t).compound;
        if c >= 0.05 {
            Pos
        } else if c <= -0.05 {
            Neg
        } else {
            Neu
        }
    };
    let mut ours = 0;
    let mut plain = 0;
    let mut misses = Vec::new();
    for (text, expected) in LABELLED {
        let got = lexicon.analyze(&customer(text)).sentiment.label;
        if got == *expected {
            ours += 1;
        } else {
            misses.push(format!("{text:?}: {got:?}, want {expected:?}"));
        }
        if vader_label(text) == *expected {
            plain += 1;
        }
    }
    let n = LABELLED.len();
    eprintln!(
        "labelled support set: lexicon {ours}/{n}, plain VADER {plain}/{n}; misses {misses:#?}"
    );
    assert!(ours * 10 >= n * 9, "{ours}/{n} right; misses: {misses:#?}");
    assert!(ours > plain, "ours {ours} vs plain VADER {plain} of {n}");
}

#[test]
fn sarcastic_complaint_is_negative_and_unsatisfied() {
    let a = LexiconAnalyzer::new().analyze(&customer("great, another hour on hold, thanks a lot"));
    assert_eq!(a.sentiment.label, Neg);
    assert!(a.satisfaction.score <= 2, "{a:?}");
}

#[test]
fn a_happy_ending_outweighs_an_angry_start() {
    let a = LexiconAnalyzer::new().analyze(&conv(&[
        (
            Role::Bot,
            "Welcome! Dial *977# for self-service. Thank you for contacting us!",
        ),
        (Role::Customer, "No power since morning, this is ridiculous"),
        (Role::Agent, "A crew is on the way."),
        (Role::Customer, "Power is back on now. Thank you!"),
    ]));
    assert_eq!(a.sentiment.label, Pos, "{a:?}");
    assert_eq!(a.resolved, Some(true));
    assert!(a.satisfaction.score >= 4, "{a:?}");
    assert_eq!(
        a.summary,
        "Customer reported a power outage; issue resolved, customer thankful."
    );
}

#[test]
fn escalation_at_the_end_is_unresolved_and_dissatisfied() {
    let a = LexiconAnalyzer::new().analyze(&conv(&[
        (Role::Customer, "My bill is wrong again"),
        (Role::Agent, "I have raised a ticket."),
        (
            Role::Customer,
            "Not resolved. I want your manager, I'm filing a formal complaint.",
        ),
    ]));
    assert_eq!(a.sentiment.label, Neg);
    assert_eq!(a.resolved, Some(false));
    assert_eq!(a.satisfaction.score, 1);
    assert!(a.summary.contains("billing"), "{}", a.summary);
}

#[test]
fn repetition_is_sarcasm_only_next_to_praise() {
    let lexicon = LexiconAnalyzer::new();
    let sarcastic = lexicon.analyze(&customer(
        "Wonderful, so I just wait again. Amazing service.",
    ));
    assert_eq!(sarcastic.sentiment.label, Neg, "{sarcastic:?}");
    assert_eq!(sarcastic.resolved, Some(false));
    assert!(sarcastic.satisfaction.score <= 2, "{sarcastic:?}");

    let plain = lexicon.analyze(&customer("I will call again tomorrow."));
    assert_eq!(plain.sentiment.label, Neu, "{plain:?}");
    assert_eq!(plain.resolved, None);

    let thanks = lexicon.analyze(&customer("Thank you again, it works now."));
    assert_eq!(thanks.sentiment.label, Pos, "{thanks:?}");
    assert_eq!(thanks.resolved, Some(true));
}

#[test]
fn courtesy_in_a_request_is_not_satisfaction() {
    let a = LexiconAnalyzer::new().analyze(&customer(
        "I would like to know why my bill is higher, please?",
    ));
    assert_eq!(a.sentiment.label, Neu, "{a:?}");
    assert_eq!(a.satisfaction.score, 3);
    assert!(a.summary.contains("billing"), "{}", a.summary);
}

#[test]
fn nepali_conversation_is_understood() {
    let a = LexiconAnalyzer::new().analyze(&conv(&[
        (Role::Customer, "नमस्ते, हाम्रो घरमा बिहानदेखि बत्ती छैन।"),
        (Role::Agent, "फिडर लाइनमा समस्या छ, टोली पठाइएको छ।"),
        (Role::Customer, "धन्यवाद, बत्ती आयो 🙏"),
    ]));
    assert_eq!(a.sentiment.label, Pos, "{a:?}");
    assert_eq!(a.resolved, Some(true));
    assert!(a.satisfaction.score >= 4, "{a:?}");
    assert!(a.summary.contains("power outage"), "{}", a.summary);
}

#[test]
fn no_customer_messages_is_neutral_and_says_so() {
    let a = LexiconAnalyzer::new()
        .analyze(&conv(&[(Role::Bot, "Dial *977#"), (Role::Agent, "Hello?")]));
    assert_eq!(a.sentiment.label, Neu);
    assert_eq!(a.satisfaction.score, 3);
    assert_eq!(a.resolved, None);
    assert!(a.summary.starts_with("No customer messages"));
    assert_eq!(a.analyzer, "lexicon");
}

#[test]
fn deterministic_and_bounded_on_huge_text() {
    let lexicon = LexiconAnalyzer::new();
    let huge = "terrible ".repeat(50_000) + "बत्ती छैन 😡";
    let c = customer(&huge);
    let a = lexicon.analyze(&c);
    assert_eq!(a, lexicon.analyze(&c));
    // 50,000 negative words saturate the score instead of overflowing it,
    // and the summary quotes a bounded part of the text.
    assert!(
        (-1.0..=-0.9).contains(&a.sentiment.score),
        "{}",
        a.sentiment.score
    );
    assert_eq!(a.sentiment.label, Neg);
    assert!(
        (1..=2).contains(&a.satisfaction.score),
        "{}",
        a.satisfaction.score
    );
    assert!(a.summary.chars().count() <= SUMMARY_MAX_CHARS);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_text_gives_a_valid_analysis(texts in proptest::collection::vec("\\PC{0,80}", 0..6)) {
        let lexicon = LexiconAnalyzer::new();
        let messages: Vec<(Role, &str)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (if i % 2 == 0 { Role::Customer } else { Role::Agent }, t.as_str()))
            .collect();
        let c = conv(&messages);
        let a = lexicon.analyze(&c);
        prop_assert_eq!(&a, &lexicon.analyze(&c));
        prop_assert!((-1.0..=1.0).contains(&a.sentiment.score));
        prop_assert!((1..=5).contains(&a.satisfaction.score));
        prop_assert_eq!(a.satisfaction.label, SatisfactionLabel::from_score(a.satisfaction.score));
        prop_assert!(a.summary.chars().count() <= SUMMARY_MAX_CHARS);
    }
}

#[test]
fn the_default_cues_and_keywords_are_searched_with_a_contiguous_nfa() {
    let analyzer = LexiconAnalyzer::new();
    assert_eq!(
        analyzer.built().matcher.kind(),
        aho_corasick::AhoCorasickKind::ContiguousNFA
    );
}
