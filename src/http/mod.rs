//! The HTTP control endpoint (`powerpulse serve`): uploads, live progress
//! (polling and SSE), cancel, results, summaries, exports, health, metrics,
//! an OpenAPI document, and the dashboard page at `/`.
//!
//! Handlers talk to the engine's actors only (never to redb). Errors become
//! `{"error", "detail"}` JSON in one place ([`error::HttpError`]). Who may
//! call what, and the audit of it, is [`access`]'s.
//! [`serve`] follows mini-redis: it runs until `shutdown` resolves, then
//! stops accepting, lets in-flight requests finish, and shuts the engine
//! down so running uploads reach the store.

pub mod access;
mod alerts;
mod audit;
mod conversations;
mod dashboard;
pub mod error;
pub mod guard;
mod identity;
pub mod limits;
pub mod metrics;
mod openapi;
mod preview;
mod routes;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};

use crate::access::Keyring;
use crate::engine::Engine;
use crate::privacy::Redactor;
pub use error::{ErrorBody, HttpError};
use metrics::HttpMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Arc<HttpMetrics>,
    /// The tokens accepted and the keys the server can prove it holds.
    keyring: Arc<Keyring>,
    /// What a viewer is shown of a transcript: personal data as placeholders.
    redactor: Arc<LazyRedactor>,
    /// The port listened on (in the proof: a relay elsewhere answers for another).
    port: u16,
    /// The `Host` names served.
    hosts: Arc<guard::HostPolicy>,
    /// Caps on concurrent uploads and event streams, and body timeouts.
    pub limits: Arc<limits::Limits>,
}

impl AppState {
    /// The redactor of what viewers read, built on first use (off the
    /// workers: it may take a second).
    pub(crate) async fn redactor_for_viewers(&self) -> Result<Redactor, HttpError> {
        let lazy = self.redactor.clone();
        web::block(move || lazy.get().cloned())
            .await
            .map_err(|e| HttpError::Internal(e.to_string()))?
    }
}

/// The redactor of viewers' transcripts, built by the first request that
/// needs one (loading the phone-number metadata takes a second in a debug
/// build, a fraction of that in release: no server start waits for it, and
/// a server no viewer reads from never pays it).
struct LazyRedactor {
    settings: crate::config::PrivacySettings,
    cell: std::sync::OnceLock<Result<Redactor, String>>,
}

impl LazyRedactor {
    fn new(settings: crate::config::PrivacySettings) -> Self {
        LazyRedactor {
            settings,
            cell: std::sync::OnceLock::new(),
        }
    }

    /// Blocks until it is built.
    fn get(&self) -> Result<&Redactor, HttpError> {
        self.cell
            .get_or_init(|| Redactor::new(&self.settings).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HttpError::Internal(format!("the redactor cannot be built: {e}")))
    }

    /// A transcript as a reader who may not see personal data is shown it:
    /// its messages and its analysis's summary redacted in one session
    /// (blocking: call it off the workers).
    fn redact(
        &self,
        mut detail: crate::store::ConversationDetail,
    ) -> Result<crate::store::ConversationDetail, HttpError> {
        let summary = detail.analysis.as_ref().map(|a| a.summary.as_str());
        let redacted = self.get()?.redact_transcript(&detail.messages, summary);
        detail.messages = redacted.messages;
        if let (Some(analysis), Some(summary)) = (&mut detail.analysis, redacted.summary) {
            analysis.summary = summary;
        }
        detail.redacted = true;
        Ok(detail)
    }
}

/// Refuses a non-loopback address without a token: the API would be open to
/// the network.
pub fn check_bind(addr: &SocketAddr, keyring: &Keyring) -> Result<(), HttpError> {
    if addr.ip().is_loopback() || !keyring.is_open() {
        Ok(())
    } else {
        Err(HttpError::Refused(format!(
            "refusing to listen on {addr} without a token: set server.token or POWERPULSE_TOKEN \
             (or [[server.tokens]]), or bind a loopback address such as 127.0.0.1"
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
/// shuts the engine down. `keyring` holds the tokens accepted (see
/// [`Keyring::new`]); host names, caps and timeouts come from the engine's
/// `[server]` settings.
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    keyring: Keyring,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let server_settings = &engine.settings().server;
    check_bind(&addr, &keyring).map_err(|e| std::io::Error::other(e.detail()))?;
    check_hosts(&addr, &server_settings.allowed_hosts)
        .map_err(|e| std::io::Error::other(e.detail()))?;
    let redactor = Arc::new(LazyRedactor::new(engine.settings().privacy.clone()));
    if keyring.is_open() {
        tracing::warn!(
            "no token is set: anyone who can connect to {addr} may read, export, delete and \
             back up everything (set POWERPULSE_TOKEN, or add tokens with `powerpulse token add`)"
        );
    }
    let limits = Arc::new(limits::Limits::new(server_settings));
    let state = AppState {
        engine: engine.clone(),
        metrics: Arc::new(HttpMetrics::default()),
        keyring: Arc::new(keyring),
        redactor,
        port: addr.port(),
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
    engine.keep_watching();
    engine.keep_index();
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
                    // The last wrapped is the outermost: metrics see every answer,
                    // refusals included; the guards refuse before a token is read.
                    .wrap(from_fn(access::authorize))
                    .wrap(from_fn(guard::protect))
                    .wrap(from_fn(record_metrics))
                    .service(routes::health)
                    .service(dashboard::index)
                    .service(dashboard::asset)
                    .configure(routes::api)
                    .configure(conversations::api)
                    .configure(identity::api)
                    .configure(audit::api)
                    .configure(alerts::api)
                    .default_service(web::to(routes::not_found)),
            );
    }
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
