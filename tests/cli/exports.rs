//! Real tools' exports through the binary (`tests/data/exports`, written by
//! the project in each tool's documented layout): analysed, stored with the
//! right roles, previewed without storing anything.

use std::path::{Path, PathBuf};

use crate::helpers::Sandbox;

fn export(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/exports")
        .join(name)
}

/// `(conversation, role, text)` of every stored message of the only upload.
fn stored(sb: &Sandbox) -> Vec<(String, String, String)> {
    let store = sb.store();
    let id = store.uploads().unwrap()[0].id;
    let mut out = Vec::new();
    for loaded in store.load_conversations(id, None, 10_000).unwrap() {
        let c = &loaded.conversation;
        for m in &c.messages {
            out.push((c.id.clone(), m.role.as_str().to_string(), m.text.clone()));
        }
    }
    out
}

#[test]
fn every_tools_export_is_analysed() {
    for (name, format, conversations, messages) in [
        ("WhatsApp Chat with Ram Sharma.txt", "whatsapp", 1, 7),
        ("messenger", "messenger", 2, 8),
        ("result.json", "telegram", 1, 3),
        ("telegram_all_chats.json", "telegram", 2, 6),
        ("intercom_conversations.json", "intercom", 2, 6),
        ("zendesk_tickets.json", "zendesk", 2, 5),
        ("freshdesk_tickets.json", "freshdesk", 1, 3),
        ("chatwoot_conversations.json", "chatwoot", 1, 4),
        ("twcs_sample.csv", "threads", 2, 5),
        ("misread_roles.csv", "csv", 2, 6),
    ] {
        let sb = Sandbox::new();
        let run = sb.analyze(&export(name));
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let summary = run.json();
        assert_eq!(
            summary["conversations_processed"], conversations,
            "{name}: {summary}"
        );
        assert_eq!(summary["messages_processed"], messages, "{name}: {summary}");
        let uploads = sb.store().uploads().unwrap();
        assert_eq!(uploads[0].format, format, "{name}");
        let rows = stored(&sb);
        assert!(
            rows.iter().any(|(_, role, _)| role == "agent"),
            "{name}: the business side was told: {rows:?}"
        );
        assert!(rows.iter().any(|(_, role, _)| role == "customer"), "{name}");
    }
}

#[test]
fn the_misread_csv_is_read_right() {
    // Before: the `Sender` column of names was taken for the role, and
    // every message, the agents' apologies included, was the customer's.
    let sb = Sandbox::new();
    assert_eq!(sb.analyze(&export("misread_roles.csv")).code, 0);
    let rows = stored(&sb);
    let apologies: Vec<&String> = rows
        .iter()
        .filter(|(_, _, text)| text.contains("pologise") || text.starts_with("Sorry"))
        .map(|(_, role, _)| role)
        .collect();
    assert_eq!(apologies, ["agent", "agent", "agent"]);
}

#[test]
fn dry_run_stores_nothing_and_shows_the_reading() {
    let sb = Sandbox::new();
    let chat = export("WhatsApp Chat with Ram Sharma.txt");
    let run = sb.run(&["analyze", "--dry-run", chat.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(": whatsapp"), "{}", run.stdout);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("agent") && l.ends_with("NEA Customer Care")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("customer (Ram Sharma): Namaste"),
        "{}",
        run.stdout
    );
    assert!(!sb.db().exists(), "a dry run creates no database");
    let json = sb
        .run(&["analyze", "--dry-run", "--json", chat.to_str().unwrap()])
        .json();
    assert_eq!(json["counts"]["conversations"], 1);
    assert_eq!(json["roles_from_names"], true);
}

#[test]
fn format_and_agents_can_be_given_and_are_kept_with_the_upload() {
    let sb = Sandbox::new();
    let chat = sb.write(
        "support.log",
        "Chat export of the support phone\n\
         05/04/2024, 10:00 - Hari: Voltage is very low in Butwal\n\
         05/04/2024, 10:05 - Desk: Sorry, we are checking the feeder.\n",
    );
    // Its first line is not a chat's: not sniffed as one (nor a table).
    assert_ne!(sb.analyze(&chat).code, 0);
    let run = sb.run(&[
        "analyze",
        chat.to_str().unwrap(),
        "--format",
        "whatsapp",
        "--agent",
        "Desk",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        stored(&sb)
            .iter()
            .map(|(_, role, _)| role.as_str())
            .collect::<Vec<_>>(),
        ["customer", "agent"]
    );
    let record = &sb.store().uploads().unwrap()[0];
    let choice = record.ingest.as_ref().expect("the choice is kept");
    assert_eq!(choice.agents.as_deref(), Some(&["Desk".to_string()][..]));
    let warnings = run.json()["warnings"].to_string();
    assert!(!warnings.contains("guess"), "{warnings}");
}
