//! `powerpulse analyze --estimate FILE`: what analysing FILE with the LLM
//! would cost, sending nothing and writing nothing.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use powerpulse::analyze::OpenAiAnalyzer;
use powerpulse::analyze::estimate::{Draft, Estimate};
use powerpulse::config::Settings;
use powerpulse::ingest::{self, IngestOptions};
use powerpulse::store::{Store, StoreError};

use super::remote::{Lookup, Remote};

pub fn run(settings: &Settings, file: &Path, json: bool) -> Result<ExitCode> {
    // Beside a running server, the server estimates: it holds the processed
    // index and knows the limits its provider announced.
    if held_by_another_process(settings)
        && let Lookup::Found(remote) = Remote::find(settings)?
    {
        return print(&remote.estimate(file)?, json);
    }
    // No key is needed to count: requests are built, never sent.
    let analyzer = OpenAiAnalyzer::with_topics(
        &settings.analyzer.openai,
        "estimate-only".to_string().into(),
        &settings.topics,
    )?
    .with_privacy(&settings.privacy)?;
    let opts = IngestOptions::from_settings(&settings.ingest);
    let rows = ingest::open(file, &opts)?;
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let draft = Draft::from_rows(&name, rows, &analyzer)?;
    let processed = processed(settings, &draft.keys())?;
    print(&draft.finish(processed.as_deref(), &analyzer), json)
}

fn print(estimate: &Estimate, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(estimate)?);
    } else {
        print!("{}", estimate.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether another process (a running `serve`) holds the database.
fn held_by_another_process(settings: &Settings) -> bool {
    let path = &settings.storage.path;
    path.exists() && matches!(Store::open(path), Err(StoreError::Locked { .. }))
}

/// Which keys the processed-content index holds: all new when there is no
/// database yet; `None` when another process holds it.
fn processed(settings: &Settings, keys: &[[u8; 32]]) -> Result<Option<Vec<bool>>> {
    let path = &settings.storage.path;
    if !path.exists() {
        return Ok(Some(vec![false; keys.len()]));
    }
    match Store::open(path) {
        Ok(store) => {
            let found = store
                .lookup_processed(keys)
                .with_context(|| format!("reading the processed index of {}", path.display()))?;
            Ok(Some(found.iter().map(Option::is_some).collect()))
        }
        Err(StoreError::Locked { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
