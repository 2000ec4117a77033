//! A segment: the inverted index of one run of an upload's messages (one
//! parse batch), or of a completed upload's summaries. Its **docs** are the
//! conversations it holds text of (a conversation spread over several runs
//! is a doc in each, merged at search time by its id); each doc's tokens
//! are numbered in order, with a gap between texts so that a phrase never
//! spans two messages. Its **postings** are, per term, the docs holding it
//! with each occurrence's position.
//!
//! A segment is stored as one value (its docs and its term dictionary,
//! with every short posting list inline) and one more key per term whose
//! list is longer than [`INLINE_MAX`] bytes: a run of 8,192 messages has a
//! few thousand terms, most of them rare, so a run costs the store a few
//! hundred inserts instead of thousands, and a search reads one value per
//! segment plus the long lists of its terms.
//!
//! The summaries segment also carries, per doc, what the drill-down knows
//! of the conversation (its first time, topic, agent, language, sentiment,
//! satisfaction, resolution), its docs in id-hash order: a search finds a
//! candidate there by binary search, and needs no other read to know
//! whether and where the insights count it.
//!
//! Built by whoever has the text in hand (the parse's storer thread, the
//! transaction that completes an upload), written by the store beside what
//! it indexes, in the same transaction. Reads are bounds-checked: a bad
//! value is a [`SegmentError`], never a panic.

use std::collections::HashMap;

use super::text;
use crate::model::SentimentLabel;
use crate::store::stats::{Counted, RowFacts};

/// Why a stored segment could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SegmentError(&'static str);

impl SegmentError {
    /// A posting naming a doc its segment does not have.
    pub fn missing_doc() -> Self {
        SegmentError("a posting names a doc the segment lacks")
    }
}

type Result<T> = std::result::Result<T, SegmentError>;

const SEGMENT_V1: u8 = 1;
const KIND_MESSAGES: u8 = 0;
const KIND_SUMMARIES: u8 = 1;

/// Posting lists up to this many bytes live in the segment's value.
pub const INLINE_MAX: usize = 256;

/// Stored for a doc without any time.
const NO_TIME: i64 = i64::MAX;

/// Bytes of a summary doc's facts: time, sentiment, satisfaction,
/// resolution, then the topic's, agent's and language's name numbers.
const FACTS_BYTES: usize = 8 + 3 + 6;

/// A conversation's id as a number, to merge its docs of several runs and
/// find it among the summaries.
pub fn id_hash(conversation_id: &str) -> u64 {
    // A namespace byte no term uses.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(2u8).chain(conversation_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Terms are hashes already: used as their own hash.
#[derive(Default, Clone, Copy)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type ByTerm<V> = HashMap<u64, V, std::hash::BuildHasherDefault<Identity>>;

/// A segment being built, doc by doc.
#[derive(Default)]
pub struct SegmentBuilder {
    ids: Vec<String>,
    lengths: Vec<u32>,
    facts: Vec<(Option<i64>, RowFacts)>,
    /// Each term seen: its slot (by its hash), and per slot the term and
    /// the slot of the loose term it is also indexed under (`u32::MAX`: none).
    slots: ByTerm<u32>,
    terms: Vec<u64>,
    loose: Vec<u32>,
    /// Every occurrence, in the order read: (slot, doc, position).
    occurrences: Vec<(u32, u32, u32)>,
    /// The doc being written: its next position.
    position: u32,
}

/// A built segment, ready to store: its value, and the posting lists too
/// long to be inline, by term.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    pub value: Vec<u8>,
    pub external: Vec<(u64, Vec<u8>)>,
}

impl Segment {
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl SegmentBuilder {
    /// Starts the next doc: a conversation of a messages segment.
    pub fn doc(&mut self, conversation_id: &str) {
        self.ids.push(conversation_id.to_string());
        self.lengths.push(0);
        self.position = 0;
    }

    /// Starts the next doc of a summaries segment: a conversation the
    /// insights may count, its first message's time and its facts. Docs
    /// must come in [`id_hash`] order.
    pub fn summary_doc(&mut self, conversation_id: &str, started_ms: Option<i64>, facts: RowFacts) {
        self.doc(conversation_id);
        self.facts.push((started_ms, facts));
    }

    /// The slot of a term, made when new.
    fn slot(&mut self, term: u64) -> u32 {
        let next = self.terms.len() as u32;
        let slot = *self.slots.entry(term).or_insert(next);
        if slot == next {
            self.terms.push(term);
            self.loose.push(u32::MAX);
        }
        slot
    }

    /// Adds a text (a message, a summary) to the current doc.
    pub fn text(&mut self, text: &str) {
        let Some(doc) = self.ids.len().checked_sub(1) else {
            return;
        };
        let doc = doc as u32;
        let start = self.position;
        let mut position = start;
        text::each_exact_term(text, |token| {
            let known = self.slots.get(&token.exact).copied();
            let slot = match known {
                Some(slot) => slot,
                None => {
                    // A word not seen in this segment: its loose term too
                    // (the only place a token's text is looked at again).
                    let slot = self.slot(token.exact);
                    if let Some(loose) =
                        text::loose_term_of(&text[token.start..token.end], token.devanagari)
                    {
                        let loose = self.slot(loose);
                        self.loose[slot as usize] = loose;
                    }
                    slot
                }
            };
            self.occurrences.push((slot, doc, position));
            let loose = self.loose[slot as usize];
            if loose != u32::MAX {
                self.occurrences.push((loose, doc, position));
            }
            position = position.saturating_add(1);
        });
        if position > start {
            self.lengths[doc as usize] =
                self.lengths[doc as usize].saturating_add(position - start);
            // A gap: no phrase runs from one text into the next.
            self.position = position.saturating_add(1);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn finish(self) -> Segment {
        if self.ids.is_empty() {
            return Segment::default();
        }
        let n = self.ids.len();
        let summaries = self.facts.len() == n;
        let mut v = Vec::with_capacity(64 + n * 40);
        v.push(SEGMENT_V1);
        v.push(if summaries {
            KIND_SUMMARIES
        } else {
            KIND_MESSAGES
        });
        varint(&mut v, n as u64);
        varint(&mut v, self.lengths.iter().map(|&l| u64::from(l)).sum());
        for id in &self.ids {
            v.extend_from_slice(&id_hash(id).to_le_bytes());
        }
        for l in &self.lengths {
            v.extend_from_slice(&l.to_le_bytes());
        }
        let mut offset = 0u32;
        v.extend_from_slice(&offset.to_le_bytes());
        for id in &self.ids {
            offset = offset.saturating_add(id.len() as u32);
            v.extend_from_slice(&offset.to_le_bytes());
        }
        for id in &self.ids {
            v.extend_from_slice(id.as_bytes());
        }
        if summaries {
            let mut names: Vec<String> = Vec::new();
            let mut number: HashMap<String, u16> = HashMap::new();
            let mut name = |s: &str| -> u16 {
                if let Some(&i) = number.get(s) {
                    return i;
                }
                let i = u16::try_from(names.len()).unwrap_or(u16::MAX);
                names.push(s.to_string());
                number.insert(s.to_string(), i);
                i
            };
            let mut records = Vec::with_capacity(n * FACTS_BYTES);
            for (started, f) in &self.facts {
                records.extend_from_slice(&started.unwrap_or(NO_TIME).to_le_bytes());
                records.push(label_byte(f.counted.label));
                records.push(f.counted.satisfaction);
                records.push(match f.counted.resolved {
                    None => 0,
                    Some(false) => 1,
                    Some(true) => 2,
                });
                for s in [&f.topic, &f.agent, &f.language] {
                    records.extend_from_slice(&name(s).to_le_bytes());
                }
            }
            v.extend_from_slice(&records);
            varint(&mut v, names.len() as u64);
            for s in &names {
                varint(&mut v, s.len() as u64);
                v.extend_from_slice(s.as_bytes());
            }
        }
        // The occurrences by slot (a counting sort: each slot's stay in the
        // order read, which is doc and position order), then each slot's
        // list, in term order.
        let mut starts = vec![0usize; self.terms.len() + 1];
        for &(slot, _, _) in &self.occurrences {
            starts[slot as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut by_slot = vec![0u64; self.occurrences.len()];
        for &(slot, doc, position) in &self.occurrences {
            let at = &mut next[slot as usize];
            by_slot[*at] = (u64::from(doc) << 32) | u64::from(position);
            *at += 1;
        }
        let mut order: Vec<u32> = (0..self.terms.len() as u32).collect();
        order.sort_unstable_by_key(|&slot| self.terms[slot as usize]);
        let terms: Vec<(u64, Vec<u8>)> = order
            .into_iter()
            .map(|slot| {
                let slot = slot as usize;
                (
                    self.terms[slot],
                    encode_postings(&by_slot[starts[slot]..starts[slot + 1]]),
                )
            })
            .collect();
        varint(&mut v, terms.len() as u64);
        for (term, _) in &terms {
            v.extend_from_slice(&term.to_le_bytes());
        }
        let mut inline = Vec::new();
        let mut external = Vec::new();
        let mut ends = Vec::with_capacity(terms.len());
        for (term, list) in terms {
            if list.len() <= INLINE_MAX {
                inline.extend_from_slice(&list);
            } else {
                external.push((term, list));
            }
            // An empty inline list: the term has its own key.
            ends.push(inline.len() as u32);
        }
        for end in ends {
            v.extend_from_slice(&end.to_le_bytes());
        }
        v.extend_from_slice(&inline);
        Segment { value: v, external }
    }
}

fn label_byte(l: SentimentLabel) -> u8 {
    match l {
        SentimentLabel::Negative => 0,
        SentimentLabel::Neutral => 1,
        SentimentLabel::Positive => 2,
    }
}

fn label_of(b: u8) -> Result<SentimentLabel> {
    match b {
        0 => Ok(SentimentLabel::Negative),
        1 => Ok(SentimentLabel::Neutral),
        2 => Ok(SentimentLabel::Positive),
        _ => Err(SegmentError("bad sentiment")),
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Occurrences as (doc << 32 | position), ascending.
fn encode_postings(occurrences: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(occurrences.len() * 2 + 2);
    let mut last_doc = 0u64;
    for group in occurrences.chunk_by(|a, b| a >> 32 == b >> 32) {
        let doc = group[0] >> 32;
        varint(&mut out, doc - last_doc);
        last_doc = doc;
        varint(&mut out, group.len() as u64);
        let mut last = 0u64;
        for at in group {
            let position = at & 0xffff_ffff;
            varint(&mut out, position - last);
            last = position;
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(SegmentError("segment cut short"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SegmentError("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(SegmentError("segment cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn count(&mut self) -> Result<usize> {
        usize::try_from(self.varint()?).map_err(|_| SegmentError("count out of range"))
    }

    fn array(&mut self, n: usize, width: usize) -> Result<&'a [u8]> {
        let bytes = n
            .checked_mul(width)
            .ok_or(SegmentError("count out of range"))?;
        self.take(bytes)
    }
}

/// One doc of a posting list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub doc: u32,
    pub occurrences: u32,
}

/// The docs of a posting list, without their positions.
pub fn hits(postings: &[u8], mut each: impl FnMut(Hit)) -> Result<()> {
    let mut r = Reader(postings);
    let mut doc = 0u64;
    while !r.0.is_empty() {
        doc += r.varint()?;
        let occurrences = r.varint()?;
        for _ in 0..occurrences {
            r.varint()?;
        }
        each(Hit {
            doc: u32::try_from(doc).map_err(|_| SegmentError("doc out of range"))?,
            occurrences: u32::try_from(occurrences)
                .map_err(|_| SegmentError("count out of range"))?,
        });
    }
    Ok(())
}

/// Every occurrence of a posting list as (doc, position), ascending.
pub fn occurrences(postings: &[u8], out: &mut Vec<(u32, u32)>) -> Result<()> {
    let mut r = Reader(postings);
    let mut doc = 0u64;
    while !r.0.is_empty() {
        doc += r.varint()?;
        let d = u32::try_from(doc).map_err(|_| SegmentError("doc out of range"))?;
        let n = r.varint()?;
        let mut position = 0u64;
        for _ in 0..n {
            position += r.varint()?;
            out.push((
                d,
                u32::try_from(position).map_err(|_| SegmentError("position out of range"))?,
            ));
        }
    }
    Ok(())
}

fn u64_at(bytes: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], i: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
    u32::from_le_bytes(b)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Where a term's posting list is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postings<'a> {
    Inline(&'a [u8]),
    /// Under its own key.
    External,
}

/// A stored segment, read in place.
#[derive(Debug, Clone)]
pub struct SegmentView<'a> {
    n: usize,
    tokens: u64,
    hashes: &'a [u8],
    lengths: &'a [u8],
    offsets: &'a [u8],
    ids: &'a [u8],
    /// For a summaries segment: the facts records and the names they number.
    facts: Option<(&'a [u8], Vec<&'a str>)>,
    terms: &'a [u8],
    ends: &'a [u8],
    inline: &'a [u8],
}

impl<'a> SegmentView<'a> {
    /// Reads a segment's layout; the parts are checked as they are used
    /// (a search reads every segment's and touches few of its docs).
    pub fn read(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        if r.take(1)? != [SEGMENT_V1] {
            return Err(SegmentError("unknown segment version"));
        }
        let kind = r.take(1)?[0];
        if kind > KIND_SUMMARIES {
            return Err(SegmentError("unknown segment kind"));
        }
        let n = r.count()?;
        let tokens = r.varint()?;
        let hashes = r.array(n, 8)?;
        let lengths = r.array(n, 4)?;
        let offsets = r.array(
            n.checked_add(1).ok_or(SegmentError("count out of range"))?,
            4,
        )?;
        let ids_len = u32_at(offsets, n) as usize;
        let ids = r.take(ids_len)?;
        let facts = if kind == KIND_SUMMARIES {
            let records = r.array(n, FACTS_BYTES)?;
            let count = r.count()?;
            let mut names = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let len = r.count()?;
                names
                    .push(std::str::from_utf8(r.take(len)?).map_err(|_| SegmentError("bad name"))?);
            }
            Some((records, names))
        } else {
            None
        };
        let m = r.count()?;
        let terms = r.array(m, 8)?;
        let ends = r.array(m, 4)?;
        let inline = r.0;
        Ok(SegmentView {
            n,
            tokens,
            hashes,
            lengths,
            offsets,
            ids,
            facts,
            terms,
            ends,
            inline,
        })
    }

    /// Docs.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Tokens in all its docs.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The id's bytes of doc `i` (< n).
    fn id_bytes(&self, i: usize) -> Result<&'a [u8]> {
        let (start, end) = (
            u32_at(self.offsets, i) as usize,
            u32_at(self.offsets, i + 1) as usize,
        );
        self.ids
            .get(start..end)
            .ok_or(SegmentError("bad id offsets"))
    }

    /// Doc `doc`; an error past the end or for a damaged id.
    pub fn doc(&self, doc: u32) -> Result<Doc<'a>> {
        let i = doc as usize;
        if i >= self.n {
            return Err(SegmentError::missing_doc());
        }
        Ok(Doc {
            id: std::str::from_utf8(self.id_bytes(i)?).map_err(|_| SegmentError("bad id"))?,
            id_hash: u64_at(self.hashes, i),
            length: u32_at(self.lengths, i),
        })
    }

    /// The posting list of `term`, when the segment has it.
    pub fn postings(&self, term: u64) -> Result<Option<Postings<'a>>> {
        let m = self.terms.len() / 8;
        let (mut lo, mut hi) = (0, m);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match u64_at(self.terms, mid).cmp(&term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let start = if mid == 0 {
                        0
                    } else {
                        u32_at(self.ends, mid - 1) as usize
                    };
                    let end = u32_at(self.ends, mid) as usize;
                    if end == start {
                        return Ok(Some(Postings::External));
                    }
                    return self
                        .inline
                        .get(start..end)
                        .map(|p| Some(Postings::Inline(p)))
                        .ok_or(SegmentError("bad term dictionary"));
                }
            }
        }
        Ok(None)
    }

    /// In a summaries segment: the doc of conversation `id`, with its first
    /// time and facts.
    pub fn find(&self, id: &str) -> Result<Option<Summary<'a>>> {
        let Some((records, names)) = self.facts.as_ref() else {
            return Ok(None);
        };
        let hash = id_hash(id);
        // Docs are in hash order: the first with this hash, then the equal ones.
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if u64_at(self.hashes, mid) < hash {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for i in (lo..self.n).take_while(|&i| u64_at(self.hashes, i) == hash) {
            if self.id_bytes(i)? != id.as_bytes() {
                continue;
            }
            let r = &records[i * FACTS_BYTES..(i + 1) * FACTS_BYTES];
            let mut time = [0u8; 8];
            time.copy_from_slice(&r[..8]);
            let time = i64::from_le_bytes(time);
            let name = |k: usize| {
                names
                    .get(usize::from(u16_at(r, 11 + 2 * k)))
                    .copied()
                    .ok_or(SegmentError("bad facts"))
            };
            if r[9] > 5 || r[10] > 2 {
                return Err(SegmentError("bad facts"));
            }
            return Ok(Some(Summary {
                started_ms: (time != NO_TIME).then_some(time),
                topic: name(0)?,
                agent: name(1)?,
                language: name(2)?,
                counted: Counted {
                    label: label_of(r[8])?,
                    satisfaction: r[9],
                    resolved: match r[10] {
                        1 => Some(false),
                        2 => Some(true),
                        _ => None,
                    },
                    score_units: 0,
                },
            }));
        }
        Ok(None)
    }
}

/// A conversation of a summaries segment: its first time and what the
/// drill-down knows of it (`score_units` is not kept: 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary<'a> {
    pub started_ms: Option<i64>,
    pub topic: &'a str,
    pub agent: &'a str,
    pub language: &'a str,
    pub counted: Counted,
}

/// One doc of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doc<'a> {
    pub id: &'a str,
    pub id_hash: u64,
    /// Its tokens.
    pub length: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::text::{Form, term};

    fn segment() -> Segment {
        let mut b = SegmentBuilder::default();
        b.doc("c1");
        b.text("Power cut in Lalitpur");
        b.text("cut again, power is off");
        b.doc("c2");
        b.text("");
        b.doc("c3");
        b.text(&"power ".repeat(300));
        b.finish()
    }

    fn postings<'a>(s: &'a Segment, view: &SegmentView<'a>, word: &str) -> &'a [u8] {
        let t = term(Form::Exact, word);
        match view.postings(t).unwrap() {
            Some(Postings::Inline(p)) => p,
            Some(Postings::External) => &s.external.iter().find(|(k, _)| *k == t).unwrap().1,
            None => panic!("{word} not indexed"),
        }
    }

    #[test]
    fn a_segment_reads_back_its_docs_and_postings() {
        let s = segment();
        let view = SegmentView::read(&s.value).unwrap();
        assert_eq!((view.len(), view.tokens()), (3, 309));
        let c1 = view.doc(0).unwrap();
        assert_eq!((c1.id, c1.length), ("c1", 9));
        assert_eq!(c1.id_hash, id_hash("c1"));
        assert!(view.doc(3).is_err());
        // "power" 302 times: too long to be inline.
        assert_eq!(
            view.postings(term(Form::Exact, "power")).unwrap(),
            Some(Postings::External)
        );
        assert_eq!(s.external.len(), 1);
        let mut power = Vec::new();
        hits(postings(&s, &view, "power"), |h| {
            power.push((h.doc, h.occurrences))
        })
        .unwrap();
        assert_eq!(power, [(0, 2), (2, 300)]);
        let mut at = Vec::new();
        occurrences(postings(&s, &view, "cut"), &mut at).unwrap();
        // The second text starts after a gap: "in Lalitpur" ends at 3.
        assert_eq!(at, [(0, 1), (0, 5)]);
        assert!(view.postings(term(Form::Exact, "meter")).unwrap().is_none());
        assert!(
            view.find("c1").unwrap().is_none(),
            "a messages segment has no facts"
        );
    }

    #[test]
    fn a_summaries_segment_finds_each_conversation_with_its_facts() {
        let facts = |topic: &str, sat| RowFacts {
            topic: topic.into(),
            agent: "Sita".into(),
            language: String::new(),
            counted: Counted {
                label: SentimentLabel::Positive,
                satisfaction: sat,
                resolved: Some(true),
                score_units: 0,
            },
        };
        let mut ids: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
        ids.sort_by_key(|id| id_hash(id));
        let mut b = SegmentBuilder::default();
        for (i, id) in ids.iter().enumerate() {
            b.summary_doc(
                id,
                (i % 2 == 0).then_some(i as i64),
                facts(if i % 3 == 0 { "meter" } else { "outage" }, 4),
            );
            b.text("Customer reported an outage");
        }
        let s = b.finish();
        let view = SegmentView::read(&s.value).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let found = view.find(id).unwrap().unwrap();
            assert_eq!(found.started_ms, (i % 2 == 0).then_some(i as i64));
            let want = facts(if i % 3 == 0 { "meter" } else { "outage" }, 4);
            assert_eq!(
                (found.topic, found.agent, found.language),
                (want.topic.as_str(), "Sita", "")
            );
            assert_eq!(found.counted, want.counted);
        }
        assert!(view.find("c50").unwrap().is_none());
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let s = segment();
        for cut in 0..s.value.len() {
            if let Ok(view) = SegmentView::read(&s.value[..cut]) {
                let _ = view.doc(0);
                let _ = view.postings(term(Form::Exact, "cut"));
                let _ = view.find("c1");
            }
        }
        let mut forged = s.value.clone();
        forged[2] = 0x7f; // 127 docs claimed
        assert!(SegmentView::read(&forged).is_err());
        // An id offset past the ids: read, then refused where used.
        let mut forged = s.value.clone();
        let first_offset = 2 + 1 + 2 + 3 * 8 + 3 * 4;
        forged[first_offset + 4] = 0xff;
        assert!(SegmentView::read(&forged).is_ok_and(|v| v.doc(0).is_err()));
        let p = &s.external[0].1;
        for cut in 0..p.len() {
            let _ = hits(&p[..cut], |_| {});
            let _ = occurrences(&p[..cut], &mut Vec::new());
        }
    }
}
