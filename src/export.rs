//! Export rows (one per conversation) and their CSV / JSON / JSONL writers.
//! Plain code over [`ConversationRow`]s; the CLI feeds it from the store, the
//! HTTP layer from `StoreReader` pages.
//!
//! CSV is opened by spreadsheets, which run a cell starting with `=`, `+`,
//! `-` or `@` as a formula (CSV injection): text that came from the upload or
//! the LLM is neutralised there by [`neutralize_formula`]. JSON and JSONL stay
//! exact.
//!
//! A redacting writer ([`ExportWriter::redacting`]: `export --redact`,
//! `?redact=true`) makes an export to share: see [`RowRedaction`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{ConversationStatus, SatisfactionLabel, SentimentLabel};
use crate::privacy::Redactor;
use crate::store::{ConversationFilter, ConversationRow, Page, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Json,
    Jsonl,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
            ExportFormat::Jsonl => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "json" => Ok(ExportFormat::Json),
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            other => Err(format!(
                "unknown export format {other:?} (csv, json, jsonl)"
            )),
        }
    }
}

/// One exported conversation. Analysis fields are empty for failed ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRow {
    pub upload_id: Uuid,
    pub conversation_id: String,
    pub messages: u32,
    pub customer_messages: u32,
    pub sentiment: Option<SentimentLabel>,
    pub sentiment_score: Option<f64>,
    pub satisfaction_score: Option<u8>,
    pub satisfaction: Option<SatisfactionLabel>,
    pub resolved: Option<bool>,
    pub summary: Option<String>,
    pub analyzer: Option<String>,
    pub status: ConversationStatus,
    /// The agent who handled it (sender name), when the export names one.
    pub agent: Option<String>,
    /// One of the configured topics.
    pub topic: Option<String>,
    /// The customer's language, ISO 639-1.
    pub language: Option<String>,
    /// The model that made the analysis.
    pub model: Option<String>,
    /// The LLM endpoint that made the outcome (`[[analyzer.openai.endpoints]]`).
    pub endpoint: Option<String>,
}

impl From<ConversationRow> for ExportRow {
    fn from(row: ConversationRow) -> Self {
        let a = row.analysis;
        ExportRow {
            upload_id: row.upload_id,
            conversation_id: row.conversation_id,
            messages: row.record.messages,
            customer_messages: row.record.customer_messages,
            sentiment: a.as_ref().map(|a| a.sentiment.label),
            sentiment_score: a.as_ref().map(|a| a.sentiment.score),
            satisfaction_score: a.as_ref().map(|a| a.satisfaction.score),
            satisfaction: a.as_ref().map(|a| a.satisfaction.label),
            resolved: a.as_ref().and_then(|a| a.resolved),
            summary: a.as_ref().map(|a| a.summary.clone()),
            topic: a.as_ref().and_then(|a| a.topic.clone()),
            model: a.as_ref().map(|a| a.model.clone()),
            analyzer: a.map(|a| a.analyzer),
            status: row.record.status,
            agent: row.record.agent,
            language: row.record.language,
            endpoint: row.record.endpoint,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write export: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Writes rows one at a time in the chosen format; JSON is one array,
/// written incrementally, so no format needs the whole export in memory.
pub struct ExportWriter<W: Write> {
    format: ExportFormat,
    csv: Option<csv::Writer<W>>,
    out: Option<W>,
    rows: u64,
    redaction: Option<RowRedaction>,
}

impl<W: Write> ExportWriter<W> {
    pub fn new(format: ExportFormat, out: W) -> Self {
        match format {
            ExportFormat::Csv => Self {
                format,
                csv: Some(csv::Writer::from_writer(out)),
                out: None,
                rows: 0,
                redaction: None,
            },
            _ => Self {
                format,
                csv: None,
                out: Some(out),
                rows: 0,
                redaction: None,
            },
        }
    }

    /// This writer making an export to share: every row goes through a
    /// [`RowRedaction`] under `redactor`.
    pub fn redacting(mut self, redactor: Redactor) -> Self {
        self.redaction = Some(RowRedaction::new(redactor));
        self
    }

    /// Whether rows are redacted, and so [`Self::write_page`] wants each
    /// row's sender names.
    pub fn redacts(&self) -> bool {
        self.redaction.is_some()
    }

    pub fn write(&mut self, row: &ExportRow) -> Result<(), ExportError> {
        match (self.format, &mut self.csv, &mut self.out) {
            (ExportFormat::Csv, Some(w), _) => w.serialize(CsvRow::from(row))?,
            (ExportFormat::Json, _, Some(w)) => {
                w.write_all(if self.rows == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *w, row)?;
            }
            (ExportFormat::Jsonl, _, Some(w)) => {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")?;
            }
            _ => unreachable!("writer state matches its format by construction"),
        }
        self.rows += 1;
        Ok(())
    }

    /// Closes the document (CSV header even with no rows, `[]` for empty
    /// JSON) and returns the number of rows written.
    pub fn finish(mut self) -> Result<u64, ExportError> {
        self.close()?;
        Ok(self.rows)
    }

    /// Writes what ends the document and flushes.
    fn close(&mut self) -> Result<(), ExportError> {
        if let Some(w) = self.csv.as_mut() {
            if self.rows == 0 {
                w.write_record(CSV_HEADER)?;
            }
            w.flush()?;
        }
        if let Some(w) = self.out.as_mut() {
            if self.format == ExportFormat::Json {
                w.write_all(if self.rows == 0 { b"[]\n" } else { b"\n]\n" })?;
            }
            w.flush()?;
        }
        Ok(())
    }
}

/// Rows per page when an export walks an upload's outcomes.
pub const PAGE_ROWS: usize = 500;

impl<W: Write> ExportWriter<W> {
    /// Writes one page of an upload's outcomes and answers where the next
    /// one starts (`None` after the last). The CLI (reading the store) and
    /// HTTP (asking the StoreReader, streaming each page) share this loop:
    /// `cursor = writer.write_page(page(cursor))?` until `None`.
    ///
    /// A redacting writer redacts each row in a session knowing `senders[i]`,
    /// the names row `i`'s conversation has for its customers and agents
    /// ([`Store::sender_names`]); none are needed otherwise.
    pub fn write_page(
        &mut self,
        page: Page<ConversationRow>,
        senders: &[Vec<String>],
    ) -> Result<Option<String>, ExportError> {
        for (i, row) in page.items.into_iter().enumerate() {
            let mut row = ExportRow::from(row);
            if let Some(redaction) = &mut self.redaction {
                redaction.apply(&mut row, senders.get(i).map_or(&[], Vec::as_slice));
            }
            self.write(&row)?;
        }
        Ok(page.next_cursor)
    }
}

/// The response header a redacted export carries (`?redact=true`), so a
/// client knows the server did redact it.
pub const REDACTED_HEADER: &str = "x-powerpulse-redacted";

/// What makes an export shareable: in each row, the conversation id and
/// the summary redacted as the analyzer's transcripts are, in a session that
/// knows the conversation's sender names (a summary made from an unredacted
/// transcript may name the customer or quote a number); the agent replaced
/// by `<AGENT_n>` and an id that held personal data by `<CONVERSATION_n>`,
/// numbered within each upload, so rows still group by agent and stay apart.
pub struct RowRedaction {
    redactor: Redactor,
    /// The upload being numbered, and its agents' numbers.
    upload: Option<Uuid>,
    agents: HashMap<String, usize>,
    conversations: usize,
}

impl RowRedaction {
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            upload: None,
            agents: HashMap::new(),
            conversations: 0,
        }
    }

    pub fn apply(&mut self, row: &mut ExportRow, senders: &[String]) {
        if self.upload != Some(row.upload_id) {
            self.upload = Some(row.upload_id);
            self.agents.clear();
            self.conversations = 0;
        }
        let mut session = self.redactor.session(senders.iter().map(String::as_str));
        if let Cow::Owned(_) = session.redact(&row.conversation_id) {
            self.conversations += 1;
            row.conversation_id = format!("<CONVERSATION_{}>", self.conversations);
        }
        if let Some(summary) = &mut row.summary
            && let Cow::Owned(redacted) = session.redact(summary)
        {
            *summary = redacted;
        }
        if let Some(agent) = &mut row.agent {
            let next = self.agents.len() + 1;
            let n = *self.agents.entry(std::mem::take(agent)).or_insert(next);
            *agent = format!("<AGENT_{n}>");
        }
    }
}

/// Writes every outcome of an upload, page by page, from the store itself
/// (the CLI's export; HTTP's goes through the StoreReader actor).
pub fn write_upload<W: Write>(
    store: &Store,
    upload_id: Uuid,
    writer: &mut ExportWriter<W>,
) -> Result<(), ExportError> {
    let mut cursor = None;
    loop {
        let page = store.conversations(
            upload_id,
            &ConversationFilter::default(),
            cursor.as_deref(),
            PAGE_ROWS,
        )?;
        let senders = if writer.redacts() {
            let ids: Vec<String> = page
                .items
                .iter()
                .map(|r| r.conversation_id.clone())
                .collect();
            store.sender_names(upload_id, &ids)?
        } else {
            Vec::new()
        };
        cursor = writer.write_page(page, &senders)?;
        if cursor.is_none() {
            return Ok(());
        }
    }
}

impl ExportWriter<Vec<u8>> {
    /// Takes what has been written so far (for streaming a response in
    /// chunks); the document goes on where it left off.
    pub fn drain(&mut self) -> Result<Vec<u8>, ExportError> {
        if let Some(w) = self.csv.as_mut() {
            if self.rows == 0 {
                return Ok(Vec::new());
            }
            // The header is out: carry on with a writer that writes none.
            let fresh = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            let done = std::mem::replace(w, fresh);
            return done
                .into_inner()
                .map_err(|e| ExportError::Io(e.into_error()));
        }
        Ok(self.out.as_mut().map(std::mem::take).unwrap_or_default())
    }

    /// Closes the document and returns its last bytes.
    pub fn finish_into_bytes(mut self) -> Result<Vec<u8>, ExportError> {
        self.close()?;
        self.drain()
    }
}

/// An [`ExportRow`] as a CSV line: the same columns, its text fields
/// neutralised. Only text that came from outside is touched (the
/// conversation id from the upload, the summary from the analyzer, the
/// analyzer's name); the numbers, labels and statuses the program writes
/// itself (a sentiment score of -0.5) cannot hold a formula and stay as they are.
#[derive(Serialize)]
struct CsvRow<'a> {
    upload_id: Uuid,
    conversation_id: Cow<'a, str>,
    messages: u32,
    customer_messages: u32,
    sentiment: Option<&'static str>,
    sentiment_score: Option<f64>,
    satisfaction_score: Option<u8>,
    satisfaction: Option<&'static str>,
    resolved: Option<bool>,
    summary: Option<Cow<'a, str>>,
    analyzer: Option<Cow<'a, str>>,
    status: &'static str,
    agent: Option<Cow<'a, str>>,
    topic: Option<Cow<'a, str>>,
    language: Option<&'a str>,
}

impl<'a> From<&'a ExportRow> for CsvRow<'a> {
    fn from(row: &'a ExportRow) -> Self {
        CsvRow {
            upload_id: row.upload_id,
            conversation_id: neutralize_formula(&row.conversation_id),
            messages: row.messages,
            customer_messages: row.customer_messages,
            sentiment: row.sentiment.map(SentimentLabel::as_str),
            sentiment_score: row.sentiment_score,
            satisfaction_score: row.satisfaction_score,
            satisfaction: row.satisfaction.map(SatisfactionLabel::as_str),
            resolved: row.resolved,
            summary: row.summary.as_deref().map(neutralize_formula),
            analyzer: row.analyzer.as_deref().map(neutralize_formula),
            status: row.status.as_str(),
            agent: row.agent.as_deref().map(neutralize_formula),
            topic: row.topic.as_deref().map(neutralize_formula),
            language: row.language.as_deref(),
        }
    }
}

/// A text cell a spreadsheet would not run: one starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return (OWASP's list for CSV injection) gets
/// a leading `'`, which spreadsheets take as "this is text" and hide.
///
/// A cell that is just a number (`-42`, `+3.5`) is left alone: it evaluates
/// to itself, so a negative conversation id stays readable.
pub fn neutralize_formula(cell: &str) -> Cow<'_, str> {
    let risky = matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    if risky && !is_plain_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `[+-]digits[.digits]`: a number with nothing a formula could hide in.
fn is_plain_number(cell: &str) -> bool {
    let unsigned = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// Column names, in order; what the CSV header says.
pub const CSV_HEADER: [&str; 15] = [
    "upload_id",
    "conversation_id",
    "messages",
    "customer_messages",
    "sentiment",
    "sentiment_score",
    "satisfaction_score",
    "satisfaction",
    "resolved",
    "summary",
    "analyzer",
    "status",
    "agent",
    "topic",
    "language",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::store::ConversationRecord;

    fn row(id: &str, analysed: bool) -> ConversationRow {
        ConversationRow {
            upload_id: Uuid::nil(),
            conversation_id: id.into(),
            record: ConversationRecord {
                status: if analysed {
                    ConversationStatus::Analyzed
                } else {
                    ConversationStatus::Failed
                },
                messages: 3,
                customer_messages: 2,
                autoresponses: 1,
                started_ms: None,
                failure: None,
                error: None,
                usage: Default::default(),
                agent: Some("Sita".into()),
                language: Some("ne".into()),
                endpoint: None,
            },
            analysis: analysed.then(|| Analysis {
                sentiment: Sentiment {
                    label: SentimentLabel::Negative,
                    score: -0.5,
                },
                satisfaction: Satisfaction {
                    score: 2,
                    label: SatisfactionLabel::Dissatisfied,
                },
                resolved: Some(false),
                summary: "Billing, \"wrong\" amount".into(),
                analyzer: "lexicon".into(),
                model: "m".into(),
                topic: Some("billing".into()),
            }),
        }
    }

    fn export(format: ExportFormat, rows: &[ConversationRow]) -> String {
        let mut out = Vec::new();
        let mut w = ExportWriter::new(format, &mut out);
        for r in rows {
            w.write(&ExportRow::from(r.clone())).unwrap();
        }
        assert_eq!(w.finish().unwrap(), rows.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_has_the_documented_columns_and_quotes() {
        let text = export(ExportFormat::Csv, &[row("a", true), row("b", false)]);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEADER);
        let records: Vec<_> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(&records[0][9], "Billing, \"wrong\" amount");
        assert_eq!(&records[1][4], "");
        assert_eq!(&records[1][11], "failed");
        assert_eq!(
            (&records[0][12], &records[0][13], &records[0][14]),
            ("Sita", "billing", "ne")
        );
        assert_eq!(
            (&records[1][12], &records[1][13]),
            ("Sita", ""),
            "no analysis, no topic"
        );
        let empty = export(ExportFormat::Csv, &[]);
        assert_eq!(empty.trim(), CSV_HEADER.join(","));
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for (cell, expected) in [
            (
                "=HYPERLINK(\"http://evil\",\"x\")",
                "'=HYPERLINK(\"http://evil\",\"x\")",
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(1+1)*cmd", "'@SUM(1+1)*cmd"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("-1e5", "'-1e5"),
            ("+", "'+"),
            // Plain numbers and ordinary text pass unchanged.
            ("-42", "-42"),
            ("+3.5", "+3.5"),
            ("conv-1", "conv-1"),
            ("a=b", "a=b"),
            (" =1", " =1"),
            ("", ""),
            ("'=already", "'=already"),
        ] {
            assert_eq!(neutralize_formula(cell), expected, "{cell:?}");
        }
        assert!(matches!(neutralize_formula("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn only_csv_text_fields_are_neutralised() {
        let mut hostile = row("=HYPERLINK(\"http://x\")", true);
        if let Some(a) = hostile.analysis.as_mut() {
            a.summary = "@SUM(A1:A9)".into();
            a.analyzer = "+cmd".into();
            a.topic = Some("=topic".into());
        }
        hostile.record.agent = Some("-agent".into());
        let text = export(ExportFormat::Csv, &[hostile.clone()]);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[1], "'=HYPERLINK(\"http://x\")");
        assert_eq!(&rec[9], "'@SUM(A1:A9)");
        assert_eq!(&rec[10], "'+cmd");
        assert_eq!((&rec[12], &rec[13]), ("'-agent", "'=topic"));
        // A negative score is a number the program wrote: as it is.
        assert_eq!(&rec[5], "-0.5");

        for format in [ExportFormat::Json, ExportFormat::Jsonl] {
            let text = export(format, &[hostile.clone()]);
            let v: serde_json::Value =
                serde_json::from_str(text.trim().trim_start_matches('[').trim_end_matches(']'))
                    .unwrap();
            assert_eq!(
                v["conversation_id"], "=HYPERLINK(\"http://x\")",
                "{format:?}"
            );
            assert_eq!(v["summary"], "@SUM(A1:A9)", "{format:?}");
            assert_eq!(v["analyzer"], "+cmd", "{format:?}");
            assert_eq!(v["agent"], "-agent", "{format:?}");
            assert_eq!(v["topic"], "=topic", "{format:?}");
            assert_eq!(v["language"], "ne", "{format:?}");
            assert_eq!(v["sentiment_score"], -0.5, "{format:?}");
        }
    }

    #[test]
    fn chunked_output_equals_the_whole() {
        for format in [ExportFormat::Csv, ExportFormat::Json, ExportFormat::Jsonl] {
            let rows = [row("a", true), row("b", false), row("c", true)];
            let mut w = ExportWriter::new(format, Vec::new());
            let mut chunks = Vec::new();
            for r in &rows {
                w.write(&ExportRow::from(r.clone())).unwrap();
                chunks.extend(w.drain().unwrap());
            }
            chunks.extend(w.finish_into_bytes().unwrap());
            assert_eq!(
                String::from_utf8(chunks).unwrap(),
                export(format, &rows),
                "{format:?}"
            );
        }
    }

    #[test]
    fn a_redacted_row_hides_names_numbers_and_agents_numbered_per_upload() {
        let redactor = Redactor::new(&crate::config::PrivacySettings::default()).unwrap();
        let mut w = ExportWriter::new(ExportFormat::Jsonl, Vec::new()).redacting(redactor);
        assert!(w.redacts());
        let with = |id: &str, upload: u128, agent: &str| {
            let mut r = row(id, true);
            r.upload_id = Uuid::from_u128(upload);
            r.record.agent = Some(agent.into());
            if let Some(a) = r.analysis.as_mut() {
                a.summary = "Sita reports no power, call 9841234567; Ram Thapa helped".into();
            }
            r
        };
        let senders = vec![vec!["Sita Sharma".to_string(), "Ram Thapa".to_string()]; 2];
        let page = |items| Page {
            items,
            next_cursor: None,
        };
        w.write_page(
            page(vec![
                with("9841234567", 1, "Ram Thapa"),
                with("c-2", 1, "Hari"),
            ]),
            &senders,
        )
        .unwrap();
        w.write_page(page(vec![with("c-3", 2, "Hari")]), &senders)
            .unwrap();
        let text = String::from_utf8(w.finish_into_bytes().unwrap()).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows[0]["conversation_id"], "<CONVERSATION_1>");
        assert_eq!(
            rows[0]["summary"],
            "<NAME_1> reports no power, call <PHONE_1>; <NAME_2> helped"
        );
        assert_eq!(rows[1]["conversation_id"], "c-2");
        assert_eq!(
            [&rows[0]["agent"], &rows[1]["agent"], &rows[2]["agent"]],
            ["<AGENT_1>", "<AGENT_2>", "<AGENT_1>"],
            "numbered within each upload"
        );
        // Rows parse back (a redacted export read through a server).
        let back: ExportRow = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back.status, ConversationStatus::Analyzed);
    }

    #[test]
    fn json_and_jsonl_parse_back() {
        let rows = [row("a", true), row("b", true)];
        let v: serde_json::Value =
            serde_json::from_str(&export(ExportFormat::Json, &rows)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["sentiment"], "negative");
        let empty: serde_json::Value =
            serde_json::from_str(&export(ExportFormat::Json, &[])).unwrap();
        assert_eq!(empty, serde_json::json!([]));
        let lines = export(ExportFormat::Jsonl, &rows);
        assert_eq!(lines.lines().count(), 2);
        for l in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["satisfaction_score"], 2);
        }
    }
}
