//! All tracing setup. Logs go to stderr; `RUST_LOG` overrides the default
//! level. Conversation text is only ever logged at `trace`, keys never.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with `default_level` (e.g. `"warn"`,
/// `"info"`) unless `RUST_LOG` says otherwise. Calling it twice is harmless.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("powerpulse={default_level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
