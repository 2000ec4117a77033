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

use super::error::{ErrorBody, HttpError};
use super::{AppState, metrics, openapi};
use crate::export::{ExportFormat, ExportRow, ExportWriter};
use crate::ingest::{self, IngestOptions};
use crate::model::{ConversationStatus, SentimentLabel};
use crate::pipeline::Submission;
use crate::progress::ProgressSnapshot;
use crate::progress::actor::{GetProgress, ListProgress, Subscribe};
use crate::report::RunSummary;
use crate::store::actor::{
    DeleteUpload, GetConversation, GetSummary, GetUpload, ListConversations, ListUploads,
};
use crate::store::{
    ConversationDetail, ConversationFilter, ConversationRow, Page, UploadRecord, UploadSummary,
};

type Result<T, E = HttpError> = std::result::Result<T, E>;

/// Server-sent events go out at most this often (the latest state wins).
const SSE_INTERVAL: Duration = Duration::from_millis(250);
/// Rows per store page when streaming an export.
const EXPORT_PAGE: usize = 500;

pub fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(upload)
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
        .service(export)
        .service(metrics_text)
        .service(openapi_json);
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse> {
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

fn parse_id(raw: &str) -> Result<Uuid> {
    raw.parse()
        .map_err(|_| HttpError::BadRequest(format!("{raw:?} is not an upload id (a UUID)")))
}

// ---- upload ----------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file name, for a raw (non-multipart) body; its extension tells the format.
    filename: Option<String>,
    /// Answer when the upload is done, with its summary.
    #[serde(default)]
    wait: bool,
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

/// Streams `chunks` into `path`, refusing more than `limit` bytes.
async fn save<S, E>(mut chunks: S, path: &Path, limit: u64) -> Result<u64>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| HttpError::Internal(format!("cannot store the upload: {e}")))?;
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
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

/// Receives the body (multipart `file` field or raw) into the spool directory.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    query: &UploadQuery,
    dir: &Path,
    limit: u64,
) -> Result<(PathBuf, String)> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        let filename = query.filename.clone().ok_or_else(|| {
            HttpError::BadRequest(
                "send multipart/form-data with a `file` field, or a raw body with ?filename="
                    .into(),
            )
        })?;
        let path = spool_path(dir, &filename);
        return match save(payload, &path, limit).await {
            Ok(_) => Ok((path, filename)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        };
    }
    let mut form = Multipart::new(req.headers(), payload);
    while let Some(field) = form.next().await {
        let field = field.map_err(|e| HttpError::BadRequest(format!("bad multipart body: {e}")))?;
        if field.name() != Some("file") {
            continue;
        }
        let filename = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_string)
            .or_else(|| query.filename.clone())
            .unwrap_or_else(|| "upload.csv".to_string());
        let path = spool_path(dir, &filename);
        return match save(field, &path, limit).await {
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

/// Upload an export: multipart/form-data with a `file` field, or a raw body with `?filename=`.
#[utoipa::path(
    params(UploadQuery),
    responses(
        (status = 202, body = UploadAccepted), (status = 200, body = RunSummary),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)
    )
)]
#[post("/api/upload")]
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<UploadQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let engine = &state.engine;
    let settings = engine.settings();
    let dir = engine.spool_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| HttpError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let (path, filename) = receive(
        &req,
        payload,
        &query,
        &dir,
        settings.ingest.max_upload_bytes,
    )
    .await?;

    // Check the file can be read before accepting it, so a bad file is a
    // 4xx now rather than a failed upload later.
    let opts = IngestOptions::from_settings(&settings.ingest);
    let probe = path.clone();
    let checked = web::block(move || ingest::open(&probe, &opts).map(|_| ()))
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    if let Err(e) = checked {
        let _ = tokio::fs::remove_file(&path).await;
        // Name the file as the user knows it, not by its spool name.
        let message = e
            .to_string()
            .replace(&path.display().to_string(), &filename);
        let mapped: HttpError = e.into();
        return Err(match mapped {
            HttpError::Unsupported(_) => HttpError::Unsupported(message),
            HttpError::BadRequest(_) => HttpError::BadRequest(message),
            HttpError::Unprocessable(_) => HttpError::Unprocessable(message),
            other => other,
        });
    }

    let ticket = engine
        .submit(Submission {
            path,
            filename: filename.clone(),
            remove_file_after: true,
        })
        .await?;
    let upload_id = ticket.upload_id;
    if !query.wait {
        return Ok(HttpResponse::Accepted().json(UploadAccepted {
            upload_id,
            status_url: format!("/api/progress/{upload_id}"),
            filename,
        }));
    }
    let report = ticket
        .done
        .await
        .map_err(|_| HttpError::Unavailable("the upload was interrupted".into()))??;
    let totals = engine.reader().send(GetSummary { upload_id }).await??;
    Ok(HttpResponse::Ok().json(RunSummary::new(&report, &totals)))
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
#[utoipa::path(params(ProgressQuery), responses((status = 200, body = Vec<ProgressSnapshot>)))]
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
#[utoipa::path(responses((status = 200, body = ProgressSnapshot), (status = 404, body = ErrorBody)))]
#[get("/api/progress/{upload_id}")]
pub async fn progress(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(snapshot(&state, id).await?))
}

/// Cancel an upload: no new LLM calls, in-flight ones aborted, partial results kept.
#[utoipa::path(responses(
    (status = 202, body = ProgressSnapshot), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)
))]
#[delete("/api/progress/{upload_id}")]
pub async fn cancel(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
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
/// second), ending with the final state.
#[utoipa::path(responses((status = 200, content_type = "text/event-stream", body = ProgressSnapshot), (status = 404, body = ErrorBody)))]
#[get("/api/progress/{upload_id}/events")]
pub async fn events(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
    let receiver = state
        .engine
        .progress()
        .send(Subscribe { upload_id: id })
        .await?;
    let body: std::pin::Pin<Box<dyn Stream<Item = std::result::Result<Bytes, Infallible>>>> =
        match receiver {
            Some(rx) => Box::pin(progress_stream(rx)),
            None => {
                // Not running here: one event with the stored state, then done.
                let s = snapshot(&state, id).await?;
                Box::pin(futures_util::stream::once(async move { Ok(sse_event(&s)) }))
            }
        };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

fn sse_event(s: &ProgressSnapshot) -> Bytes {
    let data = serde_json::to_string(s).unwrap_or_default();
    Bytes::from(format!("event: progress\ndata: {data}\n\n"))
}

/// The latest state after each change, throttled; ends after the final state.
fn progress_stream(
    rx: tokio::sync::watch::Receiver<ProgressSnapshot>,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> {
    struct S {
        rx: tokio::sync::watch::Receiver<ProgressSnapshot>,
        first: bool,
        finished: bool,
        last: Option<Instant>,
    }
    futures_util::stream::unfold(
        S {
            rx,
            first: true,
            finished: false,
            last: None,
        },
        |mut s| async move {
            if s.finished {
                return None;
            }
            if !s.first {
                let current_is_final = s.rx.borrow().stage.is_final();
                if !current_is_final && s.rx.changed().await.is_err() {
                    // The upload left the registry without a final state.
                    return None;
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
#[utoipa::path(responses((status = 200, body = UploadRecord), (status = 404, body = ErrorBody)))]
#[get("/api/uploads/{upload_id}")]
pub async fn get_upload(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

/// Remove an upload and its results (not while it runs).
#[utoipa::path(responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/api/uploads/{upload_id}")]
pub async fn delete_upload(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
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
    if state.engine.writer().send(DeleteUpload(id)).await?? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(HttpError::NotFound(format!("upload {id} not found")))
    }
}

/// Continue a cancelled, failed or interrupted upload.
#[utoipa::path(responses((status = 202, body = UploadAccepted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/api/uploads/{upload_id}/resume")]
pub async fn resume_upload(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
    let r = record(&state, id).await?;
    let ticket = state.engine.resume(id).await?;
    Ok(HttpResponse::Accepted().json(UploadAccepted {
        upload_id: ticket.upload_id,
        status_url: format!("/api/progress/{id}"),
        filename: r.filename,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ConversationQuery {
    sentiment: Option<SentimentLabel>,
    min_satisfaction: Option<u8>,
    max_satisfaction: Option<u8>,
    status: Option<ConversationStatus>,
    /// Page size, 1–500 (default 50).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of an upload's conversations, filtered.
#[utoipa::path(params(ConversationQuery), responses((status = 200, body = Page<ConversationRow>), (status = 404, body = ErrorBody)))]
#[get("/api/uploads/{upload_id}/conversations")]
pub async fn conversations(
    path: web::Path<String>,
    query: web::Query<ConversationQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
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
            },
            cursor: q.cursor,
            limit: q.limit.unwrap_or(50).clamp(1, 500),
        })
        .await??;
    Ok(HttpResponse::Ok().json(page))
}

/// One conversation: messages (autoresponses flagged) and its analysis.
#[utoipa::path(responses((status = 200, body = ConversationDetail), (status = 404, body = ErrorBody)))]
#[get("/api/uploads/{upload_id}/conversations/{conversation_id}")]
pub async fn conversation(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (id, conversation_id) = path.into_inner();
    let id = parse_id(&id)?;
    let detail = state
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
    Ok(HttpResponse::Ok().json(detail))
}

/// Counts per sentiment, satisfaction histogram and mean, resolved rate, failures, tokens and cost.
#[utoipa::path(responses((status = 200, body = UploadSummary), (status = 404, body = ErrorBody)))]
#[get("/api/uploads/{upload_id}/summary")]
pub async fn summary(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
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

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// csv (default), json or jsonl.
    format: Option<String>,
}

/// The same rows as `powerpulse export`, streamed.
#[utoipa::path(params(ExportQuery), responses((status = 200, content_type = "text/csv"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/api/uploads/{upload_id}/export")]
pub async fn export(
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = parse_id(&path)?;
    let format: ExportFormat = query
        .format
        .as_deref()
        .unwrap_or("csv")
        .parse()
        .map_err(HttpError::BadRequest)?;
    let r = record(&state, id).await?;
    let reader = state.engine.reader().clone();

    struct S {
        writer: Option<ExportWriter<Vec<u8>>>,
        cursor: Option<String>,
    }
    let stream = futures_util::stream::unfold(
        S {
            writer: Some(ExportWriter::new(format, Vec::new())),
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
                        limit: EXPORT_PAGE,
                    })
                    .await;
                let page = match page {
                    Ok(Ok(p)) => p,
                    _ => return Some((Err(HttpError::Internal("export interrupted".into())), s)),
                };
                for row in page.items {
                    if let Err(e) = writer.write(&ExportRow::from(row)) {
                        return Some((Err(HttpError::Internal(e.to_string())), s));
                    }
                }
                let chunk = match page.next_cursor {
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
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{stem}-results.{}\"",
                format.extension()
            ),
        ))
        .streaming(stream))
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
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics::render(&records, &live, &state.metrics)))
}

/// This API, as an OpenAPI 3 document.
#[utoipa::path(responses((status = 200, content_type = "application/json")))]
#[get("/api/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi::document())
}
