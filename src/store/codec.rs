//! The compact binary encoding of what the store keeps per message and per
//! conversation. JSON spent 5.8 bytes of database per byte of input; this
//! spends about 0.3 on messages (see ARCHITECTURE.md, "redb tables").
//!
//! - A **message block** (`messages-v3`, [`encode_blocks`]) holds
//!   consecutive conversations of one parse batch in id order, each a
//!   section of its messages in file order: their row numbers
//!   delta-encoded, role and flags in one byte, the parsed time, the
//!   timestamp and sender name as written, and the text — then
//!   LZ4-compressed together (one conversation's ~500 bytes alone shrink
//!   only to 0.65; 16 KiB of compressed block hold 0.24 of the text), at
//!   gigabytes per second.
//! - A **message chunk** ([`encode_chunk`]) is schema 3's layout: one
//!   conversation's messages of one batch compressed alone, read by the
//!   migration to blocks.
//! - **Records** (`ConversationRecord`, `Analysis`) are fields in a fixed
//!   order behind a version byte; strings are length-prefixed UTF-8, integers
//!   LEB128 varints (signed ones zig-zag), floats little-endian.
//!
//! Decoding never trusts a length: every read is bounds-checked and a short
//! or malformed value is a [`CodecError`], reported as a corrupt record.

use crate::analyze::{FailureKind, LlmUsage};
use crate::model::{
    Analysis, ConversationStatus, Message, Role, Satisfaction, SatisfactionLabel, Sentiment,
    SentimentLabel,
};

use super::ConversationRecord;
use super::stats::{Contribution, Counted, Figures, RowFacts};

/// Why a stored value could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(&'static str);

type Result<T> = std::result::Result<T, CodecError>;

/// Version byte of each encoding, so a later layout can be told apart.
const CHUNK_V1: u8 = 1;
const BLOCK_V1: u8 = 1;
const RECORD_V1: u8 = 1;
/// Version 2 adds the agent and the language after version 1's fields.
const RECORD_V2: u8 = 2;
/// Version 3 adds the LLM endpoint after version 2's.
const RECORD_V3: u8 = 3;
const ANALYSIS_V1: u8 = 1;
/// Version 2 adds the topic after version 1's fields.
const ANALYSIS_V2: u8 = 2;

/// Largest chunk decompressed; a stored chunk claiming more is corrupt.
const MAX_CHUNK_BYTES: usize = 256 * 1024 * 1024;

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
            None => self.byte(0),
        }
    }

    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self.0.split_first().ok_or(CodecError("value cut short"))?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError("varint too long"))
    }

    fn signed(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| CodecError("count out of range"))
    }

    fn str(&mut self) -> Result<&'a str> {
        let len = usize::try_from(self.varint()?).map_err(|_| CodecError("length out of range"))?;
        if len > self.0.len() {
            return Err(CodecError("string cut short"));
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(bytes).map_err(|_| CodecError("string is not UTF-8"))
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(CodecError("bad option tag")),
        }
    }

    fn f64(&mut self) -> Result<f64> {
        if self.0.len() < 8 {
            return Err(CodecError("float cut short"));
        }
        let (bytes, rest) = self.0.split_at(8);
        self.0 = rest;
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(b))
    }

    /// The version byte, when it is one of `known`.
    fn version_of(&mut self, known: &[u8]) -> Result<u8> {
        let v = self.byte()?;
        if known.contains(&v) {
            Ok(v)
        } else {
            Err(CodecError("unknown encoding version"))
        }
    }

    fn version(&mut self, expected: u8) -> Result<()> {
        if self.byte()? == expected {
            Ok(())
        } else {
            Err(CodecError("unknown encoding version"))
        }
    }
}

// Message flags (one byte): role in the low two bits, then presence bits.
const ROLE_MASK: u8 = 0b11;
const AUTORESPONSE: u8 = 1 << 2;
const HAS_TIME: u8 = 1 << 3;
const HAS_TIMESTAMP: u8 = 1 << 4;
const HAS_SENDER_NAME: u8 = 1 << 5;
/// The timestamp is `time_ms` written as `YYYY-MM-DDTHH:MM:SSZ` (most exports
/// write it so): stored as that flag instead of 20 bytes per message.
const CANONICAL_TIMESTAMP: u8 = 1 << 6;

/// `ms` as `YYYY-MM-DDTHH:MM:SSZ`, when it is a whole second of the years
/// 0–9999. Written digit by digit from the day number (the proleptic
/// Gregorian calendar, as chrono's): this runs for every message stored and
/// loaded, where chrono's `format` machinery cost 8 % of a whole run and its
/// date accessors another 5 %.
fn canonical(ms: i64) -> Option<[u8; 20]> {
    if ms % 1000 != 0 {
        return None;
    }
    let secs = ms / 1000;
    let date = date_text(secs.div_euclid(86_400))?;
    let of_day = secs.rem_euclid(86_400);
    let mut out = *b"0000-00-00T00:00:00Z";
    out[..10].copy_from_slice(&date);
    put_digits(&mut out[11..13], of_day / 3600);
    put_digits(&mut out[14..16], of_day / 60 % 60);
    put_digits(&mut out[17..19], of_day % 60);
    Some(out)
}

/// A day counted from 1970-01-01 as `YYYY-MM-DD`, for the years 0–9999.
pub(super) fn date_text(days: i64) -> Option<[u8; 10]> {
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = *b"0000-00-00";
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], month);
    put_digits(&mut out[8..10], day);
    Some(out)
}

/// `value`'s last `out.len()` decimal digits, zero-padded, into `out`.
fn put_digits(out: &mut [u8], value: i64) {
    let mut v = value;
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The (year, month, day) of a day counted from 1970-01-01: Howard
/// Hinnant's `civil_from_days`, in whole 400-year eras (exact for every day
/// an `i64` of milliseconds reaches).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `canonical(ms)` as a string.
fn canonical_string(ms: i64) -> Option<String> {
    canonical(ms).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

fn role_bits(role: Role) -> u8 {
    match role {
        Role::Customer => 0,
        Role::Agent => 1,
        Role::Bot => 2,
    }
}

fn role_of(bits: u8) -> Result<Role> {
    match bits & ROLE_MASK {
        0 => Ok(Role::Customer),
        1 => Ok(Role::Agent),
        2 => Ok(Role::Bot),
        _ => Err(CodecError("bad role")),
    }
}

/// Writes messages as a chunk body: each row number as the delta from the
/// previous one (the first from 0), flags, then the fields the flags announce.
fn encode_messages<'m>(
    body: &mut Writer,
    messages: impl IntoIterator<Item = (u64, &'m Message)>,
) -> u64 {
    let mut previous = 0u64;
    let mut count = 0u64;
    for (seq, m) in messages {
        encode_message(body, seq.wrapping_sub(previous), m);
        previous = seq;
        count += 1;
    }
    count
}

/// One message: its row number's delta, flags, then the flagged fields.
fn encode_message(body: &mut Writer, delta: u64, m: &Message) {
    body.varint(delta);
    let mut flags = role_bits(m.role);
    if m.autoresponse {
        flags |= AUTORESPONSE;
    }
    if m.time_ms.is_some() {
        flags |= HAS_TIME;
    }
    let canonical_timestamp = match (&m.timestamp, m.time_ms) {
        (Some(t), Some(ms)) => canonical(ms).is_some_and(|c| c == t.as_bytes()),
        _ => false,
    };
    if canonical_timestamp {
        flags |= CANONICAL_TIMESTAMP;
    } else if m.timestamp.is_some() {
        flags |= HAS_TIMESTAMP;
    }
    if m.sender_name.is_some() {
        flags |= HAS_SENDER_NAME;
    }
    body.byte(flags);
    if let Some(t) = m.time_ms {
        body.signed(t);
    }
    if let (Some(t), false) = (&m.timestamp, canonical_timestamp) {
        body.str(t);
    }
    if let Some(n) = &m.sender_name {
        body.str(n);
    }
    body.str(&m.text);
}

/// Reads `count` messages written by [`encode_messages`].
fn decode_messages(
    r: &mut Reader<'_>,
    count: u64,
    timestamps: Timestamps,
    mut each: impl FnMut(u64, Message),
) -> Result<()> {
    let mut seq = 0u64;
    for _ in 0..count {
        seq = seq.wrapping_add(r.varint()?);
        let flags = r.byte()?;
        let role = role_of(flags)?;
        let time_ms = if flags & HAS_TIME != 0 {
            Some(r.signed()?)
        } else {
            None
        };
        let timestamp = if flags & HAS_TIMESTAMP != 0 {
            let text = r.str()?;
            (timestamps == Timestamps::Text).then(|| text.to_string())
        } else if flags & CANONICAL_TIMESTAMP != 0 {
            let ms = time_ms.ok_or(CodecError("canonical timestamp without a time"))?;
            match timestamps {
                Timestamps::Text => Some(
                    canonical_string(ms).ok_or(CodecError("canonical timestamp out of range"))?,
                ),
                Timestamps::TimeOnly => None,
            }
        } else {
            None
        };
        let sender_name = if flags & HAS_SENDER_NAME != 0 {
            Some(r.str()?.to_string())
        } else {
            None
        };
        let text = r.str()?.to_string();
        each(
            seq,
            Message {
                role,
                text,
                timestamp,
                time_ms,
                sender_name,
                autoresponse: flags & AUTORESPONSE != 0,
            },
        );
    }
    Ok(())
}

/// Decompresses an LZ4 body (size-prepended), refusing a claimed size above
/// [`MAX_CHUNK_BYTES`] before allocating it.
fn decompress(bytes: &[u8]) -> Result<Vec<u8>> {
    let claimed = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(CodecError("chunk cut short"))?;
    if claimed > MAX_CHUNK_BYTES {
        return Err(CodecError("chunk too large"));
    }
    lz4_flex::decompress_size_prepended(bytes).map_err(|_| CodecError("chunk does not decompress"))
}

/// Encodes one conversation's messages of one batch: `(row number, message)`
/// in increasing row order. Schema 3's layout (`messages-v2`), written now
/// only by the migration from schema 1 and by tests building old files.
pub fn encode_chunk<'m>(messages: impl IntoIterator<Item = (u64, &'m Message)>) -> Vec<u8> {
    let mut body = Writer(Vec::with_capacity(256));
    let count = encode_messages(&mut body, messages);
    let mut w = Writer(Vec::with_capacity(body.0.len() / 2 + 16));
    w.byte(CHUNK_V1);
    w.varint(count);
    w.0.extend_from_slice(&lz4_flex::compress_prepend_size(&body.0));
    w.0
}

/// Decodes a chunk into `(row number, message)` pairs, calling `each` per message.
pub fn decode_chunk(bytes: &[u8], each: impl FnMut(u64, Message)) -> Result<()> {
    let mut r = Reader(bytes);
    r.version(CHUNK_V1)?;
    let count = r.varint()?;
    let body = decompress(r.0)?;
    decode_messages(&mut Reader(&body), count, Timestamps::Text, each)
}

// ---- message blocks (`messages-v3`) ------------------------------------------

/// What a block aims at with its key: one leaf of four 4 KiB pages. redb
/// allocates leaves in power-of-two pages, so a value just above a size
/// would waste up to half of the next; and LZ4 keeps 0.24 of chat text in
/// blocks this size, 0.4 in blocks of one page (measured on the sample
/// export). A lookup decompresses one block per run, ~64 KiB.
const BLOCK_BYTES: usize = 16 * 1024;
/// What a leaf spends besides the key and the value (header, offsets,
/// the key tuple's length prefixes), with margin.
const LEAF_OVERHEAD: usize = 96;
/// A conversation's messages of one batch are cut into sections of about
/// this many raw bytes at most (beyond the message that reaches it), so one
/// huge conversation makes several bounded blocks rather than one value of
/// megabytes; below [`BLOCK_BYTES`], a section fits a block even when it
/// does not compress at all.
const MAX_SECTION_RAW: usize = 12 * 1024;
/// First guess of compressed / raw size for chat text under LZ4, before a
/// block of the batch has been measured.
const FIRST_RATIO: f64 = 0.27;
/// Compressions tried per block when the estimate overshoots.
const FITS_TRIED: usize = 4;

/// A block ready for `messages-v3`: the key's conversation id and row
/// number (its first section's), and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBlock {
    pub first_id: String,
    pub first_seq: u64,
    pub bytes: Vec<u8>,
}

/// One section's place in the raw buffer while a batch is encoded.
struct Mark {
    id_start: usize,
    id_len: usize,
    first_seq: u64,
    start: usize,
    end: usize,
}

/// What [`encode_blocks`] reserves for the raw sections up front.
const RAW_CAPACITY: usize = 1 << 20;

/// Encodes a parse batch as blocks: `groups` are the batch's conversations
/// in increasing id order, each with its messages in row order.
///
/// Compressing many conversations together is what makes messages small
/// (LZ4 on one conversation of ~500 bytes keeps 0.65 of it; on a page's
/// worth of conversations about 0.4, on 16 KiB of compressed blocks 0.24). Each block is cut so that its value
/// fits one 16 KiB leaf with its key: the raw size is estimated from the
/// ratio the previous block got, and a block that comes out too big is cut
/// shorter and compressed again (a single section too big for a block goes
/// alone). Sections of one conversation stay in row order, in consecutive
/// blocks.
pub fn encode_blocks<'m, M>(groups: impl IntoIterator<Item = (&'m str, M)>) -> Vec<EncodedBlock>
where
    M: IntoIterator<Item = (u64, &'m Message)>,
{
    // Every section, raw, one after the other: id, count, body length, body.
    // (A parse batch's raw sections come to about a MiB: sized once, not
    // grown and copied five times.)
    let mut raw = Writer(Vec::with_capacity(RAW_CAPACITY));
    let mut marks: Vec<Mark> = Vec::new();
    let mut body = Writer(Vec::with_capacity(MAX_SECTION_RAW + 1024));
    let mut section =
        |raw: &mut Writer, body: &mut Writer, id: &str, first_seq: u64, count: u64| {
            let start = raw.0.len();
            raw.str(id);
            let id_start = raw.0.len() - id.len();
            raw.varint(count);
            raw.varint(body.0.len() as u64);
            raw.0.extend_from_slice(&body.0);
            body.0.clear();
            marks.push(Mark {
                id_start,
                id_len: id.len(),
                first_seq,
                start,
                end: raw.0.len(),
            });
        };
    for (id, messages) in groups {
        let mut first_seq = None;
        let mut count = 0u64;
        let mut previous = 0u64;
        for (seq, m) in messages {
            if body.0.len() >= MAX_SECTION_RAW
                && let Some(first) = first_seq.take()
            {
                section(&mut raw, &mut body, id, first, count);
                count = 0;
                previous = 0;
            }
            first_seq.get_or_insert(seq);
            // Delta-coded from the section's previous row (the first from 0).
            encode_message(&mut body, seq.wrapping_sub(previous), m);
            previous = seq;
            count += 1;
        }
        if let Some(first) = first_seq {
            section(&mut raw, &mut body, id, first, count);
        }
    }
    cut_blocks(&raw.0, &marks)
}

/// Groups sections into blocks that fit a leaf (see [`encode_blocks`]).
fn cut_blocks(raw: &[u8], marks: &[Mark]) -> Vec<EncodedBlock> {
    let mut blocks = Vec::new();
    let mut ratio = FIRST_RATIO;
    let mut i = 0;
    let id_of =
        |m: &Mark| std::str::from_utf8(&raw[m.id_start..m.id_start + m.id_len]).unwrap_or("");
    while i < marks.len() {
        let first_id = id_of(&marks[i]);
        let budget = BLOCK_BYTES
            .saturating_sub(LEAF_OVERHEAD + first_id.len())
            .max(512);
        let mut target = (budget as f64 / ratio) as usize;
        let mut bytes = Vec::new();
        let mut end = i + 1;
        for attempt in 0..FITS_TRIED {
            // As many sections as the target raw size allows, at least one.
            end = i + 1;
            while end < marks.len() && marks[end].end - marks[i].start <= target {
                end += 1;
            }
            let last_id = id_of(&marks[end - 1]);
            let body = &raw[marks[i].start..marks[end - 1].end];
            let mut w = Writer(Vec::with_capacity(budget));
            w.byte(BLOCK_V1);
            w.str(last_id);
            w.varint((end - i) as u64);
            w.0.extend_from_slice(&lz4_flex::compress_prepend_size(body));
            bytes = w.0;
            let compressed = bytes.len().max(1);
            ratio = (compressed as f64 / body.len().max(1) as f64).clamp(0.02, 1.5);
            if compressed <= budget || end == i + 1 || attempt + 1 == FITS_TRIED {
                break;
            }
            // Too big: aim below the budget by what the overshoot suggests.
            target = (body.len() as f64 * budget as f64 / compressed as f64 * 0.95) as usize;
        }
        blocks.push(EncodedBlock {
            first_id: first_id.to_string(),
            first_seq: marks[i].first_seq,
            bytes,
        });
        i = end;
    }
    blocks
}

/// A decoded block of `messages-v3`: its sections, decompressed.
#[derive(Debug)]
pub struct Block {
    sections: u64,
    body: Vec<u8>,
}

/// One conversation's messages of one batch inside a [`Block`] (a
/// conversation may have several sections in consecutive blocks).
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub id: &'a str,
    pub count: u64,
    body: &'a [u8],
}

/// Whether decoded messages carry their timestamp's text, or only the time
/// read from it (`time_ms`), which is all analysis uses: rendering every
/// canonical timestamp back to text cost a tenth of loading a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    Text,
    TimeOnly,
}

impl Section<'_> {
    /// Calls `each` with every `(row number, message)` of the section.
    pub fn messages(&self, timestamps: Timestamps, each: impl FnMut(u64, Message)) -> Result<()> {
        let mut r = Reader(self.body);
        decode_messages(&mut r, self.count, timestamps, each)?;
        if r.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError("section longer than its messages"))
        }
    }
}

/// The last conversation id of a block, read without decompressing it (a
/// scan resuming after an id skips the blocks that end before it).
pub fn block_last_id(bytes: &[u8]) -> Result<&str> {
    let mut r = Reader(bytes);
    r.version(BLOCK_V1)?;
    r.str()
}

impl Block {
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        r.version(BLOCK_V1)?;
        r.str()?;
        let sections = r.varint()?;
        let body = decompress(r.0)?;
        Ok(Self { sections, body })
    }

    /// Bytes of the decompressed body: sections start below it.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The section starting at byte `at` of the body and where the next one
    /// starts; `None` past the last.
    pub fn section_at(&self, at: usize) -> Result<Option<(Section<'_>, usize)>> {
        if at >= self.body.len() {
            return Ok(None);
        }
        let mut r = Reader(&self.body[at..]);
        let id = r.str()?;
        let count = r.varint()?;
        let len = usize::try_from(r.varint()?).map_err(|_| CodecError("length out of range"))?;
        if len > r.0.len() {
            return Err(CodecError("section cut short"));
        }
        let body = &r.0[..len];
        let next = self.body.len() - r.0.len() + len;
        Ok(Some((Section { id, count, body }, next)))
    }

    /// Every section, in order.
    pub fn sections(&self) -> Result<Vec<Section<'_>>> {
        let mut out = Vec::with_capacity(usize::try_from(self.sections).unwrap_or(0).min(4096));
        let mut at = 0;
        while let Some((s, next)) = self.section_at(at)? {
            out.push(s);
            at = next;
        }
        if out.len() as u64 != self.sections {
            return Err(CodecError("block holds another number of sections"));
        }
        Ok(out)
    }
}

fn failure_byte(k: FailureKind) -> u8 {
    FailureKind::ALL.iter().position(|x| *x == k).unwrap_or(0) as u8
}

fn failure_of(b: u8) -> Result<FailureKind> {
    FailureKind::ALL
        .get(usize::from(b))
        .copied()
        .ok_or(CodecError("bad failure kind"))
}

fn status_byte(s: ConversationStatus) -> u8 {
    match s {
        ConversationStatus::Analyzed => 0,
        ConversationStatus::SkippedAlreadyProcessed => 1,
        ConversationStatus::Failed => 2,
    }
}

fn status_of(b: u8) -> Result<ConversationStatus> {
    match b {
        0 => Ok(ConversationStatus::Analyzed),
        1 => Ok(ConversationStatus::SkippedAlreadyProcessed),
        2 => Ok(ConversationStatus::Failed),
        _ => Err(CodecError("bad conversation status")),
    }
}

/// A conversation's record, and the processed-index key of its analysis
/// (the row refers to the analysis there instead of keeping a copy).
pub fn encode_record(r: &ConversationRecord, analysis_key: Option<&[u8; 32]>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.byte(RECORD_V3);
    w.byte(status_byte(r.status));
    w.varint(r.messages.into());
    w.varint(r.customer_messages.into());
    w.varint(r.autoresponses.into());
    match r.started_ms {
        Some(t) => {
            w.byte(1);
            w.signed(t);
        }
        None => w.byte(0),
    }
    w.opt_str(r.error.as_deref());
    w.byte(r.failure.map_or(0, |k| failure_byte(k) + 1));
    encode_usage(&mut w, &r.usage);
    match analysis_key {
        Some(key) => {
            w.byte(1);
            w.0.extend_from_slice(key);
        }
        None => w.byte(0),
    }
    w.opt_str(r.agent.as_deref());
    w.opt_str(r.language.as_deref());
    w.opt_str(r.endpoint.as_deref());
    w.0
}

/// A record as [`encode_record`] wrote it (version 3), or as earlier
/// builds did (version 2: no endpoint; version 1: no agent, no language).
pub fn decode_record(bytes: &[u8]) -> Result<(ConversationRecord, Option<[u8; 32]>)> {
    let mut r = Reader(bytes);
    let version = r.version_of(&[RECORD_V1, RECORD_V2, RECORD_V3])?;
    let status = status_of(r.byte()?)?;
    let messages = r.u32()?;
    let customer_messages = r.u32()?;
    let autoresponses = r.u32()?;
    let started_ms = match r.byte()? {
        0 => None,
        1 => Some(r.signed()?),
        _ => return Err(CodecError("bad option tag")),
    };
    let error = r.opt_str()?.map(str::to_string);
    let failure = match r.byte()? {
        0 => None,
        b => Some(failure_of(b - 1)?),
    };
    let usage = decode_usage(&mut r)?;
    let key = match r.byte()? {
        0 => None,
        1 => {
            let bytes = r.0.get(..32).ok_or(CodecError("key cut short"))?;
            let mut key = [0u8; 32];
            key.copy_from_slice(bytes);
            r.0 = &r.0[32..];
            Some(key)
        }
        _ => return Err(CodecError("bad key tag")),
    };
    let (agent, language) = if version >= RECORD_V2 {
        (
            r.opt_str()?.map(str::to_string),
            r.opt_str()?.map(str::to_string),
        )
    } else {
        (None, None)
    };
    let endpoint = if version >= RECORD_V3 {
        r.opt_str()?.map(str::to_string)
    } else {
        None
    };
    let record = ConversationRecord {
        status,
        messages,
        customer_messages,
        autoresponses,
        started_ms,
        failure,
        error,
        usage,
        agent,
        language,
        endpoint,
    };
    Ok((record, key))
}

/// Usage is all zeros for every free analysis: one byte then. Tag 1 (no
/// cached or reasoning tokens) is what older versions wrote; it is still
/// read, and written when those two are zero.
fn encode_usage(w: &mut Writer, u: &LlmUsage) {
    if *u == LlmUsage::default() {
        w.byte(0);
        return;
    }
    let extended = u.cached_tokens != 0 || u.reasoning_tokens != 0;
    w.byte(if extended { 2 } else { 1 });
    for n in [
        u.requests,
        u.retries,
        u.rate_limited,
        u.prompt_tokens,
        u.completion_tokens,
        u.tokens,
    ] {
        w.varint(n);
    }
    w.f64(u.cost_usd);
    if extended {
        w.varint(u.cached_tokens);
        w.varint(u.reasoning_tokens);
    }
}

fn decode_usage(r: &mut Reader<'_>) -> Result<LlmUsage> {
    match r.byte()? {
        0 => Ok(LlmUsage::default()),
        tag @ (1 | 2) => {
            let mut u = LlmUsage {
                requests: r.varint()?,
                retries: r.varint()?,
                rate_limited: r.varint()?,
                prompt_tokens: r.varint()?,
                completion_tokens: r.varint()?,
                tokens: r.varint()?,
                cost_usd: r.f64()?,
                ..LlmUsage::default()
            };
            if tag == 2 {
                u.cached_tokens = r.varint()?;
                u.reasoning_tokens = r.varint()?;
            }
            Ok(u)
        }
        _ => Err(CodecError("bad usage tag")),
    }
}

fn sentiment_byte(l: SentimentLabel) -> u8 {
    match l {
        SentimentLabel::Positive => 0,
        SentimentLabel::Neutral => 1,
        SentimentLabel::Negative => 2,
    }
}

fn sentiment_of(b: u8) -> Result<SentimentLabel> {
    match b {
        0 => Ok(SentimentLabel::Positive),
        1 => Ok(SentimentLabel::Neutral),
        2 => Ok(SentimentLabel::Negative),
        _ => Err(CodecError("bad sentiment label")),
    }
}

pub fn encode_analysis(a: &Analysis) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(32 + a.summary.len()));
    w.byte(ANALYSIS_V2);
    w.byte(sentiment_byte(a.sentiment.label));
    w.f64(a.sentiment.score);
    w.byte(a.satisfaction.score);
    w.byte(match a.resolved {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
    w.str(&a.summary);
    w.str(&a.analyzer);
    w.str(&a.model);
    w.opt_str(a.topic.as_deref());
    w.0
}

/// An analysis as [`encode_analysis`] wrote it (version 2), or without a
/// topic (version 1).
pub fn decode_analysis(bytes: &[u8]) -> Result<Analysis> {
    let mut r = Reader(bytes);
    let version = r.version_of(&[ANALYSIS_V1, ANALYSIS_V2])?;
    let label = sentiment_of(r.byte()?)?;
    let score = r.f64()?;
    let satisfaction = r.byte()?;
    let resolved = match r.byte()? {
        0 => None,
        1 => Some(false),
        2 => Some(true),
        _ => return Err(CodecError("bad resolved tag")),
    };
    let summary = r.str()?.to_string();
    let analyzer = r.str()?.to_string();
    let model = r.str()?.to_string();
    let topic = if version >= ANALYSIS_V2 {
        r.opt_str()?.map(str::to_string)
    } else {
        None
    };
    Ok(Analysis {
        sentiment: Sentiment { label, score },
        satisfaction: Satisfaction {
            score: satisfaction,
            label: SatisfactionLabel::from_score(satisfaction),
        },
        resolved,
        summary,
        analyzer,
        model,
        topic,
    })
}

const FIGURES_V1: u8 = 1;
const CONTRIBUTION_V1: u8 = 1;
const ROW_FACTS_V1: u8 = 1;

/// An insights cell's figures.
pub fn encode_figures(f: &Figures) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(24));
    w.byte(FIGURES_V1);
    for n in [
        f.conversations,
        f.positive,
        f.neutral,
        f.negative,
        f.satisfaction_sum,
        f.resolved,
        f.resolvable,
    ] {
        w.varint(n);
    }
    w.signed(f.score_units);
    w.0
}

pub fn decode_figures(bytes: &[u8]) -> Result<Figures> {
    let mut r = Reader(bytes);
    r.version(FIGURES_V1)?;
    Ok(Figures {
        conversations: r.varint()?,
        positive: r.varint()?,
        neutral: r.varint()?,
        negative: r.varint()?,
        satisfaction_sum: r.varint()?,
        resolved: r.varint()?,
        resolvable: r.varint()?,
        score_units: r.signed()?,
    })
}

fn resolved_byte(r: Option<bool>) -> u8 {
    match r {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn resolved_of(b: u8) -> Result<Option<bool>> {
    match b {
        0 => Ok(None),
        1 => Ok(Some(false)),
        2 => Ok(Some(true)),
        _ => Err(CodecError("bad resolved tag")),
    }
}

/// One holder's share of the insights (see [`Contribution`]).
pub fn encode_contribution(c: &Contribution) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(32 + c.topic.len() + c.agent.len()));
    w.byte(CONTRIBUTION_V1);
    w.signed(c.day.into());
    w.str(&c.topic);
    w.str(&c.agent);
    w.byte(sentiment_byte(c.counted.label));
    w.byte(c.counted.satisfaction);
    w.byte(resolved_byte(c.counted.resolved));
    w.signed(c.counted.score_units);
    w.0
}

pub fn decode_contribution(bytes: &[u8]) -> Result<Contribution> {
    let mut r = Reader(bytes);
    r.version(CONTRIBUTION_V1)?;
    let day = i32::try_from(r.signed()?).map_err(|_| CodecError("day out of range"))?;
    let topic = r.str()?.to_string();
    let agent = r.str()?.to_string();
    let label = sentiment_of(r.byte()?)?;
    let satisfaction = r.byte()?;
    if !(1..=5).contains(&satisfaction) {
        return Err(CodecError("satisfaction out of range"));
    }
    let resolved = resolved_of(r.byte()?)?;
    Ok(Contribution {
        day,
        topic,
        agent,
        counted: Counted {
            label,
            satisfaction,
            resolved,
            score_units: r.signed()?,
        },
    })
}

/// A counted conversation's facts (`insight-rows-v1`, see [`RowFacts`]).
pub fn encode_row_facts(f: &RowFacts) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        16 + f.topic.len() + f.agent.len() + f.language.len(),
    ));
    w.byte(ROW_FACTS_V1);
    w.str(&f.topic);
    w.str(&f.agent);
    w.str(&f.language);
    w.byte(sentiment_byte(f.counted.label));
    w.byte(f.counted.satisfaction);
    w.byte(resolved_byte(f.counted.resolved));
    w.signed(f.counted.score_units);
    w.0
}

pub fn decode_row_facts(bytes: &[u8]) -> Result<RowFacts> {
    let mut r = Reader(bytes);
    r.version(ROW_FACTS_V1)?;
    let topic = r.str()?.to_string();
    let agent = r.str()?.to_string();
    let language = r.str()?.to_string();
    let label = sentiment_of(r.byte()?)?;
    let satisfaction = r.byte()?;
    if !(1..=5).contains(&satisfaction) {
        return Err(CodecError("satisfaction out of range"));
    }
    let resolved = resolved_of(r.byte()?)?;
    Ok(RowFacts {
        topic,
        agent,
        language,
        counted: Counted {
            label,
            satisfaction,
            resolved,
            score_units: r.signed()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn message() -> impl Strategy<Value = Message> {
        (
            0u8..3,
            ".{0,80}",
            proptest::option::of(".{0,30}"),
            proptest::option::of(any::<i64>()),
            proptest::option::of(".{0,20}"),
            any::<bool>(),
        )
            .prop_map(
                |(role, text, timestamp, time_ms, sender_name, autoresponse)| Message {
                    role: role_of(role).unwrap(),
                    text,
                    timestamp,
                    time_ms,
                    sender_name,
                    autoresponse,
                },
            )
    }

    #[test]
    fn the_canonical_form_is_chronos() {
        for ms in [
            0,
            1_772_438_597_000,
            -86_400_000,
            253_402_300_799_000,
            946_684_800_000,
        ] {
            let expected = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(canonical_string(ms), Some(expected), "{ms}");
        }
        assert_eq!(canonical(1_500), None, "not a whole second");
        assert_eq!(canonical(-62_198_755_200_000), None, "before year 0");
        assert_eq!(canonical(253_402_300_800_000), None, "after 9999");
    }

    /// chrono's rendering, the reference `canonical` must match.
    fn chronos(ms: i64) -> Option<String> {
        let t = chrono::DateTime::from_timestamp_millis(ms)?;
        (ms % 1000 == 0 && (0..=9999).contains(&chrono::Datelike::year(&t)))
            .then(|| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    proptest! {
        #[test]
        fn the_canonical_form_is_chronos_for_any_second(secs in -62_198_755_300i64..253_402_400_000) {
            prop_assert_eq!(canonical_string(secs * 1000), chronos(secs * 1000));
        }

        #[test]
        fn the_canonical_form_is_chronos_for_any_time(ms in any::<i64>()) {
            prop_assert_eq!(canonical_string(ms), chronos(ms));
        }
    }

    #[test]
    fn canonical_timestamps_are_a_flag_and_come_back_exactly() {
        let at = |timestamp: &str, time_ms: i64| Message {
            role: Role::Customer,
            text: "hi".into(),
            timestamp: Some(timestamp.into()),
            time_ms: Some(time_ms),
            sender_name: None,
            autoresponse: false,
        };
        let canonical = at("2026-03-02T08:03:17Z", 1_772_438_597_000);
        let other = at("2026-03-02 08:03:17", 1_772_438_597_000);
        let fraction = at("2026-03-02T08:03:17.250Z", 1_772_438_597_250);
        let messages = [canonical, other, fraction];
        let bytes = encode_chunk(messages.iter().enumerate().map(|(i, m)| (i as u64, m)));
        let mut back = Vec::new();
        decode_chunk(&bytes, |_, m| back.push(m)).unwrap();
        assert_eq!(back, messages);
        let short = encode_chunk([(0, &messages[0])]);
        let long = encode_chunk([(0, &messages[1])]);
        assert!(
            short.len() + 15 < long.len(),
            "{} vs {}",
            short.len(),
            long.len()
        );
    }

    proptest! {
        #[test]
        fn chunks_round_trip(messages in proptest::collection::vec((0u64..1_000_000, message()), 0..40)) {
            let mut messages = messages;
            messages.sort_by_key(|(seq, _)| *seq);
            let bytes = encode_chunk(messages.iter().map(|(s, m)| (*s, m)));
            let mut back = Vec::new();
            decode_chunk(&bytes, |s, m| back.push((s, m))).unwrap();
            prop_assert_eq!(back, messages);
        }

        #[test]
        fn records_round_trip(
            status in 0u8..3,
            counts in any::<(u32, u32, u32)>(),
            started in proptest::option::of(any::<i64>()),
            error in proptest::option::of(".{0,40}"),
            tokens in any::<(u32, u32)>(),
            extra in any::<(u16, u16)>(),
            agent in proptest::option::of(".{0,20}"),
            language in proptest::option::of("[a-z]{2}"),
            endpoint in proptest::option::of("[a-z0-9.:-]{1,20}"),
        ) {
            let record = ConversationRecord {
                status: status_of(status).unwrap(),
                messages: counts.0,
                customer_messages: counts.1,
                autoresponses: counts.2,
                started_ms: started,
                failure: error.as_ref().map(|e| FailureKind::ALL[e.len() % FailureKind::ALL.len()]),
                error,
                usage: LlmUsage {
                    requests: 1,
                    prompt_tokens: tokens.0.into(),
                    completion_tokens: tokens.1.into(),
                    tokens: u64::from(tokens.0) + u64::from(tokens.1),
                    cached_tokens: extra.0.into(),
                    reasoning_tokens: extra.1.into(),
                    cost_usd: 0.25,
                    ..LlmUsage::default()
                },
                agent,
                language,
                endpoint,
            };
            prop_assert_eq!(decode_record(&encode_record(&record, None)).unwrap(), (record.clone(), None));
            let key = [status; 32];
            prop_assert_eq!(decode_record(&encode_record(&record, Some(&key))).unwrap(), (record, Some(key)));
        }

        #[test]
        fn analyses_round_trip(label in 0u8..3, score in -1.0f64..=1.0, sat in 1u8..=5, resolved in proptest::option::of(any::<bool>()), summary in ".{0,200}", topic in proptest::option::of(".{0,20}")) {
            let a = Analysis {
                sentiment: Sentiment { label: sentiment_of(label).unwrap(), score },
                satisfaction: Satisfaction { score: sat, label: SatisfactionLabel::from_score(sat) },
                resolved,
                summary,
                analyzer: "openai".into(),
                model: "gpt-4o".into(),
                topic,
            };
            prop_assert_eq!(decode_analysis(&encode_analysis(&a)).unwrap(), a);
        }

        /// Any batch comes back from its blocks exactly: every conversation
        /// in id order with its messages in row order, keys increasing, each
        /// block within its budget unless it is a single section.
        #[test]
        fn blocks_round_trip(
            conversations in proptest::collection::btree_map("[a-z0-9]{1,12}", proptest::collection::vec(message(), 1..30), 0..60),
            gap in 1u64..1000,
        ) {
            let mut seq = 0u64;
            let mut expected: Vec<(String, u64, Message)> = Vec::new();
            for (id, messages) in &conversations {
                for m in messages {
                    seq += gap;
                    expected.push((id.clone(), seq, m.clone()));
                }
            }
            let blocks = encode_blocks(expected.chunk_by(|a, b| a.0 == b.0).map(|group| {
                (group[0].0.as_str(), group.iter().map(|(_, s, m)| (*s, m)))
            }));
            let mut back: Vec<(String, u64, Message)> = Vec::new();
            let mut previous_key: Option<(String, u64)> = None;
            for block in &blocks {
                let key = (block.first_id.clone(), block.first_seq);
                prop_assert!(previous_key.as_ref().is_none_or(|p| *p < key));
                previous_key = Some(key);
                let decoded = Block::decode(&block.bytes).unwrap();
                let sections = decoded.sections().unwrap();
                prop_assert_eq!(sections[0].id, block.first_id.as_str());
                prop_assert_eq!(block_last_id(&block.bytes).unwrap(), sections[sections.len() - 1].id);
                if sections.len() > 1 {
                    prop_assert!(block.bytes.len() <= BLOCK_BYTES);
                }
                let start = back.len();
                for section in &sections {
                    section.messages(Timestamps::Text, |s, m| back.push((section.id.to_string(), s, m))).unwrap();
                }
                // The key's row is the block's first message.
                prop_assert_eq!(back.get(start).map(|b| b.1), Some(block.first_seq));
            }
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(block) = Block::decode(&bytes)
                && let Ok(sections) = block.sections()
            {
                for s in sections {
                    let _ = s.messages(Timestamps::Text, |_, _| {});
                }
            }
            let _ = block_last_id(&bytes);
            let _ = decode_chunk(&bytes, |_, _| {});
            let _ = decode_record(&bytes);
            let _ = decode_analysis(&bytes);
            let _ = decode_figures(&bytes);
            let _ = decode_contribution(&bytes);
            let _ = decode_row_facts(&bytes);
        }

        #[test]
        fn aggregates_round_trip(
            counts in any::<[u64; 7]>(),
            units in any::<i64>(),
            day in any::<i32>(),
            topic in ".{0,20}",
            agent in ".{0,20}",
            label in 0u8..3,
            sat in 1u8..=5,
            resolved in proptest::option::of(any::<bool>()),
        ) {
            let f = Figures {
                conversations: counts[0],
                positive: counts[1],
                neutral: counts[2],
                negative: counts[3],
                satisfaction_sum: counts[4],
                resolved: counts[5],
                resolvable: counts[6],
                score_units: units,
            };
            prop_assert_eq!(decode_figures(&encode_figures(&f)).unwrap(), f);
            let c = Contribution {
                day,
                topic,
                agent,
                counted: Counted { label: sentiment_of(label).unwrap(), satisfaction: sat, resolved, score_units: units },
            };
            prop_assert_eq!(decode_contribution(&encode_contribution(&c)).unwrap(), c.clone());
            let facts = RowFacts { topic: c.topic, agent: c.agent, language: "ne".into(), counted: c.counted };
            prop_assert_eq!(decode_row_facts(&encode_row_facts(&facts)).unwrap(), facts);
        }
    }

    /// Records and analyses written before agent, language and topic existed
    /// (version 1, byte for byte as those builds wrote them) read back with
    /// them absent.
    #[test]
    fn version_one_values_decode_without_the_new_fields() {
        let mut record = vec![RECORD_V1, 0, 3, 2, 1, 1];
        let mut w = Writer(Vec::new());
        w.signed(1_772_438_597_000);
        record.extend_from_slice(&w.0);
        record.extend_from_slice(&[0, 0, 0, 1]);
        record.extend_from_slice(&[7; 32]);
        let (r, key) = decode_record(&record).unwrap();
        assert_eq!(
            (r.messages, r.customer_messages, r.autoresponses),
            (3, 2, 1)
        );
        assert_eq!(r.started_ms, Some(1_772_438_597_000));
        assert_eq!(
            (r.agent.clone(), r.language.clone(), key),
            (None, None, Some([7; 32]))
        );
        // Version 2: agent and language, no endpoint.
        let mut v2 = ConversationRecord {
            agent: Some("Asha".into()),
            language: Some("ne".into()),
            ..r.clone()
        };
        let mut bytes = encode_record(&v2, None);
        assert_eq!(bytes.pop(), Some(0), "no endpoint: an empty option last");
        bytes[0] = RECORD_V2;
        assert_eq!(decode_record(&bytes).unwrap(), (v2.clone(), None));
        v2.endpoint = Some("east".into());
        assert_eq!(
            decode_record(&encode_record(&v2, None)).unwrap(),
            (v2, None)
        );

        let mut analysis = vec![ANALYSIS_V1, 2];
        analysis.extend_from_slice(&(-0.5f64).to_le_bytes());
        analysis.extend_from_slice(&[2, 1, 1, b's', 7]);
        analysis.extend_from_slice(b"lexicon");
        analysis.extend_from_slice(&[1, b'm']);
        let a = decode_analysis(&analysis).unwrap();
        assert_eq!((a.summary.as_str(), a.model.as_str()), ("s", "m"));
        assert_eq!(
            (a.sentiment.label, a.resolved, a.topic),
            (SentimentLabel::Negative, Some(false), None)
        );
    }

    fn text_message(text: String) -> Message {
        Message {
            role: Role::Agent,
            text,
            timestamp: Some("2026-03-02T08:03:17Z".into()),
            time_ms: Some(1_772_438_597_000),
            sender_name: Some("Sita".into()),
            autoresponse: false,
        }
    }

    /// A conversation far bigger than a block is cut into sections in
    /// consecutive blocks (each within the budget), keyed by their first row.
    #[test]
    fn a_huge_conversation_spans_several_bounded_blocks() {
        // Text that does not compress much: a block holds few messages.
        let mut state = 7u64;
        let messages: Vec<Message> = (0..400)
            .map(|_| {
                let text = (0..200)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        char::from(b'a' + (state >> 59) as u8)
                    })
                    .collect();
                text_message(text)
            })
            .collect();
        let small = text_message("hello".into());
        let blocks = encode_blocks([
            ("a", vec![(0u64, &small)]),
            (
                "b",
                messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (i as u64 + 1, m))
                    .collect(),
            ),
            ("c", vec![(401, &small)]),
        ]);
        assert!(blocks.len() >= 3, "{}", blocks.len());
        let mut seqs = Vec::new();
        for block in &blocks {
            assert!(block.bytes.len() <= BLOCK_BYTES, "{}", block.bytes.len());
            for section in Block::decode(&block.bytes).unwrap().sections().unwrap() {
                section
                    .messages(Timestamps::Text, |s, _| seqs.push(s))
                    .unwrap();
            }
        }
        assert_eq!(seqs, (0..=401).collect::<Vec<u64>>());
        assert_eq!(blocks[1].first_id, "b");
        assert!(
            blocks
                .windows(2)
                .all(|w| (&w[0].first_id, w[0].first_seq) < (&w[1].first_id, w[1].first_seq))
        );
    }

    /// A block whose body was damaged is an error, never a panic or a
    /// wrong message.
    #[test]
    fn a_damaged_block_is_an_error() {
        let m = text_message("hello there".into());
        let blocks = encode_blocks([("a", vec![(0u64, &m)]), ("b", vec![(1, &m)])]);
        let mut bytes = blocks[0].bytes.clone();
        let cut = bytes.len() - 3;
        bytes.truncate(cut);
        assert!(Block::decode(&bytes).is_err());
        let mut bytes = blocks[0].bytes.clone();
        bytes[0] = 9;
        assert_eq!(
            Block::decode(&bytes).unwrap_err(),
            CodecError("unknown encoding version")
        );
        assert!(block_last_id(&bytes).is_err());
    }

    #[test]
    fn a_chunk_claiming_gigabytes_is_refused_before_decompressing() {
        let mut bytes = vec![CHUNK_V1, 1];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_chunk(&bytes, |_, _| {}),
            Err(CodecError("chunk too large"))
        );
    }
}
