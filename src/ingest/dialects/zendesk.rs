//! Zendesk tickets with their comments, as its API and exports give them:
//!
//! - tickets with a `comments` array (the JSON export, one ticket per line,
//!   or an array or `{"tickets": […]}` of them, or `{"ticket": {…},
//!   "comments": […]}`);
//! - one ticket's comments (`{"comments": […], "users": […]}`, the list
//!   comments endpoint);
//! - ticket audits (`{"audits": [{"ticket_id", "author_id", "events":
//!   [{"type": "Comment", …}]}]}`), whose `Comment` events are the messages.
//!
//! A ticket is a conversation. A comment with `public: false` is an
//! internal note: dropped and counted. Comments name their author by id
//! only, so roles come from the ids across the upload (see `roles`): the
//! ticket's `requester_id` is its customer, and a sideloaded user whose
//! `role` is `agent` or `admin` speaks for the business; without either,
//! whoever answers many tickets is taken to.

use serde_json::Value;

use super::html;
use super::walk::{Plan, Walk};
use super::{Context, Emit, Item, Message, field, scalar, time_of};
use crate::ingest::{Dropped, Hint};

pub(crate) struct Zendesk<'a> {
    emit: &'a Emit,
    fallback: String,
    /// The ticket whose comments are being read (`ticket`, or the id of a
    /// document that is one ticket), and its requester.
    ticket: Option<String>,
    requester: Option<String>,
}

impl<'a> Zendesk<'a> {
    pub fn new(emit: &'a Emit, context: &Context) -> Self {
        Self {
            emit,
            fallback: context.stem(),
            ticket: None,
            requester: None,
        }
    }

    /// The ticket's requester is its customer (said once both are known;
    /// only the first pass listens, so when does not matter).
    fn hint_requester(&self) -> Result<(), String> {
        match (&self.ticket, &self.requester) {
            (Some(ticket), Some(requester)) => {
                self.emit.hint(ticket, Hint::Title(requester.clone()))
            }
            _ => Ok(()),
        }
    }

    /// A ticket object, with or without its comments.
    fn ticket(&mut self, line: u64, t: &Value) -> Result<(), String> {
        let Some(id) = scalar(t.get("id")) else {
            return self.emit.warn(line, "a ticket without an id; skipped");
        };
        if let Some(requester) = scalar(t.get("requester_id")) {
            self.emit.hint(&id, Hint::Title(requester))?;
        }
        for comment in t
            .get("comments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.comment(line, &id, comment)?;
        }
        Ok(())
    }

    /// A comment (or an audit's `Comment` event) of `ticket`.
    fn comment(&self, line: u64, ticket: &str, c: &Value) -> Result<(), String> {
        if c.get("public").and_then(Value::as_bool) == Some(false) {
            return self.emit.dropped(Dropped::InternalNote);
        }
        let text = match field(c, &["plain_body", "body"]).and_then(|v| scalar(Some(v))) {
            Some(text) => html::to_text(&text),
            None => scalar(c.get("html_body"))
                .map(|h| html::to_text(&h))
                .unwrap_or_default(),
        };
        if text.is_empty() {
            return self.emit.dropped(Dropped::Media);
        }
        let Some(author) = scalar(c.get("author_id")) else {
            return self.emit.warn(
                line,
                &format!("ticket {ticket}: a comment without an author_id; skipped"),
            );
        };
        self.emit.message(Message {
            line,
            conversation: ticket.to_string(),
            role: None,
            sender_name: Some(author),
            text,
            timestamp: time_of(c.get("created_at")),
        })
    }

    /// An audit: its `Comment` events are messages, the rest is activity.
    fn audit(&self, line: u64, a: &Value) -> Result<(), String> {
        let ticket = scalar(a.get("ticket_id")).unwrap_or_else(|| self.fallback.clone());
        for event in a
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
            if kind == "Comment" || kind == "VoiceComment" {
                let mut event = event.clone();
                if event.get("created_at").is_none()
                    && let (Some(o), Some(at)) = (event.as_object_mut(), a.get("created_at"))
                {
                    o.insert("created_at".into(), at.clone());
                }
                if event.get("author_id").is_none()
                    && let (Some(o), Some(by)) = (event.as_object_mut(), a.get("author_id"))
                {
                    o.insert("author_id".into(), by.clone());
                }
                self.comment(line, &ticket, &event)?;
            }
        }
        Ok(())
    }

    /// A sideloaded user: agents and admins speak for the business.
    fn user(&self, u: &Value) -> Result<(), String> {
        let role = u.get("role").and_then(Value::as_str);
        match (role, scalar(u.get("id"))) {
            (Some("agent" | "admin"), Some(id)) => self.emit.send(Item::Business(id)),
            _ => Ok(()),
        }
    }
}

impl Walk for Zendesk<'_> {
    fn plan(&self, path: &[String]) -> Plan {
        match path {
            [] => Plan::Enter,
            [k] if k == "comments" || k == "audits" || k == "users" || k == "tickets" => {
                Plan::Enter
            }
            [_, star] if star == "*" => Plan::Take,
            [star] if star == "*" => Plan::Take,
            [k] if k == "ticket" || k == "id" || k == "requesterid" => Plan::Take,
            _ => Plan::Skip,
        }
    }

    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
        match path {
            [star] if star == "*" => self.ticket(line, &value),
            [k, _] if k == "tickets" => self.ticket(line, &value),
            [k, _] if k == "users" => self.user(&value),
            [k, _] if k == "audits" => self.audit(line, &value),
            [k, _] if k == "comments" => {
                let ticket = self.ticket.clone().unwrap_or_else(|| self.fallback.clone());
                self.comment(line, &ticket, &value)
            }
            [k] if k == "ticket" => {
                self.ticket = scalar(value.get("id"));
                self.requester = scalar(value.get("requester_id"));
                self.ticket(line, &value)
            }
            [k] if k == "id" => {
                self.ticket = scalar(Some(&value));
                self.hint_requester()
            }
            [k] if k == "requesterid" => {
                self.requester = scalar(Some(&value));
                self.hint_requester()
            }
            _ => Ok(()),
        }
    }

    fn leave(&mut self, path: &[String]) -> Result<(), String> {
        if path.is_empty() {
            // The next line of the export is another ticket.
            self.ticket = None;
            self.requester = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dropped, messages, read};
    use super::super::{Format, Item};
    use super::*;

    #[test]
    fn tickets_with_comments_notes_dropped_requester_named() {
        let doc = r#"{"id": 35436, "subject": "No power", "requester_id": 20978392, "comments": [
  {"id": 1, "type": "Comment", "author_id": 20978392, "body": "My power is out.", "html_body": "<p>My power is out.</p>", "public": true, "created_at": "2022-03-18T14:56:12Z"},
  {"id": 2, "type": "Comment", "author_id": 555, "body": "Check the transformer first", "public": false, "created_at": "2022-03-18T14:57:00Z"},
  {"id": 3, "type": "Comment", "author_id": 555, "html_body": "<p>A team is <b>on the way</b>.</p>", "public": true, "created_at": "2022-03-18T14:58:00Z"}
]}
{"id": 35437, "requester_id": 1, "comments": [{"id": 4, "author_id": 1, "body": "Bill too high", "public": true}]}
"#;
        let items = read(Format::Zendesk, "tickets.json", doc).unwrap();
        assert_eq!(
            messages(&items),
            vec![
                (
                    "35436".into(),
                    None,
                    Some("20978392".into()),
                    "My power is out.".into()
                ),
                (
                    "35436".into(),
                    None,
                    Some("555".into()),
                    "A team is on the way.".into()
                ),
                (
                    "35437".into(),
                    None,
                    Some("1".into()),
                    "Bill too high".into()
                ),
            ]
        );
        assert_eq!(dropped(&items), vec![Dropped::InternalNote]);
        assert!(items.iter().any(|i| matches!(i,
            Item::Hint { conversation, hint: Hint::Title(r) } if conversation == "35436" && r == "20978392")));
    }

    #[test]
    fn audits_and_sideloaded_users() {
        let doc = r#"{"audits": [
  {"id": 1, "ticket_id": 77, "created_at": "2022-03-18T14:56:12Z", "author_id": 10,
   "events": [{"id": 11, "type": "Comment", "body": "No light in my area", "public": true},
              {"id": 12, "type": "Change", "field_name": "status", "value": "open"}]},
  {"id": 2, "ticket_id": 77, "created_at": "2022-03-18T15:00:00Z", "author_id": 20,
   "events": [{"id": 21, "type": "Comment", "body": "Restored now", "public": true, "author_id": 20}]}
], "users": [{"id": 20, "role": "agent", "name": "Sita"}, {"id": 10, "role": "end-user"}]}"#;
        let items = read(Format::Zendesk, "audits.json", doc).unwrap();
        let m = messages(&items);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "77");
        assert_eq!(m[0].2.as_deref(), Some("10"));
        assert!(
            items
                .iter()
                .any(|i| matches!(i, Item::Business(n) if n == "20"))
        );
    }
}
