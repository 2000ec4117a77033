//! All tracing setup. Logs go to stderr (journald captures it under
//! systemd); `RUST_LOG` overrides the default level; `log.format` picks
//! readable lines or one JSON object per line. Conversation text is only
//! ever logged at `trace`, keys never.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber with `default_level` (e.g. `"warn"`,
/// `"info"`) unless `RUST_LOG` says otherwise. Calling it twice is harmless.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("powerpulse={default_level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        // Colours only for a person at a terminal, not for journald or a file.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Fields at the top level (`upload_id`, `status`, …) with the
        // message, and the spans an event happened in.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}
