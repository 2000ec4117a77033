//! The dashboard: one HTML page, a script and a stylesheet, embedded in the
//! binary at build time. It calls the same JSON API as everyone else (with
//! the bearer token when the server wants one) and loads nothing from
//! anywhere but this server.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// A fingerprint of the assets: the page asks for `?v=<this>`, so those
/// responses may be cached for good and a new build is never served stale.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = blake3::Hasher::new();
    h.update(SCRIPT.as_bytes());
    h.update(STYLE.as_bytes());
    h.finalize().to_hex()[..12].to_string()
});

static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("{{version}}", &VERSION));

/// Only this server: no CDN, no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

#[get("/")]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(PAGE.as_str())
}

#[get("/assets/{name}")]
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let (body, content_type) = match name.as_str() {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return HttpResponse::NotFound().json(super::ErrorBody {
                error: "not found".into(),
                detail: format!("no asset {name:?}"),
            });
        }
    };
    let current = req
        .query_string()
        .split('&')
        .any(|kv| kv.strip_prefix("v=") == Some(VERSION.as_str()));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_points_at_versioned_assets_and_nothing_external() {
        assert!(PAGE.contains(&format!("/assets/app.js?v={}", *VERSION)));
        assert!(!PAGE.contains("{{"));
        for text in [INDEX, SCRIPT, STYLE] {
            // The SVG namespace is a name, not a request.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no external URLs"
            );
        }
    }
}
