//! The LLM analyzer against the project's fake OpenAI server, over real HTTP
//! on 127.0.0.1: faults, rate limits, 429 storms, cancellation, quota, keys.

#[path = "../../examples/support/synth.rs"]
mod synth;

mod batch;
mod cost;
mod endpoints;
mod privacy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Faults, Latency};
use powerpulse::analyze::{Analyzer, OpenAiAnalyzer};
use powerpulse::config::{Backend, RateSetting, Settings};
use powerpulse::engine::Engine;
use powerpulse::model::{Conversation, Message, Role, Stage};
use powerpulse::pipeline::Submission;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-DO-NOT-LOG-4f9a1c";

fn export(dir: &Path, conversations: usize, seed: u64) -> PathBuf {
    let path = dir.join(format!("export-{conversations}-{seed}.csv"));
    let rows = synth::generate(conversations, seed);
    synth::write_csv(&rows, std::fs::File::create(&path).unwrap()).unwrap();
    path
}

/// The `--json` summary a run printed (the run's output when it is not one).
fn summary(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn distinct_conversations(n: usize) -> Vec<Conversation> {
    (0..n)
        .map(|i| Conversation {
            id: format!("c{i}"),
            messages: vec![Message {
                role: Role::Customer,
                text: format!(
                    "Conversation {i}: my meter {i} shows a strange reading, please help."
                ),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: false,
            }],
        })
        .collect()
}

/// The fake server answering after a fixed delay, with no limits or faults.
fn fixed_latency(ms: u64) -> FakeServer {
    FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(ms)),
        ..Default::default()
    })
    .unwrap()
}

fn openai_settings(server: &FakeServer) -> powerpulse::config::OpenAiSettings {
    let mut s = Settings::default().analyzer.openai;
    s.base_url = server.base_url();
    s.timeout_seconds = 1;
    s
}

#[test]
fn ten_percent_faults_lose_nothing_and_pay_for_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(5),
            max: Duration::from_millis(40),
        },
        faults: Faults::uniform(0.10),
        hang: Duration::from_secs(3),
        ..Default::default()
    })
    .unwrap();
    let file = export(dir.path(), 300, 9);
    let out = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args([
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ])
        .current_dir(dir.path())
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", server.base_url())
        .env("POWERPULSE_DB", dir.path().join("llm.redb"))
        .env("POWERPULSE__ANALYZER__CONCURRENCY", "32")
        .env("POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS", "1")
        .env("RUST_LOG", "powerpulse=trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let conversations = s["conversations_processed"].as_u64().unwrap();
    let analyzed = s["analyzed"].as_u64().unwrap();
    let skipped = s["skipped_already_processed"].as_u64().unwrap();
    assert_eq!(s["failed"], 0, "{stdout}");
    assert_eq!(analyzed + skipped, conversations);
    let stats = server.stats();
    assert!(stats.faults > 10, "faults were injected: {stats:?}");
    assert_eq!(stats.conversations_answered_more_than_once, 0, "{stats:?}");
    assert_eq!(stats.distinct_conversations_answered, analyzed);
    assert_eq!(s["llm"]["requests"].as_u64().unwrap(), stats.requests);
    assert!(s["llm"]["retries"].as_u64().unwrap() >= stats.faults);
    assert!(s["llm"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(s["llm"]["cost_usd"].as_f64().unwrap() > 0.0);
    // The key was sent, and never written to the logs.
    assert_eq!(stats.authorization_seen, vec![format!("Bearer {KEY}")]);
    assert!(
        stderr.contains("chat completion"),
        "trace logs were captured"
    );
    assert!(!stderr.contains(KEY), "the API key leaked into the logs");
    assert!(!stdout.contains(KEY));
    // The topic came in the same call, from the schema's enum of the
    // configured topics (the fake server picks among them).
    let store = powerpulse::store::Store::open(dir.path().join("llm.redb")).unwrap();
    let id = store.uploads().unwrap()[0].id;
    let topics = store.summary(id).unwrap().topics;
    let names: Vec<String> = powerpulse::config::TopicSettings::defaults()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(topics.len() > 1, "{topics:?}");
    for t in &topics {
        assert!(names.contains(t.topic.as_ref().unwrap()), "{t:?}");
    }
    let counted: u64 = topics.iter().map(|t| t.conversations).sum();
    assert_eq!(counted, conversations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_equal_to_the_servers_keep_429s_under_one_percent() {
    let (rpm, tpm) = (3_000, 1_500_000);
    let server = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(20)),
        requests_per_minute: Some(rpm),
        tokens_per_minute: Some(tpm),
        ..Default::default()
    })
    .unwrap();
    let mut s = openai_settings(&server);
    s.requests_per_minute = RateSetting::PerMinute(rpm);
    s.tokens_per_minute = RateSetting::PerMinute(tpm);
    let analyzer = OpenAiAnalyzer::new(&s, SecretString::from(KEY)).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for c in distinct_conversations(250) {
        let a = analyzer.clone();
        tasks.spawn(async move { a.analyze(&c, &CancellationToken::new()).await });
    }
    let mut ok = 0;
    while let Some(outcome) = tasks.join_next().await {
        ok += usize::from(outcome.unwrap().result.is_ok());
    }
    assert_eq!(ok, 250);
    let stats = server.stats();
    assert!(
        stats.rate_limited * 100 <= stats.requests,
        "{} of {} requests were rate limited",
        stats.rate_limited,
        stats.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_pauses_the_whole_pool() {
    let server = fixed_latency(5);
    let retry_after = Duration::from_millis(1500);
    server.rate_limit_storm(3, retry_after);
    let mut s = openai_settings(&server);
    s.requests_per_minute = RateSetting::PerMinute(600_000);
    s.tokens_per_minute = RateSetting::PerMinute(100_000_000);
    let analyzer = OpenAiAnalyzer::new(&s, SecretString::from(KEY)).unwrap();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in distinct_conversations(60) {
        let a = analyzer.clone();
        tasks.spawn(async move { a.analyze(&c, &CancellationToken::new()).await });
    }
    let mut rate_limited = 0;
    while let Some(outcome) = tasks.join_next().await {
        let o = outcome.unwrap();
        assert!(o.result.is_ok());
        rate_limited += o.usage.rate_limited;
    }
    let stats = server.stats();
    assert_eq!(stats.rate_limited, 3);
    assert_eq!(rate_limited, 3);
    assert_eq!(
        stats.requests_during_retry_after, 0,
        "no request may arrive before retry-after: {stats:?}"
    );
    assert!(started.elapsed() >= retry_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_quota_is_permanent_and_not_retried() {
    let server = FakeServer::start(FakeConfig::default()).unwrap();
    server.set_insufficient_quota(true);
    let analyzer = OpenAiAnalyzer::new(&openai_settings(&server), SecretString::from(KEY)).unwrap();
    let c = &distinct_conversations(1)[0];
    let o = analyzer.analyze(c, &CancellationToken::new()).await;
    let err = o.result.unwrap_err().to_string();
    assert!(err.contains("quota"), "{err}");
    assert_eq!(server.stats().requests, 1);
    assert!(matches!(
        analyzer.analyze(c, &CancellationToken::new()).await.result,
        Err(powerpulse::analyze::AnalyzeError::Fatal {
            kind: powerpulse::analyze::FatalKind::QuotaExhausted,
            ..
        })
    ));
}

#[test]
fn cancelling_stops_llm_traffic_within_a_second_and_keeps_results() {
    let dir = tempfile::tempdir().unwrap();
    let server = fixed_latency(150);
    let file = export(dir.path(), 600, 4);
    let mut settings = Settings::default();
    settings.storage.path = dir.path().join("cancel.redb");
    settings.analyzer.backend = Backend::OpenAi;
    settings.analyzer.concurrency = 16;
    settings.analyzer.openai = openai_settings(&server);
    settings.analyzer.openai.timeout_seconds = 30;
    let analyzer = Analyzer::OpenAi(
        OpenAiAnalyzer::new(&settings.analyzer.openai, SecretString::from(KEY)).unwrap(),
    );
    actix_rt::System::new().block_on(async move {
        let engine = Engine::start(settings, analyzer).unwrap();
        let mut ticket = engine
            .submit(Submission::file(file, "cancel.csv".into(), false))
            .await
            .unwrap();
        // Let it get going.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ticket.progress.borrow().analyzed < 40 {
            assert!(Instant::now() < deadline, "no progress");
            let _ = tokio::time::timeout(Duration::from_secs(1), ticket.progress.changed()).await;
        }
        engine.cancel(ticket.upload_id).await.unwrap();
        let cancelled_at = Instant::now();
        let report = tokio::time::timeout(Duration::from_secs(1), &mut ticket.done)
            .await
            .expect("the upload ends within a second of cancel")
            .unwrap()
            .unwrap();
        assert_eq!(report.record.status, Stage::Cancelled);
        let settle = Duration::from_secs(1).saturating_sub(cancelled_at.elapsed());
        tokio::time::sleep(settle).await;
        let at_one_second = server.stats().requests;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            server.stats().requests,
            at_one_second,
            "traffic continued after cancel"
        );
        let counts = report.record.counts;
        assert!(
            counts.analyzed >= 40 && counts.processed() < counts.conversations,
            "{counts:?}"
        );
        // A cancelled upload stays cancelled, with its partial results stored.
        let record = engine
            .reader()
            .send(powerpulse::store::actor::GetUpload {
                upload_id: ticket.upload_id,
            })
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(record.status, Stage::Cancelled);
        assert_eq!(record.counts.analyzed, counts.analyzed);
        assert!(matches!(
            engine.cancel(ticket.upload_id).await,
            Err(powerpulse::progress::actor::CancelError::AlreadyFinished { .. })
        ));
        engine.shutdown().await;
    });
}

#[test]
fn repeated_content_within_an_upload_is_paid_for_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = fixed_latency(15);
    // 200 conversations, only 10 distinct contents, spread over the file.
    let mut csv = String::from("conversation_id,sender,message\n");
    for i in 0..200 {
        let topic = i % 10;
        csv.push_str(&format!(
            "c{i:03},customer,My meter {topic} is broken again\n"
        ));
        csv.push_str(&format!("c{i:03},agent,Sorry about meter {topic}\n"));
    }
    let file = dir.path().join("dups.csv");
    std::fs::write(&file, csv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args([
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ])
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", server.base_url())
        .env("POWERPULSE_DB", dir.path().join("dups.redb"))
        .env("POWERPULSE__ANALYZER__CONCURRENCY", "4")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["analyzed"], 10, "{s}");
    assert_eq!(s["skipped_already_processed"], 190);
    let stats = server.stats();
    assert_eq!(stats.requests, 10, "{stats:?}");
    assert_eq!(stats.conversations_answered_more_than_once, 0);
}

#[test]
fn agent_and_language_are_recorded_whichever_analyzer() {
    // Read on the pool's threads beside a free analysis, on the reader for
    // a paid one: both paths record the same facets.
    let dir = tempfile::tempdir().unwrap();
    let server = fixed_latency(5);
    let mut csv = String::from("conversation_id,sender,sender_name,message\n");
    for i in 0..40usize {
        let text = if i.is_multiple_of(2) {
            "There is no power in our street since morning, please help."
        } else {
            "हाम्रो घरमा बिहानदेखि बत्ती छैन, कहिले आउँछ?"
        };
        csv.push_str(&format!("c{i:03},customer,Customer {i},\"{text} ({i})\"\n"));
        csv.push_str(&format!("c{i:03},agent,Agent {},We are on it.\n", i % 3));
    }
    let file = dir.path().join("facets.csv");
    std::fs::write(&file, csv).unwrap();
    for analyzer in ["lexicon", "openai"] {
        let db = dir.path().join(format!("{analyzer}.redb"));
        // The binary on this database and the fake server; its output once
        // it succeeded.
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
                .args(args)
                .env("OPENAI_API_KEY", KEY)
                .env("OPENAI_BASE_URL", server.base_url())
                .env("POWERPULSE_DB", &db)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        let file = file.to_str().unwrap();
        run(&["analyze", file, "--json", "--analyzer", analyzer]);
        let out = run(&["export", "--format", "jsonl"]);
        let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 40, "{analyzer}");
        for row in rows {
            let id = row["conversation_id"].as_str().unwrap();
            let i: usize = id[1..].parse().unwrap();
            let language = if i.is_multiple_of(2) { "en" } else { "ne" };
            assert_eq!(row["language"], language, "{analyzer} {row}");
            assert_eq!(row["agent"], format!("Agent {}", i % 3), "{analyzer} {row}");
        }
    }
}

// ---- a hostile provider (issue: hardening) -------------------------------------

mod hostile {
    use super::*;
    use fake_openai::Hostile;
    use powerpulse::analyze::{AnalyzeError, FailureKind, FatalKind};

    async fn analyze_one(analyzer: &OpenAiAnalyzer) -> powerpulse::analyze::Outcome {
        let c = &distinct_conversations(1)[0];
        analyzer.analyze(c, &CancellationToken::new()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn absurd_retry_after_values_never_panic_and_long_ones_are_capped() {
        let server = fixed_latency(0);
        server.misbehave(
            ["1e20", "NaN", "-5", "inf", "18446744073709551616", "soon"]
                .map(|v| Hostile::RetryAfter(v.to_string())),
        );
        let mut s = openai_settings(&server);
        s.max_retry_wait_seconds = 1;
        let analyzer = OpenAiAnalyzer::new(&s, SecretString::from(KEY)).unwrap();
        let outcome = analyze_one(&analyzer).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert_eq!(outcome.usage.rate_limited, 6);
        // The analyzer is still usable afterwards.
        assert!(analyze_one(&analyzer).await.result.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_after_is_honoured_on_a_503_too() {
        let server = fixed_latency(0);
        server.misbehave([Hostile::UnavailableRetryAfter("2".into())]);
        let analyzer =
            OpenAiAnalyzer::new(&openai_settings(&server), SecretString::from(KEY)).unwrap();
        let started = Instant::now();
        let outcome = analyze_one(&analyzer).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert_eq!(outcome.usage.retries, 1);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "retried after {:?}, before the 2 s the server asked for",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redirects_are_not_followed_and_the_error_names_the_url_not_the_key() {
        let server = fixed_latency(0);
        // An Azure-style key: reqwest would keep `api-key` on a cross-host redirect.
        server.misbehave([Hostile::Redirect(format!(
            "http://127.0.0.1:9/steal?key={KEY}"
        ))]);
        let mut s = openai_settings(&server);
        s.auth = powerpulse::config::AuthStyle::ApiKey;
        let analyzer = OpenAiAnalyzer::new(&s, SecretString::from(KEY)).unwrap();
        let outcome = analyze_one(&analyzer).await;
        let Err(AnalyzeError::Fatal {
            kind: FatalKind::Redirected,
            detail: message,
        }) = outcome.result
        else {
            panic!("a redirect must stop the upload: {:?}", outcome.result);
        };
        assert!(message.contains("redirect"), "{message}");
        assert!(message.contains(&server.base_url()), "{message}");
        assert_eq!(server.stats().requests, 1, "the redirect was not followed");
        // The location is quoted as the server sent it; our own key is ours
        // to hide, and the location here embeds it on purpose: redact it.
        assert!(!message.contains(KEY), "{message}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_reply_fails_the_call_without_being_held() {
        let server = fixed_latency(0);
        server.misbehave([Hostile::HugeReply(5 * 1024 * 1024)]);
        let mut s = openai_settings(&server);
        s.max_response_bytes = 4 * 1024 * 1024;
        let analyzer = OpenAiAnalyzer::new(&s, SecretString::from(KEY)).unwrap();
        let outcome = analyze_one(&analyzer).await;
        let Err(AnalyzeError::Failed {
            kind: FailureKind::ReplyTooLarge,
            detail: message,
        }) = outcome.result
        else {
            panic!("expected a failed conversation: {:?}", outcome.result);
        };
        assert!(message.contains("larger than 4194304 bytes"), "{message}");
        assert_eq!(server.stats().requests, 1, "not retried");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_reply_is_re_asked_saying_what_was_wrong() {
        let server = fixed_latency(0);
        server.misbehave([
            Hostile::Content("I think the customer is happy".into()),
            Hostile::Content(r#"{"sentiment": {"label": "meh", "score": 0}}"#.into()),
        ]);
        let analyzer =
            OpenAiAnalyzer::new(&openai_settings(&server), SecretString::from(KEY)).unwrap();
        let outcome = analyze_one(&analyzer).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        let bodies = server.recent_requests();
        assert_eq!(bodies.len(), 3);
        let first = bodies[0]["messages"].as_array().unwrap();
        assert_eq!(first.len(), 2, "system + transcript");
        for (body, quoted, problem) in [
            (&bodies[1], "I think the customer is happy", "invalid JSON"),
            (&bodies[2], "\"meh\"", "violates the schema"),
        ] {
            let messages = body["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 4, "{body}");
            assert_eq!(messages[..2], first[..], "the same question first");
            assert_eq!(messages[2]["role"], "assistant");
            assert!(messages[2]["content"].as_str().unwrap().contains(quoted));
            assert_eq!(messages[3]["role"], "user");
            let note = messages[3]["content"].as_str().unwrap();
            assert!(note.contains(problem), "{note}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn re_asks_are_bounded_by_max_retries() {
        let server = fixed_latency(0);
        server.misbehave((0..10).map(|_| Hostile::Content("nope".into())));
        let mut s = openai_settings(&server);
        s.max_retries = 2;
        let analyzer = OpenAiAnalyzer::new(&s, SecretString::from(KEY)).unwrap();
        let outcome = analyze_one(&analyzer).await;
        assert!(matches!(
            outcome.result,
            Err(AnalyzeError::Failed {
                kind: FailureKind::InvalidReply,
                ..
            })
        ));
        assert_eq!(server.stats().requests, 3);
    }
}
