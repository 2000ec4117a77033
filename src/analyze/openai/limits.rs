//! Rate limits of one endpoint: a pace for requests per minute and one for
//! tokens per minute, a pause for 429s and exhausted quotas, and adoption
//! of the limits the provider announces.
//!
//! Providers enforce per-minute limits over sub-minute windows, so a pace
//! never bursts a minute's quota: its burst is one second's worth (for
//! tokens, at least one largest request, or it could never send one).
//!
//! Each pace is GCRA (the generic cell rate algorithm, as governor and the
//! providers' own limiters use) with reservations: [`Limits::ready_at`] says
//! when a request could go without taking anything, and
//! [`Limits::reserve`] takes its place in the schedule. The router needs
//! both: it asks every endpoint when it could send a request, then reserves
//! on the one that can send it first, and the caller sleeps until then. A
//! caller never polls a limiter, so hundreds of callers waiting cost no
//! wake-ups, and the pace stays exact (a late wake-up does not accumulate).
//! It runs on tokio's clock, so tests can pause time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

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

/// GCRA over one resource: `per_minute` units a minute, evenly, with a
/// burst of `burst` units.
#[derive(Debug, Clone)]
struct Pace {
    /// Time one unit takes at the limit.
    unit: Duration,
    burst: u32,
    /// Theoretical arrival time: when everything reserved so far would have
    /// gone at the exact rate.
    tat: Instant,
}

impl Pace {
    /// `n` per minute with a burst of one second's worth (at least `min_burst`).
    fn new(n: u32, min_burst: u32, now: Instant) -> Self {
        let n = n.max(1);
        Self {
            unit: Duration::from_secs_f64(60.0 / f64::from(n)),
            burst: (n / 60).max(min_burst).max(1),
            tat: now,
        }
    }

    /// When `n` units may go (at the soonest `now`), and the arrival time
    /// that leaves behind.
    fn slot(&self, n: u32, now: Instant) -> (Instant, Instant) {
        let tat = self.tat.max(now) + self.unit * n;
        let tolerance = self.unit * self.burst;
        let at = tat.checked_sub(tolerance).map_or(now, |t| t.max(now));
        (at, tat)
    }
}

impl Pace {
    /// Takes `n` units out of the schedule again (never before `now`: an
    /// idle pace holds its whole burst anyway).
    fn give_back(&mut self, n: u32, now: Instant) {
        self.tat = self
            .tat
            .checked_sub(self.unit * n)
            .map_or(now, |t| t.max(now));
    }
}

/// One limit (requests or tokens) as it stands.
struct Limit {
    per_minute: Option<u32>,
    source: LimitSource,
    pace: Option<Pace>,
}

impl Limit {
    fn new(per_minute: Option<u32>, source: LimitSource, min_burst: u32, now: Instant) -> Self {
        Self {
            per_minute,
            source,
            pace: per_minute.map(|n| Pace::new(n, min_burst, now)),
        }
    }

    fn slot(&self, n: u32, now: Instant) -> (Instant, Option<Instant>) {
        match &self.pace {
            Some(p) => {
                let (at, tat) = p.slot(n, now);
                (at, Some(tat))
            }
            None => (now, None),
        }
    }
}

struct State {
    requests: Limit,
    tokens: Limit,
    /// No request leaves before this instant (set by 429s and exhausted quotas).
    pause_until: Option<Instant>,
    /// Counts the paces replaced (a limit adopted): a place reserved in an
    /// earlier pace is not given back to the new one, which never held it.
    generation: u64,
}

/// A place [`Limits::reserve`] took: when the request may go, and in which
/// pace (to give it back to, if it is not sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub at: Instant,
    generation: u64,
}

/// The rate limits of one endpoint.
pub struct Limits {
    state: Mutex<State>,
    auto_requests: bool,
    auto_tokens: bool,
    /// The largest request we send, in rate-limit tokens.
    max_request_tokens: u32,
    /// The longest wait a provider may impose (`max_retry_wait_seconds`);
    /// longer ones are capped, so a hostile header cannot park the pool.
    max_wait: Duration,
    /// Whether the capping of a wait has been logged (once per endpoint).
    capped_logged: AtomicBool,
    /// Woken when the schedule changes under the callers sleeping on a
    /// reservation (a limit adopted, a pause set): they reserve again.
    changed: tokio::sync::Notify,
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
        let now = Instant::now();
        let (r, rs) = initial(rpm, AUTO_START_RPM);
        let (t, ts) = initial(tpm, AUTO_START_TPM);
        Self {
            state: Mutex::new(State {
                requests: Limit::new(r, rs, 1, now),
                tokens: Limit::new(t, ts, max_request_tokens, now),
                pause_until: None,
                generation: 0,
            }),
            auto_requests: rpm == RateSetting::Auto,
            auto_tokens: tpm == RateSetting::Auto,
            max_request_tokens,
            max_wait,
            capped_logged: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Fires when reservations made so far no longer hold (a limit was
    /// adopted, a pause set): whoever sleeps on one should reserve again.
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        let s = self.state();
        LimitsSnapshot {
            requests_per_minute: s.requests.per_minute,
            requests_source: s.requests.source,
            tokens_per_minute: s.tokens.per_minute,
            tokens_source: s.tokens.source,
        }
    }

    fn tokens_of(&self, tokens: u32) -> u32 {
        tokens.clamp(1, self.max_request_tokens.max(1))
    }

    /// When a request of `tokens` rate-limit tokens could go, taking nothing.
    pub fn ready_at(&self, tokens: u32, now: Instant) -> Instant {
        let s = self.state();
        let (r, _) = s.requests.slot(1, now);
        let (t, _) = s.tokens.slot(self.tokens_of(tokens), now);
        let at = r.max(t);
        s.pause_until.map_or(at, |p| at.max(p))
    }

    /// Takes a place for a request of `tokens` rate-limit tokens: when it
    /// may go (after any pause in force).
    pub fn reserve(&self, tokens: u32, now: Instant) -> Reservation {
        let n = self.tokens_of(tokens);
        let mut s = self.state();
        let (r, r_tat) = s.requests.slot(1, now);
        let (t, t_tat) = s.tokens.slot(n, now);
        if let (Some(p), Some(tat)) = (s.requests.pace.as_mut(), r_tat) {
            p.tat = tat;
        }
        if let (Some(p), Some(tat)) = (s.tokens.pace.as_mut(), t_tat) {
            p.tat = tat;
        }
        let at = r.max(t);
        Reservation {
            at: s.pause_until.map_or(at, |p| at.max(p)),
            generation: s.generation,
        }
    }

    /// Gives back the place [`Limits::reserve`] took for a request that was
    /// not sent (its caller went elsewhere, or stopped); a place in a pace
    /// since replaced is gone with it.
    pub fn release(&self, tokens: u32, reservation: Reservation, now: Instant) {
        let n = self.tokens_of(tokens);
        let mut s = self.state();
        if s.generation != reservation.generation {
            return;
        }
        if let Some(p) = s.requests.pace.as_mut() {
            p.give_back(1, now);
        }
        if let Some(p) = s.tokens.pace.as_mut() {
            p.give_back(n, now);
        }
    }

    /// Until when every request waits (a 429's pause), if it is later than `now`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.state().pause_until.filter(|p| *p > now)
    }

    /// Waits until a request of `tokens` may go on this endpoint alone: its
    /// place reserved (again, when the schedule changes meanwhile), then any
    /// pause set meanwhile waited out.
    pub async fn acquire(&self, tokens: u32) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let reservation = self.reserve(tokens, Instant::now());
            tokio::select! {
                _ = tokio::time::sleep_until(reservation.at) => {}
                _ = changed => {
                    self.release(tokens, reservation, Instant::now());
                    continue;
                }
            }
            match self.paused_until(Instant::now()) {
                Some(until) => tokio::time::sleep_until(until).await,
                None => return,
            }
        }
    }

    /// Stops every request to this endpoint for `wait` (capped, see [`Limits::clamp_wait`]).
    pub fn pause_for(&self, wait: Duration) {
        let wait = self.clamp_wait(wait);
        let now = Instant::now();
        let until = now.checked_add(wait).unwrap_or(now);
        let mut s = self.state();
        if s.pause_until.is_none_or(|current| current < until) {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "rate limited: pausing every call to the endpoint"
            );
            s.pause_until = Some(until);
            drop(s);
            self.changed.notify_waiters();
        }
    }

    /// Learns from a response's rate-limit headers: adopts announced limits
    /// (for `auto` settings) and pauses when a quota is exhausted.
    pub fn observe(&self, headers: &HeaderMap) {
        let limit_r = header_u32(headers, "x-ratelimit-limit-requests");
        let limit_t = header_u32(headers, "x-ratelimit-limit-tokens");
        let adopted = {
            let mut s = self.state();
            let now = Instant::now();
            let r = self.auto_requests && adopt(&mut s.requests, limit_r, 1, "requests", now);
            let t = self.auto_tokens
                && adopt(
                    &mut s.tokens,
                    limit_t,
                    self.max_request_tokens,
                    "tokens",
                    now,
                );
            if r || t {
                s.generation += 1;
            }
            r || t
        };
        if adopted {
            self.changed.notify_waiters();
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
}

/// Adopts an announced limit for an `auto` setting; none announced where
/// one was assumed lifts it. Whether it changed: the new limit starts from
/// now, and the callers holding reservations under the old one reserve again.
fn adopt(
    limit: &mut Limit,
    announced: Option<u32>,
    min_burst: u32,
    what: &str,
    now: Instant,
) -> bool {
    match announced {
        Some(n) if limit.per_minute != Some(n) || limit.source != LimitSource::Announced => {
            tracing::info!(limit = n, "adopting the provider's {what}-per-minute limit");
            *limit = Limit::new(Some(n), LimitSource::Announced, min_burst, now);
            true
        }
        None if limit.source == LimitSource::Starting => {
            tracing::info!("the provider announces no {what} limit; pacing by 429s only");
            *limit = Limit::new(None, LimitSource::Unlimited, min_burst, now);
            true
        }
        _ => false,
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
    fn paces_burst_one_second_not_one_minute() {
        let now = Instant::now();
        let p = Pace::new(6000, 1, now);
        assert_eq!(p.burst, 100);
        assert_eq!(p.unit, Duration::from_millis(10));
        assert_eq!(Pace::new(30_000, 4000, now).burst, 4000);
        assert_eq!(Pace::new(10, 1, now).burst, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_keep_the_exact_pace_and_a_look_takes_nothing() {
        // 600 requests a minute: a burst of 10, then one every 100 ms.
        let l = Limits::new(
            RateSetting::PerMinute(600),
            RateSetting::PerMinute(10_000_000),
            100,
            MINUTE,
        );
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.ready_at(10, now), now, "a look takes nothing");
            assert_eq!(l.reserve(10, now).at, now);
        }
        let ms = Duration::from_millis;
        assert_eq!(l.ready_at(10, now), now + ms(100));
        assert_eq!(l.reserve(10, now).at, now + ms(100));
        let given_back = l.reserve(10, now);
        assert_eq!(given_back.at, now + ms(200));
        l.release(10, given_back, now);
        assert_eq!(l.reserve(10, now).at, now + ms(200), "the same place again");
        // Later, the schedule has caught up: what is left of the burst refills.
        let later = now + Duration::from_secs(10);
        assert_eq!(l.reserve(10, later).at, later);
        // Tokens bind too: 6,000 a minute is 100 a second.
        let t = Limits::new(
            RateSetting::PerMinute(60_000),
            RateSetting::PerMinute(6_000),
            100,
            MINUTE,
        );
        assert_eq!(t.reserve(100, now).at, now);
        assert_eq!(t.reserve(50, now).at, now + ms(500));
        assert_eq!(t.reserve(100, now).at, now + ms(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_limit_wakes_the_callers_it_would_speed_up() {
        let l = std::sync::Arc::new(Limits::new(
            RateSetting::Auto,
            RateSetting::Auto,
            100,
            MINUTE,
        ));
        // 500 a minute: past the burst of 8, the 20th caller waits 1.44 s.
        let mut old = Vec::new();
        for _ in 0..19 {
            old.push(l.reserve(1, Instant::now()));
        }
        let start = Instant::now();
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.acquire(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        l.observe(&headers(&[
            ("x-ratelimit-limit-requests", "60000"),
            ("x-ratelimit-limit-tokens", "10000000"),
        ]));
        waiting.await.unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "{:?}",
            start.elapsed()
        );
        // Places taken under the old limit are not given to the new one,
        // which never held them: past its burst of 1,000, the next waits.
        let now = Instant::now();
        for _ in 0..999 {
            l.reserve(1, now);
        }
        for r in old {
            l.release(1, r, now);
        }
        assert_eq!(l.reserve(1, now).at, now + Duration::from_millis(1));
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
