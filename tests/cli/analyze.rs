use crate::helpers::*;
use powerpulse::model::{ConversationStatus, Stage};
use uuid::Uuid;

#[test]
fn the_bundled_sample_is_analysed_and_stored() {
    let sb = Sandbox::new();
    let run = sb.analyze(&sample());
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let s = run.json();
    assert_eq!(s["success"], true);
    let conversations = s["conversations_processed"].as_u64().unwrap();
    assert!((150..=250).contains(&conversations), "{conversations}");
    assert!(s["messages_processed"].as_u64().unwrap() > conversations * 3);
    assert!(s["autoresponses_filtered"].as_u64().unwrap() > 0);
    assert_eq!(
        s["analyzed"].as_u64().unwrap() + s["skipped_already_processed"].as_u64().unwrap(),
        conversations
    );
    assert_eq!(s["failed"], 0);
    let sentiment = &s["sentiment"];
    let total: u64 = ["positive", "neutral", "negative"]
        .iter()
        .map(|k| sentiment[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, conversations);
    assert!(sentiment["positive"].as_u64().unwrap() > 0);
    assert!(sentiment["negative"].as_u64().unwrap() > 0);
    let avg = s["average_satisfaction"].as_f64().unwrap();
    assert!((1.0..=5.0).contains(&avg));
    for key in ["upload_id", "processing_time_seconds", "warnings", "llm"] {
        assert!(s.get(key).is_some(), "summary lacks {key}");
    }

    // The file holds what the summary says.
    let id: Uuid = s["upload_id"].as_str().unwrap().parse().unwrap();
    let store = sb.store();
    let upload = store.upload(id).unwrap().unwrap();
    assert_eq!(upload.status, Stage::Completed);
    assert_eq!(upload.counts.conversations, conversations);
    assert_eq!(
        store.message_count(id).unwrap(),
        s["messages_processed"].as_u64().unwrap()
    );
    let summary = store.summary(id).unwrap();
    assert_eq!(
        summary.sentiment.positive,
        sentiment["positive"].as_u64().unwrap()
    );
}

#[test]
fn every_format_gives_the_same_result() {
    let sb = Sandbox::new();
    let rows = conversations(12);
    let files = [
        sb.write("export.csv", to_csv(&rows)),
        sb.write("rows.json", to_json_rows(&rows)),
        sb.write("nested.json", to_json_nested(&rows)),
        sb.write("export.jsonl", to_jsonl(&rows)),
        {
            let p = sb.path("export.xlsx");
            to_xlsx(&rows, &p);
            p
        },
    ];
    let mut ids = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let run = sb.analyze(file);
        assert_eq!(run.code, 0, "{}: {}", file.display(), run.stderr);
        let s = run.json();
        assert_eq!(s["conversations_processed"], 12, "{}", file.display());
        assert_eq!(s["messages_processed"], 48, "{}", file.display());
        assert_eq!(s["autoresponses_filtered"], 12, "{}", file.display());
        assert_eq!(
            s["warnings_total"],
            0,
            "{}: {}",
            file.display(),
            s["warnings"]
        );
        if i == 0 {
            assert_eq!(s["analyzed"], 12);
        } else {
            // Same content, same analyzer: nothing is analysed twice.
            assert_eq!(s["skipped_already_processed"], 12, "{}", file.display());
            assert_eq!(s["analyzed"], 0);
        }
        ids.push(s["upload_id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }

    let store = sb.store();
    let first = store.conversation(ids[0], "conv-0001").unwrap().unwrap();
    assert_eq!(first.messages.len(), 4);
    assert!(first.messages[0].autoresponse, "bot greeting is flagged");
    assert!(
        first.messages[2].text.contains('\n'),
        "embedded newline kept"
    );
    for id in &ids[1..] {
        let other = store.conversation(*id, "conv-0001").unwrap().unwrap();
        let texts = |d: &powerpulse::store::ConversationDetail| {
            d.messages
                .iter()
                .map(|m| (m.role, m.text.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&first), texts(&other));
        assert_eq!(other.analysis, first.analysis);
        assert_eq!(
            other.record.unwrap().status,
            ConversationStatus::SkippedAlreadyProcessed
        );
    }
}

#[test]
fn uploads_lists_what_was_stored() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(3)));
    assert_eq!(sb.analyze(&file).code, 0);
    let run = sb.run(&["uploads"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("a.csv") && run.stdout.contains("completed"),
        "{}",
        run.stdout
    );
    let run = sb.run(&["uploads", "--json"]);
    assert_eq!(run.json().as_array().unwrap().len(), 1);
}

#[test]
fn openai_without_a_key_fails_before_any_work() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(3)));
    let run = sb.run(&["analyze", file.to_str().unwrap(), "--analyzer", "openai"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("OPENAI_API_KEY"), "{}", run.stderr);
    assert!(
        !sb.db().exists(),
        "no database is created for a run that cannot start"
    );
}

#[test]
fn identical_conversations_in_nearby_batches_are_analysed_once() {
    // Batches of two conversations, read in id order. conv-0000's content
    // comes again in its own batch, in each of the next four (being analysed,
    // recorded, committed while the next is read) and two further on, when
    // the processed-content index shows it.
    let twins = [1, 2, 4, 6, 8, 12];
    let mut rows = conversations(16);
    let first: Vec<[String; 4]> = rows[..4].to_vec();
    for &c in &twins {
        for (i, row) in first.iter().enumerate() {
            let mut copy = row.clone();
            copy[0] = format!("conv-{c:04}");
            rows[c * 4 + i] = copy;
        }
    }
    let sb = Sandbox::new();
    let file = sb.write("twins.csv", to_csv(&rows));
    let run = sb.run_with_env(
        &["analyze", file.to_str().unwrap(), "--json"],
        &[("POWERPULSE__ANALYZER__BATCH_SIZE", "2")],
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let s = run.json();
    assert_eq!(s["conversations_processed"], 16);
    assert_eq!(s["analyzed"], 16 - twins.len(), "{s}");
    assert_eq!(s["skipped_already_processed"], twins.len(), "{s}");
    let id: Uuid = s["upload_id"].as_str().unwrap().parse().unwrap();
    let store = sb.store();
    let original = store.conversation(id, "conv-0000").unwrap().unwrap();
    for c in twins {
        let twin = store
            .conversation(id, &format!("conv-{c:04}"))
            .unwrap()
            .unwrap();
        let record = twin.record.unwrap();
        assert_eq!(
            record.status,
            ConversationStatus::SkippedAlreadyProcessed,
            "conv-{c:04}"
        );
        assert_eq!(twin.analysis, original.analysis, "conv-{c:04}");
    }
}
