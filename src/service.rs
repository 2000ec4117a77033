//! systemd integration of `powerpulse serve` (`Type=notify` in
//! `packaging/powerpulse.service`): `READY=1` once the database is open and
//! the port bound, `WATCHDOG=1` at half of `WatchdogSec` while the engine's
//! actors answer, `STOPPING=1` when a shutdown begins.
//!
//! Each call does nothing outside systemd (no `$NOTIFY_SOCKET`), so `serve`
//! behaves the same from a terminal.

use std::time::Duration;

use sd_notify::NotifyState;
use uuid::Uuid;

use crate::engine::Engine;
use crate::progress::actor::GetProgress;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The database is open and `addr` is bound: the service is up.
pub fn ready(addr: std::net::SocketAddr) {
    send(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving on {addr}")),
    ]);
}

/// A shutdown has begun (uploads are stopping and being committed).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: committing running uploads"),
    ]);
}

/// How often to ping the watchdog: half of `WatchdogSec` (`$WATCHDOG_USEC`),
/// or `None` when the service manager asked for no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `interval` for as long as the engine's
/// `ProgressActor` answers within it; a wedged process stops pinging and
/// systemd restarts it. Runs until dropped.
pub async fn feed_watchdog(engine: Engine, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probe = engine.progress().send(GetProgress {
            upload_id: Uuid::nil(),
        });
        match tokio::time::timeout(interval, probe).await {
            Ok(Ok(_)) => send(&[NotifyState::Watchdog]),
            _ => tracing::warn!("the engine did not answer: not pinging the watchdog"),
        }
    }
}
