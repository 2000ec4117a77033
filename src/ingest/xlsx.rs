//! XLSX: the first worksheet, first row as the header (via calamine, which
//! reads the sheet whole: a zip cannot be streamed row by row cheaply). The
//! cells stay in calamine's range; each row becomes text only when read.

use std::collections::VecDeque;
use std::io::BufReader;
use std::path::Path;

use calamine::{Data, Range, Reader, Xlsx};

use super::columns::{Column, ColumnMap};
use super::{IngestError, IngestOptions, RawRow, Row, RowBuilder, Source};

pub(super) struct XlsxSource {
    range: Range<Data>,
    /// Index into `range` of the next row to read.
    next: usize,
    /// Spreadsheet number (1-based) of the range's first row.
    first_row: u64,
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
        let first_row = range.start().map_or(0, |(r, _)| u64::from(r)) + 1;
        let Some(header_ix) = range.rows().position(|cells| !is_blank(cells)) else {
            return Err(IngestError::Empty {
                file: file.to_string(),
            });
        };
        let headers: Vec<String> = range
            .rows()
            .nth(header_ix)
            .unwrap_or_default()
            .iter()
            .map(|h| cell_text(h).unwrap_or_default().trim().to_string())
            .collect();
        let map = builder.header_row(file, &headers, &opts.columns)?;
        Ok(Self {
            range,
            next: header_ix + 1,
            first_row,
            map,
        })
    }
}

fn is_blank_cell(cell: &Data) -> bool {
    matches!(cell, Data::Empty | Data::Error(_))
}

fn is_blank(cells: &[Data]) -> bool {
    cells.iter().all(is_blank_cell)
}

impl Source for XlsxSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        // Blank rows are skipped silently, as a spreadsheet user expects.
        let width = self.range.width();
        let row = loop {
            if self.next >= self.range.height() {
                return Ok(false);
            }
            let row = self.next;
            self.next += 1;
            if !(0..width).all(|c| self.range.get((row, c)).is_none_or(is_blank_cell)) {
                break row;
            }
        };
        let line = self.first_row + row as u64;
        // Every cell under a mapped header exists, if only empty: an empty
        // one is reported as empty, not as missing.
        let text: [Option<String>; 5] = Column::ALL.map(|c| {
            self.map.get(c).map(|ix| {
                self.range
                    .get((row, ix))
                    .and_then(cell_text)
                    .unwrap_or_default()
            })
        });
        let [id, sender, message, timestamp, sender_name] = &text;
        builder.build(
            RawRow {
                line,
                conversation_id: id.as_deref(),
                sender: sender.as_deref(),
                text: message.as_deref(),
                timestamp: timestamp.as_deref(),
                sender_name: sender_name.as_deref(),
            },
            out,
        );
        Ok(true)
    }
}
