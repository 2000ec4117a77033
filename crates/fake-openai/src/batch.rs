//! The Files and Batch APIs' state, without HTTP: uploaded files, the
//! validation of a batch input file, and each batch's life on the schedule
//! of [`BatchConfig`](crate::BatchConfig): `validating` → `in_progress` (one
//! line after another) → `finalizing` → `completed`, or `failed` (invalid
//! input), `expired` (past [`BatchConfig::expire_after`]), `cancelling` →
//! `cancelled`. Batches advance lazily, whenever the state is looked at,
//! with every transition stamped at the instant the schedule put it, so a
//! client cannot tell this from a background worker.
//!
//! [`BatchConfig::expire_after`]: crate::BatchConfig::expire_after

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::config::BatchConfig;

/// The only endpoint batches run, as the fake implements it.
pub(crate) const ENDPOINT: &str = "/v1/chat/completions";
/// How long the real service gives a batch; only reported (`expires_at`).
const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A stored file.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub(crate) id: String,
    pub(crate) filename: String,
    pub(crate) purpose: String,
    pub(crate) created_at: u64,
    pub(crate) bytes: Vec<u8>,
}

impl StoredFile {
    pub(crate) fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.bytes.len(),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
        })
    }
}

/// One request of a batch input file.
#[derive(Debug, Clone)]
pub(crate) struct InputLine {
    pub(crate) custom_id: String,
    pub(crate) body: Value,
}

/// Why an input file cannot run as a batch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct InputError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// 1-based, when one line is at fault.
    pub(crate) line: Option<usize>,
}

impl InputError {
    fn at(line: usize, code: &'static str, what: &str) -> Self {
        InputError {
            code,
            message: format!("Line {line}: {what}"),
            line: Some(line),
        }
    }
}

/// Parses and checks a batch input file: JSONL, at most `max_lines`
/// requests, each `{"custom_id", "method": "POST", "url":
/// "/v1/chat/completions", "body": {…}}` with unique custom ids.
pub(crate) fn parse_input(bytes: &[u8], max_lines: usize) -> Result<Vec<InputLine>, InputError> {
    let text = std::str::from_utf8(bytes).map_err(|_| InputError {
        code: "invalid_file_format",
        message: "The file is not valid UTF-8.".into(),
        line: None,
    })?;
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if lines.len() == max_lines {
            return Err(InputError {
                code: "too_many_requests_in_file",
                message: format!(
                    "The batch input file has more than the maximum of {max_lines} requests."
                ),
                line: Some(n),
            });
        }
        let v: Value = serde_json::from_str(raw).map_err(|e| {
            InputError::at(n, "invalid_json_line", &format!("not valid JSON ({e})"))
        })?;
        let custom_id = v["custom_id"]
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                InputError::at(
                    n,
                    "missing_custom_id",
                    "'custom_id' must be a non-empty string",
                )
            })?;
        if !seen.insert(custom_id.to_string()) {
            return Err(InputError::at(
                n,
                "duplicate_custom_id",
                &format!(
                    "the custom_id {custom_id:?} is used by an earlier line; custom ids must be unique"
                ),
            ));
        }
        if v["method"] != "POST" {
            return Err(InputError::at(
                n,
                "invalid_method",
                "'method' must be \"POST\"",
            ));
        }
        if v["url"] != ENDPOINT {
            return Err(InputError::at(
                n,
                "invalid_url",
                &format!("'url' must be {ENDPOINT:?}, the batch's endpoint"),
            ));
        }
        if !v["body"].is_object() {
            return Err(InputError::at(
                n,
                "invalid_body",
                "'body' must be an object",
            ));
        }
        lines.push(InputLine {
            custom_id: custom_id.to_string(),
            body: v["body"].clone(),
        });
    }
    if lines.is_empty() {
        return Err(InputError {
            code: "empty_file",
            message: "The batch input file is empty.".into(),
            line: None,
        });
    }
    Ok(lines)
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }

    fn is_final(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::Completed | Status::Expired | Status::Cancelled
        )
    }
}

/// A line's answer, as the answering function gives it: a chat.completion
/// body, or the error body of a 400 (a parameter the model refuses).
pub(crate) type Answer = Result<Value, Value>;

/// What a batch does to one line, drawn per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFate {
    Answer,
    /// Answered with content that violates the schema.
    InvalidContent,
    /// An error line: no response, `error.code` `server_error`.
    Error,
    /// A response with status 500.
    ServerError,
}

fn draw_fate(config: &BatchConfig, roll: f64) -> LineFate {
    let mut threshold = 0.0;
    for (p, fate) in [
        (config.line_error, LineFate::Error),
        (config.line_server_error, LineFate::ServerError),
        (config.invalid_content, LineFate::InvalidContent),
    ] {
        threshold += p.max(0.0);
        if roll < threshold {
            return fate;
        }
    }
    LineFate::Answer
}

#[derive(Debug)]
pub(crate) struct Batch {
    id: String,
    input_file_id: String,
    completion_window: String,
    metadata: Value,
    status: Status,
    created: Instant,
    /// When the current phase (or, in progress, the current line) began.
    phase_started: Instant,
    stamps: HashMap<&'static str, Instant>,
    lines: Vec<InputLine>,
    next: usize,
    output: Vec<String>,
    errors: Vec<String>,
    completed: u64,
    failed: u64,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    validation_errors: Option<Value>,
    rng: StdRng,
}

/// The files and batches of one server.
#[derive(Debug)]
pub(crate) struct Batches {
    /// An instant and the Unix time it was, to stamp objects.
    epoch: (Instant, SystemTime),
    files: HashMap<String, StoredFile>,
    /// Oldest first.
    batches: Vec<Batch>,
    next_id: u64,
    seed: u64,
}

/// Why a batch request is refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BatchError {
    NotFound(String),
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
}

impl Batches {
    pub(crate) fn new(now: Instant, seed: u64) -> Self {
        Batches {
            epoch: (now, SystemTime::now()),
            files: HashMap::new(),
            batches: Vec::new(),
            next_id: 1,
            seed,
        }
    }

    fn unix(&self, at: Instant) -> u64 {
        let t = match at.checked_duration_since(self.epoch.0) {
            Some(after) => self.epoch.1 + after,
            None => self.epoch.1 - self.epoch.0.duration_since(at),
        };
        t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn add_file(
        &mut self,
        filename: &str,
        purpose: &str,
        bytes: Vec<u8>,
        now: Instant,
    ) -> &StoredFile {
        let id = format!("file-fake{:08}", self.id());
        let file = StoredFile {
            id: id.clone(),
            filename: filename.into(),
            purpose: purpose.into(),
            created_at: self.unix(now),
            bytes,
        };
        self.files.entry(id).or_insert(file)
    }

    pub(crate) fn file(&self, id: &str) -> Option<&StoredFile> {
        self.files.get(id)
    }

    pub(crate) fn delete_file(&mut self, id: &str) -> bool {
        self.files.remove(id).is_some()
    }

    /// Creates a batch over an uploaded file.
    pub(crate) fn create(&mut self, request: &Value, now: Instant) -> Result<Value, BatchError> {
        let invalid = |message: String, param| BatchError::Invalid {
            message,
            param: Some(param),
        };
        let input_file_id = request["input_file_id"].as_str().ok_or_else(|| {
            invalid(
                "Missing required parameter: 'input_file_id'.".into(),
                "input_file_id",
            )
        })?;
        let file = self
            .files
            .get(input_file_id)
            .ok_or_else(|| BatchError::NotFound(format!("No such File object: {input_file_id}")))?;
        if file.purpose != "batch" {
            return Err(invalid(
                format!(
                    "The file {input_file_id} has purpose {:?}, not \"batch\".",
                    file.purpose
                ),
                "input_file_id",
            ));
        }
        if request["endpoint"] != ENDPOINT {
            return Err(invalid(
                format!(
                    "Invalid 'endpoint': {}. The fake supports {ENDPOINT:?}.",
                    request["endpoint"]
                ),
                "endpoint",
            ));
        }
        if request["completion_window"] != "24h" {
            return Err(invalid(
                format!(
                    "Invalid 'completion_window': {}. Supported values are: '24h'.",
                    request["completion_window"]
                ),
                "completion_window",
            ));
        }
        let metadata = &request["metadata"];
        if !(metadata.is_null() || metadata.is_object()) {
            return Err(invalid("'metadata' must be an object.".into(), "metadata"));
        }
        let n = self.id();
        let batch = Batch {
            id: format!("batch_fake{n:08}"),
            input_file_id: input_file_id.into(),
            completion_window: "24h".into(),
            metadata: metadata.clone(),
            status: Status::Validating,
            created: now,
            phase_started: now,
            stamps: HashMap::new(),
            lines: Vec::new(),
            next: 0,
            output: Vec::new(),
            errors: Vec::new(),
            completed: 0,
            failed: 0,
            output_file_id: None,
            error_file_id: None,
            validation_errors: None,
            rng: StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        self.batches.push(batch);
        Ok(self.object(self.batches.len() - 1))
    }

    fn index(&self, id: &str) -> Result<usize, BatchError> {
        self.batches
            .iter()
            .position(|b| b.id == id)
            .ok_or_else(|| BatchError::NotFound(format!("No batch found with id '{id}'.")))
    }

    pub(crate) fn get(&self, id: &str) -> Result<Value, BatchError> {
        Ok(self.object(self.index(id)?))
    }

    /// Every batch, oldest first.
    pub(crate) fn all(&self) -> Vec<Value> {
        (0..self.batches.len()).map(|i| self.object(i)).collect()
    }

    /// Newest first, `limit` (1–100, default 20) after the batch `after`.
    pub(crate) fn list(&self, limit: Option<usize>, after: Option<&str>) -> Value {
        let limit = limit.unwrap_or(20).clamp(1, 100);
        let newest_first: Vec<usize> = (0..self.batches.len()).rev().collect();
        let start = after
            .and_then(|a| newest_first.iter().position(|i| self.batches[*i].id == a))
            .map_or(0, |p| p + 1);
        let page: Vec<Value> = newest_first
            .iter()
            .skip(start)
            .take(limit)
            .map(|i| self.object(*i))
            .collect();
        let has_more = newest_first.len() > start + page.len();
        json!({
            "object": "list",
            "data": page,
            "first_id": page.first().map(|b| b["id"].clone()),
            "last_id": page.last().map(|b| b["id"].clone()),
            "has_more": has_more,
        })
    }

    /// Asks a batch to stop: what finished stays in its output file. Returns
    /// the batch, and whether this call cancelled it.
    pub(crate) fn cancel(&mut self, id: &str, now: Instant) -> Result<(Value, bool), BatchError> {
        let i = self.index(id)?;
        let b = &mut self.batches[i];
        let cancelled = match b.status {
            Status::Validating | Status::InProgress | Status::Finalizing => {
                b.status = Status::Cancelling;
                b.phase_started = now;
                b.stamps.insert("cancelling_at", now);
                true
            }
            Status::Cancelling => false,
            status => {
                return Err(BatchError::Invalid {
                    message: format!("Cannot cancel a batch with status '{}'.", status.as_str()),
                    param: None,
                });
            }
        };
        Ok((self.object(i), cancelled))
    }

    /// Moves every batch along its schedule up to `now`, answering lines
    /// with `answer(body, invalid_content)`, which also does the caller's
    /// accounting. Returns how many lines went to error files.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        config: &BatchConfig,
        answer: &mut dyn FnMut(&Value, bool) -> Answer,
    ) -> u64 {
        let mut failed = 0;
        for i in 0..self.batches.len() {
            if !self.batches[i].status.is_final() {
                let before = self.batches[i].failed;
                self.advance_one(i, now, config, answer);
                failed += self.batches[i].failed - before;
            }
        }
        failed
    }

    fn advance_one(
        &mut self,
        i: usize,
        now: Instant,
        config: &BatchConfig,
        answer: &mut dyn FnMut(&Value, bool) -> Answer,
    ) {
        let due = |from: Instant, d: Duration| from.checked_add(d).filter(|t| *t <= now);
        loop {
            let b = &mut self.batches[i];
            let expiry = config.expire_after.and_then(|d| b.created.checked_add(d));
            match b.status {
                Status::Validating => {
                    let Some(at) = due(b.phase_started, config.validating) else {
                        return;
                    };
                    let input = self
                        .files
                        .get(&b.input_file_id)
                        .map(|f| parse_input(&f.bytes, config.max_file_lines));
                    match input {
                        Some(Ok(lines)) => {
                            b.lines = lines;
                            b.status = Status::InProgress;
                            b.stamps.insert("in_progress_at", at);
                        }
                        failure => {
                            let e = match failure {
                                Some(Err(e)) => e,
                                _ => InputError {
                                    code: "file_not_found",
                                    message: "The input file was deleted.".into(),
                                    line: None,
                                },
                            };
                            b.validation_errors = Some(json!({"object": "list", "data": [{
                                "code": e.code, "message": e.message, "param": null, "line": e.line,
                            }]}));
                            b.status = Status::Failed;
                            b.stamps.insert("failed_at", at);
                            return;
                        }
                    }
                    b.phase_started = at;
                }
                Status::InProgress => {
                    if b.next == b.lines.len() {
                        b.status = Status::Finalizing;
                        b.stamps.insert("finalizing_at", b.phase_started);
                        continue;
                    }
                    let line_due = b.phase_started.checked_add(config.per_request);
                    if let Some(expiry) =
                        expiry.filter(|e| *e <= now && line_due.is_none_or(|d| *e < d))
                    {
                        let reason = "This request could not be executed before the completion window expired.";
                        let rest: Vec<_> = b.lines[b.next..].to_vec();
                        for line in rest {
                            let id = b.rng.random::<u64>();
                            b.errors
                                .push(error_line(id, &line.custom_id, "batch_expired", reason));
                            b.failed += 1;
                        }
                        b.next = b.lines.len();
                        b.status = Status::Expired;
                        b.stamps.insert("expired_at", expiry);
                        self.write_files(i, expiry);
                        return;
                    }
                    let Some(at) = line_due.filter(|t| *t <= now) else {
                        return;
                    };
                    let fate = draw_fate(config, b.rng.random());
                    let line = &b.lines[b.next];
                    let id = b.rng.random::<u64>();
                    let (text, ok) = match fate {
                        LineFate::Error => (
                            error_line(
                                id,
                                &line.custom_id,
                                "server_error",
                                "The server had an error while processing your request.",
                            ),
                            false,
                        ),
                        LineFate::ServerError => (
                            response_line(
                                id,
                                &line.custom_id,
                                500,
                                json!({"error": {
                                "message": "The server had an error while processing your request. Sorry about that!",
                                "type": "server_error", "param": null, "code": null}}),
                            ),
                            false,
                        ),
                        fate => match answer(&line.body, fate == LineFate::InvalidContent) {
                            Ok(body) => (response_line(id, &line.custom_id, 200, body), true),
                            Err(body) => (response_line(id, &line.custom_id, 400, body), false),
                        },
                    };
                    if ok {
                        b.output.push(text);
                        b.completed += 1;
                    } else {
                        b.errors.push(text);
                        b.failed += 1;
                    }
                    b.next += 1;
                    b.phase_started = at;
                }
                Status::Finalizing => {
                    let Some(at) = due(b.phase_started, config.finalizing) else {
                        return;
                    };
                    b.status = Status::Completed;
                    b.stamps.insert("completed_at", at);
                    self.write_files(i, at);
                    return;
                }
                Status::Cancelling => {
                    let Some(at) = due(b.phase_started, config.cancelling) else {
                        return;
                    };
                    b.status = Status::Cancelled;
                    b.stamps.insert("cancelled_at", at);
                    self.write_files(i, at);
                    return;
                }
                _ => return,
            }
        }
    }

    /// The output and error files of a batch that ended, when it has lines
    /// for them.
    fn write_files(&mut self, i: usize, at: Instant) {
        let output = std::mem::take(&mut self.batches[i].output);
        let errors = std::mem::take(&mut self.batches[i].errors);
        let id = self.batches[i].id.clone();
        let mut store = |lines: Vec<String>, kind: &str| {
            (!lines.is_empty()).then(|| {
                let mut bytes = lines.join("\n").into_bytes();
                bytes.push(b'\n');
                let name = format!("{id}_{kind}.jsonl");
                self.add_file(&name, "batch_output", bytes, at).id.clone()
            })
        };
        let output_file_id = store(output, "output");
        let error_file_id = store(errors, "error");
        let b = &mut self.batches[i];
        b.output_file_id = output_file_id;
        b.error_file_id = error_file_id;
    }

    /// The batch object, as the API returns it.
    fn object(&self, i: usize) -> Value {
        let b = &self.batches[i];
        let stamp = |name: &str| b.stamps.get(name).map(|t| self.unix(*t));
        json!({
            "id": b.id,
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": b.validation_errors,
            "input_file_id": b.input_file_id,
            "completion_window": b.completion_window,
            "status": b.status.as_str(),
            "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id,
            "created_at": self.unix(b.created),
            "in_progress_at": stamp("in_progress_at"),
            "expires_at": self.unix(b.created + WINDOW),
            "finalizing_at": stamp("finalizing_at"),
            "completed_at": stamp("completed_at"),
            "failed_at": stamp("failed_at"),
            "expired_at": stamp("expired_at"),
            "cancelling_at": stamp("cancelling_at"),
            "cancelled_at": stamp("cancelled_at"),
            "request_counts": {
                "total": b.lines.len(),
                "completed": b.completed,
                "failed": b.failed,
            },
            "metadata": b.metadata,
        })
    }
}

fn response_line(id: u64, custom_id: &str, status: u16, body: Value) -> String {
    json!({
        "id": format!("batch_req_{id:016x}"),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": format!("req_fake_{id:016x}"), "body": body},
        "error": null,
    })
    .to_string()
}

fn error_line(id: u64, custom_id: &str, code: &str, message: &str) -> String {
    json!({
        "id": format!("batch_req_{id:016x}"),
        "custom_id": custom_id,
        "response": null,
        "error": {"code": code, "message": message},
    })
    .to_string()
}
