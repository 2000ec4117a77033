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
