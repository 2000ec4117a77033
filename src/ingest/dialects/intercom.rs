//! Intercom conversations, as its REST API gives them: one conversation
//! object, an array of them, or the list envelope (`{"type":
//! "conversation.list", "conversations": […]}`).
//!
//! A conversation's first message is `source` (`conversation_message` in the
//! API's older versions), then come its `conversation_parts` (the list
//! object's `conversation_parts` array, or the array itself). Bodies are
//! HTML, read as text. The author's `type` says the role: `user`, `lead`
//! and `contact` are the customer, `admin` and `team` the business, `bot`
//! a bot. Notes are internal and dropped; assignments, opens and closes
//! without a body are activity, dropped; all counted.

use serde_json::{Map, Value};

use super::html;
use super::walk::{Plan, Walk};
use super::{Context, Emit, Message, field, known, scalar, text_of, time_of};
use crate::ingest::Dropped;
use crate::model::Role;

pub(crate) struct Intercom<'a> {
    emit: &'a Emit,
    /// A document that is one conversation: its fields, as they come.
    root: Map<String, Value>,
    fallback: String,
}

impl<'a> Intercom<'a> {
    pub fn new(emit: &'a Emit, context: &Context) -> Self {
        Self {
            emit,
            root: Map::new(),
            fallback: context.stem(),
        }
    }

    fn conversation(&self, line: u64, c: &Value) -> Result<(), String> {
        let id = scalar(c.get("id")).unwrap_or_else(|| self.fallback.clone());
        let created = time_of(c.get("created_at"));
        if let Some(first) = field(c, &["source", "conversation_message"]) {
            self.part(line, &id, first, created.clone(), true)?;
        }
        let parts = match c.get("conversation_parts") {
            Some(Value::Object(list)) => list.get("conversation_parts"),
            other => other,
        };
        for part in parts.and_then(Value::as_array).into_iter().flatten() {
            self.part(line, &id, part, None, false)?;
        }
        Ok(())
    }

    /// One message of a conversation; `created` is the time of the
    /// conversation's first message (which has none of its own).
    fn part(
        &self,
        line: u64,
        conversation: &str,
        part: &Value,
        created: Option<String>,
        first: bool,
    ) -> Result<(), String> {
        let kind = part
            .get("part_type")
            .and_then(Value::as_str)
            .unwrap_or(if first { "comment" } else { "" });
        if kind.starts_with("note") {
            return self.emit.dropped(Dropped::InternalNote);
        }
        let text = scalar(part.get("body"))
            .map(|b| html::to_text(&b))
            .unwrap_or_default();
        if text.is_empty() {
            let media = part
                .get("attachments")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            return self.emit.dropped(if media {
                Dropped::Media
            } else {
                Dropped::Activity
            });
        }
        let author = part.get("author");
        let role = match author.and_then(|a| a.get("type")).and_then(Value::as_str) {
            Some("user" | "lead" | "contact") => Role::Customer,
            Some("admin" | "team") => Role::Agent,
            Some("bot") => Role::Bot,
            // The conversation's first message without an author is the customer's.
            _ if first => Role::Customer,
            other => {
                return self.emit.warn(
                    line,
                    &format!(
                        "conversation {conversation}: a part whose author type is {}; skipped",
                        other.map_or("missing".to_string(), |t| format!("{t:?}"))
                    ),
                );
            }
        };
        self.emit.message(Message {
            line,
            conversation: conversation.to_string(),
            role: known(role),
            sender_name: author
                .and_then(|a| text_of(a.get("name")).or_else(|| text_of(a.get("email")))),
            text,
            timestamp: time_of(part.get("created_at")).or(created),
        })
    }
}

impl Walk for Intercom<'_> {
    fn plan(&self, path: &[String]) -> Plan {
        match path {
            [] => Plan::Enter,
            [k] if k == "conversations" => Plan::Enter,
            [k, star] if k == "conversations" && star == "*" => Plan::Take,
            [star] if star == "*" => Plan::Take,
            // A document that is one conversation: its fields.
            [_] => Plan::Take,
            _ => Plan::Skip,
        }
    }

    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
        match path {
            [k] if k != "*" && k != "conversations" => {
                // Keys are kept as Intercom writes them for `conversation`.
                self.root.insert(original_key(k), value);
                Ok(())
            }
            _ => self.conversation(line, &value),
        }
    }

    fn leave(&mut self, path: &[String]) -> Result<(), String> {
        if path.is_empty() && !self.root.is_empty() {
            let root = Value::Object(std::mem::take(&mut self.root));
            let is_conversation = root.get("conversation_parts").is_some()
                || field(&root, &["source", "conversation_message"]).is_some();
            if is_conversation {
                return self.conversation(1, &root);
            }
        }
        Ok(())
    }
}

/// The API's key for a normalised one (the walk lowercases and drops `_`).
fn original_key(normalised: &str) -> String {
    match normalised {
        "conversationparts" => "conversation_parts",
        "conversationmessage" => "conversation_message",
        "createdat" => "created_at",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::testing::{dropped, messages, read};
    use super::*;

    const CONVERSATION: &str = r#"{
  "type": "conversation", "id": "7001", "created_at": 1647615372,
  "source": {"type": "conversation", "delivered_as": "customer_initiated", "body": "<p>My power is out since <b>morning</b>.</p>",
             "author": {"type": "user", "id": "u1", "name": "Ram Sharma", "email": "ram@example.com"}},
  "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [
    {"type": "conversation_part", "part_type": "assignment", "body": null, "created_at": 1647615380, "author": {"type": "bot", "name": "Operator"}},
    {"type": "conversation_part", "part_type": "comment", "body": "<p>Hi! Our bot here.</p>", "created_at": 1647615381, "author": {"type": "bot", "name": "Operator"}},
    {"type": "conversation_part", "part_type": "note", "body": "<p>VIP customer</p>", "created_at": 1647615390, "author": {"type": "admin", "name": "Sita"}},
    {"type": "conversation_part", "part_type": "comment", "body": "<p>Sorry, a team is on the way.</p>", "created_at": 1647615400, "author": {"type": "admin", "name": "Sita"}},
    {"type": "conversation_part", "part_type": "close", "body": null, "created_at": 1647615500, "author": {"type": "admin", "name": "Sita"}}
  ], "total_count": 5}
}"#;

    #[test]
    fn one_conversation_notes_and_activity_dropped() {
        let items = read(Format::Intercom, "c.json", CONVERSATION).unwrap();
        assert_eq!(
            messages(&items),
            vec![
                (
                    "7001".into(),
                    Some(Role::Customer),
                    Some("Ram Sharma".into()),
                    "My power is out since morning.".into()
                ),
                (
                    "7001".into(),
                    Some(Role::Bot),
                    Some("Operator".into()),
                    "Hi! Our bot here.".into()
                ),
                (
                    "7001".into(),
                    Some(Role::Agent),
                    Some("Sita".into()),
                    "Sorry, a team is on the way.".into()
                ),
            ]
        );
        assert_eq!(
            dropped(&items),
            vec![Dropped::Activity, Dropped::InternalNote, Dropped::Activity]
        );
    }

    #[test]
    fn list_envelopes_and_arrays_hold_many() {
        let list = format!(
            r#"{{"type": "conversation.list", "pages": {{}}, "conversations": [{CONVERSATION}, {}]}}"#,
            CONVERSATION.replace("7001", "7002")
        );
        let items = read(Format::Intercom, "c.json", &list).unwrap();
        let ids: Vec<String> = messages(&items).into_iter().map(|m| m.0).collect();
        assert_eq!(ids.iter().filter(|i| *i == "7001").count(), 3);
        assert_eq!(ids.iter().filter(|i| *i == "7002").count(), 3);
        let array = format!("[{CONVERSATION}]");
        assert_eq!(
            messages(&read(Format::Intercom, "c.json", &array).unwrap()).len(),
            3
        );
        // The older API's `conversation_message`, parts as a bare array.
        let old = r#"{"id": 9, "conversation_message": {"body": "hello", "author": {"type": "lead"}},
                      "conversation_parts": [{"part_type": "comment", "body": "hi", "author": {"type": "admin"}}]}"#;
        let m = messages(&read(Format::Intercom, "c.json", old).unwrap());
        assert_eq!(m[0].1, Some(Role::Customer));
        assert_eq!(m[1].1, Some(Role::Agent));
    }
}
