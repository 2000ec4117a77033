//! No local leaks through the CLI: what it writes is its user's alone, and
//! what an upload carries cannot drive the terminal it prints to.

use std::os::unix::fs::PermissionsExt;

use crate::helpers::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn export_output_files_are_readable_by_their_owner_only() {
    let sb = Sandbox::new();
    assert_eq!(
        sb.analyze(&sb.write("a.csv", to_csv(&conversations(4))))
            .code,
        0
    );
    let expected = sb.run(&["export", "--format", "jsonl"]).stdout;
    // One the user made world-readable before, and a new one.
    let existing = sb.write("old.jsonl", "stale");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    for out in [existing, sb.path("new.jsonl")] {
        let run = sb.run(&[
            "export",
            "--format",
            "jsonl",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
        assert_eq!(mode(&out), 0o600, "{}", out.display());
    }
    // Nothing staged is left beside them.
    let names: Vec<String> = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".powerpulse"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn file_names_cannot_drive_the_terminal() {
    let sb = Sandbox::new();
    // A name that sets the window title, clears the screen and turns
    // what follows around, as anyone who uploads may choose it.
    let hostile = "q3\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}vsc.csv";
    let file = sb.write(hostile, to_csv(&conversations(3)));
    let run = sb.run(&["analyze", file.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let listed = sb.run(&["uploads"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    for (what, text) in [("analyze", &run.stdout), ("uploads", &listed.stdout)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'),
            "{what} printed raw controls: {text:?}"
        );
        assert!(
            text.contains(r"q3\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}vsc.csv"),
            "{what}: {text:?}"
        );
    }
    // JSON keeps the name exact (its own escaping makes it safe).
    let json = sb.run(&["uploads", "--json"]).json();
    assert_eq!(json[0]["filename"], hostile);
}
