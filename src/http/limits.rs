//! Bounded load: caps on the work the server takes on at once, and the
//! timeouts that keep a slow client from holding a slot.
//!
//! A slot is a semaphore permit held for as long as the work lasts: an upload
//! holds one from the first byte of its body until its file is parsed (so
//! that at most `server.max_concurrent_uploads` bodies are spooled or parsed
//! at once, across every worker); an event stream holds one until it ends;
//! a backup (a copy of the whole database beside it) holds the only one
//! there is until it is sent.
//! Beyond a cap the answer is 429 with `Retry-After`, never a 5xx.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::HttpError;
use crate::config::ServerSettings;

/// What a refused client is told to wait, in seconds.
const RETRY_AFTER_SECONDS: u64 = 1;

pub struct Limits {
    uploads: Arc<Semaphore>,
    max_uploads: usize,
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// One backup at a time: each is a copy of the database on its disk.
    backups: Arc<Semaphore>,
    /// An event stream with no change for this long ends.
    pub sse_idle: Duration,
    /// Longest a client may take over a request's headers (actix enforces it).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a body.
    pub body_idle: Duration,
    /// Longest a whole upload body may take.
    pub upload_total: Duration,
}

impl Limits {
    pub fn new(s: &ServerSettings) -> Self {
        // Validated settings are at least 1; a zero from an embedder would
        // refuse everything, so it is lifted to 1.
        let max_uploads = s.max_concurrent_uploads.max(1);
        let max_streams = s.max_sse_subscribers.max(1);
        let secs = |n: u64| Duration::from_secs(n.max(1));
        Self {
            uploads: Arc::new(Semaphore::new(max_uploads)),
            max_uploads,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            backups: Arc::new(Semaphore::new(1)),
            sse_idle: secs(s.sse_idle_timeout_seconds),
            header_timeout: secs(s.header_timeout_seconds),
            body_idle: secs(s.body_timeout_seconds),
            upload_total: secs(s.upload_timeout_seconds),
        }
    }

    /// A slot for one upload, or 429.
    pub fn upload_slot(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| HttpError::TooManyRequests {
                detail: format!(
                    "{} uploads are being received or parsed (server.max_concurrent_uploads); \
                     retry shortly",
                    self.max_uploads
                ),
                retry_after: RETRY_AFTER_SECONDS,
            })
    }

    /// A slot for one progress event stream, or 429.
    pub fn stream_slot(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| HttpError::TooManyRequests {
                detail: format!(
                    "{} event streams are open (server.max_sse_subscribers); poll \
                     /api/progress/{{id}} or retry shortly",
                    self.max_streams
                ),
                retry_after: RETRY_AFTER_SECONDS,
            })
    }

    /// The slot of the one backup taken at a time, or 429.
    pub fn backup_slot(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        self.backups
            .clone()
            .try_acquire_owned()
            .map_err(|_| HttpError::TooManyRequests {
                detail: "a backup is being taken; retry when it is done".into(),
                retry_after: RETRY_AFTER_SECONDS,
            })
    }

    /// The deadlines of one upload body, starting now.
    pub fn body_timing(&self) -> BodyTiming {
        BodyTiming {
            idle: self.body_idle,
            deadline: Instant::now() + self.upload_total,
        }
    }

    /// The caps, the timeouts and how much of each cap is in use, as Prometheus text.
    pub fn render(&self, out: &mut String) {
        let in_use = |sem: &Semaphore, max: usize| max.saturating_sub(sem.available_permits());
        for (name, help, value) in [
            (
                "powerpulse_http_uploads_in_progress",
                "Uploads being received or parsed.",
                in_use(&self.uploads, self.max_uploads),
            ),
            (
                "powerpulse_http_sse_subscribers",
                "Open progress event streams.",
                in_use(&self.streams, self.max_streams),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "powerpulse_http_limit";
        let _ = writeln!(
            out,
            "# HELP {name} The server's load limits ([server] settings; timeouts in seconds)."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (limit, value) in [
            ("max_concurrent_uploads", self.max_uploads as u64),
            ("max_sse_subscribers", self.max_streams as u64),
            ("sse_idle_timeout_seconds", self.sse_idle.as_secs()),
            ("header_timeout_seconds", self.header_timeout.as_secs()),
            ("body_timeout_seconds", self.body_idle.as_secs()),
            ("upload_timeout_seconds", self.upload_total.as_secs()),
        ] {
            let _ = writeln!(out, "{name}{{limit=\"{limit}\"}} {value}");
        }
    }
}

/// How long the next piece of one body may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyTiming {
    idle: Duration,
    deadline: Instant,
}

impl BodyTiming {
    /// Awaits `next` (the next chunk or part), or answers 408 when the client
    /// has been silent for the idle timeout or the whole body is overdue.
    pub async fn within<T>(&self, next: impl Future<Output = T>) -> Result<T, HttpError> {
        let until = self.deadline.min(Instant::now() + self.idle);
        tokio::time::timeout_at(until, next).await.map_err(|_| {
            HttpError::Timeout(
                "the request body arrived too slowly (server.body_timeout_seconds, \
                 server.upload_timeout_seconds)"
                    .into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(uploads: usize, streams: usize) -> Limits {
        Limits::new(&ServerSettings {
            max_concurrent_uploads: uploads,
            max_sse_subscribers: streams,
            ..ServerSettings::default()
        })
    }

    #[test]
    fn a_cap_refuses_with_429_until_a_slot_is_released() {
        use actix_web::ResponseError;
        let l = limits(2, 1);
        let a = l.upload_slot().unwrap();
        let _b = l.upload_slot().unwrap();
        let refused = l.upload_slot().unwrap_err();
        assert_eq!(refused.status_code().as_u16(), 429);
        let response = refused.error_response();
        assert_eq!(response.headers().get("retry-after").unwrap(), "1");
        drop(a);
        assert!(l.upload_slot().is_ok());

        let _s = l.stream_slot().unwrap();
        assert!(l.stream_slot().is_err());

        let backup = l.backup_slot().unwrap();
        assert_eq!(l.backup_slot().unwrap_err().status_code().as_u16(), 429);
        drop(backup);
        assert!(l.backup_slot().is_ok());
    }

    #[test]
    fn metrics_show_limits_and_use() {
        let l = limits(3, 5);
        let _a = l.upload_slot().unwrap();
        let mut out = String::new();
        l.render(&mut out);
        assert!(
            out.contains("powerpulse_http_uploads_in_progress 1"),
            "{out}"
        );
        assert!(out.contains("powerpulse_http_sse_subscribers 0"), "{out}");
        assert!(out.contains("powerpulse_http_limit{limit=\"max_concurrent_uploads\"} 3"));
        assert!(out.contains("powerpulse_http_limit{limit=\"body_timeout_seconds\"} 30"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_times_out() {
        let l = limits(1, 1);
        let timing = l.body_timing();
        assert_eq!(timing.within(async { 7 }).await.unwrap(), 7);
        let silent = timing.within(std::future::pending::<()>()).await;
        assert!(matches!(silent, Err(HttpError::Timeout(_))));
    }
}
