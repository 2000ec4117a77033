//! Every HTTP error, mapped to a status code and a JSON body in one place.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::analyze::FatalKind;
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
    /// A cross-site request to a state-changing route.
    #[error("forbidden")]
    Forbidden(String),
    /// A `Host` this server does not answer to (DNS rebinding, a stray proxy).
    #[error("misdirected request")]
    Misdirected(String),
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods the path has, for the `Allow` header.
        allow: String,
        detail: String,
    },
    /// A client too slow to send its request.
    #[error("request timeout")]
    Timeout(String),
    /// A cap on concurrent work is reached; retry after `retry_after` seconds.
    #[error("too many requests")]
    TooManyRequests { detail: String, retry_after: u64 },
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
            HttpError::MethodNotAllowed { detail, .. }
            | HttpError::TooManyRequests { detail, .. } => detail.clone(),
            HttpError::NotFound(d)
            | HttpError::BadRequest(d)
            | HttpError::Conflict(d)
            | HttpError::TooLarge(d)
            | HttpError::Unsupported(d)
            | HttpError::Unprocessable(d)
            | HttpError::Forbidden(d)
            | HttpError::Misdirected(d)
            | HttpError::Timeout(d)
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
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            HttpError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            HttpError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Refused(_) | HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let HttpError::Internal(d) = self {
            tracing::error!(detail = %d, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            HttpError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            HttpError::TooManyRequests { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
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
            UploadError::AnalyzerStopped {
                kind: FatalKind::ShuttingDown,
                detail,
            } => HttpError::Unavailable(detail),
            UploadError::AnalyzerStopped { detail, .. } => HttpError::Internal(detail),
            UploadError::Internal(_) => HttpError::Internal(e.to_string()),
        }
    }
}
