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
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        warnings[0].to_string(),
        "line 2: unknown sender role \"martian\", treated as customer"
    );
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
    assert!(matches!(
        err("obj.json", b"{\"x\": 1}"),
        IngestError::Malformed { .. }
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

// ---- round trips ------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    role: &'static str,
    text: String,
}

fn role_of(raw: &str) -> Role {
    normalize_role(raw).unwrap_or(Role::Customer)
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Commas, quotes, newlines, semicolons, tabs, Devanagari, emoji: what breaks naive parsers.
    proptest::string::string_regex("[a-zA-Z0-9 ,;\"'\\t\\n.!?*#क-हािीुू्😡🙏]{1,40}")
        .unwrap()
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

fn messages_strategy() -> impl Strategy<Value = Vec<Msg>> {
    proptest::collection::vec(
        (
            proptest::string::string_regex("[a-z0-9-]{1,8}").unwrap(),
            prop_oneof![Just("customer"), Just("agent"), Just("bot"), Just("user")],
            text_strategy(),
        )
            .prop_map(|(id, role, text)| Msg { id, role, text }),
        1..25,
    )
}

fn expected(msgs: &[Msg]) -> Vec<(String, Role, String)> {
    msgs.iter()
        .map(|m| (m.id.clone(), role_of(m.role), m.text.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn csv_round_trips(msgs in messages_strategy()) {
        let fx = Fixture::new();
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(["conversation_id", "sender", "message"]).unwrap();
        for m in &msgs {
            w.write_record([m.id.as_str(), m.role, m.text.as_str()]).unwrap();
        }
        let path = fx.file("p.csv", w.into_inner().unwrap());
        let (rows, warnings) = read(&path, &opts()).unwrap();
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(simple(&rows), expected(&msgs));
    }

    #[test]
    fn json_rows_and_jsonl_round_trip(msgs in messages_strategy()) {
        let fx = Fixture::new();
        let objects: Vec<serde_json::Value> = msgs
            .iter()
            .map(|m| serde_json::json!({"conversation_id": m.id, "sender": m.role, "message": m.text}))
            .collect();
        let json = fx.file("p.json", serde_json::to_vec_pretty(&objects).unwrap());
        let jsonl = fx.file(
            "p.jsonl",
            objects.iter().map(|o| o.to_string() + "\n").collect::<String>(),
        );
        for path in [json, jsonl] {
            let (rows, warnings) = read(&path, &opts()).unwrap();
            prop_assert!(warnings.is_empty(), "{:?}", warnings);
            prop_assert_eq!(simple(&rows), expected(&msgs));
        }
    }

    #[test]
    fn nested_json_round_trips(msgs in messages_strategy()) {
        let fx = Fixture::new();
        // Group consecutive messages of the same id into conversations.
        let mut convs: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        for m in &msgs {
            let v = serde_json::json!({"role": m.role, "text": m.text});
            match convs.last_mut() {
                Some((id, ms)) if *id == m.id => ms.push(v),
                _ => convs.push((m.id.clone(), vec![v])),
            }
        }
        let doc: Vec<_> = convs
            .into_iter()
            .map(|(id, messages)| serde_json::json!({"id": id, "messages": messages}))
            .collect();
        let path = fx.file("n.json", serde_json::to_vec(&doc).unwrap());
        let (rows, _) = read(&path, &opts()).unwrap();
        prop_assert_eq!(simple(&rows), expected(&msgs));
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
