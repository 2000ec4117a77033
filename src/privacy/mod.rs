//! Personal data out of text before it leaves the machine.
//!
//! A [`Redactor`] is built once from `[privacy]` ([`PrivacySettings`]) and
//! shared; a [`Session`] redacts the texts of one conversation, so that the
//! same value gets the same placeholder wherever it appears in it
//! (`<PHONE_1>` for `+977 9841234567` and for `984-123-4567` alike, `<NAME_1>`
//! for the customer whose sender name is `Sita Sharma` and for `Sita` in a
//! message). Plain code: no actix, no I/O.
//!
//! What is recognised ([`Kind`]): e-mail addresses; phone numbers, national
//! (in `privacy.regions`) and international, with any separators, checked
//! against libphonenumber's metadata (`phonenumber`); payment cards
//! (Luhn); IBANs (mod 97); IPv4 and IPv6 addresses; runs of digits that a
//! context word calls an identifier (customer, consumer, account, SC,
//! meter, citizenship numbers…); the names senders have in the export, each
//! part of them, wherever they appear; the operator's deny-list and
//! patterns. What is kept, because the analysis needs it: amounts
//! (`Rs. 5,998`), units and volts (`220V`, `450 units`), dates and times,
//! USSD codes (`*977#`), numbers a keep word introduces (`ticket 48213`).
//!
//! Where text is redacted: every transcript the OpenAI analyzer sends
//! (`analyze::openai`, one narrow point), `powerpulse redact --preview`,
//! redacted exports, and whoever shows a transcript to someone who may not
//! see it whole.

mod context;
mod names;
mod numbers;
mod patterns;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::config::{PrivacySettings, RedactMode};
use crate::model::{Conversation, Message, Role};

/// Bumped whenever a recogniser changes what it finds: part of the policy's
/// fingerprint, so analyses made under the old recognisers are not reused.
pub const REDACTOR_VERSION: &str = "redact-1";

/// What a redacted value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Card,
    Iban,
    Ip,
    /// Digits a context word calls an identifier (customer, account, SC,
    /// meter, citizenship number, …).
    Id,
    /// A sender's name, or part of it.
    Name,
    /// A word or phrase of `privacy.deny`.
    Denied,
    /// The operator pattern of this index in `privacy.patterns`.
    Pattern(u16),
}

impl Kind {
    /// The built-in kinds, in the order counts list them.
    pub const BUILT_IN: [Kind; 8] = [
        Kind::Email,
        Kind::Phone,
        Kind::Card,
        Kind::Iban,
        Kind::Ip,
        Kind::Id,
        Kind::Name,
        Kind::Denied,
    ];

    fn index(self) -> usize {
        match self {
            Kind::Email => 0,
            Kind::Phone => 1,
            Kind::Card => 2,
            Kind::Iban => 3,
            Kind::Ip => 4,
            Kind::Id => 5,
            Kind::Name => 6,
            Kind::Denied => 7,
            Kind::Pattern(i) => Self::BUILT_IN.len() + usize::from(i),
        }
    }

    /// The name counts use (`phone`, `email`, …); an operator pattern's is
    /// its own.
    pub fn builtin_name(self) -> Option<&'static str> {
        Some(match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::Iban => "iban",
            Kind::Ip => "ip",
            Kind::Id => "id",
            Kind::Name => "name",
            Kind::Denied => "denied",
            Kind::Pattern(_) => return None,
        })
    }
}

/// Why a `[privacy]` section cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivacyError {
    #[error("unknown region {0:?}: use an ISO 3166 code such as \"NP\" or \"IN\"")]
    Region(String),
    #[error("{0}")]
    Words(String),
    #[error("pattern {name:?}: {reason}")]
    Pattern {
        index: usize,
        name: String,
        reason: String,
    },
}

impl PrivacyError {
    /// The setting at fault, as a dotted key.
    pub fn key(&self) -> String {
        match self {
            PrivacyError::Region(_) => "privacy.regions".into(),
            PrivacyError::Words(_) => "privacy".into(),
            PrivacyError::Pattern { index, .. } => format!("privacy.patterns[{index}]"),
        }
    }
}

/// How many values of each kind were redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// By [`Kind::index`].
    by_kind: Vec<u64>,
}

impl Counts {
    fn bump(&mut self, kind: Kind) {
        let i = kind.index();
        if self.by_kind.len() <= i {
            self.by_kind.resize(i + 1, 0);
        }
        self.by_kind[i] += 1;
    }

    pub fn add(&mut self, other: &Counts) {
        if self.by_kind.len() < other.by_kind.len() {
            self.by_kind.resize(other.by_kind.len(), 0);
        }
        for (mine, theirs) in self.by_kind.iter_mut().zip(&other.by_kind) {
            *mine += theirs;
        }
    }

    pub fn of(&self, kind: Kind) -> u64 {
        self.by_kind.get(kind.index()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// A compiled `[privacy]` policy. Cheap to clone.
#[derive(Clone)]
pub struct Redactor {
    policy: Arc<Policy>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("fingerprint", &self.policy.fingerprint)
            .finish()
    }
}

struct Policy {
    phones: numbers::Phones,
    cues: context::Cues,
    id_min_digits: usize,
    deny: Option<patterns::Deny>,
    patterns: Vec<patterns::Pattern>,
    fingerprint: String,
}

impl Redactor {
    pub fn new(settings: &PrivacySettings) -> Result<Self, PrivacyError> {
        let policy = Policy {
            phones: numbers::Phones::new(&settings.regions)?,
            cues: context::Cues::new(&settings.id_context, &settings.keep_context)?,
            id_min_digits: settings.id_min_digits.max(1) as usize,
            deny: patterns::Deny::new(&settings.deny)?,
            patterns: settings
                .patterns
                .iter()
                .enumerate()
                .map(|(i, p)| patterns::Pattern::new(i, p))
                .collect::<Result<_, _>>()?,
            fingerprint: fingerprint(settings),
        };
        Ok(Self {
            policy: Arc::new(policy),
        })
    }

    /// Checks `settings` as [`Redactor::new`] would, without loading the
    /// phone metadata (configuration loading).
    pub fn check(settings: &PrivacySettings) -> Result<(), PrivacyError> {
        numbers::Phones::check(&settings.regions)?;
        context::Cues::new(&settings.id_context, &settings.keep_context)?;
        patterns::Deny::new(&settings.deny)?;
        for (i, p) in settings.patterns.iter().enumerate() {
            patterns::Pattern::new(i, p)?;
        }
        Ok(())
    }

    /// Identifies the policy: the recognisers' version and every setting
    /// that changes what is redacted (`redact` aside: whether to redact is
    /// not how). `redact-1-` and 16 hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.policy.fingerprint
    }

    /// A session for one conversation whose senders are named `names`.
    pub fn session<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Session<'_> {
        let mut known = names::Names::default();
        for name in names {
            known.add(name);
        }
        Session {
            policy: &self.policy,
            names: known,
            placeholders: HashMap::new(),
            next: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// A session for `messages`, knowing the names their customers and
    /// agents have.
    pub fn session_for<'m>(&self, messages: impl IntoIterator<Item = &'m Message>) -> Session<'_> {
        self.session(
            messages
                .into_iter()
                .filter(|m| m.role != Role::Bot)
                .filter_map(|m| m.sender_name.as_deref()),
        )
    }

    /// A transcript as a reader without the right to see personal data is
    /// shown it: the messages' texts and sender names, and the `summary` an
    /// analyzer made of them (which may quote them), in one session, so a
    /// value has the same placeholder in the summary as in the messages.
    pub fn redact_transcript(&self, messages: &[Message], summary: Option<&str>) -> Transcript {
        let mut session = self.session_for(messages);
        let messages = messages
            .iter()
            .map(|m| Message {
                text: session.redact(&m.text).into_owned(),
                sender_name: m
                    .sender_name
                    .as_deref()
                    .map(|n| session.redact(n).into_owned()),
                ..m.clone()
            })
            .collect();
        let summary = summary.map(|s| session.redact(s).into_owned());
        Transcript {
            messages,
            summary,
            counts: session.counts,
        }
    }

    /// The messages an analyzer reads (autoresponses left out), their
    /// texts redacted in one session: what an LLM is sent.
    pub fn redact_analysable(&self, conversation: &Conversation) -> Redacted {
        let mut session = self.session_for(&conversation.messages);
        let messages = conversation
            .analysable()
            .map(|m| Message {
                role: m.role,
                text: session.redact(&m.text).into_owned(),
                timestamp: None,
                time_ms: m.time_ms,
                sender_name: None,
                autoresponse: false,
            })
            .collect();
        Redacted {
            conversation: Conversation {
                id: conversation.id.clone(),
                messages,
            },
            counts: session.counts,
        }
    }

    /// The name each count goes by: `phone`, `email`, … and the operator
    /// patterns' names.
    pub fn named_counts(&self, counts: &Counts) -> Vec<(String, u64)> {
        let builtin = Kind::BUILT_IN
            .iter()
            .map(|k| (k.builtin_name().unwrap_or_default().to_string(), *k));
        let custom = self
            .policy
            .patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name().to_string(), Kind::Pattern(i as u16)));
        builtin
            .chain(custom)
            .map(|(name, kind)| (name, counts.of(kind)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// A conversation as it is sent, and what was redacted from it.
#[derive(Debug, Clone)]
pub struct Redacted {
    pub conversation: Conversation,
    pub counts: Counts,
}

/// A transcript as [`Redactor::redact_transcript`] shows it.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub messages: Vec<Message>,
    pub summary: Option<String>,
    pub counts: Counts,
}

/// Whether text sent to an analyzer server at `base_url` is redacted.
/// `auto` redacts unless the server is on this machine: a loopback address
/// or `localhost`. (A local proxy forwarding to a provider is not on this
/// machine in that sense: say `on`.)
pub fn applies(mode: RedactMode, base_url: &str) -> bool {
    match mode {
        RedactMode::On => true,
        RedactMode::Off => false,
        RedactMode::Auto => !is_loopback(base_url),
    }
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

fn fingerprint(settings: &PrivacySettings) -> String {
    let how = PrivacySettings {
        redact: RedactMode::On,
        ..settings.clone()
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(REDACTOR_VERSION.as_bytes());
    hasher.update(&serde_json::to_vec(&how).unwrap_or_default());
    let hash = hasher.finalize();
    let hex: String = hash.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{REDACTOR_VERSION}-{hex}")
}

/// One value found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    range: Range<usize>,
    kind: Kind,
    /// The value normalised (an E.164 number, a lower-case address, …):
    /// equal values share a placeholder.
    value: String,
}

/// Redacts the texts of one conversation, numbering placeholders as values
/// first appear.
pub struct Session<'r> {
    policy: &'r Policy,
    names: names::Names,
    placeholders: HashMap<(Kind, String), u32>,
    /// The next number of each kind, by [`Kind::index`].
    next: Vec<u32>,
    counts: Counts,
}

impl Session<'_> {
    /// `text` with every personal value replaced by its placeholder;
    /// borrowed when there was none.
    pub fn redact<'t>(&mut self, text: &'t str) -> Cow<'t, str> {
        let found = self.find(text);
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 8 * found.len());
        let mut at = 0;
        for f in found {
            out.push_str(&text[at..f.range.start]);
            self.counts.bump(f.kind);
            let n = self.number(f.kind, f.value);
            self.push_placeholder(&mut out, f.kind, n);
            at = f.range.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Where `text` holds personal values and of what kind: what
    /// [`Session::redact`] would replace (nothing is numbered or counted).
    pub fn locate(&self, text: &str) -> Vec<(Range<usize>, Kind)> {
        self.find(text)
            .into_iter()
            .map(|f| (f.range, f.kind))
            .collect()
    }

    /// What was redacted so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn into_counts(self) -> Counts {
        self.counts
    }

    fn number(&mut self, kind: Kind, value: String) -> u32 {
        let next = &mut self.next;
        *self.placeholders.entry((kind, value)).or_insert_with(|| {
            let i = kind.index();
            if next.len() <= i {
                next.resize(i + 1, 0);
            }
            next[i] += 1;
            next[i]
        })
    }

    fn push_placeholder(&self, out: &mut String, kind: Kind, n: u32) {
        use std::fmt::Write;
        out.push('<');
        match kind {
            Kind::Pattern(i) => out.push_str(self.policy.patterns[usize::from(i)].label()),
            Kind::Denied => out.push_str("REDACTED"),
            other => {
                let name = other.builtin_name().unwrap_or_default();
                out.extend(name.chars().map(|c| c.to_ascii_uppercase()));
            }
        }
        let _ = write!(out, "_{n}>");
    }

    /// Every value in `text`, in order, none overlapping another.
    fn find(&self, text: &str) -> Vec<Found> {
        let policy = self.policy;
        let mut found = Vec::new();
        if let Some(deny) = &policy.deny {
            deny.find(text, &mut found);
        }
        for pattern in &policy.patterns {
            pattern.find(text, &mut found);
        }
        patterns::emails(text, &mut found);
        patterns::ibans(text, &mut found);
        patterns::ipv6(text, &mut found);
        numbers::find(
            text,
            &numbers::Rules {
                phones: &policy.phones,
                cues: &policy.cues,
                id_min_digits: policy.id_min_digits,
            },
            &mut found,
        );
        self.names.find(text, &mut found);
        settle(found)
    }
}

/// Orders what was found and drops what overlaps something found earlier
/// in the text (or as early and longer): one placeholder per stretch.
fn settle(mut found: Vec<Found>) -> Vec<Found> {
    found.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    });
    let mut kept: Vec<Found> = Vec::with_capacity(found.len());
    for f in found {
        if kept.last().is_some_and(|k| f.range.start < k.range.end) {
            continue;
        }
        kept.push(f);
    }
    kept
}

/// Whether `range` of some text overlaps anything in `found`.
fn taken(found: &[Found], range: &Range<usize>) -> bool {
    found
        .iter()
        .any(|f| f.range.start < range.end && range.start < f.range.end)
}
