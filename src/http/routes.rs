//! The handlers. Each one asks an actor (through the engine) and maps the
//! answer; none touches the database directly.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, Responder, delete, get, post, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::access::AuditNote;
use super::error::{ErrorBody, HttpError};
use super::limits::BodyTiming;
use super::{AppState, guard, metrics, openapi};
use crate::access::{Principal, Role};
use crate::analyze::estimate::{Draft, Estimate};
use crate::analyze::{Analyzer, OpenAiAnalyzer};
use crate::export::{ExportFormat, ExportWriter, PAGE_ROWS};
use crate::ingest::{self, IngestOptions};
use crate::model::{ConversationStatus, SentimentLabel, Stage};
use crate::pipeline::Submission;
use crate::progress::ProgressSnapshot;
use crate::progress::actor::{GetProgress, ListProgress, Subscribe};
use crate::report::RunSummary;
use crate::store::actor::{
    Flush, GetConversation, GetInsights, GetSenderNames, GetSummary, GetUpload, ListConversations,
    ListUploads, LookupProcessed, Snapshot,
};
use crate::store::stats::{Insights, InsightsQuery};
use crate::store::{
    ConversationDetail, ConversationFilter, ConversationRow, Page, UploadRecord, UploadSummary,
};

type Result<T, E = HttpError> = std::result::Result<T, E>;

/// Server-sent events go out at most this often (the latest state wins).
const SSE_INTERVAL: Duration = Duration::from_millis(250);

pub fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(upload)
        .service(estimate)
        .service(super::preview::preview)
        .service(list_progress)
        .service(progress)
        .service(cancel)
        .service(events)
        .service(list_uploads)
        .service(get_upload)
        .service(delete_upload)
        .service(resume_upload)
        .service(conversations)
        .service(conversation)
        .service(summary)
        .service(insights)
        .service(export)
        .service(backup)
        .service(metrics_text)
        .service(openapi_json);
}

/// No route matched: 405 with `Allow` when the path exists with other
/// methods (as the OpenAPI document lists them), 404 otherwise.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse> {
    if let Some(allow) = openapi::allowed_methods(req.path()) {
        return Err(HttpError::MethodNotAllowed {
            detail: format!("{} {} is not served; use {allow}", req.method(), req.path()),
            allow,
        });
    }
    Err(HttpError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// Liveness; open even when a token is required.
#[utoipa::path(responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn health() -> impl Responder {
    web::Json(Health { status: "ok" })
}

/// The id in `/…/{upload_id}…` routes.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UploadPath {
    /// The upload's id, as `POST /api/upload` answered it.
    upload_id: Uuid,
}

/// `/api/uploads/{upload_id}/conversations/{conversation_id}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConversationPath {
    /// The upload's id.
    upload_id: Uuid,
    /// The conversation's id, as the uploaded file has it.
    #[param(min_length = 1)]
    conversation_id: String,
}

// ---- upload ----------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file name, for a raw (non-multipart) body; its extension tells the format.
    #[param(min_length = 1)]
    filename: Option<String>,
    /// Answer when the upload is done, with its summary.
    #[serde(default)]
    wait: bool,
    /// Read the file as this format (default: told from its name and content).
    format: Option<ingest::Format>,
    /// The business side's senders, one per line (names, or patterns with
    /// `*`; at most 4,096 characters): every other sender is a customer.
    /// For exports that name senders but not their roles; as shown by
    /// `POST /api/preview`.
    #[param(max_length = 4096)]
    agents: Option<String>,
}

/// How to read an upload, from its query.
pub(crate) fn ingest_choice(
    format: Option<ingest::Format>,
    agents: Option<&str>,
) -> Result<ingest::IngestChoice> {
    ingest::IngestChoice::from_fields(format, agents)
        .map_err(|e| HttpError::BadRequest(format!("agents: {e}")))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadAccepted {
    upload_id: Uuid,
    status_url: String,
    filename: String,
}

/// Where an uploaded file goes: the spool directory, named by a fresh id
/// and the original extension (which decides the format).
fn spool_path(dir: &Path, filename: &str) -> PathBuf {
    let ext: String = Path::new(filename)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let name = if ext.is_empty() {
        Uuid::new_v4().to_string()
    } else {
        format!("{}.{ext}", Uuid::new_v4())
    };
    dir.join(name)
}

/// Streams `chunks` into `path`, refusing more than `limit` bytes or a body
/// that arrives too slowly.
async fn save<S, E>(mut chunks: S, path: &Path, limit: u64, timing: BodyTiming) -> Result<u64>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // Owner-only (0600) whatever the umask: it is customer data in full.
    let mut file = tokio::fs::OpenOptions::from(crate::spool::file_options())
        .open(path)
        .await
        .map_err(|e| HttpError::Internal(format!("cannot store the upload: {e}")))?;
    let mut written = 0u64;
    while let Some(chunk) = timing.within(chunks.next()).await? {
        let chunk = chunk.map_err(|e| HttpError::BadRequest(format!("upload interrupted: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(HttpError::TooLarge(format!(
                "the upload is larger than {limit} bytes (ingest.max_upload_bytes)"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| HttpError::Internal(format!("cannot store the upload: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| HttpError::Internal(format!("cannot store the upload: {e}")))?;
    Ok(written)
}

fn is_multipart(req: &HttpRequest) -> bool {
    content_type(req).is_some_and(|v| {
        v.get(..19)
            .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
    })
}

fn content_type(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Receives the body (multipart `file` field or raw) into the spool directory.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    named: Option<&str>,
    dir: &Path,
    limit: u64,
    timing: BodyTiming,
) -> Result<(PathBuf, String)> {
    if !is_multipart(req) {
        let filename = named.map(str::to_string).ok_or_else(|| {
            HttpError::BadRequest(
                "send multipart/form-data with a `file` field, or a raw body with ?filename="
                    .into(),
            )
        })?;
        let path = spool_path(dir, &filename);
        return match save(payload, &path, limit, timing).await {
            Ok(_) => Ok((path, filename)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        };
    }
    let mut form = Multipart::new(req.headers(), payload);
    while let Some(field) = timing.within(form.next()).await? {
        let field = field.map_err(|e| HttpError::BadRequest(format!("bad multipart body: {e}")))?;
        if field.name() != Some("file") {
            continue;
        }
        let filename = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .or(named)
            .unwrap_or("upload.csv")
            .to_string();
        let path = spool_path(dir, &filename);
        return match save(field, &path, limit, timing).await {
            Ok(_) => Ok((path, filename)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        };
    }
    Err(HttpError::BadRequest(
        "the multipart body has no `file` field".into(),
    ))
}

/// An export sent to `POST /api/upload` or `POST /api/estimate`: the
/// query and Content-Type checked, an upload slot taken (429 beyond
/// `server.max_concurrent_uploads`), the body received into the spool
/// directory. Answers the slot, the spooled file and the file's name.
pub(crate) async fn receive_export(
    req: &HttpRequest,
    payload: web::Payload,
    filename: Option<&str>,
    state: &AppState,
) -> Result<(tokio::sync::OwnedSemaphorePermit, PathBuf, String)> {
    if filename == Some("") {
        return Err(HttpError::BadRequest("?filename= must not be empty".into()));
    }
    if !is_multipart(req) {
        guard::check_raw_upload(content_type(req))?;
    }
    let slot = state.limits.upload_slot()?;
    let dir = state.engine.spool_dir();
    let created = {
        let dir = dir.clone();
        web::block(move || crate::spool::create_dir(&dir)).await
    };
    created
        .map_err(|e| HttpError::Internal(e.to_string()))?
        .map_err(|e| HttpError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let (path, name) = receive(
        req,
        payload,
        filename,
        &dir,
        state.engine.settings().ingest.max_upload_bytes,
        state.limits.body_timing(),
    )
    .await?;
    Ok((slot, path, name))
}

/// The multipart form of an upload.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the request body; the handler streams it
pub(crate) struct UploadForm {
    /// The export file; its name's extension tells the format.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A raw upload body: the file's bytes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the request body; the handler streams it
#[schema(value_type = String, format = Binary)]
pub(crate) struct RawUpload(Vec<u8>);

/// Upload an export: multipart/form-data with a `file` field, or a raw body
/// with `?filename=` and a Content-Type that is not text/plain,
/// application/x-www-form-urlencoded or multipart (e.g. text/csv or
/// application/octet-stream: a type other sites cannot send without a
/// CORS preflight). At most `server.max_concurrent_uploads` uploads are
/// received or parsed at once; beyond that, 429 with Retry-After.
#[utoipa::path(
    params(UploadQuery),
    request_body(
        description = "The export file (CSV, TSV, JSON, JSONL or XLSX).",
        content(
            (inline(UploadForm) = "multipart/form-data"),
            (inline(RawUpload) = "application/octet-stream"),
        )
    ),
    responses(
        (status = 202, description = "Accepted; follow `status_url`.", body = UploadAccepted),
        (status = 200, description = "Done (`?wait=true`).", body = RunSummary),
        (status = 400, description = "No file, an empty file, a bad query.", body = ErrorBody),
        (status = 408, description = "The body arrived too slowly.", body = ErrorBody),
        (status = 413, description = "Larger than `ingest.max_upload_bytes`.", body = ErrorBody),
        (status = 415, description = "Not a format PowerPulse reads, or a raw body with a simple Content-Type.", body = ErrorBody),
        (status = 422, description = "The file could not be parsed.", body = ErrorBody),
        (status = 429, description = "Too many uploads at once; see Retry-After.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/api/upload")]
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<UploadQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let choice = ingest_choice(query.format, query.agents.as_deref())?;
    // Held until the file is parsed (or refused): see `release_after_parsing`.
    let (slot, path, filename) =
        receive_export(&req, payload, query.filename.as_deref(), &state).await?;
    let engine = &state.engine;
    let settings = engine.settings();

    // Check the file can be read before accepting it, so a bad file is a
    // 4xx now rather than a failed upload later.
    let opts = IngestOptions::from_settings(&settings.ingest).with_choice(&choice);
    let probe = path.clone();
    let name = filename.clone();
    let checked = web::block(move || ingest::open_named(&probe, &name, &opts).map(|_| ()))
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    if let Err(e) = checked {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ingest_error(e, &path, &filename));
    }

    let ticket = engine
        .submit(Submission {
            path,
            filename: filename.clone(),
            remove_file_after: true,
            ingest: choice,
        })
        .await?;
    let upload_id = ticket.upload_id;
    release_after_parsing(ticket.progress.clone(), slot);
    if !query.wait {
        let note = noted(Some(upload_id), &filename);
        return Ok(note(HttpResponse::Accepted().json(UploadAccepted {
            upload_id,
            status_url: format!("/api/progress/{upload_id}"),
            filename,
        })));
    }
    let report = ticket
        .done
        .await
        .map_err(|_| HttpError::Unavailable("the upload was interrupted".into()))??;
    let totals = engine.reader().send(GetSummary { upload_id }).await??;
    let note = noted(Some(upload_id), &filename);
    Ok(note(
        HttpResponse::Ok().json(RunSummary::new(&report, &totals)),
    ))
}

/// What the audit entry of an upload or estimate names: its id (when it
/// has one) and the file, as a closure that adds it to the answer.
pub(crate) fn noted(
    upload_id: Option<Uuid>,
    filename: &str,
) -> impl FnOnce(HttpResponse) -> HttpResponse + use<> {
    let note = AuditNote {
        upload_id,
        target: Some(filename.to_string()),
    };
    move |mut response| {
        response.extensions_mut().insert(note);
        response
    }
}

/// An ingest error naming the file as the user knows it, not by its spool name.
pub(crate) fn ingest_error(e: ingest::IngestError, path: &Path, filename: &str) -> HttpError {
    let message = e.to_string().replace(&path.display().to_string(), filename);
    match HttpError::from(e) {
        HttpError::Unsupported(_) => HttpError::Unsupported(message),
        HttpError::BadRequest(_) => HttpError::BadRequest(message),
        HttpError::Unprocessable(_) => HttpError::Unprocessable(message),
        other => other,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EstimateQuery {
    /// The file name, for a raw (non-multipart) body; its extension tells the format.
    #[param(min_length = 1)]
    filename: Option<String>,
}

/// What analysing an export with the LLM would cost, sending nothing and
/// storing nothing: the conversations that would be sent after dedupe
/// (within the file and against earlier uploads), their tokens, the cost in
/// sync and batch mode, and the time bound at the configured or announced
/// rate limits. The body is sent as to `POST /api/upload`.
#[utoipa::path(
    params(EstimateQuery),
    request_body(
        description = "The export file (CSV, TSV, JSON, JSONL or XLSX).",
        content(
            (inline(UploadForm) = "multipart/form-data"),
            (inline(RawUpload) = "application/octet-stream"),
        )
    ),
    responses(
        (status = 200, description = "The estimate.", body = Estimate),
        (status = 400, description = "No file, an empty file, a bad query.", body = ErrorBody),
        (status = 408, description = "The body arrived too slowly.", body = ErrorBody),
        (status = 413, description = "Larger than `ingest.max_upload_bytes`.", body = ErrorBody),
        (status = 415, description = "Not a format PowerPulse reads, or a raw body with a simple Content-Type.", body = ErrorBody),
        (status = 422, description = "The file could not be parsed.", body = ErrorBody),
        (status = 429, description = "Too many uploads at once; see Retry-After.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/api/estimate")]
pub async fn estimate(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<EstimateQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    // An estimate reads a whole file, as an upload's parse does.
    let (_slot, path, filename) =
        receive_export(&req, payload, query.filename.as_deref(), &state).await?;
    let engine = &state.engine;
    let settings = engine.settings();
    // The running analyzer knows the limits the provider announced.
    let analyzer = match engine.analyzer() {
        Analyzer::OpenAi(a) => a.clone(),
        Analyzer::Lexicon(_) => OpenAiAnalyzer::with_topics(
            &settings.analyzer.openai,
            "estimate-only".to_string().into(),
            &settings.topics,
        )
        .and_then(|a| a.with_privacy(&settings.privacy))
        .map_err(|e| HttpError::Internal(e.to_string()))?,
    };
    let opts = IngestOptions::from_settings(&settings.ingest);
    let (file, name, reader) = (path.clone(), filename.clone(), analyzer.clone());
    let drafted = web::block(move || {
        let rows = ingest::open_named(&file, &name, &opts)?;
        Draft::from_rows(&name, rows, &reader)
    })
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let draft = drafted
        .map_err(|e| HttpError::Internal(e.to_string()))?
        .map_err(|e| ingest_error(e, &path, &filename))?;
    let found = engine
        .reader()
        .send(LookupProcessed { keys: draft.keys() })
        .await??;
    let processed: Vec<bool> = found.iter().map(Option::is_some).collect();
    let note = noted(None, &filename);
    Ok(note(
        HttpResponse::Ok().json(draft.finish(Some(&processed), &analyzer)),
    ))
}

/// Keeps an upload's slot until its file is parsed (the costly, memory- and
/// disk-bound part); analysis is bounded by the analyzer pool instead.
fn release_after_parsing(
    mut updates: tokio::sync::watch::Receiver<ProgressSnapshot>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    actix_web::rt::spawn(async move {
        // Err: the upload left the registry; either way parsing is over.
        let _ = updates.wait_for(|s| s.stage != Stage::Parsing).await;
        drop(slot);
    });
}

// ---- progress --------------------------------------------------------------------

/// The live state of an upload (or its stored state when it is not running here).
async fn snapshot(state: &AppState, upload_id: Uuid) -> Result<ProgressSnapshot> {
    let engine = &state.engine;
    if let Some(s) = engine.progress().send(GetProgress { upload_id }).await? {
        return Ok(s);
    }
    let record = engine.reader().send(GetUpload { upload_id }).await??;
    record
        .as_ref()
        .map(ProgressSnapshot::from_record)
        .ok_or_else(|| HttpError::NotFound(format!("upload {upload_id} not found")))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ProgressQuery {
    /// Include finished uploads.
    #[serde(default)]
    all: bool,
}

/// Uploads running in this process (`?all=true`: every tracked one).
#[utoipa::path(params(ProgressQuery), responses(
    (status = 200, body = Vec<ProgressSnapshot>), (status = 400, description = "A bad query.", body = ErrorBody)
))]
#[get("/api/progress")]
pub async fn list_progress(
    query: web::Query<ProgressQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let list = state
        .engine
        .progress()
        .send(ListProgress {
            include_finished: query.all,
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One upload's progress.
#[utoipa::path(params(UploadPath), responses(
    (status = 200, body = ProgressSnapshot), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody)
))]
#[get("/api/progress/{upload_id}")]
pub async fn progress(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    Ok(HttpResponse::Ok().json(snapshot(&state, id).await?))
}

/// Cancel an upload: no new LLM calls, in-flight ones aborted, partial results kept.
#[utoipa::path(params(UploadPath), responses(
    (status = 202, body = ProgressSnapshot), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, description = "Not running.", body = ErrorBody)
))]
#[delete("/api/progress/{upload_id}")]
pub async fn cancel(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    match state.engine.cancel(id).await {
        Ok(()) => Ok(HttpResponse::Accepted().json(snapshot(&state, id).await?)),
        Err(crate::progress::actor::CancelError::NotFound(_)) => {
            // Known to the store but not running here: finished before.
            let s = snapshot(&state, id).await?;
            Err(HttpError::Conflict(format!(
                "upload {id} is not running (status {})",
                s.stage.as_str()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Server-Sent Events: one `progress` event per change (at most four a
/// second), ending with the final state. A stream with no change for
/// `server.sse_idle_timeout_seconds` ends early (reconnect to go on); at most
/// `server.max_sse_subscribers` are open at once (beyond that, 429).
#[utoipa::path(params(UploadPath), responses(
    (status = 200, content_type = "text/event-stream", body = ProgressSnapshot),
    (status = 400, description = "Not a UUID.", body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 429, description = "Too many open streams; see Retry-After.", body = ErrorBody,
        headers(("Retry-After" = u64, description = "Seconds to wait"))),
))]
#[get("/api/progress/{upload_id}/events")]
pub async fn events(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    let receiver = state
        .engine
        .progress()
        .send(Subscribe { upload_id: id })
        .await?;
    let body: std::pin::Pin<Box<dyn Stream<Item = std::result::Result<Bytes, Infallible>>>> =
        match receiver {
            Some(rx) => {
                let slot = state.limits.stream_slot()?;
                Box::pin(progress_stream(rx, slot, state.limits.sse_idle))
            }
            None => {
                // Not running here: one event with the stored state, then done.
                let s = snapshot(&state, id).await?;
                Box::pin(futures_util::stream::once(async move { Ok(sse_event(&s)) }))
            }
        };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

fn sse_event(s: &ProgressSnapshot) -> Bytes {
    let data = serde_json::to_string(s).unwrap_or_default();
    Bytes::from(format!("event: progress\ndata: {data}\n\n"))
}

/// The latest state after each change, throttled; ends after the final
/// state, or when nothing changed for `idle`. Holds `slot` while it lasts.
fn progress_stream(
    rx: tokio::sync::watch::Receiver<ProgressSnapshot>,
    slot: tokio::sync::OwnedSemaphorePermit,
    idle: Duration,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> {
    struct S {
        rx: tokio::sync::watch::Receiver<ProgressSnapshot>,
        first: bool,
        finished: bool,
        last: Option<Instant>,
        idle: Duration,
        _slot: tokio::sync::OwnedSemaphorePermit,
    }
    futures_util::stream::unfold(
        S {
            rx,
            first: true,
            finished: false,
            last: None,
            idle,
            _slot: slot,
        },
        |mut s| async move {
            if s.finished {
                return None;
            }
            if !s.first {
                let current_is_final = s.rx.borrow().stage.is_final();
                if !current_is_final {
                    match tokio::time::timeout(s.idle, s.rx.changed()).await {
                        Ok(Ok(())) => {}
                        // The upload left the registry without a final state,
                        // or nothing changed for the idle timeout.
                        Ok(Err(_)) | Err(_) => return None,
                    }
                }
                if let Some(last) = s.last {
                    tokio::time::sleep(SSE_INTERVAL.saturating_sub(last.elapsed())).await;
                }
            }
            s.first = false;
            let snapshot = s.rx.borrow_and_update().clone();
            s.finished = snapshot.stage.is_final();
            s.last = Some(Instant::now());
            Some((Ok(sse_event(&snapshot)), s))
        },
    )
}

// ---- uploads ---------------------------------------------------------------------

/// Every stored upload, newest first.
#[utoipa::path(responses((status = 200, body = Vec<UploadRecord>)))]
#[get("/api/uploads")]
pub async fn list_uploads(state: web::Data<AppState>) -> Result<HttpResponse> {
    let all = state.engine.reader().send(ListUploads {}).await??;
    Ok(HttpResponse::Ok().json(all))
}

async fn record(state: &AppState, upload_id: Uuid) -> Result<UploadRecord> {
    state
        .engine
        .reader()
        .send(GetUpload { upload_id })
        .await??
        .ok_or_else(|| HttpError::NotFound(format!("upload {upload_id} not found")))
}

/// One upload's stored record.
#[utoipa::path(params(UploadPath), responses(
    (status = 200, body = UploadRecord), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody)
))]
#[get("/api/uploads/{upload_id}")]
pub async fn get_upload(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

/// Remove an upload and its results (not while it runs).
#[utoipa::path(params(UploadPath), responses(
    (status = 204, description = "Deleted."), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, description = "Still running.", body = ErrorBody)
))]
#[delete("/api/uploads/{upload_id}")]
pub async fn delete_upload(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    let live = state
        .engine
        .progress()
        .send(GetProgress { upload_id: id })
        .await?;
    if live.is_some_and(|s| !s.stage.is_final()) {
        return Err(HttpError::Conflict(format!(
            "upload {id} is running; cancel it first (DELETE /api/progress/{id})"
        )));
    }
    if state.engine.delete_upload(id).await?.is_some() {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(HttpError::NotFound(format!("upload {id} not found")))
    }
}

/// Continue a cancelled, failed or interrupted upload.
#[utoipa::path(params(UploadPath), responses(
    (status = 202, body = UploadAccepted), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, description = "Running or completed.", body = ErrorBody)
))]
#[post("/api/uploads/{upload_id}/resume")]
pub async fn resume_upload(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    let r = record(&state, id).await?;
    let ticket = state.engine.resume(id).await?;
    Ok(HttpResponse::Accepted().json(UploadAccepted {
        upload_id: ticket.upload_id,
        status_url: format!("/api/progress/{id}"),
        filename: r.filename,
    }))
}

/// Largest page of conversations.
const MAX_PAGE: usize = 500;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ConversationQuery {
    sentiment: Option<SentimentLabel>,
    /// Lowest satisfaction score, 1–5.
    #[param(minimum = 1, maximum = 5)]
    min_satisfaction: Option<u8>,
    /// Highest satisfaction score, 1–5.
    #[param(minimum = 1, maximum = 5)]
    max_satisfaction: Option<u8>,
    status: Option<ConversationStatus>,
    /// The agent's name, exactly as the export wrote it.
    agent: Option<String>,
    /// A configured topic's name.
    topic: Option<String>,
    /// An ISO 639-1 language code (`en`, `ne`).
    language: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ConversationQuery {
    /// The bounds the document states, enforced.
    fn check(&self) -> Result<()> {
        let score = |name: &str, v: Option<u8>| match v {
            Some(s) if !(1..=5).contains(&s) => Err(HttpError::BadRequest(format!(
                "{name} must be between 1 and 5, not {s}"
            ))),
            _ => Ok(()),
        };
        score("min_satisfaction", self.min_satisfaction)?;
        score("max_satisfaction", self.max_satisfaction)?;
        match self.limit {
            Some(l) if !(1..=MAX_PAGE).contains(&l) => Err(HttpError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}, not {l}"
            ))),
            _ => Ok(()),
        }
    }
}

/// One page of an upload's conversations, filtered.
#[utoipa::path(params(UploadPath, ConversationQuery), responses(
    (status = 200, body = Page<ConversationRow>),
    (status = 400, description = "Not a UUID, or a bad query.", body = ErrorBody),
    (status = 404, body = ErrorBody)
))]
#[get("/api/uploads/{upload_id}/conversations")]
pub async fn conversations(
    path: web::Path<UploadPath>,
    query: web::Query<ConversationQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    query.check()?;
    record(&state, id).await?;
    let q = query.into_inner();
    let page = state
        .engine
        .reader()
        .send(ListConversations {
            upload_id: id,
            filter: ConversationFilter {
                sentiment: q.sentiment,
                min_satisfaction: q.min_satisfaction,
                max_satisfaction: q.max_satisfaction,
                status: q.status,
                agent: q.agent,
                topic: q.topic,
                language: q.language,
            },
            cursor: q.cursor,
            limit: q.limit.unwrap_or(50),
        })
        .await??;
    Ok(HttpResponse::Ok().json(page))
}

/// One conversation: messages (autoresponses flagged) and its analysis.
/// Operators and admins read it whole (and the audit says so); a viewer
/// reads it with personal data replaced by placeholders (`<PHONE_1>`,
/// `<NAME_1>`, consistent within the conversation, the summary included;
/// `redacted` is true).
#[utoipa::path(params(ConversationPath), responses(
    (status = 200, body = ConversationDetail), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody)
))]
#[get("/api/uploads/{upload_id}/conversations/{conversation_id}")]
pub async fn conversation(
    path: web::Path<ConversationPath>,
    principal: web::ReqData<Principal>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let ConversationPath {
        upload_id: id,
        conversation_id,
    } = path.into_inner();
    let mut detail = state
        .engine
        .reader()
        .send(GetConversation {
            upload_id: id,
            conversation_id: conversation_id.clone(),
        })
        .await??
        .ok_or_else(|| {
            HttpError::NotFound(format!(
                "conversation {conversation_id:?} not found in upload {id}"
            ))
        })?;
    if !principal.role.allows(Role::Operator) {
        // Recognising personal data is CPU work: off the worker.
        let redactor = state.redactor.clone();
        detail = web::block(move || redactor.redact(detail))
            .await
            .map_err(|e| HttpError::Internal(e.to_string()))??;
    }
    Ok(HttpResponse::Ok().json(detail))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct InsightsParams {
    /// First day counted (UTC, `YYYY-MM-DD`); from the earliest when absent.
    from: Option<chrono::NaiveDate>,
    /// Last day counted (UTC, `YYYY-MM-DD`), included; to the latest when absent.
    to: Option<chrono::NaiveDate>,
    /// Only conversations of this topic.
    topic: Option<String>,
    /// Only conversations of this agent (the name as the export wrote it).
    agent: Option<String>,
}

/// Across every completed upload: conversations, sentiment and satisfaction
/// by day (of each conversation's first message, else its upload's), by
/// topic and by agent. A conversation uploaded twice (same id, same content)
/// counts once. `from` after `to` is an empty range.
#[utoipa::path(params(InsightsParams), responses(
    (status = 200, body = Insights),
    (status = 400, description = "A date that is not `YYYY-MM-DD`.", body = ErrorBody)
))]
#[get("/api/insights")]
pub async fn insights(
    query: web::Query<InsightsParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    // `from` after `to` is an empty range: a valid query, answered empty.
    let q = query.into_inner();
    let answer = state
        .engine
        .reader()
        .send(GetInsights {
            query: InsightsQuery {
                from: q.from,
                to: q.to,
                topic: q.topic,
                agent: q.agent,
            },
        })
        .await??;
    Ok(HttpResponse::Ok().json(answer))
}

/// Counts per sentiment, satisfaction histogram and mean, resolved rate, failures, tokens and cost.
#[utoipa::path(params(UploadPath), responses(
    (status = 200, body = UploadSummary), (status = 400, description = "Not a UUID.", body = ErrorBody),
    (status = 404, body = ErrorBody)
))]
#[get("/api/uploads/{upload_id}/summary")]
pub async fn summary(
    path: web::Path<UploadPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    let mut s = state
        .engine
        .reader()
        .send(GetSummary { upload_id: id })
        .await??;
    // A running upload's usage so far lives in the progress state.
    if let Some(live) = state
        .engine
        .progress()
        .send(GetProgress { upload_id: id })
        .await?
        && !live.stage.is_final()
    {
        s.llm = live.llm;
        s.status = live.stage;
    }
    Ok(HttpResponse::Ok().json(s))
}

/// The export formats, as the query names them.
#[derive(Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormatParam {
    Csv,
    Json,
    Jsonl,
}

impl From<ExportFormatParam> for ExportFormat {
    fn from(f: ExportFormatParam) -> Self {
        match f {
            ExportFormatParam::Csv => ExportFormat::Csv,
            ExportFormatParam::Json => ExportFormat::Json,
            ExportFormatParam::Jsonl => ExportFormat::Jsonl,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// csv (default), json or jsonl.
    format: Option<ExportFormatParam>,
    /// An export to share: conversation ids and summaries redacted as
    /// `[privacy]` says, agents as `<AGENT_n>` (numbered within the upload).
    redact: Option<bool>,
}

/// The same rows as `powerpulse export`, streamed; with `redact=true`,
/// personal data replaced by placeholders.
#[utoipa::path(params(UploadPath, ExportQuery), responses(
    (status = 200, description = "The rows, in the format asked for.", content(
        ("text/csv"), ("application/json"), ("application/x-ndjson")
    ), headers(("X-PowerPulse-Redacted" = String,
        description = "`true` when the rows were redacted (`redact=true`)"))),
    (status = 400, description = "Not a UUID, or an unknown format.", body = ErrorBody),
    (status = 404, body = ErrorBody)
))]
#[get("/api/uploads/{upload_id}/export")]
pub async fn export(
    path: web::Path<UploadPath>,
    query: web::Query<ExportQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.upload_id;
    let format: ExportFormat = query.format.unwrap_or(ExportFormatParam::Csv).into();
    let r = record(&state, id).await?;
    let reader = state.engine.reader().clone();
    let mut writer = ExportWriter::new(format, Vec::new());
    let redacted = query.redact == Some(true);
    if redacted {
        writer = writer.redacting(state.engine.redactor().clone());
    }

    struct S {
        writer: Option<ExportWriter<Vec<u8>>>,
        cursor: Option<String>,
    }
    let stream = futures_util::stream::unfold(
        S {
            writer: Some(writer),
            cursor: None,
        },
        move |mut s| {
            let reader = reader.clone();
            async move {
                let mut writer = s.writer.take()?;
                let page = reader
                    .send(ListConversations {
                        upload_id: id,
                        filter: ConversationFilter::default(),
                        cursor: s.cursor.take(),
                        limit: PAGE_ROWS,
                    })
                    .await;
                let page = match page {
                    Ok(Ok(p)) => p,
                    _ => return Some((Err(HttpError::Internal("export interrupted".into())), s)),
                };
                let senders = if writer.redacts() {
                    let names = reader
                        .send(GetSenderNames {
                            upload_id: id,
                            conversation_ids: page
                                .items
                                .iter()
                                .map(|r| r.conversation_id.clone())
                                .collect(),
                        })
                        .await;
                    match names {
                        Ok(Ok(names)) => names,
                        _ => {
                            return Some((
                                Err(HttpError::Internal("export interrupted".into())),
                                s,
                            ));
                        }
                    }
                } else {
                    Vec::new()
                };
                let next = match writer.write_page(page, &senders) {
                    Ok(next) => next,
                    Err(e) => return Some((Err(HttpError::Internal(e.to_string())), s)),
                };
                let chunk = match next {
                    Some(c) => {
                        s.cursor = Some(c);
                        let chunk = writer.drain();
                        s.writer = Some(writer);
                        chunk
                    }
                    None => writer.finish_into_bytes(),
                };
                Some((
                    chunk
                        .map(Bytes::from)
                        .map_err(|e| HttpError::Internal(e.to_string())),
                    s,
                ))
            }
        },
    );
    let stem: String = Path::new(&r.filename)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    let mut response = HttpResponse::Ok();
    response.content_type(format.content_type()).insert_header((
        header::CONTENT_DISPOSITION,
        format!(
            "attachment; filename=\"{stem}-results{}.{}\"",
            if redacted { "-redacted" } else { "" },
            format.extension()
        ),
    ));
    if redacted {
        response.insert_header((crate::export::REDACTED_HEADER, "true"));
    }
    Ok(response.streaming(stream))
}

/// A consistent snapshot of the whole database, as a redb file: what
/// `powerpulse backup` saves. Everything committed when it is taken is in
/// it (buffered results are committed first); uploads go on meanwhile. The
/// copy is made beside the database, so it needs that much free space there
/// while it is sent. Restore: stop the server, put the file in place of the
/// database, start it. One backup is taken at a time (beyond that, 429).
#[utoipa::path(responses(
    (status = 200, description = "The snapshot (a redb file).", content_type = "application/octet-stream",
        body = inline(RawUpload),
        headers(("X-PowerPulse-Uploads" = u64, description = "Uploads in the snapshot"))),
    (status = 429, description = "A backup is being taken; see Retry-After.", body = ErrorBody,
        headers(("Retry-After" = u64, description = "Seconds to wait"))),
))]
#[get("/api/backup")]
pub async fn backup(state: web::Data<AppState>) -> Result<HttpResponse> {
    // Held until the snapshot is sent (the stream owns it).
    let slot = state.limits.backup_slot()?;
    let engine = &state.engine;
    engine.writer().send(Flush).await??;
    let db = engine.db_path();
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (file, stats) = engine.reader().send(Snapshot { dir }).await??;
    let len = file
        .metadata()
        .map_err(|e| HttpError::Internal(format!("cannot read the snapshot: {e}")))?
        .len();
    let body =
        tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)).map(move |chunk| {
            let _held = &slot;
            chunk
        });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"powerpulse-backup.redb\"",
        ))
        .insert_header(("x-powerpulse-uploads", stats.uploads.to_string()))
        .no_chunking(len)
        .streaming(body))
}

/// Prometheus metrics.
#[utoipa::path(responses((status = 200, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics_text(state: web::Data<AppState>) -> Result<HttpResponse> {
    let records = state.engine.reader().send(ListUploads {}).await??;
    let live = state
        .engine
        .progress()
        .send(ListProgress {
            include_finished: false,
        })
        .await?;
    let mut text = metrics::render(&records, &live, &state.metrics, &state.limits);
    state.engine.webhook_stats().render(&mut text);
    if let Analyzer::OpenAi(llm) = state.engine.analyzer() {
        metrics::render_endpoints(llm, &mut text);
    }
    state.engine.alert_stats().render(&mut text);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

/// This API, as an OpenAPI 3 document.
#[utoipa::path(responses((status = 200, content_type = "application/json")))]
#[get("/api/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi::document())
}
