//! The CLI beside a running `serve`: while the server holds the database,
//! `uploads`, `export`, `analyze`, `cancel` and `backup` go through its HTTP
//! API (found through the runtime file next to the database) and print what
//! they print offline.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Latency};
use powerpulse::store::{Store, StoreError};

use crate::helpers::*;

/// The read commands' outputs, by command line.
fn outputs(sb: &Sandbox, id: &str) -> Vec<(String, String)> {
    let commands: [&[&str]; 6] = [
        &["uploads"],
        &["uploads", "--json"],
        &["export"],
        &["export", "--format", "json"],
        &["export", "--format", "jsonl"],
        &["export", "--upload", id, "--format", "csv"],
    ];
    commands
        .iter()
        .map(|c| {
            let run = sb.run(c);
            assert_eq!(run.code, 0, "{c:?}: {}", run.stderr);
            (c.join(" "), run.stdout)
        })
        .collect()
}

/// `analyze --json` without what differs from run to run.
fn summary_without_times(run: &Run) -> serde_json::Value {
    let mut v = run.json();
    let o = v.as_object_mut().unwrap();
    o.remove("upload_id");
    o.remove("processing_time_seconds");
    v
}

#[test]
fn commands_beside_a_running_server_print_what_they_print_offline() {
    let sb = Sandbox::new();
    // Over 500 conversations per upload: exports cross page boundaries.
    let rows = conversations(1300);
    let a = sb.write("a.csv", to_csv(&rows[..2400]));
    let b = sb.write("b.jsonl", to_jsonl(&rows[2000..4800]));
    let run = sb.analyze(&a);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id_a = run.json()["upload_id"].as_str().unwrap().to_string();
    assert_eq!(sb.analyze(&b).code, 0);
    let offline = outputs(&sb, &id_a);

    let server = sb.serve(&[]);
    // The file is the server's now: opening it directly is refused.
    assert!(matches!(
        Store::open(sb.db()),
        Err(StoreError::Locked { .. })
    ));
    let online = outputs(&sb, &id_a);
    for ((command, off), (_, on)) in offline.iter().zip(&online) {
        assert!(off == on, "`{command}` differs through the server");
    }

    // analyze through the server: the summary an offline run of the same
    // file prints.
    let fresh = to_csv(&rows[4800..]);
    let c = sb.write("c.csv", &fresh);
    let remote = sb.run(&["analyze", c.to_str().unwrap(), "--json"]);
    assert_eq!(remote.code, 0, "{}", remote.stderr);
    let elsewhere = Sandbox::new();
    let local = elsewhere.analyze(&elsewhere.write("c.csv", &fresh));
    assert_eq!(local.code, 0, "{}", local.stderr);
    assert_eq!(
        summary_without_times(&remote),
        summary_without_times(&local)
    );
    assert_eq!(remote.json()["analyzed"], 100);

    let text = sb.run(&["analyze", c.to_str().unwrap()]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout
            .starts_with("Analysed 100 conversations (400 messages) from c.csv\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("already processed 100"),
        "{}",
        text.stdout
    );

    // An estimate beside the server is the server's: it reads the
    // processed index the CLI cannot open.
    let estimate = sb.run(&["analyze", "--estimate", c.to_str().unwrap(), "--json"]);
    assert_eq!(estimate.code, 0, "{}", estimate.stderr);
    assert_eq!(
        estimate.json()["checked_processed"],
        true,
        "{}",
        estimate.stdout
    );
    assert_eq!(estimate.json()["conversations"], 100);

    let listed = sb.run(&["uploads", "--json"]);
    assert_eq!(listed.json().as_array().unwrap().len(), 4);
    server.stop();
    // What the server stored is what the file holds.
    assert_eq!(sb.run(&["uploads", "--json"]).stdout, listed.stdout);
}

#[test]
fn a_database_held_without_a_server_is_a_clear_error() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(3)));
    assert_eq!(sb.analyze(&file).code, 0);
    // This test process holds the file, as a running `analyze` would.
    let held = sb.store();
    // A server over another database listens at server.bind: it is not
    // asked, since no runtime file says it serves this one.
    let other = Sandbox::new();
    assert_eq!(
        other
            .analyze(&other.write("o.csv", to_csv(&conversations(5))))
            .code,
        0
    );
    let elsewhere = other.serve(&[]);
    let bind = elsewhere.url.trim_start_matches("http://").to_string();
    let commands = [
        &["uploads"][..],
        &["export"],
        &["backup", "--output", "b.redb"],
        &["analyze", file.to_str().unwrap()],
        &["cancel", "00000000-0000-0000-0000-000000000001"],
        &["compact"],
    ];
    let runtime_file = sb.path("pp.redb.serve.json");
    for (case, expected) in [
        ("no runtime file", "no server's runtime file at"),
        ("a live pid, nobody listening", "tried http://127.0.0.1:9"),
    ] {
        if case == "a live pid, nobody listening" {
            let info = serde_json::json!({"pid": std::process::id(), "url": "http://127.0.0.1:9"});
            std::fs::write(&runtime_file, info.to_string()).unwrap();
        }
        for command in commands {
            let run = sb.run_with_env(command, &[("POWERPULSE__SERVER__BIND", &bind)]);
            assert_eq!(run.code, 1, "{case}: {command:?}");
            assert!(
                run.stderr
                    .contains("is in use by another PowerPulse process"),
                "{case}: {command:?}: {}",
                run.stderr
            );
            if command[0] != "compact" {
                assert!(
                    run.stderr.contains("no PowerPulse server answers")
                        && run.stderr.contains(expected),
                    "{case}: {command:?}: {}",
                    run.stderr
                );
            }
        }
    }
    elsewhere.stop();
    drop(held);
    assert!(!sb.path("b.redb").exists());
}

#[test]
fn a_killed_servers_runtime_file_is_ignored() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(3)));
    assert_eq!(sb.analyze(&file).code, 0);
    let before = sb.run(&["uploads", "--json"]).stdout;
    let server = sb.serve(&[]);
    server.kill();
    assert!(sb.path("pp.redb.serve.json").exists());
    // The lock went with the process: the file is opened directly.
    let run = sb.run(&["uploads", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, before);
    // The next server replaces the stale file with its own.
    let server = sb.serve(&[]);
    assert_eq!(sb.run(&["uploads", "--json"]).stdout, before);
    server.stop();
}

#[test]
fn the_token_is_sent_and_its_absence_explained() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(3)));
    assert_eq!(sb.analyze(&file).code, 0);
    let before = sb.run(&["uploads"]).stdout;
    let server = sb.serve(&[("POWERPULSE_TOKEN", "s3cret-token")]);
    let run = sb.run(&["uploads"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("POWERPULSE_TOKEN"), "{}", run.stderr);
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
    let run = sb.run_with_env(&["uploads"], &[("POWERPULSE_TOKEN", "s3cret-token")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, before);
    server.stop();
}

#[test]
fn cancel_stops_an_upload_running_in_the_server_and_analyze_reports_it() {
    let fake = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(200)),
        ..FakeConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new();
    let base = fake.base_url();
    let llm = [
        ("OPENAI_API_KEY", "sk-cli-test"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("POWERPULSE__ANALYZER__CONCURRENCY", "1"),
    ];
    let server = sb.serve_with("openai", &llm);
    // 200 conversations, one at a time, 200 ms each: 40 s unless cancelled.
    let file = sb.write("slow.csv", to_csv(&conversations(200)));
    let follower = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args(["analyze", file.to_str().unwrap(), "--json"])
        .current_dir(sb.dir.path())
        .env_remove("POWERPULSE_TOKEN")
        .env("POWERPULSE_DB", sb.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let run = sb.run(&["uploads", "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let listed = run.json();
        if let Some(u) = listed.as_array().unwrap().first()
            && u["status"] == "analyzing"
        {
            break u["id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the upload never started: {listed}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = sb.run(&["cancel", &id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("cancelling upload {id}")));

    let out = follower.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "cancelled");
    assert_eq!(summary["upload_id"], id.as_str());
    assert!(summary["analyzed"].as_u64().unwrap() < 200);

    // Cancelling again: the server's refusal, in its words.
    let run = sb.run(&["cancel", &id]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("already finished (cancelled)"),
        "{}",
        run.stderr
    );

    // Resumed through the server, it finishes what was left.
    fake.update(|c| c.latency = Latency::Fixed(Duration::ZERO));
    let run = sb.run(&["analyze", "--resume", &id, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let resumed = run.json();
    assert_eq!(resumed["status"], "completed");
    assert_eq!(resumed["upload_id"], id.as_str());
    assert_eq!(resumed["analyzed"], 200);
    server.stop();
    // Offline, the server's words.
    let run = sb.run(&["cancel", &id]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("already finished (completed)"),
        "{}",
        run.stderr
    );
    let run = sb.run(&["cancel", "00000000-0000-0000-0000-000000000001"]);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
}

/// `systemctl stop` while a Batch API batch runs: the upload stays
/// resumable, and the next start polls the same batch (no second batch,
/// nothing sent again) and finishes it.
#[test]
fn a_stop_during_a_batch_keeps_the_upload_and_the_next_start_finishes_that_batch() {
    let fake = FakeServer::start(FakeConfig {
        batch: fake_openai::BatchConfig {
            // Runs until told otherwise.
            per_request: Duration::from_secs(3600),
            ..Default::default()
        },
        ..FakeConfig::default()
    })
    .unwrap();
    let sb = Sandbox::new();
    let base = fake.base_url();
    let llm = [
        ("OPENAI_API_KEY", "sk-cli-test"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("POWERPULSE__ANALYZER__OPENAI__MODE", "batch"),
        ("POWERPULSE__ANALYZER__OPENAI__BATCH_POLL_MS", "20"),
    ];
    let server = sb.serve_with("openai", &llm);
    let file = sb.write("batch.csv", to_csv(&conversations(40)));
    let upload = format!("{}/api/upload?filename=batch.csv", server.url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sent = rt.block_on(async {
        reqwest::Client::new()
            .post(upload)
            .header("content-type", "text/csv")
            .body(std::fs::read(&file).unwrap())
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    let id = sent["upload_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The batch exists, and its id is stored (the job moved to submitted).
    while fake
        .batches()
        .first()
        .is_none_or(|b| b["status"] != "in_progress")
    {
        assert!(Instant::now() < deadline, "no batch was created");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    server.stop();

    let record = sb.store().upload(id.parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        record.status.as_str(),
        "analyzing",
        "a stop never fails an upload: {record:?}"
    );
    assert_eq!(record.error, None);

    // The provider finishes the batch; the next start picks it up.
    fake.update(|c| c.batch.per_request = Duration::ZERO);
    let server = sb.serve_with("openai", &llm);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = sb.run(&["uploads", "--json"]).json();
        let status = record[0]["status"].as_str().unwrap_or_default().to_string();
        if status == "completed" {
            break;
        }
        assert_ne!(status, "failed", "{record}");
        assert!(Instant::now() < deadline, "never finished: {record}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    let stats = fake.stats();
    assert_eq!(stats.batches_created, 1, "no second batch: {stats:?}");
    assert_eq!(stats.files_uploaded, 1, "nothing sent again");
    assert_eq!(stats.requests, 0);
    assert_eq!(stats.batch_requests_answered, 40);
}
