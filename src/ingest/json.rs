//! JSON and JSONL.
//!
//! JSON is streamed: a parser thread walks the top-level array (or the
//! array under a top-level object's `conversations`, `messages`, … key) and
//! hands over one message object at a time through a small bounded channel,
//! so a 200 MB array is never held whole. An element is a message row, or a
//! conversation: an object with an id and a nested `messages` array, whose
//! messages are streamed too (only those before a late id are buffered).
//! JSONL is one such object per line.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::columns::{Column, ColumnMap, could_map, is_nested_id, normalize};
use super::text::TextReader;
use super::{IngestError, IngestOptions, RawRow, Row, RowBuilder, Source, Warning};
use crate::config::ColumnOverrides;

/// Message objects parsed ahead of the consumer.
const CHANNEL_DEPTH: usize = 16;

/// Top-level object keys (normalised) whose array holds conversations or
/// message rows; `messages` also makes an object a conversation.
const ARRAY_KEYS: &[&str] = &[
    "conversations",
    "messages",
    "data",
    "items",
    "records",
    "rows",
];

const MESSAGES_KEY: &str = "messages";

/// Whether a top-level object's key names the array of rows.
pub(super) fn is_array_key(key: &str) -> bool {
    ARRAY_KEYS.contains(&normalize(key).as_str())
}

/// The parser's error when the reader was dropped; not reported.
const CONSUMER_GONE: &str = "the row reader was dropped";

/// A buffered reader that counts the newlines handed to the parser.
///
/// serde_json's reader parser pulls one byte at a time, so the count is
/// exact at every point the visitors look at it. It owns its buffer (rather
/// than wrapping a `BufReader`) to keep that per-byte path short.
pub(super) struct LineCountingReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    newlines: Rc<Cell<u64>>,
}

/// The buffer starts small (a bundle may hold 100,000 small files, each
/// read with a reader of its own) and doubles each time a read fills it, up
/// to [`MAX_BUFFER`].
const FIRST_BUFFER: usize = 8 * 1024;
const MAX_BUFFER: usize = 256 * 1024;

impl<R> LineCountingReader<R> {
    pub(super) fn new(inner: R, newlines: Rc<Cell<u64>>) -> Self {
        Self {
            inner,
            buf: vec![0; FIRST_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            newlines,
        }
    }
}

impl<R: Read> Read for LineCountingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.len {
            if self.len == self.buf.len() && self.buf.len() < MAX_BUFFER {
                self.buf = vec![0; self.buf.len() * 2].into_boxed_slice();
            }
            self.len = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.len - self.pos);
        let chunk = &self.buf[self.pos..self.pos + n];
        out[..n].copy_from_slice(chunk);
        let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if lines > 0 {
            self.newlines.set(self.newlines.get() + lines);
        }
        self.pos += n;
        Ok(n)
    }
}

/// What the parser thread sends.
enum Item {
    /// One element or nested message, and the line it starts on.
    Message {
        line: u64,
        value: Value,
        /// The enclosing conversation's id, for nested messages.
        conversation: Option<Arc<str>>,
        /// Nested in a conversation (which may lack an id).
        nested: bool,
    },
    /// The document ended well.
    End,
    Failed(IngestError),
}

/// Turns message objects into rows: maps their keys to the logical columns
/// (again only when the keys change) and reads the fields.
struct ObjectRows {
    file: String,
    overrides: ColumnOverrides,
    /// The first message decides whether the required columns exist at all.
    checked_columns: bool,
    keys: Vec<String>,
    map: ColumnMap,
}

impl ObjectRows {
    fn new(file: &str, opts: &IngestOptions) -> Self {
        Self {
            file: file.to_string(),
            overrides: opts.columns.clone(),
            checked_columns: false,
            keys: Vec::new(),
            map: ColumnMap::default(),
        }
    }

    /// One JSONL line: a message, or a conversation of messages.
    fn element(
        &mut self,
        line: u64,
        value: Value,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<(), IngestError> {
        let Value::Object(mut object) = value else {
            return self.message(line, value, None, false, builder, out);
        };
        let messages = object
            .iter()
            .find(|(k, v)| v.is_array() && normalize(k) == MESSAGES_KEY)
            .map(|(k, _)| k.clone());
        let Some(key) = messages else {
            return self.message(line, Value::Object(object), None, false, builder, out);
        };
        let conversation = object
            .iter()
            .find(|(k, _)| is_nested_id(k, &self.overrides))
            .and_then(|(_, v)| scalar_text(v))
            .map(|id| id.into_owned());
        if let Some(Value::Array(items)) = object.remove(&key) {
            for item in items {
                self.message(line, item, conversation.as_deref(), true, builder, out)?;
            }
        }
        Ok(())
    }

    /// One message object; `conversation` is the enclosing conversation's
    /// id, which wins over the message's own.
    fn message(
        &mut self,
        line: u64,
        value: Value,
        conversation: Option<&str>,
        nested: bool,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<(), IngestError> {
        let Value::Object(object) = value else {
            out.push_back(warning(
                line,
                format!("expected a message object, found {}; skipped", kind(&value)),
            ));
            return Ok(());
        };
        if !self.keys.iter().eq(object.keys()) {
            self.keys = object.keys().cloned().collect();
            self.map = ColumnMap::find(&self.keys, &self.overrides);
        }
        if !self.checked_columns {
            self.checked_columns = true;
            // A nested message may take its conversation id from the conversation.
            let missing = self
                .map
                .missing()
                .filter(|c| !(nested && *c == Column::ConversationId));
            if let Some(column) = missing {
                return Err(IngestError::missing_column(&self.file, column, &self.keys));
            }
            builder.name_fields(&self.keys, &self.map);
        }
        let mut values: [Option<std::borrow::Cow<'_, str>>; 5] = Default::default();
        for (slot, column) in values.iter_mut().zip(Column::ALL) {
            let Some(key) = self.map.get(column).and_then(|ix| self.keys.get(ix)) else {
                continue;
            };
            let Some(v) = object.get(key) else { continue };
            if matches!(v, Value::Object(_) | Value::Array(_)) {
                let verdict = if column.required() {
                    "row skipped"
                } else {
                    "field ignored"
                };
                out.push_back(warning(
                    line,
                    format!("field \"{key}\" is {}, not text; {verdict}", kind(v)),
                ));
                if column.required() {
                    return Ok(());
                }
                continue;
            }
            *slot = scalar_text(v);
        }
        let [id, sender, text, timestamp, sender_name] = &values;
        builder.build(
            RawRow {
                line,
                role: None,
                conversation_id: conversation.or(id.as_deref()),
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

fn warning(line: u64, message: String) -> Row {
    Row::Warning(Warning::new(line, &message))
}

/// Strings as they are, numbers and booleans as written; nothing else.
fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
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
    file: String,
    items: Receiver<Item>,
    rows: ObjectRows,
}

impl JsonSource {
    pub(super) fn new(
        text: TextReader,
        file: &str,
        opts: &IngestOptions,
    ) -> Result<Self, IngestError> {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let thread_file = file.to_string();
        let overrides = opts.columns.clone();
        std::thread::Builder::new()
            .name("json-parser".into())
            .spawn(move || parse_document(text, &tx, thread_file, &overrides))
            .map_err(|source| IngestError::Io {
                file: file.to_string(),
                source,
            })?;
        Ok(Self {
            file: file.to_string(),
            items: rx,
            rows: ObjectRows::new(file, opts),
        })
    }
}

impl Source for JsonSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        match self.items.recv() {
            Ok(Item::Message {
                line,
                value,
                conversation,
                nested,
            }) => {
                self.rows
                    .message(line, value, conversation.as_deref(), nested, builder, out)?;
                Ok(true)
            }
            Ok(Item::End) => Ok(false),
            Ok(Item::Failed(e)) => Err(e),
            // Only a parser thread that died on its own ends the channel
            // without saying why: never let that pass for the end of the file.
            Err(_) => Err(IngestError::Io {
                file: self.file.clone(),
                source: std::io::Error::other("the JSON parser thread stopped unexpectedly"),
            }),
        }
    }
}

/// The parser thread: streams the document's messages into `tx`, then
/// `End` or the error that stopped it.
fn parse_document(
    text: TextReader,
    tx: &SyncSender<Item>,
    file: String,
    overrides: &ColumnOverrides,
) {
    let newlines = Rc::new(Cell::new(0));
    let reader = LineCountingReader::new(text, newlines.clone());
    let mut de = serde_json::Deserializer::from_reader(reader);
    let feed = Feed {
        tx,
        newlines: &newlines,
        overrides,
    };
    let item = match Document(feed).deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Item::End,
        Err(e) if e.is_io() => Item::Failed(IngestError::Io {
            file,
            source: e.into(),
        }),
        Err(e) => Item::Failed(IngestError::Malformed {
            file,
            line: e.line() as u64,
            message: if e.is_eof() {
                format!("the JSON is cut short ({})", json_message(&e))
            } else {
                json_message(&e)
            },
        }),
    };
    // A consumer that went away (CONSUMER_GONE) needs no answer.
    let _ = tx.send(item);
}

/// What the parser's visitors share: where rows go, and the line counter.
#[derive(Clone, Copy)]
struct Feed<'a> {
    tx: &'a SyncSender<Item>,
    newlines: &'a Cell<u64>,
    overrides: &'a ColumnOverrides,
}

impl Feed<'_> {
    /// The line of the byte the parser just looked at.
    fn line(&self) -> u64 {
        self.newlines.get() + 1
    }

    fn send<E: serde::de::Error>(&self, item: Item) -> Result<(), E> {
        self.tx.send(item).map_err(|_| E::custom(CONSUMER_GONE))
    }

    fn is_conversation_id(&self, key: &str) -> bool {
        is_nested_id(key, self.overrides)
    }
}

/// The top level: `[ … ]`, or an object holding the array.
struct Document<'a>(Feed<'a>);

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of messages or conversations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Elements(self.0).stream(seq)
    }

    /// `{"conversations": [ … ]}`, `{"messages": [ … ]}`, or one
    /// conversation `{"id": …, "messages": [ … ]}` (an id after the array
    /// would mean holding the whole file, so only an id before it counts).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let feed = self.0;
        let mut found = false;
        let mut conversation: Option<Arc<str>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let normalized = normalize(&key);
            if found {
                map.next_value::<IgnoredAny>()?;
            } else if normalized == MESSAGES_KEY {
                let messages = Messages {
                    feed,
                    nested: conversation.is_some(),
                    conversation: conversation.clone(),
                    buffer: None,
                };
                found = map.next_value_seed(ArrayOrValue(messages))?.is_none();
            } else if ARRAY_KEYS.contains(&normalized.as_str()) {
                found = map.next_value_seed(ArrayOrValue(Elements(feed)))?.is_none();
            } else if conversation.is_none() && feed.is_conversation_id(&key) {
                let value = map.next_value_seed(Slim::Field)?;
                conversation = scalar_text(&value).map(|id| Arc::from(id.as_ref()));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a JSON array, or an object with an array under one of the keys {}",
                ARRAY_KEYS.join(", ")
            )))
        }
    }
}

/// Something that consumes a JSON array element by element.
trait ArrayStream<'de> {
    fn stream<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error>;
}

/// Streams an array; anything else is returned whole (`Some`).
struct ArrayOrValue<S>(S);

impl<'de, S: ArrayStream<'de>> DeserializeSeed<'de> for ArrayOrValue<S> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: ArrayStream<'de>> Visitor<'de> for ArrayOrValue<S> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<Value>, A::Error> {
        self.0.stream(seq).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Value>, A::Error> {
        // Only its kind is ever reported: skip it.
        Slim::Field.visit_map(map).map(Some)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Option<Value>, E> {
        Ok(Some(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Option<Value>, E> {
        Ok(Some(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Option<Value>, E> {
        Ok(Some(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Option<Value>, E> {
        Ok(Some(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Option<Value>, E> {
        Ok(Some(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
}

/// The elements of the top-level array: message rows or conversations.
struct Elements<'a>(Feed<'a>);

impl<'de> ArrayStream<'de> for Elements<'_> {
    fn stream<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Element(self.0))?.is_some() {}
        Ok(())
    }
}

/// One element of the top-level array.
struct Element<'a>(Feed<'a>);

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // The parser has just looked at the element's first byte.
        let line = self.0.line();
        let element = d.deserialize_any(ElementVisitor(self.0))?;
        let (value, conversation, nested) = match element {
            ElementValue::Streamed => return Ok(()),
            ElementValue::Row(value) => (value, None, false),
        };
        self.0.send(Item::Message {
            line,
            value,
            conversation,
            nested,
        })
    }
}

enum ElementValue {
    /// A conversation, whose messages went out one by one.
    Streamed,
    /// A message row, or a non-object the consumer will warn about.
    Row(Value),
}

struct ElementVisitor<'a>(Feed<'a>);

impl ElementVisitor<'_> {
    fn row<E>(v: impl Into<Value>) -> Result<ElementValue, E> {
        Ok(ElementValue::Row(v.into()))
    }
}

impl<'de> Visitor<'de> for ElementVisitor<'_> {
    type Value = ElementValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message or a conversation")
    }

    /// A conversation when it has a `messages` array, a message row otherwise.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ElementValue, A::Error> {
        let feed = self.0;
        let mut fields = Map::new();
        let mut conversation: Option<Arc<str>> = None;
        let mut is_conversation = false;
        // Messages that came before the conversation's id.
        let mut early: Vec<(u64, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !is_conversation && normalize(&key) == MESSAGES_KEY {
                let messages = Messages {
                    feed,
                    nested: true,
                    conversation: conversation.clone(),
                    buffer: conversation.is_none().then_some(&mut early),
                };
                match map.next_value_seed(ArrayOrValue(messages))? {
                    None => is_conversation = true,
                    Some(value) => {
                        fields.insert(key, value);
                    }
                }
                continue;
            }
            let value = match Slim::Message(feed.overrides).field(&key) {
                Some(slim) => map.next_value_seed(slim)?,
                None => map.next_value::<IgnoredAny>().map(|_| Value::Null)?,
            };
            if conversation.is_none() && feed.is_conversation_id(&key) {
                conversation = scalar_text(&value).map(|id| Arc::from(id.as_ref()));
            }
            fields.insert(key, value);
        }
        if !is_conversation {
            return Ok(ElementValue::Row(Value::Object(fields)));
        }
        for (line, value) in early {
            feed.send(Item::Message {
                line,
                value,
                conversation: conversation.clone(),
                nested: true,
            })?;
        }
        Ok(ElementValue::Streamed)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ElementValue, A::Error> {
        // Not a message: the consumer warns about its kind, so skip its content.
        Slim::Field.visit_seq(seq).map(ElementValue::Row)
    }

    fn visit_bool<E>(self, v: bool) -> Result<ElementValue, E> {
        Self::row(v)
    }

    fn visit_i64<E>(self, v: i64) -> Result<ElementValue, E> {
        Self::row(v)
    }

    fn visit_u64<E>(self, v: u64) -> Result<ElementValue, E> {
        Self::row(v)
    }

    fn visit_f64<E>(self, v: f64) -> Result<ElementValue, E> {
        Self::row(v)
    }

    fn visit_str<E>(self, v: &str) -> Result<ElementValue, E> {
        Self::row(v)
    }

    fn visit_unit<E>(self) -> Result<ElementValue, E> {
        Self::row(Value::Null)
    }
}

/// A `messages` array: each message is sent as soon as it is parsed, or
/// kept in `buffer` while the conversation's id is still unknown.
struct Messages<'a, 'b> {
    feed: Feed<'a>,
    nested: bool,
    conversation: Option<Arc<str>>,
    buffer: Option<&'b mut Vec<(u64, Value)>>,
}

impl<'de> ArrayStream<'de> for Messages<'_, '_> {
    fn stream<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some((line, value)) = seq.next_element_seed(Located(self.feed))? {
            match self.buffer.as_deref_mut() {
                Some(buffer) => buffer.push((line, value)),
                None => self.feed.send(Item::Message {
                    line,
                    value,
                    conversation: self.conversation.clone(),
                    nested: self.nested,
                })?,
            }
        }
        Ok(())
    }
}

/// A value and the line it starts on.
struct Located<'a>(Feed<'a>);

impl<'de> DeserializeSeed<'de> for Located<'_> {
    type Value = (u64, Value);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(u64, Value), D::Error> {
        let line = self.0.line();
        Slim::Message(self.0.overrides)
            .deserialize(d)
            .map(|v| (line, v))
    }
}

/// How much of a JSON value to build: only what can reach a row. A field
/// that cannot name a column is skipped (kept as `null`, so its key is still
/// listed in a missing-column error), and an array or object where text is
/// expected becomes an empty one of its kind (only its kind is reported:
/// "field is an array, not text"). So an unmapped array of millions of
/// elements costs nothing but the time to skip it.
#[derive(Clone, Copy)]
enum Slim<'a> {
    /// A field's value: a scalar as it is, anything else as an empty marker.
    Field,
    /// A message object: its fields.
    Message(&'a ColumnOverrides),
    /// A `messages` array: its messages.
    Messages(&'a ColumnOverrides),
    /// A JSONL line: a message, or a conversation with a `messages` array.
    Line(&'a ColumnOverrides),
}

impl<'a> Slim<'a> {
    /// How to read the value under `key` of a message or a line.
    fn field(self, key: &str) -> Option<Slim<'a>> {
        match self {
            Slim::Line(o) if normalize(key) == MESSAGES_KEY => Some(Slim::Messages(o)),
            Slim::Line(o) | Slim::Message(o) | Slim::Messages(o) => {
                could_map(key, o).then_some(Slim::Field)
            }
            Slim::Field => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Slim<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Slim<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        match self {
            Slim::Messages(o) => {
                while let Some(item) = seq.next_element_seed(Slim::Message(o))? {
                    items.push(item);
                }
            }
            _ => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        match self {
            Slim::Message(_) | Slim::Line(_) => {
                while let Some(key) = map.next_key::<String>()? {
                    let value = match self.field(&key) {
                        Some(slim) => map.next_value_seed(slim)?,
                        None => map.next_value::<IgnoredAny>().map(|_| Value::Null)?,
                    };
                    fields.insert(key, value);
                }
            }
            Slim::Field | Slim::Messages(_) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            }
        }
        Ok(Value::Object(fields))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

pub(super) struct JsonlSource {
    reader: BufReader<TextReader>,
    buf: Vec<u8>,
    line: u64,
    rows: ObjectRows,
    /// Lines that were valid JSON, and the first that was not: a file with
    /// no valid line at all is not JSON lines.
    parsed: u64,
    first_bad: Option<(u64, String)>,
}

impl JsonlSource {
    pub(super) fn new(text: TextReader, file: &str, opts: &IngestOptions) -> Self {
        Self {
            reader: BufReader::with_capacity(256 * 1024, text),
            buf: Vec::new(),
            line: 0,
            rows: ObjectRows::new(file, opts),
            parsed: 0,
            first_bad: None,
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
            return match self.first_bad.take() {
                Some((line, message)) if self.parsed == 0 => Err(IngestError::Malformed {
                    file: self.rows.file.clone(),
                    line,
                    message: format!("no line is valid JSON; the first bad one: {message}"),
                }),
                _ => Ok(false),
            };
        }
        self.line += 1;
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(true);
        }
        let mut de = serde_json::Deserializer::from_slice(&self.buf);
        let parsed = Slim::Line(&self.rows.overrides)
            .deserialize(&mut de)
            .and_then(|value| de.end().map(|()| value));
        match parsed {
            Ok(value) => {
                self.parsed += 1;
                self.rows.element(self.line, value, builder, out)?;
            }
            Err(e) => {
                let message = json_message(&e);
                out.push_back(warning(
                    self.line,
                    format!("not valid JSON ({message}); line skipped"),
                ));
                self.first_bad.get_or_insert((self.line, message));
            }
        }
        Ok(true)
    }
}
