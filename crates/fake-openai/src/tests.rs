//! The fake over real HTTP, as a client sees it.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::schema::default_schema;

fn request(text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini", "temperature": 0, "max_tokens": 100,
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "analysis", "strict": true, "schema": default_schema()}},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
    })
}

fn client() -> reqwest::Client {
    // In the workspace reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(client: &reqwest::Client, server: &FakeServer, text: &str) -> reqwest::Response {
    client
        .post(format!("{}/chat/completions", server.base_url()))
        .header("authorization", "Bearer test-key")
        .json(&request(text))
        .send()
        .await
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

fn content(body: &Value) -> Value {
    serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_string()
}

fn only(faults: impl FnOnce(&mut Faults)) -> FakeServer {
    let mut f = Faults::default();
    faults(&mut f);
    FakeServer::start(FakeConfig {
        faults: f,
        hang: Duration::from_millis(50),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn replies_fit_the_schema_and_stats_count_them() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    let a = json_of(post(&client, &server, "C: thanks, it works now").await).await;
    let b = json_of(post(&client, &server, "C: thanks, it works now").await).await;
    let c = content(&a);
    validate(&default_schema(), &c).unwrap();
    assert_eq!(c, content(&b), "deterministic per conversation");
    assert_eq!(c["sentiment"]["label"], "positive");
    // "be brief" + "C: thanks, it works now": 8 + 23 characters.
    assert_eq!(a["usage"]["prompt_tokens"], 8);
    let text = a["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        a["usage"]["completion_tokens"],
        (text.chars().count() as u64).div_ceil(4)
    );
    assert_eq!(a["model"], "gpt-4o-mini");
    let angry = json_of(post(&client, &server, "C: worst service, still no power").await).await;
    assert_eq!(content(&angry)["sentiment"]["label"], "negative");

    // Azure style: deployment path, api-key header, api-version query.
    let azure = client
        .post(format!(
            "{}/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
            server.base_url().trim_end_matches("/v1")
        ))
        .header("api-key", "azure-key")
        .json(&request("C: hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(azure.status(), 200);

    let s = server.stats();
    assert_eq!((s.requests, s.succeeded, s.faults), (4, 4, 0));
    assert_eq!(s.distinct_conversations_answered, 3);
    assert_eq!(s.conversations_answered_more_than_once, 1);
    assert_eq!(s.authorization_seen, ["Bearer test-key", "azure-key"]);
    assert_eq!(s.api_versions_seen, ["2024-10-21"]);
    let texts = [
        "C: thanks, it works now",
        "C: thanks, it works now",
        "C: worst service, still no power",
        "C: hello",
    ];
    let expected: u64 = texts.iter().map(|t| rate_limit_tokens(&request(t))).sum();
    assert_eq!(s.rate_limit_tokens, expected);
    assert!(s.last_request_at.is_some());
    let over_http: Value = client
        .get(server.base_url().replace("/v1", "/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, serde_json::to_value(&s).unwrap());
}

#[tokio::test]
async fn without_a_schema_the_reply_has_powerpulses_shape() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    let body = json_of(
        client
            .post(format!("{}/chat/completions", server.base_url()))
            .json(
                &json!({"model": "m", "messages": [{"role": "user", "content": "great, thanks"}]}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    let c = content(&body);
    validate(&default_schema(), &c).unwrap();
    assert_eq!(c["sentiment"]["label"], "positive");
}

#[tokio::test]
async fn the_request_limit_answers_429_with_an_exact_retry_after() {
    let server = FakeServer::start(FakeConfig {
        requests_per_minute: Some(60),
        ..Default::default()
    })
    .unwrap();
    let client = client();
    // The bucket holds six seconds' worth: 6 requests.
    for i in 0..6 {
        let r = post(&client, &server, &format!("C: {i}")).await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "60");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            (5 - i).to_string()
        );
        assert!(
            r.headers().get("x-ratelimit-limit-tokens").is_none(),
            "not configured"
        );
    }
    let r = post(&client, &server, "C: one too many").await;
    assert_eq!(r.status(), 429);
    let wait_ms: u64 = header(&r, "retry-after-ms").parse().unwrap();
    assert!((1..=1000).contains(&wait_ms), "{wait_ms}");
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit reached for requests")
    );
    // Honouring retry-after-ms exactly is enough.
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    assert_eq!(
        post(&client, &server, "C: after the wait").await.status(),
        200
    );
    let s = server.stats();
    assert_eq!((s.rate_limited, s.succeeded), (1, 7));
    assert_eq!(s.requests_during_retry_after, 0);
}

#[tokio::test]
async fn the_token_limit_names_itself() {
    let server = FakeServer::start(FakeConfig {
        tokens_per_minute: Some(1200),
        ..Default::default()
    })
    .unwrap();
    let client = client();
    // 120 tokens fit; each request costs 100 + 3.
    assert_eq!(post(&client, &server, "C: a").await.status(), 200);
    let r = post(&client, &server, "C: b").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "1200");
    // 17 left, plus what refilled (20 a second) since.
    let remaining: u32 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!((17..=19).contains(&remaining), "{remaining}");
    let body = json_of(r).await;
    assert_eq!(body["error"]["type"], "tokens");
    assert_eq!(
        server.stats().rate_limit_tokens,
        103,
        "the 429 took nothing"
    );
}

#[tokio::test]
async fn storms_quota_and_requests_that_ignore_retry_after() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    server.rate_limit_storm(2, Duration::from_secs(2));
    let r = post(&client, &server, "C: a").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after-ms"), "2000");
    assert_eq!(header(&r, "retry-after"), "2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(post(&client, &server, "C: b").await.status(), 429);
    assert_eq!(
        post(&client, &server, "C: c").await.status(),
        200,
        "the storm is over"
    );
    assert_eq!(
        server.stats().requests_during_retry_after,
        2,
        "both came too early"
    );

    server.set_insufficient_quota(true);
    let r = post(&client, &server, "C: d").await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().get("retry-after-ms").is_none(),
        "quota does not come back"
    );
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    server.set_insufficient_quota(false);
    assert_eq!(post(&client, &server, "C: e").await.status(), 200);
    let s = server.stats();
    assert_eq!((s.rate_limited, s.succeeded), (3, 2));
}

#[tokio::test]
async fn every_fault_kind_can_be_injected() {
    let client = client();

    type Setter = fn(&mut Faults);
    let cases: [(&str, Setter); 5] = [
        ("500", |f| f.server_error = 1.0),
        ("503", |f| f.unavailable = 1.0),
        ("504", |f| f.timeout = 1.0),
        ("truncated", |f| f.truncated_json = 1.0),
        ("fenced", |f| f.fenced_json = 1.0),
    ];
    for (kind, faults) in cases {
        let server = only(faults);
        let r = post(&client, &server, "C: hi").await;
        let status = r.status().as_u16();
        let is_json = header(&r, "content-type") == "application/json";
        let body = r.bytes().await.unwrap();
        let parsed = serde_json::from_slice::<Value>(&body);
        match kind {
            "truncated" => {
                assert_eq!(status, 200);
                assert!(is_json && parsed.is_err(), "a cut body");
            }
            "fenced" => {
                let content = parsed.unwrap()["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let inner = content
                    .strip_prefix("```json\n")
                    .and_then(|c| c.strip_suffix("\n```"))
                    .unwrap();
                validate(&default_schema(), &serde_json::from_str(inner).unwrap()).unwrap();
            }
            code => {
                assert_eq!(status.to_string(), code);
                assert_eq!(parsed.unwrap()["error"]["type"], "server_error");
            }
        }
        let s = server.stats();
        let failure = kind != "fenced";
        assert_eq!(
            (s.faults, s.succeeded),
            (u64::from(failure), u64::from(!failure)),
            "{kind}"
        );
        assert_eq!(
            s.distinct_conversations_answered,
            u64::from(!failure),
            "{kind}"
        );
    }

    let refused = json_of(post(&client, &only(|f| f.refusal = 1.0), "C: hi").await).await;
    let message = &refused["choices"][0]["message"];
    assert!(message["refusal"].is_string() && message["content"].is_null());
    assert!(refused["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let prose =
        json_of(post(&client, &only(|f| f.invalid_json_content = 1.0), "C: hi").await).await;
    let text = prose["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");

    let server = only(|f| f.schema_violation = 1.0);
    let violated = json_of(post(&client, &server, "C: hi").await).await;
    assert!(validate(&default_schema(), &content(&violated)).is_err());
    let s = server.stats();
    assert_eq!(
        (s.faults, s.succeeded, s.distinct_conversations_answered),
        (1, 0, 0)
    );
    assert!(s.prompt_tokens > 0, "faulty content is still billed");
}

#[tokio::test]
async fn dropped_connections_break_mid_body() {
    let server = only(|f| f.drop_connection = 1.0);
    let sent = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&request("C: hi"))
        .send()
        .await;
    let broken = match sent {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(broken, "the connection must break");
    assert_eq!(server.stats().faults, 1);
}

#[tokio::test]
async fn timeouts_hang_longer_than_the_client_waits() {
    let server = FakeServer::start(FakeConfig {
        faults: Faults {
            timeout: 1.0,
            ..Default::default()
        },
        hang: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let err = client
        .post(format!("{}/chat/completions", server.base_url()))
        .timeout(Duration::from_millis(200))
        .json(&request("C: hi"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(server.stats().faults, 1);
}

#[tokio::test]
async fn behaviour_changes_live() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    assert_eq!(post(&client, &server, "C: a").await.status(), 200);
    server.update(|c| c.faults.unavailable = 1.0);
    assert_eq!(post(&client, &server, "C: a").await.status(), 503);
    server.update(|c| {
        c.faults = Faults::default();
        c.requests_per_minute = Some(10);
    });
    // One request per six seconds' bucket.
    assert_eq!(post(&client, &server, "C: a").await.status(), 200);
    assert_eq!(post(&client, &server, "C: b").await.status(), 429);
    let s = server.stats();
    assert_eq!((s.succeeded, s.faults, s.rate_limited), (2, 1, 1));
    assert_eq!(s.conversations_answered_more_than_once, 1);
}

#[tokio::test]
async fn bad_requests_unknown_paths_and_models() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    let url = format!("{}/chat/completions", server.base_url());
    let r = client.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json_of(r).await["error"]["type"], "invalid_request_error");
    let r = client
        .post(&url)
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .get(format!("{}/nothing", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        json_of(r).await["error"]["message"],
        "Invalid URL (GET /v1/nothing)"
    );
    let models = json_of(
        client
            .get(format!("{}/models", server.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models["object"], "list");
    assert!(!models["data"].as_array().unwrap().is_empty());
    let s = server.stats();
    assert_eq!((s.requests, s.succeeded), (2, 0));
}

#[tokio::test]
async fn slow_requests_wait_concurrently() {
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_secs(1)),
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let url = format!("{}/chat/completions", server.base_url());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            client
                .post(url)
                .json(&request(&format!("C: {i}")))
                .send()
                .await
                .map(|r| r.status())
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 200);
    }
    let s = server.stats();
    assert_eq!(s.succeeded, 200);
    // Blocking sleeps would cap this at the two workers.
    assert!(s.max_in_flight > 100, "{s:?}");
}

// ---- Files and Batch APIs -------------------------------------------------

/// A batch input file: one line per text, `custom_id` `conv-N`.
fn batch_input(texts: &[&str]) -> Vec<u8> {
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"custom_id": format!("conv-{i}"), "method": "POST",
                "url": "/v1/chat/completions", "body": request(text)})
            .to_string()
        })
        .collect();
    (lines.join("\n") + "\n").into_bytes()
}

async fn upload_to(
    client: &reqwest::Client,
    url: &str,
    purpose: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("requests.jsonl");
    let form = reqwest::multipart::Form::new()
        .text("purpose", purpose.to_string())
        .part("file", part);
    client.post(url).multipart(form).send().await.unwrap()
}

async fn upload(
    client: &reqwest::Client,
    server: &FakeServer,
    bytes: Vec<u8>,
) -> reqwest::Response {
    upload_to(
        client,
        &format!("{}/files", server.base_url()),
        "batch",
        bytes,
    )
    .await
}

async fn create_batch(
    client: &reqwest::Client,
    server: &FakeServer,
    file_id: &Value,
) -> reqwest::Response {
    client
        .post(format!("{}/batches", server.base_url()))
        .json(
            &json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h", "metadata": {"by": "test"}}),
        )
        .send()
        .await
        .unwrap()
}

/// Uploads `texts` and creates a batch over them; the batch object.
async fn batch_of(client: &reqwest::Client, server: &FakeServer, texts: &[&str]) -> Value {
    let file = json_of(upload(client, server, batch_input(texts)).await).await;
    let r = create_batch(client, server, &file["id"]).await;
    assert_eq!(r.status(), 200);
    json_of(r).await
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    json_of(r).await
}

/// Polls the batch until it reaches `status` (10 s deadline).
async fn wait_for(
    client: &reqwest::Client,
    server: &FakeServer,
    batch: &Value,
    status: &str,
) -> Value {
    let url = format!(
        "{}/batches/{}",
        server.base_url(),
        batch["id"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let b = get_json(client, url.clone()).await;
        if b["status"] == status {
            return b;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {b}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The lines of a stored file, read over HTTP.
async fn file_lines(client: &reqwest::Client, server: &FakeServer, id: &Value) -> Vec<Value> {
    let url = format!(
        "{}/files/{}/content",
        server.base_url(),
        id.as_str().unwrap()
    );
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_batch_runs_its_lifecycle_and_answers_as_the_sync_path_does() {
    let server = FakeServer::start(FakeConfig {
        batch: BatchConfig {
            validating: Duration::from_millis(30),
            per_request: Duration::from_millis(5),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let texts = [
        "C: thanks, it works now",
        "C: worst service, still no power",
        "C: hello",
    ];
    let bytes = batch_input(&texts);
    let r = upload(&client, &server, bytes.clone()).await;
    assert_eq!(r.status(), 200);
    let file = json_of(r).await;
    assert!(file["id"].as_str().unwrap().starts_with("file-"), "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], bytes.len());
    assert_eq!(file["filename"], "requests.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert!(file["created_at"].as_u64().unwrap() > 1_700_000_000);
    let content_url = format!(
        "{}/files/{}/content",
        server.base_url(),
        file["id"].as_str().unwrap()
    );
    let stored = client
        .get(content_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), bytes.as_slice());

    let r = create_batch(&client, &server, &file["id"]).await;
    assert_eq!(r.status(), 200);
    let batch = json_of(r).await;
    assert!(
        batch["id"].as_str().unwrap().starts_with("batch_"),
        "{batch}"
    );
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["endpoint"], "/v1/chat/completions");
    assert_eq!(batch["input_file_id"], file["id"]);
    assert_eq!(batch["metadata"]["by"], "test");
    let done = wait_for(&client, &server, &batch, "completed").await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 3, "completed": 3, "failed": 0})
    );
    for stamp in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[stamp].as_u64().unwrap() >= done["created_at"].as_u64().unwrap());
    }
    assert!(done["error_file_id"].is_null());
    let output = file_lines(&client, &server, &done["output_file_id"]).await;
    assert_eq!(output.len(), 3);

    // Each line is what the synchronous endpoint answers to the same body.
    for (i, text) in texts.iter().enumerate() {
        let line = output
            .iter()
            .find(|l| l["custom_id"] == format!("conv-{i}"))
            .unwrap();
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
        assert!(line["error"].is_null());
        assert_eq!(line["response"]["status_code"], 200);
        assert!(line["response"]["request_id"].is_string());
        let body = &line["response"]["body"];
        assert_eq!(body["object"], "chat.completion");
        let sync = json_of(post(&client, &server, text).await).await;
        assert_eq!(content(body), content(&sync));
        assert_eq!(body["usage"], sync["usage"]);
        validate(&default_schema(), &content(body)).unwrap();
    }
    let s = server.stats();
    assert_eq!(
        (s.files_uploaded, s.batches_created, s.batches_cancelled),
        (1, 1, 0)
    );
    assert_eq!((s.batch_requests_answered, s.batch_requests_failed), (3, 0));
    assert_eq!(s.succeeded, 3);
    assert_eq!(s.batch_prompt_tokens, s.prompt_tokens);
    assert_eq!(s.batch_completion_tokens, s.completion_tokens);
    // Answered in the batch, then again synchronously: paid twice.
    assert_eq!(s.distinct_conversations_answered, 3);
    assert_eq!(s.conversations_answered_more_than_once, 3);
    // Batches take nothing from the synchronous limiter.
    let sync_only: u64 = texts.iter().map(|t| rate_limit_tokens(&request(t))).sum();
    assert_eq!(s.rate_limit_tokens, sync_only);
    let all = server.batches();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], batch["id"]);
    let output_id = done["output_file_id"].as_str().unwrap();
    assert!(server.file_content(output_id).is_some());

    // The same routes under any prefix, or none.
    let root = server.base_url().trim_end_matches("/v1").to_string();
    let id = batch["id"].as_str().unwrap();
    for base in [root.clone(), format!("{root}/proxy/openai/v1")] {
        let b = get_json(&client, format!("{base}/batches/{id}")).await;
        assert_eq!(b["status"], "completed");
        let list = get_json(&client, format!("{base}/batches?limit=5")).await;
        assert_eq!(list["data"][0]["id"], batch["id"]);
        let f = get_json(&client, format!("{base}/files/{output_id}")).await;
        assert_eq!(f["purpose"], "batch_output");
    }
    let r = upload_to(
        &client,
        &format!("{root}/files"),
        "batch",
        batch_input(&["C: x"]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = client
        .delete(format!("{}/files/{output_id}", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["deleted"], true);
    assert!(server.file_content(output_id).is_none());
}

#[tokio::test]
async fn bad_uploads_and_batch_requests_get_openais_errors() {
    let server = FakeServer::start(FakeConfig {
        batch: BatchConfig {
            max_file_lines: 2,
            max_file_bytes: 10_000,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 400);
        let e = json_of(r).await;
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        e["error"].clone()
    };
    let line = String::from_utf8(batch_input(&["C: a"])).unwrap();
    let e = refused(upload(&client, &server, format!("{line}{line}").into_bytes()).await).await;
    assert_eq!(e["code"], "duplicate_custom_id");
    assert_eq!(e["param"], "file");
    assert!(e["message"].as_str().unwrap().starts_with("Line 2:"), "{e}");
    let e = refused(upload(&client, &server, batch_input(&["C: a", "C: b", "C: c"])).await).await;
    assert_eq!(e["code"], "too_many_requests_in_file");
    let e = refused(upload(&client, &server, vec![b'x'; 10_001]).await).await;
    assert_eq!(e["code"], "file_too_large");
    let e = refused(upload(&client, &server, line.replace("POST", "GET").into_bytes()).await).await;
    assert_eq!(e["code"], "invalid_method");
    let url = format!("{}/files", server.base_url());
    let e = refused(upload_to(&client, &url, "fine-tune", batch_input(&["C: a"])).await).await;
    assert_eq!(e["param"], "purpose");
    let form = reqwest::multipart::Form::new().text("purpose", "batch");
    refused(client.post(&url).multipart(form).send().await.unwrap()).await;
    refused(
        client
            .post(&url)
            .json(&json!({"purpose": "batch"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(server.stats().files_uploaded, 0);

    let r = create_batch(&client, &server, &json!("file-nope")).await;
    assert_eq!(r.status(), 404);
    let file = json_of(upload(&client, &server, batch_input(&["C: a"])).await).await;
    let r = client
        .post(format!("{}/batches", server.base_url()))
        .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/embeddings", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(r).await["param"], "endpoint");
    let r = client
        .get(format!("{}/batches/batch_nope", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(server.stats().batches_created, 0);
    assert!(server.batches().is_empty());

    // Unchecked at upload, the same file fails its batch, naming the line.
    server.update(|c| c.batch.validate_on_upload = false);
    let file = json_of(upload(&client, &server, format!("{line}{line}").into_bytes()).await).await;
    let batch = json_of(create_batch(&client, &server, &file["id"]).await).await;
    let failed = wait_for(&client, &server, &batch, "failed").await;
    assert_eq!(failed["errors"]["object"], "list");
    assert_eq!(failed["errors"]["data"][0]["code"], "duplicate_custom_id");
    assert_eq!(failed["errors"]["data"][0]["line"], 2);
    assert!(failed["failed_at"].is_u64());
    assert!(failed["output_file_id"].is_null());
}

#[tokio::test]
async fn batches_finish_or_expire_when_told_and_cancel_on_request() {
    let server = FakeServer::start(FakeConfig {
        batch: BatchConfig {
            per_request: Duration::from_secs(3600),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let slow = batch_of(&client, &server, &["C: a", "C: b"]).await;
    wait_for(&client, &server, &slow, "in_progress").await;
    server.update(|c| c.batch.per_request = Duration::ZERO);
    let done = wait_for(&client, &server, &slow, "completed").await;
    assert_eq!(done["request_counts"]["completed"], 2);

    server.update(|c| c.batch.per_request = Duration::from_secs(3600));
    let doomed = batch_of(&client, &server, &["C: c", "C: d"]).await;
    wait_for(&client, &server, &doomed, "in_progress").await;
    server.update(|c| c.batch.expire_after = Some(Duration::ZERO));
    let expired = wait_for(&client, &server, &doomed, "expired").await;
    assert_eq!(
        expired["request_counts"],
        json!({"total": 2, "completed": 0, "failed": 2})
    );
    assert!(expired["output_file_id"].is_null());
    let errors = file_lines(&client, &server, &expired["error_file_id"]).await;
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["error"]["code"], "batch_expired");
    assert!(errors[0]["response"].is_null());
    assert_eq!(errors[1]["custom_id"], "conv-1");

    server.update(|c| c.batch.expire_after = None);
    let stopped = batch_of(&client, &server, &["C: e"]).await;
    let cancel_url = format!(
        "{}/batches/{}/cancel",
        server.base_url(),
        stopped["id"].as_str().unwrap()
    );
    let r = client.post(&cancel_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["status"], "cancelling");
    let cancelled = wait_for(&client, &server, &stopped, "cancelled").await;
    assert!(cancelled["cancelling_at"].is_u64() && cancelled["cancelled_at"].is_u64());
    let r = client.post(&cancel_url).send().await.unwrap();
    assert_eq!(r.status(), 400, "a cancelled batch cannot be cancelled");

    let s = server.stats();
    assert_eq!((s.batches_created, s.batches_cancelled), (3, 1));
    assert_eq!((s.batch_requests_answered, s.batch_requests_failed), (2, 2));
    let list = get_json(&client, format!("{}/batches?limit=2", server.base_url())).await;
    assert_eq!(list["data"][0]["id"], stopped["id"]);
    assert_eq!(list["data"][1]["id"], doomed["id"]);
    assert_eq!(list["has_more"], true);
    let after = list["last_id"].as_str().unwrap();
    let rest = get_json(
        &client,
        format!("{}/batches?after={after}", server.base_url()),
    )
    .await;
    assert_eq!(rest["data"][0]["id"], slow["id"]);
    assert_eq!(rest["has_more"], false);
}

#[tokio::test]
async fn batch_line_faults_and_conversations_paid_in_two_batches() {
    let server = FakeServer::start(FakeConfig {
        batch: BatchConfig {
            line_server_error: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let texts = ["C: a", "C: b", "C: c"];
    let broken = batch_of(&client, &server, &texts).await;
    let broken = wait_for(&client, &server, &broken, "completed").await;
    assert_eq!(
        broken["request_counts"],
        json!({"total": 3, "completed": 0, "failed": 3})
    );
    let errors = file_lines(&client, &server, &broken["error_file_id"]).await;
    assert_eq!(errors[0]["response"]["status_code"], 500);
    assert_eq!(
        errors[0]["response"]["body"]["error"]["type"],
        "server_error"
    );
    assert_eq!(server.stats().distinct_conversations_answered, 0);

    server.update(|c| {
        c.batch = BatchConfig {
            line_error: 1.0,
            ..Default::default()
        }
    });
    let b = batch_of(&client, &server, &texts).await;
    let b = wait_for(&client, &server, &b, "completed").await;
    let errors = file_lines(&client, &server, &b["error_file_id"]).await;
    assert!(errors[2]["response"].is_null());
    assert_eq!(errors[2]["error"]["code"], "server_error");

    server.update(|c| {
        c.batch = BatchConfig {
            invalid_content: 1.0,
            ..Default::default()
        }
    });
    let b = batch_of(&client, &server, &texts).await;
    let b = wait_for(&client, &server, &b, "completed").await;
    let output = file_lines(&client, &server, &b["output_file_id"]).await;
    assert_eq!(output.len(), 3);
    for line in &output {
        assert_eq!(line["response"]["status_code"], 200);
        assert!(validate(&default_schema(), &content(&line["response"]["body"])).is_err());
    }
    assert_eq!(server.stats().distinct_conversations_answered, 0);

    server.update(|c| c.batch = BatchConfig::default());
    for _ in 0..2 {
        let b = batch_of(&client, &server, &texts).await;
        wait_for(&client, &server, &b, "completed").await;
    }
    let s = server.stats();
    assert_eq!(s.distinct_conversations_answered, 3);
    assert_eq!(s.conversations_answered_more_than_once, 3);
    assert_eq!((s.batch_requests_answered, s.batch_requests_failed), (6, 6));
    assert_eq!((s.batches_created, s.files_uploaded), (5, 5));
    assert_eq!(s.requests, 0, "no chat-completions request was made");
}

#[tokio::test]
async fn batch_outputs_can_hold_a_custom_id_twice_and_ids_nobody_sent() {
    let server = FakeServer::start(FakeConfig {
        batch: BatchConfig {
            duplicate_lines: 1.0,
            stray_lines: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let texts = ["C: a", "C: b", "C: c"];
    let b = batch_of(&client, &server, &texts).await;
    let b = wait_for(&client, &server, &b, "completed").await;
    let output = file_lines(&client, &server, &b["output_file_id"]).await;
    assert_eq!(output.len(), 9, "each answered twice, plus a stray each");
    for text in ["a", "b", "c"] {
        let id = format!(
            "conv-{}",
            texts.iter().position(|t| t.ends_with(text)).unwrap()
        );
        let lines: Vec<&Value> = output.iter().filter(|l| l["custom_id"] == id).collect();
        assert_eq!(lines.len(), 2, "{id}: {output:?}");
        let valid = lines
            .iter()
            .filter(|l| validate(&default_schema(), &content(&l["response"]["body"])).is_ok())
            .count();
        assert_eq!(valid, 1, "one valid answer and one invalid, for {id}");
    }
    let strays = output
        .iter()
        .filter(|l| l["custom_id"].as_str().unwrap().starts_with("stray-"))
        .count();
    assert_eq!(strays, 3);
    let s = server.stats();
    assert_eq!(s.batch_requests_answered, 3, "only the valid answers count");
    assert!(s.batch_prompt_tokens > 0);
    assert_eq!(s.conversations_answered_more_than_once, 0);
}

// ---- A local server (llama-cpp-python) --------------------------------------

#[tokio::test]
async fn a_local_server_refuses_json_schema_ignores_max_completion_tokens_and_follows_a_json_object_schema()
 {
    let server = FakeServer::start(FakeConfig {
        server: ServerKind::LlamaCppPython,
        ..Default::default()
    })
    .unwrap();
    let client = client();
    let send = |body: Value| {
        let client = client.clone();
        let url = format!("{}/chat/completions", server.base_url());
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    // json_schema: a 500 with pydantic's text, as llama-cpp-python answers.
    let refused = send(request("C: the power is out")).await;
    assert_eq!(refused.status(), 500);
    let body = json_of(refused).await;
    assert_eq!(body["error"]["type"], "internal_server_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Input should be 'text' or 'json_object'"),
        "{message}"
    );
    assert!(message.contains("response_format"), "{message}");
    // json_object with a schema: followed, keys and types.
    let schema = json!({"type": "object", "required": ["mood", "stars"],
        "properties": {"mood": {"type": "string", "enum": ["up", "down"]}, "stars": {"type": "integer"}}});
    let with_schema = |budget: Value| {
        let mut body = json!({
            "model": "whatever-is-loaded",
            "response_format": {"type": "json_object", "schema": schema},
            "messages": [{"role": "user", "content": "C: it works now, thanks"}],
        });
        body.as_object_mut()
            .unwrap()
            .extend(budget.as_object().unwrap().clone());
        body
    };
    let answer = json_of(send(with_schema(json!({"max_tokens": 100}))).await).await;
    validate(&schema, &content(&answer)).unwrap();
    // max_completion_tokens is ignored; max_tokens is not.
    let ignored = json_of(send(with_schema(json!({"max_completion_tokens": 1}))).await).await;
    assert_eq!(ignored["choices"][0]["finish_reason"], "stop");
    assert!(ignored["usage"]["completion_tokens"].as_u64().unwrap() > 1);
    let held = json_of(send(with_schema(json!({"max_tokens": 1}))).await).await;
    assert_eq!(held["choices"][0]["finish_reason"], "length");
    // A schema spelled out in the system prompt is followed too.
    let prompted = json!({
        "model": "m", "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": format!("Rate it. Reply with JSON of this schema: {schema}")},
            {"role": "user", "content": "C: hello"}
        ],
    });
    let answer = json_of(send(prompted).await).await;
    validate(&schema, &content(&answer)).unwrap();
    assert_eq!(server.stats().invalid_requests, 1);
}

// ---- Today's models and prompt caching ------------------------------------

fn reasoning_request(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "C: thanks, it works now"}],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn reasoning_models_refuse_max_tokens_and_temperature_and_spend_reasoning_tokens() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    let url = format!("{}/chat/completions", server.base_url());
    let send = |body: Value| client.post(&url).json(&body).send();
    let r = send(reasoning_request(json!({"max_tokens": 300})))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        json_of(r).await,
        json!({"error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
    );
    let r = send(reasoning_request(json!({"temperature": 0.2})))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e = json_of(r).await["error"].clone();
    assert_eq!(
        (e["param"].as_str(), e["code"].as_str()),
        (Some("temperature"), Some("unsupported_value"))
    );

    let body = reasoning_request(
        json!({"max_completion_tokens": 1000, "reasoning_effort": "low", "temperature": 1}),
    );
    let ok = json_of(send(body.clone()).await.unwrap()).await;
    let usage = &ok["usage"];
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 64);
    let text = ok["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        usage["completion_tokens"],
        64 + (text.chars().count() as u64).div_ceil(4)
    );
    assert_eq!(ok["choices"][0]["finish_reason"], "stop");
    let minimal = json_of(
        send(reasoning_request(json!({"reasoning_effort": "minimal"})))
            .await
            .unwrap(),
    )
    .await;
    let high = json_of(
        send(reasoning_request(json!({"reasoning_effort": "high"})))
            .await
            .unwrap(),
    )
    .await;
    let reasoning = |b: &Value| {
        b["usage"]["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
    };
    assert!(reasoning(&minimal) < reasoning(&ok) && reasoning(&ok) < reasoning(&high));
    assert_eq!(
        content(&minimal),
        content(&ok),
        "the answer does not depend on the effort"
    );

    // Reasoning that eats the budget leaves no content.
    let cut = json_of(
        send(reasoning_request(json!({"max_completion_tokens": 100})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cut["choices"][0]["finish_reason"], "length");
    assert_eq!(cut["choices"][0]["message"]["content"], "");
    assert_eq!(cut["usage"]["completion_tokens"], 100);

    // Every model takes max_completion_tokens and reasoning_effort; others
    // spend no reasoning tokens.
    let plain = json!({"model": "gpt-4o-mini", "max_completion_tokens": 300, "reasoning_effort": "low",
        "temperature": 0, "messages": [{"role": "user", "content": "C: hi"}]});
    let r = json_of(send(plain.clone()).await.unwrap()).await;
    assert_eq!(
        r["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );

    let s = server.stats();
    assert_eq!(s.invalid_requests, 2);
    assert_eq!(s.requests, 7);
    assert_eq!(s.reasoning_tokens, 64 + 16 + 512 + 100);
    // max_completion_tokens counts as max_tokens does; 16 when neither is given.
    let prompt = |b: &Value| b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(rate_limit_tokens(&body), prompt(&ok) + 1000);
    let expected = prompt(&ok)
        + 1000
        + prompt(&minimal)
        + 16
        + prompt(&high)
        + 16
        + prompt(&cut)
        + 100
        + prompt(&r)
        + 300;
    assert_eq!(s.rate_limit_tokens, expected);

    // In a batch, the refusal is the line's response, in the error file.
    let line = |id: &str, body: Value| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": body})
            .to_string()
    };
    let input = format!(
        "{}\n{}\n",
        line("bad", reasoning_request(json!({"max_tokens": 50}))),
        line("good", body)
    );
    let file = json_of(upload(&client, &server, input.into_bytes()).await).await;
    let batch = json_of(create_batch(&client, &server, &file["id"]).await).await;
    let done = wait_for(&client, &server, &batch, "completed").await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 2, "completed": 1, "failed": 1})
    );
    let errors = file_lines(&client, &server, &done["error_file_id"]).await;
    assert_eq!(errors[0]["custom_id"], "bad");
    assert_eq!(errors[0]["response"]["status_code"], 400);
    assert_eq!(
        errors[0]["response"]["body"]["error"]["param"],
        "max_tokens"
    );
    let output = file_lines(&client, &server, &done["output_file_id"]).await;
    assert_eq!(
        output[0]["response"]["body"]["usage"]["completion_tokens_details"]["reasoning_tokens"],
        64
    );
}

#[tokio::test]
async fn long_prompts_report_their_cached_prefix() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    let url = format!("{}/chat/completions", server.base_url());
    let system = "Analyse the chat. ".repeat(300); // 5,400 characters
    let ask = |user: &str| {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": user}]});
        client.post(&url).json(&body).send()
    };
    let cached = |b: &Value| {
        b["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
    };
    let first = json_of(ask("C: first").await.unwrap()).await;
    assert_eq!(cached(&first), 0, "nothing seen yet");
    let second = json_of(ask("C: second").await.unwrap()).await;
    // 5,400 shared characters: 10 whole 512-character blocks.
    assert_eq!(cached(&second), 1280);
    assert!(cached(&second) <= second["usage"]["prompt_tokens"].as_u64().unwrap());
    let short = json_of(post(&client, &server, "C: short").await).await;
    let again = json_of(post(&client, &server, "C: short").await).await;
    assert_eq!(
        (cached(&short), cached(&again)),
        (0, 0),
        "under 1,024 tokens"
    );
    assert_eq!(server.stats().cached_tokens, 1280);
}
