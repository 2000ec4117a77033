//! No local leaks through the server: metrics that no client can grow, data
//! no other site can fetch, and spooled uploads that go with their upload.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use powerpulse::analyze::Analyzer;
use powerpulse::config::Settings;
use powerpulse::engine::Engine;
use powerpulse::model::Stage;
use powerpulse::store::UploadRecord;
use powerpulse::store::actor::PutUpload;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

const EVIL: &str = "https://evil.example";

/// `count` requests with made-up methods and paths, on a few keep-alive
/// connections (what a scanner or a hostile local process sends).
fn hostile_requests(app: &TestApp, count: usize, seed: u64) {
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut state = seed;
    for chunk in 0..count.div_ceil(250) {
        let n = 250.min(count - chunk * 250);
        let mut requests = String::new();
        for i in 0..n {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let method: String = (0..5)
                .map(|k| (b'A' + ((state >> (k * 5)) % 26) as u8) as char)
                .collect();
            let close = if i + 1 == n { "close" } else { "keep-alive" };
            requests.push_str(&format!(
                "{method} /api/{state:x} HTTP/1.1\r\nHost: {addr}\r\nConnection: {close}\r\n\r\n"
            ));
        }
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.write_all(requests.as_bytes()).unwrap();
        let mut answers = Vec::new();
        stream.read_to_end(&mut answers).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_cannot_grow_the_metrics() {
    let app = spawn_app();
    let metrics = || async { app.get("/metrics").await.text().await.unwrap() };
    // Its own series first.
    metrics().await;
    hostile_requests(&app, 200, 1);
    let after_some = metrics().await;
    hostile_requests(&app, 1_500, 2);
    let after_many = metrics().await;
    // The same series (their counts aside): every made-up method and path
    // is `other`.
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect()
    };
    let (before, after) = (series(&after_some), series(&after_many));
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(
        new.is_empty(),
        "{} new series, such as {:?}",
        new.len(),
        &new[..new.len().min(3)]
    );
    assert!(
        after_many.contains("method=\"other\",route=\"other\",status=\"404\""),
        "{after_many}"
    );
    assert!(!after_many.contains("/api/"), "no path is a label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_cannot_fetch_data() {
    let app = spawn_app();
    let r = app.upload_raw("a.csv", export_csv(3, 1), true).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = app
        .get_json(&format!("/api/uploads/{id}/conversations"))
        .await;
    let conversation = page["items"][0]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/api/backup".to_string(),
        format!("/api/uploads/{id}/export?format=csv"),
        format!("/api/uploads/{id}/conversations"),
        format!("/api/uploads/{id}/conversations/{conversation}"),
    ] {
        for (header, value) in [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
            ("origin", EVIL),
        ] {
            let r = app
                .request(Method::GET, &path)
                .header(header, value)
                .send()
                .await
                .unwrap();
            assert_error(r, 403).await;
        }
        // The dashboard's own fetches, and curl.
        let r = app
            .request(Method::GET, &path)
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Other sites may still link to the page itself.
    let r = app
        .request(Method::GET, "/")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn spooled(app_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(app_dir.join("api.redb.spool"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// An upload cancelled while parsing: its id (its raw file is kept, for a
/// resume to parse it again).
async fn cancelled_while_parsing(app: &TestApp) -> String {
    let r = app.upload_raw("big.csv", export_csv(6_000, 5), false).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.get_json(&format!("/api/progress/{id}")).await["messages"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "parsing never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        app.delete(&format!("/api/progress/{id}"))
            .await
            .status()
            .is_success()
    );
    let done = app.wait_done(&id).await;
    assert_eq!(done["stage"], "cancelled");
    let record = app.get_json(&format!("/api/uploads/{id}")).await;
    assert_eq!(record["parsed"], false, "cancelled part-way: {record}");
    id
}

/// The case: an upload cancelled while parsing keeps its raw file
/// (a resume parses it again); deleting the upload takes the file too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cancelled_while_parsing_takes_its_file_when_deleted() {
    let app = spawn_app();
    let id = cancelled_while_parsing(&app).await;
    let files = spooled(app.dir.path());
    assert_eq!(files.len(), 1, "kept for a resume");
    assert_eq!(mode(&files[0]), 0o600, "customer data, the owner's alone");
    assert_eq!(mode(&app.dir.path().join("api.redb.spool")), 0o700);

    assert_eq!(
        app.delete(&format!("/api/uploads/{id}")).await.status(),
        204
    );
    assert_eq!(spooled(app.dir.path()), Vec::<PathBuf>::new());
}

/// A resume that finds the kept file unreadable ends the upload, and the
/// file goes with it: nothing can parse it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_file_no_resume_can_read_goes() {
    let app = spawn_app();
    let id = cancelled_while_parsing(&app).await;
    let files = spooled(app.dir.path());
    assert_eq!(files.len(), 1, "kept for a resume");
    // Damaged on disk since: no longer a CSV of this export.
    std::fs::write(&files[0], [0xffu8, 0xfe, 0x00, 0xd8, 0x00, 0x00, 0x01]).unwrap();
    let r = app
        .request(Method::POST, &format!("/api/uploads/{id}/resume"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spooled(app.dir.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "resume answered {status}; the unreadable file stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ended, saying why, and naming no file any more.
    let record = app.get_json(&format!("/api/uploads/{id}")).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert!(
        record["error"].as_str().unwrap().contains("big.csv"),
        "{record}"
    );
    assert!(record["source"].is_null(), "{record}");
}

/// Writes `records` (and a file in the spool for each `(name, record)`)
/// into the database of `dir`, through the engine, as an earlier process
/// would have left them.
fn prepare(dir: &Path, records: Vec<(Option<&str>, UploadRecord)>) -> Vec<PathBuf> {
    let spool = dir.join("api.redb.spool");
    let mut settings = Settings::default();
    settings.storage.path = dir.join("api.redb");
    let mut files = Vec::new();
    let mut prepared = Vec::new();
    for (name, mut record) in records {
        if let Some(name) = name {
            record.source = Some(spool.join(name));
            files.push(spool.join(name));
        }
        prepared.push(record);
    }
    let written = files.clone();
    // An actix System of its own, on a thread of its own (the test's
    // runtime cannot host one).
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let engine = Engine::start(settings, Analyzer::lexicon()).unwrap();
            // After the start (which sweeps what no record needs), as the
            // upload handler writes them.
            std::fs::create_dir_all(&spool).unwrap();
            for file in &written {
                std::fs::write(file, "conversation_id,sender,message\n").unwrap();
            }
            for record in prepared {
                engine
                    .writer()
                    .send(PutUpload(record))
                    .await
                    .unwrap()
                    .unwrap();
            }
            engine.shutdown().await;
        })
    })
    .join()
    .unwrap();
    files
}

fn record(status: Stage, parsed: bool, finished_days_ago: Option<i64>) -> UploadRecord {
    let now = Utc::now();
    UploadRecord {
        id: Uuid::new_v4(),
        filename: "chats.csv".into(),
        format: "csv".into(),
        status,
        analyzer: "lexicon".into(),
        model: String::new(),
        created_at: now - TimeDelta::days(finished_days_ago.unwrap_or(0) + 1),
        finished_at: finished_days_ago.map(|d| now - TimeDelta::days(d)),
        counts: Default::default(),
        llm: Default::default(),
        warnings: Vec::new(),
        warnings_total: 0,
        error: None,
        source: None,
        parsed,
        progress_mark: 0,
        starts_without_progress: 0,
        ingest: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_nothing_needs_are_swept_at_start_and_expired_uploads_take_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let cancelled = record(Stage::Cancelled, false, Some(0));
    let expired = record(Stage::Cancelled, false, Some(10));
    let (kept_id, expired_id) = (cancelled.id, expired.id);
    let files = prepare(
        dir.path(),
        vec![
            // Resumable: its parse was not sealed.
            (Some("resumable.csv"), cancelled),
            // Sealed just before a crash, so its file was never removed.
            (Some("sealed.csv"), record(Stage::Completed, true, Some(0))),
            // Resumable, but past retention.
            (Some("expired.csv"), expired),
            (None, record(Stage::Completed, true, Some(0))),
        ],
    );
    // A body received when the process died, never recorded.
    let stray = dir.path().join("api.redb.spool/0b7c.csv");
    std::fs::write(&stray, "x").unwrap();
    let mut settings = Settings::default();
    settings.storage.retention_days = 5;
    let app = spawn_with(Options {
        settings,
        dir: Some(dir),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .get(&format!("/api/uploads/{expired_id}"))
        .await
        .status()
        != 404
    {
        assert!(Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(spooled(app.dir.path()), vec![files[0].clone()]);
    assert_eq!(
        app.get(&format!("/api/uploads/{kept_id}")).await.status(),
        200
    );
}
