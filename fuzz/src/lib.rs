//! What the fuzz targets share: each one is a thin `fuzz_target!` over a
//! function here, so a crasher can be replayed by the same code path.

use std::path::PathBuf;
use std::sync::OnceLock;

use powerpulse::config::IngestSettings;
use powerpulse::ingest::{self, Format, IngestOptions};

/// One scratch directory for the whole run (a fresh one per input would
/// cost more than the parse).
fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("scratch directory"))
}

/// Writes `data` as `input.<extension>`, opens it as an upload with the
/// default settings and drains every row, as the parser thread does.
pub fn ingest_file(data: &[u8], extension: &str) {
    ingest_as(data, extension, None);
}

/// [`ingest_file`], the file read as `format` whatever it looks like (as
/// `--format` asks), so the reader of that format sees every input.
pub fn ingest_as(data: &[u8], extension: &str, format: Option<Format>) {
    let path: PathBuf = scratch().path().join(format!("input.{extension}"));
    std::fs::write(&path, data).expect("write fuzz input");
    let mut opts = IngestOptions::from_settings(&IngestSettings::default());
    opts.format = format;
    // Small limits: a zip bomb is refused after 16 MiB, not 1 GiB.
    opts.xlsx_max_inflated_bytes = 16 << 20;
    let Ok(reader) = ingest::open(&path, &opts) else {
        return;
    };
    for row in reader {
        if row.is_err() {
            break;
        }
    }
}

/// The JSON readers of the chat apps and helpdesks: the first byte picks
/// which one reads the rest.
pub fn ingest_dialect(data: &[u8]) {
    const DIALECTS: [Format; 6] = [
        Format::Messenger,
        Format::Telegram,
        Format::Intercom,
        Format::Zendesk,
        Format::Freshdesk,
        Format::Chatwoot,
    ];
    let Some((pick, json)) = data.split_first() else {
        return;
    };
    let format = DIALECTS[usize::from(*pick) % DIALECTS.len()];
    ingest_as(json, "json", Some(format));
}

/// A chat-completions body from a hostile server: parsed, and (when it is
/// text) also sent as the reply's content, so the validator sees every shape.
/// Whatever is accepted must satisfy the result schema.
pub fn llm_reply(data: &[u8]) {
    use powerpulse::analyze::openai::reply;

    let read = |content: &str| reply::validate(content, "openai", "gpt-4o", &[]);
    check_analysis(reply::parse(data, read).analysis);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = reply::strip_fence(text);
        let body = serde_json::json!({
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}]
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        check_analysis(reply::parse(&body, read).analysis);
        // The same content as a packed reply of three chats.
        if let Ok(packed) = reply::validate_packed(text, 3, "openai", "gpt-4o", &[]) {
            assert_eq!(packed.results.len(), 3);
            for result in packed.results {
                check_analysis(result);
            }
        }
    }
}

fn check_analysis<E>(analysis: Result<powerpulse::model::Analysis, E>) {
    let Ok(a) = analysis else { return };
    assert!((-1.0..=1.0).contains(&a.sentiment.score), "{a:?}");
    assert!((1..=5).contains(&a.satisfaction.score), "{a:?}");
    assert!(!a.summary.trim().is_empty(), "{a:?}");
    assert!(
        a.summary.chars().count() <= powerpulse::model::SUMMARY_MAX_CHARS,
        "{a:?}"
    );
}

/// Header names the rate-limit code reads; a one-byte name picks one.
pub const RATE_LIMIT_HEADERS: &[&str] = &[
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

/// Response headers from a hostile server, one `name:value` per line (a
/// one-byte name picks from [`RATE_LIMIT_HEADERS`]): read by everything that
/// looks at rate-limit headers.
pub fn rate_limit_headers(data: &[u8]) {
    use powerpulse::analyze::openai::limits::{self, Limits};
    use powerpulse::config::RateSetting;
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    use std::time::Duration;

    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = match name {
            [i] => {
                HeaderName::from_static(RATE_LIMIT_HEADERS[*i as usize % RATE_LIMIT_HEADERS.len()])
            }
            _ => match HeaderName::from_bytes(name) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let _ = limits::retry_after(&headers);
    for value in headers.values() {
        if let Ok(text) = value.to_str() {
            let _ = limits::parse_duration(text);
        }
    }
    for (rpm, tpm, max_wait) in [
        (
            RateSetting::Auto,
            RateSetting::Auto,
            Duration::from_secs(60),
        ),
        (
            RateSetting::PerMinute(1),
            RateSetting::PerMinute(u32::MAX),
            Duration::MAX,
        ),
    ] {
        let l = Limits::new(rpm, tpm, 4_000, max_wait);
        l.observe(&headers);
        let _ = l.snapshot();
    }
}

/// Environment variables the config loader reads, for [`ConfigInput`].
pub const CONFIG_VARS: &[&str] = &[
    "POWERPULSE_TOKEN",
    "OPENAI_BASE_URL",
    "POWERPULSE_DB",
    "POWERPULSE__SERVER__TOKEN",
    "POWERPULSE__SERVER__BIND",
    "POWERPULSE__SERVER__API_KEY",
    "POWERPULSE__SERVER",
    "POWERPULSE__",
    "POWERPULSE__ANALYZER__BACKEND",
    "POWERPULSE__ANALYZER__CONCURRENCY",
    "POWERPULSE__ANALYZER__BATCH_SIZE",
    "POWERPULSE__ANALYZER__OPENAI__BASE_URL",
    "POWERPULSE__ANALYZER__OPENAI__MODEL",
    "POWERPULSE__ANALYZER__OPENAI__API_KEY_ENV",
    "POWERPULSE__ANALYZER__OPENAI__AUTH",
    "POWERPULSE__ANALYZER__OPENAI__API_VERSION",
    "POWERPULSE__ANALYZER__OPENAI__REQUESTS_PER_MINUTE",
    "POWERPULSE__ANALYZER__OPENAI__TOKENS_PER_MINUTE",
    "POWERPULSE__ANALYZER__OPENAI__MAX_RETRIES",
    "POWERPULSE__ANALYZER__OPENAI__MAX_RETRY_WAIT_SECONDS",
    "POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS",
    "POWERPULSE__ANALYZER__OPENAI__MAX_OUTPUT_TOKENS",
    "POWERPULSE__ANALYZER__OPENAI__MAX_TRANSCRIPT_TOKENS",
    "POWERPULSE__ANALYZER__OPENAI__MAX_MESSAGE_TOKENS",
    "POWERPULSE__ANALYZER__OPENAI__STRUCTURED_OUTPUT",
    "POWERPULSE__ANALYZER__OPENAI__PRICES__GPT_4O__INPUT_PER_MILLION",
    "POWERPULSE__ANALYZER__OPENAI__PRICES__GPT_KEY",
    "POWERPULSE__INGEST__AUTORESPONSE_PATTERNS",
    "POWERPULSE__INGEST__MAX_UPLOAD_BYTES",
    "POWERPULSE__INGEST__MAX_FIELD_BYTES",
    "POWERPULSE__INGEST__COLUMNS__TEXT",
    "POWERPULSE__INGEST__XLSX_MAX_ROWS",
    "POWERPULSE__INGEST__XLSX_MAX_INFLATED_BYTES",
    "POWERPULSE__STORAGE__PATH",
    "POWERPULSE__STORAGE__BATCH_SIZE",
    "POWERPULSE__STORAGE__FLUSH_MS",
];

/// A config file and environment from a hostile (or careless) operator,
/// read from fuzz bytes: the file, then NUL-separated variables. A variable
/// starting with a byte below 0x80 is `CONFIG_VARS[byte]` set to the rest;
/// otherwise the rest is `NAME=value` and the name is `POWERPULSE__NAME`.
#[derive(Debug)]
pub struct ConfigInput {
    pub file: String,
    pub env: Vec<(String, String)>,
}

impl ConfigInput {
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut parts = data.split(|b| *b == 0);
        let file = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let env = parts
            .filter_map(|part| {
                let (&first, rest) = part.split_first()?;
                let rest = String::from_utf8_lossy(rest).into_owned();
                Some(if first < 0x80 {
                    let name = CONFIG_VARS[first as usize % CONFIG_VARS.len()];
                    (name.to_string(), rest)
                } else {
                    let (name, value) = rest.split_once('=').unwrap_or((&rest, ""));
                    (format!("POWERPULSE__{name}"), value.to_string())
                })
            })
            .collect();
        Self { file, env }
    }
}

/// The setting an environment variable sets, as the loader maps it.
fn setting_of(name: &str) -> Option<String> {
    match name {
        "POWERPULSE_TOKEN" => Some("server.token".into()),
        "OPENAI_BASE_URL" => Some("analyzer.openai.base_url".into()),
        "POWERPULSE_DB" => Some("storage.path".into()),
        _ => name.strip_prefix("POWERPULSE__").map(|rest| {
            rest.split("__")
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(".")
        }),
    }
}

/// Loads settings from a fuzzed file and environment. Properties: no panic;
/// an error never shows a secret's value (checked differentially: the value
/// is in the error only if it is there with the secret replaced, too); a
/// token that loads is the variable's text, verbatim.
pub fn config_load(input: &ConfigInput) {
    use powerpulse::config::{Settings, is_secret_key};

    let path = scratch().path().join("config.toml");
    std::fs::write(&path, &input.file).expect("write fuzz config");
    let env: Vec<(String, String, Option<String>)> = input
        .env
        .iter()
        .map(|(name, value)| (name.clone(), value.clone(), setting_of(name)))
        .collect();
    let pairs = |mask: bool| -> Vec<(String, String)> {
        env.iter()
            .map(|(name, value, setting)| {
                let secret = setting.as_deref().is_some_and(is_secret_key);
                let value = if mask && secret {
                    "\u{1}".repeat(value.chars().count())
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect()
    };
    match Settings::load_with_env(Some(&path), pairs(false)) {
        Ok(settings) => {
            let last = env
                .iter()
                .rev()
                .find(|(_, _, s)| matches!(s.as_deref(), Some("server.token" | "server" | "")));
            if let Some((_, value, Some(s))) = last
                && s == "server.token"
            {
                assert_eq!(settings.server.token.as_deref(), Some(value.as_str()));
            }
        }
        Err(e) => {
            let shown = e.to_string();
            let masked = Settings::load_with_env(Some(&path), pairs(true))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            for (name, value, setting) in &env {
                let secret = setting.as_deref().is_some_and(is_secret_key);
                if secret && value.len() >= 4 && shown.contains(value.as_str()) {
                    assert!(
                        masked.contains(value.as_str()),
                        "{name}'s value {value:?} is in the error: {shown}"
                    );
                }
            }
        }
    }
}
