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

/// Headers that say the column holds roles, most telling first.
const ROLE_HEADERS: &[&str] = &[
    "senderrole",
    "sendertype",
    "role",
    "authortype",
    "authorrole",
    "usertype",
    "participanttype",
    "messagetype",
    "direction",
    "type",
];

/// Headers that hold roles in some exports and names in others: their
/// values tell which.
const ROLE_OR_NAME_HEADERS: &[&str] = &["sender", "from", "speaker", "author"];

/// Share of a column's values that must be roles PowerPulse knows for a
/// role-or-name header to be read as roles.
const ROLE_VALUES_SHARE: f64 = 0.5;

/// What a sample of rows shows of one column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Values {
    /// Non-empty values.
    pub filled: usize,
    /// Of those, roles `normalize_role` knows.
    pub roles: usize,
}

impl Values {
    fn share(self) -> f64 {
        if self.filled == 0 {
            0.0
        } else {
            self.roles as f64 / self.filled as f64
        }
    }
}

/// Which columns hold the role and the sender's name.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleChoice {
    pub sender: Option<usize>,
    pub sender_name: Option<usize>,
}

/// Chooses the role column by its values as well as its header. Among the
/// columns whose header may name it, the one whose sampled values are most
/// often roles wins, if at least half are; else a column whose header can
/// only mean roles (`role`, `sender_type`, …) is the role column all the
/// same (its unknown values are warned about). A column of names under a
/// header that could mean either (`sender`, `from`, `author`) is not a role
/// column: it becomes the sender-name column when there is none, and roles
/// come from the names. A column named in `[ingest.columns]` is taken as it
/// is, and so are the headers' choices when the sample has no values.
pub fn choose_roles(
    headers: &[String],
    overrides: &ColumnOverrides,
    map: &ColumnMap,
    values: impl Fn(usize) -> Values,
) -> RoleChoice {
    let as_found = RoleChoice {
        sender: map.sender,
        sender_name: map.sender_name,
    };
    if overrides.sender.is_some() {
        return as_found;
    }
    let normalized: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    let taken = [map.conversation_id, map.text, map.timestamp];
    let columns = |aliases: &[&str]| -> Vec<usize> {
        aliases
            .iter()
            .filter_map(|alias| normalized.iter().position(|h| h == alias))
            .filter(|ix| !taken.contains(&Some(*ix)))
            .collect()
    };
    let strong = columns(ROLE_HEADERS);
    let either = columns(ROLE_OR_NAME_HEADERS);
    if strong
        .iter()
        .chain(&either)
        .all(|ix| values(*ix).filled == 0)
    {
        return as_found;
    }
    // Best share first; among equals, the header listed first.
    let best = strong
        .iter()
        .chain(&either)
        .map(|ix| (*ix, values(*ix).share()))
        .filter(|(_, share)| *share >= ROLE_VALUES_SHARE)
        .fold(None::<(usize, f64)>, |best, (ix, share)| match best {
            Some((_, b)) if b >= share => best,
            _ => Some((ix, share)),
        })
        .map(|(ix, _)| ix);
    let sender = best.or_else(|| strong.first().copied());
    let sender_name = map
        .sender_name
        .filter(|ix| Some(*ix) != sender)
        .or_else(|| {
            either
                .iter()
                .copied()
                .find(|ix| Some(*ix) != sender && values(*ix).filled > 0)
        });
    RoleChoice {
        sender,
        sender_name,
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

    fn sample<'a>(columns: &'a [&'a [&'a str]]) -> impl Fn(usize) -> Values + 'a {
        move |ix| {
            let col = columns[ix];
            Values {
                filled: col.iter().filter(|v| !v.is_empty()).count(),
                roles: col
                    .iter()
                    .filter(|v| crate::ingest::normalize_role(v).is_some())
                    .count(),
            }
        }
    }

    #[test]
    fn a_column_of_names_is_not_the_role_column() {
        // Chat ID, Sent At, Sender Role, Sender, Message
        let h = headers(&["Chat ID", "Sent At", "Sender Role", "Sender", "Message"]);
        let o = ColumnOverrides::default();
        let map = ColumnMap::find(&h, &o);
        assert_eq!(map.sender, Some(3), "the header alone picks the names");
        let cols: [&[&str]; 5] = [
            &["1", "1", "2"],
            &["t", "t", "t"],
            &["Customer", "Agent", "customer"],
            &["Ram Sharma", "Sita", "Hari"],
            &["a", "b", "c"],
        ];
        let choice = choose_roles(&h, &o, &map, sample(&cols));
        assert_eq!(choice.sender, Some(2));
        assert_eq!(choice.sender_name, Some(3));
    }

    #[test]
    fn no_role_values_anywhere_leaves_names() {
        let h = headers(&["chat", "from", "text"]);
        let o = ColumnOverrides::default();
        let map = ColumnMap::find(&h, &o);
        let cols: [&[&str]; 3] = [&["1", "1"], &["Ram", "NEA Desk"], &["a", "b"]];
        let choice = choose_roles(&h, &o, &map, sample(&cols));
        assert_eq!(choice.sender, None);
        assert_eq!(choice.sender_name, Some(1));
        // A named override is taken as it is.
        let o = ColumnOverrides {
            sender: Some("from".into()),
            ..Default::default()
        };
        let map = ColumnMap::find(&h, &o);
        assert_eq!(choose_roles(&h, &o, &map, sample(&cols)).sender, Some(1));
    }

    #[test]
    fn the_usual_layout_keeps_its_columns() {
        let h = headers(&["conversation_id", "sender", "message", "sender_name"]);
        let o = ColumnOverrides::default();
        let map = ColumnMap::find(&h, &o);
        let cols: [&[&str]; 4] = [&["1"], &["agent"], &["a"], &["Sita"]];
        let choice = choose_roles(&h, &o, &map, sample(&cols));
        assert_eq!(choice.sender, Some(1));
        assert_eq!(choice.sender_name, Some(3));
    }

    #[test]
    fn nested_ids() {
        let none = ColumnOverrides::default();
        assert!(is_nested_id("ID", &none));
        assert!(is_nested_id("ticket-id", &none));
        assert!(!is_nested_id("messages", &none));
    }
}
