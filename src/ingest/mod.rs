//! Ingest: streaming parsers for support-chat exports, and the autoresponse
//! filter. Plain code with no actors: the pipeline drives it.
//!
//! [`open`] detects the format (extension, confirmed by content) and returns
//! a [`RowReader`]: an iterator of message rows and row-level warnings, in
//! file order, holding only a bounded window of the file in memory (XLSX is
//! checked before it is read, then streamed cell by cell).

mod columns;
mod csv;
mod filter;
mod json;
mod time;
mod xlsx;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::Read;
use std::path::Path;

pub use columns::{Column, ColumnMap};
pub use filter::AutoresponseFilter;
pub use time::parse_millis;

use crate::config::{ColumnOverrides, IngestSettings};
use crate::model::{Message, Role};

/// Bytes looked at to tell the format and spot binary files.
const SNIFF_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Jsonl,
    Xlsx,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Xlsx => "xlsx",
        })
    }
}

/// What ingest needs from the settings.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub columns: ColumnOverrides,
    pub autoresponse_patterns: Vec<String>,
    pub max_field_bytes: usize,
    pub xlsx_max_rows: u32,
    pub xlsx_max_columns: u32,
    pub xlsx_max_cells: u64,
    pub xlsx_max_inflated_bytes: u64,
}

impl IngestOptions {
    pub fn from_settings(s: &IngestSettings) -> Self {
        Self {
            columns: s.columns.clone(),
            autoresponse_patterns: s.autoresponse_patterns.clone(),
            max_field_bytes: s.max_field_bytes,
            xlsx_max_rows: s.xlsx_max_rows,
            xlsx_max_columns: s.xlsx_max_columns,
            xlsx_max_cells: s.xlsx_max_cells,
            xlsx_max_inflated_bytes: s.xlsx_max_inflated_bytes,
        }
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self::from_settings(&IngestSettings::default())
    }
}

/// Longest header name quoted in a warning or an error, in characters: a
/// header can be a megabyte long, and every warning would copy it.
const MAX_NAME_CHARS: usize = 64;
/// Headers listed in a missing-column error.
const MAX_NAMES_LISTED: usize = 32;

/// Why a file cannot be read at all. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{file}: cannot read the file: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: no messages: the file is empty")]
    Empty { file: String },
    #[error("{file}: no messages found ({detail})")]
    NoMessages { file: String, detail: String },
    #[error("{file}: this is a binary file, not a {expected} export ({detail})")]
    Binary {
        file: String,
        expected: Format,
        detail: String,
    },
    #[error("{file}: line {line}: {message}")]
    Malformed {
        file: String,
        line: u64,
        message: String,
    },
    #[error("{file}: no {} column (looked for {aliases}); headers found: {found}", column.label())]
    MissingColumn {
        file: String,
        column: Column,
        aliases: String,
        found: String,
    },
    #[error("{file}: not a valid XLSX workbook: {message}")]
    Xlsx { file: String, message: String },
    #[error("{file}: unsupported format {extension:?}; use .csv, .json, .jsonl or .xlsx")]
    UnsupportedFormat { file: String, extension: String },
}

impl IngestError {
    /// No header names one of the required columns.
    fn missing_column(file: &str, column: Column, headers: &[String]) -> IngestError {
        IngestError::MissingColumn {
            file: file.to_string(),
            column,
            aliases: column.display_aliases().to_string(),
            found: if headers.iter().all(|h| h.is_empty()) {
                "none".to_string()
            } else {
                let mut listed = headers
                    .iter()
                    .take(MAX_NAMES_LISTED)
                    .map(|h| format!("\"{}\"", crate::model::truncate_chars(h, MAX_NAME_CHARS)))
                    .collect::<Vec<_>>();
                if headers.len() > MAX_NAMES_LISTED {
                    listed.push(format!("… ({} in all)", headers.len()));
                }
                listed.join(", ")
            },
        }
    }

    /// Whether the file's format (rather than its content) is the problem.
    pub fn is_unsupported_format(&self) -> bool {
        matches!(self, IngestError::UnsupportedFormat { .. })
    }
}

/// One item of a [`RowReader`].
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Message(MessageRow),
    /// A row skipped, or kept with a caveat.
    Warning(Warning),
}

/// One message and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    /// Line (CSV, JSON, JSONL) or spreadsheet row (XLSX) it starts on.
    pub line: u64,
    pub conversation_id: String,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: u64,
    pub message: String,
}

/// Longest warning kept, in characters: a warning quotes the file (a role, a
/// key), and the file may put a megabyte there.
const MAX_WARNING_CHARS: usize = 300;

impl Warning {
    pub fn new(line: u64, message: &str) -> Self {
        Self {
            line,
            message: crate::model::truncate_chars(message, MAX_WARNING_CHARS),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Sender roles as exports write them, per role.
const ROLE_NAMES: [(Role, &[&str]); 3] = [
    (
        Role::Customer,
        &[
            "customer", "user", "client", "visitor", "contact", "inbound",
        ],
    ),
    (
        Role::Agent,
        &["agent", "operator", "staff", "support", "admin", "outbound"],
    ),
    (Role::Bot, &["bot", "system", "auto", "automated"]),
];

/// Distinct unknown roles warned about one by one; past this, one last
/// warning says the rest go unreported (a file with a free-text role column
/// would otherwise warn on every row).
const MAX_UNKNOWN_ROLE_WARNINGS: usize = 32;

/// `field.trim()`, answered without decoding a char when both ends are
/// visible ASCII, as in nearly every field of an export (four to six trims
/// a row were a sixth of building rows).
fn trim_field(field: &str) -> &str {
    match (field.as_bytes().first(), field.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => field,
        _ => field.trim(),
    }
}

/// Sender roles as exports write them → our three roles; `None` when unknown.
pub fn normalize_role(raw: &str) -> Option<Role> {
    // Called once per row: compare in place rather than lowercase a copy.
    let r = trim_field(raw);
    ROLE_NAMES.iter().find_map(|(role, names)| {
        names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(r))
            .then_some(*role)
    })
}

/// The fields of one input row, before validation.
#[derive(Debug, Default)]
struct RawRow<'a> {
    line: u64,
    conversation_id: Option<&'a str>,
    sender: Option<&'a str>,
    text: Option<&'a str>,
    timestamp: Option<&'a str>,
    sender_name: Option<&'a str>,
}

/// Turns raw rows into message rows and warnings; shared by every format.
struct RowBuilder {
    filter: AutoresponseFilter,
    max_field_bytes: usize,
    unknown_roles: HashSet<String>,
    /// Header names, for warnings that name a field.
    field_names: [String; 5],
}

impl RowBuilder {
    fn new(opts: &IngestOptions) -> Self {
        Self {
            filter: AutoresponseFilter::new(&opts.autoresponse_patterns),
            max_field_bytes: opts.max_field_bytes,
            unknown_roles: HashSet::new(),
            field_names: Column::ALL.map(|c| c.label().to_string()),
        }
    }

    fn name_fields(&mut self, headers: &[String], map: &ColumnMap) {
        for (i, column) in Column::ALL.into_iter().enumerate() {
            if let Some(h) = map.get(column).and_then(|ix| headers.get(ix)) {
                self.field_names[i] = crate::model::truncate_chars(h, MAX_NAME_CHARS);
            }
        }
    }

    /// Maps a header row, refusing one without the required columns, and
    /// remembers the header names for warnings.
    fn header_row(
        &mut self,
        file: &str,
        headers: &[String],
        overrides: &ColumnOverrides,
    ) -> Result<ColumnMap, IngestError> {
        let map = ColumnMap::find(headers, overrides);
        if let Some(column) = map.missing() {
            return Err(IngestError::missing_column(file, column, headers));
        }
        self.name_fields(headers, &map);
        Ok(map)
    }

    fn field_name(&self, column: Column) -> &str {
        let i = Column::ALL.iter().position(|c| *c == column).unwrap_or(0);
        &self.field_names[i]
    }

    fn build(&mut self, raw: RawRow<'_>, out: &mut VecDeque<Row>) {
        let line = raw.line;
        let warn = |out: &mut VecDeque<Row>, message: String| {
            out.push_back(Row::Warning(Warning::new(line, &message)))
        };
        let fields = [
            (Column::ConversationId, raw.conversation_id),
            (Column::Sender, raw.sender),
            (Column::Text, raw.text),
            (Column::Timestamp, raw.timestamp),
            (Column::SenderName, raw.sender_name),
        ];
        for (column, value) in fields {
            if let Some(v) = value.filter(|v| v.len() > self.max_field_bytes) {
                let message = format!(
                    "field \"{}\" is {} bytes, over the {}-byte limit (ingest.max_field_bytes); row skipped",
                    self.field_name(column),
                    v.len(),
                    self.max_field_bytes
                );
                return warn(out, message);
            }
        }
        let (Some(id), Some(sender), Some(text)) = (raw.conversation_id, raw.sender, raw.text)
        else {
            let missing = [
                (Column::ConversationId, raw.conversation_id),
                (Column::Sender, raw.sender),
                (Column::Text, raw.text),
            ]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(c, _)| format!("\"{}\"", self.field_name(c)))
            .collect::<Vec<_>>()
            .join(", ");
            return warn(out, format!("missing field {missing}; row skipped"));
        };
        let id = trim_field(id);
        if id.is_empty() {
            let message = format!(
                "empty \"{}\" field; row skipped",
                self.field_name(Column::ConversationId)
            );
            return warn(out, message);
        }
        if trim_field(text).is_empty() {
            let message = format!(
                "empty \"{}\" field; row skipped",
                self.field_name(Column::Text)
            );
            return warn(out, message);
        }
        let role = match normalize_role(sender) {
            Some(role) => role,
            None => {
                let raw_role = trim_field(sender);
                if self.unknown_roles.len() < MAX_UNKNOWN_ROLE_WARNINGS
                    && self.unknown_roles.insert(raw_role.to_string())
                {
                    warn(
                        out,
                        format!("unknown sender role \"{raw_role}\", treated as customer"),
                    );
                    if self.unknown_roles.len() == MAX_UNKNOWN_ROLE_WARNINGS {
                        warn(
                            out,
                            format!(
                                "{MAX_UNKNOWN_ROLE_WARNINGS} distinct unknown sender roles so far; \
                                 further ones are treated as customer without a warning"
                            ),
                        );
                    }
                }
                Role::Customer
            }
        };
        let timestamp = raw
            .timestamp
            .map(trim_field)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let message = Message {
            role,
            autoresponse: self.filter.is_autoresponse(role, text),
            time_ms: timestamp.as_deref().and_then(parse_millis),
            timestamp,
            sender_name: raw
                .sender_name
                .map(trim_field)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            text: text.to_string(),
        };
        out.push_back(Row::Message(MessageRow {
            line,
            conversation_id: id.to_string(),
            message,
        }));
    }
}

/// A format's reader: fills `out` with the rows of its next input record.
trait Source: Send {
    /// Returns `false` at the end of the file.
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError>;
}

/// The rows of one export, streamed. After an error it yields nothing more.
pub struct RowReader {
    format: Format,
    file: String,
    source: Box<dyn Source>,
    builder: RowBuilder,
    queue: VecDeque<Row>,
    messages: u64,
    done: bool,
}

impl RowReader {
    pub fn format(&self) -> Format {
        self.format
    }
}

impl Iterator for RowReader {
    type Item = Result<Row, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.queue.pop_front() {
                if matches!(row, Row::Message(_)) {
                    self.messages += 1;
                }
                return Some(Ok(row));
            }
            if self.done {
                return None;
            }
            match self.source.next_rows(&mut self.builder, &mut self.queue) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    if self.messages == 0
                        && self.queue.iter().all(|r| !matches!(r, Row::Message(_)))
                    {
                        return Some(Err(IngestError::NoMessages {
                            file: self.file.clone(),
                            detail: "no row had a conversation id, a sender and a text".into(),
                        }));
                    }
                }
                Err(e) => {
                    self.done = true;
                    self.queue.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Opens an export and prepares to stream its rows.
pub fn open(path: &Path, opts: &IngestOptions) -> Result<RowReader, IngestError> {
    let file = path.display().to_string();
    let io = |source| IngestError::Io {
        file: file.clone(),
        source,
    };
    let mut handle = std::fs::File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut handle)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    // A short read means `head` is the whole file.
    let whole_file = head.len() < SNIFF_BYTES;
    let format = detect(path, &head, whole_file, &file)?;
    let mut builder = RowBuilder::new(opts);
    let source: Box<dyn Source> = match format {
        Format::Xlsx => Box::new(xlsx::XlsxSource::open(path, &file, opts, &mut builder)?),
        text_format => {
            let reader = text::decoded(path, &head, &file, text_format)?;
            match text_format {
                Format::Csv => {
                    let header = text::first_line(&head);
                    Box::new(csv::CsvSource::new(
                        reader,
                        &header,
                        &file,
                        opts,
                        &mut builder,
                    )?)
                }
                Format::Json => Box::new(json::JsonSource::new(reader, &file, opts)?),
                _ => Box::new(json::JsonlSource::new(reader, &file, opts)),
            }
        }
    };
    Ok(RowReader {
        format,
        file,
        source,
        builder,
        queue: VecDeque::new(),
        messages: 0,
        done: false,
    })
}

/// The format the extension declares, checked against the first bytes:
/// the content wins when it is unmistakably another text format (a JSON
/// array saved as `.jsonl`, JSON lines saved as `.json`), and a declared
/// format the content cannot be is refused.
fn detect(path: &Path, head: &[u8], whole_file: bool, file: &str) -> Result<Format, IngestError> {
    let is_zip = head.starts_with(b"PK\x03\x04");
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let declared = match ext.as_str() {
        "csv" | "tsv" | "txt" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "xlsx" | "xlsm" => Some(Format::Xlsx),
        "xls" | "ods" | "numbers" => {
            return Err(IngestError::UnsupportedFormat {
                file: file.to_string(),
                extension: ext,
            });
        }
        _ => None,
    };
    match declared {
        Some(Format::Xlsx) if !is_zip => {
            return Err(IngestError::Xlsx {
                file: file.to_string(),
                message: "the file is not a zip archive (is it a CSV or an old .xls renamed?)"
                    .into(),
            });
        }
        Some(Format::Xlsx) => return Ok(Format::Xlsx),
        Some(expected) if is_zip => {
            return Err(IngestError::Binary {
                file: file.to_string(),
                expected,
                detail: "it is a zip archive; an .xlsx saved under another name?".into(),
            });
        }
        None if is_zip => return Ok(Format::Xlsx),
        _ => {}
    }
    let content = text::head_text(head);
    if whole_file && content.trim().is_empty() {
        return Err(IngestError::Empty {
            file: file.to_string(),
        });
    }
    use text::Sniffed;
    Ok(match (declared, text::sniff(&content, whole_file)) {
        (_, Sniffed::JsonArray) => Format::Json,
        (_, Sniffed::JsonLines) => Format::Jsonl,
        // A file of one object is a document when the object holds the
        // rows, and a one-line JSONL file when it is a row itself.
        (_, Sniffed::OneJsonObject { wrapper: true }) => Format::Json,
        (_, Sniffed::OneJsonObject { wrapper: false }) => Format::Jsonl,
        // A JSON lines file whose first line outgrows the window looks the
        // same as a pretty-printed document: the extension decides.
        (Some(Format::Jsonl), Sniffed::JsonObject) => Format::Jsonl,
        (_, Sniffed::JsonObject) => Format::Json,
        (Some(declared), Sniffed::Other) => declared,
        (None, Sniffed::Other) => Format::Csv,
    })
}

/// Text decoding shared by CSV, JSON and JSONL: BOM handling, UTF-16, the
/// binary-file check, and sniffing what the text looks like.
mod text {
    use std::borrow::Cow;
    use std::fs::File;
    use std::io::{BufReader, Read};
    use std::path::Path;

    use encoding_rs_io::DecodeReaderBytesBuilder;

    use super::{Format, IngestError};

    pub type TextReader = Box<dyn Read + Send>;

    fn utf16(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
        if head.starts_with(&[0xFF, 0xFE]) {
            Some(encoding_rs::UTF_16LE)
        } else if head.starts_with(&[0xFE, 0xFF]) {
            Some(encoding_rs::UTF_16BE)
        } else {
            None
        }
    }

    /// The sniffed bytes as text, without a BOM, bad sequences replaced (a
    /// character cut by the sniff window included).
    pub fn head_text(head: &[u8]) -> Cow<'_, str> {
        match utf16(head) {
            Some(enc) => enc.decode_with_bom_removal(head).0,
            None => String::from_utf8_lossy(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head)),
        }
    }

    /// The first line of the sniffed bytes, decoded (for delimiter sniffing).
    pub fn first_line(head: &[u8]) -> String {
        head_text(head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// What the start of a text file looks like.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Sniffed {
        /// `[` then an object or the end of the array: no CSV header starts so.
        JsonArray,
        /// Two or more lines that are each a whole JSON object.
        JsonLines,
        /// The whole file is one single-line JSON object; `wrapper` when it
        /// holds a `conversations`/`messages` array, as a JSON document would.
        OneJsonObject {
            wrapper: bool,
        },
        /// A JSON object spread over lines (a pretty-printed document).
        JsonObject,
        Other,
    }

    pub fn sniff(text: &str, whole_file: bool) -> Sniffed {
        let t = text.trim_start();
        if let Some(rest) = t.strip_prefix('[') {
            return match rest.trim_start().chars().next() {
                Some('{' | ']') => Sniffed::JsonArray,
                // A window of whitespace after `[`: the array may well hold objects.
                None if !whole_file => Sniffed::JsonArray,
                _ => Sniffed::Other,
            };
        }
        if !t.starts_with('{') {
            return Sniffed::Other;
        }
        // The last line of a cut-off window is itself cut off: not evidence.
        let seen = if whole_file {
            t
        } else {
            t.rfind('\n').map_or("", |end| &t[..end])
        };
        let mut lines = seen.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines
            .next()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        let Some(serde_json::Value::Object(first)) = first else {
            return Sniffed::JsonObject;
        };
        if lines.next().is_some() || !whole_file {
            return Sniffed::JsonLines;
        }
        Sniffed::OneJsonObject {
            wrapper: first
                .iter()
                .any(|(key, value)| value.is_array() && super::json::is_array_key(key)),
        }
    }

    /// Opens `path` as UTF-8 text (a UTF-8 BOM dropped, UTF-16 with a BOM
    /// transcoded), refusing files that are evidently binary.
    pub fn decoded(
        path: &Path,
        head: &[u8],
        file: &str,
        expected: Format,
    ) -> Result<TextReader, IngestError> {
        let binary = |detail: String| IngestError::Binary {
            file: file.to_string(),
            expected,
            detail,
        };
        let line_at = |offset: usize| head[..offset].iter().filter(|b| **b == b'\n').count() + 1;
        if utf16(head).is_none() {
            if let Some(at) = head.iter().position(|b| *b == 0) {
                return Err(binary(format!(
                    "NUL byte on line {} (byte {at})",
                    line_at(at)
                )));
            }
            if let Err(e) = std::str::from_utf8(head) {
                // A multi-byte character cut by the sniff window is fine.
                if e.error_len().is_some() {
                    let at = e.valid_up_to();
                    return Err(binary(format!(
                        "invalid UTF-8 on line {} (byte {at}); save the export as UTF-8 or UTF-16",
                        line_at(at)
                    )));
                }
            }
        }
        let handle = File::open(path).map_err(|source| IngestError::Io {
            file: file.to_string(),
            source,
        })?;
        // The BOM decides: UTF-16 is transcoded, UTF-8 (with or without a
        // BOM) passes through untouched and is validated by the parsers.
        let decoder = DecodeReaderBytesBuilder::new()
            .bom_sniffing(true)
            .utf8_passthru(true)
            .strip_bom(true)
            .build(BufReader::with_capacity(256 * 1024, handle));
        Ok(Box::new(decoder))
    }
}

#[cfg(test)]
mod tests;
