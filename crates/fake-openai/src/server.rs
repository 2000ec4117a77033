//! The server: state, rate-limit buckets, fault injection, reply generation.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{go_duration, rate_limit_tokens};

/// How long answers take (429s are immediate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
    LogNormal { median: Duration, sigma: f64 },
}

/// Probability of each injected failure kind, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// 500 with an error body.
    pub server_error: f64,
    /// 503.
    pub unavailable: f64,
    /// Headers sent, then the connection breaks mid-body.
    pub drop_connection: f64,
    /// 200 with the body cut in half.
    pub truncated_json: f64,
    /// Content wrapped in a markdown fence: still a valid answer.
    pub fenced_json: f64,
    /// `message.refusal` set, content null.
    pub refusal: f64,
    /// Hangs for `FakeConfig::hang` before answering 504.
    pub timeout: f64,
    /// Content that is not JSON.
    pub invalid_json_content: f64,
    /// Content JSON that violates the schema.
    pub schema_violation: f64,
}

impl Faults {
    /// `total` probability spread evenly over the failure kinds (fenced JSON,
    /// which is not a failure, excluded).
    pub fn uniform(total: f64) -> Self {
        let each = total / 8.0;
        Faults {
            server_error: each,
            unavailable: each,
            drop_connection: each,
            truncated_json: each,
            fenced_json: 0.0,
            refusal: each,
            timeout: each,
            invalid_json_content: each,
            schema_violation: each,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeConfig {
    pub latency: Latency,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub faults: Faults,
    pub hang: Duration,
    pub seed: u64,
    pub workers: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            latency: Latency::Fixed(Duration::ZERO),
            requests_per_minute: None,
            tokens_per_minute: None,
            faults: Faults::default(),
            hang: Duration::from_secs(120),
            seed: 1,
            workers: 2,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub succeeded: u64,
    pub rate_limited: u64,
    pub faults: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub rate_limit_tokens: u64,
    pub distinct_conversations_answered: u64,
    pub conversations_answered_more_than_once: u64,
    pub max_in_flight: u64,
    /// Requests that arrived while a 429's retry-after was still running,
    /// more than 50 ms after that 429 was sent.
    pub requests_during_retry_after: u64,
    /// Since the server started.
    pub last_request_at: Option<Duration>,
    pub authorization_seen: Vec<String>,
    pub api_versions_seen: Vec<String>,
}

/// Requests that were already on their way when a 429 went out are not
/// counted as ignoring it.
const GRACE: Duration = Duration::from_millis(50);

struct Bucket {
    per_minute: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32, now: Instant) -> Self {
        let capacity = (f64::from(per_minute) / 10.0).max(1.0);
        Bucket {
            per_minute: f64::from(per_minute),
            capacity,
            level: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * self.per_minute / 60.0).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` is available (zero when it already is).
    fn wait_for(&self, amount: f64) -> Duration {
        // A request larger than the bucket is admitted when the bucket is full.
        let deficit = amount.min(self.capacity) - self.level;
        if deficit <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(deficit * 60.0 / self.per_minute)
        }
    }

    fn until_full(&self) -> Duration {
        Duration::from_secs_f64((self.capacity - self.level).max(0.0) * 60.0 / self.per_minute)
    }
}

struct Limiter {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

#[derive(Default)]
struct Counters {
    stats: Stats,
    answered: HashMap<u64, u32>,
    authorization: BTreeSet<String>,
    api_versions: BTreeSet<String>,
    /// (when the last 429 was sent, when its retry-after ends).
    window: Option<(Instant, Instant)>,
}

struct State {
    config: Mutex<FakeConfig>,
    counters: Mutex<Counters>,
    limiter: Mutex<Limiter>,
    storm: Mutex<Option<(u32, Duration)>>,
    quota_exhausted: AtomicBool,
    rng: Mutex<StdRng>,
    started: Instant,
    in_flight: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn limiter_for(config: &FakeConfig, now: Instant) -> Limiter {
        Limiter {
            requests: config.requests_per_minute.map(|n| Bucket::new(n, now)),
            tokens: config.tokens_per_minute.map(|n| Bucket::new(n, now)),
        }
    }
}

/// A running fake server. Stops on [`FakeServer::stop`] or when dropped.
pub struct FakeServer {
    base_url: String,
    state: Arc<State>,
    /// Tells the server thread to stop.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Binds 127.0.0.1 on a free port and serves on a thread of its own.
    pub fn start(config: FakeConfig) -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let now = Instant::now();
        let state = Arc::new(State {
            limiter: Mutex::new(State::limiter_for(&config, now)),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config: Mutex::new(config.clone()),
            counters: Mutex::new(Counters::default()),
            storm: Mutex::new(None),
            quota_exhausted: AtomicBool::new(false),
            started: now,
            in_flight: AtomicU64::new(0),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        let workers = config.workers.max(1);
        let thread = std::thread::Builder::new()
            .name("fake-openai".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let ready = tx.clone();
                let result = system.block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(web::Data::new(shared.clone()))
                            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                            .route("/v1/chat/completions", web::post().to(completions))
                            .route("/chat/completions", web::post().to(completions))
                            .route("/v1/models", web::get().to(models))
                            .route("/stats", web::get().to(stats))
                    })
                    .workers(workers)
                    .backlog(4096)
                    .max_connection_rate(4096)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener)?
                    .run();
                    let handle = server.handle();
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                    actix_rt::spawn(async move {
                        // A dropped sender (the FakeServer gone) stops the server too.
                        let _ = stop_rx.await;
                        handle.stop(false).await;
                    });
                    let _ = ready.send(Ok(stop_tx));
                    server.await
                });
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                }
            })?;
        let stop = rx
            .recv()
            .map_err(|_| std::io::Error::other("fake server thread ended early"))??;
        Ok(FakeServer {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn stats(&self) -> Stats {
        snapshot(&self.state)
    }

    /// Changes behaviour live (limits take effect with fresh buckets).
    pub fn update(&self, f: impl FnOnce(&mut FakeConfig)) {
        let mut config = lock(&self.state.config);
        f(&mut config);
        *lock(&self.state.limiter) = State::limiter_for(&config, Instant::now());
    }

    /// The next `requests` requests all get 429 with this retry-after.
    pub fn rate_limit_storm(&self, requests: u32, retry_after: Duration) {
        *lock(&self.state.storm) = Some((requests, retry_after));
    }

    /// Answers every request with a permanent `insufficient_quota` 429.
    pub fn set_insufficient_quota(&self, on: bool) {
        self.state.quota_exhausted.store(on, Ordering::SeqCst);
    }

    /// Stops gracefully and joins the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn snapshot(state: &State) -> Stats {
    let c = lock(&state.counters);
    let mut s = c.stats.clone();
    s.distinct_conversations_answered = c.answered.len() as u64;
    s.conversations_answered_more_than_once =
        c.answered.values().filter(|n| **n > 1).count() as u64;
    s.authorization_seen = c.authorization.iter().cloned().collect();
    s.api_versions_seen = c.api_versions.iter().cloned().collect();
    s
}

async fn stats(state: web::Data<Arc<State>>) -> HttpResponse {
    HttpResponse::Ok().json(snapshot(&state))
}

async fn models(state: web::Data<Arc<State>>) -> HttpResponse {
    let _ = &state;
    HttpResponse::Ok()
        .json(json!({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}))
}

/// FNV-1a: a stable identity for a conversation's content.
fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

enum Verdict {
    Pass,
    Limited { wait: Duration, kind: &'static str },
}

/// Decreases in-flight when the request finishes, whatever the path.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn completions(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<State>>,
) -> HttpResponse {
    let now = Instant::now();
    let current = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&state.in_flight);
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let problem = parsed.as_ref().err().map(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        format!("body is not JSON ({e}); it starts with {head:?}")
    });
    let request = parsed.unwrap_or(Value::Null);
    let tokens = rate_limit_tokens(&request);
    let conversation = request["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    {
        let mut c = lock(&state.counters);
        c.stats.requests += 1;
        c.stats.max_in_flight = c.stats.max_in_flight.max(current);
        c.stats.last_request_at = Some(now.duration_since(state.started));
        for name in ["authorization", "api-key"] {
            if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
                c.authorization.insert(v.to_string());
            }
        }
        if let Some(v) = req
            .query_string()
            .split('&')
            .find_map(|kv| kv.strip_prefix("api-version="))
        {
            c.api_versions.insert(v.to_string());
        }
        if let Some((sent, until)) = c.window
            && now > sent + GRACE
            && now < until
        {
            c.stats.requests_during_retry_after += 1;
        }
    }
    if let Some(problem) = problem {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &problem);
    }

    if state.quota_exhausted.load(Ordering::SeqCst) {
        lock(&state.counters).stats.rate_limited += 1;
        return HttpResponse::TooManyRequests().json(json!({"error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "code": "insufficient_quota", "param": null}}));
    }

    // Storms and limits answer at once, without latency, like the real service.
    let storm = {
        let mut s = lock(&state.storm);
        match s.as_mut() {
            Some((left, wait)) if *left > 0 => {
                *left -= 1;
                Some(*wait)
            }
            _ => None,
        }
    };
    let (verdict, headers) = {
        let mut l = lock(&state.limiter);
        if let Some(b) = l.requests.as_mut() {
            b.refill(now);
        }
        if let Some(b) = l.tokens.as_mut() {
            b.refill(now);
        }
        let mut verdict = Verdict::Pass;
        if let Some(wait) = storm {
            verdict = Verdict::Limited {
                wait,
                kind: "requests",
            };
        } else {
            let wr = l
                .requests
                .as_ref()
                .map_or(Duration::ZERO, |b| b.wait_for(1.0));
            let wt = l
                .tokens
                .as_ref()
                .map_or(Duration::ZERO, |b| b.wait_for(tokens as f64));
            if wr > Duration::ZERO || wt > Duration::ZERO {
                let kind = if wr >= wt { "requests" } else { "tokens" };
                verdict = Verdict::Limited {
                    wait: wr.max(wt),
                    kind,
                };
            } else {
                if let Some(b) = l.requests.as_mut() {
                    b.level -= 1.0;
                }
                if let Some(b) = l.tokens.as_mut() {
                    b.level -= (tokens as f64).min(b.capacity);
                }
            }
        }
        let mut headers = Vec::new();
        for (kind, bucket) in [("requests", &l.requests), ("tokens", &l.tokens)] {
            if let Some(b) = bucket {
                headers.push((
                    format!("x-ratelimit-limit-{kind}"),
                    format!("{}", b.per_minute as u64),
                ));
                headers.push((
                    format!("x-ratelimit-remaining-{kind}"),
                    format!("{}", b.level.max(0.0).floor() as u64),
                ));
                headers.push((
                    format!("x-ratelimit-reset-{kind}"),
                    go_duration(b.until_full()),
                ));
            }
        }
        (verdict, headers)
    };

    if let Verdict::Limited { wait, kind } = verdict {
        {
            let mut c = lock(&state.counters);
            c.stats.rate_limited += 1;
            let until = now + wait;
            let window_end = c.window.map_or(until, |(_, u)| u.max(until));
            c.window = Some((now, window_end));
        }
        let mut r = HttpResponse::TooManyRequests();
        for (k, v) in &headers {
            r.insert_header((k.as_str(), v.as_str()));
        }
        r.insert_header(("retry-after-ms", format!("{}", wait.as_millis().max(1))));
        r.insert_header((
            "retry-after",
            format!("{}", wait.as_secs_f64().ceil() as u64),
        ));
        return r.json(json!({"error": {
            "message": format!("Rate limit reached for {kind} on the fake server. Please try again in {}.", go_duration(wait)),
            "type": kind, "code": "rate_limit_exceeded", "param": null}}));
    }
    lock(&state.counters).stats.rate_limit_tokens += tokens;

    let (config, roll, delay) = {
        let config = lock(&state.config).clone();
        let mut rng = lock(&state.rng);
        let roll: f64 = rng.random();
        let delay = match config.latency {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                let (lo, hi) = (min.as_secs_f64(), max.as_secs_f64().max(min.as_secs_f64()));
                Duration::from_secs_f64(rng.random_range(lo..=hi))
            }
            Latency::LogNormal { median, sigma } => {
                LogNormal::new(median.as_secs_f64().max(1e-6).ln(), sigma)
                    .map(|d| Duration::from_secs_f64(d.sample(&mut *rng).min(60.0)))
                    .unwrap_or(median)
            }
        };
        (config, roll, delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let f = config.faults;
    let kinds = [
        (f.server_error, Fault::ServerError),
        (f.unavailable, Fault::Unavailable),
        (f.drop_connection, Fault::Drop),
        (f.truncated_json, Fault::Truncated),
        (f.fenced_json, Fault::Fenced),
        (f.refusal, Fault::Refusal),
        (f.timeout, Fault::Timeout),
        (f.invalid_json_content, Fault::NotJson),
        (f.schema_violation, Fault::SchemaViolation),
    ];
    let mut acc = 0.0;
    let fault = kinds.iter().find_map(|(p, k)| {
        acc += p;
        (roll < acc).then_some(*k)
    });

    let schema = &request["response_format"]["json_schema"]["schema"];
    let seed = fnv(&conversation) ^ config.seed;
    let answer = if schema.is_object() {
        generate(schema, &conversation, &mut StdRng::seed_from_u64(seed), "")
    } else {
        default_answer(&conversation)
    };
    let mut content = answer.to_string();
    let prompt_tokens = tokens.saturating_sub(request["max_tokens"].as_u64().unwrap_or(16));
    let mut refusal = Value::Null;
    match fault {
        Some(Fault::ServerError) => {
            return injected(&state, StatusCode::INTERNAL_SERVER_ERROR, &headers);
        }
        Some(Fault::Unavailable) => {
            return injected(&state, StatusCode::SERVICE_UNAVAILABLE, &headers);
        }
        Some(Fault::Timeout) => {
            lock(&state.counters).stats.faults += 1;
            tokio::time::sleep(config.hang).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "timeout", "upstream timed out");
        }
        Some(Fault::Drop) => {
            lock(&state.counters).stats.faults += 1;
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(bytes::Bytes::from_static(b"{\"choices\":[")),
                Err(std::io::Error::other(
                    "connection dropped by fault injection",
                )),
            ];
            return HttpResponse::Ok()
                .content_type("application/json")
                .streaming(futures_util::stream::iter(chunks));
        }
        Some(Fault::Fenced) => content = format!("```json\n{content}\n```"),
        Some(Fault::Refusal) => {
            refusal = Value::String("I'm sorry, I can't help with that request.".into());
        }
        Some(Fault::NotJson) => content = "The customer seems fairly happy overall.".into(),
        Some(Fault::SchemaViolation) => {
            content =
                json!({"sentiment": {"label": "ecstatic", "score": 7}, "summary": 3}).to_string();
        }
        Some(Fault::Truncated) | None => {}
    }
    let is_fault = !matches!(fault, None | Some(Fault::Fenced));
    let completion_tokens = (content.chars().count() as u64).div_ceil(4);
    let body = json!({
        "id": format!("chatcmpl-fake-{seed:x}"),
        "object": "chat.completion",
        "created": 0,
        "model": request["model"],
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": if refusal.is_null() { Value::String(content) } else { Value::Null },
                "refusal": refusal,
            },
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    });
    {
        let mut c = lock(&state.counters);
        c.stats.prompt_tokens += prompt_tokens;
        c.stats.completion_tokens += completion_tokens;
        if is_fault {
            c.stats.faults += 1;
        } else {
            c.stats.succeeded += 1;
            *c.answered.entry(fnv(&conversation)).or_default() += 1;
        }
    }
    let mut bytes = body.to_string().into_bytes();
    if matches!(fault, Some(Fault::Truncated)) {
        bytes.truncate(bytes.len() / 2);
    }
    let mut r = HttpResponse::Ok();
    for (k, v) in &headers {
        r.insert_header((k.as_str(), v.as_str()));
    }
    r.content_type("application/json").body(bytes)
}

#[derive(Clone, Copy)]
enum Fault {
    ServerError,
    Unavailable,
    Drop,
    Truncated,
    Fenced,
    Refusal,
    Timeout,
    NotJson,
    SchemaViolation,
}

fn injected(state: &State, status: StatusCode, headers: &[(String, String)]) -> HttpResponse {
    lock(&state.counters).stats.faults += 1;
    let mut r = HttpResponse::build(status);
    for (k, v) in headers {
        r.insert_header((k.as_str(), v.as_str()));
    }
    r.json(json!({"error": {"message": "injected fault", "type": "server_error", "code": null}}))
}

fn error(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"error": {"message": message, "type": kind, "code": null}}))
}

/// The mood the content suggests, for schema fields named `label`.
fn mood(text: &str) -> Option<&'static str> {
    let t = text.to_lowercase();
    if ["angry", "worst", "still", "useless", "ridiculous"]
        .iter()
        .any(|w| t.contains(w))
    {
        Some("negative")
    } else if ["thank", "great", "works now"]
        .iter()
        .any(|w| t.contains(w))
    {
        Some("positive")
    } else {
        None
    }
}

/// A value fitting `schema`, deterministic for `rng`'s seed.
fn generate(schema: &Value, text: &str, rng: &mut StdRng, name: &str) -> Value {
    if let Some(options) = schema["enum"].as_array().filter(|o| !o.is_empty()) {
        if name == "sentiment.label"
            && let Some(m) = mood(text)
            && options.iter().any(|o| o == m)
        {
            return Value::String(m.into());
        }
        return options[rng.random_range(0..options.len())].clone();
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => {
            let ts: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            if ts.is_empty() {
                "null".into()
            } else {
                ts[rng.random_range(0..ts.len())].to_string()
            }
        }
        _ => "null".into(),
    };
    match ty.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    let path = if name.is_empty() {
                        k.clone()
                    } else {
                        format!("{name}.{k}")
                    };
                    out.insert(k.clone(), generate(s, text, rng, &path));
                }
            }
            Value::Object(out)
        }
        "array" => Value::Array(
            (0..rng.random_range(0..3))
                .map(|_| generate(&schema["items"], text, rng, name))
                .collect(),
        ),
        "string" => {
            let max = schema["maxLength"].as_u64().unwrap_or(120) as usize;
            let s = format!(
                "The customer discussed their issue with support ({} words).",
                text.split_whitespace().count()
            );
            Value::String(s.chars().take(max).collect())
        }
        "integer" => {
            let (lo, hi) = range(schema, name, 1.0, 5.0);
            json!(rng.random_range(lo as i64..=hi as i64))
        }
        "number" => {
            let (lo, hi) = range(schema, name, -1.0, 1.0);
            let x: f64 = rng.random_range(lo..=hi);
            let x = match (name, mood(text)) {
                ("sentiment.score", Some("negative")) => -x.abs(),
                ("sentiment.score", Some("positive")) => x.abs(),
                _ => x,
            };
            json!((x * 100.0).round() / 100.0)
        }
        "boolean" => Value::Bool(rng.random()),
        _ => Value::Null,
    }
}

/// Bounds from the schema, or defaults that fit PowerPulse's result schema.
fn range(schema: &Value, name: &str, lo: f64, hi: f64) -> (f64, f64) {
    let (dlo, dhi) = if name.ends_with("satisfaction.score") {
        (1.0, 5.0)
    } else {
        (lo, hi)
    };
    (
        schema["minimum"].as_f64().unwrap_or(dlo),
        schema["maximum"].as_f64().unwrap_or(dhi),
    )
}

fn default_answer(text: &str) -> Value {
    let label = mood(text).unwrap_or("neutral");
    let (score, sat) = match label {
        "positive" => (0.6, 4),
        "negative" => (-0.6, 2),
        _ => (0.0, 3),
    };
    json!({
        "sentiment": {"label": label, "score": score},
        "satisfaction": {"score": sat, "label": match sat { 4 => "satisfied", 2 => "dissatisfied", _ => "neutral" }},
        "resolved": null,
        "summary": "The customer contacted support.",
    })
}
