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
fn redacted_messages_carry_their_senders_as_placeholders() {
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
    let (out, counts) = redactor().redact_messages(&messages);
    assert_eq!(out[0].sender_name.as_deref(), Some("<NAME_1>"));
    assert_eq!(out[1].sender_name.as_deref(), Some("<NAME_2>"));
    assert_eq!(out[0].text, "No power. I'm <NAME_1>, <PHONE_1>");
    assert_eq!(
        out[1].text,
        "Sorry <NAME_1>, <NAME_2> here. Calling <PHONE_1>"
    );
    assert_eq!(counts.of(Kind::Phone), 2);
    assert_eq!(counts.of(Kind::Name), 5);
    assert_eq!(
        redactor().named_counts(&counts),
        vec![("phone".to_string(), 2), ("name".to_string(), 5)]
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
