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
                        for line in &b.lines[b.next..] {
                            let id = b.rng.random::<u64>();
                            b.errors
                                .push(error_line(id, &line.custom_id, "batch_expired", reason));
                            b.failed += 1;
                        }
                        b.next = b.lines.len();
                        b.status = Status::Expired;
                        // Never before it started, when the window was
                        // shortened below its validation.
                        let at = expiry.max(b.phase_started);
                        b.stamps.insert("expired_at", at);
                        self.write_files(i, at);
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
                        let custom_id = line.custom_id.clone();
                        let body = line.body.clone();
                        let twice = b.rng.random::<f64>() < config.duplicate_lines;
                        let stray = b.rng.random::<f64>() < config.stray_lines;
                        let before = b.rng.random::<bool>();
                        let mut extra = |b: &mut Batch, custom_id: &str| {
                            let id = b.rng.random::<u64>();
                            answer(&body, true)
                                .ok()
                                .map(|body| response_line(id, custom_id, 200, body))
                        };
                        let duplicate = if twice { extra(b, &custom_id) } else { None };
                        match duplicate {
                            Some(d) if before => b.output.extend([d, text]),
                            Some(d) => b.output.extend([text, d]),
                            None => b.output.push(text),
                        }
                        if stray {
                            let stray_id = format!("stray-{}", b.rng.random::<u32>());
                            if let Some(s) = extra(b, &stray_id) {
                                b.output.push(s);
                            }
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn line(id: &str, text: &str) -> String {
        json!({"custom_id": id, "method": "POST", "url": ENDPOINT,
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}})
        .to_string()
    }

    fn input(n: usize) -> Vec<u8> {
        let lines: Vec<String> = (0..n)
            .map(|i| line(&format!("c{i}"), &format!("chat {i}")))
            .collect();
        (lines.join("\n") + "\n").into_bytes()
    }

    fn schedule() -> BatchConfig {
        BatchConfig {
            validating: 10 * MS,
            per_request: 10 * MS,
            finalizing: 10 * MS,
            cancelling: 10 * MS,
            ..Default::default()
        }
    }

    /// Answers with the line's text; records whether it was asked for
    /// invalid content.
    fn echo(invalid: &mut Vec<bool>) -> impl FnMut(&Value, bool) -> Answer + '_ {
        move |body, bad| {
            invalid.push(bad);
            Ok(json!({"echo": body["messages"][0]["content"]}))
        }
    }

    /// A store with one batch over `n` lines created at `t0`.
    fn started(n: usize, t0: Instant) -> (Batches, String) {
        let mut b = Batches::new(t0, 1);
        let file = b.add_file("in.jsonl", "batch", input(n), t0).id.clone();
        let batch = b
            .create(
                &json!({"input_file_id": file, "endpoint": ENDPOINT, "completion_window": "24h",
                    "metadata": {"upload": "7"}}),
                t0,
            )
            .unwrap();
        (b, batch["id"].as_str().unwrap().to_string())
    }

    fn lines_of(b: &Batches, file: &Value) -> Vec<Value> {
        let bytes = &b.file(file.as_str().unwrap()).unwrap().bytes;
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn input_files_are_checked_line_by_line() {
        assert_eq!(parse_input(&input(3), 10).unwrap().len(), 3);
        let bad = |text: String| parse_input(text.as_bytes(), 10).unwrap_err();
        let ok = line("a", "x");
        let e = bad(format!("{ok}\n{ok}\n"));
        assert_eq!((e.code, e.line), ("duplicate_custom_id", Some(2)));
        assert_eq!(bad(format!("{ok}\nnot json\n")).code, "invalid_json_line");
        let get = ok.replace("POST", "GET");
        assert_eq!(bad(get).code, "invalid_method");
        let url = ok.replace("/v1/chat/completions", "/v1/embeddings");
        assert_eq!(bad(url).code, "invalid_url");
        let body = json!({"custom_id": "a", "method": "POST", "url": ENDPOINT, "body": "x"});
        assert_eq!(bad(body.to_string()).code, "invalid_body");
        let anonymous = json!({"method": "POST", "url": ENDPOINT, "body": {}});
        assert_eq!(bad(anonymous.to_string()).code, "missing_custom_id");
        assert_eq!(bad("\n\n".into()).code, "empty_file");
        let e = parse_input(&input(11), 10).unwrap_err();
        assert_eq!((e.code, e.line), ("too_many_requests_in_file", Some(11)));
    }

    #[test]
    fn a_batch_validates_runs_its_lines_in_turn_finalizes_and_completes() {
        let t0 = Instant::now();
        let (mut b, id) = started(3, t0);
        let config = schedule();
        let mut invalid = Vec::new();
        let at = |b: &mut Batches, ms: u64, invalid: &mut Vec<bool>| {
            b.advance(t0 + Duration::from_millis(ms), &config, &mut echo(invalid));
            b.get(&id).unwrap()
        };
        let v = at(&mut b, 5, &mut invalid);
        assert_eq!(v["status"], "validating");
        assert_eq!(v["request_counts"]["total"], 0);
        assert_eq!(v["metadata"]["upload"], "7");
        assert!(v["in_progress_at"].is_null());
        let v = at(&mut b, 25, &mut invalid);
        assert_eq!(v["status"], "in_progress");
        assert_eq!(
            v["request_counts"],
            json!({"total": 3, "completed": 1, "failed": 0})
        );
        assert!(v["output_file_id"].is_null(), "files come at the end");
        let v = at(&mut b, 45, &mut invalid);
        assert_eq!(v["status"], "finalizing");
        assert_eq!(v["request_counts"]["completed"], 3);
        let v = at(&mut b, 50, &mut invalid);
        assert_eq!(v["status"], "completed");
        assert!(v["error_file_id"].is_null());
        assert_eq!(
            v["expires_at"].as_u64().unwrap() - v["created_at"].as_u64().unwrap(),
            86_400
        );
        let out = lines_of(&b, &v["output_file_id"]);
        let ids: Vec<&str> = out
            .iter()
            .map(|l| l["custom_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c0", "c1", "c2"]);
        assert_eq!(out[1]["response"]["status_code"], 200);
        assert_eq!(out[1]["response"]["body"]["echo"], "chat 1");
        assert!(out[1]["error"].is_null());
        assert!(out[1]["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(invalid, [false; 3]);
        // Finished batches stay as they are.
        let v = at(&mut b, 5000, &mut invalid);
        assert_eq!(v["status"], "completed");
        assert_eq!(invalid.len(), 3);
    }

    #[test]
    fn a_schedule_change_applies_to_running_batches() {
        let t0 = Instant::now();
        let (mut b, id) = started(50, t0);
        let mut config = BatchConfig {
            per_request: Duration::from_secs(3600),
            ..schedule()
        };
        let mut invalid = Vec::new();
        b.advance(t0 + 20 * MS, &config, &mut echo(&mut invalid));
        assert_eq!(b.get(&id).unwrap()["status"], "in_progress");
        config.per_request = Duration::ZERO;
        config.finalizing = Duration::ZERO;
        b.advance(t0 + 21 * MS, &config, &mut echo(&mut invalid));
        let v = b.get(&id).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["request_counts"]["completed"], 50);
        // An unreachable time is never due.
        config.validating = Duration::MAX;
        let (mut b, id) = started(1, t0);
        b.advance(
            t0 + Duration::from_secs(9),
            &config,
            &mut echo(&mut invalid),
        );
        assert_eq!(b.get(&id).unwrap()["status"], "validating");
    }

    #[test]
    fn expiry_keeps_finished_lines_and_fails_the_rest_as_batch_expired() {
        let t0 = Instant::now();
        let (mut b, id) = started(4, t0);
        let config = BatchConfig {
            expire_after: Some(35 * MS),
            ..schedule()
        };
        let failed = b.advance(
            t0 + Duration::from_secs(1),
            &config,
            &mut echo(&mut Vec::new()),
        );
        let v = b.get(&id).unwrap();
        assert_eq!(v["status"], "expired");
        assert!(v["expired_at"].is_u64());
        // Lines due at 20 and 30 ms finished; 40 and 50 did not.
        assert_eq!(
            v["request_counts"],
            json!({"total": 4, "completed": 2, "failed": 2})
        );
        assert_eq!(failed, 2);
        assert_eq!(lines_of(&b, &v["output_file_id"]).len(), 2);
        let errors = lines_of(&b, &v["error_file_id"]);
        assert_eq!(errors[0]["custom_id"], "c2");
        assert_eq!(errors[1]["error"]["code"], "batch_expired");
        assert!(errors[1]["response"].is_null());
    }

    #[test]
    fn cancel_keeps_what_finished() {
        let t0 = Instant::now();
        let (mut b, id) = started(5, t0);
        let config = schedule();
        b.advance(t0 + 35 * MS, &config, &mut echo(&mut Vec::new()));
        let (v, newly) = b.cancel(&id, t0 + 35 * MS).unwrap();
        assert!(newly);
        assert_eq!(v["status"], "cancelling");
        assert!(
            !b.cancel(&id, t0 + 36 * MS).unwrap().1,
            "already cancelling"
        );
        b.advance(t0 + 40 * MS, &config, &mut echo(&mut Vec::new()));
        assert_eq!(b.get(&id).unwrap()["status"], "cancelling");
        b.advance(t0 + 45 * MS, &config, &mut echo(&mut Vec::new()));
        let v = b.get(&id).unwrap();
        assert_eq!(v["status"], "cancelled");
        assert_eq!(
            v["request_counts"],
            json!({"total": 5, "completed": 2, "failed": 0})
        );
        assert_eq!(lines_of(&b, &v["output_file_id"]).len(), 2);
        assert!(v["error_file_id"].is_null());
        let e = b.cancel(&id, t0 + 50 * MS).unwrap_err();
        assert!(matches!(e, BatchError::Invalid { .. }), "{e:?}");
        assert!(matches!(
            b.cancel("batch_nope", t0),
            Err(BatchError::NotFound(_))
        ));
    }

    #[test]
    fn line_faults_go_to_the_error_file_in_openais_shapes() {
        let t0 = Instant::now();
        let go = |config: BatchConfig, answer: &mut dyn FnMut(&Value, bool) -> Answer| {
            let (mut b, id) = started(3, t0);
            b.advance(t0 + Duration::from_secs(1), &config, answer);
            let v = b.get(&id).unwrap();
            assert_eq!(v["status"], "completed");
            let errors = v["error_file_id"]
                .as_str()
                .map(|_| lines_of(&b, &v["error_file_id"]));
            let output = v["output_file_id"]
                .as_str()
                .map(|_| lines_of(&b, &v["output_file_id"]));
            (errors.unwrap_or_default(), output.unwrap_or_default())
        };
        let mut invalid = Vec::new();
        let (errors, output) = go(
            BatchConfig {
                line_error: 1.0,
                ..schedule()
            },
            &mut echo(&mut invalid),
        );
        assert_eq!((errors.len(), output.len()), (3, 0));
        assert_eq!(errors[0]["error"]["code"], "server_error");
        assert!(errors[0]["response"].is_null());
        let (errors, _) = go(
            BatchConfig {
                line_server_error: 1.0,
                ..schedule()
            },
            &mut echo(&mut invalid),
        );
        assert_eq!(errors[2]["response"]["status_code"], 500);
        assert!(errors[2]["error"].is_null());
        assert!(invalid.is_empty(), "faulty lines are never answered");
        let (errors, output) = go(
            BatchConfig {
                invalid_content: 1.0,
                ..schedule()
            },
            &mut echo(&mut invalid),
        );
        assert_eq!((errors.len(), output.len()), (0, 3));
        assert_eq!(invalid, [true; 3]);
        let mut refuse =
            |_: &Value, _| -> Answer { Err(json!({"error": {"code": "unsupported_parameter"}})) };
        let (errors, _) = go(schedule(), &mut refuse);
        assert_eq!(errors[0]["response"]["status_code"], 400);
        assert_eq!(
            errors[0]["response"]["body"]["error"]["code"],
            "unsupported_parameter"
        );
        // About a quarter each when mixed, drawn per line.
        let config = BatchConfig {
            line_error: 0.25,
            line_server_error: 0.25,
            invalid_content: 0.25,
            ..schedule()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let fates: Vec<LineFate> = (0..4000)
            .map(|_| draw_fate(&config, rng.random()))
            .collect();
        for fate in [
            LineFate::Answer,
            LineFate::Error,
            LineFate::ServerError,
            LineFate::InvalidContent,
        ] {
            let n = fates.iter().filter(|f| **f == fate).count();
            assert!((800..1200).contains(&n), "{fate:?}: {n}");
        }
    }

    #[test]
    fn an_invalid_input_file_fails_the_batch_naming_the_line() {
        let t0 = Instant::now();
        let mut b = Batches::new(t0, 1);
        let bytes = format!("{}\n{}\n", line("a", "x"), line("a", "y")).into_bytes();
        let file = b.add_file("in.jsonl", "batch", bytes, t0).id.clone();
        let request =
            json!({"input_file_id": file, "endpoint": ENDPOINT, "completion_window": "24h"});
        let id = b.create(&request, t0).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        b.advance(t0 + 20 * MS, &schedule(), &mut echo(&mut Vec::new()));
        let v = b.get(&id).unwrap();
        assert_eq!(v["status"], "failed");
        assert!(v["failed_at"].is_u64());
        assert_eq!(v["errors"]["data"][0]["line"], 2);
        assert_eq!(v["errors"]["data"][0]["code"], "duplicate_custom_id");
        assert!(v["output_file_id"].is_null());
    }

    #[test]
    fn creation_checks_its_parameters() {
        let t0 = Instant::now();
        let mut b = Batches::new(t0, 1);
        let file = b.add_file("in.jsonl", "batch", input(1), t0).id.clone();
        let out = b
            .add_file("out.jsonl", "batch_output", input(1), t0)
            .id
            .clone();
        let create = |b: &mut Batches, patch: Value| {
            let mut r =
                json!({"input_file_id": file, "endpoint": ENDPOINT, "completion_window": "24h"});
            r.as_object_mut()
                .unwrap()
                .extend(patch.as_object().unwrap().clone());
            b.create(&r, t0)
        };
        let param = |e: BatchError| match e {
            BatchError::Invalid { param, .. } => param,
            BatchError::NotFound(_) => Some("not found"),
        };
        assert_eq!(
            param(create(&mut b, json!({"endpoint": "/v1/embeddings"})).unwrap_err()),
            Some("endpoint")
        );
        assert_eq!(
            param(create(&mut b, json!({"completion_window": "1h"})).unwrap_err()),
            Some("completion_window")
        );
        assert_eq!(
            param(create(&mut b, json!({"metadata": 3})).unwrap_err()),
            Some("metadata")
        );
        assert_eq!(
            param(create(&mut b, json!({"input_file_id": out})).unwrap_err()),
            Some("input_file_id")
        );
        assert_eq!(
            param(create(&mut b, json!({"input_file_id": "file-x"})).unwrap_err()),
            Some("not found")
        );
        assert_eq!(
            param(create(&mut b, json!({"input_file_id": null})).unwrap_err()),
            Some("input_file_id")
        );
        assert!(b.all().is_empty());
    }

    #[test]
    fn lists_are_newest_first_and_page_with_after() {
        let t0 = Instant::now();
        let mut b = Batches::new(t0, 1);
        let file = b.add_file("in.jsonl", "batch", input(1), t0).id.clone();
        let request =
            json!({"input_file_id": file, "endpoint": ENDPOINT, "completion_window": "24h"});
        let ids: Vec<Value> = (0..5)
            .map(|_| b.create(&request, t0).unwrap()["id"].clone())
            .collect();
        let page = b.list(Some(2), None);
        assert_eq!(page["data"][0]["id"], ids[4]);
        assert_eq!(page["last_id"], ids[3]);
        assert_eq!(page["has_more"], true);
        let page = b.list(Some(2), page["last_id"].as_str());
        assert_eq!(page["first_id"], ids[2]);
        let page = b.list(None, page["last_id"].as_str());
        assert_eq!(page["data"].as_array().unwrap().len(), 1);
        assert_eq!(page["has_more"], false);
        assert_eq!(b.all()[0]["id"], ids[0]);
    }
}
