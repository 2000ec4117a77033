//! `powerpulse audit`: the API's audit log, newest first — offline from the
//! file, or through the server holding it (an admin's token).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use powerpulse::access::{AuditEntry, AuditFilter};
use powerpulse::report::terminal_safe;

use super::Db;

/// Entries per page read.
const PAGE: usize = 500;

/// Prints up to `limit` entries that `filter` matches.
pub fn run(db: &Db, filter: &AuditFilter, limit: usize, json: bool) -> Result<ExitCode> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut cursor = None;
    while entries.len() < limit {
        let page = db.audit(filter, cursor, PAGE.min(limit - entries.len()))?;
        entries.extend(page.items);
        match page.next_cursor.and_then(|c| c.parse().ok()) {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        writeln!(out, "no audit entries")?;
    }
    for e in &entries {
        writeln!(out, "{}", line(e))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-07 20:22:44Z  alice (operator)  upload  202  <upload id>  chats.csv`
fn line(e: &AuditEntry) -> String {
    let upload = e.upload_id.map_or("-".to_string(), |u| u.to_string());
    let outcome = if e.succeeded() { "" } else { " (not done)" };
    format!(
        "{}  {} ({})  {}  {}{outcome}  {}  {}",
        e.at.format("%Y-%m-%d %H:%M:%SZ"),
        terminal_safe(&e.who),
        e.role,
        e.action,
        e.status,
        upload,
        terminal_safe(e.target.as_deref().unwrap_or("")),
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use powerpulse::access::{Action, Role};

    use super::*;

    #[test]
    fn a_line_says_who_did_what_to_which_upload() {
        let id = uuid::Uuid::nil();
        let mut e = AuditEntry {
            id: uuid::Uuid::now_v7(),
            at: "2026-12-07T20:22:44Z".parse().unwrap(),
            who: "alice\u{1b}[2J".into(),
            role: Role::Operator,
            action: Action::Upload,
            upload_id: Some(id),
            target: Some("chats.csv".into()),
            status: 202,
        };
        assert_eq!(
            line(&e),
            format!(
                r"2026-12-07 20:22:44Z  alice\u{{1b}}[2J (operator)  upload  202  {id}  chats.csv"
            )
        );
        e.status = 403;
        e.upload_id = None;
        e.target = None;
        assert!(
            line(&e).ends_with("upload  403 (not done)  -"),
            "{}",
            line(&e)
        );
    }
}
