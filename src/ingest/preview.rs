//! What an upload would read, before anything is stored or sent: the format
//! detected, where each field comes from, who is taken for the business
//! side, the first conversations as they will be analysed (roles marked),
//! and the counts. `analyze --dry-run` prints it, `POST /api/preview`
//! answers it, the dashboard shows it before an upload starts.
//!
//! Building one reads the whole file (the counts are the upload's), holding
//! only the conversations shown and one entry per sender name.

use std::collections::HashMap;

use serde::Serialize;

use super::{Format, IngestError, Row, RowReader};
use crate::model::Role;

/// Conversations and messages a preview shows by default.
pub const CONVERSATIONS_SHOWN: usize = 5;
pub const MESSAGES_SHOWN: usize = 20;
/// Senders listed (most messages first).
const SENDERS_SHOWN: usize = 50;
/// Sender names counted at most (a file of a million customers keeps the
/// first this many).
const SENDERS_COUNTED: usize = 100_000;
/// Characters of a message shown.
const TEXT_SHOWN: usize = 400;
/// Warnings listed.
const WARNINGS_SHOWN: usize = 20;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Preview {
    /// The file, as the user named it.
    pub file: String,
    /// The format it is read as.
    #[schema(value_type = String)]
    pub format: Format,
    /// How many export files a folder or zip held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    /// Where each field of a message comes from.
    pub fields: Vec<FieldSource>,
    /// Whether roles are told from the senders' names (no role in the export).
    pub roles_from_names: bool,
    /// Senders, most messages first, with the role their messages got.
    pub senders: Vec<SenderSeen>,
    /// The first conversations, as they will be analysed.
    pub conversations: Vec<ConversationShown>,
    pub counts: PreviewCounts,
    /// The first warnings the upload would get; `warnings_total` counts all.
    pub warnings: Vec<String>,
    pub warnings_total: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldSource {
    pub field: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SenderSeen {
    pub name: String,
    pub messages: u64,
    /// `customer`, `agent` or `bot`: the role most of their messages got.
    #[schema(value_type = String)]
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConversationShown {
    pub id: String,
    pub messages: Vec<MessageShown>,
    /// Messages of it not shown.
    pub more_messages: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MessageShown {
    #[schema(value_type = String)]
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Never analysed (a bot's, or a configured pattern's).
    pub autoresponse: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PreviewCounts {
    pub conversations: u64,
    pub messages: u64,
    pub customer_messages: u64,
    pub agent_messages: u64,
    pub bot_messages: u64,
    pub autoresponses: u64,
    /// Messages whose role was a guess.
    pub guessed_roles: u64,
    /// Entries of the export that are not messages (system lines, media,
    /// internal notes…), by kind.
    pub left_out: Vec<LeftOut>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LeftOut {
    pub kind: String,
    pub count: u64,
}

impl Preview {
    /// Reads every row of `reader`, keeping the first `conversations`
    /// conversations (at most `messages` messages each).
    pub fn build(
        file: &str,
        mut reader: RowReader,
        conversations: usize,
        messages: usize,
    ) -> Result<Preview, IngestError> {
        let mut counts = PreviewCounts::default();
        let mut shown: Vec<ConversationShown> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut seen_ids: std::collections::HashSet<String> = Default::default();
        let mut senders: HashMap<String, [u64; 3]> = HashMap::new();
        let mut warnings = Vec::new();
        let mut warnings_total = 0u64;
        for row in reader.by_ref() {
            match row? {
                Row::Warning(w) => {
                    warnings_total += 1;
                    if warnings.len() < WARNINGS_SHOWN {
                        warnings.push(w.to_string());
                    }
                }
                Row::Message(m) => {
                    let message = m.message;
                    counts.messages += 1;
                    let (role_ix, by_role) = match message.role {
                        Role::Customer => (0, &mut counts.customer_messages),
                        Role::Agent => (1, &mut counts.agent_messages),
                        Role::Bot => (2, &mut counts.bot_messages),
                    };
                    *by_role += 1;
                    counts.autoresponses += u64::from(message.autoresponse);
                    if !seen_ids.contains(&m.conversation_id) {
                        seen_ids.insert(m.conversation_id.clone());
                    }
                    if let Some(name) = &message.sender_name {
                        if let Some(n) = senders.get_mut(name) {
                            n[role_ix] += 1;
                        } else if senders.len() < SENDERS_COUNTED {
                            let mut n = [0; 3];
                            n[role_ix] = 1;
                            senders.insert(name.clone(), n);
                        }
                    }
                    let at = match index.get(&m.conversation_id) {
                        Some(at) => *at,
                        None if shown.len() < conversations => {
                            index.insert(m.conversation_id.clone(), shown.len());
                            shown.push(ConversationShown {
                                id: m.conversation_id,
                                messages: Vec::new(),
                                more_messages: 0,
                            });
                            shown.len() - 1
                        }
                        None => continue,
                    };
                    let c = &mut shown[at];
                    if c.messages.len() < messages {
                        c.messages.push(MessageShown {
                            role: message.role,
                            sender: message.sender_name,
                            text: crate::model::truncate_chars(&message.text, TEXT_SHOWN),
                            timestamp: message.timestamp,
                            autoresponse: message.autoresponse,
                        });
                    } else {
                        c.more_messages += 1;
                    }
                }
            }
        }
        counts.conversations = seen_ids.len() as u64;
        let read = reader.read_counts();
        counts.guessed_roles = read.guessed_roles;
        counts.left_out = read
            .left_out
            .into_iter()
            .map(|(kind, count)| LeftOut { kind, count })
            .collect();
        let mut senders: Vec<SenderSeen> = senders
            .into_iter()
            .map(|(name, n)| {
                let role = [Role::Customer, Role::Agent, Role::Bot]
                    .into_iter()
                    .zip(n)
                    .max_by_key(|(_, count)| *count)
                    .map_or(Role::Customer, |(role, _)| role);
                SenderSeen {
                    name,
                    messages: n.iter().sum(),
                    role,
                }
            })
            .collect();
        senders.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.name.cmp(&b.name))
        });
        senders.truncate(SENDERS_SHOWN);
        Ok(Preview {
            file: file.to_string(),
            format: reader.format(),
            files: reader.files(),
            fields: reader
                .fields()
                .into_iter()
                .map(|(field, source)| FieldSource { field, source })
                .collect(),
            roles_from_names: reader.roles_by_name(),
            senders,
            conversations: shown,
            counts,
            warnings,
            warnings_total,
        })
    }

    /// The preview as text, for a terminal.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = write!(s, "{}: {}", self.file, self.format);
        if let Some(files) = self.files {
            let _ = write!(s, " ({files} files)");
        }
        let c = &self.counts;
        let _ = writeln!(
            s,
            "\n  {} conversations, {} messages ({} customer, {} agent, {} bot; {} autoresponses)",
            c.conversations,
            c.messages,
            c.customer_messages,
            c.agent_messages,
            c.bot_messages,
            c.autoresponses
        );
        if c.guessed_roles > 0 {
            let _ = writeln!(s, "  roles guessed: {} messages", c.guessed_roles);
        }
        for l in &c.left_out {
            let _ = writeln!(s, "  left out: {} {}", l.count, l.kind);
        }
        let _ = writeln!(s, "\nFields:");
        for f in &self.fields {
            let _ = writeln!(s, "  {:<16} {}", f.field, f.source);
        }
        if !self.senders.is_empty() {
            let _ = writeln!(s, "\nSenders (most messages first):");
            for sender in self.senders.iter().take(15) {
                let _ = writeln!(
                    s,
                    "  {:<8} {:>7}  {}",
                    sender.role.as_str(),
                    sender.messages,
                    sender.name
                );
            }
            if self.senders.len() > 15 {
                let _ = writeln!(s, "  …");
            }
        }
        for conversation in &self.conversations {
            let _ = writeln!(s, "\nConversation {}", conversation.id);
            for m in &conversation.messages {
                let who = match &m.sender {
                    Some(name) => format!("{} ({name})", m.role.as_str()),
                    None => m.role.as_str().to_string(),
                };
                let mark = if m.autoresponse {
                    " [autoresponse]"
                } else {
                    ""
                };
                let text = m.text.replace('\n', "\n      ");
                let _ = writeln!(s, "  {who}{mark}: {text}");
            }
            if conversation.more_messages > 0 {
                let _ = writeln!(s, "  … {} more messages", conversation.more_messages);
            }
        }
        if self.warnings_total > 0 {
            let _ = writeln!(s, "\n{} warnings:", self.warnings_total);
            for w in &self.warnings {
                let _ = writeln!(s, "  {w}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{IngestOptions, open};

    #[test]
    fn a_preview_counts_everything_and_shows_the_first_conversations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chats.csv");
        let mut csv = String::from("Chat ID,Sender Role,Sender,Message\n");
        for i in 0..10 {
            csv.push_str(&format!("c{i},customer,Cust {i},no power {i}\n"));
            csv.push_str(&format!("c{i},agent,Sita,sorry {i}\n"));
            csv.push_str(&format!("c{i},bot,Bot,Dial *977#\n"));
        }
        std::fs::write(&path, csv).unwrap();
        let reader = open(&path, &IngestOptions::default()).unwrap();
        let p = Preview::build("chats.csv", reader, 3, 2).unwrap();
        assert_eq!(p.format, Format::Csv);
        assert_eq!(p.counts.conversations, 10);
        assert_eq!(p.counts.messages, 30);
        assert_eq!(p.counts.agent_messages, 10);
        assert_eq!(p.counts.autoresponses, 10);
        assert_eq!(p.conversations.len(), 3);
        assert_eq!(p.conversations[0].messages.len(), 2);
        assert_eq!(p.conversations[0].more_messages, 1);
        assert_eq!(p.senders[0].name, "Bot");
        assert_eq!(p.senders[1].name, "Sita");
        assert_eq!(p.senders[1].role, Role::Agent);
        assert!(!p.roles_from_names);
        assert_eq!(p.fields[1].source, "column \"Sender Role\"");
        assert_eq!(p.fields[4].source, "column \"Sender\"");
        let text = p.render();
        assert!(text.contains("chats.csv: csv"), "{text}");
        assert!(text.contains("agent (Sita): sorry 0"), "{text}");
    }
}
