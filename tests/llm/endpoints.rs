//! Several endpoints, failover, outages and real servers' quirks, through
//! the binary against fake servers: work shared by free capacity, results
//! naming the endpoint that made them, an endpoint dying mid-run, an outage
//! that stops an upload (resumable), and a llama-cpp-python-like server
//! whose structured-output mode is negotiated and remembered.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Faults, Latency, ServerKind};
use serde_json::Value;

use super::{KEY, export, summary};

fn powerpulse(dir: &Path, db: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
    command
        .args(args)
        .current_dir(dir)
        .env("OPENAI_API_KEY", KEY)
        .env("POWERPULSE_DB", dir.join(db))
        .env("POWERPULSE__ANALYZER__BACKEND", "openai")
        .env("POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS", "5");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn analyze(dir: &Path, db: &str, file: &Path, env: &[(&str, &str)]) -> Output {
    powerpulse(dir, db, &["analyze", file.to_str().unwrap(), "--json"], env)
}

/// `[[analyzer.openai.endpoints]]` as an environment value: `(name, server,
/// extra keys)`.
fn endpoints(list: &[(&str, &FakeServer, &str)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(name, server, extra)| {
            format!(
                "{{name = \"{name}\", base_url = \"{}\"{extra}}}",
                server.base_url()
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn limited(rpm: u32) -> FakeServer {
    FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(20)),
        requests_per_minute: Some(rpm),
        ..FakeConfig::default()
    })
    .unwrap()
}

#[test]
fn endpoints_share_the_work_by_capacity_and_each_result_names_its_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (east, west) = (limited(1200), limited(2400));
    let file = export(dir.path(), 120, 31);
    let list = endpoints(&[
        ("east", &east, ", requests_per_minute = 1200"),
        ("west", &west, ", requests_per_minute = 2400"),
    ]);
    let out = analyze(
        dir.path(),
        "two.redb",
        &file,
        &[
            ("POWERPULSE__ANALYZER__OPENAI__ENDPOINTS", list.as_str()),
            ("POWERPULSE__ANALYZER__CONCURRENCY", "16"),
        ],
    );
    let s = summary(&out);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let analyzed = s["analyzed"].as_u64().unwrap();
    let (e, w) = (east.stats(), west.stats());
    // Nothing answered twice, on either or across both.
    assert_eq!(
        e.distinct_conversations_answered + w.distinct_conversations_answered,
        analyzed
    );
    assert_eq!(e.conversations_answered_more_than_once, 0);
    assert_eq!(w.conversations_answered_more_than_once, 0);
    // By free capacity: west, twice as fast, takes about twice the work.
    let share = w.requests as f64 / (e.requests + w.requests) as f64;
    assert!((0.55..0.8).contains(&share), "west took {share:.2}");
    assert_eq!(e.rate_limited + w.rate_limited, 0, "paced, not refused");
    // The summary breaks usage down by endpoint.
    let rows = s["endpoints"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["endpoint"] == name).unwrap().clone();
    assert_eq!(
        row("east")["analyzed"].as_u64().unwrap() + row("west")["analyzed"].as_u64().unwrap(),
        analyzed
    );
    assert_eq!(row("east")["llm"]["requests"].as_u64().unwrap(), e.requests);
    assert_eq!(row("west")["llm"]["requests"].as_u64().unwrap(), w.requests);
    // Each conversation's row names its endpoint.
    let exported = powerpulse(
        dir.path(),
        "two.redb",
        &["export", "--format", "jsonl"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&exported.stdout);
    let named = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["endpoint"] == "east" || r["endpoint"] == "west")
        .count() as u64;
    assert_eq!(named, analyzed, "{stdout}");
}

#[test]
fn an_endpoint_that_dies_hands_its_work_to_the_other_and_nothing_is_paid_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (steady, doomed) = (limited(3000), limited(3000));
    let file = export(dir.path(), 150, 32);
    let list = endpoints(&[("steady", &steady, ""), ("doomed", &doomed, "")]);
    let child = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args(["analyze", file.to_str().unwrap(), "--json"])
        .current_dir(dir.path())
        .env("OPENAI_API_KEY", KEY)
        .env("POWERPULSE_DB", dir.path().join("failover.redb"))
        .env("POWERPULSE__ANALYZER__BACKEND", "openai")
        .env("POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS", "5")
        .env("POWERPULSE__ANALYZER__OPENAI__REQUESTS_PER_MINUTE", "3000")
        .env("POWERPULSE__ANALYZER__CONCURRENCY", "8")
        .env("POWERPULSE__ANALYZER__OPENAI__ENDPOINTS", &list)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A third of the way in, one endpoint goes away for good.
    let deadline = Instant::now() + Duration::from_secs(60);
    while doomed.stats().succeeded < 25 {
        assert!(Instant::now() < deadline, "the doomed endpoint got no work");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut doomed = doomed;
    doomed.halt();
    let doomed_stats = doomed.stats();
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["status"], "completed");
    assert_eq!(s["failed"], 0, "{s}");
    let analyzed = s["analyzed"].as_u64().unwrap();
    let steady_stats = steady.stats();
    assert_eq!(
        steady_stats.distinct_conversations_answered + doomed_stats.distinct_conversations_answered,
        analyzed,
        "every conversation answered once, by one endpoint or the other"
    );
}

#[test]
fn an_outage_stops_the_upload_resumable_naming_the_provider_and_a_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(FakeConfig {
        faults: Faults {
            unavailable: 1.0,
            ..Faults::default()
        },
        ..FakeConfig::default()
    })
    .unwrap();
    let file = export(dir.path(), 40, 33);
    let env = [
        ("OPENAI_BASE_URL", server.base_url()),
        ("POWERPULSE__ANALYZER__CONCURRENCY", "4".to_string()),
        ("POWERPULSE__ANALYZER__OUTAGE_FAILURES", "6".to_string()),
        (
            "POWERPULSE__ANALYZER__OUTAGE_TIMEOUT_SECONDS",
            "1".to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = analyze(dir.path(), "outage.redb", &file, &env);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert_eq!(s["status"], "failed");
    let error = s["error"].as_str().unwrap();
    assert!(error.contains("provider unavailable since"), "{error}");
    assert!(error.contains("HTTP 503"), "{error}");
    assert!(
        error.contains("The engine is currently overloaded"),
        "the provider's own answer: {error}"
    );
    // Never attempted is not failed: nothing was recorded as failed.
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["analyzed"], 0, "{s}");
    // It stopped sending: the failures that showed the outage, the calls
    // already in flight, one probe.
    let sent = server.stats().requests;
    assert!(sent <= 6 + 4 + 1, "{sent} requests");

    // The provider is back: a resume finishes it.
    server.update(|c| c.faults = Faults::default());
    let id = s["upload_id"].as_str().unwrap();
    let out = powerpulse(
        dir.path(),
        "outage.redb",
        &["analyze", "--resume", id, "--json"],
        &env,
    );
    let s = summary(&out);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["status"], "completed");
    assert_eq!(s["failed"], 0);
    assert_eq!(
        s["analyzed"].as_u64().unwrap() + s["skipped_already_processed"].as_u64().unwrap(),
        s["conversations_processed"].as_u64().unwrap()
    );
}

#[test]
fn a_resume_retries_conversations_that_failed_for_want_of_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    // No retries, one call at a time, an outage stops at once: the calls
    // before the outage showed fail, and the upload stops.
    let server = FakeServer::start(FakeConfig {
        faults: Faults {
            unavailable: 1.0,
            ..Faults::default()
        },
        ..FakeConfig::default()
    })
    .unwrap();
    let file = export(dir.path(), 30, 34);
    let env = [
        ("OPENAI_BASE_URL", server.base_url()),
        ("POWERPULSE__ANALYZER__OPENAI__MAX_RETRIES", "0".to_string()),
        ("POWERPULSE__ANALYZER__CONCURRENCY", "1".to_string()),
        ("POWERPULSE__ANALYZER__OUTAGE_FAILURES", "5".to_string()),
        (
            "POWERPULSE__ANALYZER__OUTAGE_TIMEOUT_SECONDS",
            "0".to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = analyze(dir.path(), "retry.redb", &file, &env);
    let first = summary(&out);
    assert_eq!(first["status"], "failed", "{first}");
    // The fifth failure showed the outage: it is the outage's, not failed.
    assert_eq!(first["failed"], 4, "{first}");
    assert_eq!(server.stats().requests, 5);

    server.update(|c| c.faults = Faults::default());
    let id = first["upload_id"].as_str().unwrap();
    let out = powerpulse(
        dir.path(),
        "retry.redb",
        &["analyze", "--resume", id, "--json"],
        &env,
    );
    let s = summary(&out);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["failed"], 0, "the failed ones were tried again: {s}");
    let analyzed = s["analyzed"].as_u64().unwrap();
    assert_eq!(
        analyzed + s["skipped_already_processed"].as_u64().unwrap(),
        s["conversations_processed"].as_u64().unwrap()
    );
    // The failed attempts are still counted.
    assert_eq!(s["llm"]["requests"].as_u64().unwrap(), 4 + analyzed);
}

fn local_server() -> FakeServer {
    FakeServer::start(FakeConfig {
        server: ServerKind::LlamaCppPython,
        ..FakeConfig::default()
    })
    .unwrap()
}

#[test]
fn a_local_server_refusing_json_schema_is_negotiated_once_and_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let server = local_server();
    let file = export(dir.path(), 16, 35);
    let env = [
        ("OPENAI_BASE_URL", server.base_url()),
        ("POWERPULSE__ANALYZER__CONCURRENCY", "4".to_string()),
        ("POWERPULSE__ANALYZER__OPENAI__MODEL", "qwen2.5".to_string()),
        ("RUST_LOG", "powerpulse=warn".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = analyze(dir.path(), "local.redb", &file, &env);
    let s = summary(&out);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let processed = s["conversations_processed"].as_u64().unwrap();
    assert_eq!(
        s["analyzed"].as_u64().unwrap() + s["skipped_already_processed"].as_u64().unwrap(),
        processed
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stepping down"),
        "the log says so: {stderr}"
    );
    let stats = server.stats();
    // Refused only by the calls already in flight when the first refusal came.
    assert!(
        (1..=4).contains(&stats.invalid_requests),
        "{} refusals",
        stats.invalid_requests
    );
    let analyzed = s["analyzed"].as_u64().unwrap();
    assert_eq!(stats.succeeded, analyzed);
    let sent = server.recent_requests();
    assert_eq!(
        sent.last().unwrap()["response_format"]["type"],
        "json_object"
    );
    assert!(sent.last().unwrap()["response_format"]["schema"].is_object());

    // The next run starts where this one ended: no refusal.
    let again = export(dir.path(), 16, 36);
    let before = server.stats().invalid_requests;
    let out = analyze(dir.path(), "local.redb", &again, &env);
    assert!(out.status.success(), "{}", summary(&out));
    assert_eq!(server.stats().invalid_requests, before);
}

#[test]
fn check_negotiates_a_local_server_and_the_first_upload_starts_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = local_server();
    // A reasoning model's name: "auto" sends max_completion_tokens, which
    // this server ignores.
    let env = [
        ("OPENAI_BASE_URL", server.base_url()),
        ("POWERPULSE__ANALYZER__OPENAI__MODEL", "o4-mini".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = powerpulse(dir.path(), "checked.redb", &["check"], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "token budget: max_tokens (the server ignores max_completion_tokens: switched)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("structured output: response_format json_object with the schema"),
        "{stdout}"
    );
    assert!(stdout.contains("remembered in"), "{stdout}");
    let refusals = server.stats().invalid_requests;
    assert_eq!(refusals, 1, "one json_schema refused");

    let file = export(dir.path(), 12, 37);
    let out = analyze(dir.path(), "checked.redb", &file, &env);
    assert!(out.status.success(), "{}", summary(&out));
    assert_eq!(server.stats().invalid_requests, refusals, "started there");
    let last = server.recent_requests().pop().unwrap();
    assert_eq!(last["max_tokens"], 64 + 512);
    assert!(last.get("max_completion_tokens").is_none());
}
