//! Every supported tool's export, read from files the project wrote in each
//! tool's documented layout (`tests/data/exports`), traps included: roles
//! nobody states, dates that read both ways, mojibake, internal notes.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

fn exports() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exports")
}

/// What an upload of `path` reads: its format, messages and warnings.
struct Read {
    format: Format,
    messages: Vec<MessageRow>,
    warnings: Vec<Warning>,
}

fn read_with(path: &Path, opts: &IngestOptions) -> Read {
    let mut reader = open(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let format = reader.format();
    let mut messages = Vec::new();
    let mut warnings = Vec::new();
    for row in reader.by_ref() {
        match row.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            Row::Message(m) => messages.push(m),
            Row::Warning(w) => warnings.push(w),
        }
    }
    Read {
        format,
        messages,
        warnings,
    }
}

fn read(path: &Path) -> Read {
    read_with(path, &IngestOptions::default())
}

impl Read {
    /// `(conversation, role, sender, text)` per message.
    fn rows(&self) -> Vec<(String, Role, String, String)> {
        self.messages
            .iter()
            .map(|m| {
                (
                    m.conversation_id.clone(),
                    m.message.role,
                    m.message.sender_name.clone().unwrap_or_default(),
                    m.message.text.clone(),
                )
            })
            .collect()
    }

    fn conversations(&self) -> usize {
        let mut ids: Vec<&str> = self
            .messages
            .iter()
            .map(|m| m.conversation_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    fn role_of(&self, sender: &str) -> Vec<Role> {
        let mut roles: Vec<Role> = self
            .messages
            .iter()
            .filter(|m| m.message.sender_name.as_deref() == Some(sender))
            .map(|m| m.message.role)
            .collect();
        roles.dedup();
        roles
    }

    fn notices(&self) -> Vec<String> {
        self.warnings
            .iter()
            .filter(|w| w.is_notice())
            .map(ToString::to_string)
            .collect()
    }
}

#[test]
fn whatsapp_android_one_chat_named_after_the_customer() {
    let r = read(&exports().join("WhatsApp Chat with Ram Sharma.txt"));
    assert_eq!(r.format, Format::WhatsApp);
    assert_eq!(r.conversations(), 1);
    assert_eq!(r.messages[0].conversation_id, "Ram Sharma");
    assert_eq!(r.role_of("Ram Sharma"), vec![Role::Customer]);
    assert_eq!(r.role_of("NEA Customer Care"), vec![Role::Agent]);
    // Multi-line message kept whole; system lines, media and deletions gone.
    assert_eq!(
        r.messages[0].message.text,
        "Namaste, bijuli chaina since 6 am in Baneshwor.\nTransformer near the school made a loud bang."
    );
    assert_eq!(r.messages.len(), 7);
    // Day first, decided by the 14th near the end of the file.
    assert_eq!(
        r.messages[0].message.timestamp.as_deref(),
        Some("2024-04-03T09:12:00")
    );
    assert_eq!(
        r.messages[5].message.timestamp.as_deref(),
        Some("2024-04-14T18:40:00")
    );
    let notices = r.notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("system messages: 2")
            && notices[0].contains("media without text: 1")
            && notices[0].contains("deleted messages: 1"),
        "{}",
        notices[0]
    );
}

/// A zip holding `files` (name, bytes).
fn zip(path: &Path, files: &[(&str, &[u8])]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        z.start_file(*name, options).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn ios_chat() -> Vec<u8> {
    std::fs::read(exports().join("_chat.txt")).unwrap()
}

#[test]
fn whatsapp_ios_zip_with_media_month_first_12_hour_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("WhatsApp Chat - Sita Thapa.zip");
    zip(
        &path,
        &[
            ("_chat.txt", &ios_chat()),
            (
                "00000012-PHOTO-2024-04-15-08-00-00.jpg",
                b"\xff\xd8\xff not text",
            ),
        ],
    );
    let r = read(&path);
    assert_eq!(r.format, Format::WhatsApp);
    assert_eq!(r.conversations(), 1);
    assert_eq!(r.messages[0].conversation_id, "Sita Thapa");
    assert_eq!(r.role_of("Sita Thapa"), vec![Role::Customer]);
    assert_eq!(r.role_of("NEA Customer Care"), vec![Role::Agent]);
    let texts: Vec<&str> = r.messages.iter().map(|m| m.message.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "Hello, my meter shows a bill of Rs. 5,998 for March.\nThat is three times the usual!",
            "Sorry for the confusion, Sita ji. We will send a meter reader to check.",
            "The reading was wrong; the corrected bill is Rs. 1,998.",
            "OK thanks",
        ]
    );
    // 4/3/24 is April 3rd: 4/15/24 could only be month first. 1:30 PM is 13:30.
    assert_eq!(
        r.messages[2].message.timestamp.as_deref(),
        Some("2024-04-03T13:30:00")
    );
}

#[test]
fn several_whatsapp_chats_at_once_the_business_is_in_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let android = std::fs::read(exports().join("WhatsApp Chat with Ram Sharma.txt")).unwrap();
    // A third chat in a file named for no one: only the other chats tell
    // who the business is.
    let third = "05/04/2024, 10:00 - Hari: Voltage fluctuating in Butwal\n\
                 05/04/2024, 10:05 - NEA Customer Care: Sorry, we are checking the feeder.\n";
    let inner = dir.path().join("inner.zip");
    zip(&inner, &[("_chat.txt", &ios_chat()), ("IMG-1.jpg", b"x")]);
    let inner = std::fs::read(inner).unwrap();
    let path = dir.path().join("chats.zip");
    zip(
        &path,
        &[
            ("WhatsApp Chat with Ram Sharma.txt", &android),
            ("WhatsApp Chat - Sita Thapa.zip", &inner),
            ("support/chat3.txt", third.as_bytes()),
        ],
    );
    let r = read(&path);
    assert_eq!(r.format, Format::WhatsApp);
    assert_eq!(r.conversations(), 3);
    for customer in ["Ram Sharma", "Sita Thapa", "Hari"] {
        assert_eq!(r.role_of(customer), vec![Role::Customer], "{customer}");
    }
    assert_eq!(r.role_of("NEA Customer Care"), vec![Role::Agent]);
    assert!(
        !r.notices().iter().any(|n| n.contains("guess")),
        "{:?}",
        r.notices()
    );
}

#[test]
fn one_whatsapp_chat_nobody_names_is_a_guess_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.txt");
    std::fs::write(
        &path,
        "05/04/2024, 10:00 - Hari: Voltage fluctuating in Butwal\n\
         05/04/2024, 10:05 - Desk: Sorry, we are checking the feeder.\n",
    )
    .unwrap();
    let r = read(&path);
    assert_eq!(r.role_of("Hari"), vec![Role::Customer]);
    assert_eq!(r.role_of("Desk"), vec![Role::Agent]);
    let notices = r.notices();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("2 of 2 messages") && n.contains("ingest.agents")),
        "{notices:?}"
    );
    // Naming the business side settles it, with no warning.
    let opts = IngestOptions {
        agents: vec!["desk".into()],
        ..IngestOptions::default()
    };
    let r = read_with(&path, &opts);
    assert_eq!(r.role_of("Desk"), vec![Role::Agent]);
    assert!(r.notices().is_empty(), "{:?}", r.notices());
}

#[test]
fn messenger_folder_of_threads_mojibake_repaired_page_is_the_business() {
    let r = read(&exports().join("messenger"));
    assert_eq!(r.format, Format::Messenger);
    assert_eq!(r.conversations(), 2);
    assert_eq!(r.role_of("Nepal Electricity Authority"), vec![Role::Agent]);
    assert_eq!(r.role_of("Hari Gurung"), vec![Role::Customer]);
    assert_eq!(r.role_of("Maya Rai"), vec![Role::Customer]);
    let texts: Vec<&str> = r.messages.iter().map(|m| m.message.text.as_str()).collect();
    assert!(
        texts.contains(&"Namaste, मेरो घरमा बत्ती छैन since last night"),
        "{texts:?}"
    );
    assert!(texts.contains(&"Sorry Hari ji 🙏 Please share your customer ID."));
    assert_eq!(r.messages.len(), 8);
    let ids: Vec<&str> = r
        .messages
        .iter()
        .map(|m| m.conversation_id.as_str())
        .collect();
    assert!(ids.contains(&"hari_gurung") && ids.contains(&"maya_rai"));
}

#[test]
fn messenger_zip_reads_like_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = exports().join("messenger/messages/inbox");
    let a = std::fs::read(inbox.join("hari_gurung/message_1.json")).unwrap();
    let b = std::fs::read(inbox.join("maya_rai/message_1.json")).unwrap();
    let path = dir.path().join("facebook-nea.zip");
    zip(
        &path,
        &[
            ("messages/inbox/hari_gurung/message_1.json", &a),
            ("messages/inbox/hari_gurung/photos/1.jpg", b"x"),
            ("messages/inbox/maya_rai/message_1.json", &b),
        ],
    );
    let folder = read(&exports().join("messenger"));
    let zipped = read(&path);
    assert_eq!(zipped.rows(), folder.rows());
}

#[test]
fn telegram_one_chat_and_all_chats() {
    let r = read(&exports().join("result.json"));
    assert_eq!(r.format, Format::Telegram);
    assert_eq!(r.conversations(), 1);
    assert_eq!(r.role_of("Bikash KC"), vec![Role::Customer]);
    assert_eq!(r.role_of("NEA Helpdesk"), vec![Role::Agent]);
    assert_eq!(
        r.messages[0].message.text,
        "My new connection application 568255 is pending for two weeks"
    );
    assert_eq!(r.messages.len(), 3);

    let r = read(&exports().join("telegram_all_chats.json"));
    assert_eq!(r.format, Format::Telegram);
    assert_eq!(r.conversations(), 2);
    assert_eq!(r.role_of("NEA Helpdesk"), vec![Role::Agent]);
    assert_eq!(r.role_of("Anita Shrestha"), vec![Role::Customer]);
    assert_eq!(r.messages.len(), 6);
    assert_eq!(
        r.messages[0].message.timestamp.as_deref(),
        Some("2024-04-05T10:01:40Z")
    );
}

#[test]
fn intercom_list_notes_and_assignments_dropped() {
    let r = read(&exports().join("intercom_conversations.json"));
    assert_eq!(r.format, Format::Intercom);
    assert_eq!(r.conversations(), 2);
    let rows = r.rows();
    assert_eq!(
        rows[0],
        (
            "1911149811".into(),
            Role::Customer,
            "Prakash Adhikari".into(),
            "My electricity bill payment via eSewa failed but money was deducted.".into()
        )
    );
    assert_eq!(rows[1].1, Role::Bot);
    assert_eq!(
        rows[2].3,
        "Sorry about that, Prakash. The payment will be reconciled within 24 hours & refunded if not."
    );
    assert_eq!(rows.len(), 6);
    // The lead wrote with no name: it is the customer all the same.
    assert_eq!(rows[4].1, Role::Customer);
    let notices = r.notices();
    assert!(
        notices[0].contains("internal notes: 1") && notices[0].contains("activity"),
        "{notices:?}"
    );
}

#[test]
fn zendesk_tickets_requester_is_the_customer_private_comments_dropped() {
    let r = read(&exports().join("zendesk_tickets.json"));
    assert_eq!(r.format, Format::Zendesk);
    assert_eq!(r.conversations(), 2);
    assert_eq!(r.role_of("20978392"), vec![Role::Customer]);
    assert_eq!(r.role_of("20978400"), vec![Role::Customer]);
    assert_eq!(r.role_of("361210"), vec![Role::Agent]);
    assert_eq!(r.messages.len(), 5);
    assert!(
        !r.messages
            .iter()
            .any(|m| m.message.text.contains("send technician"))
    );
}

#[test]
fn freshdesk_description_is_the_first_message() {
    let r = read(&exports().join("freshdesk_tickets.json"));
    assert_eq!(r.format, Format::Freshdesk);
    let rows = r.rows();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].1, Role::Customer);
    assert_eq!(rows[0].3, "Power outage in our whole street since 4 pm.");
    assert_eq!(rows[1].1, Role::Agent);
    assert_eq!(rows[2].1, Role::Customer);
}

#[test]
fn chatwoot_message_types_and_private_notes() {
    let r = read(&exports().join("chatwoot_conversations.json"));
    assert_eq!(r.format, Format::Chatwoot);
    let roles: Vec<Role> = r.messages.iter().map(|m| m.message.role).collect();
    assert_eq!(
        roles,
        vec![Role::Customer, Role::Bot, Role::Agent, Role::Customer]
    );
    // The template message is a bot's: an autoresponse, never analysed.
    assert!(r.messages[1].message.autoresponse);
}

#[test]
fn threaded_tweets_one_conversation_per_thread() {
    let r = read(&exports().join("twcs_sample.csv"));
    assert_eq!(r.format, Format::Threads);
    assert_eq!(r.conversations(), 2);
    let by_thread = |id: &str| {
        r.messages
            .iter()
            .filter(|m| m.conversation_id == id)
            .map(|m| (m.message.role, m.message.time_ms.is_some()))
            .collect::<Vec<_>>()
    };
    // The reply listed before its tweet still joins the thread of 119237.
    assert_eq!(by_thread("119237").len(), 3);
    assert_eq!(
        by_thread("119300"),
        vec![(Role::Agent, true), (Role::Customer, true)]
    );
}

#[test]
fn a_names_column_is_not_taken_for_the_role() {
    let r = read(&exports().join("misread_roles.csv"));
    assert_eq!(r.format, Format::Csv);
    assert_eq!(r.role_of("Anjali"), vec![Role::Agent]);
    assert_eq!(r.role_of("Suman Karki"), vec![Role::Customer]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_table_of_names_without_roles_gets_them_from_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chats.csv");
    std::fs::write(
        &path,
        "chat,from,text\n\
         1,Ram,no power\n1,Desk,sorry we are on it\n\
         2,Sita,bill too high\n2,Desk,checking\n\
         3,Desk,hello\n3,Hari,meter broken\n",
    )
    .unwrap();
    let r = read(&path);
    assert_eq!(r.role_of("Desk"), vec![Role::Agent]);
    for c in ["Ram", "Sita", "Hari"] {
        assert_eq!(r.role_of(c), vec![Role::Customer]);
    }
    assert!(r.notices().is_empty(), "{:?}", r.notices());
}

#[test]
fn the_format_can_be_forced() {
    let dir = tempfile::tempdir().unwrap();
    // A chat export that does not start with a message line.
    let path = dir.path().join("export.log");
    std::fs::write(
        &path,
        "exported by the phone\n05/04/2024, 10:00 - Hari: Voltage low\n05/04/2024, 10:01 - Desk: checking\n",
    )
    .unwrap();
    assert!(open(&path, &IngestOptions::default()).is_err());
    let opts = IngestOptions {
        format: Some(Format::WhatsApp),
        ..IngestOptions::default()
    };
    let r = read_with(&path, &opts);
    assert_eq!(r.format, Format::WhatsApp);
    assert_eq!(r.messages.len(), 2);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("1 lines before"))
    );
}

#[test]
fn zip_bombs_and_unsafe_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.zip");
    let big = vec![b'a'; 2 * 1024 * 1024];
    zip(&path, &[("big.txt", &big)]);
    let opts = IngestOptions {
        xlsx_max_inflated_bytes: 1024 * 1024,
        ..IngestOptions::default()
    };
    let err = open(&path, &opts).err().expect("refused");
    assert!(err.to_string().contains("zip bomb"), "{err}");

    let path = dir.path().join("slip.zip");
    zip(
        &path,
        &[
            ("../../escape.txt", b"05/04/2024, 10:00 - A: b\n"),
            (
                "ok.txt",
                b"05/04/2024, 10:00 - Hari: hello\n05/04/2024, 10:01 - Desk: hi\n",
            ),
        ],
    );
    let r = read(&path);
    assert_eq!(r.messages.len(), 2);
    assert!(!dir.path().parent().unwrap().join("escape.txt").exists());
    assert!(r.notices().iter().any(|n| n.contains("unsafe path")));
}

#[test]
fn a_choice_from_fields_takes_a_list_of_senders_up_to_its_limit() {
    let choice = IngestChoice::from_fields(None, Some(" NEA Care \n\n* (NEA)\n")).unwrap();
    assert_eq!(
        choice.agents,
        Some(vec!["NEA Care".to_string(), "* (NEA)".to_string()])
    );
    assert_eq!(
        IngestChoice::from_fields(None, Some("\n \n"))
            .unwrap()
            .agents,
        None
    );
    // The limit counts characters, not bytes: Devanagari takes three bytes each.
    let most = "न".repeat(IngestChoice::MAX_AGENTS_CHARS);
    assert!(IngestChoice::from_fields(None, Some(&most)).is_ok());
    let e = IngestChoice::from_fields(None, Some(&format!("{most}x"))).unwrap_err();
    assert!(e.to_string().contains("4097 characters"), "{e}");
}
