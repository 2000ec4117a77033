//! Rate limits of one endpoint: a pace for requests per minute and one for
//! tokens per minute, a pause for 429s and exhausted quotas, and adoption
//! of the limits the provider announces.
//!
//! Providers enforce per-minute limits over sub-minute windows, so a pace
//! never bursts a minute's quota: its burst is one second's worth (for
//! tokens, at least one largest request, or it could never send one).
//!
//! Each pace is a [`governor`] rate limiter (GCRA) on tokio's clock
//! ([`TokioClock`]), so tests that pause tokio's time pace with it.
//! [`Limits::check`] asks both limiters: a request they admit is taken out
//! of them, one they refuse takes nothing and the refusal says when it
//! could go (governor's `NotUntil`). The router asks the endpoints in its
//! order of preference and the first that admits takes the call; when none
//! does, the call sleeps until the earliest of those instants and asks
//! again. Nobody holds a place in a schedule, so a call that goes elsewhere
//! or is cancelled has nothing to give back, and a limit adopted from the
//! headers is simply a new limiter. A late wake-up costs nothing: the
//! burst tolerance absorbs it, and the pace stays exact.
//!
//! Hand-written beside governor, because it cannot check two limiters as
//! one: a request admitted by the requests limiter and refused by the
//! tokens limiter would lose its request; instead that one request is kept
//! (`banked`) for the next check on the endpoint. At most one is kept, so
//! the requests pace is never exceeded by more than one request; without
//! it, a token-bound endpoint's refused checks would drain its request
//! budget too. The pause (429s, exhausted quotas) is not a pace, and is
//! plain state as well.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};
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

/// Tokio's clock for governor: an instant is the time elapsed since
/// `origin`, read from `tokio::time::Instant` (paused in tests).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// The tokio instant of one of this clock's readings.
    fn instant(&self, reading: Duration) -> Instant {
        self.origin + reading
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

type Pacer = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// One limit (requests or tokens) as it stands: `per_minute` units a
/// minute, evenly, with a burst of one second's worth (at least
/// `min_burst`); `None`, no limit.
struct Limit {
    per_minute: Option<u32>,
    source: LimitSource,
    pacer: Option<Pacer>,
    burst: u32,
}

impl Limit {
    fn new(
        per_minute: Option<u32>,
        source: LimitSource,
        min_burst: u32,
        clock: TokioClock,
    ) -> Self {
        let n = NonZeroU32::new(per_minute.unwrap_or(0).max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = (n.get() / 60).max(min_burst).max(1);
        let quota =
            Quota::per_minute(n).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            per_minute,
            source,
            pacer: per_minute.map(|_| RateLimiter::direct_with_clock(quota, clock)),
            burst,
        }
    }
}

struct State {
    requests: Limit,
    tokens: Limit,
    /// A request the requests limiter admitted for a check the tokens
    /// limiter refused: the next check takes it instead of another.
    banked: bool,
    /// No request leaves before this instant (set by 429s and exhausted quotas).
    pause_until: Option<Instant>,
}

/// The rate limits of one endpoint.
pub struct Limits {
    state: Mutex<State>,
    clock: TokioClock,
    auto_requests: bool,
    auto_tokens: bool,
    /// The largest request we send, in rate-limit tokens.
    max_request_tokens: u32,
    /// The longest wait a provider may impose (`max_retry_wait_seconds`);
    /// longer ones are capped, so a hostile header cannot park the pool.
    max_wait: Duration,
    /// Whether the capping of a wait has been logged (once per endpoint).
    capped_logged: AtomicBool,
    /// Woken when a limit is adopted: callers sleeping until a refusal's
    /// instant ask again (the new limiter may admit them sooner).
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
        let clock = TokioClock::new();
        let (r, rs) = initial(rpm, AUTO_START_RPM);
        let (t, ts) = initial(tpm, AUTO_START_TPM);
        Self {
            state: Mutex::new(State {
                requests: Limit::new(r, rs, 1, clock),
                tokens: Limit::new(t, ts, max_request_tokens, clock),
                banked: false,
                pause_until: None,
            }),
            clock,
            auto_requests: rpm == RateSetting::Auto,
            auto_tokens: tpm == RateSetting::Auto,
            max_request_tokens,
            max_wait,
            capped_logged: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Fires when a limit is adopted: whoever sleeps until a refusal's
    /// instant should ask again.
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

    /// Whether a request of `tokens` rate-limit tokens may go now. If so,
    /// it is taken out of both limits; if not, nothing is taken, and the
    /// answer is the instant it could go (a pause in force, or the limiter
    /// that refused it: when the other one refuses then, it says so then).
    pub fn check(&self, tokens: u32) -> Result<(), Instant> {
        let mut s = self.state();
        if let Some(until) = s.pause_until.filter(|p| *p > Instant::now()) {
            return Err(until);
        }
        if !s.banked
            && let Some(requests) = &s.requests.pacer
        {
            requests.check().map_err(|refused| self.when(&refused))?;
        }
        // The tokens of the largest request we send fit the burst, and a
        // request is never counted as more (a larger estimate is still one
        // request the provider takes whole).
        let n = tokens.clamp(1, self.max_request_tokens.max(1).min(s.tokens.burst));
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        if let Some(pacer) = &s.tokens.pacer
            && let Ok(Err(refused)) = pacer.check_n(n)
        {
            let at = self.when(&refused);
            s.banked = s.requests.pacer.is_some();
            return Err(at);
        }
        s.banked = false;
        Ok(())
    }

    /// The tokio instant a refusal names.
    fn when(&self, refused: &NotUntil<Duration>) -> Instant {
        self.clock.instant(refused.earliest_possible())
    }

    /// Until when every request waits (a 429's pause), if it is later than `now`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.state().pause_until.filter(|p| *p > now)
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
        }
    }

    /// Learns from a response's rate-limit headers: adopts announced limits
    /// (for `auto` settings) and pauses when a quota is exhausted.
    pub fn observe(&self, headers: &HeaderMap) {
        let limit_r = header_u32(headers, "x-ratelimit-limit-requests");
        let limit_t = header_u32(headers, "x-ratelimit-limit-tokens");
        let adopted = {
            let mut s = self.state();
            let clock = self.clock;
            let r = self.auto_requests && adopt(&mut s.requests, limit_r, 1, "requests", clock);
            let t = self.auto_tokens
                && adopt(
                    &mut s.tokens,
                    limit_t,
                    self.max_request_tokens,
                    "tokens",
                    clock,
                );
            if r {
                // Admitted by the limiter replaced, which the new one never was.
                s.banked = false;
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
/// one was assumed lifts it. Whether it changed: the new limiter starts
/// from now, with its burst.
fn adopt(
    limit: &mut Limit,
    announced: Option<u32>,
    min_burst: u32,
    what: &str,
    clock: TokioClock,
) -> bool {
    match announced {
        Some(n) if limit.per_minute != Some(n) || limit.source != LimitSource::Announced => {
            tracing::info!(limit = n, "adopting the provider's {what}-per-minute limit");
            *limit = Limit::new(Some(n), LimitSource::Announced, min_burst, clock);
            true
        }
        None if limit.source == LimitSource::Starting => {
            tracing::info!("the provider announces no {what} limit; pacing by 429s only");
            *limit = Limit::new(None, LimitSource::Unlimited, min_burst, clock);
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

    /// Waits until `l` admits a request of `tokens`, as the router does
    /// (woken early when a limit is adopted).
    async fn admitted(l: &Limits, tokens: u32) {
        loop {
            let changed = l.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match l.check(tokens) {
                Ok(()) => return,
                Err(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = changed => {}
                },
            }
        }
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
        let now = Instant::now();
        assert_eq!(l.check(10), Err(now + Duration::from_secs(7)));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(l.check(10), Ok(()));
        // An absurd (but finite) reset header is capped the same way.
        l.observe(&headers(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "9999999h"),
        ]));
        let now = Instant::now();
        assert_eq!(l.check(10), Err(now + Duration::from_secs(7)));
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

    #[tokio::test(start_paused = true)]
    async fn paces_burst_one_second_not_one_minute() {
        let clock = TokioClock::new();
        let per_minute =
            |n, min_burst| Limit::new(Some(n), LimitSource::Configured, min_burst, clock);
        assert_eq!(per_minute(6000, 1).burst, 100);
        assert_eq!(per_minute(30_000, 4000).burst, 4000);
        assert_eq!(per_minute(10, 1).burst, 1);
        // 6,000 a minute: 100 at once, then one every 10 ms.
        let l = Limits::new(
            RateSetting::PerMinute(6000),
            RateSetting::PerMinute(10_000_000),
            100,
            MINUTE,
        );
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.check(1), Ok(()));
        }
        assert_eq!(l.check(1), Err(now + Duration::from_millis(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn checks_keep_the_exact_pace_and_a_refusal_takes_nothing() {
        // 600 requests a minute: a burst of 10, then one every 100 ms.
        let l = Limits::new(
            RateSetting::PerMinute(600),
            RateSetting::PerMinute(10_000_000),
            100,
            MINUTE,
        );
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.check(10), Ok(()));
        }
        let ms = Duration::from_millis;
        for _ in 0..5 {
            assert_eq!(l.check(10), Err(now + ms(100)), "a refusal takes nothing");
        }
        // Late by 30 ms: the burst's tolerance absorbs it, the pace holds.
        tokio::time::advance(ms(130)).await;
        assert_eq!(l.check(10), Ok(()));
        assert_eq!(l.check(10), Err(now + ms(200)));
        // Later, the schedule has caught up: the burst refills.
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..10 {
            assert_eq!(l.check(10), Ok(()));
        }
        assert!(l.check(10).is_err());
        // Tokens bind too: 6,000 a minute is 100 a second.
        let t = Limits::new(
            RateSetting::PerMinute(60_000),
            RateSetting::PerMinute(6_000),
            100,
            MINUTE,
        );
        let now = Instant::now();
        assert_eq!(t.check(100), Ok(()));
        assert_eq!(t.check(50), Err(now + ms(500)));
        tokio::time::advance(ms(500)).await;
        assert_eq!(t.check(50), Ok(()));
        assert_eq!(t.check(100), Err(now + ms(1500)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_refused_for_its_tokens_keeps_its_request() {
        // 600 requests a minute (a burst of 10), 6,000 tokens (100 a second).
        let l = Limits::new(
            RateSetting::PerMinute(600),
            RateSetting::PerMinute(6_000),
            100,
            MINUTE,
        );
        assert_eq!(l.check(100), Ok(()));
        let refused = l.check(100).unwrap_err();
        for _ in 0..50 {
            assert_eq!(l.check(100), Err(refused));
        }
        // Fifty-one checks refused for their tokens took one request, kept
        // for the next: the requests limiter gave 2 of its 10.
        {
            let s = l.state();
            let requests = s.requests.pacer.as_ref().unwrap();
            assert!(
                matches!(requests.check_n(NonZeroU32::new(8).unwrap()), Ok(Ok(()))),
                "8 requests left"
            );
            assert!(requests.check().is_err());
        }
        // The request kept goes with the next tokens admitted.
        tokio::time::advance(refused - Instant::now()).await;
        assert_eq!(l.check(100), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_limit_wakes_the_callers_it_would_speed_up() {
        let l = std::sync::Arc::new(Limits::new(
            RateSetting::Auto,
            RateSetting::Auto,
            100,
            MINUTE,
        ));
        // 500 a minute: past the burst of 8, a caller waits 120 ms.
        for _ in 0..8 {
            assert_eq!(l.check(1), Ok(()));
        }
        let start = Instant::now();
        assert_eq!(l.check(1), Err(start + Duration::from_millis(120)));
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { admitted(&l, 1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        l.observe(&headers(&[
            ("x-ratelimit-limit-requests", "60000"),
            ("x-ratelimit-limit-tokens", "10000000"),
        ]));
        waiting.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(10), "woken at once");
        // The new limiter starts with its own burst (1,000, one taken).
        let now = Instant::now();
        for _ in 0..999 {
            assert_eq!(l.check(1), Ok(()));
        }
        assert_eq!(l.check(1), Err(now + Duration::from_millis(1)));
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
        assert_eq!(l.check(10), Err(start + Duration::from_secs(5)));
        admitted(&l, 10).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        l.observe(&headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2s"),
        ]));
        let start = Instant::now();
        admitted(&l, 10).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
