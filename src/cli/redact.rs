//! `powerpulse redact --preview FILE [--conversation ID]`: exactly what the
//! OpenAI analyzer would send for each conversation of FILE (the request's
//! transcript, as `[privacy]` redacts it), sending and storing nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};

use powerpulse::analyze::OpenAiAnalyzer;
use powerpulse::config::{Backend, Settings};
use powerpulse::ingest::{self, IngestOptions, Row};
use powerpulse::model::Conversation;

pub fn preview(
    settings: &Settings,
    file: &Path,
    only: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    // No key is needed: requests are built, never sent.
    let analyzer = OpenAiAnalyzer::with_topics(
        &settings.analyzer.openai,
        "preview-only".to_string().into(),
        &settings.topics,
    )?
    .with_privacy(&settings.privacy)?;
    if settings.analyzer.backend == Backend::Lexicon {
        eprintln!(
            "note: analyzer.backend is lexicon, which sends nothing; this is what the openai \
             analyzer would send"
        );
    }
    match analyzer.redactor() {
        Some(r) => eprintln!("redaction: on (policy {})", r.fingerprint()),
        None => eprintln!(
            "redaction: OFF, transcripts go as written to {} (privacy.redact = \"{}\"; \"auto\" \
             redacts unless the server is on this machine)",
            analyzer
                .endpoints()
                .iter()
                .map(|e| e.chat_url())
                .collect::<Vec<_>>()
                .join(", "),
            settings.privacy.redact.as_str()
        ),
    }

    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Conversation> = HashMap::new();
    for row in ingest::open(file, &IngestOptions::from_settings(&settings.ingest))? {
        let Row::Message(m) = row? else { continue };
        if only.is_some_and(|id| id != m.conversation_id) {
            continue;
        }
        by_id
            .entry(m.conversation_id)
            .or_insert_with_key(|id| {
                order.push(id.clone());
                Conversation {
                    id: id.clone(),
                    messages: Vec::new(),
                }
            })
            .messages
            .push(m.message);
    }
    if let Some(id) = only
        && order.is_empty()
    {
        bail!("no conversation {id:?} in {}", file.display());
    }

    let mut out = std::io::stdout().lock();
    for id in order {
        let Some(mut conversation) = by_id.remove(&id) else {
            continue;
        };
        // As the pipeline orders it before analysis.
        conversation.sort_messages();
        let sent = conversation.customer_messages() > 0;
        let (transcript, counts) = analyzer.transcript(&conversation);
        let redacted: Vec<(String, u64)> = analyzer
            .redactor()
            .map(|r| r.named_counts(&counts))
            .unwrap_or_default();
        if json {
            let value = serde_json::json!({
                "conversation_id": id,
                "sent": sent,
                "transcript": sent.then_some(&transcript),
                "redacted": redacted
                    .iter()
                    .map(|(k, n)| (k.clone(), serde_json::Value::from(*n)))
                    .collect::<serde_json::Map<_, _>>(),
            });
            writeln!(out, "{value}")?;
            continue;
        }
        let what = if redacted.is_empty() {
            "nothing redacted".to_string()
        } else {
            let parts: Vec<String> = redacted.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!("redacted: {}", parts.join(", "))
        };
        if sent {
            writeln!(out, "── {id} · {what}\n{transcript}\n")?;
        } else {
            writeln!(
                out,
                "── {id} · not sent (no customer text: answered locally)\n"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
