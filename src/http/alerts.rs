//! `GET /api/alerts` and `POST /api/alerts/{alert_id}/ack`: the days a topic
//! or an agent stood out from its own history, and acknowledging them.

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ErrorBody, HttpError};
use crate::alerts::Alert;
use crate::store::actor::{AcknowledgeAlert, ListAlerts};

type Result<T, E = HttpError> = std::result::Result<T, E>;

pub fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(list_alerts).service(acknowledge);
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AlertParams {
    /// First day (UTC, `YYYY-MM-DD`) of the alerts; from the earliest when absent.
    from: Option<chrono::NaiveDate>,
    /// Last day (UTC, `YYYY-MM-DD`), included; to the latest when absent.
    to: Option<chrono::NaiveDate>,
    /// Only the alerts nobody acknowledged yet.
    #[serde(default)]
    open: bool,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Newest day first.
    pub alerts: Vec<Alert>,
}

/// `/api/alerts/{alert_id}/ack`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AlertPath {
    /// The alert's id, as listed.
    #[param(pattern = "^[0-9a-f]{16}$")]
    alert_id: String,
}

/// Days on which a topic or an agent stood out from its own history:
/// more conversations, a larger negative share or a lower satisfaction than
/// both the same weekday of the weeks before and the days just before
/// (`[alerts]` in the configuration). Each is raised once; `conversations`
/// is what `GET /api/conversations?from=<date>&to=<date>&topic=<topic>`
/// (or `agent=`) lists.
#[utoipa::path(params(AlertParams), responses(
    (status = 200, body = AlertList),
    (status = 400, description = "A date that is not `YYYY-MM-DD`.", body = ErrorBody)
))]
#[get("/api/alerts")]
pub async fn list_alerts(
    query: web::Query<AlertParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let q = query.into_inner();
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let alerts = state
        .engine
        .reader()
        .send(ListAlerts {
            from: date(q.from),
            to: date(q.to),
            open: q.open,
        })
        .await??;
    Ok(HttpResponse::Ok().json(AlertList { alerts }))
}

/// Marks an alert acknowledged (again: no change); answers it.
#[utoipa::path(params(AlertPath), responses(
    (status = 200, body = Alert),
    (status = 400, description = "Not an alert id.", body = ErrorBody),
    (status = 404, description = "No such alert.", body = ErrorBody)
))]
#[post("/api/alerts/{alert_id}/ack")]
pub async fn acknowledge(
    path: web::Path<AlertPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = path.into_inner().alert_id;
    if id.len() != 16
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(HttpError::BadRequest(format!(
            "{id:?} is not an alert id (16 hexadecimal digits)"
        )));
    }
    let alert = state
        .engine
        .writer()
        .send(AcknowledgeAlert {
            id: id.clone(),
            now: chrono::Utc::now(),
        })
        .await??
        .ok_or_else(|| HttpError::NotFound(format!("no alert {id}")))?;
    Ok(HttpResponse::Ok().json(alert))
}
