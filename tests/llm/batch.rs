//! Batch mode against the fake server's Files and Batch APIs: a whole
//! upload, kill -9 mid-batch then resume (the same batch, nothing paid
//! twice), partial failures, expiry and cancel.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{BatchConfig, FakeConfig, FakeServer};
use powerpulse::analyze::openai::batch::BatchStatus;
use powerpulse::analyze::{Analyzer, OpenAiAnalyzer};
use powerpulse::config::{Backend, LlmMode, Settings};
use powerpulse::engine::Engine;
use powerpulse::model::Stage;
use powerpulse::pipeline::Submission;
use secrecy::SecretString;
use serde_json::Value;

use super::{KEY, export, openai_settings, summary};

fn fake(batch: BatchConfig) -> FakeServer {
    FakeServer::start(FakeConfig {
        batch,
        ..Default::default()
    })
    .unwrap()
}

fn command(dir: &Path, server: &FakeServer, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
    command
        .args(args)
        .current_dir(dir)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", server.base_url())
        .env("POWERPULSE_DB", dir.join("batch.redb"))
        .env("POWERPULSE__ANALYZER__OPENAI__MODE", "batch")
        .env("POWERPULSE__ANALYZER__OPENAI__BATCH_POLL_MS", "20")
        .env("POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS", "5");
    command
}

fn analyze(dir: &Path, server: &FakeServer, file: &Path) -> Value {
    let out = command(
        dir,
        server,
        &[
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

#[test]
fn an_upload_is_analysed_in_one_batch_at_half_the_price() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake(BatchConfig::default());
    let file = export(dir.path(), 80, 11);
    let s = analyze(dir.path(), &server, &file);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let stats = server.stats();
    assert_eq!(stats.batches_created, 1, "{stats:?}");
    assert_eq!(stats.requests, 0, "no sync calls: {stats:?}");
    assert_eq!(
        s["analyzed"].as_u64().unwrap(),
        stats.batch_requests_answered
    );
    assert_eq!(stats.conversations_answered_more_than_once, 0);
    // gpt-4o at half price: $1.25 / $5 per million.
    let cost = s["llm"]["cost_usd"].as_f64().unwrap();
    let expected = (stats.batch_prompt_tokens as f64 * 1.25
        + stats.batch_completion_tokens as f64 * 5.0)
        / 1e6;
    assert!((cost - expected).abs() < 1e-9, "{cost} vs {expected}");
    // Everything it held was one input file, keyed by content.
    let batch = &server.batches()[0];
    assert_eq!(batch["request_counts"]["total"], s["analyzed"]);
    assert!(batch["metadata"]["powerpulse_job"].is_string());
}

#[test]
fn a_kill_mid_batch_then_resume_picks_the_same_batch_up() {
    // Some polls first, so the batch id is on disk.
    kill_then_resume(Duration::from_millis(300));
}

#[test]
fn a_kill_as_the_batch_is_created_then_resume_finds_it_by_its_tag() {
    // At once: most often before the batch id is committed, so the resume
    // must find the batch by the job id it was tagged with.
    kill_then_resume(Duration::ZERO);
}

fn kill_then_resume(after_create: Duration) {
    let dir = tempfile::tempdir().unwrap();
    // The batch stays in progress until told otherwise.
    let server = fake(BatchConfig {
        per_request: Duration::from_secs(3600),
        ..BatchConfig::default()
    });
    let file = export(dir.path(), 60, 12);
    let mut child = command(
        dir.path(),
        &server,
        &[
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().batches_created == 0 {
        assert!(Instant::now() < deadline, "no batch was created");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(after_create);
    child.kill().unwrap();
    child.wait().unwrap();

    let listed = command(dir.path(), &server, &["uploads", "--json"])
        .output()
        .unwrap();
    let uploads: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = uploads[0]["id"].as_str().unwrap().to_string();
    // The provider finishes the batch meanwhile.
    server.update(|c| c.batch.per_request = Duration::ZERO);
    let out = command(
        dir.path(),
        &server,
        &["analyze", "--resume", &id, "--json", "--analyzer", "openai"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["status"], "completed", "{s}");
    let stats = server.stats();
    assert_eq!(stats.batches_created, 1, "no second batch: {stats:?}");
    assert_eq!(stats.files_uploaded, 1);
    assert_eq!(stats.requests, 0);
    assert_eq!(stats.conversations_answered_more_than_once, 0);
    assert_eq!(
        s["analyzed"].as_u64().unwrap(),
        stats.batch_requests_answered
    );
}

#[test]
fn a_custom_id_answered_twice_keeps_its_valid_answer_and_every_line_is_paid_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake(BatchConfig {
        duplicate_lines: 1.0,
        stray_lines: 0.5,
        ..BatchConfig::default()
    });
    let file = export(dir.path(), 60, 16);
    let s = analyze(dir.path(), &server, &file);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let stats = server.stats();
    assert_eq!(stats.batches_created, 1, "nothing asked again: {stats:?}");
    assert_eq!(stats.requests, 0);
    assert_eq!(
        s["analyzed"].as_u64().unwrap(),
        stats.batch_requests_answered
    );
    // Every line billed, the invalid twins and the strays included, at
    // half of gpt-4o's price.
    let cost = s["llm"]["cost_usd"].as_f64().unwrap();
    let billed = (stats.batch_prompt_tokens as f64 * 1.25
        + stats.batch_completion_tokens as f64 * 5.0)
        / 1e6;
    assert!((cost - billed).abs() < 1e-9, "{cost} vs {billed}");
}

#[test]
fn failed_and_invalid_lines_go_to_a_follow_up_batch_then_sync_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake(BatchConfig {
        line_error: 0.15,
        line_server_error: 0.1,
        invalid_content: 0.15,
        ..BatchConfig::default()
    });
    let file = export(dir.path(), 120, 13);
    let s = analyze(dir.path(), &server, &file);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let stats = server.stats();
    assert_eq!(stats.batches_created, 2, "batch_rounds = 2: {stats:?}");
    assert_eq!(stats.conversations_answered_more_than_once, 0, "{stats:?}");
    let batches = server.batches();
    let second = batches[1]["request_counts"]["total"].as_u64().unwrap();
    let first = batches[0]["request_counts"]["total"].as_u64().unwrap();
    assert!(second > 0 && second < first / 2, "{first} then {second}");
}

#[test]
fn an_expired_batch_keeps_what_finished_and_the_rest_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake(BatchConfig {
        per_request: Duration::from_millis(15),
        expire_after: Some(Duration::from_millis(300)),
        ..BatchConfig::default()
    });
    let file = export(dir.path(), 100, 14);
    let s = analyze(dir.path(), &server, &file);
    assert_eq!(s["status"], "completed", "{s}");
    let stats = server.stats();
    let batches = server.batches();
    assert_eq!(batches[0]["status"], "expired", "{batches:?}");
    // What the batches did not finish, sync calls did.
    assert!(stats.requests > 0, "{stats:?}");
    assert_eq!(stats.conversations_answered_more_than_once, 0, "{stats:?}");
    assert_eq!(
        s["analyzed"].as_u64().unwrap(),
        stats.batch_requests_answered + stats.succeeded,
        "{s} {stats:?}"
    );
}

#[test]
fn cancel_cancels_the_batch_and_keeps_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake(BatchConfig {
        per_request: Duration::from_millis(30),
        ..BatchConfig::default()
    });
    let file = export(dir.path(), 150, 15);
    let mut settings = Settings::default();
    settings.storage.path = dir.path().join("cancel.redb");
    settings.analyzer.backend = Backend::OpenAi;
    settings.analyzer.openai = openai_settings(&server);
    settings.analyzer.openai.mode = LlmMode::Batch;
    settings.analyzer.openai.batch_poll_ms = 20;
    let analyzer = Analyzer::OpenAi(
        OpenAiAnalyzer::new(&settings.analyzer.openai, SecretString::from(KEY)).unwrap(),
    );
    actix_rt::System::new().block_on(async move {
        let engine = Engine::start(settings, analyzer).unwrap();
        let mut ticket = engine
            .submit(Submission::file(file, "cancel.csv".into(), false))
            .await
            .unwrap();
        // Progress shows the batch; cancel once some requests are done.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let batch = ticket.progress.borrow().batch.clone();
            if let Some(b) = batch
                && b.completed >= 10
            {
                assert_eq!(b.status, BatchStatus::InProgress);
                assert_eq!(b.batch_ids.len(), 1);
                break;
            }
            assert!(Instant::now() < deadline, "no batch progress");
            let _ = tokio::time::timeout(Duration::from_secs(1), ticket.progress.changed()).await;
        }
        engine.cancel(ticket.upload_id).await.unwrap();
        let report = tokio::time::timeout(Duration::from_secs(20), &mut ticket.done)
            .await
            .expect("the upload ends after its batch is cancelled")
            .unwrap()
            .unwrap();
        assert_eq!(report.record.status, Stage::Cancelled);
        let stats = server.stats();
        assert_eq!(stats.batches_cancelled, 1, "{stats:?}");
        assert_eq!(stats.requests, 0, "no sync calls after a cancel");
        let counts = report.record.counts;
        assert_eq!(counts.analyzed, stats.batch_requests_answered, "{counts:?}");
        assert!(counts.analyzed >= 10 && counts.processed() < counts.conversations);
        engine.shutdown().await;
    });
}
