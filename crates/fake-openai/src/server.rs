//! The HTTP side: the server thread's lifecycle, routing, the shared state
//! (batches advance from here), and the chat-completions handler that puts limits, latency, faults and replies
//! together in the order the real service does: quota, then rate limits
//! (429s at once), then the model's time, then the answer or the failure.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer, web};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::batch::{Answer, Batches};
use crate::batch_http;
use crate::cache::PromptCache;
use crate::config::{FakeConfig, Fault, Hostile};
use crate::limits::{Admission, LimitKind, Limiter, ceil_millis, go_duration};
use crate::rate_limit_tokens;
use crate::reply::{ChatRequest, Content, Reply, RequestError, completion, content};
use crate::stats::{Arrival, Recorder, Stats};

/// Large enough for any transcript PowerPulse sends; bounded so a broken
/// client cannot make the fake buffer without end.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A running fake server on 127.0.0.1. Stops on [`FakeServer::stop`] or
/// when dropped.
pub struct FakeServer {
    base_url: String,
    state: Arc<State>,
    /// Tells the server thread to stop; dropping it does too.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Binds 127.0.0.1 on a free port and serves on a thread of its own,
    /// with its own actix `System`; returns once the socket is listening.
    pub fn start(config: FakeConfig) -> std::io::Result<FakeServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
    }

    /// As [`FakeServer::start`], on a given address (the binary's `--port`).
    pub fn start_on(addr: SocketAddr, config: FakeConfig) -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind(addr)?;
        let mut local = listener.local_addr()?;
        if local.ip().is_unspecified() {
            local.set_ip([127, 0, 0, 1].into());
        }
        let state = Arc::new(State::new(&config));
        let workers = config.workers.max(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-openai".into())
            .spawn(move || serve(listener, shared, workers, ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(stop)) => Ok(FakeServer {
                base_url: format!("http://{local}/v1"),
                state,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other(
                "the fake server's thread ended before it was ready",
            )),
        }
    }

    /// `http://127.0.0.1:PORT/v1`: what a client takes as its base URL.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn stats(&self) -> Stats {
        self.state.advance_batches();
        self.state.recorder().snapshot()
    }

    /// Every batch created, oldest first, as `GET /batches/{id}` shows it
    /// now: a test asserts with it which batches a client made.
    pub fn batches(&self) -> Vec<Value> {
        self.state.advance_batches();
        lock(&self.state.batches).all()
    }

    /// A stored file's bytes (uploads, and batches' output and error files).
    pub fn file_content(&self, id: &str) -> Option<Vec<u8>> {
        self.state.advance_batches();
        lock(&self.state.batches).file(id).map(|f| f.bytes.clone())
    }

    /// Changes behaviour live. Buckets whose limit is unchanged keep their
    /// level; `workers` cannot change after start.
    pub fn update(&self, f: impl FnOnce(&mut FakeConfig)) {
        // Batches due under the old schedule finish under it.
        self.state.advance_batches();
        let mut config = lock(&self.state.config);
        let seed = config.seed;
        f(&mut config);
        self.state.limiter().reconfigure(&config, Instant::now());
        if config.seed != seed {
            *lock(&self.state.rng) = StdRng::seed_from_u64(config.seed);
        }
    }

    /// The next `requests` requests all get 429 with this retry-after
    /// (`retry-after-ms` and `retry-after`), whatever the limits say.
    pub fn rate_limit_storm(&self, requests: u32, retry_after: Duration) {
        self.state.limiter().start_storm(requests, retry_after);
    }

    /// The next requests get these answers, one each, in order; then the
    /// fake behaves normally again.
    pub fn misbehave(&self, script: impl IntoIterator<Item = Hostile>) {
        lock(&self.state.hostile).extend(script);
    }

    /// Every chat-completions body and uploaded file received, byte for
    /// byte, oldest first (malformed ones included), when
    /// [`FakeConfig::record_received`] is on.
    pub fn received(&self) -> Vec<Vec<u8>> {
        lock(&self.state.received).clone()
    }

    /// The bodies of the last 64 requests, oldest first.
    pub fn recent_requests(&self) -> Vec<Value> {
        lock(&self.state.bodies).iter().cloned().collect()
    }

    /// While on, every request gets a permanent `insufficient_quota` 429.
    pub fn set_insufficient_quota(&self, on: bool) {
        self.state.quota_exhausted.store(on, Ordering::SeqCst);
    }

    /// Stops gracefully (in-flight requests get a second to finish) and
    /// joins the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Stops as [`FakeServer::stop`] does (an endpoint that dies), keeping
    /// its counters readable: what it answered, the last requests included.
    pub fn halt(&mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the server already stopped, which is the goal.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been reported there.
            let _ = thread.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type Ready = std::io::Result<tokio::sync::oneshot::Sender<()>>;

/// The server thread: runs until told to stop, reporting readiness (or why
/// it could not start) through `ready`.
fn serve(
    listener: TcpListener,
    state: Arc<State>,
    workers: usize,
    ready: std::sync::mpsc::Sender<Ready>,
) {
    let system = actix_rt::System::new();
    let result = system.block_on(async {
        let data = web::Data::from(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route("/chat/completions", web::post().to(completions))
                // `/v1/…`, Azure's `/openai/deployments/NAME/…`, any proxy prefix.
                .route("/{prefix:.*}/chat/completions", web::post().to(completions))
                .configure(batch_http::routes)
                .route("/models", web::get().to(models))
                .route("/v1/models", web::get().to(models))
                .route("/stats", web::get().to(stats))
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .backlog(4096)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        actix_rt::spawn(async move {
            // Sent or dropped: either way the owner is done with us.
            let _ = stop_rx.await;
            handle.stop(true).await;
        });
        // If start() is no longer waiting, the unsent stop_tx is dropped
        // here, which stops the server: nobody could stop it otherwise.
        let _ = ready.send(Ok(stop_tx));
        server.await
    });
    if let Err(e) = result {
        // If start() already returned, the error has nowhere to go but here.
        if let Err(std::sync::mpsc::SendError(Err(e))) = ready.send(Err(e)) {
            eprintln!("fake-openai: server stopped with an error: {e}");
        }
    }
}

/// Everything the handlers share.
pub(crate) struct State {
    pub(crate) config: Mutex<FakeConfig>,
    limiter: Mutex<Limiter>,
    recorder: Mutex<Recorder>,
    quota_exhausted: AtomicBool,
    /// Fault and latency draws; replies have their own per-conversation seed.
    rng: Mutex<StdRng>,
    in_flight: AtomicU64,
    next_id: AtomicU64,
    /// Answers still to give instead of the normal ones.
    hostile: Mutex<std::collections::VecDeque<Hostile>>,
    /// The last request bodies, newest last.
    bodies: Mutex<std::collections::VecDeque<Value>>,
    /// Everything received, when `record_received` is on.
    received: Mutex<Vec<Vec<u8>>>,
    pub(crate) batches: Mutex<Batches>,
    cache: Mutex<PromptCache>,
}

/// Request bodies kept for [`FakeServer::recent_requests`].
const BODIES_KEPT: usize = 64;

impl State {
    fn new(config: &FakeConfig) -> Self {
        let now = Instant::now();
        State {
            config: Mutex::new(config.clone()),
            limiter: Mutex::new(Limiter::new(config, now)),
            recorder: Mutex::new(Recorder::new(now)),
            quota_exhausted: AtomicBool::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            in_flight: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            hostile: Mutex::new(Default::default()),
            bodies: Mutex::new(Default::default()),
            received: Mutex::new(Vec::new()),
            batches: Mutex::new(Batches::new(now, config.seed)),
            cache: Mutex::new(PromptCache::default()),
        }
    }

    pub(crate) fn recorder(&self) -> MutexGuard<'_, Recorder> {
        lock(&self.recorder)
    }

    fn limiter(&self) -> MutexGuard<'_, Limiter> {
        lock(&self.limiter)
    }

    fn config(&self) -> FakeConfig {
        lock(&self.config).clone()
    }

    /// Keeps `bytes` for [`FakeServer::received`] when asked to.
    pub(crate) fn receive(&self, bytes: &[u8]) {
        if lock(&self.config).record_received {
            lock(&self.received).push(bytes.to_vec());
        }
    }

    /// Moves every batch along its schedule to now.
    pub(crate) fn advance_batches(&self) {
        let config = self.config();
        let mut batches = lock(&self.batches);
        let failed = batches.advance(Instant::now(), &config.batch, &mut |body, invalid| {
            self.answer_batch_line(&config, body, invalid)
        });
        if failed > 0 {
            self.recorder().batch_lines_failed(failed);
        }
    }

    /// A batch line's chat.completion: what the synchronous path would
    /// answer to `body`, or its 400.
    fn answer_batch_line(&self, config: &FakeConfig, body: &Value, invalid: bool) -> Answer {
        let request = ChatRequest::from_value(body.clone())
            .map_err(|e| e.body())?
            .on(config.server);
        request.check_parameters().map_err(|e| e.body())?;
        let fault = invalid.then_some(Fault::SchemaViolation);
        let text = content(&request, config, fault);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reply = self.reply(&request, text, id);
        let mut recorder = self.recorder();
        recorder.batch_billed(reply.prompt_tokens, reply.completion_tokens);
        recorder.details(reply.cached_tokens, reply.reasoning_tokens);
        if !invalid {
            for identity in &request.identities {
                recorder.answered_in_batch(*identity);
            }
        }
        Ok(reply.body)
    }

    /// The chat.completion for `content`, with a fresh id and the prompt
    /// cache consulted.
    fn reply(&self, request: &ChatRequest, content: Content, id: u64) -> Reply {
        let cached = lock(&self.cache).lookup_and_remember(&request.body);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        completion(
            request,
            content,
            &format!("chatcmpl-fake-{id}"),
            created,
            cached,
        )
    }

    /// This request's configuration, fault and latency.
    fn draw(&self) -> (FakeConfig, Option<Fault>, Duration) {
        let config = lock(&self.config).clone();
        let mut rng = lock(&self.rng);
        let fault = config.faults.pick(rng.random());
        let delay = config.latency.sample(&mut *rng);
        (config, fault, delay)
    }
}

/// Counters stay usable after a panic elsewhere: every update leaves them
/// consistent, so a poisoned lock is safe to take over.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a request as in flight until it is answered or abandoned.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> (Self, u64) {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        (InFlight(counter), now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn completions(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
) -> Result<HttpResponse, RequestError> {
    let (_in_flight, concurrent) = InFlight::enter(&state.in_flight);
    let headers = req.headers();
    let keys = ["authorization", "api-key"]
        .iter()
        .filter_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .collect();
    let api_version = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="));
    state.recorder().arrived(Arrival {
        at: Instant::now(),
        in_flight: concurrent,
        keys,
        api_version,
    });
    state.receive(&body);
    let server = lock(&state.config).server;
    let request = ChatRequest::parse(&body)
        .inspect_err(|_| state.recorder().invalid_request())?
        .on(server);
    {
        let mut bodies = lock(&state.bodies);
        if bodies.len() == BODIES_KEPT {
            bodies.pop_front();
        }
        bodies.push_back(request.body.clone());
    }
    request
        .check_parameters()
        .inspect_err(|_| state.recorder().invalid_request())?;
    if let Some(hostile) = lock(&state.hostile).pop_front() {
        return Ok(misbehave(&request, hostile));
    }

    if state.quota_exhausted.load(Ordering::SeqCst) {
        let limits = state.limiter().headers();
        state.recorder().rate_limited(Instant::now(), None);
        let mut r = with_headers(HttpResponse::TooManyRequests(), &limits);
        return Ok(r.json(error_body(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            json!("insufficient_quota"),
        )));
    }

    let tokens = rate_limit_tokens(&request.body);
    let admission = state.limiter().admit(tokens, Instant::now());
    let limits = match admission {
        Admission::Admitted { headers } => headers,
        Admission::Limited {
            kind,
            wait,
            limit,
            headers,
        } => {
            state.recorder().rate_limited(Instant::now(), Some(wait));
            return Ok(too_many_requests(
                &request, kind, wait, limit, tokens, &headers,
            ));
        }
    };
    state.recorder().admitted(tokens);

    let (config, fault, delay) = state.draw();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut r = with_headers(HttpResponse::Ok(), &limits);
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    r.insert_header(("x-request-id", format!("req_fake_{id}")));
    r.insert_header(("openai-processing-ms", ceil_millis(delay).to_string()));
    if fault.is_some_and(Fault::is_failure) {
        state.recorder().fault();
    }
    let content = match fault {
        Some(Fault::ServerError) => {
            return Ok(r.status(StatusCode::INTERNAL_SERVER_ERROR).json(error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                Value::Null,
            )));
        }
        Some(Fault::Unavailable) => {
            return Ok(r.status(StatusCode::SERVICE_UNAVAILABLE).json(error_body(
                "The engine is currently overloaded, please try again later.",
                "server_error",
                Value::Null,
            )));
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(config.hang).await;
            return Ok(r.status(StatusCode::GATEWAY_TIMEOUT).json(error_body(
                "Gateway timeout.",
                "server_error",
                Value::Null,
            )));
        }
        Some(Fault::DropConnection) => {
            // A streamed body that fails after its first bytes: the server
            // closes the connection mid-response.
            let chunks: [Result<web::Bytes, std::io::Error>; 2] = [
                Ok(web::Bytes::from_static(
                    b"{\"id\":\"chatcmpl-fake\",\"choices\":[",
                )),
                Err(std::io::Error::other(
                    "connection dropped by fault injection",
                )),
            ];
            return Ok(r
                .content_type(ContentType::json())
                .streaming(futures_util::stream::iter(chunks)));
        }
        fault => content(&request, &config, fault),
    };

    let reply = state.reply(&request, content, id);
    {
        let mut recorder = state.recorder();
        recorder.billed(reply.prompt_tokens, reply.completion_tokens);
        recorder.details(reply.cached_tokens, reply.reasoning_tokens);
        if !fault.is_some_and(Fault::is_failure) {
            for identity in &request.identities {
                recorder.answered(*identity);
            }
        }
    }
    let body = reply.body;
    let mut bytes = body.to_string().into_bytes();
    if fault == Some(Fault::TruncatedJson) {
        bytes.truncate(bytes.len() / 2);
    }
    Ok(r.content_type(ContentType::json()).body(bytes))
}

fn too_many_requests(
    request: &ChatRequest,
    kind: LimitKind,
    wait: Duration,
    limit: u32,
    requested: u64,
    limits: &[(String, String)],
) -> HttpResponse {
    let mut r = with_headers(HttpResponse::TooManyRequests(), limits);
    let wait_ms = ceil_millis(wait).max(1);
    r.insert_header(("retry-after-ms", wait_ms.to_string()));
    r.insert_header(("retry-after", wait_ms.div_ceil(1000).to_string()));
    let model = request.body["model"].as_str().unwrap_or("gpt-4o-mini");
    let requested = match kind {
        LimitKind::Requests => 1,
        LimitKind::Tokens => requested,
    };
    let message = format!(
        "Rate limit reached for {unit} on {model} in organization org-fake: Limit {limit}, \
         Requested {requested}. Please try again in {wait}. Visit \
         https://platform.openai.com/account/rate-limits to learn more.",
        unit = kind.unit(),
        wait = go_duration(wait),
    );
    r.json(error_body(
        &message,
        kind.as_str(),
        json!("rate_limit_exceeded"),
    ))
}

/// One scripted hostile answer.
fn misbehave(request: &ChatRequest, hostile: Hostile) -> HttpResponse {
    let reply = |content: &str| {
        json!({
            "id": "chatcmpl-hostile",
            "object": "chat.completion",
            "model": request.body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        })
    };
    match hostile {
        Hostile::RetryAfter(value) => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", value))
            .json(error_body(
                "Rate limit reached.",
                "requests",
                json!("rate_limit_exceeded"),
            )),
        Hostile::UnavailableRetryAfter(value) => HttpResponse::ServiceUnavailable()
            .insert_header(("retry-after", value))
            .json(error_body("Overloaded.", "server_error", Value::Null)),
        Hostile::Redirect(location) => HttpResponse::TemporaryRedirect()
            .insert_header(("location", location))
            .finish(),
        Hostile::HugeReply(bytes) => {
            let mut body = reply("{}").to_string();
            let pad = bytes.saturating_sub(body.len());
            body.insert_str(0, &" ".repeat(pad));
            HttpResponse::Ok()
                .content_type(ContentType::json())
                .body(body)
        }
        Hostile::Content(text) => HttpResponse::Ok().json(reply(&text)),
    }
}

fn with_headers(mut r: HttpResponseBuilder, headers: &[(String, String)]) -> HttpResponseBuilder {
    for (name, value) in headers {
        r.insert_header((name.as_str(), value.as_str()));
    }
    r
}

pub(crate) fn error_body(message: &str, kind: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

async fn stats(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(state.recorder().snapshot())
}

async fn models() -> HttpResponse {
    let data: Vec<Value> = [
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1-mini",
        "gpt-5",
        "gpt-5-mini",
        "o4-mini",
    ]
    .iter()
    .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "fake-openai"}))
    .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let message = format!("Invalid URL ({} {})", req.method(), req.path());
    HttpResponse::NotFound().json(error_body(&message, "invalid_request_error", Value::Null))
}
