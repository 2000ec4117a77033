//! Export rows (one per conversation) and their CSV / JSON / JSONL writers.
//! Plain code over [`ConversationRow`]s; the CLI feeds it from the store, the
//! HTTP layer from `StoreReader` pages.

use std::io::Write;

use serde::Serialize;
use uuid::Uuid;

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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRow {
    pub upload_id: Uuid,
    pub conversation_id: String,
    pub messages: u32,
    pub customer_messages: u32,
    pub sentiment: Option<&'static str>,
    pub sentiment_score: Option<f64>,
    pub satisfaction_score: Option<u8>,
    pub satisfaction: Option<&'static str>,
    pub resolved: Option<bool>,
    pub summary: Option<String>,
    pub analyzer: Option<String>,
    pub status: &'static str,
}

impl From<ConversationRow> for ExportRow {
    fn from(row: ConversationRow) -> Self {
        let a = row.analysis;
        ExportRow {
            upload_id: row.upload_id,
            conversation_id: row.conversation_id,
            messages: row.record.messages,
            customer_messages: row.record.customer_messages,
            sentiment: a.as_ref().map(|a| a.sentiment.label.as_str()),
            sentiment_score: a.as_ref().map(|a| a.sentiment.score),
            satisfaction_score: a.as_ref().map(|a| a.satisfaction.score),
            satisfaction: a.as_ref().map(|a| a.satisfaction.label.as_str()),
            resolved: a.as_ref().and_then(|a| a.resolved),
            summary: a.as_ref().map(|a| a.summary.clone()),
            analyzer: a.map(|a| a.analyzer),
            status: row.record.status.as_str(),
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
}

impl<W: Write> ExportWriter<W> {
    pub fn new(format: ExportFormat, out: W) -> Self {
        match format {
            ExportFormat::Csv => Self {
                format,
                csv: Some(csv::Writer::from_writer(out)),
                out: None,
                rows: 0,
            },
            _ => Self {
                format,
                csv: None,
                out: Some(out),
                rows: 0,
            },
        }
    }

    pub fn write(&mut self, row: &ExportRow) -> Result<(), ExportError> {
        match (self.format, &mut self.csv, &mut self.out) {
            (ExportFormat::Csv, Some(w), _) => w.serialize(row)?,
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
    pub fn write_page(
        &mut self,
        page: Page<ConversationRow>,
    ) -> Result<Option<String>, ExportError> {
        for row in page.items {
            self.write(&ExportRow::from(row))?;
        }
        Ok(page.next_cursor)
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
        cursor = writer.write_page(page)?;
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

/// Column names, in order; what the CSV header says.
pub const CSV_HEADER: [&str; 12] = [
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
        let empty = export(ExportFormat::Csv, &[]);
        assert_eq!(empty.trim(), CSV_HEADER.join(","));
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
