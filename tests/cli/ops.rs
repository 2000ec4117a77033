//! Running it as a service: `--version`, `check`, JSON logs, systemd
//! notifications, and the completions and man pages the package ships.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer};

use crate::helpers::Sandbox;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample_export.csv");

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit() {
    let run = Sandbox::new().run(&["--version"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let version = run.stdout.trim();
    assert!(
        version.starts_with(concat!("powerpulse ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // Built from a git checkout (as here), it names the commit it was built from.
    match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(sha) => assert!(version.contains(&format!("({sha}")), "{version} vs {sha}"),
        None => eprintln!("not a git checkout: the commit cannot be checked"),
    }
}

#[test]
fn check_validates_the_config_without_an_llm() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["check"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("analyzer: lexicon"), "{}", run.stdout);
    assert!(run.stdout.contains("webhook: off"), "{}", run.stdout);
    assert!(run.stdout.trim_end().ends_with("ok"), "{}", run.stdout);
    // No database is created by a check.
    assert!(!sandbox.db().exists());

    // A configuration `serve` would refuse is a problem, with the reason.
    let run = sandbox.run_with_env(&["check"], &[("POWERPULSE__SERVER__BIND", "0.0.0.0:8080")]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("server: PROBLEM"), "{}", run.stdout);
    assert!(run.stdout.contains("without a token"), "{}", run.stdout);

    // A config file that does not parse fails before anything else.
    let bad = sandbox.write("bad.toml", "[analyzer]\nconcurency = 5\n");
    let run = sandbox.run(&["--config", bad.to_str().unwrap(), "check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("concurency"), "{}", run.stderr);
}

#[test]
fn packaged_config_checks_clean() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/config.toml");
    let sandbox = Sandbox::new();
    // Without POWERPULSE_DB, which would override the file's storage.path.
    let out = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .args(["--config", config, "check"])
        .current_dir(sandbox.dir.path())
        .env_remove("POWERPULSE_DB")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("database: /var/lib/powerpulse/powerpulse.redb"),
        "{stdout}"
    );
}

#[test]
fn check_reaches_the_llm_and_shows_its_limits() {
    let server = FakeServer::start(FakeConfig {
        requests_per_minute: Some(3000),
        tokens_per_minute: Some(600_000),
        ..FakeConfig::default()
    })
    .unwrap();
    let base = server.base_url();
    let env = [
        ("OPENAI_API_KEY", "sk-test-key-123"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("POWERPULSE__ANALYZER__BACKEND", "openai"),
    ];
    let sandbox = Sandbox::new();
    let run = sandbox.run_with_env(&["check"], &env);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("endpoint: answered HTTP 200"),
        "{}",
        run.stdout
    );
    // As announced (the fake counts what is left in its own window).
    assert!(
        run.stdout.contains("limits: 3000 requests/min ("),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("; 600000 tokens/min ("),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" left, resets in "), "{}", run.stdout);
    assert!(!run.stdout.contains("sk-test-key-123"));
    // A server on this machine: `auto` sends transcripts as written, and says so.
    assert!(
        run.stdout
            .contains("privacy: transcripts sent as written (privacy.redact = \"auto\")"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("token budget: max_tokens (honoured)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("structured output: response_format json_schema (strict)"),
        "{}",
        run.stdout
    );
    // Two requests, both cheap: the probe, and the structured one.
    let sent = server.recent_requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["max_tokens"], 1);
    assert!(sent[0].get("response_format").is_none());
    assert_eq!(sent[1]["response_format"]["type"], "json_schema");
    let redacting = sandbox.run_with_env(
        &["check"],
        &[
            env[0],
            env[1],
            env[2],
            ("POWERPULSE__PRIVACY__REDACT", "on"),
        ],
    );
    assert!(
        redacting
            .stdout
            .contains("privacy: personal data redacted from transcripts (policy redact-1-"),
        "{}",
        redacting.stdout
    );

    // An endpoint that refuses is a problem, with its answer and the limits it sent.
    server.set_insufficient_quota(true);
    let run = sandbox.run_with_env(&["check"], &env);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("endpoint: PROBLEM"), "{}", run.stdout);
    assert!(run.stdout.contains("HTTP 429"), "{}", run.stdout);
    assert!(run.stdout.contains("insufficient_quota"), "{}", run.stdout);

    // Nothing listening: a problem too.
    server.stop();
    let run = sandbox.run_with_env(&["check"], &env);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("no answer from"), "{}", run.stdout);
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let sandbox = Sandbox::new();
    let run = sandbox.run_with_env(
        &["analyze", SAMPLE, "--analyzer", "lexicon", "--json"],
        &[
            ("POWERPULSE__LOG__FORMAT", "json"),
            ("RUST_LOG", "powerpulse=info"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let finished = lines
        .iter()
        .find(|l| l["message"] == "upload finished")
        .unwrap_or_else(|| panic!("no 'upload finished' event: {}", run.stderr));
    assert_eq!(finished["level"], "INFO");
    assert_eq!(finished["status"], "completed");
    // The span it happened in carries the upload id.
    let upload_id = run.json()["upload_id"].as_str().unwrap().to_string();
    assert_eq!(
        finished["spans"][0]["upload_id"],
        upload_id.as_str(),
        "{finished}"
    );
}

/// Reads datagrams from `socket` until one contains `wanted` (or the deadline).
fn await_notification(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == wanted)) {
        assert!(Instant::now() < deadline, "no {wanted} among {seen:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

/// `serve` as systemd starts it, with a notification socket of the test's.
/// WATCHDOG_PID names the service's own process (`exec` keeps the shell's);
/// WatchdogSec=0.2s asks for a ping every 100 ms.
fn serve_under_systemd(sandbox: &Sandbox) -> (std::process::Child, UnixDatagram) {
    let socket_path = sandbox.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let child = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" serve --bind 127.0.0.1:0 --analyzer lexicon",
            env!("CARGO_BIN_EXE_powerpulse"),
        ])
        .current_dir(sandbox.dir.path())
        .env("POWERPULSE_DB", sandbox.db())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, socket)
}

/// SIGTERM, then STOPPING=1 and a clean exit.
fn stop_cleanly(mut child: std::process::Child, socket: &UnixDatagram, seen: &mut Vec<String>) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    await_notification(socket, "STOPPING=1", seen);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn serve_tells_systemd_ready_watchdog_and_stopping() {
    let sandbox = Sandbox::new();
    let (child, socket) = serve_under_systemd(&sandbox);
    let mut seen = Vec::new();
    await_notification(&socket, "READY=1", &mut seen);
    // READY comes after the database is open.
    assert!(sandbox.db().exists());
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready}");
    // The first ping, and another one after it.
    await_notification(&socket, "WATCHDOG=1", &mut seen);
    let pings = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    while seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() == pings {
        let mut more = Vec::new();
        await_notification(&socket, "WATCHDOG=1", &mut more);
        seen.extend(more);
    }
    stop_cleanly(child, &socket, &mut seen);
}

#[test]
fn sigterm_right_after_ready_stops_cleanly() {
    let sandbox = Sandbox::new();
    let (child, socket) = serve_under_systemd(&sandbox);
    let mut seen = Vec::new();
    await_notification(&socket, "READY=1", &mut seen);
    stop_cleanly(child, &socket, &mut seen);
}

#[test]
fn packaged_completions_and_man_pages_are_current() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/generated");
    let sandbox = Sandbox::new();
    let fresh = sandbox.path("generated");
    let run = sandbox.run(&["generate-assets", "--dir", fresh.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let files = |root: &Path| {
        let mut all = Vec::new();
        for sub in ["completions", "man"] {
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                all.push((
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
        all.sort();
        all
    };
    let (want, have) = (files(&fresh), files(&committed));
    let names =
        |v: &[(std::path::PathBuf, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert!(
        want == have,
        "packaging/generated/ is stale (files {:?} vs {:?}); regenerate it with \
         `cargo run -- generate-assets --dir packaging/generated`",
        names(&want),
        names(&have)
    );
    assert!(want.iter().any(|(p, _)| p.ends_with("powerpulse.1")));
    assert!(want.iter().any(|(p, _)| p.ends_with("powerpulse-check.1")));
}

#[test]
fn the_service_unit_is_hardened() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/powerpulse.service");
    let Ok(out) = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", unit])
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the unit's exposure is checked by .ci/deb");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for powerpulse.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(exposure <= 2.5, "exposure {exposure}:\n{text}");
    // What the unit promises, line by line.
    let unit_text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=60s",
        "DynamicUser=yes",
        "StateDirectory=powerpulse",
        "EnvironmentFile=-/etc/powerpulse/env",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "{line} missing");
    }
}
