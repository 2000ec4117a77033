//! Chatwoot conversations, as its API gives them: one conversation with
//! its `messages`, an array of conversations, the list envelope
//! (`{"data": {"meta": …, "payload": […]}}` or `{"payload": […]}`), or a
//! conversation's messages alone (`{"meta": …, "payload": [messages]}`,
//! each with its `conversation_id`).
//!
//! A conversation is a conversation. A message's `message_type` says who:
//! 0 (`incoming`) the customer, 1 (`outgoing`) the business (a bot when its
//! sender is an `agent_bot`), 3 (`template`) a bot; 2 (`activity`: status
//! changes, assignments) is dropped, and so are `private` notes; all counted.

use serde_json::{Map, Value};

use super::walk::{Plan, Walk};
use super::{Context, Emit, Message, known, scalar, text_of, time_of};
use crate::ingest::Dropped;
use crate::model::Role;

pub(crate) struct Chatwoot<'a> {
    emit: &'a Emit,
    fallback: String,
    /// A document that is one conversation: its fields, as they come.
    root: Map<String, Value>,
}

impl<'a> Chatwoot<'a> {
    pub fn new(emit: &'a Emit, context: &Context) -> Self {
        Self {
            emit,
            fallback: context.stem(),
            root: Map::new(),
        }
    }

    /// A conversation (it has `messages`), or one message.
    fn item(&self, line: u64, v: &Value) -> Result<(), String> {
        match v.get("messages").and_then(Value::as_array) {
            Some(messages) => {
                let id = scalar(v.get("id")).unwrap_or_else(|| self.fallback.clone());
                for m in messages {
                    self.message(line, &id, m)?;
                }
                Ok(())
            }
            None => {
                let id = scalar(v.get("conversation_id")).unwrap_or_else(|| self.fallback.clone());
                self.message(line, &id, v)
            }
        }
    }

    fn message(&self, line: u64, conversation: &str, m: &Value) -> Result<(), String> {
        let kind = match m.get("message_type") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => match s.as_str() {
                "incoming" => Some(0),
                "outgoing" => Some(1),
                "activity" => Some(2),
                "template" => Some(3),
                _ => None,
            },
            _ => None,
        };
        if kind == Some(2) {
            return self.emit.dropped(Dropped::Activity);
        }
        if m.get("private").and_then(Value::as_bool) == Some(true) {
            return self.emit.dropped(Dropped::InternalNote);
        }
        let sender = m.get("sender");
        let role = match kind {
            Some(0) => Role::Customer,
            Some(1)
                if sender.and_then(|s| s.get("type")).and_then(Value::as_str)
                    == Some("agent_bot") =>
            {
                Role::Bot
            }
            Some(1) => Role::Agent,
            Some(3) => Role::Bot,
            _ => {
                return self.emit.warn(
                    line,
                    &format!("conversation {conversation}: a message without a known message_type; skipped"),
                );
            }
        };
        let Some(text) = text_of(m.get("content")) else {
            return self.emit.dropped(Dropped::Media);
        };
        self.emit.message(Message {
            line,
            conversation: conversation.to_string(),
            role: known(role),
            sender_name: sender.and_then(|s| text_of(s.get("name"))),
            text,
            timestamp: time_of(m.get("created_at")),
        })
    }
}

impl Walk for Chatwoot<'_> {
    fn plan(&self, path: &[String]) -> Plan {
        match path {
            [] => Plan::Enter,
            [k] if k == "data" || k == "payload" => Plan::Enter,
            [d, p] if d == "data" && p == "payload" => Plan::Enter,
            [star] if star == "*" => Plan::Take,
            [p, star] if p == "payload" && star == "*" => Plan::Take,
            [d, p, star] if d == "data" && p == "payload" && star == "*" => Plan::Take,
            // A document that is one conversation: its fields.
            [_] => Plan::Take,
            _ => Plan::Skip,
        }
    }

    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
        match path {
            [k] if k != "*" => {
                self.root.insert(k.clone(), value);
                Ok(())
            }
            _ => self.item(line, &value),
        }
    }

    fn leave(&mut self, path: &[String]) -> Result<(), String> {
        if path.is_empty() && !self.root.is_empty() {
            let root = Value::Object(std::mem::take(&mut self.root));
            if root.get("messages").is_some() {
                return self.item(1, &root);
            }
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
    fn conversations_in_the_list_envelope() {
        let doc = r#"{"data": {"meta": {"all_count": 1}, "payload": [
  {"id": 31, "inbox_id": 1, "account_id": 1, "messages": [
    {"id": 1, "content": "Bijuli chaina", "message_type": 0, "created_at": 1647615372, "private": false, "sender": {"name": "Ram", "type": "contact"}},
    {"id": 2, "content": "Conversation was assigned to Sita", "message_type": 2, "created_at": 1647615373},
    {"id": 3, "content": "Hi, how can we help?", "message_type": 1, "created_at": 1647615374, "sender": {"name": "Helper", "type": "agent_bot"}},
    {"id": 4, "content": "call the lineman", "message_type": 1, "private": true, "sender": {"name": "Sita", "type": "user"}},
    {"id": 5, "content": "A team is on the way", "message_type": 1, "created_at": 1647615400, "sender": {"name": "Sita", "type": "user"}}
  ]}
]}}"#;
        let items = read(Format::Chatwoot, "c.json", doc).unwrap();
        assert_eq!(
            messages(&items),
            vec![
                (
                    "31".into(),
                    Some(Role::Customer),
                    Some("Ram".into()),
                    "Bijuli chaina".into()
                ),
                (
                    "31".into(),
                    Some(Role::Bot),
                    Some("Helper".into()),
                    "Hi, how can we help?".into()
                ),
                (
                    "31".into(),
                    Some(Role::Agent),
                    Some("Sita".into()),
                    "A team is on the way".into()
                ),
            ]
        );
        assert_eq!(
            dropped(&items),
            vec![Dropped::Activity, Dropped::InternalNote]
        );
    }

    #[test]
    fn messages_endpoint_and_one_conversation() {
        let doc = r#"{"meta": {"contact": {}}, "payload": [
            {"id": 1, "content": "hello", "message_type": "incoming", "conversation_id": 8}]}"#;
        assert_eq!(
            messages(&read(Format::Chatwoot, "m.json", doc).unwrap())[0].0,
            "8"
        );
        let one = r#"{"id": 5, "messages": [{"content": "x", "message_type": 0}]}"#;
        assert_eq!(
            messages(&read(Format::Chatwoot, "m.json", one).unwrap())[0].0,
            "5"
        );
    }
}
