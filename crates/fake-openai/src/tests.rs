use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn schema() -> Value {
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["sentiment", "satisfaction", "resolved", "summary"],
        "properties": {
            "sentiment": {"type": "object", "additionalProperties": false, "required": ["label", "score"],
                "properties": {"label": {"type": "string", "enum": ["positive", "neutral", "negative"]},
                               "score": {"type": "number", "minimum": -1, "maximum": 1}}},
            "satisfaction": {"type": "object", "additionalProperties": false, "required": ["score", "label"],
                "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                               "label": {"type": "string", "enum": ["satisfied", "neutral", "dissatisfied"]}}},
            "resolved": {"type": ["boolean", "null"]},
            "summary": {"type": "string", "maxLength": 200}
        }
    })
}

fn request(text: &str) -> Value {
    json!({
        "model": "gpt-4o", "temperature": 0, "max_tokens": 100,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": true, "schema": schema()}},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
    })
}

async fn post(client: &reqwest::Client, server: &FakeServer, text: &str) -> reqwest::Response {
    client
        .post(format!(
            "{}/chat/completions?api-version=2024-10-21",
            server.base_url()
        ))
        .header("authorization", "Bearer test-key")
        .json(&request(text))
        .send()
        .await
        .unwrap()
}

/// reqwest is built without a default crypto provider in this workspace.
fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client() -> reqwest::Client {
    install_provider();
    reqwest::Client::new()
}

fn content(body: &Value) -> Value {
    serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn replies_fit_the_schema_and_are_deterministic() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    let a: Value = post(&client, &server, "C: thanks, it works now")
        .await
        .json()
        .await
        .unwrap();
    let b: Value = post(&client, &server, "C: thanks, it works now")
        .await
        .json()
        .await
        .unwrap();
    let c = content(&a);
    validate(&schema(), &c).unwrap();
    assert_eq!(c, content(&b));
    assert_eq!(c["sentiment"]["label"], "positive");
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let angry = content(
        &post(&client, &server, "C: worst service, still no power")
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(angry["sentiment"]["label"], "negative");
    let s = server.stats();
    assert_eq!((s.requests, s.succeeded), (3, 3));
    assert_eq!(s.distinct_conversations_answered, 2);
    assert_eq!(s.conversations_answered_more_than_once, 1);
    assert_eq!(s.authorization_seen, vec!["Bearer test-key".to_string()]);
    assert_eq!(s.api_versions_seen, vec!["2024-10-21".to_string()]);
    server.stop();
}

#[tokio::test]
async fn limits_answer_429_with_headers_and_consume_nothing() {
    let server = FakeServer::start(FakeConfig {
        requests_per_minute: Some(60),
        ..Default::default()
    })
    .unwrap();
    let client = client();
    // Capacity is six seconds' worth: 6 requests.
    for i in 0..6 {
        let r = post(&client, &server, &format!("C: {i}")).await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "60");
    }
    let r = post(&client, &server, "C: one too many").await;
    assert_eq!(r.status(), 429);
    let wait_ms: u64 = r.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&wait_ms), "{wait_ms}");
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    tokio::time::sleep(Duration::from_millis(wait_ms + 20)).await;
    assert_eq!(
        post(&client, &server, "C: after the wait").await.status(),
        200
    );
    assert_eq!(server.stats().rate_limited, 1);
}

#[tokio::test]
async fn storms_quota_and_retry_after_violations() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let client = client();
    server.rate_limit_storm(2, Duration::from_secs(2));
    assert_eq!(post(&client, &server, "C: a").await.status(), 429);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post(&client, &server, "C: b").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after-ms"], "2000");
    assert_eq!(
        server.stats().requests_during_retry_after,
        1,
        "the second came too early"
    );
    server.set_insufficient_quota(true);
    let body: Value = post(&client, &server, "C: c").await.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
}

#[tokio::test]
async fn every_fault_kind_can_be_injected() {
    let client = client();
    let cases: [(Faults, &str); 8] = [
        (
            Faults {
                server_error: 1.0,
                ..Default::default()
            },
            "500",
        ),
        (
            Faults {
                unavailable: 1.0,
                ..Default::default()
            },
            "503",
        ),
        (
            Faults {
                drop_connection: 1.0,
                ..Default::default()
            },
            "drop",
        ),
        (
            Faults {
                truncated_json: 1.0,
                ..Default::default()
            },
            "truncated",
        ),
        (
            Faults {
                fenced_json: 1.0,
                ..Default::default()
            },
            "fenced",
        ),
        (
            Faults {
                refusal: 1.0,
                ..Default::default()
            },
            "refusal",
        ),
        (
            Faults {
                invalid_json_content: 1.0,
                ..Default::default()
            },
            "not json",
        ),
        (
            Faults {
                schema_violation: 1.0,
                ..Default::default()
            },
            "schema",
        ),
    ];
    for (faults, kind) in cases {
        let server = FakeServer::start(FakeConfig {
            faults,
            ..Default::default()
        })
        .unwrap();
        if kind == "drop" {
            // The connection breaks before or while the body arrives.
            let sent = client
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
            continue;
        }
        let r = post(&client, &server, "C: hi").await;
        let status = r.status().as_u16();
        let body = r.bytes().await;
        match kind {
            "500" => assert_eq!(status, 500),
            "503" => assert_eq!(status, 503),
            "truncated" => assert!(serde_json::from_slice::<Value>(&body.unwrap()).is_err()),
            other => {
                let v: Value = serde_json::from_slice(&body.unwrap()).unwrap();
                let message = &v["choices"][0]["message"];
                match other {
                    "fenced" => {
                        assert!(message["content"].as_str().unwrap().starts_with("```json"))
                    }
                    "refusal" => {
                        assert!(message["refusal"].is_string() && message["content"].is_null())
                    }
                    "not json" => assert!(
                        serde_json::from_str::<Value>(message["content"].as_str().unwrap())
                            .is_err()
                    ),
                    _ => {
                        let c: Value =
                            serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
                        assert!(validate(&schema(), &c).is_err());
                    }
                }
            }
        }
        let s = server.stats();
        assert_eq!(s.faults, u64::from(kind != "fenced"), "{kind}");
        assert_eq!(s.succeeded, u64::from(kind == "fenced"), "{kind}");
    }
}

#[tokio::test]
async fn timeouts_hang() {
    let server = FakeServer::start(FakeConfig {
        faults: Faults {
            timeout: 1.0,
            ..Default::default()
        },
        hang: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    let client = {
        install_provider();
        reqwest::Client::builder()
    }
    .timeout(Duration::from_millis(300))
    .build()
    .unwrap();
    let err = client
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&request("C: hi"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[test]
fn helpers() {
    assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_secs(1)), "1s");
    assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
    let r = request("abcdefgh");
    // "be brief" (8) + "abcdefgh" (8) = 16 chars → 4 tokens, + max_tokens 100.
    assert_eq!(rate_limit_tokens(&r), 104);
    assert!(validate(&schema(), &json!({"sentiment": 1})).is_err());
}
