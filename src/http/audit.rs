//! `GET /api/audit`: the audit log, newest first (admins only; reading it
//! is audited too).

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::error::{ErrorBody, HttpError};
use crate::access::{Action, AuditEntry, AuditFilter};
use crate::store::Page;
use crate::store::actor::ListAudit;

type Result<T, E = HttpError> = std::result::Result<T, E>;

/// Largest page.
const MAX_PAGE: usize = 500;

pub fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(audit);
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this token's entries (its name).
    who: Option<String>,
    action: Option<Action>,
    /// Only entries about this upload.
    upload_id: Option<Uuid>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page: entries older than it.
    cursor: Option<Uuid>,
}

/// Who did what, when, to which upload, and what the server answered:
/// every request that needs the operator or admin role (refused ones
/// included) and every transcript read whole, newest first.
#[utoipa::path(params(AuditQuery), responses(
    (status = 200, body = Page<AuditEntry>),
    (status = 400, description = "A bad query.", body = ErrorBody),
))]
#[get("/api/audit")]
pub async fn audit(
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(HttpError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    let page = state
        .engine
        .reader()
        .send(ListAudit {
            filter: AuditFilter {
                who: q.who,
                action: q.action,
                upload_id: q.upload_id,
            },
            before: q.cursor,
            limit,
        })
        .await??;
    Ok(HttpResponse::Ok().json(page))
}
