//! Backup, retention and compaction against real files, a real `serve`
//! and the real binary.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use powerpulse::analyze::Analyzer;
use powerpulse::config::{Backend, Settings};
use powerpulse::engine::Engine;
use powerpulse::store::actor::{GetUpload, PutUpload};
use uuid::Uuid;

use crate::helpers::*;

fn upload_id(run: &Run) -> String {
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()["upload_id"].as_str().unwrap().to_string()
}

/// Every export of everything, as the CLI writes them.
fn exports(sb: &Sandbox) -> Vec<String> {
    ["csv", "json", "jsonl"]
        .iter()
        .map(|format| {
            let run = sb.run(&["export", "--format", format]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            run.stdout
        })
        .collect()
}

#[test]
fn a_backup_taken_while_serving_restores_to_the_same_exports() {
    let sb = Sandbox::new();
    let rows = conversations(900);
    upload_id(&sb.analyze(&sb.write("a.csv", to_csv(&rows[..2400]))));
    upload_id(&sb.analyze(&sb.write("b.csv", to_csv(&rows[1600..]))));
    let server = sb.serve(&[]);
    let run = sb.run(&["backup", "--output", "served.redb"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("backed up 2 uploads"), "{}", run.stderr);
    let served = exports(&sb);
    let listed = sb.run(&["uploads", "--json"]).stdout;
    server.stop();
    let run = sb.run(&["backup", "--output", "offline.redb"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    for backup in ["served.redb", "offline.redb"] {
        // Restore as the README says: the file in place of the database.
        let restored = Sandbox::new();
        std::fs::copy(sb.path(backup), restored.db()).unwrap();
        let server = restored.serve(&[]);
        assert!(exports(&restored) == served, "{backup}: exports differ");
        assert_eq!(restored.run(&["uploads", "--json"]).stdout, listed);
        server.stop();
        assert!(
            exports(&restored) == served,
            "{backup}: exports differ offline"
        );
    }
    // No temporary file is left beside the output.
    let names: Vec<_> = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn backup_refuses_to_overwrite_the_database() {
    let sb = Sandbox::new();
    upload_id(&sb.analyze(&sb.write("a.csv", to_csv(&conversations(2)))));
    let db = sb.db();
    let run = sb.run(&["backup", "--output", db.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("is the database itself"),
        "{}",
        run.stderr
    );
    assert_eq!(sb.store().uploads().unwrap().len(), 1);
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn compact_refuses_beside_the_server_and_shrinks_the_file_after_a_delete() {
    let sb = Sandbox::new();
    let big = upload_id(&sb.analyze(&sb.write("big.csv", to_csv(&conversations(4000)))));
    let rows = conversations(4010);
    let small = upload_id(&sb.analyze(&sb.write("small.csv", to_csv(&rows[16000..]))));
    let kept = sb
        .run(&["export", "--upload", &small, "--format", "jsonl"])
        .stdout;

    let server = sb.serve(&[]);
    let run = sb.run(&["compact"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("held by the PowerPulse server at")
            && run.stderr.contains("Stop the service"),
        "{}",
        run.stderr
    );
    assert_eq!(
        http("DELETE", &format!("{}/api/uploads/{big}", server.url)),
        204
    );
    server.stop();

    let before = file_size(&sb.db());
    let run = sb.run(&["compact"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("compacted"), "{}", run.stderr);
    let after = file_size(&sb.db());
    assert!(after < before / 2, "{before} → {after} bytes");
    let run = sb.run(&["export", "--upload", &small, "--format", "jsonl"]);
    assert_eq!(run.stdout, kept);
    assert_eq!(sb.store().uploads().unwrap().len(), 1);
}

/// Moves an upload's dates `days` into the past, through the engine (the
/// only writer).
fn age(db: &Path, id: &str, days: i64) {
    let mut settings = Settings::default();
    settings.storage.path = db.to_path_buf();
    settings.analyzer.backend = Backend::Lexicon;
    let analyzer =
        Analyzer::from_settings(&settings.analyzer, &settings.topics, &settings.privacy).unwrap();
    let upload_id = Uuid::parse_str(id).unwrap();
    actix_rt::System::new().block_on(async move {
        let engine = Engine::start(settings, analyzer).unwrap();
        let mut record = engine
            .reader()
            .send(GetUpload { upload_id })
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        record.created_at -= TimeDelta::days(days);
        record.finished_at = record.finished_at.map(|t| t - TimeDelta::days(days));
        engine
            .writer()
            .send(PutUpload(record))
            .await
            .unwrap()
            .unwrap();
        engine.shutdown().await;
    });
}

#[test]
fn retention_removes_old_uploads_and_keeps_the_analyses_newer_ones_share() {
    let sb = Sandbox::new();
    let rows = conversations(9);
    // Conversations 0–5, then 3–8: the new upload answers 3–5 from the
    // processed index, by reference to what the old one stored.
    let old = upload_id(&sb.analyze(&sb.write("old.csv", to_csv(&rows[..24]))));
    let run = sb.analyze(&sb.write("new.csv", to_csv(&rows[12..])));
    let new = upload_id(&run);
    assert_eq!(run.json()["skipped_already_processed"], 3);
    let new_export = sb
        .run(&["export", "--upload", &new, "--format", "jsonl"])
        .stdout;
    assert_eq!(sb.store().processed_len().unwrap(), 9);

    age(&sb.db(), &old, 40);
    // `analyze` applies retention before it starts: 40 days is too young
    // for 60, so nothing goes.
    let more = conversations(10);
    let file = sb.write("third.csv", to_csv(&more[36..]));
    let run = sb.run_with_env(
        &["analyze", file.to_str().unwrap(), "--json"],
        &[("POWERPULSE__STORAGE__RETENTION_DAYS", "60")],
    );
    let third = upload_id(&run);
    assert_eq!(sb.store().uploads().unwrap().len(), 3);

    let server = sb.serve(&[("POWERPULSE__STORAGE__RETENTION_DAYS", "30")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = sb.run(&["uploads", "--json"]).json();
        let ids: Vec<_> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        if ids == [third.clone(), new.clone()] {
            break;
        }
        assert!(Instant::now() < deadline, "the old upload stayed: {ids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The shared conversations still export with their analyses.
    let run = sb.run(&["export", "--upload", &new, "--format", "jsonl"]);
    assert_eq!(run.stdout, new_export);
    server.stop();

    let store = sb.store();
    let old_id = Uuid::parse_str(&old).unwrap();
    assert_eq!(store.upload(old_id).unwrap(), None);
    assert_eq!(store.message_count(old_id).unwrap(), 0);
    // 0–2 went with the old upload; 3–8 and 9 are referred to by the others.
    assert_eq!(store.processed_len().unwrap(), 7);
    // The aggregates followed the deletion: each upload's equal its rows
    // read again, and the insights count each remaining conversation once
    // (3–5 were counted from whichever upload held them first; now from the
    // new one).
    let mut remaining = std::collections::HashSet::new();
    for id in [&new, &third] {
        let id = Uuid::parse_str(id).unwrap();
        assert_eq!(store.stats(id).unwrap(), store.recount(id).unwrap());
        store
            .for_each_row(id, None, |row| {
                if row.analysis.is_some() {
                    remaining.insert(row.conversation_id);
                }
                Ok(true)
            })
            .unwrap();
    }
    let insights = store.insights(&Default::default()).unwrap();
    assert_eq!(insights.conversations, remaining.len() as u64);
    drop(store);
    assert_eq!(
        sb.run(&["export", "--upload", &new, "--format", "jsonl"])
            .stdout,
        new_export
    );
}
