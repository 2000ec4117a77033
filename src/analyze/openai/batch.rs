//! The Batch API (`analyzer.openai.mode = "batch"`): the same requests as
//! sync mode, written as JSONL, uploaded with `POST /files`, run by
//! `POST /batches` within 24 hours at half the price, polled with
//! `GET /batches/{id}`, and read back from the output and error files by
//! `custom_id`. Every call goes through the shared HTTP layer
//! ([`client`](super::client)): the same auth, status mapping and retry
//! rule as sync calls; file transfers get a timeout sized to the file.
//!
//! A batch is created with `metadata.powerpulse_job` = a job id the
//! pipeline stores before anything is uploaded, so a batch whose id was
//! never stored (a kill between create and commit) is found again by
//! [`OpenAiAnalyzer::find_batch`] instead of being created twice.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::client::{ApiError, CallError, Class, Transfer};
use super::endpoint::Endpoint;
use super::reply::{self, ReplyError};
use super::{OpenAiAnalyzer, json_string};
use crate::analyze::{FailureKind, FatalKind, LlmUsage};
use crate::model::Analysis;

/// The Batch API's limits per input file.
pub const MAX_REQUESTS_PER_FILE: usize = 50_000;
pub const MAX_BYTES_PER_FILE: usize = 200 * 1024 * 1024;
/// Largest output or error file read.
const MAX_RESULT_FILE_BYTES: usize = 2 * 1024 * 1024 * 1024;
/// Largest answer of the other calls.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Nothing more can succeed this way (key, quota, not found, refused).
    #[error("{detail}")]
    Fatal { kind: FatalKind, detail: String },
    /// The provider could not be reached after retries; try again later.
    #[error("{0}")]
    Unavailable(String),
}

impl BatchError {
    /// A failed call, doing `what`, through `endpoint`.
    fn of(what: &str, endpoint: &Endpoint, e: CallError) -> Self {
        let detail = endpoint.connection().redact(format!("{what}: {e}"));
        match e.class() {
            Class::Unavailable | Class::RateLimited => BatchError::Unavailable(detail),
            Class::Unusable(kind) => BatchError::Fatal { kind, detail },
            Class::Refused | Class::TooLarge => BatchError::Fatal {
                kind: FatalKind::Refused,
                detail,
            },
        }
    }
}

/// Where a batch is: the provider's statuses, and ours before it exists.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BatchStatus {
    /// Ours: the input file is being uploaded; no batch yet.
    #[default]
    Preparing,
    Validating,
    InProgress,
    Finalizing,
    Cancelling,
    Completed,
    Expired,
    Cancelled,
    Failed,
    /// A status this build does not know (the provider added one): polled
    /// on as if in progress.
    #[serde(other)]
    Unknown,
}

impl BatchStatus {
    /// Whether the batch will change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed
                | BatchStatus::Failed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Reads a stored status: an empty one (written before the batch
    /// existed, by older versions) is `preparing`.
    pub fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(if text.is_empty() {
            BatchStatus::Preparing
        } else {
            text.parse().unwrap_or(BatchStatus::Unknown)
        })
    }
}

/// What the provider says about a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchState {
    pub id: String,
    pub status: BatchStatus,
    #[serde(default)]
    pub request_counts: RequestCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file_id: Option<String>,
    /// The job id PowerPulse tagged it with.
    #[serde(default, skip_serializing)]
    pub metadata: Option<HashMap<String, String>>,
    /// Why a batch `failed` (an invalid input file).
    #[serde(default, skip_serializing)]
    pub errors: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestCounts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

impl BatchState {
    /// Whether the batch will change no more.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

/// One custom id's result in an output or error file, read.
#[derive(Debug)]
pub enum LineResult {
    /// A valid analysis, and what it was billed.
    Analysed(Analysis, LlmUsage),
    /// A reply that was not a valid analysis: its content (to quote in a
    /// re-ask) and what it was billed.
    Invalid {
        problem: ReplyError,
        content: Option<String>,
        usage: LlmUsage,
    },
    /// No reply: an error line (`batch_expired`, a 500, a refusal of the
    /// request).
    Failed { kind: FailureKind, reason: String },
}

impl LineResult {
    /// What the line was billed.
    pub fn usage(&self) -> LlmUsage {
        match self {
            LineResult::Analysed(_, u) | LineResult::Invalid { usage: u, .. } => *u,
            LineResult::Failed { .. } => LlmUsage::default(),
        }
    }

    /// How good a result it is: an analysis over an invalid reply over no reply.
    fn rank(&self) -> u8 {
        match self {
            LineResult::Analysed(..) => 2,
            LineResult::Invalid { .. } => 1,
            LineResult::Failed { .. } => 0,
        }
    }

    /// Two lines for the same custom id (a provider may answer one twice,
    /// or in both files): the better result, billed for both.
    pub fn merge(self, other: LineResult) -> LineResult {
        let (mut kept, dropped) = if other.rank() > self.rank() {
            (other, self)
        } else {
            (self, other)
        };
        let extra = dropped.usage();
        match &mut kept {
            LineResult::Analysed(_, u) | LineResult::Invalid { usage: u, .. } => u.add(&extra),
            // Neither line was billed.
            LineResult::Failed { .. } => {}
        }
        kept
    }
}

/// Input files for `requests` (custom id, body): JSONL, split at the Batch
/// API's limits (50,000 requests, 200 MB per file).
pub fn input_files(requests: &[(String, String)]) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut lines = 0;
    for (custom_id, body) in requests {
        let line = format!(
            "{{\"custom_id\":{},\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{body}}}\n",
            json_string(custom_id)
        );
        if lines > 0
            && (lines == MAX_REQUESTS_PER_FILE || current.len() + line.len() > MAX_BYTES_PER_FILE)
        {
            files.push(std::mem::take(&mut current));
            lines = 0;
        }
        current.extend_from_slice(line.as_bytes());
        lines += 1;
    }
    if lines > 0 {
        files.push(current);
    }
    files
}

#[derive(Deserialize)]
struct RawLine {
    custom_id: String,
    #[serde(default)]
    response: Option<RawResponse>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct RawResponse {
    status_code: u16,
    #[serde(default)]
    body: Value,
}

impl OpenAiAnalyzer {
    /// Reads an output or error file of `endpoint`'s into `results`, by
    /// custom id: a custom id met twice keeps the better result, billed for
    /// both lines. Lines that are not JSON are skipped (counted in the
    /// answer).
    pub fn read_results(
        &self,
        endpoint: &Endpoint,
        file: &[u8],
        results: &mut HashMap<String, LineResult>,
    ) -> usize {
        let mut unreadable = 0;
        for line in file.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(raw) = serde_json::from_slice::<RawLine>(line) else {
                unreadable += 1;
                continue;
            };
            let result = self.line_result(endpoint, raw.response, raw.error);
            let merged = match results.remove(&raw.custom_id) {
                Some(earlier) => earlier.merge(result),
                None => result,
            };
            results.insert(raw.custom_id, merged);
        }
        unreadable
    }

    fn line_result(
        &self,
        endpoint: &Endpoint,
        response: Option<RawResponse>,
        error: Option<Value>,
    ) -> LineResult {
        match response {
            Some(r) if (200..300).contains(&r.status_code) => {
                let body = r.body.to_string();
                let parsed = reply::parse(body.as_bytes(), |content| {
                    reply::validate(content, Self::NAME, endpoint.model(), self.topic_names())
                });
                let mut usage = LlmUsage::default();
                if let Some(u) = parsed.usage {
                    usage.bill(u.prompt_tokens, u.completion_tokens);
                    usage.cached_tokens = u.prompt_tokens_details.cached_tokens;
                    usage.reasoning_tokens = u.completion_tokens_details.reasoning_tokens;
                } else {
                    usage.bill(0, parsed.content_chars.div_ceil(4) as u64);
                }
                usage.requests = 1;
                if let Some(price) = endpoint.price() {
                    usage.cost_usd = price.cost(&usage, true);
                }
                match parsed.analysis {
                    Ok(analysis) => LineResult::Analysed(analysis, usage),
                    Err(problem) => LineResult::Invalid {
                        problem,
                        content: parsed.content,
                        usage,
                    },
                }
            }
            Some(r) => {
                let error = ApiError::parse(r.body.to_string().as_bytes());
                LineResult::Failed {
                    kind: if r.status_code >= 500 {
                        FailureKind::ServerError
                    } else {
                        FailureKind::Rejected
                    },
                    reason: format!("batch line HTTP {}: {error}", r.status_code),
                }
            }
            None => {
                let error = error.unwrap_or_default();
                let code = error["code"].as_str().unwrap_or("error").to_string();
                let message = crate::model::truncate_chars(
                    error["message"].as_str().unwrap_or_default(),
                    200,
                );
                LineResult::Failed {
                    kind: FailureKind::ServerError,
                    reason: format!("batch line failed: {code} {message}"),
                }
            }
        }
    }

    /// A management call to `endpoint`, retried by the shared rule; its
    /// answer read as `T`.
    async fn management<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        transfer: impl Fn() -> Transfer,
    ) -> Result<T, BatchError> {
        let bytes = endpoint
            .connection()
            .management(
                build,
                MAX_ANSWER_BYTES,
                transfer,
                endpoint.limits().max_wait(),
            )
            .await
            .map_err(|e| BatchError::of(what, endpoint, e))?;
        serde_json::from_slice(&bytes).map_err(|e| BatchError::Fatal {
            kind: FatalKind::Refused,
            detail: format!("{what}: the answer is not what the Batch API answers ({e})"),
        })
    }

    /// Uploads an input file to `endpoint`; its file id.
    pub async fn upload_batch_file(
        &self,
        endpoint: &Endpoint,
        name: &str,
        jsonl: Vec<u8>,
    ) -> Result<String, BatchError> {
        #[derive(Deserialize)]
        struct FileObject {
            id: String,
        }
        let connection = endpoint.connection();
        let url = connection.api_url("files");
        let bytes = jsonl.len() as u64;
        let file: FileObject = self
            .management(
                endpoint,
                "uploading the batch input file",
                || {
                    let part = reqwest::multipart::Part::bytes(jsonl.clone())
                        .file_name(name.to_string())
                        .mime_str("application/jsonl")
                        .unwrap_or_else(|_| reqwest::multipart::Part::bytes(jsonl.clone()));
                    let form = reqwest::multipart::Form::new()
                        .text("purpose", "batch")
                        .part("file", part);
                    connection.post(&url).multipart(form)
                },
                || Transfer::Upload(bytes),
            )
            .await?;
        Ok(file.id)
    }

    /// Creates a batch on `endpoint` over an uploaded file, tagged with `job`.
    pub async fn create_batch(
        &self,
        endpoint: &Endpoint,
        file_id: &str,
        job: &str,
    ) -> Result<BatchState, BatchError> {
        let connection = endpoint.connection();
        let url = connection.api_url("batches");
        let body = serde_json::json!({
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"powerpulse_job": job},
        });
        self.management(
            endpoint,
            "creating the batch",
            || connection.post(&url).json(&body),
            || Transfer::Request,
        )
        .await
    }

    pub async fn batch(&self, endpoint: &Endpoint, id: &str) -> Result<BatchState, BatchError> {
        let connection = endpoint.connection();
        let url = connection.api_url(&format!("batches/{id}"));
        self.management(
            endpoint,
            "reading the batch",
            || connection.get(&url),
            || Transfer::Request,
        )
        .await
    }

    pub async fn cancel_batch(
        &self,
        endpoint: &Endpoint,
        id: &str,
    ) -> Result<BatchState, BatchError> {
        let connection = endpoint.connection();
        let url = connection.api_url(&format!("batches/{id}/cancel"));
        self.management(
            endpoint,
            "cancelling the batch",
            || connection.post(&url),
            || Transfer::Request,
        )
        .await
    }

    /// The batch tagged with `job` on `endpoint`, among the newest (a batch
    /// created just before a kill, whose id was never stored).
    pub async fn find_batch(
        &self,
        endpoint: &Endpoint,
        job: &str,
    ) -> Result<Option<BatchState>, BatchError> {
        #[derive(Deserialize)]
        struct Page {
            data: Vec<BatchState>,
            #[serde(default)]
            has_more: bool,
        }
        let connection = endpoint.connection();
        let mut after: Option<String> = None;
        // Five pages of a hundred: a job is looked for right after its
        // batch may have been created.
        for _ in 0..5 {
            let mut path = "batches?limit=100".to_string();
            if let Some(a) = &after {
                path.push_str("&after=");
                path.push_str(a);
            }
            let url = connection.api_url(&path);
            let page: Page = self
                .management(
                    endpoint,
                    "listing batches",
                    || connection.get(&url),
                    || Transfer::Request,
                )
                .await?;
            if let Some(found) = page.data.iter().find(|b| {
                b.metadata
                    .as_ref()
                    .and_then(|m| m.get("powerpulse_job"))
                    .is_some_and(|j| j == job)
            }) {
                return Ok(Some(found.clone()));
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(None)
    }

    /// The bytes of an output or error file on `endpoint`: streamed, with
    /// no deadline for the whole but one for each piece.
    pub async fn batch_file(&self, endpoint: &Endpoint, id: &str) -> Result<Vec<u8>, BatchError> {
        let connection = endpoint.connection();
        let url = connection.api_url(&format!("files/{id}/content"));
        connection
            .management(
                || connection.get(&url),
                MAX_RESULT_FILE_BYTES,
                || Transfer::Download,
                endpoint.limits().max_wait(),
            )
            .await
            .map_err(|e| BatchError::of("reading the batch results", endpoint, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OpenAiSettings;

    fn analyzer() -> OpenAiAnalyzer {
        let settings = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            ..OpenAiSettings::default()
        };
        OpenAiAnalyzer::new(&settings, "k".to_string().into()).unwrap()
    }

    #[test]
    fn input_files_are_jsonl_split_at_the_limits() {
        let requests: Vec<(String, String)> = (0..MAX_REQUESTS_PER_FILE + 3)
            .map(|i| (format!("k{i}"), "{\"model\":\"m\"}".to_string()))
            .collect();
        let files = input_files(&requests);
        assert_eq!(files.len(), 2);
        let first = String::from_utf8(files[0].clone()).unwrap();
        assert_eq!(first.lines().count(), MAX_REQUESTS_PER_FILE);
        let line: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        assert_eq!(line["custom_id"], "k0");
        assert_eq!(line["method"], "POST");
        assert_eq!(line["url"], "/v1/chat/completions");
        assert_eq!(line["body"]["model"], "m");
        assert_eq!(
            String::from_utf8(files[1].clone()).unwrap().lines().count(),
            3
        );
        assert!(input_files(&[]).is_empty());
    }

    #[test]
    fn result_lines_are_read_and_billed_at_the_batch_price() {
        let a = analyzer();
        let good = serde_json::json!({
            "custom_id": "a", "error": null,
            "response": {"status_code": 200, "body": {
                "choices": [{"message": {"content": "{\"sentiment\":-0.5,\"satisfaction\":2,\"resolved\":false,\"summary\":\"No power.\",\"topic\":\"outage\"}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}}
        });
        let invalid = serde_json::json!({
            "custom_id": "b", "error": null,
            "response": {"status_code": 200, "body": {
                "choices": [{"message": {"content": "not json"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5}}}
        });
        let expired = serde_json::json!({
            "custom_id": "c", "response": null,
            "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}
        });
        let file = format!("{good}\n{invalid}\n{expired}\nnot json\n\n");
        let mut results = HashMap::new();
        let unreadable = a.read_results(a.primary(), file.as_bytes(), &mut results);
        assert_eq!(unreadable, 1);
        assert_eq!(results.len(), 3);
        let LineResult::Analysed(analysis, usage) = &results["a"] else {
            panic!("{:?}", results["a"]);
        };
        assert_eq!(analysis.satisfaction.score, 2);
        // gpt-4o at half price: (1000 × 2.5 + 100 × 10) / 1e6 / 2.
        assert!((usage.cost_usd - 0.00175).abs() < 1e-12, "{usage:?}");
        assert!(
            matches!(&results["b"], LineResult::Invalid { content: Some(c), .. } if c == "not json")
        );
        let LineResult::Failed { reason, .. } = &results["c"] else {
            panic!("{:?}", results["c"]);
        };
        assert!(reason.contains("batch_expired"));
    }

    #[test]
    fn a_custom_id_answered_twice_keeps_the_valid_answer_and_pays_for_both() {
        let a = analyzer();
        let line = |id: &str, content: &str, prompt: u64| {
            serde_json::json!({
                "custom_id": id, "error": null,
                "response": {"status_code": 200, "body": {
                    "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": 10}}}
            })
            .to_string()
        };
        let valid = "{\"sentiment\":0.5,\"satisfaction\":4,\"resolved\":true,\"summary\":\"Fixed.\",\"topic\":\"outage\"}";
        for order in [[valid, "not json"], ["not json", valid]] {
            let file = format!(
                "{}\n{}\n",
                line("k", order[0], 100),
                line("k", order[1], 200)
            );
            let mut results = HashMap::new();
            a.read_results(a.primary(), file.as_bytes(), &mut results);
            let LineResult::Analysed(_, usage) = &results["k"] else {
                panic!("{:?}", results["k"]);
            };
            assert_eq!(usage.prompt_tokens, 300, "both lines were billed");
            assert_eq!(usage.requests, 2);
        }
        // An error line after an answer (the output file read after the
        // error file, or the other way round) never hides the answer.
        let expired = serde_json::json!({"custom_id": "k", "response": null,
            "error": {"code": "batch_expired", "message": "expired"}});
        let mut results = HashMap::new();
        a.read_results(a.primary(), line("k", valid, 100).as_bytes(), &mut results);
        a.read_results(a.primary(), expired.to_string().as_bytes(), &mut results);
        assert!(matches!(results["k"], LineResult::Analysed(..)));
    }

    #[test]
    fn statuses_read_as_the_provider_writes_them() {
        for (text, status) in [
            ("validating", BatchStatus::Validating),
            ("in_progress", BatchStatus::InProgress),
            ("completed", BatchStatus::Completed),
            ("cancelling", BatchStatus::Cancelling),
        ] {
            assert_eq!(text.parse::<BatchStatus>().unwrap(), status);
            assert_eq!(status.as_str(), text);
            let state: BatchState =
                serde_json::from_value(serde_json::json!({"id": "b", "status": text})).unwrap();
            assert_eq!(state.status, status);
        }
        let novel: BatchState =
            serde_json::from_value(serde_json::json!({"id": "b", "status": "paused"})).unwrap();
        assert_eq!(novel.status, BatchStatus::Unknown);
        assert!(!novel.is_final());
        assert!(BatchStatus::Expired.is_final() && !BatchStatus::Finalizing.is_final());
        assert!(
            BatchStatus::Preparing < BatchStatus::InProgress,
            "progress shows the least advanced"
        );
    }

    #[test]
    fn the_files_api_is_under_the_base_url() {
        assert_eq!(
            analyzer().primary().connection().api_url("files"),
            "http://127.0.0.1:9/v1/files"
        );
    }
}
