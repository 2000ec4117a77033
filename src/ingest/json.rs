//! JSON and JSONL.
//!
//! JSON is streamed: a parser thread walks the top-level array (or the
//! `conversations` / `messages` array of a top-level object) one element at
//! a time and hands each element over a small bounded channel, so a 200 MB
//! array is never held whole. Each element is a message row, or a
//! conversation with an id and a nested `messages` array. JSONL is one such
//! object per line.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::columns::{Column, ColumnMap, is_nested_id, normalize};
use super::text::TextReader;
use super::{IngestError, IngestOptions, RawRow, Row, RowBuilder, Source, Warning};
use crate::config::ColumnOverrides;

/// Elements parsed ahead of the consumer.
const CHANNEL_DEPTH: usize = 64;

/// Top-level object keys whose array holds the rows.
const ARRAY_KEYS: &[&str] = &[
    "conversations",
    "messages",
    "data",
    "items",
    "records",
    "rows",
];

/// Counts newlines as the parser consumes bytes, to report lines.
struct LineCounter<R> {
    inner: R,
    newlines: Arc<AtomicU64>,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let lines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        if lines > 0 {
            self.newlines.fetch_add(lines, Ordering::Relaxed);
        }
        Ok(n)
    }
}

enum Item {
    Element { line: u64, value: Value },
    Failed(IngestError),
}

/// Maps an object's keys to the logical columns, and reads a row from it.
struct ObjectRows {
    file: String,
    overrides: ColumnOverrides,
    /// The first object decides whether required columns exist at all.
    checked_columns: bool,
}

impl ObjectRows {
    /// The rows of one element: a message, or a conversation of messages.
    fn element(
        &mut self,
        line: u64,
        value: Value,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<(), IngestError> {
        let Value::Object(object) = value else {
            out.push_back(Row::Warning(Warning {
                line,
                message: format!("expected an object, found {}; skipped", kind(&value)),
            }));
            return Ok(());
        };
        let messages = object
            .iter()
            .find(|(k, v)| normalize(k) == "messages" && v.is_array())
            .map(|(k, _)| k.clone());
        match messages {
            Some(key) => {
                let id = object
                    .iter()
                    .find(|(k, _)| is_nested_id(k, &self.overrides))
                    .and_then(|(_, v)| scalar(v));
                let Some(id) = id else {
                    out.push_back(Row::Warning(Warning {
                        line,
                        message: "conversation without an id; skipped".into(),
                    }));
                    return Ok(());
                };
                let mut object = object;
                if let Some(Value::Array(items)) = object.remove(&key) {
                    for item in items {
                        match item {
                            Value::Object(m) => self.message(line, &m, Some(&id), builder, out)?,
                            other => out.push_back(Row::Warning(Warning {
                                line,
                                message: format!(
                                    "message in conversation {id} is {}, not an object; skipped",
                                    kind(&other)
                                ),
                            })),
                        }
                    }
                }
                Ok(())
            }
            None => self.message(line, &object, None, builder, out),
        }
    }

    fn message(
        &mut self,
        line: u64,
        object: &Map<String, Value>,
        conversation_id: Option<&str>,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<(), IngestError> {
        let keys: Vec<String> = object.keys().cloned().collect();
        let map = ColumnMap::find(&keys, &self.overrides);
        if !self.checked_columns {
            self.checked_columns = true;
            let missing = map
                .missing()
                .filter(|c| !(conversation_id.is_some() && *c == Column::ConversationId));
            if let Some(column) = missing {
                return Err(IngestError::missing_column(&self.file, column, &keys));
            }
            builder.name_fields(&keys, &map);
        }
        let mut values: [Option<String>; 5] = Default::default();
        for (i, column) in Column::ALL.into_iter().enumerate() {
            let Some(v) = map.get(column).and_then(|ix| object.get(&keys[ix])) else {
                continue;
            };
            match v {
                Value::Null => {}
                Value::Object(_) | Value::Array(_) if column.required() => {
                    out.push_back(Row::Warning(Warning {
                        line,
                        message: format!(
                            "field \"{}\" is {}, not text; row skipped",
                            keys[map.get(column).unwrap_or(0)],
                            kind(v)
                        ),
                    }));
                    return Ok(());
                }
                other => values[i] = scalar(other),
            }
        }
        let [id, sender, text, timestamp, sender_name] = &values;
        builder.build(
            RawRow {
                line,
                conversation_id: conversation_id.or(id.as_deref()),
                sender: sender.as_deref(),
                text: text.as_deref(),
                timestamp: timestamp.as_deref(),
                sender_name: sender_name.as_deref(),
            },
            out,
        );
        Ok(())
    }
}

/// Strings as they are, numbers and booleans as written; nothing else.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message without its " at line L column C" suffix (we say the line).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

pub(super) struct JsonSource {
    items: Receiver<Item>,
    rows: ObjectRows,
}

impl JsonSource {
    pub(super) fn new(text: TextReader, file: &str, opts: &IngestOptions) -> Self {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let newlines = Arc::new(AtomicU64::new(0));
        let reader = LineCounter {
            inner: BufReader::with_capacity(256 * 1024, text),
            newlines: newlines.clone(),
        };
        let thread_file = file.to_string();
        std::thread::Builder::new()
            .name("json-parser".into())
            .spawn(move || parse_document(reader, newlines, tx, thread_file))
            .ok();
        Self {
            items: rx,
            rows: ObjectRows {
                file: file.to_string(),
                overrides: opts.columns.clone(),
                checked_columns: false,
            },
        }
    }
}

impl Source for JsonSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        match self.items.recv() {
            Ok(Item::Element { line, value }) => {
                self.rows.element(line, value, builder, out)?;
                Ok(true)
            }
            Ok(Item::Failed(e)) => Err(e),
            // The parser thread ends its channel after the last element.
            Err(_) => Ok(false),
        }
    }
}

/// The parser thread: streams the document's rows into `tx`.
fn parse_document<R: Read>(
    reader: LineCounter<R>,
    newlines: Arc<AtomicU64>,
    tx: SyncSender<Item>,
    file: String,
) {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let top = TopLevel {
        tx: &tx,
        newlines: &newlines,
    };
    let result = top.deserialize(&mut de).and_then(|()| de.end());
    if let Err(e) = result {
        if e.is_io()
            && tx
                .send(Item::Failed(IngestError::Io {
                    file: file.clone(),
                    source: std::io::Error::other(e.to_string()),
                }))
                .is_ok()
        {
            return;
        }
        // A consumer that went away is not an error worth reporting.
        let _ = tx.send(Item::Failed(IngestError::Malformed {
            file,
            line: e.line() as u64,
            message: json_message(&e),
        }));
    }
}

/// Accepts `[ … ]` or `{ "conversations": [ … ], … }`.
struct TopLevel<'a> {
    tx: &'a SyncSender<Item>,
    newlines: &'a AtomicU64,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of messages or conversations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        stream_elements(seq, self.tx, self.newlines)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if !found && ARRAY_KEYS.contains(&normalize(&key).as_str()) {
                found = true;
                map.next_value_seed(Elements {
                    tx: self.tx,
                    newlines: self.newlines,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a JSON array, or an object with one of the keys {}",
                ARRAY_KEYS.join(", ")
            )))
        }
    }
}

struct Elements<'a> {
    tx: &'a SyncSender<Item>,
    newlines: &'a AtomicU64,
}

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        stream_elements(seq, self.tx, self.newlines)
    }
}

fn stream_elements<'de, A: SeqAccess<'de>>(
    mut seq: A,
    tx: &SyncSender<Item>,
    newlines: &AtomicU64,
) -> Result<(), A::Error> {
    loop {
        let Some(value) = seq.next_element::<Value>()? else {
            return Ok(());
        };
        // The line the element ends on: where its closing brace is.
        let line = newlines.load(Ordering::Relaxed) + 1;
        if tx.send(Item::Element { line, value }).is_err() {
            // The reader was dropped: stop parsing.
            return Err(serde::de::Error::custom("reader closed"));
        }
    }
}

pub(super) struct JsonlSource {
    reader: BufReader<TextReader>,
    buf: Vec<u8>,
    line: u64,
    rows: ObjectRows,
}

impl JsonlSource {
    pub(super) fn new(text: TextReader, file: &str, opts: &IngestOptions) -> Self {
        Self {
            reader: BufReader::with_capacity(256 * 1024, text),
            buf: Vec::new(),
            line: 0,
            rows: ObjectRows {
                file: file.to_string(),
                overrides: opts.columns.clone(),
                checked_columns: false,
            },
        }
    }
}

impl Source for JsonlSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| IngestError::Io {
                file: self.rows.file.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(true);
        }
        match serde_json::from_slice::<Value>(&self.buf) {
            Ok(value) => self.rows.element(self.line, value, builder, out)?,
            Err(e) => out.push_back(Row::Warning(Warning {
                line: self.line,
                message: format!("not valid JSON ({}); line skipped", json_message(&e)),
            })),
        }
        Ok(true)
    }
}
