//! Hostile files: each one once exhausted memory or corrupted the database.
//! The real binary runs on a file generated here, and its peak RSS (that
//! child's alone) must stay within twice the file's size plus 128 MiB,
//! whether the file is accepted or refused; the database stays usable
//! afterwards.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::helpers::{Run, Sandbox, sample};

const MIB: u64 = 1024 * 1024;

/// Runs the binary like [`Sandbox::run`], and measures its peak RSS.
///
/// Through a small Python parent: Linux charges a child, at its `exec`, with
/// the peak RSS of the process it was spawned from, and this test process
/// is large (it builds the hostile files); Python is small, and reads its
/// child's own peak from `getrusage(RUSAGE_CHILDREN)`.
fn run_measured(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> (Run, u64) {
    const MEASURE: &str = "import resource, subprocess, sys\n\
        code = subprocess.call(sys.argv[2:])\n\
        open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
        sys.exit(code)\n";
    let report = sandbox.path("peak-rss-kib");
    let mut command = Command::new("python3");
    command
        .args(["-c", MEASURE])
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_powerpulse"))
        .args(args)
        .current_dir(sandbox.dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .env("POWERPULSE_DB", sandbox.db());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run python3 and powerpulse");
    let kib: u64 = std::fs::read_to_string(&report)
        .expect("the peak was reported")
        .trim()
        .parse()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // Linux reports ru_maxrss in KiB.
    (run, kib * 1024)
}

/// Analyses `file` and checks the memory bound; returns the run.
fn analyze_within_budget(sandbox: &Sandbox, file: &Path, env: &[(&str, &str)]) -> Run {
    let size = std::fs::metadata(file).unwrap().len();
    let (run, peak) = run_measured(sandbox, &["analyze", file.to_str().unwrap(), "--json"], env);
    let budget = 2 * size + 128 * MIB;
    eprintln!(
        "{}: {} bytes, peak RSS {:.1} MiB (budget {:.1} MiB), exit {}",
        file.file_name().unwrap().to_string_lossy(),
        size,
        peak as f64 / MIB as f64,
        budget as f64 / MIB as f64,
        run.code
    );
    assert!(
        peak <= budget,
        "peak RSS {peak} > budget {budget} for a {size}-byte file; stderr: {}",
        run.stderr
    );
    assert_ne!(run.code, 101, "no panic: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// The database still answers after a hostile file: listing and exporting work.
fn database_still_usable(sandbox: &Sandbox) {
    let ok = sandbox.analyze(&sample());
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let list = sandbox.run(&["uploads", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let export = sandbox.run(&["export", "--format", "jsonl"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert!(export.stdout.lines().count() >= 200);
}

/// A minimal workbook: one sheet with this XML, and these shared strings.
fn write_xlsx(path: &Path, sheet: &[u8], shared_strings: Option<&[u8]>) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut entry = |name: &str, bytes: &[u8]| {
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    };
    entry(
        "[Content_Types].xml",
        br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
    );
    entry(
        "_rels/.rels",
        br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
    );
    entry(
        "xl/workbook.xml",
        br#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
    );
    let mut rels = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>"#,
    );
    if shared_strings.is_some() {
        rels.push_str(r#"<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>"#);
    }
    rels.push_str("</Relationships>");
    entry("xl/_rels/workbook.xml.rels", rels.as_bytes());
    if let Some(strings) = shared_strings {
        entry("xl/sharedStrings.xml", strings);
    }
    entry("xl/worksheets/sheet1.xml", sheet);
    zip.finish().unwrap();
}

fn sheet_xml(dimension: &str, rows: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>{rows}</sheetData></worksheet>"#
    )
    .into_bytes()
}

const HEADER_ROW: &str = r#"<row r="1"><c r="A1" t="inlineStr"><is><t>conversation_id</t></is></c><c r="B1" t="inlineStr"><is><t>sender</t></is></c><c r="C1" t="inlineStr"><is><t>message</t></is></c></row>"#;

#[test]
fn a_hand_made_workbook_is_read() {
    // The fixture writer itself works: a normal small sheet is analysed.
    let sandbox = Sandbox::new();
    let file = sandbox.path("ok.xlsx");
    let row = r#"<row r="2"><c r="A2" t="inlineStr"><is><t>c1</t></is></c><c r="B2" t="inlineStr"><is><t>customer</t></is></c><c r="C2" t="inlineStr"><is><t>no power since morning</t></is></c></row>"#;
    write_xlsx(
        &file,
        &sheet_xml("A1:C2", &format!("{HEADER_ROW}{row}")),
        None,
    );
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["conversations_processed"], 1);
}

#[test]
fn an_xlsx_declaring_the_whole_sheet_is_refused_without_allocating_it() {
    // Three real cells, a used range of A1..XFD1048576: once a 512 GiB allocation.
    let sandbox = Sandbox::new();
    let file = sandbox.path("huge-range.xlsx");
    write_xlsx(&file, &sheet_xml("A1:XFD1048576", HEADER_ROW), None);
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("huge-range.xlsx"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ingest.xlsx_max_columns"),
        "{}",
        run.stderr
    );
    database_still_usable(&sandbox);
}

#[test]
fn an_xlsx_zip_bomb_is_refused_by_its_inflated_size() {
    // 48 MiB of markup that deflates to a few hundred KiB, over a 32 MiB limit.
    let sandbox = Sandbox::new();
    let file = sandbox.path("bomb.xlsx");
    let filler = "<row/>".repeat(8 * 1024 * 1024);
    write_xlsx(
        &file,
        &sheet_xml("A1:C1", &format!("{HEADER_ROW}{filler}")),
        None,
    );
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size < 2 * MIB, "a bomb: {size} bytes");
    let run = analyze_within_budget(
        &sandbox,
        &file,
        &[("POWERPULSE__INGEST__XLSX_MAX_INFLATED_BYTES", "33554432")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("ingest.xlsx_max_inflated_bytes"),
        "{}",
        run.stderr
    );
}

#[test]
fn xlsx_shared_strings_that_would_not_fit_in_memory_are_refused() {
    // A declared count calamine would reserve room for, and strings that
    // inflate far past the file's size.
    let sandbox = Sandbox::new();
    let file = sandbox.path("strings-count.xlsx");
    let sst = br#"<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="4000000000000"><si><t>x</t></si></sst>"#;
    write_xlsx(&file, &sheet_xml("A1:C1", HEADER_ROW), Some(sst));
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("ingest.xlsx_max_cells"),
        "{}",
        run.stderr
    );

    let file = sandbox.path("strings-bomb.xlsx");
    let mut sst = String::from(r#"<?xml version="1.0"?><sst uniqueCount="1">"#);
    let one = format!("<si><t>{}</t></si>", "y".repeat(1000));
    while sst.len() < 80 * MIB as usize {
        sst.push_str(&one);
    }
    sst.push_str("</sst>");
    write_xlsx(&file, &sheet_xml("A1:C1", HEADER_ROW), Some(sst.as_bytes()));
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("shared strings"), "{}", run.stderr);
}

#[test]
fn a_megabyte_header_with_thousands_of_bad_rows_stays_small() {
    // The text header is "message" and a megabyte of underscores (which the
    // alias match ignores); every row lacks the text field, and each warning
    // once copied the whole header.
    let sandbox = Sandbox::new();
    let mut csv = format!(
        "conversation_id,sender,message{}\n",
        "_".repeat(MIB as usize)
    );
    for i in 0..20_000 {
        csv.push_str(&format!("c{i},customer\n"));
    }
    csv.push_str("c1,customer,the one good row\n");
    let file = sandbox.write("long-header.csv", csv);
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["conversations_processed"], 1);
    let warning = s["warnings"][0].as_str().unwrap();
    assert!(
        warning.len() < 300,
        "a bounded warning: {} bytes",
        warning.len()
    );
    assert!(warning.contains("missing field"), "{warning}");
}

#[test]
fn an_unmapped_json_array_of_millions_is_skipped_not_built() {
    let sandbox = Sandbox::new();
    let mut json = String::from(
        r#"[{"conversation_id":"c1","sender":"customer","message":"still no power","attachments":["#,
    );
    let element = "1234567,";
    for _ in 0..3_000_000 {
        json.push_str(element);
    }
    json.push_str("0]}]");
    let file = sandbox.write("wide.json", json);
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["conversations_processed"], 1);
}

#[test]
fn one_conversation_of_a_hundred_thousand_messages_is_analysed_on_a_bounded_transcript() {
    let sandbox = Sandbox::new();
    let mut csv = String::from("conversation_id,sender,message\n");
    for i in 0..100_000 {
        let sender = if i % 2 == 0 { "customer" } else { "agent" };
        csv.push_str(&format!("big,{sender},message number {i} about my meter\n"));
    }
    let file = sandbox.write("long-chat.csv", csv);
    let run = analyze_within_budget(&sandbox, &file, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["conversations_processed"], 1);
    let rows = sandbox.run(&["export", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&rows.stdout).unwrap();
    assert_eq!(
        rows[0]["messages"], 100_000,
        "the record counts every message"
    );
}

#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_keeps_the_database_working() {
    use std::os::unix::ffi::OsStrExt;
    let sandbox = Sandbox::new();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
    let file = sandbox.dir.path().join(name);
    std::fs::copy(sample(), &file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
        .arg("analyze")
        .arg(&file)
        .arg("--json")
        .current_dir(sandbox.dir.path())
        .env_remove("OPENAI_API_KEY")
        .env("POWERPULSE_DB", sandbox.db())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = sandbox.run(&["uploads", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let uploads = list.json();
    let upload = &uploads.as_array().unwrap()[0];
    assert_eq!(upload["filename"], "caf\u{fffd}.csv", "a display form");
    let export = sandbox.run(&["export", "--format", "csv"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    // The stored source is the exact bytes of the name.
    let record = sandbox
        .store()
        .uploads()
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(record.source.as_deref(), Some(file.as_path()));
}
