//! Ingest: streaming parsers for support-chat exports, and the autoresponse
//! filter. Plain code with no actors: the pipeline drives it.
//!
//! [`open`] detects the format (extension, confirmed by content) and returns
//! a [`RowReader`]: an iterator of message rows and row-level warnings, in
//! file order, holding only a bounded window of the file in memory (XLSX is
//! checked before it is read, then streamed cell by cell).

mod bundle;
mod columns;
mod csv;
mod dialects;
mod filter;
mod json;
pub mod preview;
mod roles;
mod threads;
mod time;
mod whatsapp;
mod xlsx;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::path::Path;

pub use columns::{Column, ColumnMap};
pub use filter::AutoresponseFilter;
pub use roles::{Agents, AgentsError, Cast, Casting, Hint, Roster};
pub use time::parse_millis;

use crate::config::{ColumnOverrides, IngestSettings};
use crate::model::{Message, Role};

/// Bytes looked at to tell the format and spot binary files.
const SNIFF_BYTES: usize = 8192;

/// What an export is, as sniffed from its name and content (or as
/// `--format` / `ingest.format` says).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A table of message rows (CSV, TSV).
    Csv,
    /// A JSON array of message rows or of conversations with `messages`.
    Json,
    /// One JSON message (or conversation) per line.
    Jsonl,
    /// The first sheet of a workbook, as a table of message rows.
    Xlsx,
    /// WhatsApp's "Export chat" text (Android or iOS layout), or its zip.
    #[serde(rename = "whatsapp")]
    WhatsApp,
    /// Facebook Messenger / Page inbox "Download your information" JSON.
    Messenger,
    /// Telegram Desktop's `result.json` (one chat, or all chats).
    Telegram,
    /// Intercom conversations (`conversation_parts`).
    Intercom,
    /// Zendesk tickets with comments or audits.
    Zendesk,
    /// Freshdesk tickets with `conversations`.
    Freshdesk,
    /// Chatwoot conversations with `messages`.
    Chatwoot,
    /// Posts linked by `in_response_to` (the customer-support tweets
    /// corpus and the like): one conversation per thread.
    Threads,
}

impl Format {
    pub const ALL: [Format; 12] = [
        Format::Csv,
        Format::Json,
        Format::Jsonl,
        Format::Xlsx,
        Format::WhatsApp,
        Format::Messenger,
        Format::Telegram,
        Format::Intercom,
        Format::Zendesk,
        Format::Freshdesk,
        Format::Chatwoot,
        Format::Threads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Xlsx => "xlsx",
            Format::WhatsApp => "whatsapp",
            Format::Messenger => "messenger",
            Format::Telegram => "telegram",
            Format::Intercom => "intercom",
            Format::Zendesk => "zendesk",
            Format::Freshdesk => "freshdesk",
            Format::Chatwoot => "chatwoot",
            Format::Threads => "threads",
        }
    }

    /// The dialects of JSON read by a reader of their own.
    fn is_json_dialect(self) -> bool {
        matches!(
            self,
            Format::Messenger
                | Format::Telegram
                | Format::Intercom
                | Format::Zendesk
                | Format::Freshdesk
                | Format::Chatwoot
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}; expected auto or one of {list}", list = Format::ALL.map(Format::as_str).join(", "))]
pub struct UnknownFormat(String);

impl std::str::FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == wanted)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// What ingest needs from the settings.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The format to read the file as, whatever it looks like (`None`: sniffed).
    pub format: Option<Format>,
    /// The business side's sender names or patterns (`ingest.agents`).
    pub agents: Vec<String>,
    /// `agents` is the whole business side (an operator's list for one
    /// upload): names it does not match are customers, none inferred.
    pub agents_exact: bool,
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
            format: s.format,
            agents: s.agents.clone(),
            agents_exact: false,
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

impl IngestOptions {
    /// These options with an operator's choices for one upload.
    pub fn with_choice(mut self, choice: &IngestChoice) -> Self {
        if let Some(format) = choice.format {
            self.format = Some(format);
        }
        if let Some(agents) = &choice.agents {
            self.agents.clone_from(agents);
            self.agents_exact = true;
        }
        self
    }
}

/// How an operator said to read one upload, overriding `[ingest]`: chosen
/// in a preview, kept with the upload so a resume reads it the same way.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct IngestChoice {
    /// The format to read the file as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The business side's senders (names or `*` patterns), all of them:
    /// every other sender is a customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
}

impl IngestChoice {
    pub fn is_empty(&self) -> bool {
        self.format.is_none() && self.agents.is_none()
    }

    /// Longest list of senders a form or a query may give, in characters:
    /// hundreds of names, and a URL carrying it (percent-encoded, up to 12
    /// bytes a character) stays within what the HTTP server takes.
    pub const MAX_AGENTS_CHARS: usize = 4096;

    /// A choice from a form's or a query's fields: the business side's
    /// senders one per line (none given, or only blank lines: as
    /// configured). Refuses a list `ingest.agents` could not take, or one
    /// longer than [`Self::MAX_AGENTS_CHARS`].
    pub fn from_fields(format: Option<Format>, agents: Option<&str>) -> Result<Self, AgentsError> {
        if let Some(text) = agents {
            let chars = text.chars().count();
            if chars > Self::MAX_AGENTS_CHARS {
                return Err(AgentsError::too_long(chars, Self::MAX_AGENTS_CHARS));
            }
        }
        let agents: Option<Vec<String>> = agents
            .map(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|list| !list.is_empty());
        if let Some(list) = &agents {
            Agents::new(list)?;
        }
        Ok(Self { format, agents })
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
    #[error(
        "{file}: unsupported format {extension:?}; use an export as CSV, JSON, JSONL, XLSX, \
         a WhatsApp, Messenger or Telegram chat export, or a helpdesk's JSON"
    )]
    UnsupportedFormat { file: String, extension: String },
    #[error("ingest.agents: {0}")]
    Agents(AgentsError),
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

    /// A warning about the whole upload rather than one line (line 0).
    pub fn notice(message: &str) -> Self {
        Self::new(0, message)
    }

    pub fn is_notice(&self) -> bool {
        self.line == 0
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_notice() {
            return f.write_str(&self.message);
        }
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Sender roles as exports write them, per role.
const ROLE_NAMES: [(Role, &[&str]); 3] = [
    (
        Role::Customer,
        &[
            "customer",
            "user",
            "client",
            "visitor",
            "contact",
            "inbound",
            "incoming",
            "enduser",
            "end-user",
            "end_user",
            "end user",
            "requester",
            "consumer",
            "lead",
            "guest",
        ],
    ),
    (
        Role::Agent,
        &[
            "agent",
            "operator",
            "staff",
            "support",
            "admin",
            "outbound",
            "outgoing",
            "representative",
            "rep",
            "employee",
            "business",
            "page",
            "teammate",
            "helpdesk",
        ],
    ),
    (
        Role::Bot,
        &[
            "bot",
            "system",
            "auto",
            "automated",
            "chatbot",
            "agent_bot",
            "agentbot",
        ],
    ),
];

/// Distinct unknown roles warned about one by one; past this, one last
/// warning says the rest go unreported (a file with a free-text role column
/// would otherwise warn on every row).
const MAX_UNKNOWN_ROLE_WARNINGS: usize = 32;

/// Share of an upload's messages whose role may be a guess before the
/// upload is warned about it.
const GUESSED_SHARE_WARNED: f64 = 0.05;

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
    /// The role as the file writes it (a role column's text).
    sender: Option<&'a str>,
    /// The role, when the format says it in its own terms (a helpdesk's
    /// `incoming` flag, Intercom's author type): wins over `sender`.
    role: Option<Casting>,
    text: Option<&'a str>,
    timestamp: Option<&'a str>,
    sender_name: Option<&'a str>,
}

/// Where a source's messages get their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RolesFrom {
    /// A role field (or the format's own terms): read row by row.
    Field,
    /// Only sender names: who is who is learnt by a first pass over the
    /// whole upload ([`roles::Roster`]).
    Names,
}

/// How the builder gives messages their role.
enum Roles {
    /// From the role field; an unknown one is a guessed customer (unless
    /// `ingest.agents` names the sender).
    Field,
    /// The first pass: senders are gathered, no row is built.
    Gather(Roster),
    /// From the sender's name, as the first pass decided.
    Cast(Cast),
}

/// Why a message of the file is not a message to analyse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dropped {
    /// The app's own lines: "Messages and calls are end-to-end encrypted",
    /// "joined", "changed the subject", Telegram's service messages.
    System,
    /// A photo, voice note or file with no text ("<Media omitted>").
    Media,
    /// "This message was deleted".
    Deleted,
    /// A helpdesk's internal note (never seen by the customer).
    InternalNote,
    /// A helpdesk's activity: assignments, status changes, tags.
    Activity,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::System => "system messages",
            Dropped::Media => "media without text",
            Dropped::Deleted => "deleted messages",
            Dropped::InternalNote => "internal notes",
            Dropped::Activity => "activity entries (assignments, status changes)",
        }
    }
}

/// What the builder counts for the upload's closing notices.
#[derive(Debug, Default)]
struct RoleCounts {
    messages: u64,
    agents: u64,
    /// Messages whose role was a guess.
    guessed: u64,
    /// Of those, messages of an unknown role field value.
    unknown_field: u64,
    dropped: std::collections::BTreeMap<Dropped, u64>,
}

/// Turns raw rows into message rows and warnings; shared by every format.
struct RowBuilder {
    filter: AutoresponseFilter,
    max_field_bytes: usize,
    agents: Agents,
    roles: Roles,
    counts: RoleCounts,
    unknown_roles: HashSet<String>,
    /// Header names, for warnings that name a field.
    field_names: [String; 5],
    /// Which of them name a column of the file (a preview says so).
    mapped: [bool; 5],
}

impl RowBuilder {
    fn new(opts: &IngestOptions) -> Result<Self, IngestError> {
        Ok(Self {
            filter: AutoresponseFilter::new(&opts.autoresponse_patterns),
            max_field_bytes: opts.max_field_bytes,
            agents: Agents::new(&opts.agents).map_err(IngestError::Agents)?,
            roles: Roles::Field,
            counts: RoleCounts::default(),
            unknown_roles: HashSet::new(),
            field_names: Column::ALL.map(|c| c.label().to_string()),
            mapped: [false; 5],
        })
    }

    /// A builder for a first pass: it gathers senders and builds nothing.
    fn gatherer(opts: &IngestOptions) -> Result<Self, IngestError> {
        let mut builder = Self::new(opts)?;
        builder.roles = Roles::Gather(Roster::default());
        Ok(builder)
    }

    fn gathering(&self) -> bool {
        matches!(self.roles, Roles::Gather(_))
    }

    /// What the export says about a conversation's people (a chat's title,
    /// its listed participants); only a first pass needs it.
    fn hint(&mut self, conversation: &str, hint: Hint) {
        if let Roles::Gather(roster) = &mut self.roles {
            roster.hint(conversation, hint);
        }
    }

    /// A sender the export says speaks for the business.
    fn business(&mut self, name: &str) {
        if let Roles::Gather(roster) = &mut self.roles {
            roster.business(name);
        }
    }

    /// A message of the file that is not one to analyse, counted by kind.
    fn dropped(&mut self, why: Dropped) {
        if !self.gathering() {
            *self.counts.dropped.entry(why).or_default() += 1;
        }
    }

    fn name_fields(&mut self, headers: &[String], map: &ColumnMap) {
        for (i, column) in Column::ALL.into_iter().enumerate() {
            if let Some(h) = map.get(column).and_then(|ix| headers.get(ix)) {
                self.field_names[i] = crate::model::truncate_chars(h, MAX_NAME_CHARS);
                self.mapped[i] = true;
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

    /// The role of a message from `sender_name` whose role field says `raw`
    /// (or whose format says `known`), and whether it is a guess; `None`
    /// with a warning pushed when the row must be skipped.
    fn role(
        &mut self,
        conversation: &str,
        raw: RawRole<'_>,
        sender_name: Option<&str>,
        line: u64,
        out: &mut VecDeque<Row>,
    ) -> Casting {
        let certain = |role| Casting {
            role,
            guessed: false,
        };
        let guessed_customer = Casting {
            role: Role::Customer,
            guessed: true,
        };
        let text = match raw {
            RawRole::Known(casting) => return casting,
            RawRole::Unknown => {
                return match (sender_name, &self.roles) {
                    (Some(name), _) if self.agents.matches(name) => certain(Role::Agent),
                    (Some(name), Roles::Cast(cast)) => cast.role(conversation, name),
                    _ => guessed_customer,
                };
            }
            RawRole::Field(text) => text,
        };
        if let Some(role) = normalize_role(text) {
            return certain(role);
        }
        if sender_name.is_some_and(|n| self.agents.matches(n)) {
            return certain(Role::Agent);
        }
        let raw_role = trim_field(text);
        if self.unknown_roles.len() < MAX_UNKNOWN_ROLE_WARNINGS
            && self.unknown_roles.insert(raw_role.to_string())
        {
            out.push_back(Row::Warning(Warning::new(
                line,
                &format!("unknown sender role \"{raw_role}\", treated as customer"),
            )));
            if self.unknown_roles.len() == MAX_UNKNOWN_ROLE_WARNINGS {
                out.push_back(Row::Warning(Warning::new(
                    line,
                    &format!(
                        "{MAX_UNKNOWN_ROLE_WARNINGS} distinct unknown sender roles so far; \
                         further ones are treated as customer without a warning"
                    ),
                )));
            }
        }
        self.counts.unknown_field += 1;
        guessed_customer
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
        let by_name = matches!(self.roles, Roles::Gather(_) | Roles::Cast(_));
        let sender = match (raw.role, raw.sender) {
            (Some(role), _) => Some(RawRole::Known(role)),
            (None, Some(text)) => Some(RawRole::Field(text)),
            (None, None) if by_name => Some(RawRole::Unknown),
            (None, None) => None,
        };
        let (Some(id), Some(sender), Some(text)) = (raw.conversation_id, sender, raw.text) else {
            let missing = [
                (Column::ConversationId, raw.conversation_id.is_none()),
                (Column::Sender, sender.is_none()),
                (Column::Text, raw.text.is_none()),
            ]
            .into_iter()
            .filter(|(_, missing)| *missing)
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
        let sender_name = raw.sender_name.map(trim_field).filter(|n| !n.is_empty());
        if let Roles::Gather(roster) = &mut self.roles {
            if let (RawRole::Unknown | RawRole::Field(_), Some(name)) = (sender, sender_name) {
                roster.wrote(id, name);
            }
            return;
        }
        let casting = self.role(id, sender, sender_name, line, out);
        self.counts.messages += 1;
        self.counts.agents += u64::from(casting.role == Role::Agent);
        self.counts.guessed += u64::from(casting.guessed);
        let role = casting.role;
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
            sender_name: sender_name.map(str::to_string),
            text: text.to_string(),
        };
        out.push_back(Row::Message(MessageRow {
            line,
            conversation_id: id.to_string(),
            message,
        }));
    }

    /// The upload-wide notices, once every row is read: what was dropped,
    /// and whether too many roles were guesses.
    fn closing_notices(&self, out: &mut VecDeque<Row>) {
        let c = &self.counts;
        let notice = |out: &mut VecDeque<Row>, message: String| {
            out.push_back(Row::Warning(Warning::notice(&message)))
        };
        if !c.dropped.is_empty() {
            let total: u64 = c.dropped.values().sum();
            let kinds = c
                .dropped
                .iter()
                .map(|(why, n)| format!("{}: {n}", why.label()))
                .collect::<Vec<_>>()
                .join(", ");
            notice(
                out,
                format!(
                    "{total} entries of the export are not messages to analyse and were left out ({kinds})"
                ),
            );
        }
        if c.messages == 0 {
            return;
        }
        if c.agents == 0 && !matches!(self.roles, Roles::Field) {
            notice(
                out,
                "no sender could be told to be the business side: every message is analysed \
                 as the customer's. Name the business side's senders in ingest.agents (names or \
                 patterns such as \"* (Support)\")"
                    .into(),
            );
        } else if c.guessed as f64 > GUESSED_SHARE_WARNED * c.messages as f64 {
            let share = 100.0 * c.guessed as f64 / c.messages as f64;
            let (why, fix) = if c.unknown_field * 2 >= c.guessed {
                (
                    "their role field holds values PowerPulse does not know, taken as the customer's",
                    "map the role column with ingest.columns.sender, or name the business side's senders in ingest.agents",
                )
            } else {
                (
                    "nothing in the export tells who speaks for the business in their chats \
                     (the first sender of each was taken as the customer)",
                    "name the business side's senders in ingest.agents (names or patterns such as \"* (Support)\")",
                )
            };
            notice(
                out,
                format!(
                    "the role of {} of {} messages ({share:.0} %) is a guess: {why}; to fix it, {fix}",
                    c.guessed, c.messages
                ),
            );
        }
    }
}

/// A row's role as the source gives it.
#[derive(Debug, Clone, Copy)]
enum RawRole<'a> {
    Known(Casting),
    Field(&'a str),
    /// None: the role comes from the sender's name.
    Unknown,
}

/// A format's reader: fills `out` with the rows of its next input record.
trait Source: Send {
    /// Returns `false` at the end of the file.
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError>;

    /// Where this source's messages get their role.
    fn roles_from(&self) -> RolesFrom {
        RolesFrom::Field
    }
}

/// Opens an export's source, again when a first pass needs it.
#[derive(Debug, Clone)]
struct Opener {
    path: std::path::PathBuf,
    file: String,
    format: Format,
    /// A folder of exports, or a zip of them (unpacked into `unpacked`).
    bundle: Option<std::sync::Arc<bundle::Bundle>>,
    opts: IngestOptions,
}

impl Opener {
    fn open(&self, builder: &mut RowBuilder) -> Result<Box<dyn Source>, IngestError> {
        if let Some(bundle) = &self.bundle {
            return Ok(Box::new(bundle::BundleSource::new(
                bundle.clone(),
                &self.opts,
            )));
        }
        let name = Path::new(&self.file)
            .file_name()
            .map_or_else(|| self.file.clone(), |n| n.to_string_lossy().into_owned());
        open_source(
            &self.path,
            &self.file,
            &name,
            self.format,
            &self.opts,
            builder,
        )
    }
}

/// The source reading one file (not a bundle) as `format`; `file` names it
/// in messages, `name` is its file name as the user knows it.
fn open_source(
    path: &Path,
    file: &str,
    name: &str,
    format: Format,
    opts: &IngestOptions,
    builder: &mut RowBuilder,
) -> Result<Box<dyn Source>, IngestError> {
    Ok(match format {
        Format::Xlsx => Box::new(xlsx::XlsxSource::open(path, file, opts, builder)?),
        Format::WhatsApp => Box::new(whatsapp::WhatsAppSource::open(
            path,
            file,
            name,
            opts.max_field_bytes,
        )?),
        Format::Threads => Box::new(threads::ThreadSource::open(path, file, opts, builder)?),
        dialect if dialect.is_json_dialect() => {
            Box::new(dialects::DialectSource::open(path, file, name, dialect)?)
        }
        text_format => {
            let head = text::head(path, file)?;
            let reader = text::decoded(path, &head, file, text_format)?;
            match text_format {
                Format::Csv => {
                    let header = text::first_line(&head);
                    Box::new(csv::CsvSource::new(reader, &header, file, opts, builder)?)
                }
                Format::Json => Box::new(json::JsonSource::new(reader, file, opts)?),
                _ => Box::new(json::JsonlSource::new(reader, file, opts)),
            }
        }
    })
}

/// See [`RowReader::read_counts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub guessed_roles: u64,
    /// Entries of the export that are not messages, by kind.
    pub left_out: Vec<(String, u64)>,
}

/// Where a [`RowReader`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet: a first pass may be due.
    Start,
    Reading,
    Done,
}

/// The rows of one export, streamed. After an error it yields nothing more.
pub struct RowReader {
    format: Format,
    file: String,
    opener: Opener,
    source: Box<dyn Source>,
    builder: RowBuilder,
    queue: VecDeque<Row>,
    messages: u64,
    phase: Phase,
}

impl RowReader {
    pub fn format(&self) -> Format {
        self.format
    }

    /// How many files a folder or zip held (`None` for a single file).
    pub fn files(&self) -> Option<usize> {
        self.opener.bundle.as_ref().map(|b| b.len())
    }

    /// Where messages get their role: a role field, or the senders' names
    /// (learnt by a first pass over the whole upload).
    pub fn roles_by_name(&self) -> bool {
        self.source.roles_from() == RolesFrom::Names
    }

    /// The senders found to speak for the business, with the number of
    /// conversations each does so in (most first); empty until the first
    /// row is read, and for exports whose roles come from a role field.
    pub fn agents(&self, limit: usize) -> Vec<(String, u32)> {
        match &self.builder.roles {
            Roles::Cast(cast) => cast.agents(limit),
            _ => Vec::new(),
        }
    }

    /// Where each field of a message comes from, as `(field, source)` pairs
    /// (for a preview).
    pub fn fields(&self) -> Vec<(String, String)> {
        let by_name = self.roles_by_name();
        let names = |what: &str| -> String {
            if by_name {
                format!("{what}; roles told from the names")
            } else {
                what.to_string()
            }
        };
        let described: Option<[&str; 5]> = match self.format {
            Format::WhatsApp => Some([
                "one conversation per chat file, named after it",
                "none in the export",
                "the message, its continuation lines joined",
                "the line's date and time",
                "the name on each message line",
            ]),
            Format::Messenger => Some([
                "one conversation per thread (its folder)",
                "none in the export",
                "content (Facebook's mojibake repaired)",
                "timestamp_ms",
                "sender_name",
            ]),
            Format::Telegram => Some([
                "one conversation per chat (its id)",
                "none in the export",
                "text (entities joined)",
                "date_unixtime",
                "from",
            ]),
            Format::Intercom => Some([
                "the conversation's id",
                "author.type: user, lead, contact → customer; admin, team → agent; bot",
                "source (or conversation_message) and comment parts, HTML as text",
                "created_at",
                "author.name",
            ]),
            Format::Zendesk => Some([
                "the ticket's id",
                "none per comment: the requester is the customer, agents from users' roles",
                "public comments' plain_body (or body); private comments dropped",
                "created_at",
                "author_id",
            ]),
            Format::Freshdesk => Some([
                "the ticket's id",
                "incoming → customer, else agent; the description is the customer's",
                "description_text, then each conversation's body_text; private notes dropped",
                "created_at",
                "user_id",
            ]),
            Format::Chatwoot => Some([
                "the conversation's id",
                "message_type: 0 customer, 1 agent (bot for agent_bot), 3 bot; 2 dropped",
                "content; private notes dropped",
                "created_at",
                "sender.name",
            ]),
            _ => None,
        };
        let kind = match self.format {
            Format::Json | Format::Jsonl => "key",
            _ => "column",
        };
        Column::ALL
            .into_iter()
            .enumerate()
            .map(|(i, column)| {
                let source = match described {
                    Some(d) if column == Column::Sender && by_name => names(d[i]),
                    Some(d) => d[i].to_string(),
                    None if self.format == Format::Threads && column == Column::ConversationId => {
                        format!(
                            "the thread's first post, followed up column \"{}\"",
                            self.builder.field_names[i]
                        )
                    }
                    None if self.builder.mapped[i] => {
                        format!("{kind} \"{}\"", self.builder.field_names[i])
                    }
                    None if column == Column::Sender && by_name => {
                        "none in the file; roles told from the sender names".to_string()
                    }
                    None => "none in the file".to_string(),
                };
                (column.label().to_string(), source)
            })
            .collect()
    }

    /// What reading found so far that rows do not show: messages whose
    /// role was a guess, and entries left out by kind.
    pub fn read_counts(&self) -> ReadCounts {
        let c = &self.builder.counts;
        ReadCounts {
            guessed_roles: c.guessed,
            left_out: c
                .dropped
                .iter()
                .map(|(why, n)| (why.label().to_string(), *n))
                .collect(),
        }
    }

    /// The first pass of an export whose roles come from names: every
    /// conversation's senders, then everyone's role.
    fn gather(&mut self) -> Result<(), IngestError> {
        let mut gatherer = RowBuilder::gatherer(&self.opener.opts)?;
        let mut source = self.opener.open(&mut gatherer)?;
        let mut ignored = VecDeque::new();
        while source.next_rows(&mut gatherer, &mut ignored)? {
            ignored.clear();
        }
        if let Roles::Gather(roster) = gatherer.roles {
            let exact = self.opener.opts.agents_exact;
            self.builder.roles = Roles::Cast(roster.cast(&self.builder.agents, exact));
        }
        Ok(())
    }

    fn fail(&mut self, e: IngestError) -> Option<Result<Row, IngestError>> {
        self.phase = Phase::Done;
        self.queue.clear();
        Some(Err(e))
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
            match self.phase {
                Phase::Done => return None,
                Phase::Start => {
                    self.phase = Phase::Reading;
                    if self.roles_by_name()
                        && let Err(e) = self.gather()
                    {
                        return self.fail(e);
                    }
                }
                Phase::Reading => {}
            }
            match self.source.next_rows(&mut self.builder, &mut self.queue) {
                Ok(true) => {}
                Ok(false) => {
                    self.phase = Phase::Done;
                    if self.messages == 0
                        && self.queue.iter().all(|r| !matches!(r, Row::Message(_)))
                    {
                        return Some(Err(IngestError::NoMessages {
                            file: self.file.clone(),
                            detail: "no row had a conversation id, a sender and a text".into(),
                        }));
                    }
                    self.builder.closing_notices(&mut self.queue);
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// Opens an export (a file, a folder of exports, or a zip of them) and
/// prepares to stream its rows; errors name it by its path.
pub fn open(path: &Path, opts: &IngestOptions) -> Result<RowReader, IngestError> {
    open_named(path, &path.display().to_string(), opts)
}

/// [`open`] for a file kept under another name (an upload spooled by the
/// server): errors and chat names use `file`, the name the user knows.
pub fn open_named(path: &Path, file: &str, opts: &IngestOptions) -> Result<RowReader, IngestError> {
    let file = file.to_string();
    let mut builder = RowBuilder::new(opts)?;
    let (format, bundle) = if path.is_dir() {
        let bundle = bundle::Bundle::folder(path, &file, opts)?;
        (bundle.format(), Some(std::sync::Arc::new(bundle)))
    } else {
        let head = text::head(path, &file)?;
        match detect(path, &head, &file, opts.format)? {
            Detected::Zip => {
                let bundle = bundle::Bundle::zip(path, &file, opts)?;
                (bundle.format(), Some(std::sync::Arc::new(bundle)))
            }
            Detected::File(format) => (format, None),
        }
    };
    let opener = Opener {
        path: path.to_path_buf(),
        file: file.clone(),
        format,
        bundle,
        opts: opts.clone(),
    };
    let source = opener.open(&mut builder)?;
    Ok(RowReader {
        format,
        file,
        opener,
        source,
        builder,
        queue: VecDeque::new(),
        messages: 0,
        phase: Phase::Start,
    })
}

/// What [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    File(Format),
    /// A zip archive of exports (not a workbook).
    Zip,
}

/// The format the extension declares, checked against the first bytes:
/// the content wins when it is unmistakably another text format (a JSON
/// array saved as `.jsonl`, JSON lines saved as `.json`, a WhatsApp chat
/// saved as `.txt`, a helpdesk's or a chat app's JSON), and a declared
/// format the content cannot be is refused. `forced` (`--format`) decides
/// for a file that is not a zip archive.
fn detect(
    path: &Path,
    head: &[u8],
    file: &str,
    forced: Option<Format>,
) -> Result<Detected, IngestError> {
    let whole_file = head.len() < SNIFF_BYTES;
    let is_zip = head.starts_with(b"PK\x03\x04");
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let text_extension = matches!(
        ext.as_str(),
        "csv" | "tsv" | "txt" | "json" | "jsonl" | "ndjson"
    );
    if is_zip && text_extension && forced.is_none() {
        return Err(IngestError::Binary {
            file: file.to_string(),
            expected: if ext.starts_with('j') || ext == "ndjson" {
                Format::Json
            } else {
                Format::Csv
            },
            detail: "it is a zip archive; an .xlsx or a .zip saved under another name?".into(),
        });
    }
    if is_zip {
        let workbook = forced == Some(Format::Xlsx)
            || matches!(ext.as_str(), "xlsx" | "xlsm")
            || bundle::is_workbook(path, file)?;
        return Ok(if workbook {
            Detected::File(Format::Xlsx)
        } else {
            Detected::Zip
        });
    }
    if let Some(format) = forced {
        if format == Format::Xlsx {
            return Err(IngestError::Xlsx {
                file: file.to_string(),
                message: "the file is not a zip archive (is it a CSV or an old .xls renamed?)"
                    .into(),
            });
        }
        return Ok(Detected::File(format));
    }
    let declared = match ext.as_str() {
        "csv" | "tsv" | "txt" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "xlsx" | "xlsm" => {
            return Err(IngestError::Xlsx {
                file: file.to_string(),
                message: "the file is not a zip archive (is it a CSV or an old .xls renamed?)"
                    .into(),
            });
        }
        "xls" | "ods" | "numbers" => {
            return Err(IngestError::UnsupportedFormat {
                file: file.to_string(),
                extension: ext,
            });
        }
        "zip" => {
            return Err(IngestError::Malformed {
                file: file.to_string(),
                line: 1,
                message: "the file ends in .zip but is not a zip archive".into(),
            });
        }
        _ => None,
    };
    let content = text::head_text(&head[..head.len().min(SNIFF_BYTES)]);
    if whole_file && content.trim().is_empty() {
        return Err(IngestError::Empty {
            file: file.to_string(),
        });
    }
    if whatsapp::looks_like(&content) {
        return Ok(Detected::File(Format::WhatsApp));
    }
    use text::Sniffed;
    let sniffed = text::sniff(&content, whole_file);
    if sniffed != Sniffed::Other
        && let Some(dialect) = dialects::sniff(&text::head_text(head))
    {
        return Ok(Detected::File(dialect));
    }
    Ok(Detected::File(match (declared, sniffed) {
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
        (Some(Format::Csv) | None, Sniffed::Other)
            if threads::looks_like(&text::first_line(head)) =>
        {
            Format::Threads
        }
        (Some(declared), Sniffed::Other) => declared,
        (None, Sniffed::Other) => Format::Csv,
    }))
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

    /// Bytes read to tell a file's format: the first `SNIFF_BYTES` decide
    /// between text formats, the rest lets a JSON dialect's keys show.
    pub const HEAD_BYTES: u64 = 64 * 1024;

    /// The first `HEAD_BYTES` of a file (all of it when shorter).
    pub fn head(path: &Path, file: &str) -> Result<Vec<u8>, IngestError> {
        let io = |source| IngestError::Io {
            file: file.to_string(),
            source,
        };
        let handle = File::open(path).map_err(io)?;
        let mut head = Vec::with_capacity(HEAD_BYTES as usize);
        handle.take(HEAD_BYTES).read_to_end(&mut head).map_err(io)?;
        Ok(head)
    }

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
        // Only the sniff window is checked here: a bad byte further on is
        // the parser's to report, with its line.
        let head = &head[..head.len().min(super::SNIFF_BYTES)];
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
mod export_tests;
#[cfg(test)]
mod tests;
