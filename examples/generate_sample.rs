//! Writes a synthetic support export.
//!
//! `cargo run --example generate_sample -- [--conversations N] [--seed S] [--output PATH]`
//! (defaults: 200 conversations, seed 42, examples/sample_export.csv).

#[path = "support/synth.rs"]
mod synth;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut conversations = 200usize;
    let mut seed = 42u64;
    let mut output = String::from("examples/sample_export.csv");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value) {
            ("--conversations", Some(v)) => v.parse().map(|n| conversations = n).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|n| seed = n).is_ok(),
            ("--output", Some(v)) => {
                output = v;
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("usage: generate_sample [--conversations N] [--seed S] [--output PATH]");
            return ExitCode::FAILURE;
        }
    }
    let rows = synth::generate(conversations, seed);
    let result = std::fs::File::create(&output)
        .map_err(csv::Error::from)
        .and_then(|f| synth::write_csv(&rows, std::io::BufWriter::new(f)));
    match result {
        Ok(()) => {
            eprintln!(
                "wrote {} messages of {conversations} conversations to {output}",
                rows.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {output}: {e}");
            ExitCode::FAILURE
        }
    }
}
