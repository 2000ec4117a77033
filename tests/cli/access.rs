//! Tokens and the audit log from the command line: `token add` issues a
//! token once and keeps its hash in the config file, the server knows it
//! by name and role, and `audit` reads what it did, offline or through the
//! server.

use std::os::unix::fs::PermissionsExt;

use crate::helpers::*;

#[test]
fn tokens_are_issued_once_used_by_role_and_audited() {
    let sb = Sandbox::new();
    let config = sb.write("config.toml", "# mine\n[log]\nformat = \"text\"\n");
    let cfg = config.to_str().unwrap();
    let issue = |name: &str, role: &str| {
        let run = sb.run(&["--config", cfg, "token", "add", name, "--role", role]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stderr.contains("shown this once"), "{}", run.stderr);
        run.stdout.trim().to_string()
    };
    let viewer = issue("vera", "viewer");
    let admin = issue("ada", "admin");
    assert!(viewer.starts_with("pp_") && viewer.len() == 67, "{viewer}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# mine\n"), "{text}");
    assert!(
        !text.contains(&viewer) && !text.contains(&admin),
        "only hashes are kept"
    );
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let run = sb.run(&["--config", cfg, "token", "add", "vera", "--role", "admin"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("exists already"), "{}", run.stderr);
    let listed = sb.run(&["--config", cfg, "token", "list"]).stdout;
    assert!(
        listed.contains("vera") && listed.contains("viewer"),
        "{listed}"
    );
    assert!(
        listed.contains("ada") && listed.contains("admin"),
        "{listed}"
    );

    let file = sb.write("a.csv", to_csv(&conversations(3)));
    assert_eq!(
        sb.run(&["--config", cfg, "analyze", file.to_str().unwrap()])
            .code,
        0
    );
    let server = sb.serve_configured(&config, &[]);
    let as_viewer = [("POWERPULSE_TOKEN", viewer.as_str())];
    let as_admin = [("POWERPULSE_TOKEN", admin.as_str())];
    // A viewer lists and exports; it may not upload.
    let run = sb.run_with_env(&["--config", cfg, "uploads"], &as_viewer);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = sb.run_with_env(
        &["--config", cfg, "analyze", file.to_str().unwrap()],
        &as_viewer,
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("viewer role"), "{}", run.stderr);
    let run = sb.run_with_env(&["--config", cfg, "audit"], &as_viewer);
    assert_eq!(run.code, 1, "the log is an admin's");
    // The admin reads the log through the server.
    let run = sb.run_with_env(&["--config", cfg, "audit", "--json"], &as_admin);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let entries = run.json();
    let first = &entries[0];
    assert_eq!(first["who"], "vera");
    assert_eq!(first["action"], "read_audit");
    assert_eq!(first["status"], 403);
    let text = sb.run_with_env(
        &[
            "--config", cfg, "audit", "--who", "vera", "--action", "upload",
        ],
        &as_admin,
    );
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert_eq!(text.stdout.lines().count(), 1, "{}", text.stdout);
    assert!(
        text.stdout
            .contains("vera (viewer)  upload  403 (not done)"),
        "{}",
        text.stdout
    );
    server.stop();

    // Offline, the file says the same.
    let run = sb.run(&["--config", cfg, "audit", "--json", "--limit", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json().as_array().unwrap().len(), 2);

    let run = sb.run(&["--config", cfg, "token", "remove", "vera"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let listed = sb.run(&["--config", cfg, "token", "list"]).stdout;
    assert!(!listed.contains("vera"), "{listed}");
}
