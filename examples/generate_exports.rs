//! Writes a synthetic export in a support tool's own layout, for measuring
//! the readers at size (the README's "Exports from your tools" figures).
//!
//! `cargo run --release --example generate_exports -- --format F
//!  [--conversations N] [--seed S] --output PATH`, F one of: whatsapp (one
//! chat, every conversation in it), whatsapp-zip (a zip of one chat file
//! per conversation), messenger (a zip of `message_1.json` threads),
//! telegram (an "all chats" `result.json`), intercom, zendesk (JSON lines
//! of tickets), freshdesk, chatwoot, twcs (threaded posts).

#[path = "support/synth.rs"]
mod synth;

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use serde_json::{Value, json};
use synth::SynthMessage;

/// The business account of the chat apps.
const PAGE: &str = "NEA Customer Care";

fn conversations(rows: Vec<SynthMessage>) -> Vec<(String, Vec<SynthMessage>)> {
    let mut by_id: BTreeMap<String, Vec<SynthMessage>> = BTreeMap::new();
    for r in rows {
        by_id.entry(r.conversation_id.clone()).or_default().push(r);
    }
    by_id.into_iter().collect()
}

fn seconds(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// The customer's name in a conversation (the chat's title).
fn customer(messages: &[SynthMessage]) -> String {
    messages
        .iter()
        .find(|m| m.role == "customer")
        .map_or_else(|| "Customer".to_string(), |m| m.sender_name.clone())
}

fn chat_sender(m: &SynthMessage, customer: &str) -> String {
    if m.role == "customer" {
        customer.to_string()
    } else {
        PAGE.to_string()
    }
}

fn whatsapp_lines(messages: &[SynthMessage], out: &mut impl Write) -> std::io::Result<()> {
    let customer = customer(messages);
    for m in messages {
        let t = chrono::DateTime::parse_from_rfc3339(&m.timestamp).unwrap();
        writeln!(
            out,
            "{} - {}: {}",
            t.format("%d/%m/%Y, %H:%M"),
            chat_sender(m, &customer),
            m.text
        )?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut format = String::new();
    let mut conversations_n = 100_000usize;
    let mut seed = 7u64;
    let mut output = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--format" => format = value,
            "--conversations" => conversations_n = value.parse().unwrap_or(conversations_n),
            "--seed" => seed = value.parse().unwrap_or(seed),
            "--output" => output = value,
            _ => {
                eprintln!(
                    "usage: generate_exports --format F [--conversations N] [--seed S] --output PATH"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if format.is_empty() || output.is_empty() {
        eprintln!("--format and --output are required");
        return ExitCode::FAILURE;
    }
    let chats = conversations(synth::generate(conversations_n, seed));
    match write(&format, &chats, &output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{output}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(format: &str, chats: &[(String, Vec<SynthMessage>)], output: &str) -> std::io::Result<()> {
    let file = std::fs::File::create(output)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    match format {
        "whatsapp" => {
            // One chat: one customer and the business, every conversation's
            // messages in turn (name the file "WhatsApp Chat with Ram.txt").
            for (_, messages) in chats {
                let ram: Vec<SynthMessage> = messages
                    .iter()
                    .cloned()
                    .map(|mut m| {
                        if m.role == "customer" {
                            m.sender_name = "Ram".into();
                        }
                        m
                    })
                    .collect();
                whatsapp_lines(&ram, &mut out)?;
            }
        }
        "whatsapp-zip" => {
            let mut zip = zip::ZipWriter::new(out.into_inner().map_err(|e| e.into_error())?);
            let options = zip::write::SimpleFileOptions::default();
            for (id, messages) in chats {
                zip.start_file(
                    format!("WhatsApp Chat with {} {id}.txt", customer(messages)),
                    options,
                )?;
                whatsapp_lines(messages, &mut zip)?;
            }
            zip.finish()?;
            return Ok(());
        }
        "messenger" => {
            let mut zip = zip::ZipWriter::new(out.into_inner().map_err(|e| e.into_error())?);
            let options = zip::write::SimpleFileOptions::default();
            for (id, messages) in chats {
                let customer = customer(messages);
                let thread = json!({
                    "participants": [{"name": customer}, {"name": PAGE}],
                    "messages": messages.iter().rev().map(|m| json!({
                        "sender_name": chat_sender(m, &customer),
                        "timestamp_ms": seconds(&m.timestamp) * 1000,
                        "content": m.text,
                        "is_geoblocked_for_viewer": false,
                    })).collect::<Vec<_>>(),
                    "title": customer,
                    "is_still_participant": true,
                    "thread_path": format!("inbox/{id}"),
                });
                zip.start_file(format!("messages/inbox/{id}/message_1.json"), options)?;
                serde_json::to_writer_pretty(&mut zip, &thread)?;
            }
            zip.finish()?;
            return Ok(());
        }
        "telegram" => {
            write!(
                out,
                "{{\"about\": \"Here is the data you requested.\",\n\"personal_information\": \
                 {{\"user_id\": 1, \"first_name\": \"NEA Customer\", \"last_name\": \"Care\"}},\n\
                 \"chats\": {{\"about\": \"All chats.\", \"list\": ["
            )?;
            for (i, (id, messages)) in chats.iter().enumerate() {
                let customer = customer(messages);
                let chat = json!({
                    "name": customer,
                    "type": "personal_chat",
                    "id": id,
                    "messages": messages.iter().enumerate().map(|(n, m)| json!({
                        "id": n,
                        "type": "message",
                        "date": m.timestamp.trim_end_matches('Z'),
                        "date_unixtime": seconds(&m.timestamp).to_string(),
                        "from": chat_sender(m, &customer),
                        "from_id": if m.role == "customer" { "user2" } else { "user1" },
                        "text": m.text,
                        "text_entities": [{"type": "plain", "text": m.text}],
                    })).collect::<Vec<_>>(),
                });
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer_pretty(&mut out, &chat)?;
            }
            write!(out, "]}}}}")?;
        }
        "intercom" => {
            out.write_all(b"{\"type\": \"conversation.list\", \"conversations\": [")?;
            for (i, (id, messages)) in chats.iter().enumerate() {
                let part = |m: &SynthMessage| {
                    let kind = match m.role {
                        "customer" => "user",
                        "agent" => "admin",
                        _ => "bot",
                    };
                    json!({"type": "conversation_part", "part_type": "comment",
                           "body": format!("<p>{}</p>", m.text), "created_at": seconds(&m.timestamp),
                           "author": {"type": kind, "name": m.sender_name}})
                };
                let c = json!({
                    "type": "conversation", "id": id, "created_at": seconds(&messages[0].timestamp),
                    "source": {"type": "conversation", "body": format!("<p>{}</p>", messages[0].text),
                               "author": {"type": "user", "name": messages[0].sender_name}},
                    "conversation_parts": {"type": "conversation_part.list",
                        "conversation_parts": messages[1..].iter().map(part).collect::<Vec<_>>()},
                });
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut out, &c)?;
            }
            out.write_all(b"]}")?;
        }
        "zendesk" => {
            for (id, messages) in chats {
                let requester = 1000;
                let comments: Vec<Value> = messages.iter().enumerate().map(|(n, m)| json!({
                    "id": n, "type": "Comment",
                    "author_id": if m.role == "customer" { requester } else { 7 },
                    "body": m.text, "html_body": format!("<p>{}</p>", m.text), "public": true,
                    "created_at": m.timestamp,
                })).collect();
                let ticket = json!({"id": id, "requester_id": requester, "subject": "Support",
                                    "comments": comments});
                serde_json::to_writer(&mut out, &ticket)?;
                out.write_all(b"\n")?;
            }
        }
        "freshdesk" => {
            out.write_all(b"[")?;
            for (i, (id, messages)) in chats.iter().enumerate() {
                let t = json!({
                    "id": id, "requester_id": 5001, "description_text": messages[0].text,
                    "description": format!("<div>{}</div>", messages[0].text),
                    "created_at": messages[0].timestamp,
                    "conversations": messages[1..].iter().map(|m| json!({
                        "body_text": m.text, "body": format!("<div>{}</div>", m.text),
                        "incoming": m.role == "customer", "private": false, "user_id": 77,
                        "ticket_id": id, "created_at": m.timestamp,
                    })).collect::<Vec<_>>(),
                });
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut out, &t)?;
            }
            out.write_all(b"]")?;
        }
        "chatwoot" => {
            out.write_all(b"{\"data\": {\"meta\": {}, \"payload\": [")?;
            for (i, (id, messages)) in chats.iter().enumerate() {
                let c = json!({
                    "id": id, "inbox_id": 1, "account_id": 1,
                    "messages": messages.iter().map(|m| json!({
                        "content": m.text,
                        "message_type": match m.role { "customer" => 0, "agent" => 1, _ => 3 },
                        "private": false, "created_at": seconds(&m.timestamp),
                        "sender": {"name": m.sender_name, "type": if m.role == "customer" { "contact" } else { "user" }},
                    })).collect::<Vec<_>>(),
                });
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut out, &c)?;
            }
            out.write_all(b"]}}")?;
        }
        "twcs" => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "tweet_id",
                "author_id",
                "inbound",
                "created_at",
                "text",
                "response_tweet_id",
                "in_response_to_tweet_id",
            ])?;
            let mut next = 1u64;
            for (_, messages) in chats {
                let mut previous: Option<u64> = None;
                for m in messages {
                    let id = next;
                    next += 1;
                    let t = chrono::DateTime::parse_from_rfc3339(&m.timestamp).unwrap();
                    w.write_record([
                        id.to_string(),
                        if m.role == "customer" {
                            m.sender_name.clone()
                        } else {
                            "NEA_Nepal".into()
                        },
                        (m.role == "customer").to_string(),
                        t.format("%a %b %d %H:%M:%S %z %Y").to_string(),
                        m.text.clone(),
                        String::new(),
                        previous.map(|p| p.to_string()).unwrap_or_default(),
                    ])?;
                    previous = Some(id);
                }
            }
            w.flush()?;
            return Ok(());
        }
        other => {
            return Err(std::io::Error::other(format!("unknown format {other}")));
        }
    }
    out.flush()
}
