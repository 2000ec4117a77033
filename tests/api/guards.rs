//! The HTTP surface's guards: cross-site requests, the Host allow-list, 405s,
//! response headers, and the caps and timeouts that bound the load.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Latency};
use powerpulse::config::Settings;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

const EVIL: &str = "https://evil.example";

fn multipart(csv: Vec<u8>) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(csv).file_name("chats.csv");
    reqwest::multipart::Form::new().part("file", part)
}

async fn uploads(app: &TestApp) -> usize {
    app.get_json("/api/uploads").await.as_array().unwrap().len()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_cannot_change_anything() {
    let app = spawn_app();
    let own_origin = app.address.clone();

    // The "simple" request any page can send with fetch(..., {mode: "no-cors"}).
    let r = app
        .request(Method::POST, "/api/upload?filename=a.csv")
        .header("origin", EVIL)
        .header("content-type", "text/plain")
        .body(export_csv(3, 1))
        .send()
        .await
        .unwrap();
    let e = assert_error(r, 403).await;
    assert!(
        e["detail"].as_str().unwrap().contains("evil.example"),
        "{e}"
    );
    // Without an Origin, a simple content type is still refused for raw bodies.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut rb = app
            .request(Method::POST, "/api/upload?filename=a.csv")
            .body(export_csv(3, 1));
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        let e = assert_error(rb.send().await.unwrap(), 415).await;
        assert!(
            e["detail"].as_str().unwrap().contains("Content-Type"),
            "{e}"
        );
    }
    // A multipart form (which a plain HTML form can post) from another site.
    for site in ["cross-site", "same-site"] {
        let r = app
            .request(Method::POST, "/api/upload")
            .header("sec-fetch-site", site)
            .multipart(multipart(export_csv(3, 1)))
            .send()
            .await
            .unwrap();
        assert_error(r, 403).await;
    }
    let r = app
        .request(Method::POST, "/api/upload")
        .header("origin", "null")
        .multipart(multipart(export_csv(3, 1)))
        .send()
        .await
        .unwrap();
    assert_error(r, 403).await;
    assert_eq!(uploads(&app).await, 0, "nothing was created");

    // The dashboard's own requests pass.
    let r = app
        .request(Method::POST, "/api/upload?filename=a.csv&wait=true")
        .header("origin", &own_origin)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/octet-stream")
        .body(export_csv(3, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .request(Method::POST, "/api/upload")
        .header("sec-fetch-site", "same-origin")
        .multipart(multipart(export_csv(3, 2)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Deleting, cancelling and resuming from another origin.
    for (method, path) in [
        (Method::DELETE, format!("/api/uploads/{id}")),
        (Method::DELETE, format!("/api/progress/{id}")),
        (Method::POST, format!("/api/uploads/{id}/resume")),
    ] {
        let r = app
            .request(method.clone(), &path)
            .header("origin", EVIL)
            .send()
            .await
            .unwrap();
        assert_error(r, 403).await;
        let r = app
            .request(method, &path)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_error(r, 403).await;
    }
    assert_eq!(app.get(&format!("/api/uploads/{id}")).await.status(), 200);

    // Reads of data are refused too (see `leaks`); the page is not, and no
    // answer carries a CORS grant: another site's page cannot read it.
    let r = app
        .request(Method::GET, "/api/uploads")
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_error(r, 403).await;
    let r = app
        .request(Method::GET, "/")
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let text = metrics(&app).await;
    assert!(
        text.contains("powerpulse_http_refused_total{status=\"403\"} 11"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_does_not_open_the_door_to_other_sites() {
    let app = spawn_with(Options {
        token: Some("s3cret".into()),
        ..Default::default()
    });
    let r = app
        .request(Method::POST, "/api/upload?filename=a.csv")
        .header("origin", EVIL)
        .header("content-type", "text/csv")
        .body(export_csv(3, 1))
        .send()
        .await
        .unwrap();
    assert_error(r, 403).await;
    // A refused request is answered before the token is looked at.
    let r = app
        .client
        .delete(app.url("/api/uploads/00000000-0000-0000-0000-000000000001"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_error(r, 403).await;
    let text = metrics(&app).await;
    assert!(
        text.contains("powerpulse_http_refused_total{status=\"403\"} 2"),
        "{text}"
    );
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_error(r, 401).await;
    assert!(
        metrics(&app)
            .await
            .contains("powerpulse_http_refused_total{status=\"401\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_host_names_are_served() {
    let app = spawn_app();
    let port = app.port();
    let with_host = |path: &str, host: &str| {
        app.request(Method::GET, path)
            .header("host", host.to_string())
            .send()
    };
    // DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its name.
    for path in ["/api/uploads", "/", "/metrics", "/api/openapi.json"] {
        let r = with_host(path, &format!("evil.example:{port}"))
            .await
            .unwrap();
        let e = assert_error(r, 421).await;
        assert!(
            e["detail"].as_str().unwrap().contains("allowed_hosts"),
            "{e}"
        );
    }
    for host in [
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "localhost".to_string(),
        format!("localhost.evil.example:{port}"),
    ] {
        assert_error(with_host("/api/uploads", &host).await.unwrap(), 421).await;
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = with_host("/api/uploads", &host).await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // Health answers whatever the name (load balancers probe by address).
    let r = with_host("/healthz", "10.1.2.3:80").await.unwrap();
    assert_eq!(r.status(), 200);
    let text = metrics(&app).await;
    assert!(
        text.contains("powerpulse_http_refused_total{status=\"421\"} 7"),
        "{text}"
    );

    // server.allowed_hosts adds the names an appliance is reached by.
    let mut options = Options::default();
    options.settings.server.allowed_hosts = vec!["pp.example".into(), "10.0.0.5:8443".into()];
    let appliance = spawn_with(options);
    for (host, status) in [
        ("pp.example", 200),
        ("PP.example:443", 200),
        ("10.0.0.5:8443", 200),
        ("10.0.0.5:8080", 421),
        ("other.example", 421),
    ] {
        let r = appliance
            .request(Method::GET, "/api/uploads")
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{host}");
    }
}

#[test]
fn a_public_address_needs_allowed_hosts() {
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(powerpulse::http::check_hosts(&public, &[]).is_err());
    assert!(powerpulse::http::check_hosts(&public, &["pp.example".into()]).is_ok());
    assert!(powerpulse::http::check_hosts(&loopback, &[]).is_ok());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env("POWERPULSE_TOKEN", "t")
        .env_remove("POWERPULSE__SERVER__ALLOWED_HOSTS")
        .env(
            "POWERPULSE_DB",
            tempfile::tempdir().unwrap().path().join("x.redb"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allowed_hosts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_with_allow() {
    let app = spawn_app();
    let id = "00000000-0000-0000-0000-000000000001";
    for (method, path, allow) in [
        ("TRACE", "/api/uploads".to_string(), "GET"),
        ("PUT", format!("/api/uploads/{id}"), "GET, DELETE"),
        ("PATCH", format!("/api/progress/{id}"), "GET, DELETE"),
        ("OPTIONS", "/api/upload".to_string(), "POST"),
        ("GET", "/api/upload".to_string(), "POST"),
        ("GET", format!("/api/uploads/{id}/resume"), "POST"),
        ("POST", "/healthz".to_string(), "GET"),
        ("DELETE", "/".to_string(), "GET"),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.request(m, &path).send().await.unwrap();
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        assert_error(r, 405).await;
    }
    assert_error(
        app.request(Method::PUT, "/no/such/route")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_nosniff_and_data_is_never_cached() {
    let app = spawn_app();
    for path in [
        "/api/uploads",
        "/api/progress",
        "/healthz",
        "/metrics",
        "/api/openapi.json",
        "/api/uploads/not-a-uuid",
        "/no/such/route",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    let page = app.get("/").await;
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let asset = app.get("/assets/app.js").await;
    assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
    assert_ne!(asset.headers()["cache-control"], "no-store");
}

/// A request body the test feeds by hand: chunks go out as they are sent.
fn body_channel() -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    (tx, reqwest::Body::wrap_stream(stream))
}

/// Polls `/metrics` until `line` appears.
async fn wait_for_metric(app: &TestApp, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(app).await;
        if text.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_cap_wait_their_turn_with_429() {
    let mut options = Options::default();
    options.settings.server.max_concurrent_uploads = 1;
    let app = spawn_with(options);
    let csv = export_csv(5, 3);
    let (header, rest) = csv.split_at(csv.iter().position(|b| *b == b'\n').unwrap() + 1);

    // One upload whose body is still arriving holds the only slot.
    let (tx, body) = body_channel();
    tx.send(Ok(header.to_vec())).await.unwrap();
    let slow = app
        .request(Method::POST, "/api/upload?filename=slow.csv")
        .header("content-type", "text/csv");
    let slow = tokio::spawn(slow.body(body).send());
    wait_for_metric(&app, "powerpulse_http_uploads_in_progress 1").await;

    let r = app.upload_raw("second.csv", csv.clone(), false).await;
    assert_eq!(r.headers()["retry-after"], "1");
    let e = assert_error(r, 429).await;
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_uploads")
    );
    let r = app
        .request(Method::POST, "/api/upload")
        .multipart(multipart(csv.clone()))
        .send()
        .await
        .unwrap();
    assert_error(r, 429).await;

    // The slow one finishes; once it is parsed the slot is free again.
    tx.send(Ok(rest.to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap().status(), 202);
    wait_for_metric(&app, "powerpulse_http_uploads_in_progress 0").await;
    assert_eq!(app.upload_raw("third.csv", csv, false).await.status(), 202);
    let text = metrics(&app).await;
    assert!(
        text.contains("powerpulse_http_refused_total{status=\"429\"} 2"),
        "{text}"
    );
    assert!(text.contains("powerpulse_http_limit{limit=\"max_concurrent_uploads\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_uploads_get_202_or_429_never_a_5xx() {
    let app = spawn_app();
    let csv = export_csv(300, 4);
    let sends = (0..40).map(|i| {
        let rb = if i % 2 == 0 {
            app.request(Method::POST, &format!("/api/upload?filename=c{i}.csv"))
                .header("content-type", "text/csv")
                .body(csv.clone())
        } else {
            app.request(Method::POST, "/api/upload")
                .multipart(multipart(csv.clone()))
        };
        rb.send()
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut accepted = Vec::new();
    for r in answers {
        let r = r.unwrap();
        match r.status().as_u16() {
            202 => accepted.push(r.json::<Value>().await.unwrap()["upload_id"].clone()),
            429 => assert!(r.headers().contains_key("retry-after")),
            other => panic!("{other}: {}", r.text().await.unwrap()),
        }
    }
    assert!(!accepted.is_empty());
    for id in accepted {
        let done = app.wait_done(id.as_str().unwrap()).await;
        assert_eq!(done["stage"], "completed", "{done}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_frees_its_slot() {
    let mut options = Options::default();
    options.settings.server.body_timeout_seconds = 1;
    let app = spawn_with(options);
    let (tx, body) = body_channel();
    tx.send(Ok(b"conversation_id,sender,message\n".to_vec()))
        .await
        .unwrap();
    let r = app
        .request(Method::POST, "/api/upload?filename=stalled.csv")
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    let e = assert_error(r, 408).await;
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("body_timeout_seconds")
    );
    drop(tx);
    wait_for_metric(&app, "powerpulse_http_uploads_in_progress 0").await;
    let text = metrics(&app).await;
    assert!(
        text.contains("powerpulse_http_refused_total{status=\"408\"} 1"),
        "{text}"
    );
    assert_eq!(uploads(&app).await, 0);
    let spooled = std::fs::read_dir(app.dir.path().join("api.redb.spool"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spooled, 0, "the partial file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_headers_is_cut_off() {
    let mut options = Options::default();
    options.settings.server.header_timeout_seconds = 1;
    let app = spawn_with(options);
    let port = app.port();
    let answer = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The headers never end.
        write!(
            socket,
            "GET /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        )
        .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut answer = Vec::new();
        // Ends when the server closes the connection.
        socket.read_to_end(&mut answer).unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped() {
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(500)),
        ..Default::default()
    })
    .unwrap();
    let app = llm_app(&server, |s| s.server.max_sse_subscribers = 1);
    let r = app.upload_raw("live.csv", export_csv(40, 8), false).await;
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = format!("/api/progress/{id}/events");
    let first = app.get(&events).await;
    assert_eq!(first.status(), 200);
    let second = app.get(&events).await;
    assert_eq!(second.headers()["retry-after"], "1");
    let e = assert_error(second, 429).await;
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("max_sse_subscribers")
    );
    assert!(
        metrics(&app)
            .await
            .contains("powerpulse_http_sse_subscribers 1")
    );
    // Cancelling ends the first stream with the final state and frees its slot.
    assert_eq!(
        app.delete(&format!("/api/progress/{id}")).await.status(),
        202
    );
    let seen = read_events(first).await;
    assert_eq!(seen.last().unwrap()["stage"], "cancelled");
    wait_for_metric(&app, "powerpulse_http_sse_subscribers 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_event_stream_is_closed() {
    // Each LLM answer takes far longer than the idle timeout: the stream
    // sees no change for a while and is closed before the upload ends.
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_secs(5)),
        ..Default::default()
    })
    .unwrap();
    let app = llm_app(&server, |s| s.server.sse_idle_timeout_seconds = 1);
    let r = app.upload_raw("idle.csv", export_csv(3, 9), false).await;
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = read_events(app.get(&format!("/api/progress/{id}/events")).await).await;
    let last = seen.last().unwrap();
    assert_ne!(last["stage"], "completed", "closed early: {last}");
    assert_ne!(last["stage"], "cancelled", "{last}");
    assert_eq!(
        app.delete(&format!("/api/progress/{id}")).await.status(),
        202
    );
    assert_eq!(app.wait_done(&id).await["stage"], "cancelled");
}

#[test]
fn server_limits_are_validated_by_name() {
    let load = |pairs: &[(&str, &str)]| {
        Settings::load_with_env(
            Some(std::path::Path::new("config.toml")),
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    };
    let s = load(&[(
        "POWERPULSE__SERVER__ALLOWED_HOSTS",
        r#"["pp.example", "10.0.0.5:8443"]"#,
    )])
    .unwrap();
    assert_eq!(s.server.allowed_hosts, ["pp.example", "10.0.0.5:8443"]);
    assert_eq!(s.server.max_concurrent_uploads, 8);
    for (key, value) in [
        ("POWERPULSE__SERVER__MAX_CONCURRENT_UPLOADS", "0"),
        ("POWERPULSE__SERVER__BODY_TIMEOUT_SECONDS", "0"),
        (
            "POWERPULSE__SERVER__ALLOWED_HOSTS",
            r#"["https://pp.example/"]"#,
        ),
    ] {
        let e = load(&[(key, value)]).unwrap_err().to_string();
        let name = key
            .trim_start_matches("POWERPULSE__SERVER__")
            .to_ascii_lowercase();
        assert!(e.contains(&format!("server.{name}")), "{e}");
    }
}
