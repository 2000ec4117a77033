//! Rate limiting shared by every call: one governor limiter for requests per
//! minute and one for tokens per minute, a pool-wide pause for 429s, and
//! adoption of the limits the provider announces.
//!
//! Providers enforce per-minute limits over sub-minute windows, so a limiter
//! never bursts a minute's quota: its burst is one second's worth (for
//! tokens, at least one largest request, or it could never send one).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::RateSetting;

/// Where `auto` starts until the provider says more: OpenAI's first paid
/// tier for gpt-4o.
pub const AUTO_START_RPM: u32 = 500;
pub const AUTO_START_TPM: u32 = 30_000;

/// Where a limit in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    Configured,
    /// `auto`, before the provider said anything.
    Starting,
    /// Read from `x-ratelimit-limit-*` headers.
    Announced,
    /// `auto`, and the provider announces none (self-hosted servers): 429s alone pace us.
    Unlimited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitsSnapshot {
    pub requests_per_minute: Option<u32>,
    pub requests_source: LimitSource,
    pub tokens_per_minute: Option<u32>,
    pub tokens_source: LimitSource,
}

struct Limit {
    per_minute: Option<u32>,
    source: LimitSource,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl Limit {
    fn new(per_minute: Option<u32>, source: LimitSource, min_burst: u32) -> Self {
        let limiter = per_minute
            .and_then(|n| quota(n, min_burst))
            .map(|q| Arc::new(RateLimiter::direct(q)));
        Self {
            per_minute,
            source,
            limiter,
        }
    }
}

/// `n` per minute, replenished evenly, with a burst of one second's worth
/// (at least `min_burst`).
fn quota(n: u32, min_burst: u32) -> Option<Quota> {
    let n = n.max(1);
    let period = Duration::from_secs_f64(60.0 / f64::from(n));
    let burst = NonZeroU32::new((n / 60).max(min_burst).max(1))?;
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

pub struct Limits {
    requests: RwLock<Limit>,
    tokens: RwLock<Limit>,
    auto_requests: bool,
    auto_tokens: bool,
    /// The largest request we send, in rate-limit tokens.
    max_request_tokens: u32,
    /// No request leaves before this instant (set by 429s and exhausted quotas).
    pause_until: Mutex<Option<Instant>>,
    /// The longest wait a provider may impose (`max_retry_wait_seconds`);
    /// longer ones are capped, so a hostile header cannot park the pool.
    max_wait: Duration,
    /// Whether the capping of a wait has been logged (once per analyzer).
    capped_logged: AtomicBool,
    /// Callers wait on the limiters one at a time, in arrival order. Hundreds
    /// of callers polling a limiter at once wake together, all but one lose,
    /// and the timer slack of each round loses throughput; a queue in front
    /// keeps the pace exact (GCRA does not accumulate a late wake-up).
    gate: tokio::sync::Mutex<()>,
}

fn initial(setting: RateSetting, auto_start: u32) -> (Option<u32>, LimitSource) {
    match setting {
        RateSetting::PerMinute(n) => (Some(n), LimitSource::Configured),
        RateSetting::Auto => (Some(auto_start), LimitSource::Starting),
    }
}

impl Limits {
    pub fn new(
        rpm: RateSetting,
        tpm: RateSetting,
        max_request_tokens: u32,
        max_wait: Duration,
    ) -> Self {
        let (r, rs) = initial(rpm, AUTO_START_RPM);
        let (t, ts) = initial(tpm, AUTO_START_TPM);
        Self {
            requests: RwLock::new(Limit::new(r, rs, 1)),
            tokens: RwLock::new(Limit::new(t, ts, max_request_tokens)),
            auto_requests: rpm == RateSetting::Auto,
            auto_tokens: tpm == RateSetting::Auto,
            max_request_tokens,
            pause_until: Mutex::new(None),
            max_wait,
            capped_logged: AtomicBool::new(false),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The longest wait honoured (`max_retry_wait_seconds`).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// A wait a provider asked for, capped at the longest one honoured
    /// (logged the first time it happens).
    pub fn clamp_wait(&self, wait: Duration) -> Duration {
        if wait <= self.max_wait {
            return wait;
        }
        if !self.capped_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                asked_s = wait.as_secs_f64(),
                honoured_s = self.max_wait.as_secs_f64(),
                "the provider asked for a longer wait than analyzer.openai.max_retry_wait_seconds; \
                 waiting that long instead (logged once)"
            );
        }
        self.max_wait
    }

    pub fn snapshot(&self) -> LimitsSnapshot {
        let r = self.requests.read().unwrap_or_else(PoisonError::into_inner);
        let t = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        LimitsSnapshot {
            requests_per_minute: r.per_minute,
            requests_source: r.source,
            tokens_per_minute: t.per_minute,
            tokens_source: t.source,
        }
    }

    /// Waits until the pool is not paused and both limiters grant a request
    /// of `tokens` rate-limit tokens.
    pub async fn acquire(&self, tokens: u32) {
        self.wait_pause().await;
        let _turn = self.gate.lock().await;
        let requests = self
            .requests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .limiter
            .clone();
        if let Some(l) = requests {
            l.until_ready().await;
        }
        let limiter = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .limiter
            .clone();
        if let Some(l) = limiter {
            let n = NonZeroU32::new(tokens.clamp(1, self.max_request_tokens.max(1)))
                .unwrap_or(NonZeroU32::MIN);
            // The burst is at least the largest request, so this cannot fail;
            // if it did, sending is better than waiting forever.
            let _ = l.until_n_ready(n).await;
        }
        // A 429 may have arrived while we waited for the limiters.
        self.wait_pause().await;
    }

    async fn wait_pause(&self) {
        loop {
            let until = *self
                .pause_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// Stops every caller from sending for `wait` (capped, see [`Limits::clamp_wait`]).
    pub fn pause_for(&self, wait: Duration) {
        let wait = self.clamp_wait(wait);
        let now = Instant::now();
        let until = now.checked_add(wait).unwrap_or(now);
        let mut p = self
            .pause_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if p.is_none_or(|current| current < until) {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "rate limited: pausing every call"
            );
            *p = Some(until);
        }
    }

    /// Learns from a response's rate-limit headers: adopts announced limits
    /// (for `auto` settings) and pauses when a quota is exhausted.
    pub fn observe(&self, headers: &HeaderMap) {
        let limit_r = header_u32(headers, "x-ratelimit-limit-requests");
        let limit_t = header_u32(headers, "x-ratelimit-limit-tokens");
        if self.auto_requests {
            self.adopt(&self.requests, limit_r, 1, "requests");
        }
        if self.auto_tokens {
            self.adopt(&self.tokens, limit_t, self.max_request_tokens, "tokens");
        }
        for kind in ["requests", "tokens"] {
            let remaining = header_i64(headers, &format!("x-ratelimit-remaining-{kind}"));
            let reset = headers
                .get(format!("x-ratelimit-reset-{kind}"))
                .and_then(|v| v.to_str().ok())
                .and_then(parse_duration);
            if let (Some(0), Some(reset)) = (remaining, reset)
                && !reset.is_zero()
            {
                self.pause_for(reset);
            }
        }
    }

    fn adopt(&self, slot: &RwLock<Limit>, announced: Option<u32>, min_burst: u32, what: &str) {
        let mut limit = slot.write().unwrap_or_else(PoisonError::into_inner);
        match announced {
            Some(n) if limit.per_minute != Some(n) || limit.source != LimitSource::Announced => {
                tracing::info!(limit = n, "adopting the provider's {what}-per-minute limit");
                *limit = Limit::new(Some(n), LimitSource::Announced, min_burst);
            }
            None if limit.source == LimitSource::Starting => {
                tracing::info!("the provider announces no {what} limit; pacing by 429s only");
                *limit = Limit::new(None, LimitSource::Unlimited, min_burst);
            }
            _ => {}
        }
    }
}

/// One kind of limit as a response announced it (`x-ratelimit-*-requests`
/// or `-tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnnouncedLimit {
    pub limit_per_minute: Option<u32>,
    pub remaining: Option<i64>,
    /// The header's own text (`6m0s`, `20ms`, …).
    pub reset: Option<String>,
}

/// What a response says about the caller's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Announced {
    pub requests: AnnouncedLimit,
    pub tokens: AnnouncedLimit,
}

impl Announced {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let one = |kind: &str| AnnouncedLimit {
            limit_per_minute: header_u32(headers, &format!("x-ratelimit-limit-{kind}")),
            remaining: header_i64(headers, &format!("x-ratelimit-remaining-{kind}")),
            reset: headers
                .get(format!("x-ratelimit-reset-{kind}"))
                .and_then(|v| v.to_str().ok())
                .map(|v| crate::model::truncate_chars(v.trim(), 40)),
        };
        Announced {
            requests: one("requests"),
            tokens: one("tokens"),
        }
    }

    /// Whether the response announced anything at all.
    pub fn is_empty(&self) -> bool {
        *self == Announced::default()
    }
}

/// A positive integer header (Azure may send -1 or 0 for "none").
fn header_u32(headers: &HeaderMap, name: &str) -> Option<u32> {
    header_i64(headers, name)
        .filter(|n| *n > 0)
        .and_then(|n| u32::try_from(n).ok())
}

fn header_i64(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Go-style durations as OpenAI sends them: `12ms`, `1s`, `1.5s`, `6m0s`,
/// `1h2m3.5s`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    seconds(total)
}

/// A count of seconds as a duration; `None` for negative, NaN, infinite or
/// unrepresentably large values (which `Duration::from_secs_f64` panics on).
fn seconds(secs: f64) -> Option<Duration> {
    (secs >= 0.0)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

/// How long an error answer asks us to wait: `retry-after-ms`, else
/// `retry-after` (seconds or an HTTP date), else the reset of an exhausted
/// quota. Unreadable, negative or absurd values are ignored (`None`); the
/// caller caps what is left with [`Limits::clamp_wait`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    if let Some(v) = text("retry-after") {
        if let Some(wait) = v.parse::<f64>().ok().and_then(seconds) {
            return Some(wait);
        }
        if let Ok(when) = chrono::DateTime::parse_from_rfc2822(v) {
            let wait = when.signed_duration_since(chrono::Utc::now());
            return Some(wait.to_std().unwrap_or(Duration::ZERO));
        }
    }
    ["requests", "tokens"]
        .iter()
        .filter(|k| header_i64(headers, &format!("x-ratelimit-remaining-{k}")) == Some(0))
        .filter_map(|k| text(&format!("x-ratelimit-reset-{k}")).and_then(parse_duration))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn announced_limits_are_read_as_sent() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("x-ratelimit-reset-requests", "12ms"),
            ("x-ratelimit-limit-tokens", "-1"),
            ("x-ratelimit-remaining-tokens", "oops"),
        ]);
        let a = Announced::from_headers(&h);
        assert_eq!(a.requests.limit_per_minute, Some(5000));
        assert_eq!(a.requests.remaining, Some(4999));
        assert_eq!(a.requests.reset.as_deref(), Some("12ms"));
        // Azure's -1 means "none"; garbage is nothing.
        assert_eq!(a.tokens, AnnouncedLimit::default());
        assert!(!a.is_empty());
        assert!(Announced::from_headers(&HeaderMap::new()).is_empty());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn durations_as_providers_write_them() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("12ms"), Some(ms(12)));
        assert_eq!(parse_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_duration("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_duration("1h2m3s"), Some(ms(3_723_000)));
        assert_eq!(parse_duration("20"), Some(ms(20_000)));
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn retry_after_prefers_milliseconds_then_seconds_then_resets() {
        let ms = Duration::from_millis;
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(ms(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(ms(2000))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "1.5s"),
                ("x-ratelimit-remaining-requests", "10"),
                ("x-ratelimit-reset-requests", "9s"),
            ])),
            Some(ms(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-remaining-tokens", "-1")])),
            None
        );
        let date = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&[("retry-after", &date)])).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn absurd_waits_are_ignored_never_a_panic() {
        for absurd in [
            "1e20",
            "1e400",
            "NaN",
            "inf",
            "-inf",
            "-5",
            "1e308",
            "18446744073709551616",
        ] {
            // Each of these once reached `Duration::from_secs_f64`, which panics.
            assert_eq!(
                retry_after(&headers(&[("retry-after", absurd)])),
                None,
                "{absurd}"
            );
            // In milliseconds some are finite (1e20 ms): capped by the caller.
            let _ = retry_after(&headers(&[("retry-after-ms", absurd)]));
            assert_eq!(parse_duration(absurd), None, "{absurd}");
        }
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(parse_duration("1e3s"), None, "not a Go duration");
        // Falls through to the reset headers when retry-after is absurd.
        assert_eq!(
            retry_after(&headers(&[
                ("retry-after", "1e20"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "3s"),
            ])),
            Some(Duration::from_secs(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn long_waits_are_capped_at_the_configured_maximum() {
        let l = Limits::new(
            RateSetting::PerMinute(60_000),
            RateSetting::PerMinute(10_000_000),
            100,
            Duration::from_secs(7),
        );
        assert_eq!(l.clamp_wait(Duration::from_secs(3)), Duration::from_secs(3));
        assert_eq!(
            l.clamp_wait(Duration::from_secs(u64::MAX)),
            Duration::from_secs(7)
        );
        l.pause_for(Duration::MAX);
        let start = Instant::now();
        l.acquire(10).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
            "{waited:?}"
        );
        // An absurd (but finite) reset header is capped the same way.
        l.observe(&headers(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "9999999h"),
        ]));
        let start = Instant::now();
        l.acquire(10).await;
        assert!(start.elapsed() <= Duration::from_secs(8));
    }

    #[test]
    fn auto_adopts_announced_limits_and_lifts_when_none_are_announced() {
        let l = Limits::new(RateSetting::Auto, RateSetting::PerMinute(1000), 500, MINUTE);
        assert_eq!(l.snapshot().requests_per_minute, Some(AUTO_START_RPM));
        l.observe(&headers(&[
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-limit-tokens", "800000"),
        ]));
        let s = l.snapshot();
        assert_eq!(
            (s.requests_per_minute, s.requests_source),
            (Some(5000), LimitSource::Announced)
        );
        assert_eq!(
            (s.tokens_per_minute, s.tokens_source),
            (Some(1000), LimitSource::Configured),
            "configured limits are never overridden"
        );

        let l = Limits::new(RateSetting::Auto, RateSetting::Auto, 500, MINUTE);
        l.observe(&headers(&[("x-ratelimit-limit-requests", "-1")]));
        let s = l.snapshot();
        assert_eq!(s.requests_source, LimitSource::Unlimited);
        assert_eq!(s.tokens_source, LimitSource::Unlimited);
    }

    #[test]
    fn quotas_burst_one_second_not_one_minute() {
        let q = quota(6000, 1).unwrap();
        assert_eq!(q.burst_size().get(), 100);
        assert_eq!(q.replenish_interval(), Duration::from_millis(10));
        assert_eq!(quota(30_000, 4000).unwrap().burst_size().get(), 4000);
        assert_eq!(quota(10, 1).unwrap().burst_size().get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller() {
        let l = Limits::new(
            RateSetting::PerMinute(60_000),
            RateSetting::PerMinute(10_000_000),
            100,
            MINUTE,
        );
        l.pause_for(Duration::from_secs(5));
        let start = Instant::now();
        l.acquire(10).await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        l.observe(&headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2s"),
        ]));
        let start = Instant::now();
        l.acquire(10).await;
        assert!(start.elapsed() >= Duration::from_secs(2));
    }
}
