use std::ops::Range;

use proptest::prelude::*;

use super::*;
use crate::config::PatternSettings;

fn redactor() -> Redactor {
    Redactor::new(&PrivacySettings::default()).unwrap()
}

/// `text` redacted in a fresh session whose senders are `names`.
fn redact_named(names: &[&str], text: &str) -> String {
    let r = redactor();
    let mut s = r.session(names.iter().copied());
    s.redact(text).into_owned()
}

fn redact(text: &str) -> String {
    redact_named(&[], text)
}

#[track_caller]
fn assert_kept(text: &str) {
    assert_eq!(redact(text), text, "nothing in {text:?} is personal");
}

#[test]
fn emails_are_redacted_and_the_same_address_gets_the_same_placeholder() {
    assert_eq!(
        redact("mail me at Sita.Sharma+nea@Gmail.com or sita.sharma+nea@gmail.com."),
        "mail me at <EMAIL_1> or <EMAIL_1>."
    );
    assert_eq!(
        redact("a@b.np, c@d.com.np"),
        "<EMAIL_1>, <EMAIL_2>",
        "each address its own number"
    );
    assert_kept("meet me @ the office, 10:30");
}

#[test]
fn nepali_mobiles_in_every_form_are_one_phone() {
    for written in [
        "9841234567",
        "+977 9841234567",
        "+977-9841234567",
        "984-123-4567",
        "98412 34567",
        "(+977) 984 123 4567",
        "00977 9841234567",
        "९८४१२३४५६७",
    ] {
        let text = format!("my number is {written}, call me");
        assert_eq!(
            redact(&text),
            "my number is <PHONE_1>, call me",
            "{written}"
        );
    }
    // The country code without its `+`, a landline in brackets.
    assert_eq!(redact("ph 9779841234567"), "ph <PHONE_1>");
    assert_eq!(redact("ph (01) 4412345"), "ph <PHONE_1>");
    // The same number written twice ways is one placeholder.
    assert_eq!(
        redact("call 9841234567 or +977-984-123-4567; office 9801234567"),
        "call <PHONE_1> or <PHONE_1>; office <PHONE_2>"
    );
}

#[test]
fn two_numbers_side_by_side_come_out_as_two() {
    assert_eq!(
        redact("numbers: 9841234567 9812345678"),
        "numbers: <PHONE_1> <PHONE_2>"
    );
}

#[test]
fn landlines_need_their_trunk_prefix_or_a_phone_word() {
    assert_eq!(redact("office 01-4412345 ok"), "office <PHONE_1> ok");
    assert_eq!(redact("ring 061-520123"), "ring <PHONE_1>");
    assert_eq!(redact("call me on 4412345"), "call me on <PHONE_1>");
    // Eight digits are a valid Nepali landline, but nothing says so here.
    assert_kept("we counted 14412345 hits");
}

#[test]
fn international_numbers_of_any_country() {
    assert_eq!(redact("US: +1 415 555 2671"), "US: <PHONE_1>");
    assert_eq!(redact("UK +44 20 7946 0958."), "UK <PHONE_1>.");
}

#[test]
fn other_regions_are_read_when_configured() {
    let settings = PrivacySettings {
        regions: vec!["NP".into(), "IN".into()],
        ..PrivacySettings::default()
    };
    let r = Redactor::new(&settings).unwrap();
    assert_eq!(
        r.session([]).redact("my indian number 98765 43210"),
        "my indian number <PHONE_1>"
    );
    assert!(matches!(
        Redactor::new(&PrivacySettings {
            regions: vec!["XX".into()],
            ..PrivacySettings::default()
        }),
        Err(PrivacyError::Region(_))
    ));
}

#[test]
fn cards_pass_luhn_or_are_not_cards() {
    assert_eq!(
        redact("card 4111 1111 1111 1111 expired"),
        "card <CARD_1> expired"
    );
    assert_eq!(redact("5500-0000-0000-0004"), "<CARD_1>");
    assert_eq!(redact("4111111111111111"), "<CARD_1>");
    // Luhn fails: a long number, not a card (and no context calls it an id).
    assert_kept("batch 4111 1111 1111 1112 shipped");
    assert!(luhn_ok("79927398713"));
    assert!(!luhn_ok("79927398710"));
}

fn luhn_ok(d: &str) -> bool {
    numbers::luhn(d)
}

#[test]
fn ibans_pass_mod_97() {
    assert_eq!(
        redact("pay to GB82 WEST 1234 5698 7654 32 and tell me"),
        "pay to <IBAN_1> and tell me"
    );
    assert_eq!(redact("DE89370400440532013000"), "<IBAN_1>");
    assert!(!patterns::iban_checks("GB82WEST12345698765433"));
    assert_kept("code AB12 CDEF GHIJ KLMN here");
}

#[test]
fn ip_addresses_v4_and_v6() {
    assert_eq!(
        redact("router 192.168.1.10 and fe80::1ff:fe23:4567:890a."),
        "router <IP_1> and <IP_2>."
    );
    assert_eq!(redact("2001:db8::8a2e:370:7334"), "<IP_1>");
    assert_kept("version 1.2.3.4.5 at 10:30:45");
    assert_kept("scores 300.1.2.3");
}

#[test]
fn identifiers_need_a_context_word() {
    assert_eq!(
        redact("my SC no. 484.91.181 has no power"),
        "my SC no. <ID_1> has no power"
    );
    assert_eq!(
        redact("customer id: 1234567, account number 0012345678"),
        "customer id: <ID_1>, account number <ID_2>"
    );
    assert_eq!(
        redact("484.91.181 is my SC number"),
        "<ID_1> is my SC number"
    );
    assert_eq!(redact("ग्राहक नं ५४३२१०"), "ग्राहक नं <ID_1>");
    assert_eq!(
        redact("mero grahak number 7788991"),
        "mero grahak number <ID_1>"
    );
    assert_eq!(
        redact("citizenship 27-01-74-05123 attached"),
        "citizenship <ID_1> attached"
    );
    assert_eq!(redact("meter no CUST-00123456"), "meter no <ID_1>");
    assert_eq!(redact("meter id NEA1234567"), "meter id <ID_1>");
    // Not a card (cards start 2-6 or 8), though it passes Luhn.
    assert_eq!(redact("A/C 0371110844409"), "A/C <ID_1>");
    // The same identifier however it is written.
    assert_eq!(
        redact("SC 484.91.181 / SC 48491181"),
        "SC <ID_1> / SC <ID_1>"
    );
    // Too short, or no context word.
    assert_kept("SC no 1234");
    assert_kept("we have 48491181 reasons");
}

#[test]
fn a_keep_word_keeps_its_number_but_not_a_phone() {
    assert_kept("ticket 48213 is open");
    assert_kept("complaint no. 20260412 registered");
    assert_kept("meter reading 45213 today");
    assert_kept("token #4521, TKT-2026-00451");
    assert_eq!(
        redact("ticket 48213, call 9841234567"),
        "ticket 48213, call <PHONE_1>"
    );
}

#[test]
fn what_the_analysis_needs_is_kept() {
    for text in [
        "I paid Rs. 5,998 yesterday",
        "bill of Rs 12,500.50 and NPR 1200",
        "रु. ५,९९८ तिरें",
        "5,998 rupees, 500/- extra",
        "on 2026-03-01 and 01/03/2026 and 2082/11/17",
        "at 10:30 am, till 16:45:10, 4.30 pm",
        "voltage is 180V not 220 volts, 11 kV line",
        "used 450 units, 5 kWh, 15 A breaker, 60 Hz",
        "dial *977# or *400*1#",
        "three days, 2 hours, ward 4",
        "transformer 100 kVA burnt",
        "20% more than 2025",
    ] {
        assert_kept(text);
    }
}

#[test]
fn names_are_redacted_in_every_part_and_case() {
    let names = ["Sita Kumari Sharma", "Agent Ram Thapa"];
    assert_eq!(
        redact_named(&names, "Hello Sita Sharma, I am Ram. sharma ji? RAM!"),
        "Hello <NAME_1>, I am <NAME_2>. <NAME_1> ji? <NAME_2>!"
    );
    // Roles and titles in a sender name are not names.
    assert_eq!(
        redact_named(&["Support Agent"], "support agent here"),
        "support agent here"
    );
    // A part that is an everyday word only with a capital.
    assert_eq!(
        redact_named(&["Bill Gurung"], "Bill, your bill is ready"),
        "<NAME_1>, your bill is ready"
    );
    // Nepali names, with a postposition.
    assert_eq!(
        redact_named(&["सीता शर्मा"], "सीतालाई फोन गर्नुस्, शर्मा"),
        "<NAME_1> फोन गर्नुस्, <NAME_1>"
    );
    // Inside another word it is not the name.
    assert_eq!(
        redact_named(&["Ram"], "the program ran, Ram"),
        "the program ran, <NAME_1>"
    );
}

#[test]
fn a_redacted_transcript_has_its_senders_and_summary_as_the_same_placeholders() {
    let message = |role, name: &str, text: &str| Message {
        role,
        text: text.into(),
        timestamp: None,
        time_ms: None,
        sender_name: Some(name.into()),
        autoresponse: false,
    };
    let messages = vec![
        message(
            Role::Customer,
            "Sita Sharma",
            "No power. I'm Sita, 9841234567",
        ),
        message(
            Role::Agent,
            "Ram Thapa",
            "Sorry Sita, Ram here. Calling 9841234567",
        ),
    ];
    let Transcript {
        messages: out,
        summary,
        counts,
    } = redactor().redact_transcript(
        &messages,
        Some("Sita Sharma (9841234567) had no power; Ram promised a crew"),
    );
    // The summary may quote the transcript: the same values, the same placeholders.
    assert_eq!(
        summary.as_deref(),
        Some("<NAME_1> (<PHONE_1>) had no power; <NAME_2> promised a crew")
    );
    assert_eq!(out[0].sender_name.as_deref(), Some("<NAME_1>"));
    assert_eq!(out[1].sender_name.as_deref(), Some("<NAME_2>"));
    assert_eq!(out[0].text, "No power. I'm <NAME_1>, <PHONE_1>");
    assert_eq!(
        out[1].text,
        "Sorry <NAME_1>, <NAME_2> here. Calling <PHONE_1>"
    );
    assert_eq!(counts.of(Kind::Phone), 3);
    assert_eq!(counts.of(Kind::Name), 7);
    assert_eq!(
        redactor().named_counts(&counts),
        vec![("phone".to_string(), 3), ("name".to_string(), 7)]
    );
}

#[test]
fn analysable_redaction_leaves_autoresponses_out() {
    let conversation = Conversation {
        id: "c".into(),
        messages: vec![
            Message {
                role: Role::Bot,
                text: "Welcome! Dial *977# or call 1150".into(),
                timestamp: None,
                time_ms: None,
                sender_name: Some("NEA Bot".into()),
                autoresponse: true,
            },
            Message {
                role: Role::Customer,
                text: "no light, 9841234567".into(),
                timestamp: Some("2026-03-01T10:00:00Z".into()),
                time_ms: Some(1),
                sender_name: Some("Hari".into()),
                autoresponse: false,
            },
        ],
    };
    let redacted = redactor().redact_analysable(&conversation);
    assert_eq!(redacted.conversation.messages.len(), 1);
    assert_eq!(
        redacted.conversation.messages[0].text,
        "no light, <PHONE_1>"
    );
    assert_eq!(redacted.conversation.messages[0].sender_name, None);
    assert_eq!(redacted.counts.total(), 1);
}

#[test]
fn deny_list_and_operator_patterns() {
    let settings = PrivacySettings {
        deny: vec!["Baneshwor Branch".into(), "ProjectX".into()],
        patterns: vec![
            PatternSettings {
                name: "vehicle".into(),
                regex: r"(?i)ba\s?\d{1,2}\s?(?:pa|cha|kha)\s?\d{4}".into(),
                context: Vec::new(),
            },
            PatternSettings {
                name: "employee".into(),
                regex: r"E\d{4}".into(),
                context: vec!["staff".into(), "employee".into()],
            },
        ],
        ..PrivacySettings::default()
    };
    let r = Redactor::new(&settings).unwrap();
    let mut s = r.session([]);
    assert_eq!(
        s.redact("at baneshwor branch about projectx, car Ba 2 Pa 1234"),
        "at <REDACTED_1> about <REDACTED_2>, car <VEHICLE_1>"
    );
    assert_eq!(
        s.redact("staff E1234 helped. The new building opens next month, room E9999"),
        "staff <EMPLOYEE_1> helped. The new building opens next month, room E9999"
    );
    let named = r.named_counts(s.counts());
    assert!(named.contains(&("vehicle".to_string(), 1)), "{named:?}");
    assert!(named.contains(&("employee".to_string(), 1)), "{named:?}");
}

#[test]
fn bad_settings_name_what_is_wrong() {
    let with_pattern = |name: &str, regex: &str| PrivacySettings {
        patterns: vec![PatternSettings {
            name: name.into(),
            regex: regex.into(),
            context: Vec::new(),
        }],
        ..PrivacySettings::default()
    };
    for (settings, says) in [
        (with_pattern("Bad Name", "x"), "lower-case"),
        (with_pattern("phone", "x"), "built-in"),
        (with_pattern("ok", "("), "invalid regex"),
        (with_pattern("ok", "a*"), "empty"),
    ] {
        let err = Redactor::check(&settings).unwrap_err();
        assert_eq!(err.key(), "privacy.patterns[0]");
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn auto_redacts_whatever_is_not_this_machine() {
    use crate::config::RedactMode::*;
    for url in [
        "https://api.openai.com/v1",
        "http://10.0.0.5:8000/v1",
        "http://gpu-box.local/v1",
        "http://127.0.0.1.nip.io/v1",
        "not a url",
    ] {
        assert!(applies(Auto, url), "{url}");
    }
    for url in [
        "http://127.0.0.1:8000/v1",
        "http://localhost:11434/v1",
        "http://[::1]:8080/v1",
        "http://127.0.0.2/v1",
    ] {
        assert!(!applies(Auto, url), "{url}");
        assert!(applies(On, url), "{url}");
    }
    assert!(!applies(Off, "https://api.openai.com/v1"));
}

#[test]
fn the_fingerprint_follows_what_is_redacted_not_whether() {
    let base = PrivacySettings::default();
    let fp = |s: &PrivacySettings| Redactor::new(s).unwrap().fingerprint().to_string();
    assert!(fp(&base).starts_with("redact-1-"));
    assert_eq!(
        fp(&base),
        fp(&PrivacySettings {
            redact: RedactMode::Off,
            ..base.clone()
        })
    );
    assert_ne!(
        fp(&base),
        fp(&PrivacySettings {
            deny: vec!["x".into()],
            ..base.clone()
        })
    );
}

/// Personal values planted into filler text, each of a kind, and the
/// placeholder kind that must replace them.
fn planted() -> impl Strategy<Value = (String, &'static str)> {
    let mobile = (0u32..10_000_000, 0usize..5).prop_map(|(n, form)| {
        let national = format!("98{}{:07}", n % 3 + 4, n);
        let written = match form {
            0 => national.clone(),
            1 => format!("+977 {national}"),
            2 => format!("+977-{national}"),
            3 => format!("{}-{}-{}", &national[..3], &national[3..6], &national[6..]),
            _ => format!("{} {}", &national[..5], &national[5..]),
        };
        (written, "PHONE")
    });
    let email = ("[a-z]{1,8}", "[a-z]{2,8}").prop_map(|(u, d)| (format!("{u}@{d}.com"), "EMAIL"));
    let card = (0u64..1_000_000_000_000_000).prop_map(|n| {
        let body = format!("4{n:014}");
        let check = (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|c| numbers::luhn(c))
            .unwrap();
        (check, "CARD")
    });
    let id = (100_000u32..99_999_999).prop_map(|n| (format!("SC no {n}"), "ID"));
    prop_oneof![mobile, email, card, id]
}

proptest! {
    /// No planted value survives, whatever the words around it, and the
    /// same value written again gets the same placeholder.
    #[test]
    fn no_planted_value_survives_and_placeholders_are_consistent(
        values in proptest::collection::vec(planted(), 1..5),
        filler in proptest::collection::vec("[a-z]{1,8}", 1..6),
    ) {
        let r = redactor();
        let mut session = r.session([]);
        let mut text = String::new();
        for (i, (value, _)) in values.iter().enumerate() {
            text.push_str(&filler[i % filler.len()]);
            text.push_str(", ");
            text.push_str(value);
            text.push_str(" . ");
        }
        let once = session.redact(&text).into_owned();
        let twice = session.redact(&text).into_owned();
        prop_assert_eq!(&once, &twice);
        for (value, kind) in &values {
            let bare = value.trim_start_matches("SC no ");
            prop_assert!(!once.contains(bare), "{} survived in {}", bare, once);
            let placeholder = format!("<{kind}_");
            prop_assert!(once.contains(&placeholder), "{} missing in {}", placeholder, once);
        }
    }

    /// Redaction never panics and never grows a text past its placeholders.
    #[test]
    fn any_text_is_redacted_without_panicking(text in "\\PC{0,200}") {
        let r = redactor();
        let out = r.session(["Ram Thapa"]).redact(&text).into_owned();
        prop_assert!(out.len() <= text.len() + 16 * text.len().max(1));
    }
}

/// A labelled text: `[[kind:value]]` marks taken out, and where each was.
fn unmark(marked: &str) -> (String, Vec<(Range<usize>, String)>) {
    let mut text = String::new();
    let mut labels = Vec::new();
    let mut rest = marked;
    while let Some(open) = rest.find("[[") {
        text.push_str(&rest[..open]);
        let inner = &rest[open + 2..];
        let close = inner.find("]]").expect("a closed mark");
        let (kind, value) = inner[..close].split_once(':').expect("kind:value");
        labels.push((text.len()..text.len() + value.len(), kind.to_string()));
        text.push_str(value);
        rest = &inner[close + 2..];
    }
    text.push_str(rest);
    (text, labels)
}

#[derive(Default, Debug)]
struct Score {
    planted: u64,
    /// Covered whole by a placeholder of its own kind.
    right: u64,
    /// Covered whole by a placeholder of another kind.
    other_kind: u64,
    /// Some of it left in the text.
    leaked: u64,
    /// Placeholders of this kind, and those on a value of this kind.
    found: u64,
    found_right: u64,
}

/// What [`evaluate`] found on a labelled set.
struct Evaluation {
    scores: std::collections::BTreeMap<String, Score>,
    look_alikes: u64,
    kept: u64,
    misses: Vec<String>,
}

impl Evaluation {
    fn planted(&self) -> u64 {
        self.scores.values().map(|s| s.planted).sum()
    }

    fn leaked(&self) -> u64 {
        self.scores.values().map(|s| s.leaked).sum()
    }

    fn recall(&self, kind: &str) -> f64 {
        let s = &self.scores[kind];
        s.right as f64 / s.planted.max(1) as f64
    }

    fn precision(&self, kind: &str) -> f64 {
        let s = &self.scores[kind];
        if s.found == 0 {
            1.0
        } else {
            s.found_right as f64 / s.found as f64
        }
    }

    fn print(&self, name: &str) {
        println!("{name}: per kind, planted, recall (right kind), redacted at all, precision");
        for (kind, s) in &self.scores {
            let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
            println!(
                "{kind:>6}: {:>5} planted, recall {:.3}, redacted {:.3}, precision {:.3} ({} found)",
                s.planted,
                ratio(s.right, s.planted),
                ratio(s.right + s.other_kind, s.planted),
                ratio(s.found_right, s.found),
                s.found
            );
        }
        println!(
            "look-alikes kept: {} of {}; personal values left in the text: {} of {}",
            self.kept,
            self.look_alikes,
            self.leaked(),
            self.planted()
        );
        for m in &self.misses {
            println!("  {m}");
        }
    }
}

/// Scores the default policy on a labelled set (one chat per line, values
/// marked `[[kind:value]]`): each planted value is redacted whole with the
/// right kind, with another, or (some of it) left in the text; each
/// placeholder lands on a value of its kind or not; each look-alike stays.
fn evaluate(data: &str) -> Evaluation {
    let r = redactor();
    let mut e = Evaluation {
        scores: Default::default(),
        look_alikes: 0,
        kept: 0,
        misses: Vec::new(),
    };
    for line in data.lines() {
        let chat: serde_json::Value = serde_json::from_str(line).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        let session = r.session(messages.iter().filter_map(|m| m["sender_name"].as_str()));
        for m in messages {
            let (text, labels) = unmark(m["text"].as_str().unwrap());
            let found = session.locate(&text);
            for (range, kind) in &labels {
                let overlaps = |f: &Range<usize>| f.start < range.end && range.start < f.end;
                if kind == "keep" {
                    e.look_alikes += 1;
                    if found.iter().any(|(f, _)| overlaps(f)) {
                        e.misses.push(format!(
                            "redacted a look-alike: {:?} in {text:?}",
                            &text[range.clone()]
                        ));
                    } else {
                        e.kept += 1;
                    }
                    continue;
                }
                let score = e.scores.entry(kind.clone()).or_default();
                score.planted += 1;
                let covering = found
                    .iter()
                    .find(|(f, _)| f.start <= range.start && range.end <= f.end);
                match covering {
                    Some((_, k)) if k.builtin_name() == Some(kind.as_str()) => score.right += 1,
                    Some((_, k)) => {
                        score.other_kind += 1;
                        e.misses.push(format!(
                            "{kind} redacted as {k:?}: {:?} in {text:?}",
                            &text[range.clone()]
                        ));
                    }
                    None => {
                        score.leaked += 1;
                        e.misses.push(format!(
                            "{kind} left: {:?} in {text:?}",
                            &text[range.clone()]
                        ));
                    }
                }
            }
            for (f, k) in &found {
                let name = k.builtin_name().unwrap_or("pattern").to_string();
                let right = labels.iter().any(|(range, kind)| {
                    *kind == name && f.start < range.end && range.start < f.end
                });
                let score = e.scores.entry(name).or_default();
                score.found += 1;
                score.found_right += u64::from(right);
                if !right {
                    e.misses
                        .push(format!("false {k:?}: {:?} in {text:?}", &text[f.clone()]));
                }
            }
        }
    }
    e
}

/// Recall and precision per kind on `tests/data/privacy_eval.jsonl`: 300
/// chats written by `examples/privacy_eval_data.rs`, 1,973 planted values
/// and 645 look-alikes. The recognisers were corrected against it (so it
/// flatters them; see the held-out set below). `cargo test --lib
/// labelled_set -- --nocapture` prints the tables.
#[test]
fn the_labelled_set() {
    let e = evaluate(include_str!("../../tests/data/privacy_eval.jsonl"));
    e.print("privacy_eval.jsonl");
    assert!(e.planted() > 1500, "the set plants values of every kind");
    assert_eq!(e.leaked(), 0, "{:#?}", e.misses);
    assert_eq!(e.kept, e.look_alikes, "{:#?}", e.misses);
    for kind in ["name", "phone", "email", "card", "iban", "ip", "id"] {
        assert!(e.recall(kind) >= 0.99, "{kind}: {:#?}", e.misses);
        assert!(e.precision(kind) >= 0.99, "{kind}: {:#?}", e.misses);
    }
}

/// `tests/data/privacy_heldout.jsonl`: 20 chats written by hand in other
/// words and forms after the recognisers were settled, and not tuned on.
/// Its figures are what to expect of text nobody wrote for the tests.
#[test]
fn the_held_out_labelled_set() {
    let e = evaluate(include_str!("../../tests/data/privacy_heldout.jsonl"));
    e.print("privacy_heldout.jsonl");
    assert!(e.planted() >= 70);
    // 5 of 70 left when first measured, 4 once codes glued to their
    // letters (`NEA1234567`) went whole: a floor, so a change that loses
    // ground here fails.
    assert!(e.leaked() <= 4, "{:#?}", e.misses);
    assert!(e.kept + 1 >= e.look_alikes, "{:#?}", e.misses);
}
