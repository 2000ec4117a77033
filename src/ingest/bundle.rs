//! Many exports at once: a folder of them, or a zip archive — WhatsApp's
//! "with media" zip (the chat's `.txt` inside, media ignored), a zip of many
//! such zips or chat files (one conversation per chat), a Messenger
//! "Download your information" folder of `message_N.json`, a Telegram
//! export folder.
//!
//! A zip is unpacked into a temporary folder first (only the files an
//! export can be: text, JSON, CSV, workbooks and zips one level down; media
//! is skipped unread), under limits that a zip bomb cannot pass: at most
//! [`MAX_FILES`] files, and `ingest.xlsx_max_inflated_bytes` inflated in all,
//! counted as the bytes come out, whatever the archive declares. Every file
//! is then one export, read in path order with its own format, as if
//! uploaded alone but in one upload: who speaks for the business is decided
//! across all of them. A file that cannot be read is skipped with a warning
//! naming it; an upload where no file can be read fails.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    Format, IngestError, IngestOptions, RolesFrom, Row, RowBuilder, Source, Warning, detect,
    open_source, text,
};

/// Most files a bundle may hold (after skipping media): a Page's Messenger
/// export of a few hundred thousand threads fits, an archive of millions of
/// empty entries does not.
const MAX_FILES: usize = 500_000;
/// How deep a folder is walked, and zips opened within zips.
const MAX_DEPTH: usize = 8;
const MAX_ZIP_NESTING: usize = 1;

/// Extensions of files that can be an export.
const EXPORT_EXTENSIONS: &[&str] = &[
    "txt", "json", "jsonl", "ndjson", "csv", "tsv", "xlsx", "xlsm", "zip",
];

fn io_error(file: &str) -> impl Fn(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io {
        file: file.to_string(),
        source,
    }
}

fn zip_error(file: &str, message: impl std::fmt::Display) -> IngestError {
    IngestError::Malformed {
        file: file.to_string(),
        line: 1,
        message: format!("not a readable zip archive: {message}"),
    }
}

/// Whether a zip archive is a workbook (XLSX) rather than a zip of exports.
pub(super) fn is_workbook(path: &Path, file: &str) -> Result<bool, IngestError> {
    let handle = File::open(path).map_err(io_error(file))?;
    let zip = zip::ZipArchive::new(BufReader::new(handle)).map_err(|e| zip_error(file, e))?;
    Ok(zip
        .file_names()
        .any(|n| n.is_ok_and(|n| n == "xl/workbook.xml" || n == "[Content_Types].xml")))
}

/// One export of a bundle.
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    /// How messages name it: the bundle, then its path inside.
    display: String,
    /// Its file name as the user knows it (a chat's name, for WhatsApp);
    /// `_chat.txt` of a zip is named after the zip.
    name: String,
    format: Format,
}

/// A folder or an unpacked zip of exports.
#[derive(Debug)]
pub(super) struct Bundle {
    entries: Vec<Entry>,
    /// Files skipped while unpacking or listing, with why.
    skipped: Vec<String>,
    /// The unpacked zip, removed when the bundle goes.
    _unpacked: Option<tempfile::TempDir>,
}

/// What unpacking and listing share.
struct Gather<'a> {
    opts: &'a IngestOptions,
    file: &'a str,
    entries: Vec<Entry>,
    skipped: Vec<String>,
    inflated: u64,
    unpacked: Option<tempfile::TempDir>,
}

impl<'a> Gather<'a> {
    fn new(file: &'a str, opts: &'a IngestOptions) -> Self {
        Self {
            opts,
            file,
            entries: Vec::new(),
            skipped: Vec::new(),
            inflated: 0,
            unpacked: None,
        }
    }

    fn too_many(&self) -> IngestError {
        IngestError::Malformed {
            file: self.file.to_string(),
            line: 1,
            message: format!("more than {MAX_FILES} export files in one upload"),
        }
    }

    /// A temporary folder for unpacked files.
    fn scratch(&mut self) -> Result<&Path, IngestError> {
        if self.unpacked.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("powerpulse-unpacked-")
                .tempdir()
                .map_err(io_error(self.file))?;
            self.unpacked = Some(dir);
        }
        Ok(self.unpacked.as_ref().expect("set above").path())
    }

    /// Adds one file found in the bundle (a zip inside is opened in turn);
    /// `ext` is its real extension (`name` may be its zip's).
    fn add(
        &mut self,
        path: PathBuf,
        display: String,
        name: String,
        ext: &str,
        zip_depth: usize,
    ) -> Result<(), IngestError> {
        if ext == "zip" {
            if zip_depth >= MAX_ZIP_NESTING {
                self.skipped
                    .push(format!("{display}: a zip inside a zip inside a zip"));
                return Ok(());
            }
            return self.unzip(&path, &display, &name, zip_depth + 1);
        }
        if self.entries.len() >= MAX_FILES {
            return Err(self.too_many());
        }
        let head = text::head(&path, &display)?;
        let format = match detect(&path, &head, &display, self.opts.format) {
            Ok(super::Detected::File(format)) => format,
            Ok(super::Detected::Zip) => {
                self.skipped
                    .push(format!("{display}: a zip without a .zip name"));
                return Ok(());
            }
            Err(e) => {
                self.skipped.push(e.to_string());
                return Ok(());
            }
        };
        self.entries.push(Entry {
            path,
            display,
            name,
            format,
        });
        Ok(())
    }

    /// Unpacks the export files of a zip and adds them.
    fn unzip(
        &mut self,
        path: &Path,
        display: &str,
        zip_name: &str,
        zip_depth: usize,
    ) -> Result<(), IngestError> {
        let handle = File::open(path).map_err(io_error(display))?;
        let mut zip =
            zip::ZipArchive::new(BufReader::new(handle)).map_err(|e| zip_error(display, e))?;
        // Unpacked in name order, so that the upload's order does not
        // depend on how the zip was written.
        let mut names: Vec<(String, usize)> = Vec::new();
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| zip_error(display, e))?;
            if entry.is_dir() {
                continue;
            }
            let Some(inside) = entry.enclosed_name() else {
                self.skipped
                    .push(format!("{display}: an entry with an unsafe path"));
                continue;
            };
            let inside = inside.to_string_lossy().replace('\\', "/");
            if !is_export_name(&inside) {
                continue;
            }
            names.push((inside, i));
        }
        // Refused before anything is unpacked.
        if self.entries.len() + names.len() > MAX_FILES {
            return Err(self.too_many());
        }
        names.sort();
        let limit = self.opts.xlsx_max_inflated_bytes;
        let exports_of_zip = names.len();
        let mut buf = vec![0u8; 64 * 1024];
        for (inside, i) in names {
            if self.entries.len() >= MAX_FILES {
                return Err(self.too_many());
            }
            let ext = extension(&inside);
            let n = self.entries.len() + self.skipped.len();
            let target = self.scratch()?.join(format!("{n}.{ext}"));
            let mut entry = zip.by_index(i).map_err(|e| zip_error(display, e))?;
            let mut out = File::create(&target).map_err(io_error(display))?;
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return Err(zip_error(display, format!("{inside}: {e}"))),
                };
                self.inflated += n as u64;
                if self.inflated > limit {
                    return Err(IngestError::Malformed {
                        file: self.file.to_string(),
                        line: 1,
                        message: format!(
                            "the archive inflates to more than {limit} bytes \
                             (ingest.xlsx_max_inflated_bytes); is it a zip bomb?"
                        ),
                    });
                }
                out.write_all(&buf[..n]).map_err(io_error(display))?;
            }
            drop(out);
            let base = Path::new(&inside)
                .file_name()
                .map_or_else(|| inside.clone(), |n| n.to_string_lossy().into_owned());
            // A chat file named for no one (iOS's `_chat.txt`) is named after
            // its zip, as WhatsApp names the zip after the chat.
            let generic = Path::new(&base)
                .file_stem()
                .is_some_and(|s| s == "_chat" || s == "chat");
            let name = if generic && exports_of_zip == 1 {
                zip_name.to_string()
            } else {
                base
            };
            self.add(
                target,
                format!("{display}: {inside}"),
                name,
                &ext,
                zip_depth,
            )?;
        }
        Ok(())
    }

    /// Adds the export files of a folder, walking down.
    fn walk(&mut self, dir: &Path, display: &str, depth: usize) -> Result<(), IngestError> {
        if depth > MAX_DEPTH {
            self.skipped
                .push(format!("{display}: folders more than {MAX_DEPTH} deep"));
            return Ok(());
        }
        let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_error(display))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for child in children {
            let base = child
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if base.starts_with('.') || base == "__MACOSX" {
                continue;
            }
            let child_display = format!("{display}/{base}");
            // Symbolic links are not followed: a folder cannot reach outside.
            let meta = std::fs::symlink_metadata(&child).map_err(io_error(&child_display))?;
            if meta.is_dir() {
                self.walk(&child, &child_display, depth + 1)?;
            } else if meta.is_file() && is_export_name(&base) {
                let ext = extension(&base);
                self.add(child, child_display, base, &ext, 0)?;
            }
            if self.entries.len() > MAX_FILES {
                return Err(self.too_many());
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Bundle, IngestError> {
        if self.entries.is_empty() {
            let detail = match self.skipped.first() {
                Some(first) => format!("no export file could be read; the first: {first}"),
                None => "no export file (a chat .txt, a .json, .csv or .xlsx) inside".to_string(),
            };
            return Err(IngestError::NoMessages {
                file: self.file.to_string(),
                detail,
            });
        }
        Ok(Bundle {
            entries: self.entries,
            skipped: self.skipped,
            _unpacked: self.unpacked,
        })
    }
}

/// A file name's extension, lowercase.
fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a file inside a bundle may be an export (media and hidden files
/// are not).
fn is_export_name(inside: &str) -> bool {
    let base = inside.rsplit('/').next().unwrap_or(inside);
    if base.starts_with('.') || inside.starts_with("__MACOSX/") {
        return false;
    }
    EXPORT_EXTENSIONS.contains(&extension(base).as_str())
}

impl Bundle {
    /// The exports of a zip archive (`path`, known to the user as `file`).
    pub(super) fn zip(path: &Path, file: &str, opts: &IngestOptions) -> Result<Self, IngestError> {
        let mut gather = Gather::new(file, opts);
        let name = Path::new(file)
            .file_name()
            .map_or_else(|| file.to_string(), |n| n.to_string_lossy().into_owned());
        gather.unzip(path, file, &name, 0)?;
        gather.finish()
    }

    /// The exports of a folder.
    pub(super) fn folder(
        path: &Path,
        file: &str,
        opts: &IngestOptions,
    ) -> Result<Self, IngestError> {
        let mut gather = Gather::new(file, opts);
        gather.walk(path, file, 0)?;
        gather.finish()
    }

    /// The bundle's format: its files' when they share one, else the most
    /// common.
    pub(super) fn format(&self) -> Format {
        let mut counts: Vec<(Format, usize)> = Vec::new();
        for e in &self.entries {
            match counts.iter_mut().find(|(f, _)| *f == e.format) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.format, 1)),
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map_or(Format::Csv, |(f, _)| f)
    }

    /// How many export files it holds.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Reads a bundle's exports one after the other.
pub(super) struct BundleSource {
    bundle: Arc<Bundle>,
    opts: IngestOptions,
    next: usize,
    current: Option<(usize, Box<dyn Source>)>,
    warned_skipped: bool,
}

impl BundleSource {
    pub(super) fn new(bundle: Arc<Bundle>, opts: &IngestOptions) -> Self {
        Self {
            bundle,
            opts: opts.clone(),
            next: 0,
            current: None,
            warned_skipped: false,
        }
    }
}

impl Source for BundleSource {
    fn next_rows(
        &mut self,
        builder: &mut RowBuilder,
        out: &mut VecDeque<Row>,
    ) -> Result<bool, IngestError> {
        if !self.warned_skipped {
            self.warned_skipped = true;
            for why in &self.bundle.skipped {
                out.push_back(Row::Warning(Warning::notice(&format!("skipped {why}"))));
            }
        }
        loop {
            if let Some((i, source)) = &mut self.current {
                let entry = &self.bundle.entries[*i];
                match source.next_rows(builder, out) {
                    Ok(true) => return Ok(true),
                    Ok(false) => self.current = None,
                    Err(e) if self.bundle.entries.len() > 1 => {
                        out.push_back(Row::Warning(Warning::notice(&format!(
                            "skipped the rest of {}: {e}",
                            entry.display
                        ))));
                        self.current = None;
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            let Some(entry) = self.bundle.entries.get(self.next) else {
                return Ok(false);
            };
            let i = self.next;
            self.next += 1;
            match open_source(
                &entry.path,
                &entry.display,
                &entry.name,
                entry.format,
                &self.opts,
                builder,
            ) {
                Ok(source) => self.current = Some((i, source)),
                Err(e) if self.bundle.entries.len() > 1 => {
                    out.push_back(Row::Warning(Warning::notice(&format!("skipped {e}"))));
                    if !out.is_empty() {
                        return Ok(true);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn roles_from(&self) -> RolesFrom {
        let by_name = self.bundle.entries.iter().any(|e| {
            matches!(
                e.format,
                Format::WhatsApp | Format::Messenger | Format::Telegram | Format::Zendesk
            )
        });
        if by_name {
            RolesFrom::Names
        } else {
            RolesFrom::Field
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_export_files_are_unpacked() {
        assert!(is_export_name("WhatsApp Chat with Ram.txt"));
        assert!(is_export_name("messages/inbox/ram_1/message_1.json"));
        assert!(is_export_name("chats/WhatsApp Chat - Sita.zip"));
        assert!(!is_export_name("IMG-20220318-WA0001.jpg"));
        assert!(!is_export_name("PTT-20220318-WA0002.opus"));
        assert!(!is_export_name("__MACOSX/._chat.txt"));
        assert!(!is_export_name("folder/.DS_Store"));
    }
}
