//! Redaction end to end: the real binary analyses the labelled set's 300
//! chats (`tests/data/privacy_eval.jsonl`, personal values of every kind
//! planted in them) against the fake server, which keeps every byte it
//! receives. With `privacy.redact = "on"` no planted value reaches it, in
//! sync mode with faults (retries and re-asks), packed, against a local
//! server whose structured-output mode is negotiated (refusals, then the
//! fallback mode), and in batch mode with failed and invalid lines
//! (follow-up batches, then sync calls); with redaction off, every one of
//! them does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fake_openai::{BatchConfig, FakeConfig, FakeServer, Faults, ServerKind};

use super::{KEY, summary};

const SET: &str = include_str!("../data/privacy_eval.jsonl");

/// One planted value: its kind and the text it was written as.
struct Planted {
    kind: String,
    value: String,
}

/// Writes the set as a CSV export, and returns what it planted.
fn export(dir: &Path) -> (PathBuf, Vec<Planted>) {
    let path = dir.join("planted.csv");
    let mut csv = csv::Writer::from_path(&path).unwrap();
    csv.write_record([
        "conversation_id",
        "sender",
        "sender_name",
        "message",
        "timestamp",
    ])
    .unwrap();
    let mut planted = Vec::new();
    for line in SET.lines() {
        let chat: serde_json::Value = serde_json::from_str(line).unwrap();
        for (i, m) in chat["messages"].as_array().unwrap().iter().enumerate() {
            let mut text = String::new();
            let mut rest = m["text"].as_str().unwrap();
            while let Some(open) = rest.find("[[") {
                text.push_str(&rest[..open]);
                let inner = &rest[open + 2..];
                let close = inner.find("]]").unwrap();
                let (kind, value) = inner[..close].split_once(':').unwrap();
                if kind != "keep" {
                    planted.push(Planted {
                        kind: kind.into(),
                        value: value.into(),
                    });
                }
                text.push_str(value);
                rest = &inner[close + 2..];
            }
            text.push_str(rest);
            csv.write_record([
                chat["id"].as_str().unwrap(),
                m["role"].as_str().unwrap(),
                m["sender_name"].as_str().unwrap(),
                &text,
                &format!("2026-03-01T10:{:02}:00Z", i.min(59)),
            ])
            .unwrap();
        }
    }
    csv.flush().unwrap();
    (path, planted)
}

/// The planted values a search of the received bytes can tell apart:
/// every value but a name that the set also uses as an ordinary word
/// (`bill`: the customer Bill says "my bill"), deduplicated.
fn searchable(planted: &[Planted]) -> Vec<&Planted> {
    // The texts outside every mark.
    let mut words = String::new();
    for line in SET.lines() {
        let chat: serde_json::Value = serde_json::from_str(line).unwrap();
        for m in chat["messages"].as_array().unwrap() {
            let mut rest = m["text"].as_str().unwrap();
            while let Some(open) = rest.find("[[") {
                words.push_str(&rest[..open].to_lowercase());
                words.push(' ');
                rest = &rest[open + 2..];
                rest = &rest[rest.find("]]").unwrap() + 2..];
            }
            words.push_str(&rest.to_lowercase());
            words.push('\n');
        }
    }
    let mut seen = std::collections::HashSet::new();
    planted
        .iter()
        .filter(|p| {
            p.kind != "name"
                || !regex::Regex::new(&format!(r"\b{}\b", regex::escape(&p.value.to_lowercase())))
                    .unwrap()
                    .is_match(&words)
        })
        .filter(|p| seen.insert((p.kind.clone(), p.value.clone())))
        .collect()
}

/// The planted values found in what the server received: verbatim, and
/// for numbers also as their digits alone (`984-123-4567` as `9841234567`).
fn reached<'a>(server: &FakeServer, planted: &[&'a Planted]) -> Vec<&'a Planted> {
    let received: String = server
        .received()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!received.is_empty(), "the server received requests");
    planted
        .iter()
        .copied()
        .filter(|p| {
            let digits: String = p.value.chars().filter(char::is_ascii_digit).collect();
            if p.kind == "name" {
                regex::Regex::new(&format!(r"\b{}\b", regex::escape(&p.value)))
                    .unwrap()
                    .is_match(&received)
            } else {
                received.contains(&p.value)
                    || (p.kind != "ip" && digits.len() >= 6 && received.contains(&digits))
            }
        })
        .collect()
}

fn fake(faults: Faults, batch: BatchConfig) -> FakeServer {
    FakeServer::start(FakeConfig {
        faults,
        batch,
        record_received: true,
        ..Default::default()
    })
    .unwrap()
}

/// A local server refusing `json_schema` (llama-cpp-python's), with faults.
fn local_server() -> FakeServer {
    FakeServer::start(FakeConfig {
        faults: faults(),
        server: ServerKind::LlamaCppPython,
        record_received: true,
        ..Default::default()
    })
    .unwrap()
}

/// Invalid replies (re-asked with the first request quoted) and server
/// errors (retried).
fn faults() -> Faults {
    Faults {
        server_error: 0.04,
        invalid_json_content: 0.04,
        schema_violation: 0.04,
        truncated_json: 0.04,
        ..Faults::default()
    }
}

fn analyze(
    dir: &Path,
    server: &FakeServer,
    file: &Path,
    db: &str,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
    command
        .args([
            "analyze",
            file.to_str().unwrap(),
            "--json",
            "--analyzer",
            "openai",
        ])
        .current_dir(dir)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", server.base_url())
        .env("POWERPULSE_DB", dir.join(format!("{db}.redb")))
        .env("POWERPULSE__ANALYZER__CONCURRENCY", "16")
        .env("POWERPULSE__ANALYZER__OPENAI__TIMEOUT_SECONDS", "5")
        .env("POWERPULSE__ANALYZER__OPENAI__BATCH_POLL_MS", "20");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

fn by_kind(values: &[&Planted]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in values {
        *out.entry(p.kind.clone()).or_default() += 1;
    }
    out
}

#[test]
fn no_planted_value_reaches_the_provider_in_any_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (file, planted) = export(dir.path());
    let values = searchable(&planted);
    assert!(values.len() > 700, "{} distinct values", values.len());
    let kinds = by_kind(&values);
    for kind in ["name", "phone", "email", "card", "iban", "ip", "id"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) >= 10, "{kinds:?}");
    }

    // Before: sent as written, every value reaches the provider.
    let server = fake(Faults::default(), BatchConfig::default());
    analyze(
        dir.path(),
        &server,
        &file,
        "off",
        &[("POWERPULSE__PRIVACY__REDACT", "off")],
    );
    let before = reached(&server, &values);
    eprintln!(
        "redaction off: {} of {} planted values reached the provider",
        before.len(),
        values.len()
    );
    assert_eq!(before.len(), values.len(), "the search finds what is sent");

    let quirky_batch = BatchConfig {
        line_error: 0.05,
        invalid_content: 0.1,
        ..BatchConfig::default()
    };
    for (mode, server, env) in [
        (
            "sync, with faults",
            fake(faults(), BatchConfig::default()),
            vec![("POWERPULSE__PRIVACY__REDACT", "on")],
        ),
        (
            "packed",
            fake(faults(), BatchConfig::default()),
            vec![
                ("POWERPULSE__PRIVACY__REDACT", "on"),
                (
                    "POWERPULSE__ANALYZER__OPENAI__CONVERSATIONS_PER_REQUEST",
                    "4",
                ),
            ],
        ),
        (
            "local server, negotiated",
            local_server(),
            vec![("POWERPULSE__PRIVACY__REDACT", "on")],
        ),
        (
            "batch, then follow-up batches and sync calls",
            fake(faults(), quirky_batch),
            vec![
                ("POWERPULSE__PRIVACY__REDACT", "on"),
                ("POWERPULSE__ANALYZER__OPENAI__MODE", "batch"),
                ("POWERPULSE__ANALYZER__OPENAI__BATCH_ROUNDS", "2"),
            ],
        ),
    ] {
        let db: String = mode.chars().filter(char::is_ascii_alphabetic).collect();
        let s = analyze(dir.path(), &server, &file, &db, &env);
        assert_eq!(s["status"], "completed", "{mode}: {s}");
        let stats = server.stats();
        let leaked = reached(&server, &values);
        eprintln!(
            "{mode}: {} of {} planted values reached the provider ({} requests, {} batch lines, {} retries)",
            leaked.len(),
            values.len(),
            stats.requests,
            stats.batch_requests_answered + stats.batch_requests_failed,
            s["llm"]["retries"]
        );
        let shown: Vec<String> = leaked
            .iter()
            .take(10)
            .map(|p| format!("{}: {}", p.kind, p.value))
            .collect();
        assert!(leaked.is_empty(), "{mode}: {shown:?}");
        // The placeholders are what was sent instead.
        let sent = String::from_utf8_lossy(&server.received().concat()).into_owned();
        for placeholder in ["<PHONE_1>", "<NAME_1>", "<EMAIL_1>", "<ID_1>"] {
            assert!(sent.contains(placeholder), "{mode}: no {placeholder}");
        }
        if mode.starts_with("local") {
            assert!(stats.invalid_requests >= 1, "{mode}: refused: {stats:?}");
            let last = server.recent_requests().pop().unwrap();
            assert_eq!(last["response_format"]["type"], "json_object", "{mode}");
        }
        if mode.starts_with("batch") {
            assert!(
                stats.batches_created >= 2,
                "{mode}: a follow-up batch: {stats:?}"
            );
        } else {
            assert!(
                s["llm"]["retries"].as_u64().unwrap() > 0,
                "{mode}: retries: {s}"
            );
        }
    }
}
