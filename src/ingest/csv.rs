//! CSV (and TSV): delimiter sniffed from the header line, quoted fields
//! with embedded newlines, one reused record buffer.
//!
//! The role column is chosen by its values as well as its header
//! ([`choose_roles`]): the first rows are read ahead as a sample, then
//! handed on before the rest. A table with sender names but no role column
//! gets its roles from the names (a first pass over the file, see `roles`).

use std::collections::VecDeque;
use std::io::BufReader;

use super::columns::{Column, ColumnMap, Values, choose_roles};
use super::text::TextReader;
use super::{IngestError, IngestOptions, RawRow, RolesFrom, Row, RowBuilder, Source};

/// Rows (and bytes) read ahead to choose the role column.
const SAMPLE_ROWS: usize = 1_000;
const SAMPLE_BYTES: usize = 4 * 1024 * 1024;

pub(super) struct CsvSource {
    file: String,
    reader: csv::Reader<BufReader<TextReader>>,
    record: csv::ByteRecord,
    map: ColumnMap,
    /// The rows read ahead, handed on first.
    sample: VecDeque<csv::ByteRecord>,
}

/// The delimiter among `,` `;` and tab that occurs most often outside quotes
/// in `line`; a comma when none does.
pub(super) fn sniff_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let (best, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i)))
        .map(|(i, n)| (candidates[i], *n))
        .unwrap_or((b',', 0));
    if n == 0 { b',' } else { best }
}

impl CsvSource {
    /// `header` is the file's first line, already decoded, for sniffing.
    pub(super) fn new(
        text: TextReader,
        header: &str,
        file: &str,
        opts: &IngestOptions,
        builder: &mut RowBuilder,
    ) -> Result<Self, IngestError> {
        let buffered = BufReader::with_capacity(256 * 1024, text);
        let delimiter = sniff_delimiter(header.as_bytes());
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(buffered);
        let headers: Vec<String> = reader
            .byte_headers()
            .map_err(|e| csv_error(file, e))?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .collect();
        let mut map = ColumnMap::find(&headers, &opts.columns);
        for column in [Column::ConversationId, Column::Text] {
            if map.get(column).is_none() {
                return Err(IngestError::missing_column(file, column, &headers));
            }
        }
        let mut sample = VecDeque::new();
        let mut sampled_bytes = 0;
        while sample.len() < SAMPLE_ROWS && sampled_bytes < SAMPLE_BYTES {
            let mut record = csv::ByteRecord::new();
            if !reader
                .read_byte_record(&mut record)
                .map_err(|e| csv_error(file, e))?
            {
                break;
            }
            sampled_bytes += record.as_slice().len();
            sample.push_back(record);
        }
        let values = |ix: usize| {
            let mut v = Values::default();
            for field in sample.iter().filter_map(|r| r.get(ix)) {
                let Ok(text) = std::str::from_utf8(field) else {
                    continue;
                };
                if text.trim().is_empty() {
                    continue;
                }
                v.filled += 1;
                v.roles += usize::from(super::normalize_role(text).is_some());
            }
            v
        };
        let choice = choose_roles(&headers, &opts.columns, &map, values);
        map.sender = choice.sender;
        map.sender_name = choice.sender_name;
        if map.sender.is_none() && map.sender_name.is_none() {
            return Err(IngestError::missing_column(file, Column::Sender, &headers));
        }
        builder.name_fields(&headers, &map);
        Ok(Self {
            file: file.to_string(),
            reader,
            record: csv::ByteRecord::new(),
            map,
            sample,
        })
    }
}

fn csv_error(file: &str, e: csv::Error) -> IngestError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => IngestError::Io {
            file: file.to_string(),
            source,
        },
        other => IngestError::Malformed {
            file: file.to_string(),
            line,
            message: format!("{other:?}"),
        },
    }
}

impl Source for CsvSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        if let Some(record) = self.sample.pop_front() {
            self.record = record;
        } else if !self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| csv_error(&self.file, e))?
        {
            return Ok(false);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        if self
            .record
            .iter()
            .all(|f| f.iter().all(u8::is_ascii_whitespace))
        {
            return Ok(true);
        }
        // One UTF-8 check for the whole record (nearly always valid); one
        // that fails is checked field by field, so that only the fields read
        // can refuse it, and the message names the field.
        match csv::StringRecord::from_byte_record(std::mem::take(&mut self.record)) {
            Ok(text) => {
                let field = |column: Column| self.map.get(column).and_then(|ix| text.get(ix));
                let raw = RawRow {
                    line,
                    role: None,
                    conversation_id: field(Column::ConversationId),
                    sender: field(Column::Sender),
                    text: field(Column::Text),
                    timestamp: field(Column::Timestamp),
                    sender_name: field(Column::SenderName),
                };
                builder.build(raw, out);
                self.record = text.into_byte_record();
            }
            Err(e) => {
                self.record = e.into_byte_record();
                self.build_field_by_field(line, builder, out)?;
            }
        }
        Ok(true)
    }

    fn roles_from(&self) -> RolesFrom {
        if self.map.sender.is_some() {
            RolesFrom::Field
        } else {
            RolesFrom::Names
        }
    }
}

impl CsvSource {
    fn build_field_by_field(
        &self,
        line: u64,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<(), IngestError> {
        let field = |column: Column| -> Result<Option<&str>, IngestError> {
            let Some(bytes) = self.map.get(column).and_then(|ix| self.record.get(ix)) else {
                return Ok(None);
            };
            std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|e| IngestError::Malformed {
                    file: self.file.clone(),
                    line,
                    message: format!(
                        "invalid UTF-8 in the {} field (byte {}); save the export as UTF-8 or UTF-16",
                        column.label(),
                        e.valid_up_to()
                    ),
                })
        };
        let raw = RawRow {
            line,
            role: None,
            conversation_id: field(Column::ConversationId)?,
            sender: field(Column::Sender)?,
            text: field(Column::Text)?,
            timestamp: field(Column::Timestamp)?,
            sender_name: field(Column::SenderName)?,
        };
        builder.build(raw, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_sniffing_ignores_quoted_separators() {
        assert_eq!(sniff_delimiter(b"a,b,c"), b',');
        assert_eq!(sniff_delimiter(b"a;b;c"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"\"a,b,c,d\";x;y"), b';');
        assert_eq!(sniff_delimiter(b"single"), b',');
    }
}
