//! The JSON exports of chat apps and helpdesks, each read by a reader of
//! its own: Messenger, Telegram, Intercom, Zendesk, Freshdesk, Chatwoot.
//!
//! Each reader is a [`walk::Walk`]: it says which parts of its layout to
//! stream and turns each message (or ticket) it takes into [`Item`]s. The
//! walk runs on a parser thread and hands the items over through a small
//! bounded channel, so memory holds one message (one ticket) at a time
//! whatever the file's size. [`sniff`] tells the dialect from the keys that
//! only it writes.

mod chatwoot;
mod freshdesk;
mod html;
mod intercom;
mod messenger;
mod telegram;
pub(crate) mod walk;
mod zendesk;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde_json::Value;

use super::{
    Casting, Dropped, Format, Hint, IngestError, RawRow, RolesFrom, Row, RowBuilder, Source,
    Warning, text,
};
use crate::model::Role;

/// Items parsed ahead of the consumer.
const CHANNEL_DEPTH: usize = 64;

/// Tells a dialect from the start of a JSON file, by keys only it writes
/// (`None`: none of them, or too little to tell).
pub(super) fn sniff(head: &str) -> Option<Format> {
    let has = |key: &str| head.contains(&format!("\"{key}\""));
    let scores = [
        (
            Format::Telegram,
            u8::from(has("date_unixtime")) * 2
                + u8::from(has("text_entities")) * 2
                + u8::from(has("personal_information"))
                + u8::from(has("from_id"))
                + u8::from(head.contains("\"personal_chat\"")),
        ),
        (
            Format::Messenger,
            u8::from(has("sender_name") && has("timestamp_ms")) * 3
                + u8::from(has("thread_path"))
                + u8::from(has("is_still_participant")),
        ),
        (
            Format::Intercom,
            u8::from(has("conversation_parts")) * 3
                + u8::from(has("conversation_message")) * 2
                + u8::from(head.contains("\"conversation.list\"")) * 2
                + u8::from(has("part_type")),
        ),
        (
            Format::Freshdesk,
            u8::from(has("body_text") && (has("incoming") || has("private"))) * 3
                + u8::from(has("description_text")) * 2
                + u8::from(has("support_email")),
        ),
        (
            Format::Zendesk,
            u8::from(has("author_id") && (has("public") || has("plain_body"))) * 3
                + u8::from(has("html_body"))
                + u8::from(has("audits") && has("events")) * 2
                + u8::from(has("requester_id") && has("comments")),
        ),
        (
            Format::Chatwoot,
            u8::from(has("message_type") && (has("content") || has("inbox_id"))) * 3
                + u8::from(has("inbox_id"))
                + u8::from(has("account_id") && has("payload")),
        ),
    ];
    scores
        .into_iter()
        .filter(|(_, score)| *score >= 3)
        .max_by_key(|(_, score)| *score)
        .map(|(format, _)| format)
}

/// A message as a reader found it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub line: u64,
    pub conversation: String,
    /// The role, when the format says it (a helpdesk); `None`: from the name.
    pub role: Option<Casting>,
    pub sender_name: Option<String>,
    pub text: String,
    pub timestamp: Option<String>,
}

/// What a reader hands over.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Message),
    Hint {
        conversation: String,
        hint: Hint,
    },
    /// A sender the export says speaks for the business (the account that
    /// made it, a helpdesk user who is an agent).
    Business(String),
    Dropped(Dropped),
    Warning(Warning),
    End,
    Failed(IngestError),
}

/// The error a reader's walk stops with when the consumer went away.
const CONSUMER_GONE: &str = "the row reader was dropped";

/// Where a reader's items go.
pub(crate) struct Emit {
    tx: SyncSender<Item>,
}

impl Emit {
    pub fn send(&self, item: Item) -> Result<(), String> {
        self.tx.send(item).map_err(|_| CONSUMER_GONE.to_string())
    }

    pub fn message(&self, message: Message) -> Result<(), String> {
        self.send(Item::Message(message))
    }

    pub fn dropped(&self, why: Dropped) -> Result<(), String> {
        self.send(Item::Dropped(why))
    }

    pub fn warn(&self, line: u64, message: &str) -> Result<(), String> {
        self.send(Item::Warning(Warning::new(line, message)))
    }

    pub fn hint(&self, conversation: &str, hint: Hint) -> Result<(), String> {
        self.send(Item::Hint {
            conversation: conversation.to_string(),
            hint,
        })
    }
}

/// A certain role, as the format states it.
pub(crate) fn known(role: Role) -> Option<Casting> {
    Some(Casting {
        role,
        guessed: false,
    })
}

/// A field's text: a string as it is, a number as written; nothing else.
pub(crate) fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A field's text, trimmed, when not empty.
pub(crate) fn text_of(v: Option<&Value>) -> Option<String> {
    scalar(v)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The first of `keys` an object has (as a non-null value).
pub(crate) fn field<'a>(object: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .filter_map(|k| object.get(*k))
        .find(|v| !v.is_null())
}

/// A time the way helpdesks write it — RFC 3339 text, or Unix seconds or
/// milliseconds — as the canonical UTC form; text kept as written otherwise.
pub(crate) fn time_of(v: Option<&Value>) -> Option<String> {
    let raw = scalar(v)?;
    match v? {
        Value::Number(_) => super::time::parse_millis(&raw).and_then(super::time::canonical_utc),
        _ => Some(raw),
    }
}

/// The JSON readers' source: items from the parser thread, into rows.
pub(super) struct DialectSource {
    file: String,
    format: Format,
    items: Receiver<Item>,
}

impl DialectSource {
    /// Starts reading `path` as `format` (a JSON dialect); `name` is the
    /// file's name as the user knows it (a Messenger thread is named after
    /// its folder).
    pub(super) fn open(
        path: &Path,
        file: &str,
        name: &str,
        format: Format,
    ) -> Result<Self, IngestError> {
        let head = text::head(path, file)?;
        let input = text::decoded(path, &head, file, format)?;
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let thread_file = file.to_string();
        let context = Context {
            name: name.to_string(),
            file: file.to_string(),
        };
        std::thread::Builder::new()
            .name("json-dialect".into())
            .spawn(move || parse(input, format, context, tx, thread_file))
            .map_err(|source| IngestError::Io {
                file: file.to_string(),
                source,
            })?;
        Ok(Self {
            file: file.to_string(),
            format,
            items: rx,
        })
    }
}

/// What a reader knows of the file it reads.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The file's name as the user knows it (without its folder).
    pub name: String,
    /// How messages name the file (with its folder or archive).
    pub file: String,
}

impl Context {
    /// The file's name without its extension: a conversation's id of last
    /// resort.
    pub fn stem(&self) -> String {
        Path::new(&self.name)
            .file_stem()
            .map_or_else(|| self.name.clone(), |s| s.to_string_lossy().into_owned())
    }
}

/// The parser thread: walks the document with the dialect's reader.
fn parse(
    input: text::TextReader,
    format: Format,
    context: Context,
    tx: SyncSender<Item>,
    file: String,
) {
    let emit = Emit { tx };
    let mut reader: Box<dyn walk::Walk> = match format {
        Format::Messenger => Box::new(messenger::Messenger::new(&emit, &context)),
        Format::Telegram => Box::new(telegram::Telegram::new(&emit, &context)),
        Format::Intercom => Box::new(intercom::Intercom::new(&emit, &context)),
        Format::Zendesk => Box::new(zendesk::Zendesk::new(&emit, &context)),
        Format::Freshdesk => Box::new(freshdesk::Freshdesk::new(&emit, &context)),
        _ => Box::new(chatwoot::Chatwoot::new(&emit, &context)),
    };
    let result = walk::walk(input, reader.as_mut());
    drop(reader);
    let item = match result {
        Ok(()) => Item::End,
        Err(walk::WalkError::Io(source)) => Item::Failed(IngestError::Io { file, source }),
        Err(walk::WalkError::Json { message, .. }) if message.contains(CONSUMER_GONE) => return,
        Err(walk::WalkError::Json { line, message }) => Item::Failed(IngestError::Malformed {
            file,
            line,
            message,
        }),
    };
    let _ = emit.send(item);
}

impl Source for DialectSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        match self.items.recv() {
            Ok(Item::Message(m)) => {
                builder.build(
                    RawRow {
                        line: m.line,
                        conversation_id: Some(&m.conversation),
                        sender: None,
                        role: m.role,
                        text: Some(&m.text),
                        timestamp: m.timestamp.as_deref(),
                        sender_name: m.sender_name.as_deref(),
                    },
                    out,
                );
                Ok(true)
            }
            Ok(Item::Hint { conversation, hint }) => {
                builder.hint(&conversation, hint);
                Ok(true)
            }
            Ok(Item::Business(name)) => {
                builder.business(&name);
                Ok(true)
            }
            Ok(Item::Dropped(why)) => {
                builder.dropped(why);
                Ok(true)
            }
            Ok(Item::Warning(w)) => {
                out.push_back(Row::Warning(w));
                Ok(true)
            }
            Ok(Item::End) => Ok(false),
            Ok(Item::Failed(e)) => Err(e),
            Err(_) => Err(IngestError::Io {
                file: self.file.clone(),
                source: std::io::Error::other("the JSON parser thread stopped unexpectedly"),
            }),
        }
    }

    fn roles_from(&self) -> RolesFrom {
        match self.format {
            Format::Messenger | Format::Telegram | Format::Zendesk => RolesFrom::Names,
            _ => RolesFrom::Field,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Runs a reader over a document and collects what it hands over.

    use super::*;

    pub fn read(format: Format, name: &str, doc: &str) -> Result<Vec<Item>, walk::WalkError> {
        let (tx, rx) = sync_channel(100_000);
        let emit = Emit { tx };
        let context = Context {
            name: name.into(),
            file: name.into(),
        };
        let mut reader: Box<dyn walk::Walk> = match format {
            Format::Messenger => Box::new(messenger::Messenger::new(&emit, &context)),
            Format::Telegram => Box::new(telegram::Telegram::new(&emit, &context)),
            Format::Intercom => Box::new(intercom::Intercom::new(&emit, &context)),
            Format::Zendesk => Box::new(zendesk::Zendesk::new(&emit, &context)),
            Format::Freshdesk => Box::new(freshdesk::Freshdesk::new(&emit, &context)),
            _ => Box::new(chatwoot::Chatwoot::new(&emit, &context)),
        };
        walk::walk(doc.as_bytes(), reader.as_mut())?;
        drop(reader);
        drop(emit);
        Ok(rx.into_iter().collect())
    }

    /// `(conversation, role, sender, text)` of every message.
    pub fn messages(items: &[Item]) -> Vec<(String, Option<Role>, Option<String>, String)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Message(m) => Some((
                    m.conversation.clone(),
                    m.role.map(|c| c.role),
                    m.sender_name.clone(),
                    m.text.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    pub fn dropped(items: &[Item]) -> Vec<Dropped> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Dropped(d) => Some(*d),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_are_told_by_their_own_keys() {
        assert_eq!(
            sniff(
                r#"{"name": "Ram", "type": "personal_chat", "id": 1, "messages": [{"id": 1, "type": "message", "date": "2022-03-18T14:56:12", "date_unixtime": "1647615372", "from": "Ram", "from_id": "user1", "text": "hi", "text_entities": []}]}"#
            ),
            Some(Format::Telegram)
        );
        assert_eq!(
            sniff(
                r#"{"participants": [{"name": "Ram"}], "messages": [{"sender_name": "Ram", "timestamp_ms": 1, "content": "hi"}]}"#
            ),
            Some(Format::Messenger)
        );
        assert_eq!(
            sniff(
                r#"{"type": "conversation", "id": "1", "conversation_parts": {"type": "conversation_part.list", "conversation_parts": []}}"#
            ),
            Some(Format::Intercom)
        );
        assert_eq!(
            sniff(r#"{"comments": [{"id": 1, "author_id": 2, "body": "hi", "public": true}]}"#),
            Some(Format::Zendesk)
        );
        assert_eq!(
            sniff(
                r#"[{"id": 1, "description_text": "no power", "conversations": [{"body_text": "on it", "incoming": false, "private": false}]}]"#
            ),
            Some(Format::Freshdesk)
        );
        assert_eq!(
            sniff(
                r#"{"payload": [{"id": 1, "messages": [{"content": "hi", "message_type": 0}]}]}"#
            ),
            Some(Format::Chatwoot)
        );
        assert_eq!(
            sniff(r#"[{"conversation_id": "c1", "sender": "customer", "message": "hi"}]"#),
            None
        );
    }
}
