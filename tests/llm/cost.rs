//! What the LLM costs: packed requests, today's models, the per-upload
//! budget and the estimate, against the fake server over real HTTP.

use std::path::Path;
use std::process::{Command, Output};

use fake_openai::{FakeConfig, FakeServer, Faults};

use super::{KEY, export, summary};

/// `powerpulse` with the fake server as its LLM, `env` on top.
fn powerpulse(dir: &Path, server: &FakeServer, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
    command
        .args(args)
        .current_dir(dir)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", server.base_url())
        .env("POWERPULSE_DB", dir.join("cost.redb"))
        .env("POWERPULSE__ANALYZER__CONCURRENCY", "16")
        .env("POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS", "2");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn packed_requests_analyse_everything_once_in_fewer_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(FakeConfig {
        faults: Faults {
            schema_violation: 0.1,
            server_error: 0.05,
            ..Faults::default()
        },
        ..Default::default()
    })
    .unwrap();
    let file = export(dir.path(), 120, 4);
    let out = powerpulse(
        dir.path(),
        &server,
        &[
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ],
        &[(
            "POWERPULSE__ANALYZER__OPENAI__CONVERSATIONS_PER_REQUEST",
            "5",
        )],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    let analyzed = s["analyzed"].as_u64().unwrap();
    assert_eq!(s["failed"], 0, "{s}");
    assert!(analyzed > 100, "{s}");
    let stats = server.stats();
    // Packs of five, a few re-asked (a violation) or sent again alone.
    assert!(
        stats.requests < analyzed / 2,
        "{} requests for {analyzed} conversations",
        stats.requests
    );
    assert_eq!(stats.conversations_answered_more_than_once, 0, "{stats:?}");
    // The upload's accounting is the server's billing, shared out exactly.
    assert_eq!(
        s["llm"]["prompt_tokens"].as_u64().unwrap(),
        stats.prompt_tokens,
        "{s}"
    );
    assert_eq!(
        s["llm"]["requests"].as_u64().unwrap(),
        stats.requests,
        "{s}"
    );
}

#[test]
fn reasoning_models_get_the_parameters_they_accept_and_their_reasoning_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    // The fake refuses max_tokens and temperature 0 for gpt-5 models, as
    // the real service does.
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let file = export(dir.path(), 20, 5);
    let out = powerpulse(
        dir.path(),
        &server,
        &[
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ],
        &[("POWERPULSE__ANALYZER__OPENAI__MODEL", "gpt-5-mini")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["failed"], 0, "{s}");
    let stats = server.stats();
    assert_eq!(stats.invalid_requests, 0, "{stats:?}");
    let reasoning = s["llm"]["reasoning_tokens"].as_u64().unwrap();
    assert!(reasoning > 0, "{s}");
    assert_eq!(reasoning, stats.reasoning_tokens);
    // Priced from the built-in table: output (reasoning included) at $2/M.
    let cost = s["llm"]["cost_usd"].as_f64().unwrap();
    let expected = (stats.prompt_tokens as f64 * 0.25 + stats.completion_tokens as f64 * 2.0) / 1e6;
    assert!((cost - expected).abs() < 1e-9, "{cost} vs {expected}");
    let request = server.recent_requests().pop().unwrap();
    assert!(request.get("max_tokens").is_none() && request.get("temperature").is_none());
    assert_eq!(request["reasoning_effort"], "minimal");
}

#[test]
fn a_budget_stops_sending_before_it_is_passed_and_a_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let file = export(dir.path(), 200, 6);
    // About a tenth of what the upload needs.
    let budget = "0.02";
    let out = powerpulse(
        dir.path(),
        &server,
        &[
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ],
        &[("POWERPULSE__ANALYZER__OPENAI__MAX_COST_USD", budget)],
    );
    assert!(!out.status.success(), "the upload stops short");
    let s = summary(&out);
    assert_eq!(s["status"], "failed", "{s}");
    let error = s["error"].as_str().unwrap();
    assert!(error.contains("max_cost_usd"), "{error}");
    let spent = s["llm"]["cost_usd"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.02, "{spent}");
    let analyzed = s["analyzed"].as_u64().unwrap();
    assert!(analyzed > 0 && analyzed < 150, "{s}");
    let upload = s["upload_id"].as_str().unwrap().to_string();

    // Raised, the same upload resumes and finishes; nothing is paid twice.
    let out = powerpulse(
        dir.path(),
        &server,
        &[
            "analyze",
            "--resume",
            &upload,
            "--json",
            "--analyzer",
            "openai",
        ],
        &[("POWERPULSE__ANALYZER__OPENAI__MAX_COST_USD", "10")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(server.stats().conversations_answered_more_than_once, 0);
}

#[test]
fn an_estimate_sends_nothing_and_knows_what_was_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    let file = export(dir.path(), 60, 7);
    let estimate = |dir: &Path| {
        let out = powerpulse(
            dir,
            &server,
            &["analyze", "--estimate", file.to_str().unwrap(), "--json"],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        summary(&out)
    };
    let before = estimate(dir.path());
    assert_eq!(server.stats().requests, 0, "an estimate sends nothing");
    assert!(
        !dir.path().join("cost.redb").exists(),
        "nor creates a database"
    );
    let to_send = before["conversations_to_send"].as_u64().unwrap();
    assert!(to_send > 40, "{before}");
    assert!(before["cost_usd"]["expected"].as_f64().unwrap() > 0.0);
    assert!(
        before["batch_cost_usd"]["max"].as_f64().unwrap()
            < before["cost_usd"]["max"].as_f64().unwrap()
    );

    let out = powerpulse(
        dir.path(),
        &server,
        &[
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ],
        &[],
    );
    assert!(out.status.success());
    let s = summary(&out);
    assert_eq!(s["analyzed"].as_u64().unwrap(), to_send, "{s} vs {before}");
    // The estimate's rate-limit tokens are the ones the server counted,
    // give or take the rounding of each request's ⌈chars / 4⌉ (never under).
    let estimated = before["rate_limit_tokens"].as_u64().unwrap();
    let counted = server.stats().rate_limit_tokens;
    assert!(
        estimated >= counted && estimated <= counted + to_send,
        "{estimated} vs {counted}"
    );
    let requests = server.stats().requests;
    let after = estimate(dir.path());
    assert_eq!(server.stats().requests, requests);
    assert_eq!(after["already_processed"].as_u64().unwrap(), to_send);
    assert_eq!(after["conversations_to_send"], 0);
}
