//! Facebook Messenger and Page inbox exports ("Download your information",
//! JSON): one thread per `message_N.json` (a long thread is cut into
//! `message_1.json`, `message_2.json`, … in one folder), `participants`,
//! then `messages` (`sender_name`, `timestamp_ms`, `content`, newest first),
//! then `title` (the other party, in a one-to-one thread) and `thread_path`.
//!
//! A thread is a conversation named after its folder (the files of one
//! thread share it). Facebook writes text as UTF-8 bytes escaped one by
//! one (`\u00c3\u00a9` for `é`): [`repair`] reads them back. Calls,
//! unsent messages and media without text are dropped and counted.

use serde_json::Value;

use super::walk::{Plan, Walk, is};
use super::{Context, Emit, Message, scalar, time_of};
use crate::ingest::{Dropped, Hint};

/// Text as Facebook wrote it, repaired: a string whose characters are all
/// below U+0100 and whose bytes, taken one per character, are valid UTF-8
/// of more than ASCII was UTF-8 escaped byte by byte. Anything else is left
/// as it is (a real `é` written as `\u00e9` alone is not valid UTF-8).
pub(crate) fn repair(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() || text.chars().any(|c| c as u32 > 0xFF) {
        return text.into();
    }
    let bytes: Vec<u8> = text.chars().map(|c| c as u8).collect();
    match String::from_utf8(bytes) {
        Ok(repaired) => repaired.into(),
        Err(_) => text.into(),
    }
}

pub(crate) struct Messenger<'a> {
    emit: &'a Emit,
    conversation: String,
}

impl<'a> Messenger<'a> {
    pub fn new(emit: &'a Emit, context: &Context) -> Self {
        Self {
            emit,
            conversation: thread_of(context),
        }
    }

    fn message(&self, line: u64, m: &Value) -> Result<(), String> {
        let sender = scalar(m.get("sender_name")).map(|s| repair(&s).into_owned());
        let text = scalar(m.get("content"))
            .map(|s| repair(&s).trim().to_string())
            .unwrap_or_default();
        if m.get("is_unsent").and_then(Value::as_bool) == Some(true) {
            return self.emit.dropped(Dropped::Deleted);
        }
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("Generic");
        if matches!(kind, "Call" | "Subscribe" | "Unsubscribe") || m.get("call_duration").is_some()
        {
            return self.emit.dropped(Dropped::System);
        }
        let media = [
            "photos",
            "videos",
            "audio_files",
            "files",
            "gifs",
            "sticker",
        ]
        .iter()
        .any(|k| m.get(*k).is_some());
        if text.is_empty() || (media && text.ends_with("sent an attachment.")) {
            return self.emit.dropped(if media || m.get("share").is_some() {
                Dropped::Media
            } else {
                Dropped::System
            });
        }
        let Some(sender) = sender else {
            return self
                .emit
                .warn(line, "a message without a sender_name; skipped");
        };
        self.emit.message(Message {
            line,
            conversation: self.conversation.clone(),
            role: None,
            sender_name: Some(sender),
            text,
            timestamp: time_of(m.get("timestamp_ms")),
        })
    }
}

/// A thread's id: the folder of its `message_N.json` files, else the file's
/// name.
fn thread_of(context: &Context) -> String {
    let stem = context.stem();
    let numbered = stem
        .strip_prefix("message_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if numbered {
        let parts: Vec<&str> = context.file.split(['/', '\\']).collect();
        if parts.len() >= 2 {
            let folder = parts[parts.len() - 2];
            let folder = folder.rsplit(": ").next().unwrap_or(folder);
            if !folder.is_empty() {
                return folder.to_string();
            }
        }
    }
    stem
}

impl Walk for Messenger<'_> {
    fn plan(&self, path: &[String]) -> Plan {
        match path {
            [] => Plan::Enter,
            [k] if k == "messages" => Plan::Enter,
            [k] if k == "participants" || k == "title" => Plan::Take,
            _ if is(path, &["messages", "*"]) => Plan::Take,
            _ => Plan::Skip,
        }
    }

    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
        match path {
            [k] if k == "participants" => {
                for p in value.as_array().into_iter().flatten() {
                    if let Some(name) = scalar(p.get("name")) {
                        let hint = Hint::Participant(repair(&name).into_owned());
                        self.emit.hint(&self.conversation, hint)?;
                    }
                }
                Ok(())
            }
            [k] if k == "title" => match scalar(Some(&value)) {
                Some(title) => self
                    .emit
                    .hint(&self.conversation, Hint::Title(repair(&title).into_owned())),
                None => Ok(()),
            },
            _ => self.message(line, &value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dropped, messages, read};
    use super::super::{Format, Item};
    use super::*;

    #[test]
    fn mojibake_is_repaired_and_real_latin1_kept() {
        assert_eq!(repair("caf\u{00c3}\u{00a9}"), "café");
        assert_eq!(
            repair("\u{00e0}\u{00a4}\u{00ac}\u{00e0}\u{00a4}\u{00a4}"),
            "बत"
        );
        assert_eq!(repair("caf\u{00e9}"), "caf\u{00e9}");
        assert_eq!(repair("plain"), "plain");
        assert_eq!(repair("बत्ती"), "बत्ती");
    }

    #[test]
    fn a_thread_is_one_conversation_named_after_its_folder() {
        let doc = r#"{
  "participants": [{"name": "Ram Sharma"}, {"name": "Nepal Electricity"}],
  "messages": [
    {"sender_name": "Nepal Electricity", "timestamp_ms": 1647615400000, "content": "Sorry, a team is on the way.", "type": "Generic"},
    {"sender_name": "Ram Sharma", "timestamp_ms": 1647615390000, "photos": [{"uri": "a.jpg"}], "type": "Generic"},
    {"sender_name": "Ram Sharma", "timestamp_ms": 1647615380000, "content": "Ram Sharma unsent a message", "is_unsent": true},
    {"sender_name": "Ram Sharma", "timestamp_ms": 1647615372000, "content": "Bijuli chaina \u00f0\u009f\u0098\u00a1", "type": "Generic"}
  ],
  "title": "Ram Sharma",
  "thread_path": "inbox/ramsharma_123"
}"#;
        let items = read(
            Format::Messenger,
            "export.zip: messages/inbox/ramsharma_123/message_1.json",
            doc,
        )
        .unwrap();
        assert_eq!(
            messages(&items),
            vec![
                (
                    "ramsharma_123".into(),
                    None,
                    Some("Nepal Electricity".into()),
                    "Sorry, a team is on the way.".into()
                ),
                (
                    "ramsharma_123".into(),
                    None,
                    Some("Ram Sharma".into()),
                    "Bijuli chaina 😡".into()
                ),
            ]
        );
        assert_eq!(dropped(&items), vec![Dropped::Media, Dropped::Deleted]);
        assert!(items.iter().any(|i| matches!(i,
            Item::Hint { hint: Hint::Title(t), .. } if t == "Ram Sharma")));
        let Some(Item::Message(m)) = items.iter().find(|i| matches!(i, Item::Message(_))) else {
            panic!()
        };
        assert_eq!(m.timestamp.as_deref(), Some("2022-03-18T14:56:40Z"));
    }
}
