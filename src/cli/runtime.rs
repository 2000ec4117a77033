//! The runtime file `serve` keeps next to its database (`<db>.serve.json`):
//! where the server holding that database listens, so that other commands
//! can go through it. Written atomically once the database is open and the
//! listener bound; removed on a clean shutdown. One left by a killed server
//! is stale: its process is gone, or nothing answers at its address, and
//! readers ignore it. Only when the file cannot be read at all does a
//! client fall back to `server.bind` (a server found there may serve
//! another database, so it is not asked otherwise).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    /// The base URL a local client reaches the server at.
    pub url: String,
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

/// The runtime file of a running server; removes it when dropped (the end
/// of `serve`).
pub struct RuntimeFile {
    path: PathBuf,
}

impl RuntimeFile {
    /// Writes the file for the server over `db` listening on `addr`: to a
    /// temporary file beside it, then renamed, so a reader never sees half.
    pub fn write(db: &Path, addr: SocketAddr) -> Result<Self> {
        let path = path_for(db);
        let info = ServerInfo {
            pid: std::process::id(),
            url: local_url(addr),
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

/// What the runtime file next to a database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A server that may be running, and where.
    Server(ServerInfo),
    /// No file, or one a dead process left, or one that does not parse: no
    /// server holds this database (a `powerpulse analyze` may).
    Nobody,
    /// The file could not be read (a state directory this user may not
    /// list): whether a server runs is unknown.
    Unreadable,
}

/// Reads the runtime file next to `db`.
pub fn read(db: &Path) -> Found {
    match std::fs::read(path_for(db)) {
        Ok(bytes) => match serde_json::from_slice::<ServerInfo>(&bytes) {
            Ok(info) if info.may_be_alive() => Found::Server(info),
            _ => Found::Nobody,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nobody,
        Err(_) => Found::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pp.redb");
        let file = RuntimeFile::write(&db, "0.0.0.0:4321".parse().unwrap()).unwrap();
        assert_eq!(
            read(&db),
            Found::Server(ServerInfo {
                pid: std::process::id(),
                url: "http://127.0.0.1:4321".into()
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
        };
        std::fs::write(path_for(&db), serde_json::to_vec(&info).unwrap()).unwrap();
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
