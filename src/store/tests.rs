use std::collections::BTreeMap;

use super::*;
use crate::model::{Role, Satisfaction, SatisfactionLabel, Sentiment};
use redb::ReadableDatabase;

fn message(role: Role, text: &str, time_ms: Option<i64>) -> Message {
    Message {
        role,
        text: text.to_string(),
        timestamp: None,
        time_ms,
        sender_name: None,
        autoresponse: text.contains("*977#"),
    }
}

fn row(conversation_id: &str, seq: u64, text: &str, time_ms: Option<i64>) -> StoredMessage {
    StoredMessage {
        conversation_id: conversation_id.to_string(),
        seq,
        message: message(Role::Customer, text, time_ms),
    }
}

fn upload(id: Uuid) -> UploadRecord {
    UploadRecord {
        id,
        filename: "x.csv".into(),
        format: "csv".into(),
        status: Stage::Parsing,
        analyzer: "lexicon".into(),
        model: "m".into(),
        created_at: Utc::now(),
        finished_at: None,
        counts: UploadCounts::default(),
        llm: LlmUsage::default(),
        warnings: vec![],
        warnings_total: 0,
        error: None,
        source: None,
        parsed: false,
        progress_mark: 0,
        starts_without_progress: 1,
        ingest: None,
    }
}

fn analysis(label: SentimentLabel, score: u8, resolved: Option<bool>) -> Analysis {
    Analysis {
        sentiment: Sentiment { label, score: 0.5 },
        satisfaction: Satisfaction {
            score,
            label: SatisfactionLabel::from_score(score),
        },
        resolved,
        summary: "s".into(),
        analyzer: "lexicon".into(),
        model: "m".into(),
        topic: Some("billing".into()),
    }
}

fn outcome(upload_id: Uuid, id: &str, a: Option<Analysis>) -> ConversationResult {
    let status = if a.is_some() {
        ConversationStatus::Analyzed
    } else {
        ConversationStatus::Failed
    };
    ConversationResult {
        upload_id,
        conversation_id: id.to_string(),
        record: ConversationRecord {
            status,
            messages: 1,
            customer_messages: 1,
            autoresponses: 0,
            started_ms: Some(0),
            failure: a
                .is_none()
                .then_some(crate::analyze::FailureKind::InvalidReply),
            error: a.is_none().then(|| "invalid JSON reply: eof".to_string()),
            usage: LlmUsage {
                requests: 1,
                prompt_tokens: 10,
                ..Default::default()
            },
            agent: Some("Sita".into()),
            language: Some("en".into()),
            endpoint: None,
        },
        analysis: a,
        content_key: Some(*blake3::hash(id.as_bytes()).as_bytes()),
    }
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.redb")).unwrap();
    (dir, store)
}

#[test]
fn interleaved_messages_group_into_conversations_in_time_order() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let other = Uuid::new_v4();
    store
        .put_messages(
            id,
            &[
                row("b", 0, "b-late", Some(20)),
                row("a", 1, "a-first", None),
                row("b", 2, "b-early", Some(10)),
                row("a", 3, "a-second", None),
                row("c", 4, "c", None),
            ],
            true,
        )
        .unwrap();
    store
        .put_messages(other, &[row("a", 0, "other", None)], true)
        .unwrap();

    let first = store.load_conversations(id, None, 2).unwrap();
    let texts: Vec<Vec<&str>> = first
        .iter()
        .map(|c| {
            c.conversation
                .messages
                .iter()
                .map(|m| m.text.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        texts,
        vec![vec!["a-first", "a-second"], vec!["b-early", "b-late"]]
    );
    let rest = store.load_conversations(id, Some("b"), 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].conversation.id, "c");
    assert_eq!(store.message_count(id).unwrap(), 5);
    assert_eq!(store.message_count(other).unwrap(), 1);
}

#[test]
fn results_summary_and_processed_index_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let id = Uuid::new_v4();
    {
        let store = Store::open(&path).unwrap();
        let mut rec = upload(id);
        rec.status = Stage::Completed;
        rec.counts.conversations = 3;
        store
            .save_results(
                &[
                    outcome(
                        id,
                        "1",
                        Some(analysis(SentimentLabel::Positive, 5, Some(true))),
                    ),
                    outcome(
                        id,
                        "2",
                        Some(analysis(SentimentLabel::Negative, 1, Some(false))),
                    ),
                    outcome(id, "3", None),
                ],
                Some(&rec),
                true,
            )
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.upload(id).unwrap().unwrap().status, Stage::Completed);
    let s = store.summary(id).unwrap();
    assert_eq!((s.analyzed, s.failed), (2, 1));
    assert_eq!(s.sentiment.positive, 1);
    assert_eq!(s.sentiment.negative, 1);
    assert_eq!(s.satisfaction_histogram, [1, 0, 0, 0, 1]);
    assert_eq!(s.average_satisfaction, Some(3.0));
    assert_eq!(s.resolved_rate, Some(0.5));
    assert_eq!(s.failures_by_reason.get("invalid_reply"), Some(&1));
    assert_eq!(s.sentiment_by_day.len(), 1);

    let keys = [
        *blake3::hash(b"1").as_bytes(),
        *blake3::hash(b"unknown").as_bytes(),
    ];
    let found = store.lookup_processed(&keys).unwrap();
    assert!(found[0].is_some());
    assert!(found[1].is_none());
    assert_eq!(
        store.processed_len().unwrap(),
        2,
        "failed outcomes are not indexed"
    );
}

#[test]
fn listing_filters_and_paginates() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let results: Vec<_> = (0..10)
        .map(|i| {
            let label = if i % 2 == 0 {
                SentimentLabel::Positive
            } else {
                SentimentLabel::Negative
            };
            outcome(
                id,
                &format!("c{i:02}"),
                Some(analysis(label, 1 + (i % 5) as u8, None)),
            )
        })
        .collect();
    store
        .save_results(&results, Some(&upload(id)), true)
        .unwrap();

    let filter = ConversationFilter {
        sentiment: Some(SentimentLabel::Positive),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .conversations(id, &filter, cursor.as_deref(), 2)
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.conversation_id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["c00", "c02", "c04", "c06", "c08"]);

    let filter = ConversationFilter {
        min_satisfaction: Some(4),
        ..Default::default()
    };
    let page = store.conversations(id, &filter, None, 100).unwrap();
    assert!(
        page.items
            .iter()
            .all(|r| r.analysis.as_ref().unwrap().satisfaction.score >= 4)
    );
    assert_eq!(page.items.len(), 4);
    assert!(page.next_cursor.is_none());
}

#[test]
fn deleting_an_upload_leaves_others_and_the_index() {
    let (_dir, store) = temp_store();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for id in [a, b] {
        store
            .put_messages(id, &[row("x", 0, "hi", None)], true)
            .unwrap();
        store
            .save_results(
                &[outcome(
                    id,
                    "x",
                    Some(analysis(SentimentLabel::Neutral, 3, None)),
                )],
                Some(&upload(id)),
                true,
            )
            .unwrap();
    }
    assert!(store.delete_upload(a).unwrap().is_some());
    assert!(store.delete_upload(a).unwrap().is_none());
    assert!(store.upload(a).unwrap().is_none());
    assert_eq!(store.message_count(a).unwrap(), 0);
    assert!(store.conversation(a, "x").unwrap().is_none());
    assert!(store.conversation(b, "x").unwrap().is_some());
    assert_eq!(store.processed_len().unwrap(), 1);
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(tables::META)
            .unwrap()
            .insert("schema_version", SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(err.to_string().contains("newer PowerPulse"));
    // Nothing was rewritten: the newer version is still what the file says.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(tables::META).unwrap();
    assert_eq!(
        meta.get("schema_version").unwrap().unwrap().value(),
        SCHEMA_VERSION + 1
    );
    assert!(
        txn.open_table(tables::UPLOADS).is_err(),
        "no table was created"
    );
}

#[test]
fn a_database_open_elsewhere_is_reported_as_locked() {
    let (dir, _store) = temp_store();
    let err = Store::open(dir.path().join("t.redb")).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
}

#[test]
fn garbage_file_is_a_clear_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    std::fs::write(
        &path,
        b"this is not a database, just some text that is long enough",
    )
    .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(err.to_string().contains("t.redb"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_round_trips() {
    use std::os::unix::ffi::OsStrExt;
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let mut record = upload(id);
    let name = std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9.csv");
    record.source = Some(std::path::PathBuf::from(name));
    record.filename = std::path::Path::new(name).display().to_string();
    store.save_results(&[], Some(&record), true).unwrap();
    let back = store.upload(id).unwrap().unwrap();
    assert_eq!(back.source.as_deref(), Some(std::path::Path::new(name)));
    assert_eq!(back.filename, "/tmp/caf\u{fffd}.csv");
    assert_eq!(store.uploads().unwrap().len(), 1, "listing still works");
}

#[test]
fn records_written_before_the_guard_fields_read_back() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let mut json = serde_json::to_value(upload(id)).unwrap();
    let object = json.as_object_mut().unwrap();
    for field in ["parsed", "progress_mark", "starts_without_progress"] {
        object.remove(field);
    }
    object.insert("status".into(), "analyzing".into());
    object.insert("source".into(), "/data/old.csv".into());
    let record: UploadRecord = serde_json::from_value(json).unwrap();
    assert!(record.parsed, "an old record past parsing was parsed");
    assert!(!record.needs_parse());
    assert_eq!(
        record.source.as_deref(),
        Some(std::path::Path::new("/data/old.csv"))
    );
    store.save_results(&[], Some(&record), true).unwrap();
}

#[test]
fn starts_without_progress_are_counted_and_capped() {
    let mut record = upload(Uuid::new_v4());
    // Created: the first start. Two more that got no further are allowed...
    assert!(record.count_start(0).is_ok());
    assert!(record.count_start(0).is_ok());
    assert_eq!(record.starts_without_progress, 3);
    // ...the fourth is refused, naming the stage.
    let reason = record.count_start(0).unwrap_err();
    assert!(reason.contains("while parsing"), "{reason}");
    // Progress resets the count.
    let mut record = upload(Uuid::new_v4());
    record.parsed = true;
    record.status = Stage::Analyzing;
    for mark in [1, 1, 5, 5, 9, 9, 9] {
        assert!(record.count_start(mark).is_ok(), "{mark}");
    }
    assert!(
        record
            .count_start(9)
            .unwrap_err()
            .contains("while analysing")
    );
}

#[test]
fn a_huge_conversation_loads_its_start_and_end_with_exact_counts() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let n = MAX_LOADED_MESSAGES as u64 * 3 + 7;
    let rows: Vec<StoredMessage> = (0..n)
        .map(|seq| row("big", seq, &format!("message {seq}"), None))
        .chain([row("small", n, "hello", Some(5))])
        .collect();
    store.put_messages(id, &rows, true).unwrap();
    let loaded = store.load_conversations(id, None, 10).unwrap();
    assert_eq!(loaded.len(), 2);
    let big = &loaded[0];
    assert_eq!(big.conversation.id, "big");
    assert_eq!(big.conversation.messages.len(), MAX_LOADED_MESSAGES);
    assert_eq!(big.counts.messages as u64, n);
    assert_eq!(big.counts.customer_messages as u64, n);
    let texts: Vec<&str> = big
        .conversation
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts[0], "message 0");
    assert_eq!(
        texts[MAX_LOADED_MESSAGES / 2 - 1],
        format!("message {}", MAX_LOADED_MESSAGES / 2 - 1)
    );
    assert_eq!(
        texts[MAX_LOADED_MESSAGES / 2],
        format!("message {}", n - MAX_LOADED_MESSAGES as u64 / 2)
    );
    assert_eq!(*texts.last().unwrap(), format!("message {}", n - 1));
    let small = &loaded[1];
    assert_eq!(
        small.counts,
        MessageCounts::of(&small.conversation.messages)
    );
    assert_eq!(small.counts.started_ms, Some(5));
}

#[test]
fn a_record_that_cannot_be_encoded_is_an_error_not_empty_bytes() {
    struct Unencodable;
    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let err = encode("upload", &Unencodable).unwrap_err();
    assert!(
        matches!(err, StoreError::Encode { what: "upload", .. }),
        "{err}"
    );
}

/// Writes a schema-1 file by hand: JSON values, one row per message.
fn write_schema_1(path: &std::path::Path, upload_id: Uuid, rows: usize) -> Analysis {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    let k = upload_id.as_u128();
    let good = analysis(SentimentLabel::Negative, 2, Some(false));
    {
        txn.open_table(tables::META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        let mut record = upload(upload_id);
        record.status = Stage::Completed;
        record.parsed = true;
        txn.open_table(tables::UPLOADS)
            .unwrap()
            .insert(k, serde_json::to_vec(&record).unwrap().as_slice())
            .unwrap();
        let mut messages = txn.open_table(tables::legacy::MESSAGES).unwrap();
        let mut conversations = txn.open_table(tables::legacy::CONVERSATIONS).unwrap();
        let mut analyses = txn.open_table(tables::legacy::ANALYSES).unwrap();
        let mut processed = txn.open_table(tables::legacy::PROCESSED).unwrap();
        for i in 0..rows {
            let id = format!("c{:05}", i / 3);
            let m = message(Role::Customer, &format!("message {i}"), Some(i as i64));
            messages
                .insert(
                    (k, id.as_str(), i as u64),
                    serde_json::to_vec(&m).unwrap().as_slice(),
                )
                .unwrap();
            if i % 3 == 0 {
                let r = outcome(upload_id, &id, Some(good.clone()));
                conversations
                    .insert(
                        (k, id.as_str()),
                        serde_json::to_vec(&r.record).unwrap().as_slice(),
                    )
                    .unwrap();
                let a = serde_json::to_vec(&good).unwrap();
                analyses.insert((k, id.as_str()), a.as_slice()).unwrap();
                processed
                    .insert(blake3::hash(id.as_bytes()).as_bytes(), a.as_slice())
                    .unwrap();
            }
        }
    }
    txn.commit().unwrap();
    good
}

#[test]
fn a_schema_1_file_is_migrated_on_open_with_every_row_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let id = Uuid::new_v4();
    // More rows than one migration transaction moves.
    let rows = 50_001;
    let good = write_schema_1(&path, id, rows);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.message_count(id).unwrap(), rows as u64);
    let conversations = rows.div_ceil(3);
    let mut loaded = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .load_conversations(id, after.as_deref(), 4000)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.conversation.id.clone());
        loaded.extend(page);
    }
    assert_eq!(loaded.len(), conversations);
    assert_eq!(loaded[1].conversation.messages[2].text, "message 5");
    assert_eq!(loaded[1].conversation.messages[2].time_ms, Some(5));
    let mut seen = 0;
    store
        .for_each_row(id, None, |row| {
            assert_eq!(row.analysis.as_ref(), Some(&good));
            assert_eq!(row.record.usage.prompt_tokens, 10);
            seen += 1;
            Ok(true)
        })
        .unwrap();
    assert_eq!(seen, conversations);
    assert_eq!(store.processed_len().unwrap(), conversations as u64);
    assert_eq!(
        store
            .lookup_processed(&[*blake3::hash(b"c00001").as_bytes()])
            .unwrap(),
        vec![Some(good)]
    );
    assert_eq!(store.uploads().unwrap()[0].status, Stage::Completed);
    // Schema 2 → 3 built the aggregates from the migrated rows.
    assert_eq!(store.stats(id).unwrap(), store.recount(id).unwrap());
    assert_eq!(store.summary(id).unwrap().analyzed, conversations as u64);
    let insights = store.insights(&Default::default()).unwrap();
    assert_eq!(insights.conversations, conversations as u64);
    drop(store);
    // Reopened: already schema 3, nothing to do, and the old tables are gone.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.message_count(id).unwrap(), rows as u64);
    let txn = redb::ReadableDatabase::begin_read(&*store.db).unwrap();
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_string())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with("-v1")
            || [
                "meta-v1",
                "uploads-v1",
                "upload-stats-v1",
                "audit-v1",
                "alerts-v1"
            ]
            .contains(&n.as_str())
            || n.starts_with("llm-")
            || n.starts_with("insight-")
            || n.starts_with("search-")),
        "{names:?}"
    );
    // Queued when the file was first opened with the index; built here as
    // the indexer builds it.
    assert!(store.index_pending().unwrap() > 0);
    let found = store
        .search(
            &crate::search::Query::parse("\"message 5\""),
            &Default::default(),
            None,
            10,
            None,
        )
        .unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.items[0].matched.as_ref().unwrap().text, "message 5");
}

/// Two uploads sharing conversation "x" (the same content key): `a`
/// analysed x and y, `b` answered x from the index.
fn two_uploads_sharing_one_analysis(store: &Store) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let rows: Vec<_> = (0..10)
        .map(|i| {
            row(
                if i % 2 == 0 { "x" } else { "y" },
                i,
                "hello",
                Some(i as i64),
            )
        })
        .collect();
    store.put_messages(a, &rows, true).unwrap();
    let fine = || Some(analysis(SentimentLabel::Positive, 4, Some(true)));
    store
        .save_results(
            &[outcome(a, "x", fine()), outcome(a, "y", fine())],
            Some(&upload(a)),
            true,
        )
        .unwrap();
    store.put_messages(b, &rows[..1], true).unwrap();
    let mut reused = outcome(b, "x", fine());
    reused.record.status = ConversationStatus::SkippedAlreadyProcessed;
    store
        .save_results(&[reused], Some(&upload(b)), true)
        .unwrap();
    (a, b)
}

/// Everything a reader sees of a database, for comparisons.
fn contents(store: &Store) -> Vec<String> {
    let mut out = vec![format!("processed {}", store.processed_len().unwrap())];
    for u in store.uploads().unwrap() {
        out.push(format!("{u:?}"));
        out.push(format!("messages {}", store.message_count(u.id).unwrap()));
        let page = store
            .conversations(u.id, &ConversationFilter::default(), None, 1000)
            .unwrap();
        out.push(format!("{page:?}"));
    }
    out
}

#[test]
fn a_snapshot_is_the_database_as_of_its_start_and_opens_on_its_own() {
    let (dir, store) = temp_store();
    two_uploads_sharing_one_analysis(&store);
    let before = contents(&store);
    let dest = dir.path().join("copy.redb");
    let stats = store.snapshot_to(&dest).unwrap();
    assert_eq!(stats.uploads, 2);
    // Later writes are not in it.
    two_uploads_sharing_one_analysis(&store);
    let copy = Store::open(&dest).unwrap();
    assert_eq!(contents(&copy), before);
    assert_ne!(contents(&store), before);
    // A snapshot of a snapshot is the same again.
    let again = dir.path().join("again.redb");
    copy.snapshot_to(&again).unwrap();
    assert_eq!(contents(&Store::open(&again).unwrap()), before);
}

#[test]
fn a_snapshot_file_leaves_nothing_behind_and_reads_back_whole() {
    use std::io::Read;
    let (dir, store) = temp_store();
    two_uploads_sharing_one_analysis(&store);
    let (mut file, stats) = store.snapshot_file(dir.path()).unwrap();
    assert_eq!(stats.uploads, 2);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["t.redb"], "the snapshot is unlinked at once");
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    let restored = dir.path().join("restored.redb");
    std::fs::write(&restored, bytes).unwrap();
    assert_eq!(contents(&Store::open(&restored).unwrap()), contents(&store));
}

#[test]
fn snapshot_files_a_crash_left_go_and_fresh_ones_stay() {
    let (dir, store) = temp_store();
    let file = |name: &str, age_secs: u64| {
        let path = dir.path().join(name);
        let f = std::fs::File::create(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs))
            .unwrap();
        path
    };
    let stale = file(".powerpulse-snapshot-aB3x.redb", 7200);
    let fresh = file(".powerpulse-snapshot-cD4y.redb", 5);
    let other = file("notes.redb", 7200);
    assert_eq!(store.remove_stale_snapshots(), 1);
    assert!(!stale.exists());
    assert!(fresh.exists() && other.exists());
}

#[test]
fn the_sweep_keeps_entries_a_remaining_upload_refers_to() {
    let (_dir, store) = temp_store();
    let (a, b) = two_uploads_sharing_one_analysis(&store);
    assert_eq!(store.processed_len().unwrap(), 2);
    // Nothing is unreferenced yet.
    assert_eq!(store.sweep_processed().unwrap(), 0);
    assert!(store.delete_upload(a).unwrap().is_some());
    // Deleting keeps the index; the sweep drops y's entry, not x's.
    assert_eq!(store.processed_len().unwrap(), 2);
    assert_eq!(store.sweep_processed().unwrap(), 1);
    assert_eq!(store.processed_len().unwrap(), 1);
    let x = store.conversation(b, "x").unwrap().unwrap();
    assert_eq!(
        x.analysis,
        Some(analysis(SentimentLabel::Positive, 4, Some(true)))
    );
    // A later row reusing a swept entry writes it back.
    let mut reused = outcome(
        b,
        "y",
        Some(analysis(SentimentLabel::Positive, 4, Some(true))),
    );
    reused.record.status = ConversationStatus::SkippedAlreadyProcessed;
    store.save_results(&[reused], None, true).unwrap();
    assert_eq!(store.processed_len().unwrap(), 2);
    assert!(store.delete_upload(b).unwrap().is_some());
    assert_eq!(store.sweep_processed().unwrap(), 2);
}

#[test]
fn compacting_shrinks_the_file_after_a_delete_and_needs_the_database_alone() {
    let (dir, store) = temp_store();
    let path = dir.path().join("t.redb");
    let big = Uuid::new_v4();
    let text = "a long enough message to take some room ".repeat(20);
    for batch in 0..20u64 {
        let rows: Vec<_> = (0..500)
            .map(|i| row(&format!("c{i}"), batch * 500 + i, &text, None))
            .collect();
        store.put_messages(big, &rows, true).unwrap();
    }
    store.save_results(&[], Some(&upload(big)), true).unwrap();
    let (_, kept) = two_uploads_sharing_one_analysis(&store);
    let expected = store.conversation(kept, "x").unwrap();
    assert!(store.delete_upload(big).unwrap().is_some());
    let shared = store.clone();
    let refused = store.compact();
    assert!(
        matches!(refused, Err(StoreError::Open { .. })),
        "{refused:?}"
    );
    let before = std::fs::metadata(&path).unwrap().len();
    assert!(shared.compact().unwrap());
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < before / 4, "{before} → {after}");
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.conversation(kept, "x").unwrap(), expected);
}

#[test]
fn a_table_the_snapshot_does_not_know_is_refused_not_left_out() {
    let (dir, store) = temp_store();
    let txn = store.db.begin_write().unwrap();
    {
        let extra: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("future-v1");
        txn.open_table(extra).unwrap().insert(1, 2).unwrap();
    }
    txn.commit().unwrap();
    let refused = store.snapshot_to(&dir.path().join("copy.redb"));
    assert!(
        matches!(&refused, Err(StoreError::Storage(m)) if m.contains("future-v1")),
        "{refused:?}"
    );
}

/// A file of this schema written before the drill-down's rows existed gets
/// them built from what it holds when opened: the same rows as kept live.
#[test]
fn the_drill_down_rows_are_built_for_a_file_without_them() {
    let (dir, store) = temp_store();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for (id, conversations) in [(b, 0..6), (a, 3..9)] {
        let results: Vec<_> = conversations
            .map(|i| {
                let mut r = outcome(
                    id,
                    &format!("c{i}"),
                    Some(analysis(SentimentLabel::Negative, 2, None)),
                );
                r.record.started_ms = Some(i64::from(i % 3) * 86_400_000);
                r
            })
            .collect();
        let mut rec = upload(id);
        rec.status = Stage::Completed;
        store.save_results(&results, Some(&rec), true).unwrap();
    }
    let live = drill_all(&store, &stats::DrillFilter::default());
    assert_eq!(live.len(), 9, "c3..c5 are held twice and listed once");
    let txn = store.db.begin_write().unwrap();
    txn.delete_table(tables::INSIGHT_ROWS).unwrap();
    txn.commit().unwrap();
    drop(store);
    let store = Store::open(dir.path().join("t.redb")).unwrap();
    assert_eq!(drill_all(&store, &stats::DrillFilter::default()), live);
}

/// One step of the aggregates' model test.
#[derive(Debug, Clone)]
enum Op {
    /// Stores (or replaces) an outcome of a conversation of an upload.
    Save {
        upload: u8,
        conversation: u8,
        positive: bool,
        satisfaction: u8,
        agent: u8,
        day: Option<u8>,
        failed: bool,
    },
    Complete(u8),
    Delete(u8),
    Clear(u8),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..3, 0u8..6, any::<bool>(), 1u8..=5, 0u8..3, proptest::option::of(0u8..3), proptest::bool::weighted(0.15))
            .prop_map(|(upload, conversation, positive, satisfaction, agent, day, failed)| Op::Save {
                upload, conversation, positive, satisfaction, agent, day, failed
            }),
        2 => (0u8..3).prop_map(Op::Complete),
        1 => (0u8..3).prop_map(Op::Delete),
        1 => (0u8..3).prop_map(Op::Clear),
    ]
}

fn upload_uuid(n: u8) -> Uuid {
    Uuid::from_u128(1 + u128::from(n))
}

/// Insights computed the slow way: every completed upload's rows read back,
/// each conversation (id and content) counted once, from the holder with
/// the smallest upload id.
fn insights_by_rescan(store: &Store, query: &stats::InsightsQuery) -> stats::Insights {
    let mut uploads = store.uploads().unwrap();
    uploads.retain(|u| u.status == Stage::Completed);
    uploads.sort_by_key(|u| u.id);
    let mut seen = std::collections::HashSet::new();
    let mut builder = stats::InsightsBuilder::default();
    for u in &uploads {
        store
            .for_each_row(u.id, None, |row| {
                let Some(a) = &row.analysis else {
                    return Ok(true);
                };
                // The helper's content key is a function of the id.
                if !seen.insert(row.conversation_id.clone()) {
                    return Ok(true);
                }
                let c = stats::Contribution::of(&row.record, a, u.created_at);
                let (from, to) = query.days();
                if c.day >= from && c.day <= to && query.wants(&c.topic, &c.agent) {
                    let mut f = stats::Figures::default();
                    f.apply(&c.counted, 1);
                    builder.add(c.day, &c.topic, &c.agent, &f);
                }
                Ok(true)
            })
            .unwrap();
    }
    builder.finish()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Whatever happens to uploads — outcomes stored and replaced, uploads
    /// completed, deleted, cleared, the file reopened — the stored
    /// aggregates equal what reading every outcome again gives.
    #[test]
    fn aggregates_equal_a_rescan(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let mut store = Store::open(&path).unwrap();
        let created = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Save { upload: n, conversation, positive, satisfaction, agent, day, failed } => {
                    let id = upload_uuid(n);
                    let existing = store.upload(id).unwrap();
                    if existing.as_ref().is_some_and(|u| u.status == Stage::Completed) {
                        continue; // a completed upload's outcomes do not change
                    }
                    let mut rec = upload(id);
                    rec.created_at = created + chrono::TimeDelta::days(n.into());
                    rec.status = Stage::Analyzing;
                    let label = if positive { SentimentLabel::Positive } else { SentimentLabel::Negative };
                    let mut a = analysis(label, satisfaction, positive.then_some(true));
                    a.sentiment.score = if positive { 0.25 } else { -0.625 };
                    if satisfaction == 1 {
                        a.topic = Some("outage".into());
                    }
                    let mut r = outcome(id, &format!("c{conversation}"), (!failed).then_some(a));
                    r.record.agent = (agent > 0).then(|| format!("agent {agent}"));
                    r.record.language = match conversation % 3 {
                        0 => None,
                        1 => Some("ne".into()),
                        _ => Some("en".into()),
                    };
                    r.record.started_ms = day.map(|d| i64::from(d) * 86_400_000);
                    if existing.is_none() && conversation % 2 == 0 {
                        // Registered first, as the pipeline does: its rows
                        // are then gathered for the completion.
                        store.save_results(&[], Some(&rec), true).unwrap();
                        store.save_results(&[r], None, true).unwrap();
                    } else {
                        store.save_results(&[r], existing.is_none().then_some(&rec), true).unwrap();
                    }
                }
                Op::Complete(upload) => {
                    if let Some(mut rec) = store.upload(upload_uuid(upload)).unwrap() {
                        rec.status = Stage::Completed;
                        store.save_results(&[], Some(&rec), true).unwrap();
                    }
                }
                Op::Delete(upload) => {
                    store.delete_upload(upload_uuid(upload)).unwrap();
                }
                Op::Clear(upload) => {
                    let id = upload_uuid(upload);
                    if store.upload(id).unwrap().is_some_and(|u| u.status != Stage::Completed) {
                        store.clear_upload_rows(id).unwrap();
                    }
                }
            }
            if i % 7 == 6 {
                drop(store);
                store = Store::open(&path).unwrap();
            }
        }
        for n in 0..3 {
            let id = upload_uuid(n);
            proptest::prop_assert_eq!(store.stats(id).unwrap(), store.recount(id).unwrap());
        }
        for query in [
            stats::InsightsQuery::default(),
            stats::InsightsQuery {
                from: stats::date_of(1),
                to: stats::date_of(2),
                agent: Some("agent 1".into()),
                ..Default::default()
            },
            stats::InsightsQuery { topic: Some("billing".into()), ..Default::default() },
        ] {
            proptest::prop_assert_eq!(store.insights(&query).unwrap(), insights_by_rescan(&store, &query));
            check_drill_down(&store, &query)?;
        }
        // Filters the cells cannot answer: counted from the rows.
        for filter in [
            stats::DrillFilter { language: Some("ne".into()), ..Default::default() },
            stats::DrillFilter { language: Some(String::new()), satisfaction_max: Some(3), ..Default::default() },
            stats::DrillFilter { sentiment: Some(SentimentLabel::Negative), resolved: Some(true), ..Default::default() },
        ] {
            let all = drill_all(&store, &filter);
            let wanted = rows_by_rescan(&store)
                .into_iter()
                .filter(|(_, _, _, facts)| filter.wants(facts))
                .count();
            proptest::prop_assert_eq!(all.len(), wanted);
            proptest::prop_assert_eq!(store.drill_down(&filter, None, 1).unwrap().total, wanted as u64);
        }
    }
}

/// Every page of a drill-down, two at a time (so cursors are crossed).
fn drill_all(store: &Store, filter: &stats::DrillFilter) -> Vec<FoundConversation> {
    let mut all = Vec::new();
    let mut cursor: Option<stats::DrillCursor> = None;
    loop {
        let page = store.drill_down(filter, cursor.as_ref(), 2).unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next.parse().unwrap()),
            None => return all,
        }
    }
}

/// The conversations the insights count, the slow way: every completed
/// upload's analysed rows, each id once (the helper's content key is a
/// function of the id), from the smallest upload id holding it.
fn rows_by_rescan(store: &Store) -> Vec<(Uuid, String, stats::DayNumber, stats::RowFacts)> {
    let mut uploads = store.uploads().unwrap();
    uploads.retain(|u| u.status == Stage::Completed);
    uploads.sort_by_key(|u| u.id);
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for u in &uploads {
        store
            .for_each_row(u.id, None, |row| {
                if let Some(a) = &row.analysis
                    && seen.insert(row.conversation_id.clone())
                {
                    let c = stats::Contribution::of(&row.record, a, u.created_at);
                    let facts = stats::RowFacts {
                        topic: c.topic,
                        agent: c.agent,
                        language: row.record.language.clone().unwrap_or_default(),
                        counted: c.counted,
                    };
                    rows.push((u.id, row.conversation_id.clone(), c.day, facts));
                }
                Ok(true)
            })
            .unwrap();
    }
    rows
}

/// The drill-down of an insights query lists exactly what the insights
/// count: as many conversations, each once, from the holder counted, with
/// the same counts per day, topic and agent; newest day first.
fn check_drill_down(
    store: &Store,
    query: &stats::InsightsQuery,
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::{prop_assert, prop_assert_eq};
    let insights = store.insights(query).unwrap();
    let filter = stats::DrillFilter {
        from: query.from,
        to: query.to,
        topic: query.topic.clone(),
        agent: query.agent.clone(),
        ..Default::default()
    };
    let all = drill_all(store, &filter);
    prop_assert_eq!(
        store.drill_down(&filter, None, 3).unwrap().total,
        insights.conversations
    );
    prop_assert_eq!(all.len() as u64, insights.conversations);
    let listed: std::collections::BTreeSet<(Uuid, String)> = all
        .iter()
        .map(|f| (f.row.upload_id, f.row.conversation_id.clone()))
        .collect();
    prop_assert_eq!(listed.len(), all.len(), "each conversation once");
    let (from, to) = query.days();
    let counted: std::collections::BTreeSet<(Uuid, String)> = rows_by_rescan(store)
        .into_iter()
        .filter(|(_, _, day, facts)| {
            (from..=to).contains(day) && query.wants(&facts.topic, &facts.agent)
        })
        .map(|(u, id, _, _)| (u, id))
        .collect();
    prop_assert_eq!(&counted, &listed, "listed from the holder counted");
    prop_assert!(
        all.windows(2).all(|w| w[0].date >= w[1].date),
        "newest day first"
    );
    let tally = |key: &dyn Fn(&FoundConversation) -> String| {
        let mut m = BTreeMap::<String, u64>::new();
        for f in &all {
            *m.entry(key(f)).or_default() += 1;
        }
        m
    };
    let days = tally(&|f| f.date.clone());
    let want: BTreeMap<String, u64> = insights
        .days
        .iter()
        .map(|d| (d.date.clone(), d.conversations))
        .collect();
    prop_assert_eq!(days, want);
    let topics = tally(&|f| {
        f.row
            .analysis
            .as_ref()
            .and_then(|a| a.topic.clone())
            .unwrap_or_default()
    });
    let want: BTreeMap<String, u64> = insights
        .topics
        .iter()
        .map(|t| (t.topic.clone().unwrap_or_default(), t.conversations))
        .collect();
    prop_assert_eq!(topics, want);
    let agents = tally(&|f| f.row.record.agent.clone().unwrap_or_default());
    let want: BTreeMap<String, u64> = insights
        .agents
        .iter()
        .map(|a| (a.agent.clone().unwrap_or_default(), a.conversations))
        .collect();
    prop_assert_eq!(agents, want);
    Ok(())
}

#[test]
fn the_summary_breaks_down_by_agent_topic_and_language() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let mut results = Vec::new();
    for (i, (agent, language, sat)) in [
        (Some("Sita"), Some("en"), 5),
        (Some("Sita"), Some("ne"), 4),
        (Some("Ram"), Some("ne"), 1),
        (None, None, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let label = if sat >= 4 {
            SentimentLabel::Positive
        } else {
            SentimentLabel::Negative
        };
        let mut a = analysis(label, sat, Some(sat >= 4));
        a.topic = Some(if i == 2 { "outage" } else { "billing" }.into());
        let mut r = outcome(id, &format!("c{i}"), Some(a));
        r.record.agent = agent.map(str::to_string);
        r.record.language = language.map(str::to_string);
        results.push(r);
    }
    store
        .save_results(&results, Some(&upload(id)), true)
        .unwrap();
    let s = store.summary(id).unwrap();
    let sita = &s.agents[0];
    assert_eq!(sita.agent.as_deref(), Some("Sita"));
    assert_eq!((sita.conversations, sita.sentiment.positive), (2, 2));
    assert_eq!(
        (sita.average_satisfaction, sita.resolved_rate),
        (Some(4.5), Some(1.0))
    );
    assert!(
        s.agents
            .iter()
            .any(|a| a.agent.is_none() && a.conversations == 1)
    );
    assert_eq!(s.topics[0].topic.as_deref(), Some("billing"));
    assert_eq!(s.topics[0].conversations, 3);
    assert_eq!(s.topics[1].average_satisfaction, Some(1.0));
    assert_eq!(s.languages[0].language.as_deref(), Some("ne"));
    assert_eq!(s.languages[0].conversations, 2);

    let by_agent = ConversationFilter {
        agent: Some("Sita".into()),
        language: Some("ne".into()),
        ..Default::default()
    };
    let page = store.conversations(id, &by_agent, None, 10).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].conversation_id, "c1");
    let by_topic = ConversationFilter {
        topic: Some("outage".into()),
        ..Default::default()
    };
    let page = store.conversations(id, &by_topic, None, 10).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].conversation_id, "c2");
}

#[test]
fn a_conversation_in_two_completed_uploads_counts_once_until_both_go() {
    let (_dir, store) = temp_store();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for (id, agent) in [(b, "Ram"), (a, "Sita")] {
        let mut r = outcome(
            id,
            "same",
            Some(analysis(SentimentLabel::Negative, 2, None)),
        );
        r.record.agent = Some(agent.into());
        let mut rec = upload(id);
        rec.status = Stage::Completed;
        store.save_results(&[r], Some(&rec), true).unwrap();
    }
    let all = store.insights(&Default::default()).unwrap();
    assert_eq!(all.conversations, 1);
    assert_eq!(
        all.agents[0].agent.as_deref(),
        Some("Sita"),
        "the smaller upload id counts"
    );
    store.delete_upload(a).unwrap();
    let all = store.insights(&Default::default()).unwrap();
    assert_eq!(all.conversations, 1);
    assert_eq!(
        all.agents[0].agent.as_deref(),
        Some("Ram"),
        "the other holder takes over"
    );
    store.delete_upload(b).unwrap();
    assert_eq!(
        store.insights(&Default::default()).unwrap().conversations,
        0
    );
}

/// Texts of loaded conversations, by id.
fn loaded_texts(loaded: &[LoadedConversation]) -> Vec<(String, Vec<String>)> {
    loaded
        .iter()
        .map(|c| {
            (
                c.conversation.id.clone(),
                c.conversation
                    .messages
                    .iter()
                    .map(|m| m.text.clone())
                    .collect(),
            )
        })
        .collect()
}

/// A conversation spread over several parse batches (runs) reads back as
/// one, its messages in file order, whether loaded in pages, as pending
/// (skipping those with an outcome) or alone.
#[test]
fn conversations_split_over_batches_merge_across_runs() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let batches: [&[(&str, u64)]; 3] = [
        &[("b", 0), ("a", 1), ("c", 2), ("b", 3)],
        &[("d", 4), ("b", 5), ("a", 6)],
        &[("a", 7), ("e", 8)],
    ];
    for batch in batches {
        let rows: Vec<StoredMessage> = batch
            .iter()
            .map(|(c, seq)| row(c, *seq, &format!("{c}{seq}"), None))
            .collect();
        store.put_messages(id, &rows, false).unwrap();
    }
    let expected = vec![
        (
            "a".to_string(),
            vec!["a1".to_string(), "a6".into(), "a7".into()],
        ),
        ("b".into(), vec!["b0".into(), "b3".into(), "b5".into()]),
        ("c".into(), vec!["c2".into()]),
        ("d".into(), vec!["d4".into()]),
        ("e".into(), vec!["e8".into()]),
    ];
    let all = store.load_conversations(id, None, 100).unwrap();
    assert_eq!(loaded_texts(&all), expected);
    assert_eq!(all[0].counts.messages, 3);
    // Page by page, resuming after an id found in the middle of runs.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.load_conversations(id, after.as_deref(), 2).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.conversation.id.clone());
        paged.extend(page);
    }
    assert_eq!(loaded_texts(&paged), expected);
    // Pending skips what has an outcome, and says where it got to.
    store
        .save_results(
            &[outcome(id, "b", None), outcome(id, "d", None)],
            None,
            true,
        )
        .unwrap();
    let pending = store.load_pending(id, None, 2).unwrap();
    let ids: Vec<&str> = pending
        .conversations
        .iter()
        .map(|c| c.conversation.id.as_str())
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(pending.next.as_deref(), Some("c"));
    let rest = store.load_pending(id, Some("c"), 2).unwrap();
    assert_eq!(loaded_texts(&rest.conversations), expected[4..].to_vec());
    assert_eq!(rest.next.as_deref(), Some("e"));
    let done = store.load_pending(id, Some("e"), 2).unwrap();
    assert_eq!((done.conversations.len(), done.next), (0, None));
    let detail = store.conversation(id, "a").unwrap().unwrap();
    let texts: Vec<&str> = detail.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["a1", "a6", "a7"]);
    assert_eq!(store.conversation(id, "zz").unwrap(), None);
    assert_eq!(store.message_count(id).unwrap(), 9);
    // Clearing the rows takes every run.
    store.clear_upload_rows(id).unwrap();
    assert_eq!(store.message_count(id).unwrap(), 0);
    assert!(store.load_conversations(id, None, 10).unwrap().is_empty());
}

/// Text that LZ4 cannot shrink much, so a batch makes many blocks.
fn noisy_text(seed: u64, len: usize) -> String {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + (state >> 59) as u8)
        })
        .collect()
}

/// Blocks of the upload (for tests): (run, first id) of each.
fn block_keys(store: &Store, upload_id: Uuid) -> Vec<(u64, String)> {
    let k = key(upload_id);
    store
        .read(|t| {
            let mut keys = Vec::new();
            for entry in t.messages.range((k, 0, "", 0)..(k + 1, 0, "", 0))? {
                let (kg, _) = entry?;
                let (_, run, first, _) = kg.value();
                keys.push((run, first.to_string()));
            }
            Ok(keys)
        })
        .unwrap()
}

/// A conversation in the middle of a block, and one cut across blocks, are
/// found whole; a scan resuming inside a block starts after the right id.
#[test]
fn a_conversation_in_a_middle_block_is_found_whole() {
    let (_dir, store) = temp_store();
    let id = Uuid::new_v4();
    let mut rows = Vec::new();
    for seq in 0..600u64 {
        let c = format!("c{:03}", seq % 150);
        rows.push(StoredMessage {
            conversation_id: c,
            seq,
            message: message(Role::Agent, &noisy_text(seq, 300), Some(seq as i64)),
        });
    }
    store.put_messages(id, &rows, true).unwrap();
    let blocks = block_keys(&store, id);
    assert!(blocks.len() >= 5, "{blocks:?}");
    // A conversation that is not the first of its block.
    let (_, third_first) = &blocks[2];
    let n: u64 = third_first[1..].parse().unwrap();
    for c in [n - 1, n, n + 1, 0, 149] {
        let cid = format!("c{c:03}");
        let detail = store.conversation(id, &cid).unwrap().unwrap();
        let expected: Vec<String> = (0..4).map(|i| noisy_text(c + 150 * i, 300)).collect();
        let texts: Vec<String> = detail.messages.iter().map(|m| m.text.clone()).collect();
        assert_eq!(texts, expected, "{cid}");
        let after = format!("c{:03}", c.saturating_sub(1));
        let from = if c == 0 { None } else { Some(after.as_str()) };
        let loaded = store.load_conversations(id, from, 1).unwrap();
        assert_eq!(loaded[0].conversation.id, cid);
        assert_eq!(loaded[0].counts.messages, 4);
    }
    assert_eq!(store.load_conversations(id, None, 1000).unwrap().len(), 150);
}

/// Writes a schema-3 file: the current tables, but messages as schema 3 kept
/// them (`messages-v2`: one chunk per conversation per batch).
fn write_schema_3(path: &std::path::Path, upload_id: Uuid, batches: u64, per_batch: u64) {
    {
        let store = Store::open(path).unwrap();
        let mut record = upload(upload_id);
        record.status = Stage::Completed;
        record.parsed = true;
        store.save_results(&[], Some(&record), true).unwrap();
        store
            .save_results(&[outcome(upload_id, "c00001", None)], None, true)
            .unwrap();
    }
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(tables::MESSAGES).unwrap();
    txn.open_table(tables::META)
        .unwrap()
        .insert("schema_version", 3)
        .unwrap();
    {
        let k = upload_id.as_u128();
        let mut chunks = txn.open_table(tables::legacy::CHUNKS).unwrap();
        for b in 0..batches {
            for c in 0..per_batch {
                let id = format!("c{c:05}");
                let seq = b * per_batch * 2 + c * 2;
                let ms: Vec<Message> = (0..2)
                    .map(|i| {
                        message(
                            Role::Customer,
                            &format!("{id} m{}", seq + i),
                            Some((seq + i) as i64),
                        )
                    })
                    .collect();
                let chunk = codec::encode_chunk([(seq, &ms[0]), (seq + 1, &ms[1])]);
                chunks
                    .insert((k, id.as_str(), seq), chunk.as_slice())
                    .unwrap();
            }
        }
    }
    txn.commit().unwrap();
}

/// A schema-3 file opens as schema 4 with every message where it was: more
/// chunks than one migration transaction moves, conversations spread over
/// several batches; the old table is gone and the version turned.
#[test]
fn a_schema_3_file_is_migrated_to_blocks_and_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.redb");
    let id = Uuid::new_v4();
    let (batches, per_batch) = (3u64, 4_000u64);
    write_schema_3(&path, id, batches, per_batch);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.message_count(id).unwrap(), batches * per_batch * 2);
    let expected = |c: u64| -> Vec<String> {
        (0..batches)
            .flat_map(|b| {
                let seq = b * per_batch * 2 + c * 2;
                [seq, seq + 1]
            })
            .map(|s| format!("c{c:05} m{s}"))
            .collect()
    };
    let mut after: Option<String> = None;
    let mut seen = 0u64;
    loop {
        let page = store.load_pending(id, after.as_deref(), 700).unwrap();
        let Some(next) = page.next else { break };
        for c in &page.conversations {
            let n: u64 = c.conversation.id[1..].parse().unwrap();
            let texts: Vec<String> = c
                .conversation
                .messages
                .iter()
                .map(|m| m.text.clone())
                .collect();
            assert_eq!(texts, expected(n), "{}", c.conversation.id);
            seen += 1;
        }
        after = Some(next);
    }
    // c00001 has an outcome: skipped.
    assert_eq!(seen, per_batch - 1);
    let detail = store.conversation(id, "c02500").unwrap().unwrap();
    let texts: Vec<String> = detail.messages.iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, expected(2500));
    assert_eq!(store.uploads().unwrap().len(), 1);
    drop(store);
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn
        .open_table(tables::META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .map(|v| v.value());
    assert_eq!(version, Some(SCHEMA_VERSION));
    assert!(matches!(
        txn.open_table(tables::legacy::CHUNKS),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
}

proptest::proptest! {
    /// Rows placed by their id's rank come out as sorting them by (id, seq)
    /// would put them.
    #[test]
    fn rows_in_conversation_order_are_sorted_by_id_then_seq(
        picks in proptest::collection::vec((0u8..12, proptest::prelude::any::<u16>()), 0..200),
        shuffled in proptest::prelude::any::<bool>(),
    ) {
        let mut seqs = std::collections::HashSet::new();
        let mut rows: Vec<StoredMessage> = picks
            .iter()
            .filter(|(_, seq)| seqs.insert(*seq))
            .map(|&(id, seq)| StoredMessage {
                conversation_id: format!("c{id}"),
                seq: u64::from(seq),
                message: crate::model::Message {
                    role: crate::model::Role::Customer,
                    text: String::new(),
                    timestamp: None,
                    time_ms: None,
                    sender_name: None,
                    autoresponse: false,
                },
            })
            .collect();
        if !shuffled {
            rows.sort_by_key(|r| r.seq);
        }
        let got: Vec<(&str, u64)> = in_conversation_order(&rows)
            .iter()
            .map(|r| (r.conversation_id.as_str(), r.seq))
            .collect();
        let mut expected: Vec<(&str, u64)> =
            rows.iter().map(|r| (r.conversation_id.as_str(), r.seq)).collect();
        expected.sort();
        proptest::prop_assert_eq!(got, expected);
    }
}

/// Words the search model test writes and asks for (Nepali in both
/// scripts, a plural, words that also form phrases).
const VOCABULARY: [&str; 12] = [
    "power",
    "cut",
    "outage",
    "bill",
    "bills",
    "meter",
    "बत्ती",
    "छैन",
    "chaina",
    "batti",
    "lalitpur",
    "again",
];

/// One step of the search's model test.
#[derive(Debug, Clone)]
enum SearchOp {
    /// Parses an upload: its conversations' messages (word indices), in
    /// `runs` batches.
    Parse {
        upload: u8,
        seed: u64,
        runs: u8,
    },
    /// Stores an outcome for each of its parsed conversations (some failed).
    Analyse {
        upload: u8,
        seed: u64,
    },
    Complete(u8),
    /// Deletes it (by hand or by retention: the same path).
    Delete(u8),
    /// A parse started again: its rows cleared, its file parsed anew.
    Reparse(u8),
    Reopen,
    /// The indexer's turn: builds and writes what is queued.
    Index,
    /// Reads and builds what is queued now, and writes it only at the next
    /// `Index`, `IndexLater` or the end: segments of text that may have
    /// been deleted or parsed again since.
    IndexLater,
}

fn search_op() -> impl proptest::strategy::Strategy<Value = SearchOp> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0u8..3, any::<u64>(), 1u8..4).prop_map(|(upload, seed, runs)| SearchOp::Parse { upload, seed, runs }),
        3 => (0u8..3, any::<u64>()).prop_map(|(upload, seed)| SearchOp::Analyse { upload, seed }),
        3 => (0u8..3).prop_map(SearchOp::Complete),
        1 => (0u8..3).prop_map(SearchOp::Delete),
        1 => (0u8..3).prop_map(SearchOp::Reparse),
        1 => Just(SearchOp::Reopen),
        2 => Just(SearchOp::Index),
        2 => Just(SearchOp::IndexLater),
    ]
}

/// splitmix64, for the model's texts.
fn mix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An upload's messages: conversations c0..c5 (some), 1–4 messages of 1–5
/// words, some autoresponses, some timed.
fn model_messages(mut seed: u64) -> Vec<StoredMessage> {
    let mut rows = Vec::new();
    for c in 0..6u64 {
        if mix(&mut seed).is_multiple_of(3) {
            continue;
        }
        for _ in 0..1 + mix(&mut seed) % 4 {
            let words: Vec<&str> = (0..1 + mix(&mut seed) % 5)
                .map(|_| VOCABULARY[(mix(&mut seed) % VOCABULARY.len() as u64) as usize])
                .collect();
            let mut m = message(Role::Customer, &words.join(" "), None);
            m.autoresponse = mix(&mut seed).is_multiple_of(6);
            m.time_ms = mix(&mut seed)
                .is_multiple_of(2)
                .then(|| (mix(&mut seed) % 3) as i64 * 86_400_000);
            rows.push((c, m));
        }
    }
    // Interleaved, as exports are: shuffled, then numbered in file order.
    for i in (1..rows.len()).rev() {
        rows.swap(i, (mix(&mut seed) % (i as u64 + 1)) as usize);
    }
    rows.into_iter()
        .enumerate()
        .map(|(seq, (c, message))| StoredMessage {
            conversation_id: format!("c{c}"),
            seq: seq as u64,
            message,
        })
        .collect()
}

/// Whether the texts of a conversation match every clause (a phrase
/// within one text), by reading them, not the index.
fn matches_by_reading(query: &crate::search::Query, texts: &[String]) -> bool {
    use crate::search::text;
    let tokens: Vec<Vec<Vec<u64>>> = texts
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            text::tokens(t, |token| {
                let mut terms = Vec::new();
                text::index_terms(&token, |term| terms.push(term));
                out.push(terms);
            });
            out
        })
        .collect();
    query.clauses.iter().all(|clause| {
        let words = clause.positions();
        tokens.iter().any(|text| {
            (0..text.len()).any(|start| {
                start + words.len() <= text.len()
                    && words
                        .iter()
                        .enumerate()
                        .all(|(j, w)| text[start + j].iter().any(|t| w.contains(t)))
            })
        })
    })
}

/// Every page of a search, two at a time.
fn search_all(store: &Store, query: &crate::search::Query) -> (Vec<(Uuid, String)>, u64) {
    let mut all = Vec::new();
    let mut cursor: Option<stats::DrillCursor> = None;
    let mut total = None;
    loop {
        let page = store
            .search(
                query,
                &stats::DrillFilter::default(),
                cursor.as_ref(),
                2,
                None,
            )
            .unwrap();
        total.get_or_insert(page.total);
        for item in &page.items {
            assert!(item.matched.is_some(), "every item shows what matched");
        }
        all.extend(
            page.items
                .into_iter()
                .map(|f| (f.row.upload_id, f.row.conversation_id)),
        );
        match page.next {
            Some(next) => cursor = Some(next.parse().unwrap()),
            None => return (all, total.unwrap()),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 40, ..Default::default() })]

    /// Whatever happens to uploads — parses split over batches, outcomes,
    /// completions, deletes, parses started again, reopenings, the index
    /// built at any point, segments built from text that went since — a search
    /// finds exactly the conversations the insights count whose stored
    /// text (messages but autoresponses, and summary) holds every clause,
    /// each once, across pages.
    #[test]
    fn search_is_exact_across_deletes_reparses_and_reopens(ops in proptest::collection::vec(search_op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut store = Store::open(&path).unwrap();
        let mut parsed: BTreeMap<u8, Vec<StoredMessage>> = BTreeMap::new();
        let mut late: Vec<super::BuiltSegment> = Vec::new();
        let put = |store: &Store, id: Uuid, rows: &[StoredMessage], runs: u8| {
            for batch in rows.chunks(rows.len().div_ceil(usize::from(runs)).max(1)) {
                store.put_messages(id, batch, false).unwrap();
            }
        };
        for op in &ops {
            match op {
                SearchOp::Parse { upload, seed, runs } => {
                    let id = upload_uuid(*upload);
                    if store.upload(id).unwrap().is_some() {
                        continue;
                    }
                    store.save_results(&[], Some(&super::tests::upload(id)), true).unwrap();
                    let rows = model_messages(*seed);
                    put(&store, id, &rows, *runs);
                    parsed.insert(*upload, rows);
                }
                SearchOp::Analyse { upload, seed } => {
                    let id = upload_uuid(*upload);
                    let (Some(rows), Some(rec)) = (parsed.get(upload), store.upload(id).unwrap()) else {
                        continue;
                    };
                    if rec.status == Stage::Completed {
                        continue;
                    }
                    let mut seed = *seed;
                    let mut ids: Vec<&str> = rows.iter().map(|r| r.conversation_id.as_str()).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let results: Vec<ConversationResult> = ids.iter().map(|c| {
                        let messages: Vec<Message> = rows.iter().filter(|r| r.conversation_id == *c).map(|r| r.message.clone()).collect();
                        let failed = mix(&mut seed).is_multiple_of(5);
                        let mut a = analysis(SentimentLabel::Negative, 2, None);
                        a.summary = format!("{} reported", VOCABULARY[(mix(&mut seed) % VOCABULARY.len() as u64) as usize]);
                        let mut r = outcome(id, c, (!failed).then_some(a));
                        let conversation = Conversation { id: c.to_string(), messages };
                        r.record = ConversationRecord::describe(&conversation, r.record.status);
                        r
                    }).collect();
                    store.save_results(&results, None, false).unwrap();
                }
                SearchOp::Complete(upload) => {
                    if let Some(mut rec) = store.upload(upload_uuid(*upload)).unwrap() {
                        rec.status = Stage::Completed;
                        store.save_results(&[], Some(&rec), true).unwrap();
                    }
                }
                SearchOp::Delete(upload) => {
                    store.delete_upload(upload_uuid(*upload)).unwrap();
                    parsed.remove(upload);
                }
                SearchOp::Reparse(upload) => {
                    let id = upload_uuid(*upload);
                    let Some(rec) = store.upload(id).unwrap() else { continue };
                    if rec.status == Stage::Completed {
                        continue;
                    }
                    store.clear_upload_rows(id).unwrap();
                    if let Some(rows) = parsed.get(upload) {
                        put(&store, id, rows, 2);
                    }
                }
                SearchOp::Reopen => {
                    drop(store);
                    store = Store::open(&path).unwrap();
                }
                SearchOp::Index => {
                    store.put_segments(&std::mem::take(&mut late)).unwrap();
                    store.index_pending().unwrap();
                }
                SearchOp::IndexLater => {
                    store.put_segments(&std::mem::take(&mut late)).unwrap();
                    for p in store.pending_segments(usize::MAX).unwrap() {
                        if let Some(source) = store.segment_source(p).unwrap() {
                            late.push(super::BuiltSegment { pending: p, segment: source.build() });
                        }
                    }
                }
            }
        }
        // What a search waits for: the late segments land (or are dropped),
        // then everything queued of completed uploads is built.
        store.put_segments(&late).unwrap();
        store.index_pending().unwrap();
        proptest::prop_assert!(store.pending_segments(usize::MAX).unwrap().is_empty());
        // Nothing indexed that the store does not hold: each segment is of a
        // stored run, or the summaries of a completed upload.
        let orphans = store
            .read(|t| {
                let mut orphans = Vec::new();
                for entry in t.search_segments.iter()? {
                    let (k, _) = entry?;
                    let (upload, run) = k.value();
                    let held = if run == super::tables::SUMMARY_RUN {
                        store.upload(Uuid::from_u128(upload))?.is_some_and(|u| u.status == Stage::Completed)
                    } else {
                        t.messages.range((upload, run, "", 0)..super::run_end(upload, run))?.next().is_some()
                    };
                    if !held {
                        orphans.push((upload, run));
                    }
                }
                Ok(orphans)
            })
            .unwrap();
        proptest::prop_assert!(orphans.is_empty(), "segments of text not stored: {:?}", orphans);
        let counted = rows_by_rescan(&store);
        for q in ["power", "chaina", "batti chaina", "\"power cut\"", "bill again", "\"छैन again\" lalitpur", "reported outage"] {
            let query = crate::search::Query::parse(q);
            let (found, total) = search_all(&store, &query);
            let mut want: Vec<(Uuid, String)> = counted
                .iter()
                .filter(|(u, id, _, _)| {
                    let detail = store.conversation(*u, id).unwrap();
                    let mut texts: Vec<String> = detail
                        .iter()
                        .flat_map(|d| d.messages.iter().filter(|m| !m.autoresponse).map(|m| m.text.clone()))
                        .collect();
                    texts.extend(detail.and_then(|d| d.analysis).map(|a| a.summary));
                    matches_by_reading(&query, &texts)
                })
                .map(|(u, id, _, _)| (*u, id.clone()))
                .collect();
            want.sort();
            let mut got = found.clone();
            got.sort();
            proptest::prop_assert_eq!(&got, &want, "{}", q);
            proptest::prop_assert_eq!(total, want.len() as u64);
            proptest::prop_assert_eq!(found.len(), got.len());
        }
    }
}

/// The index is derived data: emptied (lost), it is queued again from the
/// stored messages and summaries when the file is next opened, and built
/// back to the same answers.
#[test]
fn a_lost_index_is_queued_again_and_built_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let id = upload_uuid(1);
    store.save_results(&[], Some(&upload(id)), true).unwrap();
    let texts = ["power cut again", "meter is fine", "power restored, thanks"];
    let rows: Vec<StoredMessage> = (0..6)
        .map(|i| {
            row(
                if i % 2 == 0 { "a" } else { "b" },
                i,
                texts[i as usize % 3],
                Some(i as i64),
            )
        })
        .collect();
    store.put_messages(id, &rows[..3], false).unwrap();
    store.put_messages(id, &rows[3..], false).unwrap();
    let results: Vec<ConversationResult> = ["a", "b"]
        .iter()
        .map(|c| {
            let mut a = analysis(SentimentLabel::Negative, 2, None);
            a.summary = format!("{c} reported an outage");
            outcome(id, c, Some(a))
        })
        .collect();
    store.save_results(&results, None, false).unwrap();
    let mut rec = store.upload(id).unwrap().unwrap();
    rec.status = Stage::Completed;
    store.save_results(&[], Some(&rec), true).unwrap();
    // Queued, not built: a search before the indexer's turn sees nothing.
    let power = crate::search::Query::parse("power");
    assert_eq!(search_all(&store, &power).1, 0);
    assert_eq!(
        store.index_pending().unwrap(),
        3,
        "two runs and the summaries"
    );
    let queries =
        ["power", "\"power cut\"", "outage", "meter thanks"].map(crate::search::Query::parse);
    let before: Vec<_> = queries.iter().map(|q| search_all(&store, q)).collect();
    assert_eq!(before[0].1, 2);
    assert_eq!(before[2].1, 2, "summaries are searched");
    // Lost.
    store
        .write(|t| {
            t.search_segments.retain(|_, _| false)?;
            t.search_postings.retain(|_, _| false)?;
            t.meta.remove("search_index")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(search_all(&store, &power).1, 0);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.index_pending().unwrap(), 3);
    let after: Vec<_> = queries.iter().map(|q| search_all(&store, q)).collect();
    assert_eq!(after, before);
}

/// A segment built from text deleted (or parsed again) before it is
/// written is dropped: the piece it was built from is no longer queued
/// under the number it was read with.
#[test]
fn a_segment_built_from_text_since_gone_is_never_written() {
    let (_dir, store) = temp_store();
    let id = upload_uuid(1);
    let complete = |texts: &[&str]| {
        store.save_results(&[], Some(&upload(id)), true).unwrap();
        for (i, text) in texts.iter().enumerate() {
            store
                .put_messages(id, &[row("c1", i as u64 * 10, text, Some(0))], false)
                .unwrap();
        }
        store
            .save_results(
                &[outcome(
                    id,
                    "c1",
                    Some(analysis(SentimentLabel::Negative, 2, None)),
                )],
                None,
                false,
            )
            .unwrap();
        let mut rec = store.upload(id).unwrap().unwrap();
        rec.status = Stage::Completed;
        store.save_results(&[], Some(&rec), true).unwrap();
    };
    complete(&["meter broken", "power cut"]);
    // Read and built, not yet written...
    let late: Vec<super::BuiltSegment> = store
        .pending_segments(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|p| super::BuiltSegment {
            pending: p,
            segment: store.segment_source(p).unwrap().unwrap().build(),
        })
        .collect();
    assert_eq!(late.len(), 3);
    // ...while the upload is deleted and uploaded again with one run.
    store.delete_upload(id).unwrap();
    complete(&["meter broken"]);
    assert_eq!(
        store.put_segments(&late).unwrap(),
        0,
        "every piece was queued again, or is gone"
    );
    store.index_pending().unwrap();
    assert_eq!(
        search_all(&store, &crate::search::Query::parse("power")).1,
        0
    );
    assert_eq!(
        search_all(&store, &crate::search::Query::parse("meter")).1,
        1
    );
}

#[test]
fn an_alert_is_raised_once_and_acknowledged_once() {
    use crate::alerts::{AlertKind, Detected, Subject};
    let (_dir, store) = temp_store();
    let detected = |day, name: &str| Detected {
        day,
        subject: Subject::Topic(name.into()),
        kind: AlertKind::Volume,
        value: 160.0,
        baseline: 40.0,
        conversations: 160,
    };
    let t0 = DateTime::from_timestamp(1_775_000_000, 0).unwrap();
    let raised = store
        .raise_alerts(
            &[detected(20_545, "outage"), detected(20_540, "billing")],
            t0,
        )
        .unwrap();
    assert_eq!(raised.len(), 2);
    // The same day, subject and kind again: nothing new, the first kept.
    let later = t0 + chrono::TimeDelta::hours(1);
    let again = store
        .raise_alerts(
            &[detected(20_545, "outage"), detected(20_546, "outage")],
            later,
        )
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].date, "2026-04-03");
    let all = store.alerts(None, None, false).unwrap();
    let dates: Vec<&str> = all.iter().map(|a| a.date.as_str()).collect();
    assert_eq!(
        dates,
        ["2026-04-03", "2026-04-02", "2026-03-28"],
        "newest first"
    );
    assert_eq!(all[1].raised_at, t0);
    let id = all[1].id.clone();
    let acked = store.acknowledge_alert(&id, later).unwrap().unwrap();
    assert!(acked.acknowledged);
    let twice = store
        .acknowledge_alert(&id, later + chrono::TimeDelta::hours(1))
        .unwrap()
        .unwrap();
    assert_eq!(twice.acknowledged_at, Some(later), "the first time stays");
    assert!(
        store
            .acknowledge_alert("0123456789abcdef", later)
            .unwrap()
            .is_none()
    );
    let open = store.alerts(None, None, true).unwrap();
    assert_eq!(open.len(), 2);
    assert!(open.iter().all(|a| a.id != id));
    let range = store
        .alerts(Some("2026-03-29"), Some("2026-04-02"), false)
        .unwrap();
    assert_eq!(range.len(), 1);
    assert_eq!(range[0].id, id);
}
