//! `powerpulse analyze --dry-run FILE`: how FILE would be read, storing
//! nothing and sending nothing (see `ingest::preview`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use powerpulse::config::Settings;
use powerpulse::ingest::preview::{CONVERSATIONS_SHOWN, MESSAGES_SHOWN, Preview};
use powerpulse::ingest::{self, IngestChoice, IngestOptions};
use powerpulse::report::terminal_safe_lines;

pub fn run(
    settings: &Settings,
    file: &Path,
    choice: &IngestChoice,
    json: bool,
) -> Result<ExitCode> {
    let opts = IngestOptions::from_settings(&settings.ingest).with_choice(choice);
    let rows = ingest::open(file, &opts)?;
    let preview = Preview::build(
        &file.display().to_string(),
        rows,
        CONVERSATIONS_SHOWN,
        MESSAGES_SHOWN,
    )?;
    // A closed stdout (`| head`) is an error the caller treats as the reader's choice.
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &preview)?;
        writeln!(out)?;
    } else {
        // The file's text goes to a terminal: its control characters escaped.
        write!(out, "{}", terminal_safe_lines(&preview.render()))?;
    }
    Ok(ExitCode::SUCCESS)
}
