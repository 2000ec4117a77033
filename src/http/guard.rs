//! The guards in front of every route, whether or not a token is set:
//!
//! - **Host allow-list.** Only the loopback names (with the bound port) and
//!   `server.allowed_hosts` are served, so a page whose own name was rebound
//!   to this machine's address (DNS rebinding) is answered 421.
//! - **No cross-site requests.** A state-changing request (anything but
//!   GET/HEAD/OPTIONS/TRACE), or any request for data (every route but the
//!   dashboard's page and assets and `/healthz`: a backup, an export, a
//!   transcript), whose `Origin` is not this server, or whose
//!   `Sec-Fetch-Site` says another site sent it, is answered 403. Raw-body
//!   uploads must carry a content type a browser cannot send cross-site
//!   without a CORS preflight (which this server never grants).
//! - **Response hygiene.** Every answer is `nosniff`; data routes are `no-store`.
//!
//! The decisions are plain functions over header values, tested below;
//! [`protect`] is the actix wiring.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use super::AppState;
use super::error::HttpError;

/// Why a request was refused by a guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("the request has no Host header")]
    MissingHost,
    #[error(
        "this server does not answer to Host {0:?}; add the name to server.allowed_hosts \
         if this is how it is reached"
    )]
    ForeignHost(String),
    #[error(
        "cross-origin request refused: Origin {0:?} is not this server, and other sites may \
         neither change nor fetch anything here"
    )]
    ForeignOrigin(String),
    #[error(
        "cross-site request refused (Sec-Fetch-Site: {0}): other sites may neither change nor \
         fetch anything here"
    )]
    CrossSite(String),
    #[error(
        "a raw upload needs a Content-Type such as text/csv or application/octet-stream \
         (got {0}); web pages of other sites can send the simple types"
    )]
    SimpleContentType(String),
}

impl From<GuardError> for HttpError {
    fn from(e: GuardError) -> Self {
        let detail = e.to_string();
        match e {
            GuardError::MissingHost | GuardError::ForeignHost(_) => HttpError::Misdirected(detail),
            GuardError::ForeignOrigin(_) | GuardError::CrossSite(_) => HttpError::Forbidden(detail),
            GuardError::SimpleContentType(_) => HttpError::Unsupported(detail),
        }
    }
}

/// The loopback names, as they appear in a `Host` header.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Which `Host` headers this server answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The port the server listens on: loopback names must come with it.
    port: u16,
    /// `server.allowed_hosts`: a name, and the port it must come with (any when `None`).
    extra: Vec<(String, Option<u16>)>,
}

impl HostPolicy {
    pub fn new(port: u16, allowed_hosts: &[String]) -> Self {
        let extra = allowed_hosts
            .iter()
            .filter_map(|h| split_authority(h))
            .collect();
        Self { port, extra }
    }

    pub fn check(&self, host: Option<&str>) -> Result<(), GuardError> {
        let raw = host.ok_or(GuardError::MissingHost)?;
        let foreign = || GuardError::ForeignHost(raw.chars().take(200).collect());
        let (name, port) = split_authority(raw).ok_or_else(foreign)?;
        // A Host without a port means the client's default, 80.
        let port_is = |p: u16| port.unwrap_or(80) == p;
        let loopback = LOOPBACK_NAMES.contains(&name.as_str()) && port_is(self.port);
        let listed = self
            .extra
            .iter()
            .any(|(n, p)| *n == name && p.is_none_or(port_is));
        if loopback || listed {
            Ok(())
        } else {
            Err(foreign())
        }
    }
}

/// `name[:port]` → (lower-case name without a trailing dot, port). IPv6
/// literals keep their brackets. `None` when it is not an authority.
fn split_authority(raw: &str) -> Option<(String, Option<u16>)> {
    let raw = raw.trim();
    let (name, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let (name, rest) = raw.split_at(end + 1);
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match raw.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (raw, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'));
    valid.then_some((name, port))
}

/// Methods that change nothing; everything else must come from this server's own pages.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Refuses a request another site sent, when it changes something or asks
/// for data (`path` is a data route, see [`carries_data`]): by
/// `Sec-Fetch-Site` (modern browsers) or by an `Origin` that is not this
/// server's (`host` is the request's `Host`, already allow-listed). Requests
/// with neither header (curl, scripts, the CLI, Prometheus) pass: no browser
/// sends a cross-site request without one of them. A page of another site
/// can thus neither start a backup download (a full copy of the database,
/// and minutes of work) nor embed an export.
pub fn check_cross_site(
    method: &Method,
    path: &str,
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host: Option<&str>,
) -> Result<(), GuardError> {
    if is_safe(method) && !carries_data(path) {
        return Ok(());
    }
    if let Some(site) = fetch_site {
        let site = site.trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return Err(GuardError::CrossSite(site));
        }
    }
    match origin {
        Some(o) if !same_origin(o, host) => {
            Err(GuardError::ForeignOrigin(o.chars().take(200).collect()))
        }
        _ => Ok(()),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the server reached as `host`.
/// Missing ports are the scheme's default; the scheme itself is not compared,
/// since behind a TLS proxy the server cannot know its own, and a page served
/// from this very name and port is this server's.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false; // "null", or garbage
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (Some((o_name, o_port)), Some((h_name, h_port))) =
        (split_authority(authority), host.and_then(split_authority))
    else {
        return false;
    };
    o_name == h_name && o_port.unwrap_or(default_port) == h_port.unwrap_or(default_port)
}

/// Whether a browser may send a body of this content type to another origin
/// without a CORS preflight (the "CORS-safelisted" types, or none at all).
pub fn is_simple_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "" | "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    )
}

/// A raw (non-multipart) upload body must not be one a page of another site could send.
pub fn check_raw_upload(content_type: Option<&str>) -> Result<(), GuardError> {
    if is_simple_content_type(content_type) {
        Err(GuardError::SimpleContentType(match content_type {
            Some(ct) => format!("{:?}", ct.chars().take(100).collect::<String>()),
            None => "none".to_string(),
        }))
    } else {
        Ok(())
    }
}

/// Routes that answer with data (everything but the dashboard's page and assets).
fn is_data_route(path: &str) -> bool {
    path != "/" && !path.starts_with("/assets/")
}

/// Routes another site may not even read from: every data route but
/// `/healthz`, which says "ok" to anyone (links to the dashboard's page
/// from other sites keep working).
fn carries_data(path: &str) -> bool {
    is_data_route(path) && path != "/healthz"
}

/// The request's guards, in order: Host (except `/healthz`, which holds no
/// data and serves load balancers that probe by address), then cross-site.
fn check(req: &ServiceRequest, hosts: Option<&HostPolicy>) -> Result<(), GuardError> {
    let text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST);
    if let Some(hosts) = hosts
        && req.path() != "/healthz"
    {
        hosts.check(host)?;
    }
    check_cross_site(
        req.method(),
        req.path(),
        text(header::ORIGIN),
        text(header::HeaderName::from_static("sec-fetch-site")),
        host,
    )
}

/// The guards as middleware, outermost but for metrics: a refused request
/// never reaches the token check or a handler.
pub async fn protect(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let data_route = is_data_route(req.path());
    let mut res = match check(&req, state.as_ref().map(|s| s.hosts.as_ref())) {
        Err(refused) => {
            tracing::debug!(reason = %refused, path = req.path(), "request refused");
            req.into_response(HttpError::from(refused).error_response())
        }
        // (The request must not be cloned before this call: routing needs it alone.)
        Ok(()) => next.call(req).await?.map_into_boxed_body(),
    };
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if data_route {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "https://evil.example";

    fn policy(extra: &[&str]) -> HostPolicy {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(8080, &extra)
    }

    #[test]
    fn loopback_names_with_the_bound_port_are_served() {
        let p = policy(&[]);
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
            "localhost.:8080",
        ] {
            assert_eq!(p.check(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "localhost:9090",
            "localhost",
            "127.0.0.2:8080",
            "[::2]:8080",
            "localhost:8080:8080",
            "localhost:notaport",
            "user@localhost:8080",
            "",
        ] {
            assert!(
                matches!(p.check(Some(bad)), Err(GuardError::ForeignHost(_))),
                "{bad}"
            );
        }
        assert_eq!(p.check(None), Err(GuardError::MissingHost));
        // On port 80 a browser leaves the port out.
        assert_eq!(HostPolicy::new(80, &[]).check(Some("localhost")), Ok(()));
    }

    #[test]
    fn allowed_hosts_add_names_with_or_without_a_port() {
        let p = policy(&["pp.example", "10.0.0.5:8443", "[fd00::1]"]);
        for ok in [
            "pp.example",
            "pp.example:8080",
            "PP.example:443",
            "10.0.0.5:8443",
            "[fd00::1]:8080",
            "localhost:8080",
        ] {
            assert_eq!(p.check(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "10.0.0.5:8080",
            "10.0.0.5",
            "sub.pp.example",
            "pp.example.evil",
        ] {
            assert!(p.check(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_sites_may_link_to_the_page_and_read_nothing() {
        let host = Some("localhost:8080");
        for path in ["/", "/assets/app.js", "/healthz"] {
            for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
                assert_eq!(
                    check_cross_site(&m, path, Some(EVIL), Some("cross-site"), host),
                    Ok(()),
                    "{m} {path}"
                );
            }
        }
        for path in [
            "/api/backup",
            "/api/uploads/x/export",
            "/api/uploads/x/conversations",
            "/api/uploads/x/conversations/y",
            "/api/audit",
            "/api/uploads",
            "/metrics",
        ] {
            let get = |origin, site| check_cross_site(&Method::GET, path, origin, site, host);
            assert!(
                matches!(get(Some(EVIL), None), Err(GuardError::ForeignOrigin(_))),
                "{path}"
            );
            for site in ["cross-site", "same-site"] {
                assert!(
                    matches!(get(None, Some(site)), Err(GuardError::CrossSite(_))),
                    "{path}"
                );
            }
            // The dashboard's own fetches, a typed URL, curl.
            assert_eq!(get(None, Some("same-origin")), Ok(()), "{path}");
            assert_eq!(get(Some("http://localhost:8080"), None), Ok(()), "{path}");
            assert_eq!(get(None, Some("none")), Ok(()), "{path}");
            assert_eq!(get(None, None), Ok(()), "{path}");
        }
    }

    #[test]
    fn state_changes_from_other_origins_are_refused() {
        let host = Some("localhost:8080");
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            assert!(matches!(
                check_cross_site(&m, "/api/upload", Some(EVIL), None, host),
                Err(GuardError::ForeignOrigin(_))
            ));
        }
        let post =
            |origin, site| check_cross_site(&Method::POST, "/api/upload", origin, site, host);
        for foreign in [
            "null",
            "http://localhost:8081",
            "http://127.0.0.1:8080",
            "http://localhost",
            "file://",
            "http://localhost:8080.evil.example",
        ] {
            assert!(post(Some(foreign), None).is_err(), "{foreign}");
        }
        assert_eq!(post(Some("http://localhost:8080"), None), Ok(()));
        assert_eq!(
            post(Some("http://LOCALHOST:8080"), Some("same-origin")),
            Ok(())
        );
        assert_eq!(post(None, None), Ok(()), "curl and scripts send neither");
        assert_eq!(
            post(None, Some("none")),
            Ok(()),
            "typed into the address bar"
        );
        assert_eq!(post(None, Some("same-origin")), Ok(()));
        for site in ["cross-site", "same-site", "Cross-Site"] {
            assert!(matches!(
                post(None, Some(site)),
                Err(GuardError::CrossSite(_))
            ));
            assert!(post(Some("http://localhost:8080"), Some(site)).is_err());
        }
        // The scheme is not compared (behind a TLS proxy this server cannot
        // know its own): the name and port are this server's, whoever asks.
        assert_eq!(post(Some("https://localhost:8080"), None), Ok(()));
        // A server behind a TLS proxy: the default ports line up.
        assert_eq!(
            check_cross_site(
                &Method::POST,
                "/api/upload",
                Some("https://pp.example"),
                None,
                Some("pp.example")
            ),
            Ok(())
        );
        assert_eq!(
            check_cross_site(
                &Method::POST,
                "/api/upload",
                Some("https://pp.example:443"),
                None,
                Some("pp.example")
            ),
            Ok(())
        );
        assert!(
            check_cross_site(
                &Method::POST,
                "/api/upload",
                Some("http://localhost:8080"),
                None,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn raw_uploads_need_a_content_type_that_forces_a_preflight() {
        for simple in [
            None,
            Some(""),
            Some("text/plain"),
            Some("Text/Plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert!(is_simple_content_type(simple), "{simple:?}");
            assert!(matches!(
                check_raw_upload(simple),
                Err(GuardError::SimpleContentType(_))
            ));
        }
        for preflighted in [
            "text/csv",
            "application/octet-stream",
            "application/json",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ] {
            assert_eq!(check_raw_upload(Some(preflighted)), Ok(()), "{preflighted}");
        }
    }

    #[test]
    fn refusals_map_to_403_421_and_415() {
        use actix_web::ResponseError;
        let status = |e: GuardError| HttpError::from(e).status_code().as_u16();
        assert_eq!(status(GuardError::MissingHost), 421);
        assert_eq!(status(GuardError::ForeignHost("x".into())), 421);
        assert_eq!(status(GuardError::ForeignOrigin("x".into())), 403);
        assert_eq!(status(GuardError::CrossSite("x".into())), 403);
        assert_eq!(status(GuardError::SimpleContentType("x".into())), 415);
    }

    #[test]
    fn dashboard_assets_keep_their_own_caching() {
        assert!(!is_data_route("/"));
        assert!(!is_data_route("/assets/app.js"));
        assert!(is_data_route("/api/uploads"));
        assert!(is_data_route("/metrics"));
    }
}
