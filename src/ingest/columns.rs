//! Finding the logical columns among an export's headers.
//!
//! Headers match case-insensitively, ignoring spaces, underscores and
//! dashes, through a list of aliases per column; `[ingest.columns]` names an
//! exact header instead.

use crate::config::ColumnOverrides;

/// The columns PowerPulse reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    ConversationId,
    Sender,
    Text,
    Timestamp,
    SenderName,
}

impl Column {
    pub const ALL: [Column; 5] = [
        Column::ConversationId,
        Column::Sender,
        Column::Text,
        Column::Timestamp,
        Column::SenderName,
    ];

    /// How error messages name the column.
    pub fn label(self) -> &'static str {
        match self {
            Column::ConversationId => "conversation id",
            Column::Sender => "sender role",
            Column::Text => "message text",
            Column::Timestamp => "timestamp",
            Column::SenderName => "sender name",
        }
    }

    /// The accepted headers as users write them, for error messages.
    pub fn display_aliases(self) -> &'static str {
        match self {
            Column::ConversationId => {
                "conversation_id, chat_id, chat, conversation, thread_id, ticket_id, session_id"
            }
            Column::Sender => "sender, sender_type, role, author_type, from, direction",
            Column::Text => "message, text, body, content",
            Column::Timestamp => "timestamp, time, sent_at, created_at, date",
            Column::SenderName => "sender_name, author, name",
        }
    }

    pub fn required(self) -> bool {
        matches!(self, Column::ConversationId | Column::Sender | Column::Text)
    }

    /// Accepted headers, normalised, in order of preference.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::ConversationId => &[
                "conversationid",
                "chatid",
                "chat",
                "conversation",
                "threadid",
                "ticketid",
                "sessionid",
            ],
            Column::Sender => &[
                "sender",
                "sendertype",
                "role",
                "authortype",
                "from",
                "direction",
            ],
            Column::Text => &["message", "text", "body", "content"],
            Column::Timestamp => &["timestamp", "time", "sentat", "createdat", "date"],
            Column::SenderName => &["sendername", "author", "name"],
        }
    }

    fn overridden(self, o: &ColumnOverrides) -> Option<&str> {
        match self {
            Column::ConversationId => o.conversation_id.as_deref(),
            Column::Sender => o.sender.as_deref(),
            Column::Text => o.text.as_deref(),
            Column::Timestamp => o.timestamp.as_deref(),
            Column::SenderName => o.sender_name.as_deref(),
        }
    }
}

/// Lowercases and drops spaces, underscores and dashes (and a stray BOM).
pub fn normalize(header: &str) -> String {
    header
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '\u{feff}') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where each logical column is, by index into the header row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    pub conversation_id: Option<usize>,
    pub sender: Option<usize>,
    pub text: Option<usize>,
    pub timestamp: Option<usize>,
    pub sender_name: Option<usize>,
}

impl ColumnMap {
    /// Maps `headers`; `extra_id_alias` adds `id` for nested JSON conversations.
    pub fn find(headers: &[String], overrides: &ColumnOverrides) -> Self {
        let normalized: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
        let mut map = ColumnMap::default();
        for column in Column::ALL {
            let found = match column.overridden(overrides) {
                Some(name) => {
                    let wanted = normalize(name);
                    normalized.iter().position(|h| *h == wanted)
                }
                None => column
                    .aliases()
                    .iter()
                    .find_map(|alias| normalized.iter().position(|h| h == alias)),
            };
            *map.slot(column) = found;
        }
        map
    }

    fn slot(&mut self, column: Column) -> &mut Option<usize> {
        match column {
            Column::ConversationId => &mut self.conversation_id,
            Column::Sender => &mut self.sender,
            Column::Text => &mut self.text,
            Column::Timestamp => &mut self.timestamp,
            Column::SenderName => &mut self.sender_name,
        }
    }

    pub fn get(&self, column: Column) -> Option<usize> {
        match column {
            Column::ConversationId => self.conversation_id,
            Column::Sender => self.sender,
            Column::Text => self.text,
            Column::Timestamp => self.timestamp,
            Column::SenderName => self.sender_name,
        }
    }

    /// The first required column that was not found.
    pub fn missing(&self) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|c| c.required() && self.get(*c).is_none())
    }
}

/// Whether a header could name one of our columns (an alias, an override,
/// or a nested conversation id): the values of other fields are never read.
pub fn could_map(header: &str, overrides: &ColumnOverrides) -> bool {
    let n = normalize(header);
    Column::ALL
        .into_iter()
        .any(|c| match c.overridden(overrides) {
            Some(name) => normalize(name) == n,
            None => c.aliases().contains(&n.as_str()),
        })
        || is_nested_id(header, overrides)
}

/// Whether a header names a conversation id when conversations are nested
/// (`id` is accepted there too).
pub fn is_nested_id(header: &str, overrides: &ColumnOverrides) -> bool {
    let n = normalize(header);
    match &overrides.conversation_id {
        Some(name) => n == normalize(name),
        None => n == "id" || Column::ConversationId.aliases().contains(&n.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn aliases_match_whatever_the_case_and_separators() {
        let map = ColumnMap::find(
            &headers(&["Chat ID", "Author-Type", "BODY", "sent_at", "Sender Name"]),
            &ColumnOverrides::default(),
        );
        assert_eq!(
            map,
            ColumnMap {
                conversation_id: Some(0),
                sender: Some(1),
                text: Some(2),
                timestamp: Some(3),
                sender_name: Some(4),
            }
        );
        assert_eq!(map.missing(), None);
    }

    #[test]
    fn sender_name_is_not_mistaken_for_sender() {
        let map = ColumnMap::find(
            &headers(&["sender_name", "conversation_id", "message"]),
            &ColumnOverrides::default(),
        );
        assert_eq!(map.sender, None);
        assert_eq!(map.sender_name, Some(0));
        assert_eq!(map.missing(), Some(Column::Sender));
    }

    #[test]
    fn overrides_win_over_aliases() {
        let overrides = ColumnOverrides {
            text: Some("Kundennachricht".into()),
            ..Default::default()
        };
        let map = ColumnMap::find(
            &headers(&["chat", "role", "message", "Kunden Nachricht"]),
            &overrides,
        );
        assert_eq!(map.text, Some(3));
    }

    #[test]
    fn nested_ids() {
        let none = ColumnOverrides::default();
        assert!(is_nested_id("ID", &none));
        assert!(is_nested_id("ticket-id", &none));
        assert!(!is_nested_id("messages", &none));
    }
}
