//! Settings, layered: built-in defaults, then `config.toml`, then environment
//! variables (`POWERPULSE__SECTION__KEY=value`, plus the few well-known names
//! listed in [`Settings::load`]).
//!
//! API keys never live here: the config names the environment variable that
//! holds the key (`analyzer.openai.api_key_env`) and the key itself is read
//! into a [`secrecy::SecretString`] by the analyzer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::access::{ANONYMOUS, Credential, SERVER_TOKEN_NAME};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub ingest: IngestSettings,
    pub analyzer: AnalyzerSettings,
    pub storage: StorageSettings,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub notify: NotifySettings,
    /// What is redacted from text before it leaves the machine.
    pub privacy: PrivacySettings,
    pub alerts: AlertSettings,
    /// What conversations are about: the LLM picks one by `description`, the
    /// lexicon by `keywords`. Replaces the default list when given.
    pub topics: Vec<TopicSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ingest: IngestSettings::default(),
            analyzer: AnalyzerSettings::default(),
            storage: StorageSettings::default(),
            server: ServerSettings::default(),
            log: LogSettings::default(),
            notify: NotifySettings::default(),
            privacy: PrivacySettings::default(),
            alerts: AlertSettings::default(),
            topics: TopicSettings::defaults(),
        }
    }
}

/// How log lines are written (to stderr, which journald captures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// Webhook notifications: a POST when an upload completes, fails or is cancelled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// Where events are POSTed (http or https); none are sent when unset.
    pub webhook_url: Option<String>,
    /// Key of the `X-PowerPulse-Signature: sha256=<HMAC-SHA256 of the body>`
    /// header; better set through `POWERPULSE_WEBHOOK_SECRET`.
    pub secret: Option<String>,
    /// Attempts per event (the first included) before it is given up.
    pub max_attempts: u32,
    /// Wait before the first retry; each next one doubles, up to a minute.
    pub backoff_ms: u64,
    /// Longest one delivery attempt may take.
    pub timeout_seconds: u64,
    /// Events pending (queued or being delivered); beyond this, new ones
    /// are dropped (and counted).
    pub queue_capacity: usize,
    /// The body's shape: PowerPulse's JSON, or a message Slack's or
    /// Microsoft Teams' incoming webhooks take.
    pub format: WebhookFormat,
    /// A summary of the last day or week, sent by `serve` at `digest_hour`.
    pub digest: DigestSchedule,
    /// The hour (UTC, 0–23) the digest goes out.
    pub digest_hour: u8,
    /// The day a weekly digest goes out.
    pub digest_weekday: Weekday,
    /// Where people open the dashboard (e.g. `https://pp.example`): events
    /// then link to the conversations behind them. Unset: no links.
    pub dashboard_url: Option<String>,
}

/// The shape of a webhook's body (`notify.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The event as JSON (see the README).
    #[default]
    Json,
    /// `{"text", "blocks"}`: a Slack incoming webhook's message.
    Slack,
    /// An Adaptive Card message: a Microsoft Teams workflow webhook's.
    Teams,
}

/// How often the digest goes out (`notify.digest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestSchedule {
    #[default]
    Off,
    /// Each day, about the day before.
    Daily,
    /// Each `digest_weekday`, about the seven days before.
    Weekly,
}

/// A day of the week (`notify.digest_weekday`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    #[default]
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub fn to_chrono(self) -> chrono::Weekday {
        match self {
            Weekday::Monday => chrono::Weekday::Mon,
            Weekday::Tuesday => chrono::Weekday::Tue,
            Weekday::Wednesday => chrono::Weekday::Wed,
            Weekday::Thursday => chrono::Weekday::Thu,
            Weekday::Friday => chrono::Weekday::Fri,
            Weekday::Saturday => chrono::Weekday::Sat,
            Weekday::Sunday => chrono::Weekday::Sun,
        }
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            secret: None,
            max_attempts: 6,
            backoff_ms: 1000,
            timeout_seconds: 10,
            queue_capacity: 256,
            format: WebhookFormat::Json,
            digest: DigestSchedule::Off,
            digest_hour: 8,
            digest_weekday: Weekday::Monday,
            dashboard_url: None,
        }
    }
}

/// Incident alerts (`[alerts]`): when a topic's or an agent's day stands
/// out from its own history (the rule: `crate::alerts::rule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Look for alerts at all (after each completed upload, and hourly in `serve`).
    pub enabled: bool,
    /// Same weekdays before the day in its weekly baseline.
    pub weeks: u8,
    /// Days just before the day in its recent baseline.
    pub recent_days: u8,
    /// Robust spreads (1.4826 × median absolute deviation, at least the
    /// figure's sampling noise) the day must be beyond both baselines.
    pub threshold: f64,
    /// Fewest conversations of the topic or agent that day to judge it.
    pub min_conversations: u64,
    /// Volume: at least this many times the baseline.
    pub min_volume_ratio: f64,
    /// Negative share: at least this much higher (0.15 = 15 points).
    pub min_share_increase: f64,
    /// Satisfaction: at least this much lower (on 1–5).
    pub min_satisfaction_drop: f64,
    /// Days judged each time, back from the newest day with conversations.
    pub lookback_days: u16,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            weeks: 6,
            recent_days: 7,
            threshold: 4.0,
            min_conversations: 20,
            min_volume_ratio: 1.5,
            min_share_increase: 0.15,
            min_satisfaction_drop: 0.5,
            lookback_days: 60,
        }
    }
}

impl AlertSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: format!("alerts.{key}"),
            message: message.into(),
        };
        if !(1..=52).contains(&self.weeks) {
            return Err(invalid("weeks", "must be 1 to 52"));
        }
        if !(1..=90).contains(&self.recent_days) {
            return Err(invalid("recent_days", "must be 1 to 90"));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(invalid("threshold", "must be a number above 0"));
        }
        if !(self.min_volume_ratio.is_finite() && self.min_volume_ratio >= 1.0) {
            return Err(invalid("min_volume_ratio", "must be 1 or more"));
        }
        if !(0.0..=1.0).contains(&self.min_share_increase) {
            return Err(invalid("min_share_increase", "must be 0 to 1"));
        }
        if !(0.0..=4.0).contains(&self.min_satisfaction_drop) {
            return Err(invalid("min_satisfaction_drop", "must be 0 to 4"));
        }
        if !(1..=3660).contains(&self.lookback_days) {
            return Err(invalid("lookback_days", "must be 1 to 3660"));
        }
        Ok(())
    }
}

impl NotifySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("notify.{key}"),
            message,
        };
        if let Some(url) = &self.webhook_url {
            // The URL is not quoted back: webhook URLs often carry a token.
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => {
                    return Err(invalid(
                        "webhook_url",
                        "must be an http or https URL".into(),
                    ));
                }
                Err(e) => return Err(invalid("webhook_url", format!("not a URL ({e})"))),
            }
        }
        for (key, value) in [
            ("max_attempts", u64::from(self.max_attempts)),
            ("timeout_seconds", self.timeout_seconds),
            ("queue_capacity", self.queue_capacity as u64),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if self.max_attempts > 100 {
            return Err(invalid("max_attempts", "at most 100".into()));
        }
        if self.timeout_seconds > MAX_TIMEOUT_SECONDS
            || self.backoff_ms / 1000 > MAX_TIMEOUT_SECONDS
        {
            return Err(invalid(
                "timeout_seconds",
                "timeouts and backoffs are at most a year".into(),
            ));
        }
        if self.queue_capacity > 1_000_000 {
            return Err(invalid("queue_capacity", "at most 1000000".into()));
        }
        if self.digest != DigestSchedule::Off
            && self.webhook_url.as_deref().is_none_or(str::is_empty)
        {
            return Err(invalid(
                "digest",
                "a digest is sent to notify.webhook_url: set it too".into(),
            ));
        }
        if self.digest_hour > 23 {
            return Err(invalid("digest_hour", "an hour of the day, 0 to 23".into()));
        }
        if let Some(url) = &self.dashboard_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return Err(invalid(
                        "dashboard_url",
                        format!("{url:?} is not an http or https URL"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// When the analyzer's text is redacted (`privacy.redact`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactMode {
    /// Whenever the text leaves this machine: the OpenAI analyzer, unless
    /// its `base_url` is a loopback address (a model server on this box).
    #[default]
    Auto,
    /// Always, wherever the analyzer's server is.
    On,
    /// Never: transcripts go out as the export wrote them.
    Off,
}

impl RedactMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedactMode::Auto => "auto",
            RedactMode::On => "on",
            RedactMode::Off => "off",
        }
    }
}

/// Personal data replaced by placeholders before text leaves the machine
/// (`[privacy]`; the recognisers are in [`crate::privacy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    pub redact: RedactMode,
    /// Regions (ISO 3166 codes) whose national phone numbers are recognised
    /// without a country code, tried in order; international ones (`+CC`,
    /// `00CC`) are recognised for every country.
    pub regions: Vec<String>,
    /// Words that make a run of digits after them (or just before them) an
    /// identifier: customer, account, SC, meter, citizenship numbers.
    pub id_context: Vec<String>,
    /// Words that make the number right after them something to keep
    /// (tickets, readings, bills), unless it is a phone or card number.
    pub keep_context: Vec<String>,
    /// Digits an identifier must have to be redacted.
    pub id_min_digits: u32,
    /// Words or phrases always redacted (case-insensitive, whole words).
    pub deny: Vec<String>,
    /// The operator's own recognisers (`[[privacy.patterns]]`).
    pub patterns: Vec<PatternSettings>,
}

/// One operator recogniser: what `regex` matches becomes `<NAME_n>`,
/// when one of `context` (if any) is within a few words before or after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSettings {
    /// Lower-case letters, digits and `_`; its placeholder is the name in
    /// capitals.
    pub name: String,
    pub regex: String,
    #[serde(default)]
    pub context: Vec<String>,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        Self {
            redact: RedactMode::Auto,
            regions: vec!["NP".to_string()],
            id_context: words(&[
                "customer",
                "consumer",
                "account",
                "a/c",
                "acct",
                "sc",
                "s.c.",
                "service connection",
                "meter",
                "citizenship",
                "passport",
                "licence",
                "license",
                "pan",
                "voter",
                "national id",
                "grahak",
                "upabhokta",
                "khata",
                "nagarikta",
                "ग्राहक",
                "उपभोक्ता",
                "खाता",
                "मिटर",
                "मीटर",
                "एससी",
                "नागरिकता",
                "राहदानी",
            ]),
            keep_context: words(&[
                "ticket",
                "complaint",
                "token",
                "ref",
                "reference",
                "case",
                "request",
                "order",
                "receipt",
                "invoice",
                "bill",
                "transaction",
                "txn",
                "reading",
                "ward",
                "उजुरी",
                "टिकट",
                "बिल",
                "रिडिङ",
                "वडा",
            ]),
            id_min_digits: 5,
            deny: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// One topic a conversation can be about (`[[topics]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// The topic's name, as stored and reported (`outage`, `billing`, …).
    pub name: String,
    /// What it covers, in words the LLM reads, where the name alone would
    /// not say (every description is tokens on every call).
    #[serde(default)]
    pub description: String,
    /// Words or phrases (any language, case-insensitive, matched inside
    /// words) the lexicon counts for it.
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_NAME_BYTES: usize = 64;
/// Most topics a configuration may list.
pub const MAX_TOPICS: usize = 64;

impl TopicSettings {
    fn new(name: &str, description: &str, keywords: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            description: description.to_string(),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
        }
    }

    /// The default topics of a power utility's support desk, described only
    /// where the name alone is ambiguous.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::new(
                "outage",
                "",
                &[
                    "outage",
                    "no power",
                    "power cut",
                    "power is off",
                    "power went",
                    "power off",
                    "power failure",
                    "blackout",
                    "no electricity",
                    "electricity is off",
                    "no light",
                    "no current",
                    "load shedding",
                    "lights are off",
                    "lights went",
                    "went dark",
                    "gone dark",
                    "cut off",
                    "cutting off",
                    "been off",
                    "went off",
                    "power back",
                    "come back",
                    "restor",
                    "shutdown",
                    "transformer",
                    "bijuli chaina",
                    "bijuli gayo",
                    "batti gayo",
                    "batti chaina",
                    "batti kaile",
                    "light gayo",
                    "बत्ती छैन",
                    "बत्ती गयो",
                    "बत्ती गएको",
                    "बत्ती आएको छैन",
                    "बत्ती कहिले",
                    "बत्ती आउँदैन",
                    "बिजुली छैन",
                    "बिजुली गयो",
                    "बिजुली गएको",
                    "ट्रान्सफर्मर",
                    "लोडसेडिङ",
                    "अँध्यारो",
                ],
            ),
            Self::new(
                "billing",
                "",
                &[
                    "bill",
                    "invoice",
                    "statement",
                    "charge",
                    "tariff",
                    "overcharg",
                    "amount due",
                    "late fee",
                    "arrear",
                    "too high",
                    "units",
                    "बिल",
                    "महसुल",
                    "शुल्क",
                    "धेरै आयो",
                ],
            ),
            Self::new("meter", "", &["meter", "reading", "मिटर", "मीटर", "रिडिङ"]),
            Self::new(
                "connection",
                "new, transfer, name change",
                &[
                    "new connection",
                    "connection",
                    "new line",
                    "three phase",
                    "single phase",
                    "transfer",
                    "name change",
                    "change the name",
                    "change of name",
                    "to my name",
                    "ownership",
                    "new house",
                    "temporary supply",
                    "upgrade",
                    "amp",
                    "load increase",
                    "reconnect",
                    "disconnect",
                    "close my account",
                    "apply for",
                    "application",
                    "naya line",
                    "जडान",
                    "नामसारी",
                    "नाम सार",
                    "नयाँ लाइन",
                    "लाइन जोड",
                    "निवेदन",
                ],
            ),
            Self::new(
                "voltage",
                "damage too",
                &[
                    "voltage",
                    "fluctuat",
                    "flicker",
                    "dim",
                    "spark",
                    "burnt",
                    "burned",
                    "damaged",
                    "low power",
                    "surge",
                    "short circuit",
                    "shock",
                    "भोल्टेज",
                    "झिलिमिली",
                    "जल्यो",
                    "बिग्रियो",
                    "करेन्ट",
                ],
            ),
            Self::new(
                "payment",
                "paying, errors",
                &[
                    "payment",
                    "paid",
                    "pay ",
                    "pay my",
                    "online",
                    "esewa",
                    "khalti",
                    "fonepay",
                    "mobile banking",
                    "transaction",
                    "deducted",
                    "debit",
                    "receipt",
                    "refund",
                    "qr code",
                    "भुक्तानी",
                    "तिरे",
                    "तिरिए",
                    "तिर्न",
                    "पैसा",
                    "खल्ती",
                    "इसेवा",
                ],
            ),
            Self::new("other", "", &[]),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// What the exports are: `auto` (sniffed from each file's name and
    /// content) or one format for every file (`csv`, `whatsapp`, …).
    #[serde(with = "auto_format")]
    pub format: Option<crate::ingest::Format>,
    /// The business side's sender names, or patterns (`*` any run of
    /// characters, `?` one), for exports that name senders but not their
    /// roles (WhatsApp, Messenger, Telegram, a table without a role column).
    pub agents: Vec<String>,
    /// A message containing any of these (case-insensitive) is an autoresponse.
    pub autoresponse_patterns: Vec<String>,
    /// Largest upload the HTTP endpoint accepts, in bytes.
    pub max_upload_bytes: u64,
    /// Longest single field (message text) accepted; longer rows are skipped with a warning.
    pub max_field_bytes: usize,
    /// XLSX: most rows a sheet may have (its declared size and its real one).
    pub xlsx_max_rows: u32,
    /// XLSX: most columns a sheet may have.
    pub xlsx_max_columns: u32,
    /// XLSX: most non-empty cells a sheet may have.
    pub xlsx_max_cells: u64,
    /// XLSX: most bytes the workbook may inflate to (a zip bomb is refused
    /// before anything is allocated for it); also a zip of exports' limit.
    pub xlsx_max_inflated_bytes: u64,
    /// Explicit column names, overriding the built-in aliases.
    pub columns: ColumnOverrides,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            format: None,
            agents: Vec::new(),
            autoresponse_patterns: vec!["*977#".to_string()],
            max_upload_bytes: 100 * 1024 * 1024,
            max_field_bytes: 1024 * 1024,
            xlsx_max_rows: 1_048_576,
            xlsx_max_columns: 256,
            xlsx_max_cells: 50_000_000,
            xlsx_max_inflated_bytes: 1024 * 1024 * 1024,
            columns: ColumnOverrides::default(),
        }
    }
}

/// `ingest.format`: `"auto"` is `None`.
mod auto_format {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ingest::Format;

    pub fn serialize<S: Serializer>(format: &Option<Format>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(format.map_or("auto", Format::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Format>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// Header names to use instead of the aliases, one per logical column.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnOverrides {
    pub conversation_id: Option<String>,
    pub sender: Option<String>,
    pub text: Option<String>,
    pub timestamp: Option<String>,
    pub sender_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `openai` when the API key variable is set, `lexicon` otherwise.
    Auto,
    Lexicon,
    #[serde(rename = "openai")]
    OpenAi,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzerSettings {
    pub backend: Backend,
    /// Conversations in flight at once (the AnalyzerActor pool size).
    pub concurrency: usize,
    /// Conversations read back from the store together (a free analyzer's
    /// unit of work and of commit; an LLM's queue beyond the pool).
    pub batch_size: usize,
    /// Consecutive failures to get any answer (timeouts, refused
    /// connections, 5xx), across conversations and endpoints, after which
    /// the provider is taken to be down: uploads pause and one probe at a
    /// time asks whether it is back.
    pub outage_failures: u32,
    /// How long an outage may last before the uploads it paused stop as
    /// failed (resumable); `0` stops them as soon as it is detected.
    pub outage_timeout_seconds: u64,
    pub openai: OpenAiSettings,
}

impl Default for AnalyzerSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            concurrency: 5,
            batch_size: 256,
            outage_failures: 20,
            outage_timeout_seconds: 900,
            openai: OpenAiSettings::default(),
        }
    }
}

/// A per-minute limit: a number, or `"auto"` to adopt what the provider announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSetting {
    Auto,
    PerMinute(u32),
}

impl Serialize for RateSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RateSetting::Auto => s.serialize_str("auto"),
            RateSetting::PerMinute(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for RateSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(0) => Err(serde::de::Error::custom("a per-minute limit must be > 0")),
            Raw::Number(n) => Ok(RateSetting::PerMinute(n)),
            Raw::Text(t) if t.eq_ignore_ascii_case("auto") => Ok(RateSetting::Auto),
            Raw::Text(t) => t
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(RateSetting::PerMinute)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "expected \"auto\" or a positive number, got {t:?}"
                    ))
                }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiSettings {
    /// Base URL of an OpenAI-compatible API (OpenAI, Azure, vLLM, Ollama, llama.cpp).
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key.
    pub api_key_env: String,
    /// `"bearer"` (OpenAI and most servers) or `"api-key"` (Azure OpenAI).
    pub auth: AuthStyle,
    /// Azure's `api-version` query parameter, when set.
    pub api_version: Option<String>,
    pub requests_per_minute: RateSetting,
    pub tokens_per_minute: RateSetting,
    pub max_retries: u32,
    /// Longest wait a provider's `retry-after` (or reset header) is honoured
    /// for; longer ones are capped to this.
    pub max_retry_wait_seconds: u64,
    /// Largest reply body read; a longer one fails the call.
    pub max_response_bytes: usize,
    pub timeout_seconds: u64,
    /// The reply's token budget (`max_tokens` or `max_completion_tokens`),
    /// sized from the schema: a truncated reply is re-asked, which costs more
    /// than a few spare tokens.
    pub max_output_tokens: u32,
    /// Which parameter carries that budget: `auto` sends
    /// `max_completion_tokens` to api.openai.com and to reasoning models,
    /// `max_tokens` elsewhere (servers that implement the older API).
    pub token_parameter: TokenParameter,
    /// Reasoning models only (o-series, gpt-5 family): `auto` (the least
    /// each family accepts: `minimal` for gpt-5, `low` for o-series),
    /// `minimal`, `low`, `medium` or `high`.
    pub reasoning_effort: String,
    /// Reasoning models only: tokens allowed for hidden reasoning on top of
    /// `max_output_tokens` (they are billed as output).
    pub reasoning_token_budget: u32,
    /// Conversations packed into one request (1 = one call per conversation).
    pub conversations_per_request: u32,
    /// `sync`: one call per conversation, results in seconds. `batch`: the
    /// Batch API, at half the price, results within 24 hours.
    pub mode: LlmMode,
    /// Batch mode: the first wait between polls of a batch, in milliseconds;
    /// each wait is longer, up to a minute.
    pub batch_poll_ms: u64,
    /// Batch mode: batches per upload (the first, then follow-ups of what
    /// failed or expired) before sync calls take what is left.
    pub batch_rounds: u32,
    /// Stop sending once an upload's LLM cost would pass this many US
    /// dollars; the upload stays resumable. Absent: no budget.
    pub max_cost_usd: Option<f64>,
    /// Token budget for the transcript part of a prompt; longer ones are trimmed
    /// keeping their start and end.
    pub max_transcript_tokens: u32,
    /// Longest single message kept whole, in tokens; longer ones are trimmed.
    pub max_message_tokens: u32,
    /// Send `response_format: json_schema` (turn off for servers that reject it).
    pub structured_output: bool,
    /// USD per million tokens, by model name: adds to or overrides the
    /// built-in table (`analyze::openai::models`).
    pub prices: BTreeMap<String, ModelPrice>,
    /// Several endpoints whose limits add up and that stand in for each
    /// other (`[[analyzer.openai.endpoints]]`). Empty: the one endpoint the
    /// keys above describe. Each endpoint's unset keys take the values above.
    pub endpoints: Vec<EndpointSettings>,
}

/// One endpoint of `[[analyzer.openai.endpoints]]`: a base URL with its own
/// key, model and limits. Keys left out take `[analyzer.openai]`'s value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointSettings {
    /// Shown in logs, progress, the summary and `/metrics`; recorded with
    /// each result it made. Letters, digits, `.`, `_`, `-`.
    pub name: String,
    pub base_url: Option<String>,
    /// The environment variable holding this endpoint's key.
    pub api_key_env: Option<String>,
    pub auth: Option<AuthStyle>,
    pub api_version: Option<String>,
    pub model: Option<String>,
    /// An Azure OpenAI deployment: requests go to
    /// `{base_url}/openai/deployments/{deployment}` (the model, for prices
    /// and results, defaults to the deployment's name).
    pub deployment: Option<String>,
    pub requests_per_minute: Option<RateSetting>,
    pub tokens_per_minute: Option<RateSetting>,
    /// Tier: an endpoint gets traffic only while every endpoint of a lower
    /// priority is unavailable (cooling down after errors) or out of its
    /// rate budget. Default 0.
    pub priority: u32,
    /// Share of traffic among endpoints whose free capacity is the same
    /// (unlimited local servers, say): twice the weight, twice the calls in
    /// flight. Default 1.
    pub weight: u32,
    /// Prices for this endpoint, over `[analyzer.openai.prices]`.
    pub prices: BTreeMap<String, ModelPrice>,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            base_url: None,
            api_key_env: None,
            auth: None,
            api_version: None,
            model: None,
            deployment: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            priority: 0,
            weight: 1,
            prices: BTreeMap::new(),
        }
    }
}

/// One endpoint with every key decided: its own, else `[analyzer.openai]`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedEndpoint {
    pub name: String,
    /// Where `chat/completions` is, below: the base URL, with an Azure
    /// deployment's path when one is named.
    pub base_url: String,
    pub api_key_env: String,
    pub auth: AuthStyle,
    pub api_version: Option<String>,
    pub model: String,
    pub requests_per_minute: RateSetting,
    pub tokens_per_minute: RateSetting,
    pub priority: u32,
    pub weight: u32,
    pub prices: BTreeMap<String, ModelPrice>,
}

impl OpenAiSettings {
    /// The endpoints to use: `[[analyzer.openai.endpoints]]`, each filled in
    /// from the keys above it, or the one endpoint those keys describe
    /// (named after its host).
    pub fn resolved_endpoints(&self) -> Vec<ResolvedEndpoint> {
        if self.endpoints.is_empty() {
            return vec![ResolvedEndpoint {
                name: host_name(&self.base_url),
                base_url: self.base_url.clone(),
                api_key_env: self.api_key_env.clone(),
                auth: self.auth,
                api_version: self.api_version.clone(),
                model: self.model.clone(),
                requests_per_minute: self.requests_per_minute,
                tokens_per_minute: self.tokens_per_minute,
                priority: 0,
                weight: 1,
                prices: self.prices.clone(),
            }];
        }
        self.endpoints
            .iter()
            .map(|e| {
                let base = e.base_url.as_deref().unwrap_or(&self.base_url);
                let base_url = match &e.deployment {
                    Some(d) => format!("{}/openai/deployments/{d}", base.trim_end_matches('/')),
                    None => base.to_string(),
                };
                let mut prices = self.prices.clone();
                prices.extend(e.prices.iter().map(|(k, v)| (k.clone(), *v)));
                ResolvedEndpoint {
                    name: e.name.clone(),
                    base_url,
                    api_key_env: e.api_key_env.clone().unwrap_or(self.api_key_env.clone()),
                    auth: e.auth.unwrap_or(self.auth),
                    api_version: e.api_version.clone().or(self.api_version.clone()),
                    model: e
                        .model
                        .clone()
                        .or(e.deployment.clone())
                        .unwrap_or(self.model.clone()),
                    requests_per_minute: e.requests_per_minute.unwrap_or(self.requests_per_minute),
                    tokens_per_minute: e.tokens_per_minute.unwrap_or(self.tokens_per_minute),
                    priority: e.priority,
                    weight: e.weight,
                    prices,
                }
            })
            .collect()
    }

    fn validate_endpoints(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let invalid = |message: String| ConfigError::Invalid {
                key: format!("analyzer.openai.endpoints[{i}]"),
                message,
            };
            let name = e.name.as_str();
            let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if name.is_empty() || name.len() > 64 || !name.chars().all(fine) {
                return Err(invalid(format!(
                    "name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
                )));
            }
            if !seen.insert(name) {
                return Err(invalid(format!("endpoint {name:?} is listed twice")));
            }
            if e.weight == 0 {
                return Err(invalid(format!(
                    "endpoint {name:?}: weight must be at least 1"
                )));
            }
            if e.deployment.as_deref().is_some_and(|d| {
                d.is_empty() || d.contains(|c: char| c == '/' || c == '?' || c.is_whitespace())
            }) {
                return Err(invalid(format!(
                    "endpoint {name:?}: deployment must be a deployment's name"
                )));
            }
        }
        Ok(())
    }
}

/// `host[:port]` of a URL (the name of the single endpoint), or the text
/// itself when it is no URL (the analyzer refuses it later, naming it).
fn host_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        "default".to_string()
    } else {
        host.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStyle {
    Bearer,
    ApiKey,
}

/// How conversations are sent to the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    Sync,
    Batch,
}

/// Which request parameter carries the reply's token budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenParameter {
    Auto,
    MaxTokens,
    MaxCompletionTokens,
}

/// USD per million tokens (priced in `analyze::openai::models`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Input tokens served from the provider's prompt cache; the input price
    /// when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million: Option<f64>,
}

impl Default for OpenAiSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_string(),
            model: "gpt-4o".to_string(),
            api_key_env: "OPENAI_API_KEY".to_string(),
            auth: AuthStyle::Bearer,
            api_version: None,
            requests_per_minute: RateSetting::Auto,
            tokens_per_minute: RateSetting::Auto,
            max_retries: 6,
            max_retry_wait_seconds: 120,
            max_response_bytes: 4 * 1024 * 1024,
            timeout_seconds: 60,
            max_output_tokens: 64,
            token_parameter: TokenParameter::Auto,
            reasoning_effort: "auto".to_string(),
            reasoning_token_budget: 512,
            conversations_per_request: 1,
            mode: LlmMode::Sync,
            batch_poll_ms: 10_000,
            batch_rounds: 2,
            max_cost_usd: None,
            max_transcript_tokens: 3000,
            max_message_tokens: 400,
            structured_output: true,
            prices: BTreeMap::new(),
            endpoints: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// The redb database file.
    pub path: PathBuf,
    /// Results per write transaction.
    pub batch_size: usize,
    /// Longest a result waits for its batch to fill before it is committed anyway.
    pub flush_ms: u64,
    /// Finished uploads (completed, failed, cancelled) older than this many
    /// days are removed, with their messages and results; `0` keeps them
    /// forever. Applied by `serve` (at start, then hourly) and `analyze`.
    pub retention_days: u32,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("powerpulse.redb"),
            batch_size: 256,
            flush_ms: 50,
            retention_days: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    /// Bearer token required on `/api` routes (an admin named `server.token`);
    /// better set through `POWERPULSE_TOKEN`.
    pub token: Option<String>,
    /// Named tokens with a role (`[[server.tokens]]`), kept as hashes:
    /// `powerpulse token add NAME --role ROLE` issues one. Keep the file
    /// that holds them readable by the server's user only (see `access`).
    pub tokens: Vec<Credential>,
    /// Host names (optionally `name:port`) served besides the loopback names;
    /// any other `Host` is refused, so DNS rebinding cannot reach the API.
    /// Required with a non-loopback bind.
    pub allowed_hosts: Vec<String>,
    /// Uploads being received or parsed at once; more are answered 429.
    pub max_concurrent_uploads: usize,
    /// Open progress event streams at once; more are answered 429.
    pub max_sse_subscribers: usize,
    /// An event stream with no change for this long is closed (the client reconnects).
    pub sse_idle_timeout_seconds: u64,
    /// Longest a client may take to send a request's headers.
    pub header_timeout_seconds: u64,
    /// Longest wait for the next piece of a request body.
    pub body_timeout_seconds: u64,
    /// Longest an upload's body may take to arrive, whole.
    pub upload_timeout_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            token: None,
            tokens: Vec::new(),
            allowed_hosts: Vec::new(),
            max_concurrent_uploads: 8,
            max_sse_subscribers: 64,
            sse_idle_timeout_seconds: 300,
            header_timeout_seconds: 5,
            body_timeout_seconds: 30,
            upload_timeout_seconds: 600,
        }
    }
}

/// The longest timeout a setting may ask for.
const MAX_TIMEOUT_SECONDS: u64 = 365 * 24 * 3600;

impl ServerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: format!("server.{key}"),
            message: message.to_string(),
        };
        for (key, value) in [
            ("max_concurrent_uploads", self.max_concurrent_uploads as u64),
            ("max_sse_subscribers", self.max_sse_subscribers as u64),
            ("sse_idle_timeout_seconds", self.sse_idle_timeout_seconds),
            ("header_timeout_seconds", self.header_timeout_seconds),
            ("body_timeout_seconds", self.body_timeout_seconds),
            ("upload_timeout_seconds", self.upload_timeout_seconds),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
            // Deadlines are `now + timeout`: keep them far from overflowing.
            if key.ends_with("_seconds") && value > MAX_TIMEOUT_SECONDS {
                return Err(invalid(key, "must be at most 31536000 (a year)"));
            }
        }
        validate_tokens(&self.tokens)?;
        for host in &self.allowed_hosts {
            let bad = host.is_empty()
                || host.contains(|c: char| c.is_whitespace() || matches!(c, '/' | '@' | ','));
            if bad {
                return Err(invalid(
                    "allowed_hosts",
                    &format!(
                        "{host:?} is not a host name such as \"pp.example\" or \"pp.example:8443\""
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Longest token name, in bytes.
const MAX_TOKEN_NAME_BYTES: usize = 64;

/// Each `[[server.tokens]]` entry names its holder once, printably, and
/// no token is listed twice (under two names it would be two people).
fn validate_tokens(tokens: &[Credential]) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "server.tokens".into(),
        message,
    };
    let mut names = std::collections::HashSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let name = t.name.as_str();
        if name.trim().is_empty()
            || name.len() > MAX_TOKEN_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "token {} is named {name:?}: a name is 1 to {MAX_TOKEN_NAME_BYTES} bytes of printable text",
                i + 1
            )));
        }
        if [SERVER_TOKEN_NAME, ANONYMOUS].contains(&name) {
            return Err(invalid(format!(
                "{name:?} is reserved; name the token otherwise"
            )));
        }
        if !names.insert(name) {
            return Err(invalid(format!("{name:?} is listed twice")));
        }
        if tokens[..i].iter().any(|other| other.hash.matches(&t.hash)) {
            return Err(invalid(format!("{name:?} has the hash of another token")));
        }
    }
    Ok(())
}

/// Topic names are what is stored and reported, and the LLM's enum: each
/// must be present, short, printable and unique.
fn validate_topics(topics: &[TopicSettings]) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "topics".into(),
        message,
    };
    if topics.is_empty() {
        return Err(invalid("list at least one topic".into()));
    }
    if topics.len() > MAX_TOPICS {
        return Err(invalid(format!("at most {MAX_TOPICS} topics")));
    }
    let mut seen = std::collections::HashSet::new();
    for t in topics {
        let name = t.name.as_str();
        if name.trim().is_empty()
            || name.len() > MAX_TOPIC_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "topic name {name:?} must be 1 to {MAX_TOPIC_NAME_BYTES} bytes of printable text"
            )));
        }
        if !seen.insert(name) {
            return Err(invalid(format!("topic {name:?} is listed twice")));
        }
        if t.keywords.iter().any(|k| k.trim().is_empty()) {
            return Err(invalid(format!("topic {name:?} has an empty keyword")));
        }
    }
    Ok(())
}

/// Well-known environment variables and the setting each one sets.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("OPENAI_BASE_URL", "analyzer.openai.base_url"),
    ("POWERPULSE_TOKEN", "server.token"),
    ("POWERPULSE_DB", "storage.path"),
    ("POWERPULSE_WEBHOOK_SECRET", "notify.secret"),
];

/// Prefix of the generic override form `POWERPULSE__ANALYZER__CONCURRENCY=200`.
const ENV_PREFIX: &str = "POWERPULSE__";

impl Settings {
    /// Loads settings: defaults, then `path` (or `./config.toml` when it exists
    /// and no path is given), then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given explicitly (for tests
    /// and embedders).
    ///
    /// No error names the value of a secret setting (see [`is_secret_key`]),
    /// wherever it was set: only its key.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let default_path = Path::new("config.toml");
        let file = match path {
            Some(p) => Some(p),
            None if default_path.exists() => Some(default_path),
            None => None,
        };
        let mut tree = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: p.to_path_buf(),
                        message: syntax_error(&text, &e),
                    })?
            }
            None => toml::Table::new(),
        };
        let defaults = default_tree();
        for (name, value) in env {
            let key = if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                rest.split("__")
                    .map(|part| part.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(".")
            } else if let Some((_, key)) = ENV_ALIASES.iter().find(|(n, _)| *n == name) {
                key.to_string()
            } else {
                continue;
            };
            set_path(&mut tree, &key, parse_env_value(&key, &value, &defaults)).map_err(
                |message| ConfigError::Env {
                    name: name.clone(),
                    message,
                },
            )?;
        }
        let origin = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<defaults and environment>"));
        let settings: Settings = match toml::Value::Table(tree.clone()).try_into() {
            Ok(settings) => settings,
            Err(e) => return Err(settings_error(tree, &e, origin)),
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &str, v: usize| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    key: key.to_string(),
                    message: "must be at least 1".to_string(),
                })
            } else {
                Ok(())
            }
        };
        positive("analyzer.concurrency", self.analyzer.concurrency)?;
        positive("analyzer.batch_size", self.analyzer.batch_size)?;
        positive("storage.batch_size", self.storage.batch_size)?;
        positive(
            "analyzer.openai.max_response_bytes",
            self.analyzer.openai.max_response_bytes,
        )?;
        positive("ingest.xlsx_max_rows", self.ingest.xlsx_max_rows as usize)?;
        positive(
            "ingest.xlsx_max_columns",
            self.ingest.xlsx_max_columns as usize,
        )?;
        positive(
            "analyzer.openai.max_output_tokens",
            self.analyzer.openai.max_output_tokens as usize,
        )?;
        self.server.validate()?;
        self.notify.validate()?;
        self.alerts.validate()?;
        crate::privacy::Redactor::check(&self.privacy).map_err(|e| ConfigError::Invalid {
            key: e.key(),
            message: e.to_string(),
        })?;
        validate_topics(&self.topics)?;
        crate::ingest::Agents::new(&self.ingest.agents).map_err(|e| ConfigError::Invalid {
            key: "ingest.agents".into(),
            message: e.to_string(),
        })?;
        let o = &self.analyzer.openai;
        o.validate_endpoints()?;
        positive(
            "analyzer.outage_failures",
            self.analyzer.outage_failures as usize,
        )?;
        if !(1..=MAX_CONVERSATIONS_PER_REQUEST).contains(&o.conversations_per_request) {
            return Err(ConfigError::Invalid {
                key: "analyzer.openai.conversations_per_request".into(),
                message: format!("must be 1..={MAX_CONVERSATIONS_PER_REQUEST}"),
            });
        }
        if !matches!(
            o.reasoning_effort.as_str(),
            "auto" | "minimal" | "low" | "medium" | "high"
        ) {
            return Err(ConfigError::Invalid {
                key: "analyzer.openai.reasoning_effort".into(),
                message: format!(
                    "expected auto, minimal, low, medium or high, got {:?}",
                    o.reasoning_effort
                ),
            });
        }
        if let Some(budget) = o.max_cost_usd
            && !(budget.is_finite() && budget >= 0.0)
        {
            return Err(ConfigError::Invalid {
                key: "analyzer.openai.max_cost_usd".into(),
                message: "must be a number of dollars, 0 or more".into(),
            });
        }
        for (key, value) in [
            ("analyzer.openai.timeout_seconds", o.timeout_seconds),
            (
                "analyzer.outage_timeout_seconds",
                self.analyzer.outage_timeout_seconds,
            ),
            (
                "analyzer.openai.max_retry_wait_seconds",
                o.max_retry_wait_seconds,
            ),
            ("storage.flush_ms", self.storage.flush_ms / 1000),
        ] {
            if value > MAX_TIMEOUT_SECONDS {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "at most a year".into(),
                });
            }
        }
        if self.analyzer.concurrency > 4096 {
            return Err(ConfigError::Invalid {
                key: "analyzer.concurrency".into(),
                message: "at most 4096".into(),
            });
        }
        Ok(())
    }
}

/// Most conversations one request may carry: a reply for more grows past
/// what one completion reliably holds.
pub const MAX_CONVERSATIONS_PER_REQUEST: u32 = 20;

/// The settings that hold a secret (or name where one is kept).
const SECRET_SETTINGS: &[&str] = &[
    "server.token",
    "notify.secret",
    "analyzer.openai.api_key_env",
];

/// Whether a setting holds a secret: one of [`SECRET_SETTINGS`]; for a key
/// that is no setting (a typo, a stray key), by the words of its name:
/// `token`, `key`, `secret`, `password` (so `api_key` and `auth-token` are
/// taken for secrets and never shown, `max_output_tokens` is not). A known
/// setting whose name merely has such a word (`reasoning_token_budget`,
/// `token_parameter`) is not a secret.
pub fn is_secret_key(dotted: &str) -> bool {
    if SECRET_SETTINGS.contains(&dotted) {
        return true;
    }
    if is_known_setting(dotted) {
        return false;
    }
    let name = dotted
        .rsplit('.')
        .next()
        .unwrap_or(dotted)
        .to_ascii_lowercase();
    name.contains("secret")
        || name.contains("password")
        || name.split(['_', '-']).any(|word| {
            matches!(
                word,
                "token" | "key" | "apikey" | "passwd" | "passphrase" | "credential" | "credentials"
            )
        })
}

/// Whether `dotted` names a setting (with a default, or an optional string).
fn is_known_setting(dotted: &str) -> bool {
    if OPTIONAL_STRING_KEYS
        .iter()
        .any(|k| *k == dotted || (k.ends_with('.') && dotted.starts_with(k)))
    {
        return true;
    }
    let defaults = default_tree();
    let mut node = &defaults;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        match (node.get(part), parts.peek()) {
            (Some(toml::Value::Table(t)), Some(_)) => node = t,
            (Some(_), None) => return true,
            _ => return false,
        }
    }
    false
}

/// Settings of type `Option<String>` (absent from the serialised defaults,
/// so [`default_tree`] cannot tell their type); a trailing `.` is a section
/// whose keys all are.
const OPTIONAL_STRING_KEYS: &[&str] = &[
    "server.token",
    "analyzer.openai.api_version",
    "ingest.columns.",
    "notify.webhook_url",
    "notify.secret",
    "notify.dashboard_url",
];

/// The defaults as a TOML tree: where an environment value lands on a
/// string, it is taken as a string.
fn default_tree() -> toml::Table {
    match toml::Value::try_from(Settings::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// Whether the setting at `dotted` is a string (by its default, or by
/// [`OPTIONAL_STRING_KEYS`]).
fn is_string_setting(dotted: &str, defaults: &toml::Table) -> bool {
    if OPTIONAL_STRING_KEYS
        .iter()
        .any(|k| *k == dotted || (k.ends_with('.') && dotted.starts_with(k)))
    {
        return true;
    }
    let mut node = defaults;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        match (node.get(part), parts.peek()) {
            (Some(toml::Value::String(_)), None) => return true,
            (Some(toml::Value::Table(t)), Some(_)) => node = t,
            _ => return false,
        }
    }
    false
}

/// An environment value for the setting `key`.
///
/// Secrets are taken verbatim (`POWERPULSE_TOKEN=123456` is the string
/// "123456", and `"abc"` keeps its quotes). Other string settings take a TOML
/// string literal (`"gpt-4o"`) or else the text as it is. Everything else is
/// read as TOML when it parses as a TOML value (numbers, booleans, arrays),
/// as a plain string otherwise; a TOML date is a string too (no setting is a date,
/// and `api_version = 2024-06-01` is one).
fn parse_env_value(key: &str, raw: &str, defaults: &toml::Table) -> toml::Value {
    let verbatim = || toml::Value::String(raw.to_string());
    if is_secret_key(key) {
        return verbatim();
    }
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(v @ toml::Value::String(_)) => v,
        _ if is_string_setting(key, defaults) => verbatim(),
        Some(toml::Value::Datetime(_)) | None => verbatim(),
        Some(v) => v,
    }
}

/// A config file's syntax error, by line and column, without the snippet of
/// the file toml's `Display` quotes (the line may hold a token).
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// Replaces every value under a secret key with a placeholder string;
/// returns the keys replaced.
fn redact_secrets(tree: &mut toml::Table, prefix: &str) -> Vec<String> {
    let mut replaced = Vec::new();
    for (name, value) in tree.iter_mut() {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if is_secret_key(&path) {
            *value = toml::Value::String(REDACTED.to_string());
            replaced.push(path);
        } else if let toml::Value::Table(sub) = value {
            replaced.extend(redact_secrets(sub, &path));
        }
    }
    replaced
}

const REDACTED: &str = "<redacted>";

/// Why the merged settings do not deserialise, told without a secret: the
/// tree is deserialised again with every secret replaced by a placeholder,
/// and that error is the one reported. When the placeholders make it pass, a
/// secret's value was the problem, and only its key is named.
fn settings_error(tree: toml::Table, e: &toml::de::Error, origin: PathBuf) -> ConfigError {
    let mut redacted = tree;
    let secrets = redact_secrets(&mut redacted, "");
    if secrets.is_empty() {
        return ConfigError::Parse {
            path: origin,
            message: e.message().to_string(),
        };
    }
    match toml::Value::Table(redacted).try_into::<Settings>() {
        Err(e) => ConfigError::Parse {
            path: origin,
            message: e.message().to_string(),
        },
        Ok(_) => ConfigError::Invalid {
            key: secrets.join(", "),
            message: "a secret setting has a value of the wrong type (value not shown)".into(),
        },
    }
}

fn set_path(tree: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().ok_or("empty key")?;
    let mut node = tree;
    for part in parts {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| format!("{part} is not a section"))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn committed_config_toml_states_exactly_the_defaults() {
        let s = Settings::load_with_env(Some(Path::new("config.toml")), env(&[])).unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::to_value(Settings::default()).unwrap()
        );
        assert_eq!(s.analyzer.batch_size, 256);
        assert_eq!(s.ingest.autoresponse_patterns, vec!["*977#"]);
        assert_eq!(s.analyzer.openai.requests_per_minute, RateSetting::Auto);
    }

    #[test]
    fn settings_that_count_tokens_are_numbers_and_errors_name_the_real_problem() {
        let s = Settings::load_with_env(
            None,
            env(&[(
                "POWERPULSE__ANALYZER__OPENAI__REASONING_TOKEN_BUDGET",
                "512",
            )]),
        )
        .unwrap();
        assert_eq!(s.analyzer.openai.reasoning_token_budget, 512);
        // With the committed file (which sets such settings), an error is about what is wrong.
        let err = Settings::load_with_env(
            Some(Path::new("config.toml")),
            env(&[("POWERPULSE__STORAGE__BATCH_SIZE", "many")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"many\""), "{err}");
    }

    #[test]
    fn notify_settings_from_env_and_checked() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("POWERPULSE__NOTIFY__WEBHOOK_URL", "http://127.0.0.1:9/hook"),
                ("POWERPULSE_WEBHOOK_SECRET", "12345"),
                ("POWERPULSE__LOG__FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.notify.webhook_url.as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        // A secret is a string, verbatim, even when it looks like a number.
        assert_eq!(s.notify.secret.as_deref(), Some("12345"));
        assert_eq!(s.log.format, LogFormat::Json);

        for (name, value, key) in [
            (
                "POWERPULSE__NOTIFY__WEBHOOK_URL",
                "ftp://x/y",
                "notify.webhook_url",
            ),
            (
                "POWERPULSE__NOTIFY__WEBHOOK_URL",
                "not a url",
                "notify.webhook_url",
            ),
            (
                "POWERPULSE__NOTIFY__MAX_ATTEMPTS",
                "0",
                "notify.max_attempts",
            ),
            (
                "POWERPULSE__NOTIFY__QUEUE_CAPACITY",
                "0",
                "notify.queue_capacity",
            ),
        ] {
            let err = Settings::load_with_env(None, env(&[(name, value)])).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
                "{name}={value}: {err}"
            );
        }
        let err =
            Settings::load_with_env(None, env(&[("POWERPULSE__LOG__FORMAT", "xml")])).unwrap_err();
        assert!(
            err.to_string().contains("log.format") || err.to_string().contains("xml"),
            "{err}"
        );
    }

    #[test]
    fn topics_replace_the_default_list_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[topics]]\nname = \"tariff\"\ndescription = \"Tariff questions\"\nkeywords = [\"tariff\", \"दर\"]\n\n[[topics]]\nname = \"other\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&path), env(&[])).unwrap();
        let names: Vec<_> = s.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["tariff", "other"]);
        assert_eq!(s.topics[0].keywords, ["tariff", "दर"]);
        assert!(s.topics[1].keywords.is_empty());
        for (toml, expected) in [
            ("topics = []\n", "at least one topic"),
            (
                "[[topics]]\nname = \"a\"\n[[topics]]\nname = \"a\"\n",
                "listed twice",
            ),
            ("[[topics]]\nname = \" \"\n", "printable"),
            (
                "[[topics]]\nname = \"a\"\nkeywords = [\"\"]\n",
                "empty keyword",
            ),
        ] {
            std::fs::write(&path, toml).unwrap();
            let e = Settings::load_with_env(Some(&path), env(&[])).unwrap_err();
            assert!(e.to_string().contains(expected), "{toml}: {e}");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[analyzer]\nconcurrency = 7\n[analyzer.openai]\ntokens_per_minute = 1000\n",
        )
        .unwrap();
        let s = Settings::load_with_env(
            Some(&path),
            env(&[
                ("POWERPULSE__ANALYZER__CONCURRENCY", "200"),
                ("POWERPULSE__ANALYZER__OPENAI__REQUESTS_PER_MINUTE", "500"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.analyzer.concurrency, 200);
        assert_eq!(
            s.analyzer.openai.requests_per_minute,
            RateSetting::PerMinute(500)
        );
        assert_eq!(
            s.analyzer.openai.tokens_per_minute,
            RateSetting::PerMinute(1000)
        );
        assert_eq!(s.analyzer.openai.base_url, "http://127.0.0.1:9/v1");
    }

    #[test]
    fn timeouts_past_a_year_are_refused_not_overflowed() {
        for (name, value) in [
            (
                "POWERPULSE__SERVER__UPLOAD_TIMEOUT_SECONDS",
                "9223372036854775807",
            ),
            (
                "POWERPULSE__ANALYZER__OPENAI__MAX_RETRY_WAIT_SECONDS",
                "99999999999",
            ),
            ("POWERPULSE__STORAGE__FLUSH_MS", "9223372036854775807"),
        ] {
            let err = Settings::load_with_env(None, env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains("at most"), "{name}: {err}");
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/none.toml")), env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/none.toml"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[analyzer]\nconcurency = 7\n").unwrap();
        let err = Settings::load_with_env(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");

        let err = Settings::load_with_env(
            Some(&path),
            env(&[("POWERPULSE__ANALYZER__CONCURRENCY", "0")]),
        );
        assert!(err.is_err());
    }

    #[test]
    fn secrets_from_the_environment_are_strings() {
        let s = Settings::load_with_env(None, env(&[("POWERPULSE_TOKEN", "123456")])).unwrap();
        assert_eq!(s.server.token.as_deref(), Some("123456"));
        for raw in [
            "true",
            "1e3",
            "[1, 2]",
            "\"quoted\"",
            "2024-06-01",
            "a = b",
            " x ",
        ] {
            let s =
                Settings::load_with_env(None, env(&[("POWERPULSE__SERVER__TOKEN", raw)])).unwrap();
            assert_eq!(s.server.token.as_deref(), Some(raw), "{raw:?}");
        }
    }

    #[test]
    fn string_settings_stay_strings_and_numbers_numbers() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("POWERPULSE__ANALYZER__OPENAI__MODEL", "4"),
                ("POWERPULSE__ANALYZER__OPENAI__API_VERSION", "2024-06-01"),
                ("POWERPULSE__ANALYZER__OPENAI__API_KEY_ENV", "\"MY_KEY\""),
                ("POWERPULSE__INGEST__COLUMNS__TEXT", "1234"),
                ("POWERPULSE__SERVER__BIND", "\"0.0.0.0:1\""),
                ("POWERPULSE__ANALYZER__OPENAI__MAX_OUTPUT_TOKENS", "300"),
                ("POWERPULSE__ANALYZER__OPENAI__TOKENS_PER_MINUTE", "9000"),
                ("POWERPULSE__ANALYZER__OPENAI__STRUCTURED_OUTPUT", "false"),
                ("POWERPULSE_DB", "1"),
            ]),
        )
        .unwrap();
        let o = &s.analyzer.openai;
        assert_eq!(o.model, "4");
        assert_eq!(o.api_version.as_deref(), Some("2024-06-01"));
        assert_eq!(
            o.api_key_env, "\"MY_KEY\"",
            "a key's name is taken verbatim"
        );
        assert_eq!(s.ingest.columns.text.as_deref(), Some("1234"));
        assert_eq!(
            s.server.bind, "0.0.0.0:1",
            "a TOML string literal is unquoted"
        );
        assert_eq!(o.max_output_tokens, 300);
        assert_eq!(o.tokens_per_minute, RateSetting::PerMinute(9000));
        assert!(!o.structured_output);
        assert_eq!(s.storage.path, PathBuf::from("1"));
    }

    #[test]
    fn secret_names() {
        for key in [
            "server.token",
            "api_key",
            "analyzer.openai.api_key_env",
            "x.client_secret",
            "db.password",
            "auth-token",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "analyzer.openai.max_output_tokens",
            "analyzer.openai.tokens_per_minute",
            "analyzer.openai.max_transcript_tokens",
            "analyzer.openai.reasoning_token_budget",
            "analyzer.openai.token_parameter",
            "ingest.columns.text",
            "monkey",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn no_error_shows_a_secret() {
        let secret = "hunter2-s3cr3t";
        // A secret in a slot of another type, from the environment.
        let err = Settings::load_with_env(
            None,
            env(&[("POWERPULSE__ANALYZER__OPENAI__PRICES__GPT_KEY", secret)]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(
            text.contains("<redacted>") || text.contains("gpt_key"),
            "{text}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        // A number where the token's string goes, in the file.
        std::fs::write(&path, "[server]\ntoken = 987654321\n").unwrap();
        let err = Settings::load_with_env(Some(&path), env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("987654321"), "{text}");
        assert!(text.contains("server.token"), "{text}");

        // A syntax error on the token's line: no snippet of the file.
        std::fs::write(&path, "[server]\ntoken = hunter2-s3cr3t\n").unwrap();
        let err = Settings::load_with_env(Some(&path), env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("line 2"), "{text}");

        // Any other error, with a secret set: the secret is not in it.
        let err = Settings::load_with_env(
            None,
            env(&[
                ("POWERPULSE_TOKEN", secret),
                ("POWERPULSE__ANALYZER__CONCURENCY", "3"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("concurency"), "{text}");
    }

    #[test]
    fn named_tokens_load_from_the_file_or_the_environment_and_are_checked() {
        use crate::access::{Role, TokenHash};
        let hash = |t: &str| TokenHash::of(t).to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let entry = |name: &str, role: &str, token: &str| {
            format!(
                "[[server.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nhash = \"{}\"\n",
                hash(token)
            )
        };
        std::fs::write(
            &path,
            entry("alice", "viewer", "a") + &entry("ci", "operator", "b"),
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&path), env(&[])).unwrap();
        let names: Vec<_> = s
            .server
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.role))
            .collect();
        assert_eq!(names, [("alice", Role::Viewer), ("ci", Role::Operator)]);
        assert!(s.server.tokens[1].hash.matches(&TokenHash::of("b")));

        let from_env = format!(
            "[{{name = \"bob\", role = \"admin\", hash = \"{}\"}}]",
            hash("c")
        );
        let s = Settings::load_with_env(None, env(&[("POWERPULSE__SERVER__TOKENS", &from_env)]))
            .unwrap();
        assert_eq!(s.server.tokens[0].role, Role::Admin);

        for (file, expected) in [
            (
                entry("alice", "viewer", "a") + &entry("alice", "admin", "b"),
                "listed twice",
            ),
            (
                entry("alice", "viewer", "a") + &entry("bob", "admin", "a"),
                "hash of another",
            ),
            (entry("server.token", "viewer", "a"), "reserved"),
            (entry("", "viewer", "a"), "printable"),
            (entry("x", "root", "a"), "root"),
            (
                "[[server.tokens]]\nname = \"x\"\nrole = \"viewer\"\nhash = \"sha1:00\"\n".into(),
                "blake3:",
            ),
        ] {
            std::fs::write(&path, &file).unwrap();
            let err = Settings::load_with_env(Some(&path), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
