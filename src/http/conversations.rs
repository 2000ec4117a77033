//! `GET /api/conversations`: the conversations behind the insights' numbers,
//! across every completed upload, each counted once as the insights count it
//! (the drill-down of a day, a topic or agent row, a chart bar); with `q`,
//! those whose messages or summary match a search, best first.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;

use super::AppState;
use super::error::{ErrorBody, HttpError};
use crate::access::{Principal, Role};
use crate::model::SentimentLabel;
use crate::search::Query;
use crate::store::DrillPage;
use crate::store::actor::{DrillDown, Search};
use crate::store::stats::{DrillCursor, DrillFilter};

type Result<T, E = HttpError> = std::result::Result<T, E>;

/// Largest page.
const MAX_PAGE: usize = 500;

pub fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(drill_down);
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DrillParams {
    /// First day (UTC, `YYYY-MM-DD`) of the conversations' insights day; from the earliest when absent.
    from: Option<chrono::NaiveDate>,
    /// Last day (UTC, `YYYY-MM-DD`), included; to the latest when absent.
    to: Option<chrono::NaiveDate>,
    /// A topic's name; empty for conversations without one.
    topic: Option<String>,
    /// An agent's name as the export wrote it; empty for conversations no named agent answered.
    agent: Option<String>,
    /// An ISO 639-1 language code (`en`, `ne`); empty where it could not be told.
    language: Option<String>,
    sentiment: Option<SentimentLabel>,
    /// Satisfaction at most this score, 1–5.
    #[param(minimum = 1, maximum = 5)]
    satisfaction_max: Option<u8>,
    /// Only conversations judged resolved (`true`) or not (`false`).
    resolved: Option<bool>,
    /// A search of their messages (autoresponses aside) and summaries:
    /// words in any order (all of them), "a quoted phrase", Nepali in
    /// Devanagari or in Latin letters (`batti chaina` finds `बत्ती छैन`);
    /// best match first, each item with the text that matched (`match`).
    #[param(max_length = 200)]
    q: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next` of the previous page.
    #[param(pattern = r"^(b|s[0-9a-f]{16})\.-?[0-9]{1,9}\.[0-9a-f]{32}\.")]
    cursor: Option<String>,
}

impl DrillParams {
    /// The bounds the document states, enforced; the filter, the search,
    /// the cursor and the page size.
    fn parse(self) -> Result<(DrillFilter, Option<Query>, Option<DrillCursor>, usize)> {
        if let Some(q) = self.q.as_deref().filter(|q| q.chars().count() > 200) {
            return Err(HttpError::BadRequest(format!(
                "q is {} characters long; at most 200",
                q.chars().count()
            )));
        }
        if let Some(s) = self.satisfaction_max.filter(|s| !(1..=5).contains(s)) {
            return Err(HttpError::BadRequest(format!(
                "satisfaction_max must be between 1 and 5, not {s}"
            )));
        }
        let limit = self.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(HttpError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}, not {limit}"
            )));
        }
        let cursor = self
            .cursor
            .map(|c| c.parse::<DrillCursor>())
            .transpose()
            .map_err(|e| HttpError::BadRequest(e.to_string()))?;
        let query = self
            .q
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .map(Query::parse);
        let filter = DrillFilter {
            from: self.from,
            to: self.to,
            topic: self.topic,
            agent: self.agent,
            language: self.language,
            sentiment: self.sentiment,
            satisfaction_max: self.satisfaction_max,
            resolved: self.resolved,
        };
        Ok((filter, query, cursor, limit))
    }
}

/// The conversations the insights count, across every completed upload,
/// each once (a conversation uploaded twice is listed under the upload the
/// insights count it from): newest day first, filtered. With only `from`,
/// `to`, `topic` and `agent`, `total` is the number the insights show for
/// the same filters. With `q`, those matching the search, best first, each
/// with the message (or summary) that matches best. `from` after `to` is an
/// empty range; a `q` with no word in it finds nothing.
#[utoipa::path(params(DrillParams), responses(
    (status = 200, body = DrillPage),
    (status = 400, description = "A bad date, bound or cursor.", body = ErrorBody),
    (status = 403, description = "A viewer's `q` names personal data (a phone number, an e-mail address, an ID): searching for it needs the operator role.", body = ErrorBody)
))]
#[get("/api/conversations")]
pub async fn drill_down(
    query: web::Query<DrillParams>,
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
) -> Result<HttpResponse> {
    let params = query.into_inner();
    // A viewer sees transcripts redacted, so a search must not tell them
    // which conversations hold a number, an address or an ID either.
    let viewer_redactor = if principal.role.allows(Role::Operator) {
        None
    } else {
        Some(state.redactor_for_viewers().await?)
    };
    if let (Some(redactor), Some(q)) = (&viewer_redactor, &params.q)
        && !redactor.session([]).locate(q).is_empty()
    {
        return Err(HttpError::Forbidden(
            "searching for personal data (a phone number, an e-mail address, an ID) \
             needs the operator role"
                .into(),
        ));
    }
    let (filter, search, cursor, limit) = params.parse()?;
    let reader = state.engine.reader();
    let page = match search {
        None => {
            reader
                .send(DrillDown {
                    filter,
                    cursor,
                    limit,
                })
                .await??
        }
        Some(query) => {
            // What is queued to be indexed (an upload completed a moment
            // ago) is built first: the search sees every completed upload.
            if let Err(e) = state.engine.index_now().await {
                tracing::warn!(error = %e, "searching without what is still queued to be indexed");
            }
            // A viewer is shown matching messages redacted, as transcripts.
            reader
                .send(Search {
                    query,
                    filter,
                    cursor,
                    limit,
                    redactor: viewer_redactor,
                })
                .await??
        }
    };
    Ok(HttpResponse::Ok().json(page))
}
