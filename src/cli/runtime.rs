//! The runtime file `serve` keeps next to its database (`<db>.serve.json`):
//! where the server holding that database listens, and a key it can prove
//! it holds, so that other commands can go through it. Written atomically
//! (0600) once the database is open and the listener bound; removed on a
//! clean shutdown. One left by a killed server is stale: its process is
//! gone, or nothing answers at its address, and readers ignore it.
//!
//! A reader trusts the file only if it is a plain file owned by the reader
//! or by root, that no other user may write, naming an address on this
//! machine; its key only if no other user may read it either. A file that
//! fails these is refused, saying why, and the client asks `server.bind`
//! instead, as it does when the file cannot be read; a server found there,
//! or named by the file, is sent nothing before it proves it holds the
//! client's token or the file's key (`remote`).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use powerpulse::access::ProofKey;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    /// The base URL a local client reaches the server at.
    pub url: String,
    /// The server's runtime key (hex): a client without a token checks the
    /// server with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ServerInfo {
    /// Whether the process that wrote it may still run. Where `/proc` does
    /// not show every process (absent, or mounted `hidepid` so that init is
    /// hidden), yes: a refused connection tells the rest.
    pub fn may_be_alive(&self) -> bool {
        !Path::new("/proc/1").exists() || Path::new("/proc").join(self.pid.to_string()).exists()
    }
}

/// `powerpulse.redb` → `powerpulse.redb.serve.json`.
pub fn path_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".serve.json");
    db.with_file_name(name)
}

/// The URL a client on this machine reaches a server bound to `addr` at: an
/// unspecified address (`0.0.0.0`, `::`) is reached on loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Whether `url` names a server on this machine (a loopback address or
/// `localhost`): the only ones the CLI sends anything to.
pub fn is_local(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The runtime file of a running server; removes it when dropped (the end
/// of `serve`).
pub struct RuntimeFile {
    path: PathBuf,
}

impl RuntimeFile {
    /// Writes the file for the server over `db` listening on `addr`, whose
    /// runtime key is `key`: to a temporary file beside it (0600), then
    /// renamed, so a reader never sees half.
    pub fn write(db: &Path, addr: SocketAddr, key: &ProofKey) -> Result<Self> {
        let path = path_for(db);
        let info = ServerInfo {
            pid: std::process::id(),
            url: local_url(addr),
            key: Some(key.to_hex()),
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::Builder::new()
                .prefix(".powerpulse-serve-")
                .tempfile_in(dir)?;
            serde_json::to_writer(&mut tmp, &info)?;
            tmp.persist(&path)?;
            Ok(())
        };
        write().with_context(|| format!("cannot write the runtime file {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for RuntimeFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A runtime file that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    pub url: String,
    /// `None` when others may read the file (they may know the key too).
    pub key: Option<ProofKey>,
}

/// What the runtime file next to a database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A server that may be running, and where.
    Server(Trusted),
    /// No file, or one a dead process left, or one that does not parse: no
    /// server holds this database (a `powerpulse analyze` may).
    Nobody,
    /// The file could not be read (a state directory this user may not
    /// list): whether a server runs is unknown.
    Unreadable,
    /// A file another user could have written: why it is not trusted.
    Refused(String),
}

/// Reads and checks the runtime file next to `db`.
pub fn read(db: &Path) -> Found {
    let path = path_for(db);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut file = match options.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Nobody,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Found::Refused(format!("{} is a symbolic link", path.display()));
        }
        Err(_) => return Found::Unreadable,
    };
    // The checks are of the file opened, not of whatever the path names now.
    let Ok(meta) = file.metadata() else {
        return Found::Unreadable;
    };
    if !meta.is_file() {
        return Found::Unreadable;
    }
    #[cfg(not(unix))]
    let key_private = true;
    #[cfg(unix)]
    let key_private = {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid takes no argument and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Found::Refused(format!(
                "{} belongs to uid {}, neither you nor root",
                path.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Found::Refused(format!(
                "other users may write to {} (mode {:04o})",
                path.display(),
                meta.mode() & 0o7777
            ));
        }
        meta.mode() & 0o044 == 0
    };
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Found::Unreadable;
    }
    let info = match serde_json::from_slice::<ServerInfo>(&bytes) {
        Ok(info) if info.may_be_alive() => info,
        _ => return Found::Nobody,
    };
    if !is_local(&info.url) {
        return Found::Refused(format!(
            "{} names {}, not an address on this machine",
            path.display(),
            info.url
        ));
    }
    Found::Server(Trusted {
        url: info.url,
        key: info
            .key
            .filter(|_| key_private)
            .and_then(|k| k.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write_info(db: &Path, info: &ServerInfo, mode: u32) {
        let path = path_for(db);
        std::fs::write(&path, serde_json::to_vec(info).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn live(url: &str) -> ServerInfo {
        ServerInfo {
            pid: std::process::id(),
            url: url.into(),
            key: Some(ProofKey::generate().to_hex()),
        }
    }

    #[test]
    fn the_file_round_trips_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pp.redb");
        let key = ProofKey::generate();
        let file = RuntimeFile::write(&db, "0.0.0.0:4321".parse().unwrap(), &key).unwrap();
        let mode = std::fs::metadata(path_for(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            read(&db),
            Found::Server(Trusted {
                url: "http://127.0.0.1:4321".into(),
                key: Some(key),
            })
        );
        drop(file);
        assert!(!path_for(&db).exists());
        assert_eq!(read(&db), Found::Nobody);
    }

    #[test]
    fn a_dead_process_makes_the_file_stale() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pp.redb");
        // Pids never reach this on Linux (pid_max is at most 2^22).
        let info = ServerInfo {
            pid: u32::MAX - 1,
            url: "http://127.0.0.1:1".into(),
            key: None,
        };
        write_info(&db, &info, 0o600);
        if Path::new("/proc/1").exists() {
            assert_eq!(read(&db), Found::Nobody);
        }
        std::fs::write(path_for(&db), b"{not json").unwrap();
        assert_eq!(read(&db), Found::Nobody);
        // A directory where the file should be cannot be read as one.
        std::fs::remove_file(path_for(&db)).unwrap();
        std::fs::create_dir(path_for(&db)).unwrap();
        assert_eq!(read(&db), Found::Unreadable);
    }

    #[test]
    fn a_file_another_user_could_have_written_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pp.redb");
        let refused = |db: &Path| match read(db) {
            Found::Refused(why) => why,
            other => panic!("{other:?}"),
        };
        write_info(&db, &live("http://127.0.0.1:9"), 0o666);
        assert!(refused(&db).contains("may write"), "{}", refused(&db));
        write_info(&db, &live("http://10.0.0.5:8080"), 0o600);
        assert!(refused(&db).contains("not an address on this machine"));
        // Readable by others: the address is used, the key is not.
        write_info(&db, &live("http://localhost:9"), 0o644);
        assert!(matches!(
            read(&db),
            Found::Server(Trusted { key: None, .. })
        ));
        // A link to a file the reader owns is still refused.
        let elsewhere = dir.path().join("other.json");
        std::fs::rename(path_for(&db), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, path_for(&db)).unwrap();
        assert!(refused(&db).contains("symbolic link"));
        std::fs::remove_file(path_for(&db)).unwrap();
        // Another user's file (the test needs root to make one).
        // SAFETY: geteuid takes no argument and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            write_info(&db, &live("http://127.0.0.1:9"), 0o600);
            std::os::unix::fs::chown(path_for(&db), Some(65534), Some(65534)).unwrap();
            assert!(refused(&db).contains("uid 65534"), "{}", refused(&db));
        }
    }

    #[test]
    fn only_this_machine_is_local() {
        for local in [
            "http://127.0.0.1:8080",
            "http://[::1]:80",
            "http://localhost:1",
            "http://127.9.9.9:1",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "http://10.0.0.2:80",
            "http://example.com:80",
            "http://0.0.0.0:80",
            "nonsense",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        assert_eq!(
            local_url("[::]:80".parse().unwrap()),
            "http://[::1]:80".to_string()
        );
        assert_eq!(
            local_url("10.0.0.2:80".parse().unwrap()),
            "http://10.0.0.2:80".to_string()
        );
    }
}
