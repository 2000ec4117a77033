//! Each kind of bad input gets its exact outcome, and never changes what the
//! database already held.

use crate::helpers::*;

/// Runs `file` against a database that already holds one upload, and checks
/// the failure left that database exactly as it was.
fn fails_cleanly(sb: &Sandbox, file: &std::path::Path) -> Run {
    let good = sb.write("good.csv", to_csv(&conversations(2)));
    if !sb.db().exists() {
        assert_eq!(sb.analyze(&good).code, 0);
    }
    let before = fingerprint(&sb.store());
    let run = sb.analyze(file);
    assert_eq!(
        run.code,
        1,
        "expected failure for {}: {}",
        file.display(),
        run.stdout
    );
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        run.stderr.contains(name),
        "error names the file: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(fingerprint(&sb.store()), before, "database unchanged");
    run
}

#[test]
fn empty_and_header_only_files_fail() {
    let sb = Sandbox::new();
    fails_cleanly(&sb, &sb.write("empty.csv", ""));
    fails_cleanly(
        &sb,
        &sb.write("header.csv", "conversation_id,sender,message\n"),
    );
    fails_cleanly(&sb, &sb.write("empty.json", "[]"));
    fails_cleanly(&sb, &sb.write("blank.jsonl", "\n\n"));
}

#[test]
fn binary_files_fail() {
    let sb = Sandbox::new();
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    fails_cleanly(&sb, &sb.write("random.csv", &bytes));
    fails_cleanly(&sb, &sb.write("random.json", &bytes));
}

#[test]
fn fake_xlsx_fails() {
    let sb = Sandbox::new();
    let run = fails_cleanly(&sb, &sb.write("fake.xlsx", to_csv(&conversations(2))));
    assert!(run.stderr.to_lowercase().contains("xlsx"), "{}", run.stderr);
}

#[test]
fn truncated_json_fails_naming_the_line() {
    let sb = Sandbox::new();
    let mut json = to_json_rows(&conversations(3));
    json.truncate(json.len() / 2);
    let run = fails_cleanly(&sb, &sb.write("cut.json", json));
    assert!(run.stderr.contains("line"), "{}", run.stderr);
}

#[test]
fn wrong_typed_json_fails() {
    let sb = Sandbox::new();
    fails_cleanly(&sb, &sb.write("number.json", "42"));
    fails_cleanly(&sb, &sb.write("strings.json", r#"["a", "b"]"#));
}

#[test]
fn a_file_without_the_needed_columns_fails_naming_them() {
    let sb = Sandbox::new();
    let run = fails_cleanly(&sb, &sb.write("cols.csv", "foo,bar,baz\n1,2,3\n4,5,6\n"));
    let err = run.stderr.to_lowercase();
    assert!(err.contains("conversation"), "{}", run.stderr);
    assert!(
        err.contains("foo"),
        "lists the headers found: {}",
        run.stderr
    );
}

#[test]
fn ragged_rows_are_skipped_with_their_line_in_warnings() {
    let sb = Sandbox::new();
    let csv =
        "conversation_id,sender,message\nc1,customer,hello there\nc1\nc2,customer,thanks a lot\n";
    let run = sb.analyze(&sb.write("ragged.csv", csv));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["conversations_processed"], 2);
    assert_eq!(s["messages_processed"], 2);
    let warnings = s["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().contains("line 3"),
        "{warnings:?}"
    );
}

#[test]
fn a_64_mib_field_is_skipped_not_fatal() {
    let sb = Sandbox::new();
    let mut csv = String::from("conversation_id,sender,message\nc1,customer,hello\nc2,customer,\"");
    csv.push_str(&"x".repeat(64 * 1024 * 1024));
    csv.push_str("\"\nc3,customer,thanks\n");
    let run = sb.analyze(&sb.write("huge.csv", csv));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["conversations_processed"], 2);
    let w = s["warnings"][0].as_str().unwrap();
    assert!(w.contains("line 3") && w.contains("message"), "{w}");
}

#[test]
fn a_missing_file_fails_without_creating_a_database() {
    let sb = Sandbox::new();
    let run = sb.run(&["analyze", "nope.csv"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("nope.csv"), "{}", run.stderr);
    assert!(!sb.db().exists());
}

#[test]
fn a_locked_database_is_a_clear_error() {
    let sb = Sandbox::new();
    let file = sb.write("a.csv", to_csv(&conversations(1)));
    assert_eq!(sb.analyze(&file).code, 0);
    let _held = sb.store();
    let run = sb.analyze(&file);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("in use"), "{}", run.stderr);
}
