//! Live progress, cancellation with LLM traffic, graceful shutdown.

use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Latency};
use powerpulse::config::Settings;
use powerpulse::model::Stage;
use powerpulse::store::Store;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_ordered_progress_ending_in_the_final_state() {
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(30)),
        ..Default::default()
    })
    .unwrap();
    let app = llm_app(&server, |s| {
        s.analyzer.concurrency = 8;
        s.analyzer.batch_size = Settings::default().analyzer.batch_size;
    });
    let r = app.upload_raw("sse.csv", export_csv(60, 5), false).await;
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let events = read_events(app.get(&format!("/api/progress/{id}/events")).await).await;
    assert!(events.len() >= 2, "{} events", events.len());
    let last = events.last().unwrap();
    assert_eq!(last["stage"], "completed");
    assert_eq!(last["processed"], last["total_conversations"]);
    assert_eq!(last["failed"], 0, "{last}");
    let processed: Vec<u64> = events
        .iter()
        .map(|e| e["processed"].as_u64().unwrap())
        .collect();
    assert!(
        processed.windows(2).all(|w| w[0] <= w[1]),
        "ordered: {processed:?}"
    );
    // Throttled: no more than ~4 a second (plus the first).
    let secs = started.elapsed().as_secs_f64();
    assert!(
        events.len() as f64 <= secs * 4.0 + 3.0,
        "{} events in {secs:.2}s",
        events.len()
    );
    // A finished upload answers one final event.
    let again = read_events(app.get(&format!("/api/progress/{id}/events")).await).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["stage"], "completed");
    assert!(last["llm"]["requests"].as_u64().unwrap() > 0);
    assert!(last["llm"]["tokens"].as_u64().unwrap() > 0, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_upload_stops_llm_traffic_and_keeps_results() {
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(120)),
        ..Default::default()
    })
    .unwrap();
    let app = llm_app(&server, |s| {
        s.analyzer.concurrency = 8;
        s.analyzer.batch_size = Settings::default().analyzer.batch_size;
    });
    let r = app.upload_form("slow.csv", export_csv(400, 6)).await;
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = app.get_json(&format!("/api/progress/{id}")).await;
        if p["analyzed"].as_u64().unwrap() >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = app.delete(&format!("/api/progress/{id}")).await;
    assert_eq!(r.status(), 202);
    let done = app.wait_done(&id).await;
    assert_eq!(done["stage"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let requests = server.stats().requests;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        server.stats().requests,
        requests,
        "no LLM traffic after cancel"
    );
    let analyzed = done["analyzed"].as_u64().unwrap();
    assert!((20..400).contains(&analyzed), "{done}");
    let page = app
        .get_json(&format!("/api/uploads/{id}/conversations?limit=500"))
        .await;
    assert_eq!(
        page["items"].as_array().unwrap().len() as u64,
        done["processed"].as_u64().unwrap()
    );
    assert_error(app.delete(&format!("/api/progress/{id}")).await, 409).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_leaves_a_reopenable_database() {
    let app = spawn_app();
    let r = app.upload_raw("keep.csv", export_csv(30, 7), true).await;
    assert_eq!(r.status(), 200);
    let id: uuid::Uuid = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = app.db();
    let dir = tokio::task::spawn_blocking(move || app.stop())
        .await
        .unwrap();
    let store = Store::open(&db).expect("the database reopens after shutdown");
    let upload = store.upload(id).unwrap().unwrap();
    assert_eq!(upload.status, Stage::Completed);
    assert_eq!(store.summary(id).unwrap().analyzed, 30);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_sends_nothing_and_counts_what_an_upload_would_send() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let app = llm_app(&server, |s| {
        s.analyzer.concurrency = 8;
        s.analyzer.batch_size = Settings::default().analyzer.batch_size;
    });
    let estimate = || async {
        let r = app
            .request(reqwest::Method::POST, "/api/estimate?filename=est.csv")
            .header("content-type", "application/octet-stream")
            .body(export_csv(40, 8))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let before = estimate().await;
    assert_eq!(server.stats().requests, 0, "an estimate sends nothing");
    assert_eq!(before["file"], "est.csv");
    assert_eq!(before["checked_processed"], true);
    let to_send = before["conversations_to_send"].as_u64().unwrap();
    assert!(to_send > 20, "{before}");
    assert!(before["cost_usd"]["max"].as_f64().unwrap() > 0.0);
    // Nothing of it was stored.
    let uploads = app.get_json("/api/uploads").await;
    assert!(!uploads.to_string().contains("est.csv"), "{uploads}");

    let r = app.upload_raw("est.csv", export_csv(40, 8), true).await;
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["analyzed"].as_u64().unwrap(), to_send, "{done}");
    let after = estimate().await;
    assert_eq!(after["already_processed"].as_u64().unwrap(), to_send);
    assert_eq!(after["conversations_to_send"], 0);
    // The running analyzer's limits are the ones the fake announced.
    assert_ne!(after["limits_source"], "starting", "{after}");

    let bad = app
        .request(reqwest::Method::POST, "/api/estimate?filename=x.pdf")
        .header("content-type", "application/octet-stream")
        .body(b"%PDF-1.4".to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        matches!(bad.status().as_u16(), 415 | 422),
        "{}",
        bad.status()
    );
    let body: Value = bad.json().await.unwrap();
    assert!(body.to_string().contains("x.pdf"), "{body}");
}
