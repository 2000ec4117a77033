use serde_json::Value;

use powerpulse::access::{Credential, Keyring, Role, TokenHash};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_both_ways_poll_list_filter_paginate_export() {
    let app = spawn_app();
    assert_eq!(app.get_json("/healthz").await["status"], "ok");

    // Multipart, answered at once.
    let r = app.upload_form("chats.csv", export_csv(120, 1)).await;
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.unwrap();
    let id = accepted["upload_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["status_url"], format!("/api/progress/{id}"));
    assert_eq!(accepted["filename"], "chats.csv");
    let done = app.wait_done(&id).await;
    assert_eq!(done["stage"], "completed");
    assert_eq!(done["total_conversations"], 120);
    assert_eq!(done["processed"], 120);
    assert_eq!(done["percent"], 100.0);
    assert!(done["autoresponses_filtered"].as_u64().unwrap() > 0);

    // Raw body with ?wait=true: the original service's response shape.
    let r = app.upload_raw("more.json", {
        let rows: Vec<Value> = serde_json::from_slice::<Vec<Value>>(&serde_json::to_vec(
            &[serde_json::json!({"chat": "x1", "role": "user", "text": "Thanks, the power is back!"})],
        ).unwrap()).unwrap();
        serde_json::to_vec(&rows).unwrap()
    }, true).await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    for key in [
        "success",
        "message",
        "conversations_processed",
        "messages_processed",
        "processing_time_seconds",
        "upload_id",
    ] {
        assert!(s.get(key).is_some(), "{key} missing: {s}");
    }
    assert_eq!(s["success"], true);
    assert_eq!(s["conversations_processed"], 1);

    let uploads = app.get_json("/api/uploads").await;
    assert_eq!(uploads.as_array().unwrap().len(), 2);
    let record = app.get_json(&format!("/api/uploads/{id}")).await;
    assert_eq!(record["counts"]["conversations"], 120);

    // Pagination visits every conversation exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/uploads/{id}/conversations?limit=25&cursor={c}"),
            None => format!("/api/uploads/{id}/conversations?limit=25"),
        };
        let page = app.get_json(&path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 25);
        seen.extend(
            items
                .iter()
                .map(|i| i["conversation_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (120, 120));

    // Filters.
    let negative = app
        .get_json(&format!(
            "/api/uploads/{id}/conversations?sentiment=negative&limit=500"
        ))
        .await;
    let items = negative["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["analysis"]["sentiment"]["label"] == "negative")
    );
    let happy = app
        .get_json(&format!(
            "/api/uploads/{id}/conversations?min_satisfaction=4&limit=500"
        ))
        .await;
    assert!(
        happy["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["analysis"]["satisfaction"]["score"].as_u64().unwrap() >= 4)
    );

    // One conversation, with its messages and autoresponse flags.
    let first = &seen[0];
    let detail = app
        .get_json(&format!("/api/uploads/{id}/conversations/{first}"))
        .await;
    assert!(detail["messages"].as_array().unwrap().len() >= 3);
    assert!(detail["analysis"]["summary"].is_string());

    // Summary.
    let summary = app.get_json(&format!("/api/uploads/{id}/summary")).await;
    let total: u64 = ["positive", "neutral", "negative"]
        .iter()
        .map(|k| summary["sentiment"][k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 120);
    assert_eq!(
        summary["satisfaction_histogram"].as_array().unwrap().len(),
        5
    );

    // Export: same rows as the CLI, in each format.
    let r = app
        .get(&format!("/api/uploads/{id}/export?format=csv"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("chats-results.csv")
    );
    let text = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        powerpulse::export::CSV_HEADER
    );
    assert_eq!(reader.records().count(), 120);
    let json: Value = app
        .get(&format!("/api/uploads/{id}/export?format=json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 120);
    let jsonl = app
        .get(&format!("/api/uploads/{id}/export?format=jsonl"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(jsonl.lines().count(), 120);
    // Redacted: the same rows, agents as pseudonyms, and it says so.
    let r = app
        .get(&format!(
            "/api/uploads/{id}/export?format=jsonl&redact=true"
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-powerpulse-redacted"], "true");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("chats-results-redacted.jsonl")
    );
    let redacted = r.text().await.unwrap();
    assert_eq!(redacted.lines().count(), 120);
    let agents: std::collections::BTreeSet<String> = jsonl
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["agent"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(!agents.is_empty());
    for agent in &agents {
        assert!(!redacted.contains(agent.as_str()), "{agent}");
    }
    assert!(redacted.contains("\"agent\":\"<AGENT_1>\""), "{redacted}");

    // Delete.
    assert_eq!(
        app.delete(&format!("/api/uploads/{id}")).await.status(),
        204
    );
    assert_error(app.get(&format!("/api/uploads/{id}")).await, 404).await;
    assert_error(app.delete(&format!("/api/uploads/{id}")).await, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_right_status() {
    let mut options = Options::default();
    options.settings.ingest.max_upload_bytes = 10_000;
    let app = spawn_with(options);
    let unknown = "00000000-0000-0000-0000-000000000001";
    assert_error(app.get(&format!("/api/progress/{unknown}")).await, 404).await;
    assert_error(
        app.get(&format!("/api/uploads/{unknown}/summary")).await,
        404,
    )
    .await;
    assert_error(app.get("/api/progress/not-a-uuid").await, 400).await;
    assert_error(app.get("/no/such/route").await, 404).await;
    let e = assert_error(
        app.upload_raw("big.csv", vec![b'a'; 20_000], false).await,
        413,
    )
    .await;
    assert!(e["detail"].as_str().unwrap().contains("max_upload_bytes"));
    let e = assert_error(
        app.upload_raw("fake.xlsx", b"not a zip".to_vec(), false)
            .await,
        422,
    )
    .await;
    assert!(e["detail"].as_str().unwrap().contains("fake.xlsx"), "{e}");
    assert_error(app.upload_raw("empty.csv", Vec::new(), false).await, 400).await;
    assert_error(
        app.upload_raw("sheet.xls", b"whatever".to_vec(), false)
            .await,
        415,
    )
    .await;
    let r = app
        .client
        .post(app.url("/api/upload"))
        .header("content-type", "text/csv")
        .body("no filename")
        .send()
        .await
        .unwrap();
    assert_error(r, 400).await;
    assert_error(app.upload_raw("", b"a,b\n".to_vec(), false).await, 400).await;
    for bad in [
        "limit=0",
        "limit=501",
        "min_satisfaction=0",
        "max_satisfaction=6",
    ] {
        let path = format!("/api/uploads/{unknown}/conversations?{bad}");
        assert_error(app.get(&path).await, 400).await;
    }
    let e = assert_error(app.get("/api/uploads/x/export?format=pdf").await, 400).await;
    assert!(e["detail"].is_string());

    // Cancelling a finished upload is a conflict.
    let r = app.upload_raw("ok.csv", export_csv(3, 2), true).await;
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(app.delete(&format!("/api/progress/{id}")).await, 409).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_api_route_but_health() {
    let app = spawn_with(Options {
        token: Some("s3cret-token".into()),
        ..Default::default()
    });
    let anonymous = app.client.clone();
    for path in [
        "/api/uploads",
        "/api/progress",
        "/metrics",
        "/api/openapi.json",
    ] {
        let r = anonymous.get(app.url(path)).send().await.unwrap();
        assert_error(r, 401).await;
    }
    let r = anonymous
        .get(app.url("/api/uploads"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_error(r, 401).await;
    assert_eq!(
        anonymous
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.get("/api/uploads").await.status(), 200);

    let open = spawn_app();
    assert_eq!(open.get("/api/uploads").await.status(), 200);
}

#[test]
fn a_public_address_needs_a_token() {
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let ring = |token| Keyring::new(token, &[]);
    assert!(powerpulse::http::check_bind(&public, &ring(None)).is_err());
    assert!(powerpulse::http::check_bind(&public, &ring(Some(""))).is_err());
    assert!(powerpulse::http::check_bind(&public, &ring(Some("t"))).is_ok());
    assert!(powerpulse::http::check_bind(&loopback, &ring(None)).is_ok());
    // A named token is a token too.
    let named = Keyring::new(
        None,
        &[Credential {
            name: "ci".into(),
            role: Role::Operator,
            hash: TokenHash::of("pp_x"),
        }],
    );
    assert!(powerpulse::http::check_bind(&public, &named).is_ok());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env_remove("POWERPULSE_TOKEN")
        .env(
            "POWERPULSE_DB",
            tempfile::tempdir().unwrap().path().join("x.redb"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_openapi() {
    let app = spawn_app();
    let r = app.upload_raw("m.csv", export_csv(10, 3), true).await;
    assert_eq!(r.status(), 200);
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("powerpulse_uploads{status=\"completed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("powerpulse_conversations_total{outcome=\"analyzed\"} 10"),
        "{text}"
    );
    assert!(text.contains("powerpulse_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/upload\",status=\"200\""), "{text}");

    let doc = app.get("/api/openapi.json").await.text().await.unwrap();
    let spec = oas3::from_json(&doc).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);
    let paths = spec.paths.expect("paths");
    for path in [
        "/api/upload",
        "/api/progress",
        "/api/progress/{upload_id}",
        "/api/progress/{upload_id}/events",
        "/api/uploads",
        "/api/uploads/{upload_id}",
        "/api/uploads/{upload_id}/conversations",
        "/api/uploads/{upload_id}/conversations/{conversation_id}",
        "/api/uploads/{upload_id}/summary",
        "/api/uploads/{upload_id}/export",
        "/api/uploads/{upload_id}/resume",
        "/healthz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_streams_a_snapshot_that_opens_as_the_same_database() {
    let app = spawn_app();
    let r = app.upload_raw("a.csv", export_csv(30, 3), true).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/api/backup").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["x-powerpulse-uploads"], "1");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let bytes = r.bytes().await.unwrap();
    let listed = app.get_json("/api/uploads").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restored.redb");
    std::fs::write(&path, &bytes).unwrap();
    let restored = powerpulse::store::Store::open(&path).unwrap();
    assert_eq!(
        serde_json::to_value(restored.uploads().unwrap()).unwrap(),
        listed
    );
    // Nothing is left beside the database.
    let db_dir = app.db().parent().unwrap().to_path_buf();
    let stray: Vec<_> = std::fs::read_dir(db_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("snapshot"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
