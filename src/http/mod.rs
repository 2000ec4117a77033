//! The HTTP control endpoint (`powerpulse serve`): uploads, live progress
//! (polling and SSE), cancel, results, summaries, exports, health, metrics,
//! an OpenAPI document, and the dashboard page at `/`.
//!
//! Handlers talk to the engine's actors only (never to redb). Errors become
//! `{"error", "detail"}` JSON in one place ([`error::HttpError`]).
//! [`serve`] follows mini-redis: it runs until `shutdown` resolves, then
//! stops accepting, lets in-flight requests finish, and shuts the engine
//! down so running uploads reach the store.

mod conversations;
mod dashboard;
pub mod error;
pub mod guard;
pub mod limits;
pub mod metrics;
mod openapi;
mod routes;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, ResponseError, web};

use crate::engine::Engine;
pub use error::{ErrorBody, HttpError};
use metrics::HttpMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Arc<HttpMetrics>,
    /// `blake3` of the bearer token, when one is required (compared in constant time).
    token_hash: Option<blake3::Hash>,
    /// The `Host` names served.
    hosts: Arc<guard::HostPolicy>,
    /// Caps on concurrent uploads and event streams, and body timeouts.
    pub limits: Arc<limits::Limits>,
}

/// Refuses a non-loopback address without a token: the API would be open to
/// the network.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), HttpError> {
    if addr.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(HttpError::Refused(format!(
            "refusing to listen on {addr} without a token: set server.token or POWERPULSE_TOKEN, \
             or bind a loopback address such as 127.0.0.1"
        )))
    }
}

/// Refuses a non-loopback address without `server.allowed_hosts`: every
/// request would carry a name that is not a loopback one, and be refused.
pub fn check_hosts(addr: &SocketAddr, allowed_hosts: &[String]) -> Result<(), HttpError> {
    if addr.ip().is_loopback() || !allowed_hosts.is_empty() {
        Ok(())
    } else {
        Err(HttpError::Refused(format!(
            "refusing to listen on {addr} without server.allowed_hosts: list the names \
             (or addresses) this server is reached by, e.g. [\"pp.example\"]"
        )))
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then drains and
/// shuts the engine down. Host names, caps and timeouts come from the
/// engine's `[server]` settings.
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let server_settings = &engine.settings().server;
    check_bind(&addr, token.as_deref()).map_err(|e| std::io::Error::other(e.detail()))?;
    check_hosts(&addr, &server_settings.allowed_hosts)
        .map_err(|e| std::io::Error::other(e.detail()))?;
    let limits = Arc::new(limits::Limits::new(server_settings));
    let state = AppState {
        engine: engine.clone(),
        metrics: Arc::new(HttpMetrics::default()),
        token_hash: token
            .filter(|t| !t.is_empty())
            .map(|t| blake3::hash(t.as_bytes())),
        hosts: Arc::new(guard::HostPolicy::new(
            addr.port(),
            &server_settings.allowed_hosts,
        )),
        limits: limits.clone(),
    };
    let server = HttpServer::new(move || App::new().configure(configure(state.clone())))
        .client_request_timeout(limits.header_timeout)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(30)
        .run();
    let handle = server.handle();
    tracing::info!(%addr, "serving");
    let resumed = engine.resume_unfinished().await;
    match resumed {
        Ok(tickets) if !tickets.is_empty() => {
            tracing::info!(uploads = tickets.len(), "resumed unfinished uploads")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not resume unfinished uploads"),
    }
    engine.keep_retention();
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = shutdown => {
            tracing::info!("shutting down: no new requests, finishing in-flight ones");
            // The server future must keep running to carry out the stop.
            let (_, result) = tokio::join!(handle.stop(true), &mut server);
            result
        }
    };
    engine.shutdown().await;
    tracing::info!("stopped");
    result
}

/// The whole application: routes, extractor error handlers, guards, auth, metrics.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let json_error = |e: actix_web::error::JsonPayloadError, _: &actix_web::HttpRequest| {
            HttpError::BadRequest(e.to_string()).into()
        };
        let query_error = |e: actix_web::error::QueryPayloadError, _: &actix_web::HttpRequest| {
            HttpError::BadRequest(e.to_string()).into()
        };
        let path_error = |e: actix_web::error::PathError, _: &actix_web::HttpRequest| {
            HttpError::BadRequest(e.to_string()).into()
        };
        cfg.app_data(web::Data::new(state))
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .service(
                web::scope("")
                    // Outermost first: metrics see every answer, refusals included.
                    .wrap(from_fn(require_token_unless_open))
                    .wrap(from_fn(guard::protect))
                    .wrap(from_fn(record_metrics))
                    .service(routes::health)
                    .service(dashboard::index)
                    .service(dashboard::asset)
                    .configure(routes::api)
                    .configure(conversations::api)
                    .default_service(web::to(routes::not_found)),
            );
    }
}

/// Routes open without the token: health, and the dashboard's page and
/// assets (they hold no data; the page's API calls carry the token).
fn is_open_route(path: &str) -> bool {
    path == "/healthz" || path == "/" || path.starts_with("/assets/")
}

/// Answers 401 itself (rather than failing the chain) so that the layers
/// around it see, count and decorate the answer.
async fn require_token_unless_open(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !is_open_route(req.path())
        && let Err(e) = check_token(&req)
    {
        return Ok(req.into_response(e.error_response()).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Every route but the open ones needs the bearer token when one is set.
fn check_token(req: &ServiceRequest) -> Result<(), HttpError> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.token_hash);
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| blake3::hash(t.trim().as_bytes()));
        // blake3::Hash compares in constant time.
        if given != Some(expected) {
            return Err(HttpError::Unauthorized);
        }
    }
    Ok(())
}

async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    // Both labels come from closed sets (a made-up method or path is
    // `other`): every series is kept for good, so none may be the client's.
    let method = metrics::method_label(req.method());
    let route = req.match_pattern().unwrap_or_else(|| "other".to_string());
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(res) => res.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        metrics.observe(method, &route, status.as_u16(), started.elapsed());
    }
    result
}
