//! Freshdesk tickets, as its API gives them: one ticket (`GET
//! /api/v2/tickets/{id}?include=conversations`), an array of them (or
//! `{"tickets": […]}`), or a ticket's conversations alone (`GET
//! /api/v2/tickets/{id}/conversations`: an array whose entries carry their
//! `ticket_id`).
//!
//! A ticket is a conversation. Its `description` is the customer's first
//! message; each entry of `conversations` is a reply or a note: `private`
//! ones are internal notes (dropped, counted), `incoming` ones come from the
//! customer, the others from the business. Plain text (`description_text`,
//! `body_text`) is read where given, HTML (`description`, `body`) otherwise.

use serde_json::{Map, Value};

use super::html;
use super::walk::{Plan, Walk};
use super::{Context, Emit, Message, field, known, scalar, text_of, time_of};
use crate::ingest::Dropped;
use crate::model::Role;

pub(crate) struct Freshdesk<'a> {
    emit: &'a Emit,
    fallback: String,
    /// A document that is one ticket: its fields, as they come.
    root: Map<String, Value>,
}

impl<'a> Freshdesk<'a> {
    pub fn new(emit: &'a Emit, context: &Context) -> Self {
        Self {
            emit,
            fallback: context.stem(),
            root: Map::new(),
        }
    }

    /// A ticket, or (with a `ticket_id` and no `description`) one entry of a
    /// ticket's conversations.
    fn item(&self, line: u64, v: &Value) -> Result<(), String> {
        let is_entry = v.get("ticket_id").is_some()
            && v.get("conversations").is_none()
            && field(v, &["description", "description_text"]).is_none();
        if is_entry {
            let ticket = scalar(v.get("ticket_id")).unwrap_or_else(|| self.fallback.clone());
            return self.entry(line, &ticket, v);
        }
        let ticket = scalar(v.get("id")).unwrap_or_else(|| self.fallback.clone());
        let description = field(v, &["description_text"])
            .and_then(|d| text_of(Some(d)))
            .or_else(|| scalar(v.get("description")).map(|d| html::to_text(&d)))
            .filter(|d| !d.is_empty());
        if let Some(text) = description {
            self.emit.message(Message {
                line,
                conversation: ticket.clone(),
                role: known(Role::Customer),
                sender_name: scalar(v.get("requester_id"))
                    .or_else(|| text_of(v.get("email")))
                    .map(|r| format!("requester {r}")),
                text,
                timestamp: time_of(v.get("created_at")),
            })?;
        }
        for entry in v
            .get("conversations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.entry(line, &ticket, entry)?;
        }
        Ok(())
    }

    fn entry(&self, line: u64, ticket: &str, c: &Value) -> Result<(), String> {
        if c.get("private").and_then(Value::as_bool) == Some(true) {
            return self.emit.dropped(Dropped::InternalNote);
        }
        let text = text_of(c.get("body_text"))
            .or_else(|| scalar(c.get("body")).map(|b| html::to_text(&b)))
            .unwrap_or_default();
        if text.is_empty() {
            return self.emit.dropped(Dropped::Media);
        }
        let role = match c.get("incoming").and_then(Value::as_bool) {
            Some(true) => Role::Customer,
            Some(false) => Role::Agent,
            None => {
                return self.emit.warn(
                    line,
                    &format!("ticket {ticket}: a conversation entry without `incoming`; skipped"),
                );
            }
        };
        self.emit.message(Message {
            line,
            conversation: ticket.to_string(),
            role: known(role),
            sender_name: scalar(c.get("user_id"))
                .map(|u| format!("user {u}"))
                .or_else(|| text_of(c.get("from_email"))),
            text,
            timestamp: time_of(c.get("created_at")),
        })
    }
}

impl Walk for Freshdesk<'_> {
    fn plan(&self, path: &[String]) -> Plan {
        match path {
            [] => Plan::Enter,
            [k] if k == "tickets" => Plan::Enter,
            [k, star] if k == "tickets" && star == "*" => Plan::Take,
            [star] if star == "*" => Plan::Take,
            // A document that is one ticket: its fields.
            [_] => Plan::Take,
            _ => Plan::Skip,
        }
    }

    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
        match path {
            [k] if k != "*" => {
                self.root.insert(original_key(k), value);
                Ok(())
            }
            _ => self.item(line, &value),
        }
    }

    fn leave(&mut self, path: &[String]) -> Result<(), String> {
        if path.is_empty() && !self.root.is_empty() {
            let root = Value::Object(std::mem::take(&mut self.root));
            if field(&root, &["description", "description_text", "conversations"]).is_some() {
                return self.item(1, &root);
            }
        }
        Ok(())
    }
}

/// The API's key for a normalised one (the walk lowercases and drops `_`).
fn original_key(normalised: &str) -> String {
    match normalised {
        "descriptiontext" => "description_text",
        "requesterid" => "requester_id",
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

    #[test]
    fn a_ticket_with_its_conversations() {
        let doc = r#"{"id": 20, "subject": "No power", "requester_id": 5001,
  "description": "<div>No power since <b>6 am</b></div>", "description_text": "No power since 6 am",
  "created_at": "2022-03-18T14:56:12Z",
  "conversations": [
    {"id": 1, "body": "<div>Checking</div>", "body_text": "Checking", "incoming": false, "private": false, "user_id": 77, "ticket_id": 20, "created_at": "2022-03-18T15:00:00Z"},
    {"id": 2, "body_text": "Transformer blown, crew sent", "incoming": false, "private": true, "user_id": 77, "ticket_id": 20},
    {"id": 3, "body": "<div>Thanks, it is back!</div>", "incoming": true, "private": false, "user_id": 5001, "ticket_id": 20}
  ]}"#;
        let items = read(Format::Freshdesk, "ticket.json", doc).unwrap();
        assert_eq!(
            messages(&items),
            vec![
                (
                    "20".into(),
                    Some(Role::Customer),
                    Some("requester 5001".into()),
                    "No power since 6 am".into()
                ),
                (
                    "20".into(),
                    Some(Role::Agent),
                    Some("user 77".into()),
                    "Checking".into()
                ),
                (
                    "20".into(),
                    Some(Role::Customer),
                    Some("user 5001".into()),
                    "Thanks, it is back!".into()
                ),
            ]
        );
        assert_eq!(dropped(&items), vec![Dropped::InternalNote]);
    }

    #[test]
    fn arrays_of_tickets_and_of_conversation_entries() {
        let tickets = r#"[{"id": 1, "description_text": "a"}, {"id": 2, "description_text": "b", "conversations": []}]"#;
        assert_eq!(
            messages(&read(Format::Freshdesk, "t.json", tickets).unwrap()).len(),
            2
        );
        let entries = r#"[{"id": 1, "body_text": "hi", "incoming": true, "private": false, "ticket_id": 9},
                          {"id": 2, "body_text": "hello", "incoming": false, "private": false, "ticket_id": 9}]"#;
        let m = messages(&read(Format::Freshdesk, "t.json", entries).unwrap());
        assert_eq!(m[0].0, "9");
        assert_eq!(m[1].1, Some(Role::Agent));
    }
}
