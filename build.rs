//! Names the commit in `powerpulse --version`: sets `POWERPULSE_VERSION` to
//! `0.1.0 (abc1234)`, `0.1.0 (abc1234, modified)` for a tree with
//! uncommitted changes to tracked files, or plain `0.1.0` when the commit is
//! unknown (a crate tarball, no git). `POWERPULSE_BUILD_COMMIT` names it
//! instead of git (for builds from a source archive).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit and whether tracked files differ from it; `None` outside a
/// git checkout of this crate.
fn commit() -> Option<(String, bool)> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // Only this crate's own repository: not a parent one it was unpacked into.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(&manifest_dir).ok()? {
        return None;
    }
    let sha = git(&["rev-parse", "--short=10", "HEAD"])?;
    // Rerun when HEAD moves or the index changes (a commit, a checkout, `git add`).
    let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
    let common_dir = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .unwrap_or_else(|| git_dir.clone());
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    println!("cargo:rerun-if-changed={git_dir}/index");
    println!("cargo:rerun-if-changed={common_dir}/packed-refs");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={common_dir}/{branch}");
    }
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some((sha, dirty))
}

fn main() {
    println!("cargo:rerun-if-env-changed=POWERPULSE_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let given = std::env::var("POWERPULSE_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let full = match (given, commit()) {
        (Some(c), _) => format!("{version} ({})", c.trim()),
        (None, Some((sha, false))) => format!("{version} ({sha})"),
        (None, Some((sha, true))) => format!("{version} ({sha}, modified)"),
        (None, None) => version,
    };
    println!("cargo:rustc-env=POWERPULSE_VERSION={full}");
}
