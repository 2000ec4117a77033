//! The spool directory beside the database (`<db>.spool/`): uploads
//! received over HTTP are written there, parsed from there, and removed as
//! soon as nothing can need them again.
//!
//! A spooled file is customer data in full, so it lives only as long as
//! its upload can use it: while its messages are not all stored (a crash
//! or a cancel during parsing parses it again). It goes once the parse is
//! sealed, when the upload is deleted (by hand or by retention), when its
//! parse fails for good, and at the next start for anything a crash left
//! behind ([`sweep`]). Files are created `0600` in a `0700` directory, so
//! other users cannot read them whatever the umask.
//!
//! Plain file-system code, unit-tested alone; the engine and the HTTP
//! upload handler call it.

use std::io;
use std::path::{Path, PathBuf};

use crate::store::UploadRecord;

/// `powerpulse.redb` → `powerpulse.redb.spool/`.
pub fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".spool");
    db.with_file_name(name)
}

/// Creates the spool directory (only its owner may enter it).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// How a spooled file is created: new (never an existing file), readable
/// and writable by its owner only.
pub fn file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Whether `path` is a file of the spool directory `dir` (a file a user
/// gave `powerpulse analyze` never is, and is never removed).
pub fn holds(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(dir)
}

/// Removes an upload's spooled file, if it has one: what is left of an
/// upload that was deleted or can no longer use it. Answers whether a file
/// went.
pub fn release(dir: &Path, record: &UploadRecord) -> bool {
    match record.source.as_deref() {
        Some(source) if holds(dir, source) => remove(source),
        _ => false,
    }
}

fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove a spooled upload");
            false
        }
    }
}

/// Removes every file of the spool directory that no stored upload still
/// needs: one is needed while its upload's parse is not sealed (a resume
/// parses it again). Run at start, before any upload is received: what a
/// crash left (a body received but never recorded, a file whose parse was
/// sealed just before the crash, an upload deleted just before it) goes.
/// Answers how many files went.
pub fn sweep(dir: &Path, uploads: &[UploadRecord]) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let needed: Vec<&Path> = uploads
        .iter()
        .filter(|u| u.needs_parse())
        .filter_map(|u| u.source.as_deref())
        .filter(|source| holds(dir, source))
        .collect();
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if !needed.contains(&path.as_path()) && remove(&path) {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stage;

    fn record(source: Option<PathBuf>, parsed: bool) -> UploadRecord {
        UploadRecord {
            id: uuid::Uuid::new_v4(),
            filename: "chats.csv".into(),
            format: "csv".into(),
            status: Stage::Cancelled,
            analyzer: "lexicon".into(),
            model: String::new(),
            created_at: chrono::Utc::now(),
            finished_at: None,
            counts: Default::default(),
            llm: Default::default(),
            warnings: Vec::new(),
            warnings_total: 0,
            error: None,
            source,
            parsed,
            progress_mark: 0,
            starts_without_progress: 0,
            ingest: None,
        }
    }

    #[test]
    fn the_directory_and_its_files_are_the_owners_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_for(&tmp.path().join("pp.redb"));
        assert_eq!(dir, tmp.path().join("pp.redb.spool"));
        create_dir(&dir).unwrap();
        create_dir(&dir).unwrap();
        let file = dir.join("a.csv");
        drop(file_options().open(&file).unwrap());
        assert!(
            file_options().open(&file).is_err(),
            "never an existing file"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&file), 0o600);
        }
    }

    #[test]
    fn a_sweep_keeps_exactly_the_files_unsealed_parses_need() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pp.redb.spool");
        create_dir(&dir).unwrap();
        let file = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "x").unwrap();
            p
        };
        let resumable = file("resumable.csv");
        let sealed = file("sealed.csv");
        let stray = file("stray.csv");
        // A user's own file named by an upload is outside the spool: untouched.
        let own = tmp.path().join("own.csv");
        std::fs::write(&own, "x").unwrap();
        let uploads = [
            record(Some(resumable.clone()), false),
            record(Some(sealed.clone()), true),
            record(Some(own.clone()), false),
            record(None, false),
        ];
        assert_eq!(sweep(&dir, &uploads).unwrap(), 2);
        assert!(resumable.exists());
        assert!(!sealed.exists() && !stray.exists());
        assert!(own.exists());
        assert_eq!(sweep(&dir, &uploads).unwrap(), 0);
        assert_eq!(sweep(&tmp.path().join("none"), &uploads).unwrap(), 0);
    }

    #[test]
    fn releasing_removes_only_spooled_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pp.redb.spool");
        create_dir(&dir).unwrap();
        let spooled = dir.join("a.csv");
        std::fs::write(&spooled, "x").unwrap();
        let own = tmp.path().join("own.csv");
        std::fs::write(&own, "x").unwrap();
        assert!(release(&dir, &record(Some(spooled.clone()), false)));
        assert!(!spooled.exists());
        assert!(
            !release(&dir, &record(Some(spooled), false)),
            "already gone"
        );
        assert!(!release(&dir, &record(Some(own.clone()), false)));
        assert!(own.exists());
        // A path that only starts like the spool directory is not in it.
        let nested = dir.join("sub");
        std::fs::create_dir(&nested).unwrap();
        assert!(!holds(&dir, &nested.join("b.csv")));
    }
}
