//! Telegram Desktop's "Export chat history" / "Export Telegram data"
//! `result.json`: one chat (`name`, `type`, `id`, `messages`), or every chat
//! (`personal_information`, then `chats.list` and `left_chats.list`, each a
//! chat as above).
//!
//! A chat is a conversation (by its id). A message's `text` is a string or
//! an array of strings and entities (`{"type": "bold", "text": …}`), joined.
//! Service messages (joins, pins, calls) and media without a caption are
//! dropped and counted. The account that exported everything
//! (`personal_information`) speaks for the business; a personal chat is
//! named after the other party, its customer.

use serde_json::Value;

use super::walk::{Plan, Walk, is};
use super::{Context, Emit, Item, Message, scalar, text_of, time_of};
use crate::ingest::{Dropped, Hint};

/// The chat being read.
#[derive(Debug, Default)]
struct Chat {
    id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    hinted: bool,
}

pub(crate) struct Telegram<'a> {
    emit: &'a Emit,
    fallback: String,
    chat: Chat,
}

impl<'a> Telegram<'a> {
    pub fn new(emit: &'a Emit, context: &Context) -> Self {
        Self {
            emit,
            fallback: context.stem(),
            chat: Chat::default(),
        }
    }

    fn conversation(&self) -> String {
        self.chat
            .id
            .clone()
            .or_else(|| self.chat.name.clone())
            .unwrap_or_else(|| self.fallback.clone())
    }

    /// A personal chat is titled with the other party: say so once, before
    /// its messages.
    fn hint(&mut self) -> Result<(), String> {
        if self.chat.hinted {
            return Ok(());
        }
        self.chat.hinted = true;
        if self.chat.kind.as_deref() == Some("personal_chat")
            && let Some(name) = self.chat.name.clone()
        {
            self.emit.hint(&self.conversation(), Hint::Title(name))?;
        }
        Ok(())
    }

    fn message(&mut self, line: u64, m: &Value) -> Result<(), String> {
        self.hint()?;
        if m.get("type").and_then(Value::as_str) == Some("service") {
            return self.emit.dropped(Dropped::System);
        }
        let text = joined_text(m.get("text"));
        if text.trim().is_empty() {
            let media = [
                "photo",
                "file",
                "media_type",
                "sticker_emoji",
                "location_information",
            ]
            .iter()
            .any(|k| m.get(*k).is_some());
            return self.emit.dropped(if media {
                Dropped::Media
            } else {
                Dropped::System
            });
        }
        let Some(sender) = text_of(m.get("from")).or_else(|| text_of(m.get("actor"))) else {
            return self
                .emit
                .warn(line, "a message without a sender (from); skipped");
        };
        // `date_unixtime` is UTC; `date` is the exporting computer's local time.
        let timestamp = m
            .get("date_unixtime")
            .and_then(|v| scalar(Some(v)))
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| crate::ingest::time::canonical_utc(s * 1000))
            .or_else(|| time_of(m.get("date")));
        self.emit.message(Message {
            line,
            conversation: self.conversation(),
            role: None,
            sender_name: Some(sender),
            text: text.trim().to_string(),
            timestamp,
        })
    }
}

/// `text` as Telegram writes it: a string, or an array of strings and
/// entities with a `text`.
fn joined_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect(),
        _ => String::new(),
    }
}

/// Whether `path` is a chat of the list form (`chats.list.*`).
fn is_listed_chat(path: &[String]) -> bool {
    is(path, &["chats", "list", "*"]) || is(path, &["leftchats", "list", "*"])
}

impl Walk for Telegram<'_> {
    fn plan(&self, path: &[String]) -> Plan {
        let chat_at = if path.len() >= 3 && is_listed_chat(&path[..3]) {
            3
        } else {
            0
        };
        let (outer, inner) = path.split_at(chat_at.min(path.len()));
        match inner {
            [] => Plan::Enter,
            [k] if k == "messages" => Plan::Enter,
            [k] if k == "name" || k == "type" || k == "id" => Plan::Take,
            [m, star] if m == "messages" && star == "*" => Plan::Take,
            _ if outer.is_empty() => match path {
                [k] if k == "personalinformation" => Plan::Take,
                [k] if k == "chats" || k == "leftchats" => Plan::Enter,
                [k, l] if (k == "chats" || k == "leftchats") && l == "list" => Plan::Enter,
                _ => Plan::Skip,
            },
            _ => Plan::Skip,
        }
    }

    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
        let inner = if path.len() >= 3 && is_listed_chat(&path[..3]) {
            &path[3..]
        } else {
            path
        };
        match inner {
            [k] if k == "personalinformation" => {
                let first = text_of(value.get("first_name")).unwrap_or_default();
                let last = text_of(value.get("last_name")).unwrap_or_default();
                let name = format!("{first} {last}").trim().to_string();
                if !name.is_empty() {
                    self.emit.send(Item::Business(name))?;
                }
                Ok(())
            }
            [k] if k == "name" => {
                self.chat.name = text_of(Some(&value));
                Ok(())
            }
            [k] if k == "type" => {
                self.chat.kind = text_of(Some(&value));
                Ok(())
            }
            [k] if k == "id" => {
                self.chat.id = scalar(Some(&value));
                Ok(())
            }
            _ => self.message(line, &value),
        }
    }

    fn leave(&mut self, path: &[String]) -> Result<(), String> {
        if path.is_empty() || is_listed_chat(path) {
            self.chat = Chat::default();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::testing::{dropped, messages, read};
    use super::*;

    #[test]
    fn one_chat_with_entities_service_and_media() {
        let doc = r#"{
 "name": "Ram Sharma",
 "type": "personal_chat",
 "id": 4242,
 "messages": [
  {"id": 1, "type": "service", "date": "2022-03-18T14:50:00", "date_unixtime": "1647615000", "actor": "Ram Sharma", "action": "phone_call", "text": ""},
  {"id": 2, "type": "message", "date": "2022-03-18T14:56:12", "date_unixtime": "1647615372", "from": "Ram Sharma", "from_id": "user1", "text": ["Power cut in ", {"type": "bold", "text": "Baneshwor"}, " again"], "text_entities": []},
  {"id": 3, "type": "message", "date": "2022-03-18T14:57:00", "date_unixtime": "1647615420", "from": "NEA Support", "from_id": "user2", "photo": "photos/1.jpg", "text": ""},
  {"id": 4, "type": "message", "date": "2022-03-18T14:58:00", "date_unixtime": "1647615480", "from": "NEA Support", "from_id": "user2", "text": "A team is on the way."}
 ]
}"#;
        let items = read(Format::Telegram, "result.json", doc).unwrap();
        assert_eq!(
            messages(&items),
            vec![
                (
                    "4242".into(),
                    None,
                    Some("Ram Sharma".into()),
                    "Power cut in Baneshwor again".into()
                ),
                (
                    "4242".into(),
                    None,
                    Some("NEA Support".into()),
                    "A team is on the way.".into()
                ),
            ]
        );
        assert_eq!(dropped(&items), vec![Dropped::System, Dropped::Media]);
        assert!(items.iter().any(|i| matches!(i,
            Item::Hint { hint: Hint::Title(t), conversation } if t == "Ram Sharma" && conversation == "4242")));
    }

    #[test]
    fn all_chats_name_the_exporter_and_keep_chats_apart() {
        let doc = r#"{
 "about": "Here is the data you requested.",
 "personal_information": {"user_id": 9, "first_name": "NEA", "last_name": "Helpdesk", "phone_number": "+977 1"},
 "contacts": {"about": "…", "list": [{"first_name": "X", "date_unixtime": "1"}]},
 "chats": {"about": "…", "list": [
   {"name": "Ram", "type": "personal_chat", "id": 1, "messages": [
     {"id": 1, "type": "message", "date_unixtime": "1647615372", "from": "Ram", "text": "hello"}]},
   {"name": "Sita", "type": "personal_chat", "id": 2, "messages": [
     {"id": 1, "type": "message", "date_unixtime": "1647615372", "from": "NEA Helpdesk", "text": "hi Sita"}]}
 ]}
}"#;
        let items = read(Format::Telegram, "result.json", doc).unwrap();
        let m = messages(&items);
        assert_eq!(m[0].0, "1");
        assert_eq!(m[1].0, "2");
        assert!(
            items
                .iter()
                .any(|i| matches!(i, Item::Business(n) if n == "NEA Helpdesk"))
        );
    }
}
