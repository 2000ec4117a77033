//! WhatsApp's "Export chat" text: one conversation per chat file.
//!
//! Android writes `18/03/2022, 14:56 - Name: text`, iOS
//! `[18/03/2022, 14:56:12] Name: text` (CRLF line ends, U+200E marks before
//! its own lines and attachments); the date follows the phone's locale (day
//! or month first, two- or four-digit years, `/`, `.` or `-`), the time its
//! 12- or 24-hour clock. A line that does not start so continues the
//! message before it.
//!
//! A day-first or month-first reading is decided from the whole file, by a
//! first look at every line's date: a day over 12 settles it; a file where
//! every date reads both ways takes the reading under which its messages
//! stay in time order. The app's own lines (the encryption notice, joins,
//! subject changes, missed calls), media without a caption and deleted
//! messages are dropped and counted; an "edited" mark is cut off.
//!
//! Senders are named, never typed: who speaks for the business is decided
//! from the names across the upload (see `roles`). A chat file named
//! "WhatsApp Chat with Ram Sharma" is a chat with Ram Sharma: the customer,
//! when the business exported it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::text::{self, TextReader};
use super::{Dropped, Format, Hint, IngestError, RawRow, RolesFrom, Row, RowBuilder, Source};

/// Whether a file that starts with `head` is a WhatsApp chat: its first
/// non-empty line is a message line.
pub(super) fn looks_like(head: &str) -> bool {
    head.lines()
        .map(|l| l.trim_start_matches(['\u{feff}', '\u{200e}']).trim_end())
        .find(|l| !l.is_empty())
        .is_some_and(|l| header(l).is_some())
}

/// How the file writes its dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateOrder {
    DayMonthYear,
    MonthDayYear,
    YearMonthDay,
}

/// One message line's start, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// The date's three numbers in file order, and the digits of the third.
    a: u32,
    b: u32,
    c: u32,
    a_digits: usize,
    c_digits: usize,
    hour: u32,
    minute: u32,
    second: u32,
    /// `Some(true)` for PM, `Some(false)` for AM, `None` on a 24-hour clock.
    pm: Option<bool>,
}

impl Stamp {
    /// The date and time under `order`, as `(y, m, d, h, min, s)`.
    fn read(&self, order: DateOrder) -> Option<(i32, u32, u32, u32, u32, u32)> {
        let (year, month, day, year_digits) = match order {
            DateOrder::YearMonthDay => (self.a, self.b, self.c, self.a_digits),
            DateOrder::DayMonthYear => (self.c, self.b, self.a, self.c_digits),
            DateOrder::MonthDayYear => (self.c, self.a, self.b, self.c_digits),
        };
        let year = match year_digits {
            2 => 2000 + year as i32,
            4 => year as i32,
            _ => return None,
        };
        let hour = match self.pm {
            None if self.hour < 24 => self.hour,
            Some(pm) if (1..=12).contains(&self.hour) => self.hour % 12 + if pm { 12 } else { 0 },
            _ => return None,
        };
        if self.minute > 59 || self.second > 60 {
            return None;
        }
        chrono::NaiveDate::from_ymd_opt(year, month, day)?;
        Some((year, month, day, hour, self.minute, self.second))
    }

    /// Minutes since the year 0 under `order` (for the time-order check).
    fn minutes(&self, order: DateOrder) -> Option<i64> {
        let (y, m, d, h, min, _) = self.read(order)?;
        let date = chrono::NaiveDate::from_ymd_opt(y, m, d)?;
        Some(i64::from(date.num_days_from_ce()) * 1440 + i64::from(h) * 60 + i64::from(min))
    }

    /// The canonical `YYYY-MM-DDTHH:MM:SS` (a local time: the export has no
    /// zone), written digit by digit (`format!` was a tenth of a parse).
    fn canonical(&self, order: DateOrder) -> Option<String> {
        let (y, m, d, h, min, s) = self.read(order)?;
        let mut out = String::with_capacity(19);
        let fields = [
            (y.unsigned_abs(), 4, '-'),
            (m, 2, '-'),
            (d, 2, 'T'),
            (h, 2, ':'),
            (min, 2, ':'),
            (s, 2, ' '),
        ];
        for (n, width, after) in fields {
            for p in (0..width).rev() {
                out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
            }
            if after != ' ' {
                out.push(after);
            }
        }
        Some(out)
    }
}

use chrono::Datelike;

/// A message line's start and the rest of the line: an optional U+200E
/// and `[`, the date (three numbers split by `/`, `.` or `-`), an optional
/// comma, a space, the time (`H:MM`, seconds optional, `.` allowed for
/// `:`), an optional AM/PM mark (`PM`, `pm`, `p.m.`, after a space, a
/// no-break space or none), then `] ` or ` - ` (or an en dash). Read by
/// hand: a regex with captures was two thirds of a parse.
fn header(line: &str) -> Option<(Stamp, &str)> {
    let mut at = Cursor {
        s: line.strip_prefix('\u{200e}').unwrap_or(line),
        i: 0,
    };
    let bracketed = at.eat('[');
    let (a, a_digits) = at.number(1, 4)?;
    let sep = at.one_of(&['/', '.', '-'])?;
    let (b, _) = at.number(1, 2)?;
    if !at.eat(sep) {
        return None;
    }
    let (c, c_digits) = at.number(1, 4)?;
    at.eat(',');
    if !at.space() {
        return None;
    }
    let (hour, _) = at.number(1, 2)?;
    at.one_of(&[':', '.'])?;
    let (minute, _) = at.number(2, 2)?;
    let mut second = 0;
    let save = at.i;
    if at.one_of(&[':', '.']).is_some() {
        match at.number(2, 2) {
            Some((s, _)) => second = s,
            None => at.i = save,
        }
    }
    let save = at.i;
    at.space();
    let pm = match at.one_of(&['A', 'a', 'P', 'p']) {
        Some(mark) => {
            at.eat('.');
            at.eat(' ');
            at.one_of(&['M', 'm'])?;
            at.eat('.');
            Some(matches!(mark, 'P' | 'p'))
        }
        None => {
            at.i = save;
            None
        }
    };
    let rest = if bracketed {
        if !at.eat(']') || !at.space() {
            return None;
        }
        at.rest()
    } else {
        if !at.space() || at.one_of(&['-', '–']).is_none() || !at.space() {
            return None;
        }
        at.rest()
    };
    Some((
        Stamp {
            a,
            b,
            c,
            a_digits,
            c_digits,
            hour,
            minute,
            second,
            pm,
        },
        rest,
    ))
}

/// A reading position in a line.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn one_of(&mut self, set: &[char]) -> Option<char> {
        let c = self.peek().filter(|c| set.contains(c))?;
        self.i += c.len_utf8();
        Some(c)
    }

    /// A space, a no-break space or a narrow no-break space.
    fn space(&mut self) -> bool {
        self.one_of(&[' ', '\u{a0}', '\u{202f}', '\t']).is_some()
    }

    /// A number of `min` to `max` ASCII digits, and how many it had.
    fn number(&mut self, min: usize, max: usize) -> Option<(u32, usize)> {
        let digits = self.s.as_bytes()[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits < min || digits > max {
            return None;
        }
        let n = self.s[self.i..self.i + digits].parse().ok()?;
        self.i += digits;
        Some((n, digits))
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
}

/// Evidence about the date order, gathered over the whole file.
#[derive(Debug, Default)]
struct OrderVotes {
    year_first: u64,
    day_first: u64,
    month_first: u64,
    /// Messages earlier than the one before them, under each reading.
    dmy_backwards: u64,
    mdy_backwards: u64,
    last_dmy: Option<i64>,
    last_mdy: Option<i64>,
}

impl OrderVotes {
    fn add(&mut self, s: &Stamp) {
        if s.a_digits == 4 {
            self.year_first += 1;
            return;
        }
        if s.a > 12 {
            self.day_first += 1;
        }
        if s.b > 12 {
            self.month_first += 1;
        }
        for (order, last, backwards) in [
            (
                DateOrder::DayMonthYear,
                &mut self.last_dmy,
                &mut self.dmy_backwards,
            ),
            (
                DateOrder::MonthDayYear,
                &mut self.last_mdy,
                &mut self.mdy_backwards,
            ),
        ] {
            if let Some(now) = s.minutes(order) {
                if last.is_some_and(|l| now < l) {
                    *backwards += 1;
                }
                *last = Some(now);
            }
        }
    }

    fn decide(&self) -> DateOrder {
        if self.year_first > self.day_first + self.month_first {
            DateOrder::YearMonthDay
        } else if self.day_first != self.month_first {
            if self.day_first > self.month_first {
                DateOrder::DayMonthYear
            } else {
                DateOrder::MonthDayYear
            }
        } else if self.mdy_backwards < self.dmy_backwards {
            DateOrder::MonthDayYear
        } else {
            DateOrder::DayMonthYear
        }
    }
}

/// What WhatsApp writes in place of a photo, a voice note, a file…
const MEDIA: &[&str] = &[
    "<media omitted>",
    "<medien ausgeschlossen>",
    "<multimedia omitido>",
    "<médias omis>",
    "image omitted",
    "video omitted",
    "audio omitted",
    "sticker omitted",
    "gif omitted",
    "document omitted",
    "contact card omitted",
    "view once voice message omitted",
    "null",
];

/// A line naming an attached file: iOS `<attached: …>`, Android
/// `IMG-….jpg (file attached)`.
fn is_attachment_line(line: &str) -> bool {
    let t = line.trim().trim_start_matches('\u{200e}');
    (t.starts_with("<attached: ") && t.ends_with('>')) || t.ends_with("(file attached)")
}

/// Media without a caption.
fn is_media(text: &str) -> bool {
    let t = text.trim().trim_start_matches('\u{200e}');
    MEDIA.iter().any(|m| t.eq_ignore_ascii_case(m)) || (!t.contains('\n') && is_attachment_line(t))
}

/// A caption without the attachment line before it.
fn without_attachment(text: &str) -> &str {
    match text.split_once('\n') {
        Some((first, caption)) if is_attachment_line(first) => caption,
        _ => text,
    }
}

fn is_deleted(text: &str) -> bool {
    const DELETED: &[&str] = &[
        "this message was deleted",
        "this message was deleted.",
        "you deleted this message",
        "you deleted this message.",
        "diese nachricht wurde gelöscht.",
        "se eliminó este mensaje.",
    ];
    let t = text.trim();
    DELETED.iter().any(|d| t.eq_ignore_ascii_case(d))
}

/// Words that mark the app's own lines, which have no sender on Android
/// and carry the chat's name on iOS (one search, ASCII case ignored).
fn is_system_text(text: &str) -> bool {
    static SYSTEM: LazyLock<AhoCorasick> = LazyLock::new(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build([
                "messages and calls are end-to-end encrypted",
                "messages to this group are now secured with end-to-end encryption",
                "this business uses a secure service",
                "this chat is with a business account",
                "is a contact",
                "created group",
                "joined using this group's invite link",
                "changed the subject",
                "changed this group's icon",
                "changed the group description",
                "security code with",
                "security code changed",
                "missed voice call",
                "missed video call",
                "turned on disappearing messages",
                "turned off disappearing messages",
                "changed their phone number",
                "you blocked this contact",
                "you unblocked this contact",
                "waiting for this message",
            ])
            .expect("fixed phrases build an automaton")
    });
    SYSTEM.is_match(text)
}

/// The "edited" mark recent versions append.
fn without_edit_mark(text: &str) -> &str {
    text.strip_suffix("<This message was edited>")
        .or_else(|| text.strip_suffix("<Diese Nachricht wurde bearbeitet>"))
        .map_or(text, str::trim_end)
}

/// The chat a file holds, from its name: "WhatsApp Chat with Ram Sharma.txt"
/// is `("Ram Sharma", true)` (named after the other party); any other name
/// is the conversation's id as it is, with no one named.
pub(super) fn chat_name(file_name: &str) -> (String, bool) {
    const PREFIXES: &[&str] = &[
        "WhatsApp Chat with ",
        "WhatsApp Chat - ",
        "WhatsApp Chat mit ",
        "WhatsApp-Chat mit ",
        "Chat de WhatsApp con ",
        "Conversa do WhatsApp com ",
        "Discussion WhatsApp avec ",
    ];
    let stem = Path::new(file_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file_name.to_string());
    for prefix in PREFIXES {
        if let Some(name) = stem.strip_prefix(prefix) {
            let name = name.trim();
            if !name.is_empty() {
                return (name.to_string(), true);
            }
        }
    }
    (stem, false)
}

/// The message being read, until the next message line.
#[derive(Debug)]
struct Pending {
    line: u64,
    timestamp: Option<String>,
    /// `None` for the app's own lines.
    sender: Option<String>,
    text: String,
    /// The text started with U+200E (iOS's mark of its own lines).
    marked: bool,
    /// Bytes beyond `max_field_bytes` were not kept.
    overflow: usize,
}

pub(super) struct WhatsAppSource {
    file: String,
    lines: BufReader<TextReader>,
    buf: Vec<u8>,
    line: u64,
    order: DateOrder,
    conversation: String,
    title: Option<String>,
    hinted: bool,
    pending: Option<Pending>,
    /// Lines before the first message line (a file cut at its start).
    orphan_lines: u64,
    max_field_bytes: usize,
    done: bool,
}

impl WhatsAppSource {
    /// `name` is the chat file's name, as the user knows it (it names the
    /// conversation and, when it says so, the other party).
    pub(super) fn open(
        path: &Path,
        file: &str,
        name: &str,
        max_field_bytes: usize,
    ) -> Result<Self, IngestError> {
        let order = Self::date_order(path, file)?;
        let (conversation, named) = chat_name(name);
        Ok(Self {
            file: file.to_string(),
            lines: BufReader::with_capacity(256 * 1024, Self::text(path, file)?),
            buf: Vec::new(),
            line: 0,
            order,
            title: named.then(|| conversation.clone()),
            conversation,
            hinted: false,
            pending: None,
            orphan_lines: 0,
            max_field_bytes,
            done: false,
        })
    }

    fn text(path: &Path, file: &str) -> Result<TextReader, IngestError> {
        let head = text::head(path, file)?;
        text::decoded(path, &head, file, Format::WhatsApp)
    }

    /// Day or month first, decided from every message line of the file.
    fn date_order(path: &Path, file: &str) -> Result<DateOrder, IngestError> {
        let mut lines = BufReader::with_capacity(256 * 1024, Self::text(path, file)?);
        let mut votes = OrderVotes::default();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = lines
                .read_until(b'\n', &mut buf)
                .map_err(|source| IngestError::Io {
                    file: file.to_string(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            // Only a line's start matters: no need to check all of it.
            let start = &buf[..buf.len().min(64)];
            let start = match std::str::from_utf8(start) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&start[..e.valid_up_to()]).unwrap_or(""),
            };
            let start = start
                .trim_start_matches('\u{feff}')
                .trim_end_matches(['\r', '\n']);
            if let Some((stamp, _)) = header(start) {
                votes.add(&stamp);
            }
        }
        Ok(votes.decide())
    }

    /// Reads the next line into `self.buf`, without its line end; `false` at
    /// the end of the file.
    fn next_line(&mut self) -> Result<bool, IngestError> {
        self.buf.clear();
        let n = self
            .lines
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| IngestError::Io {
                file: self.file.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(true)
    }

    /// Hands the message read so far to the builder (or drops it).
    fn finish(&mut self, builder: &mut RowBuilder, out: &mut VecDeque<Row>) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let text = without_attachment(without_edit_mark(&p.text));
        let Some(sender) = p.sender.as_deref() else {
            return builder.dropped(Dropped::System);
        };
        if is_media(text) {
            return builder.dropped(Dropped::Media);
        }
        if is_deleted(text) {
            return builder.dropped(Dropped::Deleted);
        }
        if p.marked || text.trim().is_empty() {
            return builder.dropped(Dropped::System);
        }
        if p.overflow > 0 {
            out.push_back(Row::Warning(super::Warning::new(
                p.line,
                &format!(
                    "message of {} bytes, over the {}-byte limit (ingest.max_field_bytes); skipped",
                    p.text.len() + p.overflow,
                    self.max_field_bytes
                ),
            )));
            return;
        }
        if p.timestamp.is_none() {
            out.push_back(Row::Warning(super::Warning::new(
                p.line,
                "the date or time of this message is not a real one; kept without a time",
            )));
        }
        builder.build(
            RawRow {
                line: p.line,
                conversation_id: Some(&self.conversation),
                sender: None,
                role: None,
                text: Some(text),
                timestamp: p.timestamp.as_deref(),
                sender_name: Some(sender),
            },
            out,
        );
    }
}

impl Source for WhatsAppSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        if !self.hinted {
            self.hinted = true;
            if let Some(title) = &self.title {
                builder.hint(&self.conversation, Hint::Title(title.clone()));
            }
        }
        if self.done {
            return Ok(false);
        }
        loop {
            if !self.next_line()? {
                self.done = true;
                self.finish(builder, out);
                if self.orphan_lines > 0 {
                    out.push_back(Row::Warning(super::Warning::new(
                        1,
                        &format!(
                            "{} lines before the first message line were skipped (is the file cut at its start?)",
                            self.orphan_lines
                        ),
                    )));
                }
                return Ok(false);
            }
            let line = match std::str::from_utf8(&self.buf) {
                Ok(line) => line,
                Err(e) => {
                    return Err(IngestError::Malformed {
                        file: self.file.clone(),
                        line: self.line,
                        message: format!(
                            "invalid UTF-8 (byte {}); a WhatsApp export is UTF-8",
                            e.valid_up_to()
                        ),
                    });
                }
            };
            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
            let Some((stamp, rest)) = header(line) else {
                match &mut self.pending {
                    Some(p) => {
                        let room = self.max_field_bytes.saturating_sub(p.text.len());
                        if line.len() < room {
                            p.text.push('\n');
                            p.text.push_str(line);
                        } else {
                            p.overflow += line.len() + 1;
                        }
                    }
                    None if line.trim().is_empty() => {}
                    None => self.orphan_lines += 1,
                }
                continue;
            };
            let timestamp = stamp.canonical(self.order);
            let rest = rest.to_string();
            let had_message = self.pending.is_some();
            self.finish(builder, out);
            let (sender, text) = match rest.split_once(": ") {
                Some((name, text)) if !is_system_text(name) && name.chars().count() <= 100 => {
                    (Some(name.trim_start_matches('\u{200e}').to_string()), text)
                }
                _ => (None, rest.as_str()),
            };
            let marked = text.starts_with('\u{200e}');
            let text = text.trim_start_matches('\u{200e}');
            // iOS writes its own lines under the chat's name.
            let sender = sender.filter(|_| !(marked && is_system_text(text)));
            self.pending = Some(Pending {
                line: self.line,
                timestamp,
                sender,
                overflow: text.len().saturating_sub(self.max_field_bytes),
                text: if text.len() <= self.max_field_bytes {
                    text.to_string()
                } else {
                    String::new()
                },
                marked,
            });
            if had_message && !out.is_empty() {
                return Ok(true);
            }
        }
    }

    fn roles_from(&self) -> RolesFrom {
        RolesFrom::Names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn android_and_ios_lines_are_read() {
        let (s, rest) = header("18/03/2022, 14:56 - Ram Sharma: Hello").unwrap();
        assert_eq!(
            s.canonical(DateOrder::DayMonthYear).as_deref(),
            Some("2022-03-18T14:56:00")
        );
        assert_eq!(rest, "Ram Sharma: Hello");
        let (s, rest) = header("[3/18/22, 2:56:12\u{202f}PM] Ram: hi").unwrap();
        assert_eq!(
            s.canonical(DateOrder::MonthDayYear).as_deref(),
            Some("2022-03-18T14:56:12")
        );
        assert_eq!(rest, "Ram: hi");
        let (s, _) = header("\u{200e}[18.03.22, 12:05:00 AM] X: y").unwrap();
        assert_eq!(
            s.canonical(DateOrder::DayMonthYear).as_deref(),
            Some("2022-03-18T00:05:00")
        );
        let (s, _) = header("2022-03-18, 9:05 pm - X: y").unwrap();
        assert_eq!(
            s.canonical(DateOrder::YearMonthDay).as_deref(),
            Some("2022-03-18T21:05:00")
        );
        assert!(header("Just a continuation line").is_none());
        assert!(header("18/03/2022 is when it went out").is_none());
    }

    #[test]
    fn impossible_dates_and_times_have_no_timestamp() {
        let (s, _) = header("31/02/2022, 10:00 - A: b").unwrap();
        assert_eq!(s.canonical(DateOrder::DayMonthYear), None);
        let (s, _) = header("1/2/2022, 13:00 PM - A: b").unwrap();
        assert_eq!(s.canonical(DateOrder::DayMonthYear), None);
    }

    #[test]
    fn the_date_order_comes_from_the_whole_file() {
        let stamps = |lines: &[&str]| {
            let mut v = OrderVotes::default();
            for l in lines {
                v.add(&header(l).unwrap().0);
            }
            v.decide()
        };
        // Only the last line tells: the 13th cannot be a month.
        assert_eq!(
            stamps(&[
                "01/02/2022, 10:00 - A: x",
                "03/04/2022, 10:00 - A: x",
                "13/04/2022, 10:00 - A: x"
            ]),
            DateOrder::DayMonthYear
        );
        assert_eq!(
            stamps(&["01/02/22, 10:00 - A: x", "04/13/22, 10:00 - A: x"]),
            DateOrder::MonthDayYear
        );
        // Every date reads both ways: time order decides (Jan 2 → Jan 3 → Jan 12
        // month-first; Feb 1 → Mar 1 → Dec 1 day-first: both forwards, day first
        // wins a tie). Here only month-first keeps the order.
        assert_eq!(
            stamps(&[
                "01/11/22, 10:00 - A: x",
                "01/12/22, 10:00 - A: x",
                "02/01/22, 10:00 - A: x"
            ]),
            DateOrder::MonthDayYear
        );
    }

    #[test]
    fn chat_names_come_from_the_file_name() {
        assert_eq!(
            chat_name("WhatsApp Chat with Ram Sharma.txt"),
            ("Ram Sharma".into(), true)
        );
        assert_eq!(chat_name("_chat.txt"), ("_chat".into(), false));
        assert_eq!(chat_name("support.txt"), ("support".into(), false));
    }

    #[test]
    fn media_deleted_and_system_lines_are_recognised() {
        assert!(is_media("<Media omitted>"));
        assert!(is_media("image omitted"));
        assert!(is_media(
            "<attached: 00000012-PHOTO-2022-03-18-14-56-12.jpg>"
        ));
        assert!(is_media("IMG-20220318-WA0001.jpg (file attached)"));
        assert!(!is_media("my meter photo was omitted from the bill"));
        assert_eq!(
            without_attachment("IMG-20220318-WA0001.jpg (file attached)\nthe meter"),
            "the meter"
        );
        assert!(is_deleted("This message was deleted"));
        assert!(is_system_text(
            "Messages and calls are end-to-end encrypted. No one outside of this chat can read them."
        ));
        assert!(!is_system_text("my power is off since morning"));
        assert_eq!(without_edit_mark("ok <This message was edited>"), "ok");
    }

    use proptest::prelude::*;

    /// One message of a generated chat: sender, text lines, minutes after
    /// the chat's start.
    fn message() -> impl Strategy<Value = (String, Vec<String>, u32)> {
        (
            "[A-Z][a-z]{1,8}( [A-Z][a-z]{1,8})?",
            proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9 ,.!?]{0,28}[a-zA-Z0-9.!?])?", 1..3),
            0u32..600,
        )
    }

    proptest! {
        /// A chat written in any of WhatsApp's layouts reads back as the
        /// same messages: sender, text (continuation lines joined), time.
        #[test]
        fn any_layout_reads_back(
            messages in proptest::collection::vec(message(), 1..12),
            ios in any::<bool>(),
            month_first in any::<bool>(),
            twelve_hour in any::<bool>(),
            two_digit_year in any::<bool>(),
            day in 13u32..28,
        ) {
            use chrono::{Duration, NaiveDate, Timelike};
            let start = NaiveDate::from_ymd_opt(2024, 3, day).unwrap().and_hms_opt(8, 0, 0).unwrap();
            let mut minutes = 0;
            let mut text = String::new();
            let mut expected = Vec::new();
            for (sender, lines, gap) in &messages {
                minutes += gap;
                let t = start + Duration::minutes(i64::from(minutes));
                let (d, m) = (t.day(), t.month());
                let y = if two_digit_year { format!("{:02}", t.year() % 100) } else { t.year().to_string() };
                let date = if month_first { format!("{m}/{d}/{y}") } else { format!("{d:02}/{m:02}/{y}") };
                let time = if twelve_hour {
                    let (pm, h) = t.hour12();
                    format!("{h}:{:02}{}{}", t.minute(), if ios { ":00\u{202f}" } else { " " }, if pm { "PM" } else { "AM" })
                } else {
                    format!("{:02}:{:02}{}", t.hour(), t.minute(), if ios { ":00" } else { "" })
                };
                let head = if ios { format!("[{date}, {time}] ") } else { format!("{date}, {time} - ") };
                let eol = if ios { "\r\n" } else { "\n" };
                text.push_str(&format!("{head}{sender}: {}{eol}", lines.join(eol)));
                expected.push((
                    sender.clone(),
                    lines.join("\n"),
                    t.format("%Y-%m-%dT%H:%M:00").to_string(),
                ));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("chat.txt");
            std::fs::write(&path, text).unwrap();
            let opts = crate::ingest::IngestOptions {
                format: Some(Format::WhatsApp),
                ..Default::default()
            };
            let got: Vec<(String, String, String)> = crate::ingest::open(&path, &opts)
                .unwrap()
                .filter_map(|r| match r.unwrap() {
                    crate::ingest::Row::Message(m) => Some((
                        m.message.sender_name.unwrap(),
                        m.message.text,
                        m.message.timestamp.unwrap(),
                    )),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn looks_like_a_chat() {
        assert!(looks_like(
            "\u{feff}18/03/2022, 14:56 - Messages and calls are end-to-end encrypted.\n"
        ));
        assert!(looks_like("\u{200e}[18/03/2022, 14:56:12] Ram: hi\r\n"));
        assert!(!looks_like("conversation_id,sender,message\n"));
        assert!(!looks_like("2022-03-18,14:56,hello\n"));
    }
}
