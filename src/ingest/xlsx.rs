//! XLSX: the first worksheet, first row as the header (via calamine, which
//! reads the sheet whole: a zip cannot be streamed row by row cheaply).

use std::collections::VecDeque;
use std::io::BufReader;
use std::path::Path;

use calamine::{Data, Reader, Xlsx};

use super::columns::{Column, ColumnMap};
use super::{IngestError, IngestOptions, RawRow, Row, RowBuilder, Source};

pub(super) struct XlsxSource {
    rows: std::vec::IntoIter<(u64, Vec<Option<String>>)>,
    map: ColumnMap,
}

/// A cell as text: integers without ".0", dates as ISO 8601.
fn cell_text(cell: &Data) -> Option<String> {
    match cell {
        Data::Empty | Data::Error(_) => None,
        Data::String(s) => Some(s.clone()),
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(format!("{}", *f as i64)),
        Data::Float(f) => Some(f.to_string()),
        Data::Bool(b) => Some(b.to_string()),
        Data::DateTime(d) => d.as_datetime().map(|t| {
            t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
    }
}

impl XlsxSource {
    pub(super) fn open(
        path: &Path,
        file: &str,
        opts: &IngestOptions,
        builder: &mut RowBuilder,
    ) -> Result<Self, IngestError> {
        let xlsx_error = |message: String| IngestError::Xlsx {
            file: file.to_string(),
            message,
        };
        let handle = std::fs::File::open(path).map_err(|source| IngestError::Io {
            file: file.to_string(),
            source,
        })?;
        let mut book: Xlsx<_> =
            Xlsx::new(BufReader::new(handle)).map_err(|e| xlsx_error(e.to_string()))?;
        let range = book
            .worksheet_range_at(0)
            .ok_or_else(|| xlsx_error("the workbook has no worksheet".into()))?
            .map_err(|e| xlsx_error(e.to_string()))?;
        let first_row = range.start().map_or(0, |(r, _)| r as u64);
        let mut rows = range
            .rows()
            .enumerate()
            .map(|(i, cells)| {
                // Spreadsheet rows are numbered from 1.
                let number = first_row + i as u64 + 1;
                (number, cells.iter().map(cell_text).collect::<Vec<_>>())
            })
            .filter(|(_, cells)| cells.iter().any(Option::is_some));
        let Some((_, header)) = rows.next() else {
            return Err(IngestError::Empty {
                file: file.to_string(),
            });
        };
        let headers: Vec<String> = header
            .into_iter()
            .map(|h| h.unwrap_or_default().trim().to_string())
            .collect();
        let map = builder.header_row(file, &headers, &opts.columns)?;
        Ok(Self {
            rows: rows.collect::<Vec<_>>().into_iter(),
            map,
        })
    }
}

impl Source for XlsxSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        let Some((line, cells)) = self.rows.next() else {
            return Ok(false);
        };
        let get = |c: Column| {
            self.map
                .get(c)
                .and_then(|ix| cells.get(ix))
                .and_then(|v| v.as_deref())
        };
        builder.build(
            RawRow {
                line,
                conversation_id: get(Column::ConversationId),
                sender: get(Column::Sender),
                text: get(Column::Text),
                timestamp: get(Column::Timestamp),
                sender_name: get(Column::SenderName),
            },
            out,
        );
        Ok(true)
    }
}
