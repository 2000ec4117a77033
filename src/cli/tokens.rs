//! `powerpulse token add|list|remove`: the API's named tokens, kept as
//! hashes in the configuration file (`[[server.tokens]]`). `add` prints the
//! new token once, on stdout (`TOKEN=$(powerpulse token add ci --role
//! operator)`), and writes its entry into the file, keeping the file's
//! comments and layout; the server reads it at its next start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use powerpulse::access::{Credential, Role, SERVER_TOKEN_NAME, TokenHash, generate_token};
use powerpulse::config::Settings;
use powerpulse::report::terminal_safe;

/// The file `token add|remove` edit: `--config`, else `./config.toml`.
fn config_file(config: Option<&Path>) -> Option<PathBuf> {
    config
        .map(Path::to_path_buf)
        .or_else(|| Some(PathBuf::from("config.toml")).filter(|p| p.exists()))
}

/// Issues a token named `name` with `role`.
pub fn add(settings: &Settings, config: Option<&Path>, name: &str, role: Role) -> Result<ExitCode> {
    if settings.server.tokens.iter().any(|t| t.name == name) || name == SERVER_TOKEN_NAME {
        bail!("a token named {name:?} exists already; remove it first (`powerpulse token remove`)");
    }
    let token = generate_token();
    let credential = Credential {
        name: name.to_string(),
        role,
        hash: TokenHash::of(&token),
    };
    let entry = entry_text(&credential);
    match config_file(config) {
        Some(path) => {
            edit(&path, |doc| {
                tokens_of(doc)?.push(table_of(&credential));
                Ok(())
            })?;
            eprintln!(
                "added to {} (restart the server to use it):\n{entry}",
                path.display()
            );
        }
        None => eprintln!(
            "no config file (give --config, or create ./config.toml); add this entry to it and \
             restart the server:\n{entry}"
        ),
    }
    eprintln!(
        "the {role} token for {}, shown this once (the file keeps only its hash):",
        terminal_safe(name)
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Who holds a token, and with which role.
pub fn list(settings: &Settings) -> Result<ExitCode> {
    let server = &settings.server;
    if server
        .token
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty())
    {
        println!("{SERVER_TOKEN_NAME:<24}  admin     (server.token / POWERPULSE_TOKEN)");
    }
    for t in &server.tokens {
        println!("{:<24}  {}", terminal_safe(&t.name), t.role);
    }
    if server.tokens.is_empty() && server.token.is_none() {
        println!("no tokens: anyone who can connect to the server may do anything");
    }
    Ok(ExitCode::SUCCESS)
}

/// Revokes the token named `name` (at the server's next start).
pub fn remove(config: Option<&Path>, name: &str) -> Result<ExitCode> {
    let Some(path) = config_file(config) else {
        bail!("no config file to remove {name:?} from (give --config)");
    };
    edit(&path, |doc| {
        let tokens = tokens_of(doc)?;
        let before = tokens.len();
        tokens.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(name));
        if tokens.len() == before {
            bail!("{} has no token named {name:?}", path.display());
        }
        Ok(())
    })?;
    eprintln!(
        "removed {} from {} (restart the server to revoke it)",
        terminal_safe(name),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Why the file at `path`, which holds token hashes, is not safe: other
/// users may read it (a hash is enough to pose as the server to the CLI of
/// the token's holder, and so to take the token).
pub fn exposed(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} holds token hashes and other users may read it (mode {mode:04o}): with a \
                 hash, a local user can pose as this server to the CLI of the token's holder \
                 and take the token. Make it readable by the server's user only (chmod 600)",
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// `[[server.tokens]]` as the file would show it.
fn entry_text(c: &Credential) -> String {
    let mut doc = toml_edit::DocumentMut::new();
    let mut tokens = toml_edit::ArrayOfTables::new();
    tokens.push(table_of(c));
    let mut server = toml_edit::Table::new();
    server.set_implicit(true);
    server.insert("tokens", toml_edit::Item::ArrayOfTables(tokens));
    doc.insert("server", toml_edit::Item::Table(server));
    doc.to_string()
}

fn table_of(c: &Credential) -> toml_edit::Table {
    let mut t = toml_edit::Table::new();
    t.insert("name", toml_edit::value(c.name.as_str()));
    t.insert("role", toml_edit::value(c.role.as_str()));
    t.insert("hash", toml_edit::value(c.hash.to_string()));
    t
}

/// The `[[server.tokens]]` of a document, created when absent.
fn tokens_of(doc: &mut toml_edit::DocumentMut) -> Result<&mut toml_edit::ArrayOfTables> {
    let server = doc
        .entry("server")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .context("[server] in the config file is not a table")?;
    server
        .entry("tokens")
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .context("server.tokens in the config file is not a [[server.tokens]] list")
}

/// Edits the config file at `path`: applies `change`, checks that the
/// result is a configuration PowerPulse accepts, and puts it in place of
/// the file (written beside it, renamed over it), readable by its owner
/// only, since it holds token hashes.
fn edit(path: &Path, change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<()>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    change(&mut doc)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates it 0600.
    let tmp = tempfile::Builder::new()
        .prefix(".powerpulse-config-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::fs::write(tmp.path(), doc.to_string())?;
    // The file alone, without this process's environment.
    Settings::load_with_env(Some(tmp.path()), std::iter::empty())
        .context("the edited config file would not load")?;
    if exposed(path).is_some() {
        eprintln!(
            "note: {} is now readable by its owner only (it holds token hashes)",
            path.display()
        );
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_added_and_removed_keeping_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let original = "# my settings\n[server]\nbind = \"127.0.0.1:9000\" # here\n\n[log]\nformat = \"json\"\n";
        std::fs::write(&path, original).unwrap();
        let c = |name: &str, role| Credential {
            name: name.into(),
            role,
            hash: TokenHash::of(name),
        };
        for cred in [c("alice", Role::Viewer), c("ci", Role::Operator)] {
            edit(&path, |doc| {
                tokens_of(doc)?.push(table_of(&cred));
                Ok(())
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings\n[server]\nbind = \"127.0.0.1:9000\" # here\n"));
        assert!(text.contains("format = \"json\""));
        let s = Settings::load_with_env(Some(&path), std::iter::empty()).unwrap();
        assert_eq!(
            s.server.tokens,
            vec![c("alice", Role::Viewer), c("ci", Role::Operator)]
        );
        assert_eq!(s.server.bind, "127.0.0.1:9000");
        assert!(exposed(&path).is_none(), "written 0600");

        remove(Some(&path), "alice").unwrap();
        let s = Settings::load_with_env(Some(&path), std::iter::empty()).unwrap();
        assert_eq!(s.server.tokens, vec![c("ci", Role::Operator)]);
        assert!(remove(Some(&path), "alice").is_err());
        // A change the configuration would refuse is not written.
        let before = std::fs::read_to_string(&path).unwrap();
        let twice = edit(&path, |doc| {
            tokens_of(doc)?.push(table_of(&c("ci", Role::Admin)));
            Ok(())
        });
        assert!(twice.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn a_file_without_a_server_section_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[log]\nformat = \"text\"\n").unwrap();
        let cred = Credential {
            name: "bob".into(),
            role: Role::Admin,
            hash: TokenHash::of("x"),
        };
        edit(&path, |doc| {
            tokens_of(doc)?.push(table_of(&cred));
            Ok(())
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[server.tokens]]"), "{text}");
        assert!(!text.contains("\n[server]\n"), "{text}");
        assert!(entry_text(&cred).starts_with("[[server.tokens]]\nname = \"bob\""));
    }
}
