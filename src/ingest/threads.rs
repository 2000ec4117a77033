//! Threaded posts: a table of posts, each naming the one it answers
//! (`in_response_to_tweet_id` in the customer-support tweets corpus, twcs;
//! `in_reply_to`, `parent_id` elsewhere) instead of a conversation id.
//!
//! Every thread is one conversation, named by its first post (the root):
//! a first pass over the file links each post to its parent, the second
//! reads the rows with the root each leads to. A post answering one that
//! is not in the file starts its thread at that missing post, so its
//! siblings stay together. `inbound` (true for the customer's posts) gives
//! the role; without it, the authors do (see `roles`).

use std::collections::{HashMap, VecDeque};
use std::io::BufReader;
use std::path::Path;

use super::columns::normalize;
use super::csv::sniff_delimiter;
use super::text::{self, TextReader};
use super::{
    Casting, Format, IngestError, IngestOptions, RawRow, RolesFrom, Row, RowBuilder, Source,
};
use crate::model::Role;

const ID: &[&str] = &[
    "tweetid",
    "postid",
    "messageid",
    "statusid",
    "commentid",
    "id",
];
const PARENT: &[&str] = &[
    "inresponsetotweetid",
    "inresponseto",
    "inreplytotweetid",
    "inreplytostatusid",
    "inreplytoid",
    "inreplyto",
    "parentid",
    "replytoid",
    "replyto",
    "parent",
];
const INBOUND: &[&str] = &["inbound", "incoming", "iscustomer", "fromcustomer"];
const AUTHOR: &[&str] = &[
    "authorid",
    "author",
    "screenname",
    "username",
    "user",
    "sendername",
];
const TEXT: &[&str] = &["text", "message", "body", "content"];
const TIME: &[&str] = &["createdat", "timestamp", "time", "date", "sentat"];

/// Headers that name a conversation: a table with one is read as rows.
const CONVERSATION: &[&str] = &[
    "conversationid",
    "chatid",
    "chat",
    "conversation",
    "threadid",
    "ticketid",
    "sessionid",
];

fn find(headers: &[String], aliases: &[&str]) -> Option<usize> {
    aliases
        .iter()
        .find_map(|a| headers.iter().position(|h| h == a))
}

/// Whether a table's header line is one of threaded posts: an id, the id
/// it answers and a text, and no conversation id.
pub(super) fn looks_like(header: &str) -> bool {
    let delimiter = sniff_delimiter(header.as_bytes());
    let headers: Vec<String> = header
        .split(delimiter as char)
        .map(|h| normalize(h.trim_matches('"')))
        .collect();
    find(&headers, ID).is_some()
        && find(&headers, PARENT).is_some()
        && find(&headers, TEXT).is_some()
        && find(&headers, CONVERSATION).is_none()
}

/// Where the columns are.
#[derive(Debug, Clone, Copy)]
struct Columns {
    id: usize,
    parent: usize,
    text: usize,
    inbound: Option<usize>,
    author: Option<usize>,
    time: Option<usize>,
}

/// Every post's thread root.
#[derive(Debug, Default)]
struct Threads {
    index: HashMap<Box<str>, u32>,
    ids: Vec<Box<str>>,
    /// Each post's parent (`u32::MAX`: none).
    parent: Vec<u32>,
    /// Each post's root, once found (`u32::MAX`: not yet).
    root: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Threads {
    fn node(&mut self, id: &str) -> u32 {
        if let Some(n) = self.index.get(id) {
            return *n;
        }
        let n = self.ids.len() as u32;
        self.index.insert(id.into(), n);
        self.ids.push(id.into());
        self.parent.push(NONE);
        self.root.push(NONE);
        n
    }

    fn link(&mut self, id: &str, parent: Option<&str>) {
        let child = self.node(id);
        if let Some(parent) = parent {
            let parent = self.node(parent);
            if parent != child {
                self.parent[child as usize] = parent;
            }
        }
    }

    /// The root of `id`'s thread (a cycle ends where it closes).
    fn root_of(&mut self, id: &str) -> Option<&str> {
        let start = *self.index.get(id)?;
        let mut path = Vec::new();
        let mut at = start;
        let root = loop {
            if self.root[at as usize] != NONE {
                break self.root[at as usize];
            }
            let parent = self.parent[at as usize];
            // More steps than posts: a cycle, which ends here.
            if parent == NONE || path.len() > self.ids.len() {
                break at;
            }
            path.push(at);
            at = parent;
        };
        for n in path {
            self.root[n as usize] = root;
        }
        self.root[start as usize] = root;
        Some(&self.ids[root as usize])
    }
}

pub(super) struct ThreadSource {
    file: String,
    reader: csv::Reader<BufReader<TextReader>>,
    record: csv::StringRecord,
    columns: Columns,
    threads: Threads,
}

fn csv_reader(
    path: &Path,
    file: &str,
) -> Result<(csv::Reader<BufReader<TextReader>>, Vec<String>), IngestError> {
    let head = text::head(path, file)?;
    let input = text::decoded(path, &head, file, Format::Threads)?;
    let delimiter = sniff_delimiter(text::first_line(&head).as_bytes());
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(BufReader::with_capacity(256 * 1024, input));
    let headers = reader
        .headers()
        .map_err(|e| csv_error(file, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    Ok((reader, headers))
}

fn csv_error(file: &str, e: csv::Error) -> IngestError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => IngestError::Io {
            file: file.to_string(),
            source,
        },
        csv::ErrorKind::Utf8 { pos, err } => IngestError::Malformed {
            file: file.to_string(),
            line: pos.map_or(line, |p| p.line()),
            message: format!(
                "invalid UTF-8 in field {} (byte {}); save the export as UTF-8 or UTF-16",
                err.field() + 1,
                err.valid_up_to()
            ),
        },
        other => IngestError::Malformed {
            file: file.to_string(),
            line,
            message: format!("{other:?}"),
        },
    }
}

impl ThreadSource {
    pub(super) fn open(
        path: &Path,
        file: &str,
        _opts: &IngestOptions,
        builder: &mut RowBuilder,
    ) -> Result<Self, IngestError> {
        let (mut first, headers) = csv_reader(path, file)?;
        let normalized: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
        let missing = |what: super::Column| IngestError::missing_column(file, what, &headers);
        let columns = Columns {
            id: find(&normalized, ID).ok_or_else(|| missing(super::Column::ConversationId))?,
            parent: find(&normalized, PARENT)
                .ok_or_else(|| missing(super::Column::ConversationId))?,
            text: find(&normalized, TEXT).ok_or_else(|| missing(super::Column::Text))?,
            inbound: find(&normalized, INBOUND),
            author: find(&normalized, AUTHOR),
            time: find(&normalized, TIME),
        };
        if columns.inbound.is_none() && columns.author.is_none() {
            return Err(missing(super::Column::Sender));
        }
        // The conversation is the thread: named by the column that links it.
        let map = super::ColumnMap {
            conversation_id: Some(columns.parent),
            sender: columns.inbound,
            text: Some(columns.text),
            timestamp: columns.time,
            sender_name: columns.author,
        };
        builder.name_fields(&headers, &map);
        // First pass: who answers whom.
        let mut threads = Threads::default();
        let mut record = csv::StringRecord::new();
        while first
            .read_record(&mut record)
            .map_err(|e| csv_error(file, e))?
        {
            let Some(id) = record
                .get(columns.id)
                .map(str::trim)
                .filter(|i| !i.is_empty())
            else {
                continue;
            };
            let parent = record
                .get(columns.parent)
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "nan");
            threads.link(id, parent.map(trim_float));
        }
        let (reader, _) = csv_reader(path, file)?;
        Ok(Self {
            file: file.to_string(),
            reader,
            record,
            columns,
            threads,
        })
    }
}

/// `119237.0` as pandas writes an integer id of a column with gaps: `119237`.
fn trim_float(id: &str) -> &str {
    id.strip_suffix(".0")
        .filter(|i| i.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(id)
}

fn inbound(value: &str) -> Option<Role> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "t" => Some(Role::Customer),
        "false" | "0" | "no" | "n" | "f" => Some(Role::Agent),
        _ => None,
    }
}

impl Source for ThreadSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        if !self
            .reader
            .read_record(&mut self.record)
            .map_err(|e| csv_error(&self.file, e))?
        {
            return Ok(false);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let c = self.columns;
        let field = |i: usize| self.record.get(i).map(str::trim).filter(|v| !v.is_empty());
        let Some(id) = field(c.id) else {
            out.push_back(Row::Warning(super::Warning::new(
                line,
                "a post without an id; row skipped",
            )));
            return Ok(true);
        };
        let root = self.threads.root_of(id).unwrap_or(id).to_string();
        let role = c.inbound.and_then(|i| self.record.get(i)).map(|v| {
            inbound(v).map_or(
                Casting {
                    role: Role::Customer,
                    guessed: true,
                },
                |role| Casting {
                    role,
                    guessed: false,
                },
            )
        });
        builder.build(
            RawRow {
                line,
                conversation_id: Some(&root),
                sender: None,
                role,
                text: self.record.get(c.text),
                timestamp: c.time.and_then(|i| self.record.get(i)),
                sender_name: c.author.and_then(|i| self.record.get(i)),
            },
            out,
        );
        Ok(true)
    }

    fn roles_from(&self) -> RolesFrom {
        if self.columns.inbound.is_some() {
            RolesFrom::Field
        } else {
            RolesFrom::Names
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twcs_headers_are_threads_and_tables_are_not() {
        assert!(looks_like(
            "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id"
        ));
        assert!(!looks_like("conversation_id,sender,message,in_reply_to"));
        assert!(!looks_like("id,text"));
    }

    #[test]
    fn every_post_leads_to_its_root() {
        let mut t = Threads::default();
        t.link("1", None);
        t.link("2", Some("1"));
        t.link("3", Some("2"));
        t.link("5", Some("4")); // 4 is not in the file
        t.link("6", Some("4"));
        t.link("7", Some("8")); // a cycle
        t.link("8", Some("7"));
        assert_eq!(t.root_of("3"), Some("1"));
        assert_eq!(t.root_of("2"), Some("1"));
        assert_eq!(t.root_of("5"), Some("4"));
        assert_eq!(t.root_of("6"), Some("4"));
        assert!(t.root_of("7").is_some());
        assert_eq!(t.root_of("9"), None);
        assert_eq!(trim_float("119237.0"), "119237");
        assert_eq!(inbound("True"), Some(Role::Customer));
        assert_eq!(inbound("False"), Some(Role::Agent));
    }
}
