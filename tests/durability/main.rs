//! Crash tests: the real `serve` binary is SIGKILLed at several points of an
//! upload that talks to the fake OpenAI server, restarted on the same redb
//! file, and must finish the upload with every conversation analysed once
//! and at most `concurrency` calls repeated per kill.

#[path = "../../examples/support/synth.rs"]
mod synth;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Latency};
use serde_json::Value;

const CONCURRENCY: u64 = 8;

struct Server {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(db: &Path, fake: &FakeServer) -> Server {
    spawn_serve(db, "openai", |c| {
        c.env("OPENAI_API_KEY", "sk-crash-test")
            .env("OPENAI_BASE_URL", fake.base_url())
            .env("POWERPULSE__ANALYZER__CONCURRENCY", CONCURRENCY.to_string());
    })
}

/// `serve` on a free loopback port over `db`, once it accepts connections.
fn spawn_serve(db: &Path, analyzer: &str, configure: impl FnOnce(&mut Command)) -> Server {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
    command
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--analyzer",
            analyzer,
        ])
        .env("POWERPULSE_DB", db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut command);
    let child = command.spawn().unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

impl Server {
    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `url` (a JSON resource) until `until` holds, for at most 90 s.
async fn poll(c: &reqwest::Client, url: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = get_json(c, url).await;
        if until(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upload's export, as JSON lines.
async fn export_jsonl(c: &reqwest::Client, s: &Server, id: &str) -> String {
    let url = format!("{}/api/uploads/{id}/export?format=jsonl", s.base);
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// Polls an upload's live progress.
async fn wait_for(
    c: &reqwest::Client,
    s: &Server,
    id: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    poll(c, &format!("{}/api/progress/{id}", s.base), until).await
}

/// The upload's summary and the insights agree with its exported rows: the
/// aggregates kept beside the outcomes survived the kills exactly.
async fn assert_aggregates_match_rows(c: &reqwest::Client, s: &Server, id: &str, rows: &str) {
    let mut sentiment = std::collections::BTreeMap::<String, u64>::new();
    let mut agents = std::collections::BTreeMap::<String, u64>::new();
    let mut analysed = 0;
    for line in rows.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        if let Some(label) = row["sentiment"].as_str() {
            analysed += 1;
            *sentiment.entry(label.to_string()).or_default() += 1;
            *agents
                .entry(row["agent"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    let summary = get_json(c, &format!("{}/api/uploads/{id}/summary", s.base)).await;
    for (label, n) in &sentiment {
        assert_eq!(summary["sentiment"][label], *n, "{label}: {summary}");
    }
    let by_agent: std::collections::BTreeMap<String, u64> = summary["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"].as_str().unwrap_or_default().to_string(),
                a["conversations"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_agent, agents);
    let insights = get_json(c, &format!("{}/api/insights", s.base)).await;
    assert_eq!(insights["conversations"], analysed, "{insights}");
}

fn export(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let path = dir.join("crash.csv");
    synth::write_csv(
        &synth::generate(n, seed),
        std::fs::File::create(&path).unwrap(),
    )
    .unwrap();
    path
}

/// Where in the upload the process dies.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Right after the upload is accepted: parsing or just after.
    Accepted,
    /// Once this many conversations are analysed.
    Analyzed(u64),
}

async fn crash_and_recover(kills: &[KillAt]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.redb");
    let fake = FakeServer::start(FakeConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(20),
            max: Duration::from_millis(60),
        },
        ..Default::default()
    })
    .unwrap();
    let c = client();
    let file = export(dir.path(), 300, 77);
    let mut server = start(&db, &fake);
    let r = c
        .post(format!("{}/api/upload?filename=crash.csv", server.base))
        .header("content-type", "text/csv")
        .body(std::fs::read(&file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();

    for kill in kills {
        if let KillAt::Analyzed(n) = kill {
            wait_for(&c, &server, &id, |p| {
                p["analyzed"].as_u64().unwrap_or(0) >= *n
            })
            .await;
        }
        server.kill();
        server = start(&db, &fake);
    }
    let done = wait_for(&c, &server, &id, |p| p["stage"] == "completed").await;

    let total = done["total_conversations"].as_u64().unwrap();
    assert_eq!(total, 300, "{done}");
    assert_eq!(done["processed"], total, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    let rows = export_jsonl(&c, &server, &id).await;
    let rows: Vec<Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, total, "one row per conversation");
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["conversation_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "exactly one outcome each");
    let analyzed = rows.iter().filter(|r| r["status"] == "analyzed").count() as u64;
    let skipped = rows
        .iter()
        .filter(|r| r["status"] == "skipped_already_processed")
        .count() as u64;
    assert_eq!(analyzed + skipped, total);
    assert_eq!(
        done["analyzed"].as_u64().unwrap(),
        analyzed,
        "progress agrees with the export"
    );
    assert_eq!(done["skipped"].as_u64().unwrap(), skipped);
    let jsonl = export_jsonl(&c, &server, &id).await;
    assert_aggregates_match_rows(&c, &server, &id, &jsonl).await;

    let stats = fake.stats();
    let repeated = stats.succeeded - stats.distinct_conversations_answered;
    assert!(
        repeated <= CONCURRENCY * kills.len() as u64,
        "{repeated} calls repeated over {} kills (bound {CONCURRENCY} each): {stats:?}",
        kills.len()
    );
    assert_eq!(stats.distinct_conversations_answered, analyzed);

    // Uploading the same file again costs nothing.
    let before = fake.stats().requests;
    let r = c
        .post(format!(
            "{}/api/upload?filename=again.csv&wait=true",
            server.base
        ))
        .header("content-type", "text/csv")
        .body(std::fs::read(&file).unwrap())
        .send()
        .await
        .unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["skipped_already_processed"], total, "{again}");
    assert_eq!(
        fake.stats().requests,
        before,
        "zero LLM calls for a re-upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_parsing_early_and_late_it_still_finishes_once() {
    crash_and_recover(&[
        KillAt::Accepted,
        KillAt::Analyzed(30),
        KillAt::Analyzed(220),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_repeatedly_mid_analysis() {
    crash_and_recover(&[
        KillAt::Analyzed(60),
        KillAt::Analyzed(120),
        KillAt::Analyzed(180),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_resume_finishes_an_interrupted_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.redb");
    let fake = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(40)),
        ..Default::default()
    })
    .unwrap();
    let file = export(dir.path(), 200, 5);
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
        command
            .args(args)
            .env("POWERPULSE_DB", &db)
            .env("OPENAI_API_KEY", "sk-crash-test")
            .env("OPENAI_BASE_URL", fake.base_url())
            .env("POWERPULSE__ANALYZER__CONCURRENCY", CONCURRENCY.to_string())
            .current_dir(dir.path());
        command
    };
    let mut child = run(&["analyze", file.to_str().unwrap(), "--analyzer", "openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.stats().succeeded < 50 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let listing = run(&["uploads", "--json"]).output().unwrap();
    let uploads: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let upload = &uploads[0];
    assert_eq!(upload["status"], "analyzing", "{upload}");
    let id = upload["id"].as_str().unwrap().to_string();
    let text = String::from_utf8(run(&["uploads"]).output().unwrap().stdout).unwrap();
    assert!(text.contains(&format!("--resume {id}")), "{text}");

    let out = run(&["analyze", "--resume", &id, "--json", "--analyzer", "openai"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["status"], "completed");
    let total = s["conversations_processed"].as_u64().unwrap();
    assert_eq!(
        s["analyzed"].as_u64().unwrap() + s["skipped_already_processed"].as_u64().unwrap(),
        total,
        "{s}"
    );
    let stats = fake.stats();
    assert!(
        stats.succeeded - stats.distinct_conversations_answered <= CONCURRENCY,
        "{stats:?}"
    );

    // A completed upload is not resumed again.
    let out = run(&["analyze", "--resume", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already completed"));
}

/// Runs `powerpulse` with a database path; answers (exit code, stderr).
fn powerpulse(db: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args(args)
        .env("POWERPULSE_DB", db)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A full disk mid-upload is a clear error, and the database keeps what it
/// had. Needs root to mount a tiny tmpfs (CI runs as root).
#[test]
fn a_full_disk_is_a_clear_error_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let db = mount.join("full.redb");
    let small = dir.path().join("small.csv");
    synth::write_csv(
        &synth::generate(20, 1),
        std::fs::File::create(&small).unwrap(),
    )
    .unwrap();
    let (code, err) = powerpulse(&db, &["analyze", small.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");

    let big = dir.path().join("big.csv");
    synth::write_csv(
        &synth::generate(6_000, 2),
        std::fs::File::create(&big).unwrap(),
    )
    .unwrap();
    let (code, err) = powerpulse(&db, &["analyze", big.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The first upload is intact and the file opens.
    let store = powerpulse::store::Store::open(&db).expect("the database still opens");
    let uploads = store.uploads().unwrap();
    let first = uploads.iter().find(|u| u.filename == "small.csv").unwrap();
    assert_eq!(first.status, powerpulse::model::Stage::Completed);
    assert_eq!(store.summary(first.id).unwrap().analyzed, 20);
}

/// A database file the process may not write is refused at start, untouched.
#[test]
fn a_read_only_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.redb");
    let sample = dir.path().join("s.csv");
    synth::write_csv(
        &synth::generate(5, 3),
        std::fs::File::create(&sample).unwrap(),
    )
    .unwrap();
    let (code, err) = powerpulse(&db, &["analyze", sample.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let before = std::fs::read(&db).unwrap();

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Root may write anything: run as `nobody` then.
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_powerpulse"),
        ]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_powerpulse"))
    };
    let out = command
        .args(["analyze", sample.to_str().unwrap()])
        .env("POWERPULSE_DB", &db)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("read-only"), "{err}");
    assert!(err.contains("ro.redb"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is untouched");
}

// ---- lifecycle under hostile conditions ------------------------------------------

/// `serve` with the offline lexicon analyzer (no LLM needed here).
fn start_offline(db: &Path) -> Server {
    spawn_serve(db, "lexicon", |c| {
        c.env_remove("OPENAI_API_KEY");
    })
}

/// Polls an upload's stored record.
async fn wait_for_record(
    c: &reqwest::Client,
    s: &Server,
    id: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    poll(c, &format!("{}/api/uploads/{id}", s.base), until).await
}

/// A large export (parsing takes a while) and its message count.
fn big_export(dir: &Path, conversations: usize) -> (PathBuf, u64) {
    let rows = synth::generate(conversations, 5);
    let path = dir.join("big.csv");
    synth::write_csv(&rows, std::fs::File::create(&path).unwrap()).unwrap();
    (path, rows.len() as u64)
}

async fn post_upload(c: &reqwest::Client, s: &Server, file: &Path) -> String {
    let r = c
        .post(format!("{}/api/upload?filename=big.csv", s.base))
        .header("content-type", "text/csv")
        .body(std::fs::read(file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Cancelled while parsing, then resumed: the whole file is parsed again
/// (once two thirds of such a file were silently dropped), and two resumes
/// at once run one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_parsing_then_resumed_parses_the_whole_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cancel.redb");
    let (file, messages) = big_export(dir.path(), 6_000);
    let c = client();
    let server = start_offline(&db);
    let id = post_upload(&c, &server, &file).await;
    wait_for(&c, &server, &id, |p| {
        p["messages"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let r = c
        .delete(format!("{}/api/progress/{id}", server.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let cancelled = wait_for_record(&c, &server, &id, |r| r["status"] == "cancelled").await;
    assert_eq!(
        cancelled["parsed"], false,
        "cancelled part-way: {cancelled}"
    );
    assert!(cancelled["counts"]["messages"].as_u64().unwrap() < messages);

    // Two resumes at once: one runs, the other is told it already does.
    let resume = || {
        c.post(format!("{}/api/uploads/{id}/resume", server.base))
            .send()
    };
    let (a, b) = tokio::join!(resume(), resume());
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "single flight");

    let done = wait_for_record(&c, &server, &id, |r| r["status"] == "completed").await;
    assert_eq!(done["counts"]["messages"], messages, "{done}");
    assert_eq!(done["counts"]["conversations"], 6_000, "{done}");
    assert_eq!(
        done["counts"]["analyzed"].as_u64().unwrap()
            + done["counts"]["skipped_already_processed"]
                .as_u64()
                .unwrap(),
        6_000,
        "{done}"
    );
    assert_eq!(done["parsed"], true);
    // The spooled file went once the messages were all stored.
    let spool = dir.path().join("cancel.redb.spool");
    let left = std::fs::read_dir(&spool).map_or(0, |d| d.count());
    assert_eq!(left, 0, "spool emptied");
}

/// A process that dies while parsing an upload, three starts in a row, does
/// not die a fourth time: the upload is marked failed and `serve` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_keeps_killing_the_process_is_given_up_after_three_starts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("loop.redb");
    let (file, _) = big_export(dir.path(), 6_000);
    let c = client();
    let mut server = start_offline(&db);
    let id = post_upload(&c, &server, &file).await;
    for start in 1..=3u64 {
        // This start is counted (on disk) and parsing is under way: die.
        wait_for_record(&c, &server, &id, |r| {
            r["starts_without_progress"].as_u64() == Some(start)
        })
        .await;
        wait_for(&c, &server, &id, |p| {
            p["stage"] == "parsing" && p["messages"].as_u64().unwrap_or(0) > 0
        })
        .await;
        server.kill();
        server = start_offline(&db);
    }
    let failed = wait_for_record(&c, &server, &id, |r| r["status"] == "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("3 starts"), "{error}");
    assert!(error.contains("while parsing"), "{error}");
    let health = c
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    // A person may still try again: the count starts afresh.
    let r = c
        .post(format!("{}/api/uploads/{id}/resume", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let done = wait_for_record(&c, &server, &id, |r| r["status"] == "completed").await;
    assert_eq!(done["counts"]["conversations"], 6_000);
}

/// The free analyzer commits its batches without fsync: a kill mid-analysis
/// loses at most those, and the restart redoes them — one outcome each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_analysis_by_the_free_analyzer_it_finishes_with_one_outcome_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("free.redb");
    let (file, messages) = big_export(dir.path(), 6_000);
    let c = client();
    let server = start_offline(&db);
    let id = post_upload(&c, &server, &file).await;
    wait_for(&c, &server, &id, |p| {
        p["stage"] == "analyzing" && p["processed"].as_u64().unwrap_or(0) >= 500
    })
    .await;
    server.kill();
    let server = start_offline(&db);
    let done = wait_for_record(&c, &server, &id, |r| r["status"] == "completed").await;
    assert_eq!(done["counts"]["messages"], messages, "{done}");
    let counts = &done["counts"];
    let outcomes = counts["analyzed"].as_u64().unwrap()
        + counts["skipped_already_processed"].as_u64().unwrap()
        + counts["failed"].as_u64().unwrap();
    assert_eq!(outcomes, 6_000, "{done}");
    let rows = export_jsonl(&c, &server, &id).await;
    let ids: std::collections::HashSet<String> = rows
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["conversation_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(rows.lines().count(), 6_000, "one row per conversation");
    assert_eq!(ids.len(), 6_000);
    assert_aggregates_match_rows(&c, &server, &id, &rows).await;
}
