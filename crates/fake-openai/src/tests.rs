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
