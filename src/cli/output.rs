//! Files the CLI writes customer data into (`export --output`): readable by
//! their owner only, whatever the umask, and complete or absent — written
//! beside their path, then renamed over it, as `backup` does.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An output file being written.
pub enum PrivateFile {
    /// A temporary file (0600) beside `to`, renamed over it on [`PrivateFile::commit`].
    Staged {
        tmp: tempfile::NamedTempFile,
        to: PathBuf,
    },
    /// Something that is not a plain file (a FIFO, `/dev/stdout`, a
    /// symbolic link): written in place, its mode left as it is.
    InPlace(std::fs::File),
}

impl PrivateFile {
    pub fn create(path: &Path) -> Result<Self> {
        let plain = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta.file_type().is_file(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
        };
        if !plain {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(PrivateFile::InPlace(file));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // tempfile creates it 0600.
        let tmp = tempfile::Builder::new()
            .prefix(".powerpulse-export-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(PrivateFile::Staged {
            tmp,
            to: path.to_path_buf(),
        })
    }

    /// Where the bytes go.
    pub fn writer(&self) -> Result<std::fs::File> {
        let file = match self {
            PrivateFile::Staged { tmp, .. } => tmp.as_file(),
            PrivateFile::InPlace(file) => file,
        };
        Ok(file.try_clone()?)
    }

    /// Puts the finished file in place.
    pub fn commit(self) -> Result<()> {
        match self {
            PrivateFile::Staged { tmp, to } => {
                tmp.as_file().sync_all()?;
                tmp.persist(&to)
                    .with_context(|| format!("cannot write {}", to.display()))?;
            }
            PrivateFile::InPlace(mut file) => file.flush()?,
        }
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_the_owners_and_appear_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        // Replacing a file others could read: the new one is private.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = PrivateFile::create(&path).unwrap();
        write!(out.writer().unwrap(), "new rows").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old", "not yet");
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new rows");
        assert_eq!(mode(&path), 0o600);
        let fresh = dir.path().join("fresh.csv");
        let out = PrivateFile::create(&fresh).unwrap();
        out.commit().unwrap();
        assert_eq!(mode(&fresh), 0o600);
        // A failed export leaves nothing behind.
        drop(PrivateFile::create(&dir.path().join("never.csv")).unwrap());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2);
    }
}
