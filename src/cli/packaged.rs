//! The packaged service's token for `sudo powerpulse …`: run as root with
//! the packaged configuration (`--config /etc/powerpulse/config.toml`) and
//! no `POWERPULSE_TOKEN` of its own, the CLI takes the one from
//! `/etc/powerpulse/env`, the file systemd reads for the service (its
//! postinst puts a generated token there). Only root can read that file,
//! and only a root-owned file no one else may write is believed.

use std::io::Read;
use std::path::{Path, PathBuf};

use powerpulse::config::Settings;

/// The configuration the package installs.
pub const CONFIG: &str = "/etc/powerpulse/config.toml";
/// The service's secrets (`EnvironmentFile=` of the unit).
pub const ENV: &str = "/etc/powerpulse/env";

/// The configuration file to read: the one given; else `./config.toml`
/// when present; else, for root on a packaged install, the packaged one,
/// so that `sudo powerpulse uploads` reaches the service's database (and
/// token) as `sudo powerpulse --config /etc/powerpulse/config.toml uploads`
/// does. Others cannot read that file, and keep the defaults.
pub fn config_path(given: Option<&Path>) -> Option<PathBuf> {
    // SAFETY: geteuid takes no argument and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    choose_config(
        given,
        Path::new("config.toml").exists(),
        root && Path::new(CONFIG).is_file(),
    )
}

fn choose_config(given: Option<&Path>, local: bool, packaged: bool) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path.to_path_buf()),
        None if local => Some(PathBuf::from("config.toml")),
        None if packaged => Some(PathBuf::from(CONFIG)),
        None => None,
    }
}

/// The service's token, when this process is root, runs with the packaged
/// configuration and has no token of its own.
pub fn service_token(config: Option<&Path>, settings: &Settings) -> Option<String> {
    // SAFETY: geteuid takes no argument and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || settings.server.token.is_some() {
        return None;
    }
    let packaged = config?.canonicalize().ok()? == Path::new(CONFIG);
    if !packaged {
        return None;
    }
    token_in(Path::new(ENV))
}

/// `POWERPULSE_TOKEN` of the environment file at `path`, if root owns it
/// and no one else may write it.
fn token_in(path: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    token_of(&text)
}

/// The value of the last `POWERPULSE_TOKEN=` line of a systemd environment
/// file (`KEY=value` lines, `#` and `;` comments, a value optionally
/// quoted), as systemd would set it; `None` when there is none or it is empty.
fn token_of(text: &str) -> Option<String> {
    let value = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.strip_prefix("POWERPULSE_TOKEN"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .next_back()?
        .trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    (!unquoted.is_empty()).then(|| unquoted.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_without_a_local_config_reads_the_packaged_one() {
        let given = Path::new("/tmp/mine.toml");
        assert_eq!(choose_config(Some(given), true, true).unwrap(), given);
        assert_eq!(
            choose_config(None, true, true).unwrap(),
            Path::new("config.toml")
        );
        assert_eq!(choose_config(None, false, true).unwrap(), Path::new(CONFIG));
        assert_eq!(choose_config(None, false, false), None);
    }

    #[test]
    fn the_token_is_read_as_systemd_reads_it() {
        let file = "# Secrets\n#POWERPULSE_TOKEN=commented\nOPENAI_API_KEY=sk-x\n\
                    POWERPULSE_TOKEN=first\n  POWERPULSE_TOKEN = \"pp_abc\"  \n";
        assert_eq!(token_of(file).as_deref(), Some("pp_abc"));
        assert_eq!(token_of("POWERPULSE_TOKEN='x y'\n").as_deref(), Some("x y"));
        assert_eq!(token_of("#POWERPULSE_TOKEN=\n"), None);
        assert_eq!(token_of("POWERPULSE_TOKEN=\n"), None, "set empty: no token");
        assert_eq!(token_of("POWERPULSE_TOKENS=x\n"), None);
    }

    #[test]
    fn only_a_file_of_roots_that_no_one_else_writes_is_believed() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid takes no argument and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return; // the files below must be root's
        }
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env");
        std::fs::write(&env, "POWERPULSE_TOKEN=pp_service\n").unwrap();
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(token_in(&env).as_deref(), Some("pp_service"));
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(token_in(&env), None);
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&env, Some(65534), None).unwrap();
        assert_eq!(token_in(&env), None);
    }
}
