//! XLSX: the first worksheet, its first non-blank row as the header.
//!
//! A workbook is a zip, and zips are small on disk: a 1 MB file can inflate
//! to gigabytes, or declare a sheet of 16,384 × 1,048,576 cells. So nothing
//! is allocated on the file's word:
//!
//! 1. [`check_archive`] inflates every entry once, counting (not keeping)
//!    the bytes: the total, the shared strings (which calamine holds in
//!    memory), the longest run of text or markup (which calamine buffers
//!    whole), and the shared-string count calamine would reserve room for —
//!    each against a limit from `[ingest]`.
//! 2. The sheet is then streamed cell by cell (calamine's cell reader) on a
//!    thread of its own, which owns the workbook (the reader borrows it), and
//!    hands over only the mapped columns of one row at a time. The sheet's
//!    declared size and its real rows, columns and cells are checked as they
//!    come.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use calamine::{DataRef, Reader, Xlsx};

use super::columns::{Column, ColumnMap};
use super::{IngestError, IngestOptions, RawRow, Row, RowBuilder, Source};

/// Rows buffered between the sheet thread and the parser.
const ROW_QUEUE: usize = 256;
/// Shared strings may inflate to this much plus twice the file's size.
const SHARED_STRINGS_BASE: u64 = 64 * 1024 * 1024;
/// The longest run of text or markup allowed, as a multiple of
/// `max_field_bytes` (XML escaping makes text longer than the field).
const RUN_PER_FIELD: u64 = 8;

/// The `[ingest]` limits that apply to a workbook.
#[derive(Debug, Clone, Copy)]
struct Limits {
    rows: u32,
    columns: u32,
    cells: u64,
    inflated: u64,
    run: u64,
}

impl Limits {
    fn of(opts: &IngestOptions) -> Self {
        Self {
            rows: opts.xlsx_max_rows,
            columns: opts.xlsx_max_columns,
            cells: opts.xlsx_max_cells,
            inflated: opts.xlsx_max_inflated_bytes,
            run: (opts.max_field_bytes as u64)
                .saturating_mul(RUN_PER_FIELD)
                .max(1024 * 1024),
        }
    }
}

/// One row as the sheet thread hands it over: its spreadsheet row number and
/// the text of each mapped column (`Some("")` for an empty mapped cell).
struct SheetRow {
    line: u64,
    fields: [Option<String>; 5],
}

pub(super) struct XlsxSource {
    rows: Receiver<Result<SheetRow, IngestError>>,
}

impl XlsxSource {
    pub(super) fn open(
        path: &Path,
        file: &str,
        opts: &IngestOptions,
        builder: &mut RowBuilder,
    ) -> Result<Self, IngestError> {
        let limits = Limits::of(opts);
        check_archive(path, file, &limits)?;
        let (header_tx, header_rx) = sync_channel(1);
        let (map_tx, map_rx) = sync_channel(1);
        let (row_tx, row_rx) = sync_channel(ROW_QUEUE);
        let sheet = Sheet {
            path: path.to_path_buf(),
            file: file.to_string(),
            limits,
        };
        std::thread::Builder::new()
            .name("xlsx-sheet".into())
            .spawn(move || sheet.stream(header_tx, map_rx, row_tx))
            .map_err(|source| IngestError::Io {
                file: file.to_string(),
                source,
            })?;
        let headers = header_rx
            .recv()
            .unwrap_or_else(|_| Err(xlsx_error(file, "the sheet reader stopped unexpectedly")))?;
        // On an error here `map_tx` is dropped, which ends the sheet thread.
        let map = builder.header_row(file, &headers, &opts.columns)?;
        let _ = map_tx.send(map);
        Ok(Self { rows: row_rx })
    }
}

impl Source for XlsxSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        // The thread ends the channel after the last row (or an error).
        let Ok(row) = self.rows.recv() else {
            return Ok(false);
        };
        let row = row?;
        let [id, sender, message, timestamp, sender_name] = &row.fields;
        builder.build(
            RawRow {
                line: row.line,
                role: None,
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

fn xlsx_error(file: &str, message: impl Into<String>) -> IngestError {
    IngestError::Xlsx {
        file: file.to_string(),
        message: message.into(),
    }
}

/// Inflates every entry of the workbook once, counting, and refuses it when
/// it is over a limit. Counts real bytes: a zip's declared sizes can lie.
fn check_archive(path: &Path, file: &str, limits: &Limits) -> Result<(), IngestError> {
    let io = |source| IngestError::Io {
        file: file.to_string(),
        source,
    };
    let handle = File::open(path).map_err(io)?;
    let file_size = handle.metadata().map_err(io)?.len();
    let shared_limit = SHARED_STRINGS_BASE
        .saturating_add(file_size.saturating_mul(2))
        .min(limits.inflated);
    let mut zip = zip::ZipArchive::new(BufReader::new(handle))
        .map_err(|e| xlsx_error(file, e.to_string()))?;
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| xlsx_error(file, e.to_string()))?;
        let name = entry
            .name()
            .map_or_else(|_| format!("entry {i}"), |n| n.into_owned());
        let shared = name.ends_with("sharedStrings.xml");
        let mut scan = Scan::default();
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(xlsx_error(file, format!("{name}: {e}"))),
            };
            scan.feed(&buf[..n]);
            total += n as u64;
            if total > limits.inflated {
                return Err(xlsx_error(
                    file,
                    format!(
                        "the workbook inflates to more than {} bytes (ingest.xlsx_max_inflated_bytes); \
                         is it a zip bomb?",
                        limits.inflated
                    ),
                ));
            }
            if shared && scan.bytes > shared_limit {
                return Err(xlsx_error(
                    file,
                    format!(
                        "its shared strings inflate to more than {shared_limit} bytes, which would \
                         all be held in memory (64 MiB + twice the file's size, at most \
                         ingest.xlsx_max_inflated_bytes)"
                    ),
                ));
            }
            if scan.longest_run > limits.run {
                return Err(xlsx_error(
                    file,
                    format!(
                        "{name} holds a run of more than {} bytes without markup (a cell or tag \
                         far over ingest.max_field_bytes)",
                        limits.run
                    ),
                ));
            }
        }
        if shared
            && let Some(count) = scan.unique_count()
            && count > limits.cells
        {
            return Err(xlsx_error(
                file,
                format!(
                    "its shared strings declare {count} entries, over ingest.xlsx_max_cells = {}",
                    limits.cells
                ),
            ));
        }
    }
    Ok(())
}

/// What [`check_archive`] learns of one entry as it streams by.
#[derive(Default)]
struct Scan {
    bytes: u64,
    /// The current and longest runs of bytes with no `<` or `>`.
    run: u64,
    longest_run: u64,
    /// The entry's first bytes (for the `<sst uniqueCount>` attribute).
    head: Vec<u8>,
}

impl Scan {
    const HEAD: usize = 4096;

    fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.head.len() < Self::HEAD {
            let take = (Self::HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        let mut rest = chunk;
        while let Some(at) = memchr::memchr2(b'<', b'>', rest) {
            self.run += at as u64;
            self.longest_run = self.longest_run.max(self.run);
            self.run = 0;
            rest = &rest[at + 1..];
        }
        self.run += rest.len() as u64;
        self.longest_run = self.longest_run.max(self.run);
    }

    /// `uniqueCount` of the `<sst>` element, which calamine reserves room for.
    fn unique_count(&self) -> Option<u64> {
        let head = String::from_utf8_lossy(&self.head);
        let sst = &head[head.find("<sst")?..];
        let sst = &sst[..sst.find('>').unwrap_or(sst.len())];
        let value = &sst[sst.find("uniqueCount=")? + "uniqueCount=".len()..];
        let value = value.trim_start_matches(['"', '\'']);
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        // More digits than a u64 holds is over any limit.
        Some(digits.parse().unwrap_or(u64::MAX))
    }
}

/// The sheet thread's side: owns the workbook and its cell reader.
struct Sheet {
    path: PathBuf,
    file: String,
    limits: Limits,
}

type HeaderReply = SyncSender<Result<Vec<String>, IngestError>>;
type RowSender = SyncSender<Result<SheetRow, IngestError>>;

/// The cells of the row being read, in column order, as text.
#[derive(Default)]
struct OpenRow {
    index: u32,
    cells: Vec<(u32, String)>,
}

impl Sheet {
    fn error(&self, message: impl Into<String>) -> IngestError {
        xlsx_error(&self.file, message)
    }

    /// Sends the header row, waits for the column map, then sends each row.
    /// Any error goes to whoever is waiting: the header's or the rows' receiver.
    fn stream(self, header: HeaderReply, map: Receiver<ColumnMap>, rows: RowSender) {
        let mut header = Some(header);
        if let Err(e) = self.read(&mut header, &map, &rows) {
            match header.take() {
                Some(h) => {
                    let _ = h.send(Err(e));
                }
                None => {
                    let _ = rows.send(Err(e));
                }
            }
        }
    }

    fn read(
        &self,
        header: &mut Option<HeaderReply>,
        map_rx: &Receiver<ColumnMap>,
        rows: &RowSender,
    ) -> Result<(), IngestError> {
        let handle = File::open(&self.path).map_err(|source| IngestError::Io {
            file: self.file.clone(),
            source,
        })?;
        let mut book: Xlsx<_> =
            Xlsx::new(BufReader::new(handle)).map_err(|e| self.error(e.to_string()))?;
        let name = book
            .sheet_names()
            .into_iter()
            .next()
            .ok_or_else(|| self.error("the workbook has no worksheet"))?;
        let mut cells = book
            .worksheet_cells_reader(&name)
            .map_err(|e| self.error(e.to_string()))?;
        let dims = cells.dimensions();
        let (declared_rows, declared_columns) = (
            u64::from(dims.end.0.saturating_sub(dims.start.0)) + 1,
            u64::from(dims.end.1.saturating_sub(dims.start.1)) + 1,
        );
        if declared_rows > u64::from(self.limits.rows)
            || declared_columns > u64::from(self.limits.columns)
        {
            return Err(self.error(format!(
                "the sheet declares {declared_rows} rows × {declared_columns} columns, over the \
                 limits of {} rows (ingest.xlsx_max_rows) and {} columns (ingest.xlsx_max_columns)",
                self.limits.rows, self.limits.columns
            )));
        }
        let mut map: Option<ColumnMap> = None;
        let mut row = OpenRow::default();
        let mut count = 0u64;
        loop {
            let next = cells.next_cell().map_err(|e| self.error(e.to_string()))?;
            let position = next.as_ref().map(|c| c.get_position());
            // A cell of a later row (or the end) completes the open row.
            if position.is_none_or(|(r, _)| r != row.index) && !row.cells.is_empty() {
                let done = std::mem::take(&mut row);
                match &map {
                    None => {
                        map = Some(self.send_header(done, header, map_rx)?);
                    }
                    Some(map) => {
                        if rows.send(Ok(mapped(done, map))).is_err() {
                            return Ok(()); // the reader was dropped
                        }
                    }
                }
            }
            let Some(cell) = next else { break };
            let (r, c) = cell.get_position();
            row.index = r;
            if r >= self.limits.rows {
                return Err(self.error(format!(
                    "row {} is past the limit of {} rows (ingest.xlsx_max_rows)",
                    u64::from(r) + 1,
                    self.limits.rows
                )));
            }
            if c >= self.limits.columns {
                return Err(self.error(format!(
                    "row {} has a cell in column {}, past the limit of {} columns \
                     (ingest.xlsx_max_columns)",
                    u64::from(r) + 1,
                    u64::from(c) + 1,
                    self.limits.columns
                )));
            }
            let Some(text) = cell_text(cell.get_value()) else {
                continue;
            };
            count += 1;
            if count > self.limits.cells {
                return Err(self.error(format!(
                    "more than {} non-empty cells (ingest.xlsx_max_cells)",
                    self.limits.cells
                )));
            }
            row.cells.push((c, text));
        }
        if map.is_none() {
            return Err(IngestError::Empty {
                file: self.file.clone(),
            });
        }
        Ok(())
    }

    /// Sends the header row and waits for the column map it yields.
    fn send_header(
        &self,
        row: OpenRow,
        header: &mut Option<HeaderReply>,
        map_rx: &Receiver<ColumnMap>,
    ) -> Result<ColumnMap, IngestError> {
        // Columns are bounded by `xlsx_max_columns`, so this is small.
        let width = row
            .cells
            .iter()
            .map(|(c, _)| *c as usize + 1)
            .max()
            .unwrap_or(0);
        let mut names = vec![String::new(); width];
        for (c, text) in row.cells {
            names[c as usize] = text.trim().to_string();
        }
        if let Some(h) = header.take() {
            let _ = h.send(Ok(names));
        }
        // No map: the header was refused (and reported) or the reader dropped.
        map_rx
            .recv()
            .map_err(|_| self.error("the header row was not accepted"))
    }
}

/// The mapped columns of a row. Every cell under a mapped header exists, if
/// only empty: an empty one is reported as empty, not as missing.
fn mapped(row: OpenRow, map: &ColumnMap) -> SheetRow {
    let mut fields: [Option<String>; 5] = Column::ALL.map(|c| map.get(c).map(|_| String::new()));
    for (c, text) in row.cells {
        for (slot, column) in fields.iter_mut().zip(Column::ALL) {
            if map.get(column) == Some(c as usize) {
                *slot = Some(text.clone());
            }
        }
    }
    SheetRow {
        line: u64::from(row.index) + 1,
        fields,
    }
}

/// A cell as text: integers without ".0", dates as ISO 8601; `None` for a
/// blank or error cell (a row of only those is skipped, as a spreadsheet
/// user expects).
fn cell_text(cell: &DataRef<'_>) -> Option<String> {
    match cell {
        DataRef::Empty | DataRef::Error(_) => None,
        DataRef::String(s) => Some(s.clone()),
        DataRef::SharedString(s) => Some(s.to_string()),
        DataRef::Int(i) => Some(i.to_string()),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(format!("{}", *f as i64)),
        DataRef::Float(f) => Some(f.to_string()),
        DataRef::Bool(b) => Some(b.to_string()),
        DataRef::DateTime(d) => d.as_datetime().map(|t| {
            t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Some(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_measured_across_chunks() {
        let mut s = Scan::default();
        s.feed(b"<a>hello");
        s.feed(b" world</a><b x=\"");
        s.feed(b"0123456789012345\"/>");
        assert_eq!(s.bytes, 8 + 16 + 19);
        assert_eq!(s.longest_run, "b x=\"0123456789012345\"/".len() as u64);
    }

    #[test]
    fn unique_count_is_read_from_the_sst_element() {
        let mut s = Scan::default();
        s.feed(br#"<?xml version="1.0"?><sst xmlns="x" count="12" uniqueCount="7"><si>"#);
        assert_eq!(s.unique_count(), Some(7));
        let mut s = Scan::default();
        s.feed(br#"<sst uniqueCount='99999999999999999999999'>"#);
        assert_eq!(s.unique_count(), Some(u64::MAX));
        let mut s = Scan::default();
        s.feed(b"<sst count=\"3\">");
        assert_eq!(s.unique_count(), None);
    }
}
