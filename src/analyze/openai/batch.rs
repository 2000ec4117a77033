//! The Batch API (`analyzer.openai.mode = "batch"`): the same requests as
//! sync mode, written as JSONL, uploaded with `POST /files`, run by
//! `POST /batches` within 24 hours at half the price, polled with
//! `GET /batches/{id}`, and read back from the output and error files by
//! `custom_id`.
//!
//! A batch is created with `metadata.powerpulse_job` = a job id the
//! pipeline stores before anything is uploaded, so a batch whose id was
//! never stored (a kill between create and commit) is found again by
//! [`OpenAiAnalyzer::find_batch`] instead of being created twice.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reply::{self, ReplyError};
use super::{OpenAiAnalyzer, api_error, json_string, without_url};
use crate::analyze::{FailureKind, FatalKind, LlmUsage};
use crate::config::AuthStyle;
use crate::model::Analysis;

/// The Batch API's limits per input file.
pub const MAX_REQUESTS_PER_FILE: usize = 50_000;
pub const MAX_BYTES_PER_FILE: usize = 200 * 1024 * 1024;
/// Largest output or error file read.
const MAX_RESULT_FILE_BYTES: usize = 2 * 1024 * 1024 * 1024;
/// Attempts of one management call (upload, create, poll) before giving up.
const CALL_ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Nothing more can succeed this way (key, quota, not found, refused).
    #[error("{detail}")]
    Fatal { kind: FatalKind, detail: String },
    /// The provider could not be reached after retries; try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// What the provider says about a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchState {
    pub id: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`,
    /// `expired`, `cancelling` or `cancelled`.
    pub status: String,
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
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }
}

/// One line of an output or error file, read.
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
    /// Reads an output or error file: each line's custom id and result.
    /// Lines that are not JSON are skipped (counted in the second value).
    pub fn read_results(&self, file: &[u8]) -> (Vec<(String, LineResult)>, usize) {
        let mut out = Vec::new();
        let mut unreadable = 0;
        for line in file.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(raw) = serde_json::from_slice::<RawLine>(line) else {
                unreadable += 1;
                continue;
            };
            out.push((raw.custom_id, self.line_result(raw.response, raw.error)));
        }
        (out, unreadable)
    }

    fn line_result(&self, response: Option<RawResponse>, error: Option<Value>) -> LineResult {
        match response {
            Some(r) if (200..300).contains(&r.status_code) => {
                let body = r.body.to_string();
                let model = self.model().to_string();
                let parsed = reply::parse(body.as_bytes(), |content| {
                    reply::validate(content, Self::NAME, &model, self.topic_names())
                });
                let mut usage = LlmUsage {
                    requests: 1,
                    ..LlmUsage::default()
                };
                self.bill(&mut usage, &parsed, 0);
                if let Some(price) = self.inner.price {
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
                let (code, message) = api_error(r.body.to_string().as_bytes());
                LineResult::Failed {
                    kind: if r.status_code >= 500 {
                        FailureKind::ServerError
                    } else {
                        FailureKind::Rejected
                    },
                    reason: format!("batch line HTTP {}: {code} {message}", r.status_code),
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

    /// The API root the Files and Batch APIs live under: the base URL, or
    /// for Azure (`…/openai/deployments/NAME`) its `…/openai`.
    fn api_root(&self) -> String {
        let base = self.inner.settings.base_url.trim_end_matches('/');
        match base.find("/deployments/") {
            Some(i) => base[..i].to_string(),
            None => base.to_string(),
        }
    }

    fn api_url(&self, path: &str) -> String {
        let mut url = format!("{}/{path}", self.api_root());
        if let Some(v) = &self.inner.settings.api_version {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("api-version=");
            url.push_str(v);
        }
        url
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let key = self.inner.key.expose_secret();
        match self.inner.auth {
            AuthStyle::Bearer => request.bearer_auth(key),
            AuthStyle::ApiKey => request.header("api-key", key),
        }
    }

    /// Sends a management call, retrying connection failures, 429s and 5xx
    /// with backoff; any other answer but success is fatal.
    async fn management<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, BatchError> {
        let bytes = self.management_bytes(what, build, 64 * 1024 * 1024).await?;
        serde_json::from_slice(&bytes).map_err(|e| BatchError::Fatal {
            kind: FatalKind::NotFound,
            detail: format!("{what}: the answer is not what the Batch API answers ({e})"),
        })
    }

    async fn management_bytes(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        cap: usize,
    ) -> Result<Vec<u8>, BatchError> {
        let mut last = String::new();
        for attempt in 0..CALL_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(super::backoff(attempt).max(Duration::from_millis(200))).await;
            }
            let response = match self.authorised(build()).send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{what}: {}", without_url(&e));
                    continue;
                }
            };
            let status = response.status();
            let after = super::limits::retry_after(response.headers());
            let body = match super::read_capped(response, cap).await {
                Ok(b) => b,
                Err(super::BodyError::TooLarge) => {
                    return Err(BatchError::Fatal {
                        kind: FatalKind::NotFound,
                        detail: format!("{what}: the answer is larger than {cap} bytes"),
                    });
                }
                Err(super::BodyError::Cut(e)) => {
                    last = format!("{what}: answer cut off: {}", without_url(&e));
                    continue;
                }
            };
            if status.is_success() {
                return Ok(body);
            }
            let (code, message) = api_error(&body);
            last = format!("{what}: HTTP {} {message}", status.as_u16());
            if status == StatusCode::TOO_MANY_REQUESTS && code.contains("insufficient_quota") {
                return Err(BatchError::Fatal {
                    kind: FatalKind::QuotaExhausted,
                    detail: self.redact(last),
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                if let Some(after) = after {
                    tokio::time::sleep(self.inner.limits.clamp_wait(after)).await;
                }
                continue;
            }
            let kind = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FatalKind::KeyRejected,
                _ => FatalKind::NotFound,
            };
            return Err(BatchError::Fatal {
                kind,
                detail: self.redact(last),
            });
        }
        Err(BatchError::Unavailable(self.redact(last)))
    }

    /// Uploads an input file; its file id.
    pub async fn upload_batch_file(
        &self,
        name: &str,
        jsonl: Vec<u8>,
    ) -> Result<String, BatchError> {
        #[derive(Deserialize)]
        struct FileObject {
            id: String,
        }
        let url = self.api_url("files");
        let file: FileObject = self
            .management("uploading the batch input file", || {
                let part = reqwest::multipart::Part::bytes(jsonl.clone())
                    .file_name(name.to_string())
                    .mime_str("application/jsonl")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(jsonl.clone()));
                let form = reqwest::multipart::Form::new()
                    .text("purpose", "batch")
                    .part("file", part);
                self.inner.client.post(&url).multipart(form)
            })
            .await?;
        Ok(file.id)
    }

    /// Creates a batch over an uploaded file, tagged with `job`.
    pub async fn create_batch(&self, file_id: &str, job: &str) -> Result<BatchState, BatchError> {
        let url = self.api_url("batches");
        let body = serde_json::json!({
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"powerpulse_job": job},
        });
        self.management("creating the batch", || {
            self.inner.client.post(&url).json(&body)
        })
        .await
    }

    pub async fn batch(&self, id: &str) -> Result<BatchState, BatchError> {
        let url = self.api_url(&format!("batches/{id}"));
        self.management("reading the batch", || self.inner.client.get(&url))
            .await
    }

    pub async fn cancel_batch(&self, id: &str) -> Result<BatchState, BatchError> {
        let url = self.api_url(&format!("batches/{id}/cancel"));
        self.management("cancelling the batch", || self.inner.client.post(&url))
            .await
    }

    /// The batch tagged with `job`, among the newest (a batch created just
    /// before a kill, whose id was never stored).
    pub async fn find_batch(&self, job: &str) -> Result<Option<BatchState>, BatchError> {
        #[derive(Deserialize)]
        struct Page {
            data: Vec<BatchState>,
            #[serde(default)]
            has_more: bool,
        }
        let mut after: Option<String> = None;
        // Five pages of a hundred: a job is looked for right after its
        // batch may have been created.
        for _ in 0..5 {
            let mut path = "batches?limit=100".to_string();
            if let Some(a) = &after {
                path.push_str("&after=");
                path.push_str(a);
            }
            let url = self.api_url(&path);
            let page: Page = self
                .management("listing batches", || self.inner.client.get(&url))
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

    /// The bytes of an output or error file.
    pub async fn batch_file(&self, id: &str) -> Result<Vec<u8>, BatchError> {
        let url = self.api_url(&format!("files/{id}/content"));
        self.management_bytes(
            "reading the batch results",
            || self.inner.client.get(&url),
            MAX_RESULT_FILE_BYTES,
        )
        .await
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
        let (results, unreadable) = a.read_results(file.as_bytes());
        assert_eq!(unreadable, 1);
        assert_eq!(results.len(), 3);
        let LineResult::Analysed(analysis, usage) = &results[0].1 else {
            panic!("{:?}", results[0]);
        };
        assert_eq!(analysis.satisfaction.score, 2);
        // gpt-4o at half price: (1000 × 2.5 + 100 × 10) / 1e6 / 2.
        assert!((usage.cost_usd - 0.00175).abs() < 1e-12, "{usage:?}");
        assert!(
            matches!(&results[1].1, LineResult::Invalid { content: Some(c), .. } if c == "not json")
        );
        let LineResult::Failed { reason, .. } = &results[2].1 else {
            panic!("{:?}", results[2]);
        };
        assert!(reason.contains("batch_expired"));
    }

    #[test]
    fn azure_deployments_use_the_api_root() {
        let settings = OpenAiSettings {
            base_url: "https://x.openai.azure.com/openai/deployments/gpt4o".into(),
            api_version: Some("2024-10-21".into()),
            ..OpenAiSettings::default()
        };
        let a = OpenAiAnalyzer::new(&settings, "k".to_string().into()).unwrap();
        assert_eq!(
            a.api_url("batches"),
            "https://x.openai.azure.com/openai/batches?api-version=2024-10-21"
        );
        assert_eq!(analyzer().api_url("files"), "http://127.0.0.1:9/v1/files");
    }
}
