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

/// A listener posing as the server: records every byte it is sent and
/// answers every request `200 {"status":"ok"}` (what a health check wants
/// to hear).
struct Impostor {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Impostor {
    fn start() -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                stream
                    .set_read_timeout(Some(std::time::Duration::from_millis(300)))
                    .unwrap();
                // Everything the client sends until it waits for an answer.
                let mut buf = [0u8; 65536];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let body = br#"{"status":"ok"}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Impostor { url, seen }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

/// The issue's case: another local user points the runtime file at a
/// listener of theirs (or takes `server.bind` while the service is down).
/// Before, `uploads` sent it `Authorization: Bearer …` and `analyze FILE`
/// the whole export; now it is asked to prove it holds the token, cannot,
/// and is sent nothing else.
#[test]
fn the_cli_sends_nothing_to_a_server_that_cannot_prove_itself() {
    let sb = Sandbox::new();
    assert_eq!(
        sb.analyze(&sb.write("a.csv", to_csv(&conversations(2))))
            .code,
        0
    );
    let export = sb.write(
        "b.csv",
        "conversation_id,sender,message\nc1,customer,CUSTOMER-SECRET my meter is broken\n",
    );
    // This process holds the database, as a server would.
    let _held = sb.store();
    let (named, bound) = (Impostor::start(), Impostor::start());
    let runtime = sb.path("pp.redb.serve.json");
    let write_runtime = |mode: u32| {
        let _ = std::fs::remove_dir(&runtime);
        let info = serde_json::json!({"pid": std::process::id(), "url": named.url});
        std::fs::write(&runtime, info.to_string()).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let env = [
        ("POWERPULSE_TOKEN", "s3cret-token"),
        ("POWERPULSE__SERVER__BIND", bound.addr()),
    ];
    let commands: [&[&str]; 2] = [&["uploads"], &["analyze", export.to_str().unwrap()]];
    for (case, prepare, expected) in [
        (
            "a runtime file that looks right",
            0o600,
            "did not prove that it holds your token",
        ),
        ("a runtime file others may write", 0o666, "may write"),
    ] {
        write_runtime(prepare);
        for command in commands {
            let run = sb.run_with_env(command, &env);
            assert_eq!(run.code, 1, "{case}: {command:?}: {}", run.stdout);
            assert!(
                run.stderr.contains(expected),
                "{case}: {command:?}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("nothing was sent"),
                "{case}: {}",
                run.stderr
            );
        }
    }
    // The file cannot be read: server.bind is asked, and must prove itself too.
    std::fs::remove_file(&runtime).unwrap();
    std::fs::create_dir(&runtime).unwrap();
    for command in commands {
        let run = sb.run_with_env(command, &env);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains(&bound.url), "{}", run.stderr);
        assert!(run.stderr.contains("nothing was sent"), "{}", run.stderr);
    }
    for impostor in [&named, &bound] {
        let seen = impostor.seen();
        assert!(seen.contains("GET /api/proof?nonce="), "{seen}");
        for leaked in ["s3cret-token", "uthorization", "CUSTOMER-SECRET", "POST "] {
            assert!(
                !seen.contains(leaked),
                "{leaked} reached {}: {seen}",
                impostor.url
            );
        }
    }
}

/// The runtime file's key proves a server to a client without a token;
/// one others may read proves nothing (they could know the key), and a
/// client without a token then says what would.
#[test]
fn without_a_token_the_runtime_key_proves_the_server_if_only_its_user_can_read_it() {
    let sb = Sandbox::new();
    assert_eq!(
        sb.analyze(&sb.write("a.csv", to_csv(&conversations(2))))
            .code,
        0
    );
    let server = sb.serve(&[]);
    let runtime = sb.path("pp.redb.serve.json");
    assert_eq!(mode(&runtime), 0o600);
    assert_eq!(sb.run(&["uploads"]).code, 0);
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = sb.run(&["uploads"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot make sure"), "{}", run.stderr);
    assert!(run.stderr.contains("POWERPULSE_TOKEN"), "{}", run.stderr);
    server.stop();
}
