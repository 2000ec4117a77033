//! Who may call which route, and the audit of what they did.
//!
//! [`POLICY`] names, for every route, the role its caller needs and the
//! action it is audited as; [`authorize`] enforces it (401 without a known
//! token, 403 for a role too low) and records the audit entry once the
//! handler has answered, before the answer leaves. The OpenAPI document
//! states the same table (`x-required-role`), so the two cannot disagree.
//! A route the table does not name is admins' only: forgetting its line
//! closes it rather than opening it.
//!
//! A server without tokens (`Keyring::is_open`) treats every caller as the
//! anonymous admin: the audit still says what was done.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use uuid::Uuid;

use super::AppState;
use super::error::HttpError;
use crate::access::{Action, AuditEntry, Principal, Role};
use crate::store::actor::PutAudit;
use Role::{Admin, Operator, Viewer};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token: it holds no data.
    Open,
    /// A token of at least `role`; audited as `action`, when it has one,
    /// for callers of the operator role and above (and for refused calls).
    Token { role: Role, action: Option<Action> },
}

const fn needs(role: Role, action: Option<Action>) -> Access {
    Access::Token { role, action }
}

/// Every route: method, path template, what it needs.
pub const POLICY: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Open),
    ("GET", "/", Access::Open),
    ("GET", "/assets/{name}", Access::Open),
    ("GET", "/api/proof", Access::Open),
    ("GET", "/api/whoami", needs(Viewer, None)),
    ("GET", "/api/openapi.json", needs(Viewer, None)),
    ("GET", "/metrics", needs(Viewer, None)),
    ("GET", "/api/progress", needs(Viewer, None)),
    ("GET", "/api/progress/{upload_id}", needs(Viewer, None)),
    (
        "GET",
        "/api/progress/{upload_id}/events",
        needs(Viewer, None),
    ),
    ("GET", "/api/uploads", needs(Viewer, None)),
    ("GET", "/api/uploads/{upload_id}", needs(Viewer, None)),
    (
        "GET",
        "/api/uploads/{upload_id}/summary",
        needs(Viewer, None),
    ),
    (
        "GET",
        "/api/uploads/{upload_id}/conversations",
        needs(Viewer, None),
    ),
    (
        "GET",
        "/api/uploads/{upload_id}/conversations/{conversation_id}",
        // Whole for operators (audited), redacted for viewers.
        needs(Viewer, Some(Action::Transcript)),
    ),
    (
        "GET",
        "/api/uploads/{upload_id}/export",
        needs(Viewer, None),
    ),
    ("GET", "/api/insights", needs(Viewer, None)),
    ("GET", "/api/conversations", needs(Viewer, None)),
    ("GET", "/api/alerts", needs(Viewer, None)),
    (
        "POST",
        "/api/alerts/{alert_id}/ack",
        needs(Operator, Some(Action::AcknowledgeAlert)),
    ),
    ("POST", "/api/upload", needs(Operator, Some(Action::Upload))),
    (
        "POST",
        "/api/estimate",
        needs(Operator, Some(Action::Estimate)),
    ),
    (
        "POST",
        "/api/preview",
        needs(Operator, Some(Action::Preview)),
    ),
    (
        "DELETE",
        "/api/progress/{upload_id}",
        needs(Operator, Some(Action::Cancel)),
    ),
    (
        "POST",
        "/api/uploads/{upload_id}/resume",
        needs(Operator, Some(Action::Resume)),
    ),
    (
        "DELETE",
        "/api/uploads/{upload_id}",
        needs(Admin, Some(Action::Delete)),
    ),
    ("GET", "/api/backup", needs(Admin, Some(Action::Backup))),
    ("GET", "/api/audit", needs(Admin, Some(Action::ReadAudit))),
];

/// What `method` on the route `template` needs; `None` for a route the
/// table does not know (an unmatched path: a token is enough to be told
/// 404 or 405).
pub fn access_of(method: &str, template: &str) -> Option<Access> {
    // HEAD is GET without the body.
    let method = if method == "HEAD" { "GET" } else { method };
    POLICY
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|(_, _, access)| *access)
}

/// What a request needs, by its method and the route it matched: the
/// table's line. A route the table does not name at all (served without
/// its line: a bug) needs an admin, so that it stays closed until its line
/// says who may call it. An unmatched path, or a method its route does not
/// serve, needs any token: it is told 404 or 405.
fn required(method: &str, pattern: Option<&str>) -> Option<Access> {
    let pattern = pattern?;
    access_of(method, pattern).or_else(|| {
        let named = POLICY.iter().any(|(_, t, _)| *t == pattern);
        (!named).then(|| {
            tracing::error!(
                route = pattern,
                "a route missing from access::POLICY: admins only"
            );
            needs(Admin, None)
        })
    })
}

/// What a handler adds to its answer for the audit entry, when the request
/// alone does not say it (the id of a new upload, the file's name).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub upload_id: Option<Uuid>,
    pub target: Option<String>,
}

/// Whether an allowed or refused call of `access` by `who` is audited, as what.
fn audited(access: Access, who: &Principal, refused: bool) -> Option<Action> {
    match access {
        Access::Token {
            action: Some(action),
            ..
        } if refused || who.role.allows(Operator) => Some(action),
        _ => None,
    }
}

fn bearer(req: &ServiceRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The middleware: authenticates (401), authorizes by [`POLICY`] (403),
/// hands the handler its [`Principal`], and records the audit entry. It
/// answers refusals itself (rather than failing the chain) so that the
/// layers around it see, count and decorate them.
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(HttpError::Internal("no application state".into()).into());
    };
    let pattern = req.match_pattern();
    let access = required(req.method().as_str(), pattern.as_deref());
    if access == Some(Access::Open) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let principal = match state.keyring.authenticate(bearer(&req)) {
        Ok(p) => p,
        Err(_) => {
            let refused = HttpError::Unauthorized.error_response();
            return Ok(req.into_response(refused).map_into_right_body());
        }
    };
    let Some(access @ Access::Token { role: needed, .. }) = access else {
        req.extensions_mut().insert(principal);
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let refused = !principal.role.allows(needed);
    let action = audited(access, &principal, refused);
    // The path's parameters are parsed when the route is, after this layer:
    // a refused request's are read off its path.
    let raw_params = pattern
        .as_deref()
        .map(|p| path_params(p, req.path()))
        .unwrap_or_default();
    let response = if refused {
        let detail = format!(
            "the token {:?} has the {} role; {} {} needs {} or above",
            principal.name,
            principal.role,
            req.method(),
            pattern.as_deref().unwrap_or(req.path()),
            needed
        );
        let answer = HttpError::Forbidden(detail).error_response();
        req.into_response(answer).map_into_right_body()
    } else {
        req.extensions_mut().insert(principal.clone());
        next.call(req).await?.map_into_left_body()
    };
    if let Some(action) = action {
        let note = response
            .response()
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        let routed = response.request().match_info();
        let param = |name: &str| {
            routed.get(name).map(str::to_string).or_else(|| {
                raw_params
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            })
        };
        let path_upload = param("upload_id").and_then(|id| Uuid::parse_str(&id).ok());
        let path_target = param("conversation_id").or_else(|| param("alert_id"));
        let entry = AuditEntry {
            id: Uuid::now_v7(),
            at: chrono::Utc::now(),
            who: principal.name,
            role: principal.role,
            action,
            upload_id: note.upload_id.or(path_upload),
            target: note.target.or(path_target),
            status: response.status().as_u16(),
        };
        match state.engine.writer().send(PutAudit(entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, %action, "could not record an audit entry"),
            Err(_) => tracing::warn!(%action, "not audited: the store is shutting down"),
        }
    }
    Ok(response)
}

/// The `{name}` segments of `template`, as they appear in `path`.
fn path_params(template: &str, path: &str) -> Vec<(String, String)> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, p)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            Some((name.to_string(), p.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_route_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, t, _) in POLICY {
            assert!(["GET", "POST", "DELETE"].contains(m), "{m}");
            assert!(seen.insert((m, t)), "{m} {t} twice");
        }
    }

    #[test]
    fn parameters_are_read_off_a_path() {
        assert_eq!(
            path_params(
                "/api/uploads/{upload_id}/conversations/{conversation_id}",
                "/api/uploads/u1/conversations/c%201"
            ),
            [
                ("upload_id".to_string(), "u1".to_string()),
                ("conversation_id".to_string(), "c%201".to_string())
            ]
        );
        assert!(path_params("/api/backup", "/api/backup").is_empty());
    }

    #[test]
    fn roles_grow_and_risky_actions_are_audited() {
        let get = |t| access_of("GET", t).unwrap();
        assert_eq!(get("/healthz"), Access::Open);
        assert_eq!(access_of("HEAD", "/api/uploads"), Some(needs(Viewer, None)));
        assert_eq!(access_of("PUT", "/api/uploads"), None);
        assert_eq!(
            access_of("DELETE", "/api/uploads/{upload_id}"),
            Some(needs(Admin, Some(Action::Delete)))
        );
        let who = |role| Principal {
            name: "x".into(),
            role,
        };
        let transcript = get("/api/uploads/{upload_id}/conversations/{conversation_id}");
        // A viewer reads it redacted: not audited; an operator whole: audited.
        assert_eq!(audited(transcript, &who(Viewer), false), None);
        assert_eq!(
            audited(transcript, &who(Operator), false),
            Some(Action::Transcript)
        );
        let delete = access_of("DELETE", "/api/uploads/{upload_id}").unwrap();
        assert_eq!(audited(delete, &who(Admin), false), Some(Action::Delete));
        // Refused attempts are audited too.
        assert_eq!(audited(delete, &who(Viewer), true), Some(Action::Delete));
        assert_eq!(audited(get("/api/uploads"), &who(Admin), false), None);
    }

    #[test]
    fn a_route_the_table_does_not_name_is_for_admins() {
        assert_eq!(
            required("GET", Some("/api/uploads")),
            Some(needs(Viewer, None))
        );
        // Served without its line in the table: closed but to admins.
        assert_eq!(
            required("POST", Some("/api/new-thing/{id}")),
            Some(needs(Admin, None))
        );
        // A method the route does not serve (405), an unmatched path (404).
        assert_eq!(required("PUT", Some("/api/uploads")), None);
        assert_eq!(required("GET", None), None);
    }
}
