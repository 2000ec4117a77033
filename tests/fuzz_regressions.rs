//! Every input the fuzzers found a bug with (`tests/data/fuzz/<target>/`),
//! and the seed corpus (`fuzz/seeds/<target>/`), replayed through the fuzz
//! targets' own code: `fuzz/src/lib.rs` is compiled in here, so a crasher
//! runs exactly the path it crashed on. See `fuzz/README.md`.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The files of `fuzz/seeds/<target>` and `tests/data/fuzz/<target>`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in [root.join("fuzz/seeds"), root.join("tests/data/fuzz")] {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("list fuzz inputs").path();
            let data = std::fs::read(&path).expect("read fuzz input");
            found.push((path, data));
        }
    }
    found.sort();
    found
}

/// Runs every input of `target`; fails naming each one that panics.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no inputs for {target}");
    let failed: Vec<String> = inputs
        .iter()
        .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| run(data))).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: panicked on {failed:?}");
}

#[test]
fn ingest_csv() {
    replay("ingest_csv", |data| harness::ingest_file(data, "csv"));
}

#[test]
fn ingest_json() {
    replay("ingest_json", |data| harness::ingest_file(data, "json"));
}

#[test]
fn ingest_jsonl() {
    replay("ingest_jsonl", |data| harness::ingest_file(data, "jsonl"));
}

#[test]
fn ingest_xlsx() {
    replay("ingest_xlsx", |data| harness::ingest_file(data, "xlsx"));
}

#[test]
fn llm_reply() {
    replay("llm_reply", harness::llm_reply);
}

#[test]
fn rate_limit_headers() {
    replay("rate_limit_headers", harness::rate_limit_headers);
}

#[test]
fn config_load() {
    replay("config_load", |data| {
        harness::config_load(&harness::ConfigInput::from_bytes(data))
    });
}

#[test]
fn ingest_whatsapp() {
    replay("ingest_whatsapp", |data| {
        harness::ingest_as(data, "txt", Some(powerpulse::ingest::Format::WhatsApp))
    });
}

#[test]
fn ingest_dialects() {
    replay("ingest_dialects", harness::ingest_dialect);
}

#[test]
fn ingest_zip() {
    replay("ingest_zip", |data| harness::ingest_file(data, "zip"));
}

#[test]
fn ingest_threads() {
    replay("ingest_threads", |data| {
        harness::ingest_as(data, "csv", Some(powerpulse::ingest::Format::Threads))
    });
}
