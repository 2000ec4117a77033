//! Format and encoding tests, bad input, and round-trip properties.

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

fn opts() -> IngestOptions {
    IngestOptions::from_settings(&IngestSettings::default())
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Every row of a file, or the error that stopped it.
fn read(path: &Path, opts: &IngestOptions) -> Result<(Vec<MessageRow>, Vec<Warning>), IngestError> {
    let mut messages = Vec::new();
    let mut warnings = Vec::new();
    for row in open(path, opts)? {
        match row? {
            Row::Message(m) => messages.push(m),
            Row::Warning(w) => warnings.push(w),
        }
    }
    Ok((messages, warnings))
}

fn simple(rows: &[MessageRow]) -> Vec<(String, Role, String)> {
    rows.iter()
        .map(|r| {
            (
                r.conversation_id.clone(),
                r.message.role,
                r.message.text.clone(),
            )
        })
        .collect()
}

const CANONICAL: &str = "conversation_id,sender,message,timestamp,sender_name\n\
c1,customer,\"Hello, I have \"\"no\"\" power\nsince morning\",2026-03-01T10:00:00Z,Ram\n\
c2,bot,Welcome! Dial *977# for self-service,2026-03-01T10:00:01Z,\n\
c1,agent,Checking now,2026-03-01T10:01:00Z,Sita\n";

fn canonical_expected() -> Vec<(String, Role, String)> {
    vec![
        (
            "c1".into(),
            Role::Customer,
            "Hello, I have \"no\" power\nsince morning".into(),
        ),
        (
            "c2".into(),
            Role::Bot,
            "Welcome! Dial *977# for self-service".into(),
        ),
        ("c1".into(), Role::Agent, "Checking now".into()),
    ]
}

#[test]
fn csv_utf8_with_and_without_bom() {
    let fx = Fixture::new();
    for (name, bytes) in [
        ("plain.csv", CANONICAL.as_bytes().to_vec()),
        (
            "bom.csv",
            [b"\xEF\xBB\xBF".as_slice(), CANONICAL.as_bytes()].concat(),
        ),
    ] {
        let (rows, warnings) = read(&fx.file(name, bytes), &opts()).unwrap();
        assert_eq!(simple(&rows), canonical_expected(), "{name}");
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].line, 4, "a quoted newline moves later rows down");
        assert_eq!(rows[0].message.sender_name.as_deref(), Some("Ram"));
        assert_eq!(rows[1].message.sender_name, None);
        assert!(rows[1].message.autoresponse);
        assert!(!rows[0].message.autoresponse);
        assert_eq!(rows[0].message.time_ms, Some(1_772_359_200_000));
    }
}

#[test]
fn csv_utf16_both_endiannesses() {
    let fx = Fixture::new();
    let le: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(CANONICAL.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let be: Vec<u8> = [0xFE, 0xFF]
        .into_iter()
        .chain(CANONICAL.encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    for (name, bytes) in [("le.csv", le), ("be.csv", be)] {
        let (rows, _) = read(&fx.file(name, bytes), &opts()).unwrap();
        assert_eq!(simple(&rows), canonical_expected(), "{name}");
    }
}

#[test]
fn csv_semicolon_and_tab_delimiters() {
    let fx = Fixture::new();
    for (name, sep) in [("semi.csv", ";"), ("tab.tsv", "\t")] {
        let text = format!(
            "Chat ID{sep}Role{sep}Body\nc1{sep}user{sep}hi, there\nc1{sep}operator{sep}hello\n"
        );
        let (rows, _) = read(&fx.file(name, text), &opts()).unwrap();
        assert_eq!(
            simple(&rows),
            vec![
                ("c1".into(), Role::Customer, "hi, there".into()),
                ("c1".into(), Role::Agent, "hello".into())
            ],
            "{name}"
        );
    }
}

#[test]
fn column_overrides_are_used() {
    let fx = Fixture::new();
    let mut o = opts();
    o.columns.text = Some("Customer Words".into());
    let path = fx.file("o.csv", "chat,role,Customer Words\nc,user,words\n");
    let (rows, _) = read(&path, &o).unwrap();
    assert_eq!(rows[0].message.text, "words");
}

#[test]
fn roles_normalise_and_unknown_ones_warn_once() {
    for (raw, role) in [
        ("User", Role::Customer),
        (" client ", Role::Customer),
        ("INBOUND", Role::Customer),
        ("operator", Role::Agent),
        ("outbound", Role::Agent),
        ("Automated", Role::Bot),
        ("system", Role::Bot),
    ] {
        assert_eq!(normalize_role(raw), Some(role), "{raw}");
    }
    assert_eq!(normalize_role("martian"), None);

    let fx = Fixture::new();
    let path = fx.file(
        "r.csv",
        "chat,role,text\nc,martian,a\nc,martian,b\nc,venusian,c\n",
    );
    let (rows, warnings) = read(&path, &opts()).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.message.role == Role::Customer));
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert_eq!(
        warnings[0].to_string(),
        "line 2: unknown sender role \"martian\", treated as customer"
    );
    // Every role was a guess: the upload says so, and how to fix it.
    assert!(warnings[2].is_notice());
    assert!(
        warnings[2]
            .to_string()
            .starts_with("the role of 3 of 3 messages (100 %) is a guess"),
        "{}",
        warnings[2]
    );
    assert!(warnings[2].to_string().contains("ingest.columns.sender"));
}

#[test]
fn json_rows_nested_and_wrapped_shapes() {
    let fx = Fixture::new();
    let rows = r#"[{"chat_id": 17, "role": "user", "text": "hi", "created_at": "2026-03-01 10:00:00"},
                   {"chat_id": 17, "role": "agent", "text": "hello"}]"#;
    let nested = r#"[{"id": 17, "messages": [{"sender": "user", "message": "hi"},
                                              {"sender": "agent", "message": "hello"}]}]"#;
    let wrapped = r#"{"exported": "2026-03", "conversations": [{"id": "17", "messages": [
                      {"from": "visitor", "body": "hi"}, {"from": "staff", "body": "hello"}]}]}"#;
    let expected = vec![
        ("17".to_string(), Role::Customer, "hi".to_string()),
        ("17".to_string(), Role::Agent, "hello".to_string()),
    ];
    for (name, text) in [
        ("rows.json", rows),
        ("nested.json", nested),
        ("wrapped.json", wrapped),
    ] {
        let (got, warnings) = read(&fx.file(name, text), &opts()).unwrap();
        assert_eq!(simple(&got), expected, "{name}");
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
    let (got, _) = read(&fx.file("rows.json", rows), &opts()).unwrap();
    assert_eq!(got[1].line, 2, "elements report the line they start on");
    assert_eq!(got[0].message.time_ms, Some(1_772_359_200_000));
}

#[test]
fn jsonl_skips_bad_lines_with_warnings() {
    let fx = Fixture::new();
    let text = "{\"chat\":\"a\",\"role\":\"user\",\"text\":\"one\"}\n\n{not json}\n{\"chat\":\"a\",\"role\":\"agent\",\"text\":\"two\"}\n";
    let (rows, warnings) = read(&fx.file("x.jsonl", text), &opts()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].line, 4);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]
            .to_string()
            .starts_with("line 3: not valid JSON"),
        "{}",
        warnings[0]
    );
}

#[test]
fn xlsx_first_sheet_with_numbers_and_dates() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("book.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["Ticket ID", "Direction", "Content", "Sent At"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    sheet.write_number(1, 0, 1042.0).unwrap();
    sheet.write_string(1, 1, "inbound").unwrap();
    sheet.write_string(1, 2, "मेरो बत्ती छैन 😡").unwrap();
    let date = rust_xlsxwriter::ExcelDateTime::parse_from_str("2026-03-01T10:00:00").unwrap();
    let fmt = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    sheet.write_datetime_with_format(1, 3, &date, &fmt).unwrap();
    sheet.write_number(2, 0, 1042.0).unwrap();
    sheet.write_string(2, 1, "outbound").unwrap();
    sheet.write_string(2, 2, "Sorry, checking").unwrap();
    book.save(&path).unwrap();

    let (rows, warnings) = read(&path, &opts()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        simple(&rows),
        vec![
            ("1042".into(), Role::Customer, "मेरो बत्ती छैन 😡".into()),
            ("1042".into(), Role::Agent, "Sorry, checking".into())
        ]
    );
    assert_eq!(rows[0].line, 2);
    assert_eq!(rows[0].message.time_ms, Some(1_772_359_200_000));
}

#[test]
fn format_comes_from_the_extension_and_is_confirmed_by_content() {
    let fx = Fixture::new();
    assert_eq!(
        open(&fx.file("a.csv", CANONICAL), &opts())
            .unwrap()
            .format(),
        Format::Csv
    );
    assert_eq!(
        open(&fx.file("noext", "[{\"a\":1}]"), &opts())
            .unwrap()
            .format(),
        Format::Json
    );
    assert_eq!(
        open(&fx.file("noext2", "{\"a\":1}\n"), &opts())
            .unwrap()
            .format(),
        Format::Jsonl
    );
    let err = open(&fx.file("fake.xlsx", CANONICAL), &opts())
        .err()
        .unwrap();
    assert!(matches!(err, IngestError::Xlsx { .. }), "{err}");
    assert!(err.to_string().contains("fake.xlsx"));
    let err = open(&fx.file("old.xls", CANONICAL), &opts()).err().unwrap();
    assert!(err.is_unsupported_format());
    let err = open(&fx.file("zip.csv", b"PK\x03\x04rest"), &opts())
        .err()
        .unwrap();
    assert!(matches!(err, IngestError::Binary { .. }), "{err}");
}

#[test]
fn bad_input_gets_precise_errors() {
    let fx = Fixture::new();
    let err = |name: &str, bytes: &[u8]| read(&fx.file(name, bytes), &opts()).unwrap_err();

    assert!(matches!(err("e.csv", b""), IngestError::Empty { .. }));
    assert!(matches!(
        err("ws.json", b" \n\t"),
        IngestError::Empty { .. }
    ));
    assert!(matches!(
        err("h.csv", b"chat,role,text\n"),
        IngestError::NoMessages { .. }
    ));
    assert!(matches!(
        err("nul.csv", b"chat,role,text\n\0\0\0"),
        IngestError::Binary { .. }
    ));
    assert!(matches!(
        err("latin1.csv", b"chat,role,text\nc,user,caf\xe9 au lait\n"),
        IngestError::Binary { .. }
    ));

    let e = err("cols.csv", b"foo,bar\n1,2\n");
    let text = e.to_string();
    assert!(matches!(
        e,
        IngestError::MissingColumn {
            column: Column::ConversationId,
            ..
        }
    ));
    assert!(
        text.contains("cols.csv") && text.contains("\"foo\", \"bar\""),
        "{text}"
    );

    let e = err(
        "cut.json",
        b"[{\"chat\":\"a\",\"role\":\"user\",\"text\":\"x\"},\n{\"chat\":\"a\",",
    );
    match e {
        IngestError::Malformed {
            line, ref message, ..
        } => {
            assert_eq!(line, 2);
            assert!(message.contains("EOF"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        err("n.json", b"42"),
        IngestError::Malformed { line: 1, .. }
    ));
    // One object that is neither a row nor holds rows: read as a row, it lacks the columns.
    assert!(matches!(
        err("obj.json", b"{\"x\": 1}"),
        IngestError::MissingColumn { .. }
    ));
    assert!(matches!(
        err("obj2.json", b"{\"x\": 1,\n\"y\": 2}"),
        IngestError::Malformed { line: 2, .. }
    ));
    assert!(matches!(
        err("s.json", b"[\"a\", \"b\"]"),
        IngestError::NoMessages { .. }
    ));
}

#[test]
fn row_problems_are_warnings_naming_line_and_field() {
    let fx = Fixture::new();
    let mut o = opts();
    o.max_field_bytes = 10;
    let text = "chat,role,message\nc1,user,short\nc1\nc2,user,far too long for the limit\n,user,no id\nc3,user,  \nc4,user,ok\n";
    let (rows, warnings) = read(&fx.file("w.csv", text), &o).unwrap();
    assert_eq!(rows.len(), 2);
    let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(
        w[0].starts_with("line 3: missing field \"role\", \"message\""),
        "{}",
        w[0]
    );
    assert!(
        w[1].starts_with("line 4: field \"message\" is 26 bytes"),
        "{}",
        w[1]
    );
    assert!(w[2].starts_with("line 5: empty \"chat\""), "{}", w[2]);
    assert!(w[3].starts_with("line 6: empty \"message\""), "{}", w[3]);

    let json = r#"[{"chat": "a", "role": "user", "text": {"nested": true}}, {"chat": "a", "role": "user", "text": "fine"}]"#;
    let (rows, warnings) = read(&fx.file("t.json", json), &opts()).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        warnings[0].message.contains("\"text\" is an object"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_reader_dropped_early_stops_its_parser_thread() {
    let fx = Fixture::new();
    let mut big = String::from("[");
    for i in 0..20_000 {
        big.push_str(&format!(
            "{{\"chat\":\"c{i}\",\"role\":\"user\",\"text\":\"t\"}},"
        ));
    }
    big.push_str("{\"chat\":\"end\",\"role\":\"user\",\"text\":\"t\"}]");
    let path = fx.file("big.json", big);
    let mut reader = open(&path, &opts()).unwrap();
    assert!(matches!(reader.next(), Some(Ok(Row::Message(_)))));
    drop(reader); // must not hang or panic
}

#[test]
fn format_displays_lowercase() {
    let shown: Vec<String> = [Format::Csv, Format::Json, Format::Jsonl, Format::Xlsx]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["csv", "json", "jsonl", "xlsx"]);
}

#[test]
fn content_overrides_a_mismatched_text_extension() {
    let fx = Fixture::new();
    let row = r#"{"chat":"a","role":"user","text":"hi"}"#;
    let cases = [
        // A JSON array saved as .jsonl, JSON lines saved as .json or .csv.
        ("array.jsonl", format!("[{row},\n{row}]"), Format::Json),
        ("lines.json", format!("{row}\n{row}\n"), Format::Jsonl),
        ("lines.csv", format!("{row}\n{row}\n"), Format::Jsonl),
        // One object: a row whatever the extension says, unless it holds the rows.
        ("one.json", format!("{row}\n"), Format::Jsonl),
        ("one.jsonl", format!("{row}\n"), Format::Jsonl),
        (
            "conversation.jsonl",
            format!("{{\"id\": 3, \"messages\": [{row}]}}"),
            Format::Json,
        ),
        // No extension: a wrapper object is a document, a message is a line.
        (
            "wrapped",
            format!("{{\"messages\": [{row}]}}"),
            Format::Json,
        ),
        ("single", row.to_string(), Format::Jsonl),
        (
            "pretty",
            "{\n  \"messages\": [\n    {\"chat\": \"a\", \"role\": \"user\", \"text\": \"hi\"}\n  ]\n}\n"
                .to_string(),
            Format::Json,
        ),
        ("plain", "chat,role,text\na,user,hi\n".to_string(), Format::Csv),
    ];
    for (name, text, format) in cases {
        let reader = open(&fx.file(name, &text), &opts()).unwrap();
        assert_eq!(reader.format(), format, "{name}");
        let rows: Vec<Row> = reader.map(Result::unwrap).collect();
        assert!(
            !rows.is_empty() && rows.iter().all(|r| matches!(r, Row::Message(_))),
            "{name}: {rows:?}"
        );
    }
}

#[test]
fn empty_means_no_content_whatever_the_encoding() {
    let fx = Fixture::new();
    for (name, bytes) in [
        ("zero.csv", b"".to_vec()),
        ("bom.csv", b"\xEF\xBB\xBF \r\n".to_vec()),
        ("bom16.csv", b"\xFF\xFE \x00\n\x00".to_vec()),
        ("blank.jsonl", b"\n\n\n".to_vec()),
    ] {
        let err = open(&fx.file(name, bytes), &opts()).err().unwrap();
        assert!(matches!(err, IngestError::Empty { .. }), "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains("no messages"),
            "{text}"
        );
    }
    // Whitespace longer than the sniff window is not taken for an empty file.
    let padded = format!(
        "{}chat,role,text\na,user,hi\n",
        "\n".repeat(SNIFF_BYTES + 10)
    );
    let (rows, _) = read(&fx.file("padded.csv", padded), &opts()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].line, SNIFF_BYTES as u64 + 12);
}

#[test]
fn binary_and_badly_encoded_files_name_the_line() {
    let fx = Fixture::new();
    let err = open(
        &fx.file("nul.csv", b"chat,role,text\na,user,hi\n\0\0\x01\x02"),
        &opts(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, IngestError::Binary { ref detail, .. } if detail.contains("line 3")),
        "{err}"
    );
    assert!(err.to_string().contains("nul.csv"), "{err}");

    let err = open(
        &fx.file("latin1.json", b"[{\"chat\": \"caf\xe9\"}]"),
        &opts(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, IngestError::Binary { ref detail, .. } if detail.contains("line 1")),
        "{err}"
    );

    // Past the sniff window, the CSV reader itself names line and field.
    let mut text = String::from("chat,role,text\n");
    while text.len() < SNIFF_BYTES * 2 {
        text.push_str("a,user,fine\n");
    }
    let bad_line = text.lines().count() as u64 + 1;
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"a,user,caf\xe9\n");
    match read(&fx.file("late.csv", bytes), &opts()).unwrap_err() {
        IngestError::Malformed {
            file,
            line,
            message,
        } => {
            assert!(file.ends_with("late.csv"));
            assert_eq!(line, bad_line);
            assert!(message.contains("message text field"), "{message}");
        }
        other => panic!("{other}"),
    }

    // A column PowerPulse does not read may hold anything.
    let mut text = String::from("chat,role,text,notes\n");
    while text.len() < SNIFF_BYTES * 2 {
        text.push_str("a,user,fine,x\n");
    }
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"a,user,last,caf\xe9\n");
    let (messages, _) = read(&fx.file("notes.csv", bytes), &opts()).unwrap();
    assert_eq!(messages.last().unwrap().message.text, "last");
}

#[test]
fn an_error_ends_the_stream() {
    let fx = Fixture::new();
    let path = fx.file(
        "cut.json",
        "[{\"chat\":\"a\",\"role\":\"user\",\"text\":\"x\"},\n{\"chat\":",
    );
    let items: Vec<_> = open(&path, &opts()).unwrap().collect();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(items[0], Ok(Row::Message(_))));
    assert!(matches!(
        items[1],
        Err(IngestError::Malformed { line: 2, .. })
    ));
}

#[test]
fn csv_rows_with_extra_fields_are_kept() {
    let fx = Fixture::new();
    let (rows, warnings) = read(
        &fx.file(
            "extra.csv",
            "chat,role,text\na,user,hi,surplus,more\nb,agent,ok\n",
        ),
        &opts(),
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        simple(&rows),
        vec![
            ("a".into(), Role::Customer, "hi".into()),
            ("b".into(), Role::Agent, "ok".into())
        ]
    );
}

#[test]
fn every_alias_finds_its_column() {
    let fx = Fixture::new();
    let ids = [
        "conversation_id",
        "Chat ID",
        "chat",
        "Conversation",
        "thread-id",
        "TICKET_ID",
        "session id",
    ];
    let senders = [
        "sender",
        "Sender Type",
        "role",
        "author_type",
        "From",
        "direction",
    ];
    let texts = ["message", "Text", "body", "CONTENT"];
    let times = ["timestamp", "time", "sent_at", "Created At", "date"];
    let names = ["sender_name", "Author", "name"];
    for i in 0..ids.len() {
        let header = [
            ids[i],
            senders[i % senders.len()],
            texts[i % texts.len()],
            times[i % times.len()],
            names[i % names.len()],
        ]
        .join(",");
        let path = fx.file(
            "a.csv",
            format!("{header}\nc9,agent,hello,2026-03-01,Sita\n"),
        );
        let (rows, warnings) = read(&path, &opts()).unwrap();
        assert!(warnings.is_empty(), "{header}: {warnings:?}");
        let m = &rows[0];
        assert_eq!(m.conversation_id, "c9", "{header}");
        assert_eq!(m.message.role, Role::Agent, "{header}");
        assert_eq!(m.message.text, "hello", "{header}");
        assert_eq!(
            m.message.timestamp.as_deref(),
            Some("2026-03-01"),
            "{header}"
        );
        assert_eq!(m.message.time_ms, Some(1_772_323_200_000), "{header}");
        assert_eq!(m.message.sender_name.as_deref(), Some("Sita"), "{header}");
    }
}

#[test]
fn missing_columns_are_named_for_every_format() {
    let fx = Fixture::new();
    let check = |err: IngestError, name: &str, column: Column, found: &str| {
        let text = err.to_string();
        assert!(
            matches!(err, IngestError::MissingColumn { column: c, .. } if c == column),
            "{text}"
        );
        assert!(
            text.contains(name) && text.contains(column.label()) && text.contains(found),
            "{text}"
        );
    };
    check(
        read(&fx.file("m.csv", "chat,text\na,hi\n"), &opts()).unwrap_err(),
        "m.csv",
        Column::Sender,
        "\"chat\", \"text\"",
    );
    check(
        read(
            &fx.file("m.json", r#"[{"chat": "a", "role": "user", "note": "hi"}]"#),
            &opts(),
        )
        .unwrap_err(),
        "m.json",
        Column::Text,
        "\"role\"",
    );
    check(
        read(
            &fx.file("m.jsonl", "{\"role\": \"user\", \"text\": \"hi\"}\n"),
            &opts(),
        )
        .unwrap_err(),
        "m.jsonl",
        Column::ConversationId,
        "\"text\"",
    );
    let path = fx.dir.path().join("m.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["Ticket", "Role", "Text"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    book.save(&path).unwrap();
    check(
        read(&path, &opts()).unwrap_err(),
        "m.xlsx",
        Column::ConversationId,
        "\"Ticket\", \"Role\", \"Text\"",
    );
}

#[test]
fn unknown_role_warnings_stop_after_a_bound() {
    let fx = Fixture::new();
    let mut text = String::from("chat,role,text\n");
    for i in 0..100 {
        text.push_str(&format!("c,role{i},hi\nc,role{i},again\n"));
    }
    let (rows, mut warnings) = read(&fx.file("roles.csv", text), &opts()).unwrap();
    assert_eq!(rows.len(), 200);
    assert!(warnings.pop().is_some_and(|w| w.is_notice()));
    assert_eq!(
        warnings.len(),
        MAX_UNKNOWN_ROLE_WARNINGS + 1,
        "{warnings:?}"
    );
    assert!(
        warnings
            .last()
            .unwrap()
            .message
            .contains("without a warning")
    );
}

#[test]
fn json_messages_carry_their_own_lines_and_ids() {
    let fx = Fixture::new();
    // The id after the messages, numbers as ids and texts, pretty-printed.
    let doc = r#"[
  {
    "messages": [
      {"role": "user", "text": 42},
      {
        "role": "agent",
        "text": "hello",
        "sent_at": 1772362800
      }
    ],
    "id": 7
  },
  {"id": "b", "messages": [{"role": "user", "text": "second", "conversation_id": "ignored"}]}
]"#;
    let (rows, warnings) = read(&fx.file("lines.json", doc), &opts()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        simple(&rows),
        vec![
            ("7".into(), Role::Customer, "42".into()),
            ("7".into(), Role::Agent, "hello".into()),
            ("b".into(), Role::Customer, "second".into()),
        ]
    );
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![4, 5, 13]
    );
    assert_eq!(rows[1].message.time_ms, Some(1_772_362_800_000));

    // One conversation as the whole document; its id precedes the messages.
    let single = r#"{"id": "solo", "messages": [{"role": "user", "text": "hi"}]}"#;
    let (rows, _) = read(&fx.file("single.json", single), &opts()).unwrap();
    assert_eq!(rows[0].conversation_id, "solo");
    // Messages under a top-level key carry their own ids.
    let rows_doc =
        r#"{"exported": {"by": "x"}, "messages": [{"chat": "c", "role": "user", "text": "hi"}]}"#;
    let (rows, _) = read(&fx.file("rows.json", rows_doc), &opts()).unwrap();
    assert_eq!(rows[0].conversation_id, "c");
}

#[test]
fn wrong_json_types_are_warnings_or_errors() {
    let fx = Fixture::new();
    let doc = r#"[
 {"chat": "a", "role": "user", "text": ["x"]},
 {"chat": "a", "role": "user", "text": "ok", "timestamp": {"at": 1}},
 "just a string",
 {"id": "c", "messages": [17, {"role": "user", "text": "fine"}]}
]"#;
    let (rows, warnings) = read(&fx.file("types.json", doc), &opts()).unwrap();
    assert_eq!(
        simple(&rows),
        vec![
            ("a".into(), Role::Customer, "ok".into()),
            ("c".into(), Role::Customer, "fine".into())
        ]
    );
    assert_eq!(rows[0].message.timestamp, None);
    let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        vec![
            "line 2: field \"text\" is an array, not text; row skipped",
            "line 3: field \"timestamp\" is an object, not text; field ignored",
            "line 4: expected a message object, found a string; skipped",
            "line 5: expected a message object, found a number; skipped",
        ]
    );
    for (name, text) in [("s.json", "\"text\""), ("t.json", "true")] {
        let err = read(&fx.file(name, text), &opts()).unwrap_err();
        assert!(
            matches!(err, IngestError::Malformed { line: 1, ref message, .. } if message.contains("expected a JSON array")),
            "{err}"
        );
    }
}

#[test]
fn jsonl_without_a_single_valid_line_is_an_error() {
    let fx = Fixture::new();
    let err = read(&fx.file("junk.jsonl", "{oops\n\n{\"a\": \n"), &opts()).unwrap_err();
    match err {
        IngestError::Malformed {
            ref file,
            line,
            ref message,
        } => {
            assert!(file.ends_with("junk.jsonl"));
            assert_eq!(line, 1);
            assert!(message.starts_with("no line is valid JSON"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_64_mib_field_is_skipped_and_reading_goes_on() {
    let fx = Fixture::new();
    let huge = "x".repeat(64 * 1024 * 1024);
    let mut csv = String::from("chat,role,text\na,user,before\n");
    csv.push_str(&format!("a,user,\"{huge}\"\na,agent,after\n"));
    let (rows, warnings) = read(&fx.file("huge.csv", csv), &opts()).unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.message.text.as_str())
            .collect::<Vec<_>>(),
        ["before", "after"]
    );
    assert_eq!(rows[1].line, 4);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]
            .to_string()
            .starts_with("line 3: field \"text\" is 67108864 bytes, over the 1048576-byte limit"),
        "{}",
        warnings[0].message
    );

    // JSON lines and JSON arrays hold it the same way (a smaller one: the
    // JSON parser reads byte by byte and tests run unoptimised).
    let big = &huge[..4 * 1024 * 1024];
    let line = |text: &str| format!("{{\"chat\":\"a\",\"role\":\"user\",\"text\":\"{text}\"}}");
    for (name, text) in [
        (
            "huge.jsonl",
            format!("{}\n{}\n{}\n", line("before"), line(big), line("after")),
        ),
        (
            "huge.json",
            format!("[{},\n{},\n{}]", line("before"), line(big), line("after")),
        ),
    ] {
        let (rows, warnings) = read(&fx.file(name, text), &opts()).unwrap();
        assert_eq!(rows.len(), 2, "{name}");
        assert_eq!(warnings.len(), 1, "{name}");
        assert!(
            warnings[0]
                .to_string()
                .starts_with("line 2: field \"text\" is 4194304 bytes"),
            "{name}: {}",
            warnings[0].message
        );
    }
}

#[test]
fn xlsx_skips_blank_rows_and_numbers_rows_as_the_sheet_does() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("gaps.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["chat_id", "role", "message", "time"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    sheet.write_number(1, 0, 7.5).unwrap();
    sheet.write_string(1, 1, "user").unwrap();
    sheet.write_string(1, 2, "first").unwrap();
    sheet.write_number(1, 3, 1_772_362_800.0).unwrap();
    // Row 3 left blank.
    sheet.write_number(3, 0, 8.0).unwrap();
    sheet.write_string(3, 1, "agent").unwrap();
    sheet.write_string(3, 2, "").unwrap();
    sheet.write_number(4, 0, 8.0).unwrap();
    sheet.write_boolean(4, 1, true).unwrap();
    sheet.write_string(4, 2, "odd role").unwrap();
    book.save(&path).unwrap();

    let (rows, warnings) = read(&path, &opts()).unwrap();
    assert_eq!(
        simple(&rows),
        vec![
            ("7.5".into(), Role::Customer, "first".into()),
            ("8".into(), Role::Customer, "odd role".into())
        ]
    );
    assert_eq!(rows[0].message.time_ms, Some(1_772_362_800_000));
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 5]);
    let w: Vec<String> = warnings
        .iter()
        .filter(|w| !w.is_notice())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        w,
        vec![
            "line 4: empty \"message\" field; row skipped",
            "line 5: unknown sender role \"true\", treated as customer",
        ]
    );
}

// ---- round trips ------------------------------------------------------------------

/// A conversation id as an export may write it: JSON has numbers for ids too.
#[derive(Debug, Clone)]
enum Id {
    Text(String),
    Number(u32),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Id::Text(s) => s.clone(),
            Id::Number(n) => n.to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Id::Text(s) => s.as_str().into(),
            Id::Number(n) => (*n).into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Msg {
    id: Id,
    role: &'static str,
    text: String,
    /// As written, and the Unix milliseconds it stands for.
    timestamp: Option<(String, i64)>,
    sender_name: Option<String>,
}

impl Msg {
    fn fields(&self) -> [String; 5] {
        [
            self.id.text(),
            self.role.to_string(),
            self.text.clone(),
            self.timestamp.clone().map(|t| t.0).unwrap_or_default(),
            self.sender_name.clone().unwrap_or_default(),
        ]
    }

    fn json(&self, with_id: bool) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        if with_id {
            o.insert("conversation_id".into(), self.id.json());
        }
        o.insert("sender".into(), self.role.into());
        o.insert("message".into(), self.text.as_str().into());
        if let Some((t, _)) = &self.timestamp {
            o.insert("timestamp".into(), t.as_str().into());
        }
        if let Some(n) = &self.sender_name {
            o.insert("sender_name".into(), n.as_str().into());
        }
        o.into()
    }
}

const HEADER: [&str; 5] = [
    "conversation_id",
    "sender",
    "message",
    "timestamp",
    "sender_name",
];

fn text_strategy() -> impl Strategy<Value = String> {
    // Commas, quotes, newlines, semicolons, tabs, Devanagari, emoji: what breaks naive parsers.
    proptest::string::string_regex("[a-zA-Z0-9 ,;\"'\\t\\n.!?*#क-हािीुू्😡🙏]{1,40}")
        .unwrap()
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

fn timestamp_strategy() -> impl Strategy<Value = Option<(String, i64)>> {
    let formats = prop_oneof![
        Just("%Y-%m-%dT%H:%M:%SZ"),
        Just("%Y-%m-%dT%H:%M:%S%:z"),
        Just("%Y-%m-%d %H:%M:%S"),
        Just("%Y-%m-%d %H:%M"),
        Just("%d/%m/%Y %H:%M:%S"),
        Just("%s"),
    ];
    proptest::option::of((0i64..4_000_000_000, formats).prop_map(|(secs, format)| {
        let at = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
        let minutes_only = format.ends_with("%M");
        let ms = if minutes_only { secs - secs % 60 } else { secs } * 1000;
        (at.format(format).to_string(), ms)
    }))
}

fn messages_strategy() -> impl Strategy<Value = Vec<Msg>> {
    let id = prop_oneof![
        proptest::string::string_regex("[a-z0-9-]{1,8}")
            .unwrap()
            .prop_map(Id::Text),
        (0u32..1_000_000).prop_map(Id::Number),
    ];
    let name = proptest::option::of(
        proptest::string::string_regex("[A-Za-zक-ह]([A-Za-z .क-ह]{0,10}[A-Za-z])?").unwrap(),
    );
    proptest::collection::vec(
        (
            id,
            prop_oneof![Just("customer"), Just("agent"), Just("bot"), Just("user")],
            text_strategy(),
            timestamp_strategy(),
            name,
        )
            .prop_map(|(id, role, text, timestamp, sender_name)| Msg {
                id,
                role,
                text,
                timestamp,
                sender_name,
            }),
        1..25,
    )
}

/// The rows a correct reader returns: the model the parsers are checked against.
fn expected(msgs: &[Msg]) -> Vec<(String, Message)> {
    msgs.iter()
        .map(|m| {
            let role = normalize_role(m.role).unwrap_or(Role::Customer);
            let message = Message {
                role,
                autoresponse: role == Role::Bot || m.text.contains("*977#"),
                text: m.text.clone(),
                timestamp: m.timestamp.clone().map(|t| t.0),
                time_ms: m.timestamp.as_ref().map(|t| t.1),
                sender_name: m.sender_name.clone(),
            };
            (m.id.text(), message)
        })
        .collect()
}

fn got(rows: Vec<MessageRow>) -> Vec<(String, Message)> {
    rows.into_iter()
        .map(|r| (r.conversation_id, r.message))
        .collect()
}

fn encode(text: &str, encoding: &str) -> Vec<u8> {
    match encoding {
        "utf-8" => text.as_bytes().to_vec(),
        "utf-8-bom" => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
        "utf-16le" => [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect(),
        _ => [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn csv_round_trips(
        msgs in messages_strategy(),
        delimiter in prop_oneof![Just(b','), Just(b';'), Just(b'\t')],
        encoding in prop_oneof![Just("utf-8"), Just("utf-8-bom"), Just("utf-16le"), Just("utf-16be")],
    ) {
        let fx = Fixture::new();
        let mut w = ::csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
        w.write_record(HEADER).unwrap();
        for m in &msgs {
            w.write_record(m.fields()).unwrap();
        }
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let path = fx.file("p.csv", encode(&text, encoding));
        let (rows, warnings) = read(&path, &opts()).unwrap();
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        // Each row starts below the previous one's embedded newlines.
        let mut line = 2;
        let mut lines = Vec::new();
        for m in &msgs {
            lines.push(line);
            line += 1 + m.text.matches('\n').count() as u64;
        }
        prop_assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), lines);
        prop_assert_eq!(got(rows), expected(&msgs));
    }

    #[test]
    fn json_rows_and_jsonl_round_trip(msgs in messages_strategy(), pretty in any::<bool>()) {
        let fx = Fixture::new();
        let objects: Vec<serde_json::Value> = msgs.iter().map(|m| m.json(true)).collect();
        let document = if pretty {
            serde_json::to_vec_pretty(&objects)
        } else {
            serde_json::to_vec(&objects)
        };
        let json = fx.file("p.json", document.unwrap());
        let jsonl = fx.file(
            "p.jsonl",
            objects.iter().map(|o| o.to_string() + "\n").collect::<String>(),
        );
        for path in [json, jsonl] {
            let (rows, warnings) = read(&path, &opts()).unwrap();
            prop_assert!(warnings.is_empty(), "{:?}", warnings);
            prop_assert_eq!(got(rows), expected(&msgs));
        }
    }

    #[test]
    fn nested_json_round_trips(msgs in messages_strategy(), id_last in any::<bool>(), wrapped in any::<bool>()) {
        let fx = Fixture::new();
        // Consecutive messages of one id make a conversation.
        let mut convs: Vec<(Id, Vec<serde_json::Value>)> = Vec::new();
        for m in &msgs {
            match convs.last_mut() {
                Some((id, ms)) if id.text() == m.id.text() => ms.push(m.json(false)),
                _ => convs.push((m.id.clone(), vec![m.json(false)])),
            }
        }
        let conversations: Vec<serde_json::Value> = convs
            .into_iter()
            .map(|(id, messages)| {
                let mut o = serde_json::Map::new();
                if !id_last {
                    o.insert("id".into(), id.json());
                }
                o.insert("messages".into(), messages.into());
                if id_last {
                    o.insert("id".into(), id.json());
                }
                o.into()
            })
            .collect();
        let doc = if wrapped {
            serde_json::json!({"exported_by": "helpdesk", "conversations": conversations})
        } else {
            conversations.into()
        };
        let path = fx.file("n.json", serde_json::to_vec_pretty(&doc).unwrap());
        let (rows, warnings) = read(&path, &opts()).unwrap();
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(got(rows), expected(&msgs));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), ext in prop_oneof![Just("csv"), Just("json"), Just("jsonl"), Just("xlsx")]) {
        let fx = Fixture::new();
        let path = fx.file(&format!("f.{ext}"), bytes);
        if let Ok(reader) = open(&path, &opts()) {
            for row in reader.take(1000) {
                let _ = row;
            }
        }
    }
}

#[test]
fn warnings_and_header_names_stay_short_whatever_the_file_puts_in_them() {
    let fx = Fixture::new();
    let long = "x".repeat(500_000);
    let csv = format!(
        "conversation_id,sender,message{}\nc1,{long},hello\nc2,customer\n",
        "-".repeat(500_000)
    );
    let (messages, warnings) = read(&fx.file("long.csv", csv), &opts()).unwrap();
    assert_eq!(messages.len(), 1);
    // Two about rows, one notice about the guessed role.
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for w in &warnings {
        assert!(
            w.message.chars().count() <= 300,
            "{} chars",
            w.message.len()
        );
    }
    assert!(warnings[0].message.contains("unknown sender role"));
    assert!(warnings[1].message.contains("missing field"));

    let json =
        format!(r#"[{{"conversation_id":"c1","sender":"customer","message":"hi","{long}":1}}, 7]"#);
    let (_, warnings) = read(&fx.file("long.json", json), &opts()).unwrap();
    assert!(warnings.iter().all(|w| w.message.chars().count() <= 300));

    // A missing-column error lists a few headers, each cut short.
    let csv = format!(
        "{}\nc1\n",
        (0..100)
            .map(|i| format!("h{i}{long}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let err = read(&fx.file("wide.csv", csv), &opts())
        .unwrap_err()
        .to_string();
    assert!(err.len() < 4000, "{} bytes", err.len());
    assert!(err.contains("(100 in all)"), "{}", &err[err.len() - 100..]);
}

#[test]
fn unmapped_json_values_of_any_shape_are_skipped() {
    let fx = Fixture::new();
    let json = r#"{"conversations": [
        {"id": "c1", "meta": {"deep": [[1, 2, {"x": [3]}]]}, "messages": [
            {"sender": "customer", "message": "no power", "attachments": [1, 2, 3], "extra": {"a": [1]}},
            {"sender": "agent", "text": "on it", "message": ["not", "text"]}
        ]},
        {"conversation_id": "c2", "sender": "customer", "message": "hello", "tags": [[[]]]}
    ]}"#;
    let (messages, warnings) = read(&fx.file("shapes.json", json), &opts()).unwrap();
    assert_eq!(
        simple(&messages),
        vec![
            ("c1".into(), Role::Customer, "no power".into()),
            ("c2".into(), Role::Customer, "hello".into()),
        ]
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains("is an array, not text"),
        "{warnings:?}"
    );

    let jsonl = "{\"conversation_id\":\"c1\",\"sender\":\"customer\",\"message\":\"a\",\"blob\":[1,[2,[3]]]}\n\
                 {\"id\":\"c2\",\"messages\":[{\"sender\":\"agent\",\"message\":\"b\",\"x\":{\"y\":1}}]}\n";
    let (messages, warnings) = read(&fx.file("shapes.jsonl", jsonl), &opts()).unwrap();
    assert_eq!(
        simple(&messages),
        vec![
            ("c1".into(), Role::Customer, "a".into()),
            ("c2".into(), Role::Agent, "b".into()),
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

proptest! {
    /// The ASCII shortcut of `trim_field` trims exactly as `str::trim`,
    /// whatever sits at the ends (Unicode spaces, controls, letters).
    #[test]
    fn trim_field_is_str_trim(
        field in "[ \\t\\r\\n\\u{a0}\\u{2003}\\u{3000}\\u{1c}a-zA-Z0-9.,*#!\"'()क-ह😡]{0,12}"
    ) {
        prop_assert_eq!(trim_field(&field), field.trim());
    }
}
