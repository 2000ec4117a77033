//! Every HTTP error, mapped to a status code and a JSON body in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::ingest::IngestError;
use crate::pipeline::UploadError;
use crate::progress::actor::CancelError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A short, stable description of the kind of error.
    pub error: String,
    /// What exactly went wrong.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("not found")]
    NotFound(String),
    #[error("bad request")]
    BadRequest(String),
    #[error("conflict")]
    Conflict(String),
    #[error("payload too large")]
    TooLarge(String),
    #[error("unsupported media type")]
    Unsupported(String),
    #[error("unprocessable input")]
    Unprocessable(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("refusing to serve")]
    Refused(String),
    #[error("service unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl HttpError {
    /// What exactly went wrong (the `detail` of the JSON body).
    pub fn detail(&self) -> String {
        match self {
            HttpError::Unauthorized => "send Authorization: Bearer <token>".into(),
            HttpError::NotFound(d)
            | HttpError::BadRequest(d)
            | HttpError::Conflict(d)
            | HttpError::TooLarge(d)
            | HttpError::Unsupported(d)
            | HttpError::Unprocessable(d)
            | HttpError::Refused(d)
            | HttpError::Unavailable(d)
            | HttpError::Internal(d) => d.clone(),
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Refused(_) | HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let HttpError::Internal(d) = self {
            tracing::error!(detail = %d, "internal error");
        }
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: self.to_string(),
            detail: self.detail(),
        })
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UploadNotFound(_) => HttpError::NotFound(e.to_string()),
            StoreError::Closed => HttpError::Unavailable(e.to_string()),
            other => HttpError::Internal(other.to_string()),
        }
    }
}

impl From<actix::MailboxError> for HttpError {
    fn from(_: actix::MailboxError) -> Self {
        HttpError::Unavailable("the server is shutting down".into())
    }
}

impl From<CancelError> for HttpError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound(_) => HttpError::NotFound(e.to_string()),
            CancelError::AlreadyFinished { .. } => HttpError::Conflict(e.to_string()),
        }
    }
}

impl From<IngestError> for HttpError {
    fn from(e: IngestError) -> Self {
        let detail = e.to_string();
        match e {
            IngestError::UnsupportedFormat { .. } => HttpError::Unsupported(detail),
            IngestError::Empty { .. } => HttpError::BadRequest(detail),
            IngestError::Io { .. } => HttpError::Internal(detail),
            _ => HttpError::Unprocessable(detail),
        }
    }
}

impl From<UploadError> for HttpError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Ingest(i) => i.into(),
            UploadError::Store(s) => s.into(),
            UploadError::NotFound(_) => HttpError::NotFound(e.to_string()),
            UploadError::AlreadyRunning(_)
            | UploadError::AlreadyCompleted(_)
            | UploadError::NotResumable { .. } => HttpError::Conflict(e.to_string()),
            UploadError::ShuttingDown | UploadError::Interrupted => {
                HttpError::Unavailable(e.to_string())
            }
            UploadError::Analyzer(m) => HttpError::Internal(m),
            UploadError::Internal(_) => HttpError::Internal(e.to_string()),
        }
    }
}
