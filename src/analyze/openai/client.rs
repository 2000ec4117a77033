//! One HTTP layer for every call to a provider: chat completions, the Files
//! and Batch APIs, and `check`'s probes. It authenticates (a bearer token,
//! or Azure's `api-key` header), never follows a redirect (it would carry
//! the key), reads bodies under a cap, maps every answer that is not a
//! success to a [`CallError`] and each error to a [`Class`], the one retry
//! rule of every caller: what is worth trying again, after how long, and
//! what means this endpoint can do nothing more. Errors are told apart by
//! status and by the provider's error code, never by their text.
//!
//! (The shape follows meilisearch's embedders, whose `check_response` maps
//! an answer to a retry strategy that every embedder reuses, and the OpenAI
//! SDKs' rules: 408, 409, 429 and 5xx are retried, `Retry-After` honoured.)

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::OpenAiError;
use super::limits;
use crate::analyze::FatalKind;
use crate::config::AuthStyle;

/// Base of the exponential backoff, and its ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
pub const BACKOFF_CAP: Duration = Duration::from_secs(20);

/// Attempts of one Files or Batch API call before giving up.
const MANAGEMENT_ATTEMPTS: u32 = 6;

/// The slowest transfer a batch file is given time for: a file's timeout
/// is the request timeout plus its size at this rate (a 200 MB input file:
/// the timeout + 400 s), where a fixed timeout would fail every large file
/// on a slow link.
pub const MIN_TRANSFER_BYTES_PER_SECOND: u64 = 512 * 1024;

/// An error answer's body is read this far at most, whatever the cap.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// The provider's connection details: where, with which key.
pub struct Connection {
    client: reqwest::Client,
    /// `…/chat/completions[?api-version=…]`.
    chat_url: String,
    /// The root the Files and Batch APIs live under: the base URL, or for
    /// an Azure deployment (`…/openai/deployments/NAME`) its `…/openai`.
    api_root: String,
    api_version: Option<String>,
    key: SecretString,
    auth: AuthStyle,
    /// The request timeout (`analyzer.openai.timeout_seconds`); also the
    /// longest a file download may go without a byte.
    timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("chat_url", &self.chat_url)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// One HTTP answer, whatever its status: read whole (under the cap).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Answer {
    /// The answer as an error unless it is a success.
    pub fn error(&self) -> Option<CallError> {
        (!self.status.is_success()).then(|| CallError::Status {
            status: self.status.as_u16(),
            error: ApiError::parse(&self.body),
            retry_after: limits::retry_after(&self.headers),
        })
    }
}

/// What an OpenAI-style error body says: `{"error": {"message", "type",
/// "param", "code"}}`, vLLM's flat form of it, Ollama's `{"error": "…"}`,
/// FastAPI's 422 `{"detail": [{"loc", "msg"}]}`, or the body's first bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiError {
    pub code: Option<String>,
    /// `type`.
    pub kind: Option<String>,
    /// The request parameter it is about (`response_format`,
    /// `max_tokens`; a FastAPI location such as `body.response_format.type`).
    pub param: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code.as_deref().or(self.kind.as_deref()) {
            Some(code) if !self.message.is_empty() => write!(f, "{code}: {}", self.message),
            Some(code) => f.write_str(code),
            None => f.write_str(&self.message),
        }
    }
}

/// A JSON value as text: strings as they are, numbers written out.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ApiError {
    pub fn parse(body: &[u8]) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let short = |m: &str| crate::model::truncate_chars(m.trim(), 300);
        let e = match &v["error"] {
            Value::Object(_) => &v["error"],
            Value::String(message) => {
                return ApiError {
                    message: short(message),
                    ..ApiError::default()
                };
            }
            _ => &v,
        };
        if let Some(detail) = v["detail"].as_array() {
            // FastAPI's validation errors: where, and what.
            let loc = |d: &Value| {
                d["loc"]
                    .as_array()
                    .map(|l| l.iter().filter_map(text_of).collect::<Vec<_>>().join("."))
            };
            return ApiError {
                param: detail.iter().find_map(loc),
                message: short(
                    &detail
                        .iter()
                        .filter_map(|d| d["msg"].as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                ..ApiError::default()
            };
        }
        let message = match e["message"].as_str() {
            Some(m) => short(m),
            None => short(&String::from_utf8_lossy(&body[..body.len().min(300)])),
        };
        ApiError {
            code: text_of(&e["code"]),
            kind: text_of(&e["type"]),
            param: text_of(&e["param"]),
            message,
        }
    }

    /// Whether the provider says the account's quota (not a rate) is used
    /// up: by its error code, as OpenAI and Azure send it.
    pub fn is_quota_exhausted(&self) -> bool {
        [&self.code, &self.kind]
            .iter()
            .any(|c| c.as_deref() == Some("insufficient_quota"))
    }
}

/// Why one exchange with a provider did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("request timed out: {0}")]
    Timeout(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error(
        "{url} answered HTTP {status} redirecting to {location}; redirects are not followed \
         (set the endpoint's base_url to the final address)"
    )]
    Redirected {
        url: String,
        status: u16,
        location: String,
    },
    #[error("the answer is larger than {cap} bytes")]
    TooLarge { cap: usize },
    #[error("HTTP {status}: {error}")]
    Status {
        status: u16,
        error: ApiError,
        /// `retry-after-ms`, `retry-after` or an exhausted quota's reset.
        retry_after: Option<Duration>,
    },
}

/// What to do about a [`CallError`]: the retry rule every call follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No answer, or the provider failing to give one (a timeout, a refused
    /// or broken connection, 5xx, 408, 409): try again after a backoff (or
    /// the `Retry-After` given), on another endpoint when there is one.
    /// These count towards an endpoint's cooldown and towards an outage.
    Unavailable,
    /// 429, a rate: wait as asked, then try again (never counted as a failure).
    RateLimited,
    /// Nothing will succeed on this endpoint: its key is refused, its quota
    /// exhausted, its URL or model wrong, or it redirects.
    Unusable(FatalKind),
    /// This request is refused as it is (another 4xx): sent again unchanged
    /// it gets the same answer.
    Refused,
    /// An answer over the size read.
    TooLarge,
}

impl CallError {
    pub fn class(&self) -> Class {
        match self {
            CallError::Timeout(_) | CallError::Connection(_) => Class::Unavailable,
            CallError::Redirected { .. } => Class::Unusable(FatalKind::Redirected),
            CallError::TooLarge { .. } => Class::TooLarge,
            CallError::Status { status, error, .. } => match *status {
                429 if error.is_quota_exhausted() => Class::Unusable(FatalKind::QuotaExhausted),
                429 => Class::RateLimited,
                401 | 403 => Class::Unusable(FatalKind::KeyRejected),
                404 => Class::Unusable(FatalKind::NotFound),
                408 | 409 => Class::Unavailable,
                s if s >= 500 => Class::Unavailable,
                _ => Class::Refused,
            },
        }
    }

    /// The wait the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The provider's error, for an answer.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            CallError::Status { error, .. } => Some(error),
            _ => None,
        }
    }

    /// A short name for progress and logs: `HTTP 503`, `timeout`, `connection refused`…
    pub fn short(&self) -> String {
        match self {
            CallError::Status { status, .. } => format!("HTTP {status}"),
            CallError::Timeout(_) => "timeout".into(),
            CallError::Connection(_) => "connection failed".into(),
            CallError::Redirected { status, .. } => format!("HTTP {status} (redirect)"),
            CallError::TooLarge { .. } => "answer too large".into(),
        }
    }
}

/// Exponential backoff with jitter: a random wait between 3/4 of and the
/// whole of min(cap, base × 2^attempt). The jitter spreads a pool's retries;
/// keeping it to a quarter makes each wait longer than the one before (a
/// full-jitter wait can come out shorter, which looks like no backoff at all
/// to a provider).
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP)
        .as_secs_f64();
    Duration::from_secs_f64(rand::rng().random_range(ceiling * 0.75..=ceiling))
}

/// A reqwest error without the URL (which may carry an Azure key or secrets
/// in query parameters on some deployments).
pub fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// The one HTTP client of the process's provider calls: no redirects
/// followed, `timeout` per request, connections kept for the pool.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, OpenAiError> {
    // reqwest is built without a default crypto provider; install ring
    // once for the process (a no-op when one is already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout.max(Duration::from_secs(1)))
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(4096)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| OpenAiError::Client(e.to_string()))
}

impl Connection {
    /// A connection to `base_url` (checked: http or https).
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        api_version: Option<&str>,
        auth: AuthStyle,
        key: SecretString,
        timeout: Duration,
    ) -> Result<Self, OpenAiError> {
        let base = base_url.trim_end_matches('/');
        let invalid = |reason: String| OpenAiError::InvalidBaseUrl {
            url: base_url.to_string(),
            reason,
        };
        let parsed = reqwest::Url::parse(base).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("must be http or https".into()));
        }
        let api_root = match base.find("/deployments/") {
            Some(i) => base[..i].to_string(),
            None => base.to_string(),
        };
        let mut connection = Self {
            client,
            chat_url: String::new(),
            api_root,
            api_version: api_version.map(str::to_string),
            key,
            auth,
            timeout,
        };
        connection.chat_url = connection.url_under(base, "chat/completions");
        Ok(connection)
    }

    /// The chat-completions URL.
    pub fn chat_url(&self) -> &str {
        &self.chat_url
    }

    fn url_under(&self, root: &str, path: &str) -> String {
        let mut url = format!("{root}/{path}");
        if let Some(v) = &self.api_version {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("api-version=");
            url.push_str(v);
        }
        url
    }

    /// A Files or Batch API URL (`files`, `batches/{id}`, …).
    pub fn api_url(&self, path: &str) -> String {
        self.url_under(&self.api_root, path)
    }

    /// `text` with every occurrence of the API key replaced: a provider's
    /// error may echo it.
    pub fn redact(&self, text: String) -> String {
        let key = self.key.expose_secret();
        if key.is_empty() || !text.contains(key) {
            return text;
        }
        text.replace(key, "[redacted]")
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let key = self.key.expose_secret();
        match self.auth {
            AuthStyle::Bearer => request.bearer_auth(key),
            AuthStyle::ApiKey => request.header("api-key", key),
        }
    }

    /// POSTs a JSON body to the chat-completions URL.
    pub async fn chat(&self, body: String, cap: usize) -> Result<Answer, CallError> {
        let request = self
            .post(&self.chat_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.exchange(request, cap, Transfer::Request).await
    }

    /// Sends one request, authorised, and reads its answer (a success up to
    /// `cap` bytes, an error's first 64 KiB). Only a transport failure, a
    /// redirect or an oversized body is an `Err`; any status is an [`Answer`].
    pub async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        cap: usize,
        transfer: Transfer,
    ) -> Result<Answer, CallError> {
        let request = match transfer {
            Transfer::Request => request,
            Transfer::Upload(bytes) => request.timeout(self.transfer_timeout(bytes)),
            // The whole download has no deadline; each piece of it has one.
            Transfer::Download => request.timeout(Duration::from_secs(24 * 3600)),
        };
        let started = Instant::now();
        let response = self
            .authorised(request)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_redirection() {
            return Err(CallError::Redirected {
                url: self.chat_url.split('?').next().unwrap_or_default().into(),
                status: status.as_u16(),
                location: shown_location(&headers),
            });
        }
        let cap = if status.is_success() {
            cap
        } else {
            cap.min(ERROR_BODY_CAP)
        };
        let idle = matches!(transfer, Transfer::Download).then_some(self.timeout);
        let body = match read_capped(response, cap, idle).await {
            Ok(b) => b,
            // An error's body is only its explanation: what was read will do.
            Err(BodyError::TooLarge(read)) if !status.is_success() => read,
            Err(BodyError::TooLarge(_)) => return Err(CallError::TooLarge { cap }),
            Err(BodyError::Cut(e)) => {
                return Err(CallError::Connection(format!("answer cut off: {e}")));
            }
        };
        Ok(Answer {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// The time a transfer of `bytes` is given: the request timeout plus the
    /// bytes at [`MIN_TRANSFER_BYTES_PER_SECOND`].
    pub fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs(bytes / MIN_TRANSFER_BYTES_PER_SECOND)
    }

    /// A Files or Batch API call: sent (again, built afresh by `build`) until
    /// it succeeds or fails for good. Unavailable and rate-limited answers
    /// are retried with backoff, or after the `Retry-After` given (capped at
    /// `max_wait`), at most [`MANAGEMENT_ATTEMPTS`] times; anything else is
    /// returned at once. The body of the success.
    pub async fn management(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        cap: usize,
        transfer: impl Fn() -> Transfer,
        max_wait: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let mut attempt = 0;
        loop {
            let error = match self.exchange(build(), cap, transfer()).await {
                Ok(answer) => match answer.error() {
                    None => return Ok(answer.body),
                    Some(e) => e,
                },
                Err(e) => e,
            };
            attempt += 1;
            let retry = matches!(error.class(), Class::Unavailable | Class::RateLimited);
            if !retry || attempt >= MANAGEMENT_ATTEMPTS {
                return Err(error);
            }
            let wait = error
                .retry_after()
                .unwrap_or_else(|| backoff(attempt).max(Duration::from_millis(200)));
            tokio::time::sleep(wait.min(max_wait)).await;
        }
    }
}

/// What a request carries or fetches, for its timeout.
#[derive(Debug, Clone, Copy)]
pub enum Transfer {
    /// An ordinary request: the request timeout.
    Request,
    /// Uploads this many bytes: [`Connection::transfer_timeout`].
    Upload(u64),
    /// Fetches a file of unknown size: no total deadline, but no more than
    /// the request timeout without a byte.
    Download,
}

fn transport(e: &reqwest::Error) -> CallError {
    if e.is_timeout() {
        CallError::Timeout(without_url(e))
    } else {
        CallError::Connection(without_url(e))
    }
}

/// A redirect's location without its query (which may carry anything).
fn shown_location(headers: &HeaderMap) -> String {
    headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "nowhere".to_string(),
            |l| {
                let shown = match reqwest::Url::parse(l) {
                    Ok(mut url) => {
                        url.set_query(None);
                        url.to_string()
                    }
                    Err(_) => l.split('?').next().unwrap_or_default().to_string(),
                };
                crate::model::truncate_chars(&shown, 200)
            },
        )
}

/// Why a body could not be read whole.
enum BodyError {
    /// Over the cap: what was read before.
    TooLarge(Vec<u8>),
    Cut(String),
}

/// Reads a body, refusing one over `cap` bytes before it is held; with
/// `idle`, giving up when no byte comes for that long.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    idle: Option<Duration>,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(Vec::new()));
    }
    let mut body = Vec::new();
    loop {
        let chunk = match idle {
            Some(idle) => match tokio::time::timeout(idle, response.chunk()).await {
                Ok(chunk) => chunk,
                Err(_) => return Err(BodyError::Cut(format!("no data for {idle:?}"))),
            },
            None => response.chunk().await,
        };
        let Some(chunk) = chunk.map_err(|e| BodyError::Cut(without_url(&e)))? else {
            return Ok(body);
        };
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(body));
        }
        body.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, body: &str) -> CallError {
        CallError::Status {
            status,
            error: ApiError::parse(body.as_bytes()),
            retry_after: None,
        }
    }

    #[test]
    fn every_answer_maps_to_one_retry_rule() {
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let rate = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        let cases = [
            (
                status(429, quota),
                Class::Unusable(FatalKind::QuotaExhausted),
            ),
            (status(429, rate), Class::RateLimited),
            (status(401, ""), Class::Unusable(FatalKind::KeyRejected)),
            (status(403, ""), Class::Unusable(FatalKind::KeyRejected)),
            (status(404, ""), Class::Unusable(FatalKind::NotFound)),
            (status(408, ""), Class::Unavailable),
            (status(409, ""), Class::Unavailable),
            (status(500, ""), Class::Unavailable),
            (status(503, ""), Class::Unavailable),
            (status(400, ""), Class::Refused),
            (status(422, ""), Class::Refused),
            (CallError::Timeout("t".into()), Class::Unavailable),
            (CallError::Connection("c".into()), Class::Unavailable),
            (CallError::TooLarge { cap: 1 }, Class::TooLarge),
            (
                CallError::Redirected {
                    url: "u".into(),
                    status: 307,
                    location: "l".into(),
                },
                Class::Unusable(FatalKind::Redirected),
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
        // A quota named only in the text is a rate limit: codes decide.
        let worded = r#"{"error":{"message":"insufficient_quota","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(status(429, worded).class(), Class::RateLimited);
    }

    #[test]
    fn error_bodies_of_every_dialect_are_read() {
        let openai = ApiError::parse(
            br#"{"error":{"message":"Invalid parameter","type":"invalid_request_error","param":"response_format","code":null}}"#,
        );
        assert_eq!(openai.param.as_deref(), Some("response_format"));
        assert_eq!(openai.kind.as_deref(), Some("invalid_request_error"));
        assert_eq!(openai.code, None);
        assert_eq!(
            openai.to_string(),
            "invalid_request_error: Invalid parameter"
        );
        let vllm = ApiError::parse(
            br#"{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}"#,
        );
        assert_eq!(vllm.code.as_deref(), Some("400"));
        assert_eq!(vllm.message, "bad");
        let ollama = ApiError::parse(br#"{"error":"model not found"}"#);
        assert_eq!(ollama.message, "model not found");
        let fastapi = ApiError::parse(
            br#"{"detail":[{"type":"literal_error","loc":["body","response_format","type"],"msg":"Input should be 'text' or 'json_object'","input":"json_schema"}]}"#,
        );
        assert_eq!(fastapi.param.as_deref(), Some("body.response_format.type"));
        assert_eq!(fastapi.message, "Input should be 'text' or 'json_object'");
        let html = ApiError::parse(b"<html>bad gateway</html>");
        assert_eq!(html.message, "<html>bad gateway</html>");
        assert_eq!(html.code, None);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP);
            assert!(d <= BACKOFF_BASE * 2u32.pow(attempt.min(10)));
        }
        assert!(backoff(3) > backoff(1));
    }

    #[test]
    fn urls_keys_and_transfers() {
        let client = http_client(Duration::from_secs(60)).unwrap();
        let azure = Connection::new(
            client.clone(),
            "https://x.openai.azure.com/openai/deployments/gpt4o/",
            Some("2024-10-21"),
            AuthStyle::ApiKey,
            SecretString::from("sk-secret"),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            azure.chat_url(),
            "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            azure.api_url("batches"),
            "https://x.openai.azure.com/openai/batches?api-version=2024-10-21"
        );
        assert_eq!(
            azure.redact("echo sk-secret back".into()),
            "echo [redacted] back"
        );
        assert!(!format!("{azure:?}").contains("sk-secret"));
        // 200 MB at the slowest rate allowed: 400 s on top of the timeout.
        assert_eq!(
            azure.transfer_timeout(200 * 1024 * 1024),
            Duration::from_secs(460)
        );
        for url in ["not a url", "ftp://example.com/v1"] {
            assert!(matches!(
                Connection::new(
                    client.clone(),
                    url,
                    None,
                    AuthStyle::Bearer,
                    SecretString::from("k"),
                    Duration::from_secs(1)
                ),
                Err(OpenAiError::InvalidBaseUrl { .. })
            ));
        }
    }
}
