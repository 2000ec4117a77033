//! Webhook notifications against a receiver started by each test: the
//! event, its signature, retries after a 5xx, giving up, the metrics, and an
//! upload that ends while the receiver is stuck.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use powerpulse::config::Settings;
use serde_json::Value;

use fake_openai::{FakeConfig, FakeServer};

use crate::helpers::{Options, TestApp, export_csv, llm_app, spawn_with};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// Header names lowercased.
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on 127.0.0.1: records each request and answers the
/// scripted statuses in turn (200 once the script is used up); while held,
/// it answers nothing.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
    held: Arc<(Mutex<bool>, Condvar)>,
}

impl Receiver {
    pub(crate) fn start(script: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/powerpulse", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let held = Arc::new((Mutex::new(false), Condvar::new()));
        let (g, s, h) = (got.clone(), script.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (g, s, h) = (g.clone(), s.clone(), h.clone());
                std::thread::spawn(move || serve_one(stream, &g, &s, &h));
            }
        });
        Receiver { url, got, held }
    }

    fn hold(&self, on: bool) {
        *self.held.0.lock().unwrap() = on;
        self.held.1.notify_all();
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived.
    pub(crate) fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    got: &Mutex<Vec<Received>>,
    script: &Mutex<VecDeque<u16>>,
    held: &(Mutex<bool>, Condvar),
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("POST /hooks/powerpulse "), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    got.lock().unwrap().push(Received { headers, body });
    let mut is_held = held.0.lock().unwrap();
    while *is_held {
        is_held = held.1.wait(is_held).unwrap();
    }
    drop(is_held);
    let status = script.lock().unwrap().pop_front().unwrap_or(200);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

pub(crate) fn app_with_webhook(
    receiver: &Receiver,
    secret: Option<&str>,
    f: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings::default();
    settings.notify.webhook_url = Some(receiver.url.clone());
    settings.notify.secret = secret.map(str::to_string);
    settings.notify.backoff_ms = 20;
    f(&mut settings);
    spawn_with(Options {
        settings,
        ..Options::default()
    })
}

pub(crate) fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn upload_and_wait(app: &TestApp, name: &str, body: Vec<u8>) -> Value {
    let r = app.upload_raw(name, body, true).await;
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

async fn metric(app: &TestApp, line_start: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[actix_rt::test]
async fn completed_upload_is_posted_signed() {
    let receiver = Receiver::start(&[]);
    let app = app_with_webhook(&receiver, Some("s3cret"), |_| {});
    let summary = upload_and_wait(&app, "chats.csv", export_csv(30, 7)).await;
    assert_eq!(summary["status"], "completed");
    let upload_id = summary["upload_id"].as_str().unwrap().to_string();

    let got = receiver.wait_for(1);
    let hook = &got[0];
    // The signature is the HMAC-SHA256 of the exact body, under the secret.
    assert_eq!(
        hook.headers["x-powerpulse-signature"],
        format!("sha256={}", hmac_hex("s3cret", &hook.body))
    );
    assert_ne!(
        hook.headers["x-powerpulse-signature"],
        format!("sha256={}", hmac_hex("other", &hook.body))
    );
    assert_eq!(hook.headers["content-type"], "application/json");
    assert_eq!(hook.headers["x-powerpulse-event"], "upload.completed");
    let event = hook.json();
    assert_eq!(
        hook.headers["x-powerpulse-delivery"],
        event["event_id"].as_str().unwrap()
    );
    assert_eq!(event["event"], "upload.completed");
    assert_eq!(event["upload_id"], upload_id.as_str());
    assert_eq!(event["filename"], "chats.csv");
    assert_eq!(event["status"], "completed");
    assert_eq!(event["counts"]["conversations"], 30);
    assert!(event["error"].is_null());
    assert_eq!(event["cost_usd"], 0.0);
    // Sentiment and satisfaction are the stored summary's.
    let stored = app
        .get_json(&format!("/api/uploads/{upload_id}/summary"))
        .await;
    assert_eq!(event["sentiment"], stored["sentiment"]);
    assert_eq!(
        event["satisfaction"]["average"],
        stored["average_satisfaction"]
    );
    assert_eq!(
        event["satisfaction"]["histogram"],
        stored["satisfaction_histogram"]
    );
    let sentiments: u64 = ["positive", "neutral", "negative"]
        .iter()
        .map(|k| event["sentiment"][k].as_u64().unwrap())
        .sum();
    assert_eq!(sentiments, 30);
    let record = app.get_json(&format!("/api/uploads/{upload_id}")).await;
    assert_eq!(event["finished_at"], record["finished_at"], "{record}");

    assert_eq!(
        metric(
            &app,
            "powerpulse_webhook_events_total{result=\"delivered\"}"
        )
        .await,
        1
    );
    assert_eq!(receiver.received().len(), 1, "delivered once");
}

#[actix_rt::test]
async fn a_server_error_is_retried_with_the_same_event() {
    let receiver = Receiver::start(&[500, 503]);
    let app = app_with_webhook(&receiver, None, |_| {});
    upload_and_wait(&app, "a.csv", export_csv(5, 1)).await;
    let got = receiver.wait_for(3);
    // Without a secret, nothing is signed; every attempt carries the same body.
    assert!(!got[0].headers.contains_key("x-powerpulse-signature"));
    assert!(got.windows(2).all(|w| w[0].body == w[1].body));
    assert_eq!(
        got[0].headers["x-powerpulse-delivery"],
        got[2].headers["x-powerpulse-delivery"]
    );
    // Counted once the third attempt's answer is in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &app,
        "powerpulse_webhook_events_total{result=\"delivered\"}",
    )
    .await
        < 1
    {
        assert!(Instant::now() < deadline, "never counted as delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&app, "powerpulse_webhook_retries_total").await, 2);
    assert_eq!(
        metric(&app, "powerpulse_webhook_events_total{result=\"failed\"}").await,
        0
    );
}

#[actix_rt::test]
async fn failed_upload_is_reported_and_a_refusal_is_not_retried() {
    // The LLM's quota is used up: the upload fails, with the reason.
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    server.set_insufficient_quota(true);
    // 400: the receiver refuses the event; retrying would not help.
    let receiver = Receiver::start(&[400]);
    let app = llm_app(&server, |s| {
        s.notify.webhook_url = Some(receiver.url.clone());
        s.notify.backoff_ms = 20;
        s.notify.max_attempts = 5;
    });
    let summary = upload_and_wait(&app, "quota.csv", export_csv(3, 1)).await;
    assert_eq!(summary["status"], "failed");
    let got = receiver.wait_for(1);
    let event = got[0].json();
    assert_eq!(event["event"], "upload.failed");
    assert_eq!(event["status"], "failed");
    assert_eq!(event["upload_id"], summary["upload_id"]);
    assert_eq!(event["filename"], "quota.csv");
    assert_eq!(event["error"], summary["error"]);
    assert!(
        event["error"].as_str().is_some_and(|e| e.contains("quota")),
        "{event}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "powerpulse_webhook_events_total{result=\"failed\"}").await < 1 {
        assert!(Instant::now() < deadline, "never counted as failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&app, "powerpulse_webhook_retries_total").await, 0);
    assert_eq!(receiver.received().len(), 1);
}

#[actix_rt::test]
async fn a_stuck_receiver_never_holds_up_uploads() {
    let receiver = Receiver::start(&[]);
    receiver.hold(true);
    let app = app_with_webhook(&receiver, None, |s| s.notify.timeout_seconds = 60);
    // Both uploads complete while the first event's delivery hangs.
    let first = upload_and_wait(&app, "one.csv", export_csv(5, 1)).await;
    receiver.wait_for(1);
    let second = upload_and_wait(&app, "two.csv", export_csv(5, 2)).await;
    assert_eq!(first["status"], "completed");
    assert_eq!(second["status"], "completed");
    assert_eq!(receiver.received().len(), 1, "one delivery at a time");
    receiver.hold(false);
    let got = receiver.wait_for(2);
    let ids: Vec<_> = got.iter().map(|r| r.json()["upload_id"].clone()).collect();
    assert_eq!(
        ids,
        vec![first["upload_id"].clone(), second["upload_id"].clone()]
    );
}

#[actix_rt::test]
async fn cancelled_upload_is_reported_with_what_it_did() {
    let server = FakeServer::start(FakeConfig {
        latency: fake_openai::Latency::Fixed(Duration::from_millis(50)),
        ..FakeConfig::default()
    })
    .unwrap();
    let receiver = Receiver::start(&[]);
    let app = llm_app(&server, |s| {
        s.notify.webhook_url = Some(receiver.url.clone());
    });
    let r = app.upload_raw("slow.csv", export_csv(200, 3), false).await;
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get_json(&format!("/api/progress/{id}")).await["analyzed"]
        .as_u64()
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.delete(&format!("/api/progress/{id}")).await.status(),
        202
    );
    let done = app.wait_done(&id).await;
    assert_eq!(done["stage"], "cancelled");

    let event = receiver.wait_for(1)[0].json();
    assert_eq!(event["event"], "upload.cancelled");
    assert_eq!(event["upload_id"], id.as_str());
    let analyzed = event["counts"]["analyzed"].as_u64().unwrap();
    assert!((1..200).contains(&analyzed), "{event}");
    // What the stored record says.
    let record = app.get_json(&format!("/api/uploads/{id}")).await;
    assert_eq!(event["counts"], record["counts"], "{record}");
    assert_eq!(event["llm"], record["llm"], "{record}");
}

#[actix_rt::test]
async fn a_full_queue_drops_events_and_counts_them() {
    let receiver = Receiver::start(&[]);
    receiver.hold(true);
    let app = app_with_webhook(&receiver, None, |s| {
        s.notify.queue_capacity = 1;
        s.notify.timeout_seconds = 60;
    });
    let uploads = 5;
    upload_and_wait(&app, "0.csv", export_csv(3, 0)).await;
    // The first event's delivery hangs; the queue fills behind it.
    receiver.wait_for(1);
    for i in 1..uploads {
        let done = upload_and_wait(&app, &format!("{i}.csv"), export_csv(3, i)).await;
        assert_eq!(done["status"], "completed");
    }
    let dropped = metric(&app, "powerpulse_webhook_events_total{result=\"dropped\"}").await;
    assert!((1..uploads).contains(&dropped), "{dropped} dropped");
    receiver.hold(false);
    // Every event is either delivered or counted as dropped.
    let delivered = uploads - dropped;
    receiver.wait_for(delivered as usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &app,
        "powerpulse_webhook_events_total{result=\"delivered\"}",
    )
    .await
        < delivered
    {
        assert!(Instant::now() < deadline, "never all delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.received().len() as u64, delivered);
}

/// The provider stops answering mid-upload: the upload pauses (one
/// `upload.paused`, the outage on its progress and in `/metrics`), sends
/// nothing but probes, and goes on once the provider is back.
#[actix_rt::test]
async fn an_outage_pauses_the_upload_once_and_it_goes_on_when_the_provider_is_back() {
    let receiver = Receiver::start(&[]);
    let server = FakeServer::start(FakeConfig {
        faults: fake_openai::Faults {
            unavailable: 1.0,
            ..Default::default()
        },
        ..FakeConfig::default()
    })
    .unwrap();
    let app = llm_app(&server, |s| {
        s.notify.webhook_url = Some(receiver.url.clone());
        s.analyzer.concurrency = 2;
        s.analyzer.outage_failures = 4;
        s.analyzer.outage_timeout_seconds = 300;
    });
    let r = app.upload_raw("outage.csv", export_csv(6, 3), false).await;
    assert!(r.status().is_success(), "{}", r.status());
    let upload_id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();

    let paused = receiver.wait_for(1)[0].json();
    assert_eq!(paused["event"], "upload.paused");
    assert_eq!(paused["status"], "analyzing");
    assert_eq!(paused["upload_id"], upload_id.as_str());
    assert_eq!(paused["provider"]["reason"], "HTTP 503");
    assert!(
        paused["provider"]["detail"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{paused}"
    );
    assert!(paused.get("finished_at").is_none(), "{paused}");
    let progress = app.get_json(&format!("/api/progress/{upload_id}")).await;
    let message = progress["provider"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("provider unavailable: HTTP 503 since "),
        "{progress}"
    );
    assert!(message.contains(", next try "), "{message}");
    assert_eq!(progress["failed"], 0, "waiting is not failing: {progress}");
    assert_eq!(metric(&app, "powerpulse_llm_provider_unavailable").await, 1);
    // Paused: the failures that revealed the outage, the calls already in
    // flight, and nothing more until the first probe.
    let sent = server.stats().requests;
    assert!(sent <= 4 + 2, "{sent} requests before the pause took hold");

    server.update(|c| c.faults = fake_openai::Faults::default());
    let done = app.wait_done(&upload_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    let got = receiver.wait_for(2);
    let events: Vec<String> = got
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["upload.paused", "upload.completed"]);
    let progress = app.get_json(&format!("/api/progress/{upload_id}")).await;
    assert!(progress.get("provider").is_none(), "{progress}");
    assert_eq!(metric(&app, "powerpulse_llm_provider_unavailable").await, 0);
}
