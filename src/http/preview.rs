//! `POST /api/preview`: what an upload of a file would read, nothing stored
//! and nothing sent (see `ingest::preview`).

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;

use super::AppState;
use super::error::{ErrorBody, HttpError};
use super::routes::{ingest_choice, ingest_error, noted, receive_export};
use crate::ingest::preview::{CONVERSATIONS_SHOWN, MESSAGES_SHOWN, Preview};
use crate::ingest::{self, IngestOptions};

type Result<T> = std::result::Result<T, HttpError>;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PreviewQuery {
    /// The file name, for a raw (non-multipart) body; its extension tells the format.
    #[param(min_length = 1)]
    filename: Option<String>,
    /// Read the file as this format (default: told from its name and content).
    format: Option<ingest::Format>,
    /// The business side's senders, one per line (names, or patterns with
    /// `*`; at most 4,096 characters): every
    /// other sender is a customer.
    #[param(max_length = 4096)]
    agents: Option<String>,
    /// Conversations shown (default 5).
    #[param(minimum = 1, maximum = 100)]
    conversations: Option<u16>,
    /// Messages shown per conversation (default 20).
    #[param(minimum = 1, maximum = 1000)]
    messages: Option<u16>,
}

/// What uploading an export would read, storing nothing and sending
/// nothing: the format detected, where each field comes from, the senders
/// and the role each gets, the first conversations as they will be analysed
/// (roles marked), and the counts. The body is sent as to `POST
/// /api/upload`; so are `format` and `agents`, to see their effect before
/// uploading with them.
#[utoipa::path(
    params(PreviewQuery),
    request_body(
        description = "The export file (as for POST /api/upload).",
        content(
            (inline(super::routes::UploadForm) = "multipart/form-data"),
            (inline(super::routes::RawUpload) = "application/octet-stream"),
        )
    ),
    responses(
        (status = 200, description = "The preview.", body = Preview),
        (status = 400, description = "No file, an empty file, a bad query.", body = ErrorBody),
        (status = 408, description = "The body arrived too slowly.", body = ErrorBody),
        (status = 413, description = "Larger than `ingest.max_upload_bytes`.", body = ErrorBody),
        (status = 415, description = "Not a format PowerPulse reads, or a raw body with a simple Content-Type.", body = ErrorBody),
        (status = 422, description = "The file could not be parsed.", body = ErrorBody),
        (status = 429, description = "Too many uploads at once; see Retry-After.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/api/preview")]
pub async fn preview(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PreviewQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let choice = ingest_choice(query.format, query.agents.as_deref())?;
    let shown = (
        query.conversations.map_or(CONVERSATIONS_SHOWN, usize::from),
        query.messages.map_or(MESSAGES_SHOWN, usize::from),
    );
    // A preview reads a whole file, as an upload's parse does: it takes a slot.
    let (_slot, path, filename) =
        receive_export(&req, payload, query.filename.as_deref(), &state).await?;
    let opts = IngestOptions::from_settings(&state.engine.settings().ingest).with_choice(&choice);
    let (file, name) = (path.clone(), filename.clone());
    let built = web::block(move || {
        let rows = ingest::open_named(&file, &name, &opts)?;
        Preview::build(&name, rows, shown.0, shown.1)
    })
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let preview = built
        .map_err(|e| HttpError::Internal(e.to_string()))?
        .map_err(|e| ingest_error(e, &path, &filename))?;
    Ok(noted(None, &filename)(HttpResponse::Ok().json(preview)))
}
