//! OpenAI-style rate limiting: per-minute request and token limits enforced
//! continuously by token buckets, `x-ratelimit-*` headers, and 429 storms.
//!
//! Each bucket refills at limit/60 per second and holds six seconds' worth
//! (limit/10). OpenAI documents per-minute limits but enforces them over
//! shorter windows; a one-minute bucket would let a client burst a whole
//! minute's quota at once, which the real service punishes. A request needs
//! its cost available to be admitted, except that a request costing more than
//! a full bucket is admitted once the bucket is full; its whole cost is then
//! taken, leaving the bucket in debt, so the per-minute average still holds.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::FakeConfig;

/// Rate-limit tokens of a chat-completions request, as OpenAI's limiter
/// estimates them before running the model: ⌈characters of every message's
/// content / 4⌉ plus `max_tokens` (or `max_completion_tokens`; 16 when
/// neither is given). PowerPulse's client uses the same estimate.
pub fn rate_limit_tokens(body: &Value) -> u64 {
    let completion = body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_completion_tokens"].as_u64())
        .unwrap_or(16);
    prompt_tokens(body).saturating_add(completion)
}

/// ⌈characters of every message's content / 4⌉. Content given as an array
/// of parts counts the parts' `text`.
pub(crate) fn prompt_tokens(body: &Value) -> u64 {
    let chars: usize = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match &m["content"] {
            Value::String(s) => s.chars().count(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .map(|t| t.chars().count())
                .sum(),
            _ => 0,
        })
        .sum();
    (chars as u64).div_ceil(4)
}

/// Formats a duration as Go's `time.Duration` does, which is what OpenAI's
/// `x-ratelimit-reset-*` headers carry: `12ms`, `1s`, `1.5s`, `6m0s`,
/// `1h2m3s`. Rounded up to the millisecond, so a client that waits exactly
/// this long never comes back too early.
pub fn go_duration(d: Duration) -> String {
    let ms = ceil_millis(d);
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let fraction = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}").trim_end_matches('0').to_string()
    };
    let seconds = format!("{seconds}{fraction}s");
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// Whole milliseconds, rounded up.
pub(crate) fn ceil_millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// Which limit a 429 is about; also the error body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }

    /// How OpenAI names the limit in its error messages.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests per min (RPM)",
            LimitKind::Tokens => "tokens per min (TPM)",
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    per_minute: u32,
    capacity: f64,
    /// Negative after admitting a request larger than the bucket.
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32, now: Instant) -> Self {
        let capacity = (f64::from(per_minute) / 10.0).max(1.0);
        Bucket {
            per_minute,
            capacity,
            level: capacity,
            at: now,
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60.0
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * self.per_second()).min(self.capacity);
        self.at = self.at.max(now);
    }

    /// How long until a request costing `cost` can be admitted.
    fn wait_for(&self, cost: f64) -> Duration {
        let deficit = cost.min(self.capacity) - self.level;
        if deficit <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(deficit / self.per_second())
        }
    }

    fn until_full(&self) -> Duration {
        Duration::from_secs_f64((self.capacity - self.level).max(0.0) / self.per_second())
    }

    fn push_headers(&self, kind: LimitKind, headers: &mut Vec<(String, String)>) {
        let kind = kind.as_str();
        headers.push((
            format!("x-ratelimit-limit-{kind}"),
            self.per_minute.to_string(),
        ));
        headers.push((
            format!("x-ratelimit-remaining-{kind}"),
            (self.level.max(0.0).floor() as u64).to_string(),
        ));
        headers.push((
            format!("x-ratelimit-reset-{kind}"),
            go_duration(self.until_full()),
        ));
    }
}

/// The verdict on one request.
#[derive(Debug)]
pub(crate) enum Admission {
    Admitted {
        headers: Vec<(String, String)>,
    },
    Limited {
        kind: LimitKind,
        /// Exactly until enough capacity is back (or as the storm says).
        wait: Duration,
        /// Per-minute limit, for the error message; 0 in a storm without limits.
        limit: u32,
        headers: Vec<(String, String)>,
    },
}

/// Both buckets, plus any 429 storm in progress.
#[derive(Debug)]
pub(crate) struct Limiter {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// 429s still to send, and the retry-after they carry.
    storm: Option<(u32, Duration)>,
}

impl Limiter {
    pub(crate) fn new(config: &FakeConfig, now: Instant) -> Self {
        Limiter {
            requests: config.requests_per_minute.map(|n| Bucket::new(n, now)),
            tokens: config.tokens_per_minute.map(|n| Bucket::new(n, now)),
            storm: None,
        }
    }

    /// Applies changed limits. A bucket whose limit is unchanged keeps its
    /// level; a changed one keeps what it held, up to its new capacity, so
    /// lowering a limit live does not hand out a fresh burst.
    pub(crate) fn reconfigure(&mut self, config: &FakeConfig, now: Instant) {
        fn adjust(bucket: &mut Option<Bucket>, limit: Option<u32>, now: Instant) {
            *bucket = match (bucket.take(), limit) {
                (_, None) => None,
                (Some(b), Some(n)) if b.per_minute == n => Some(b),
                (Some(mut old), Some(n)) => {
                    old.refill(now);
                    let mut b = Bucket::new(n, now);
                    b.level = old.level.min(b.capacity);
                    Some(b)
                }
                (None, Some(n)) => Some(Bucket::new(n, now)),
            };
        }
        adjust(&mut self.requests, config.requests_per_minute, now);
        adjust(&mut self.tokens, config.tokens_per_minute, now);
    }

    pub(crate) fn start_storm(&mut self, requests: u32, retry_after: Duration) {
        self.storm = (requests > 0).then_some((requests, retry_after));
    }

    /// Admits a request costing `tokens`, taking its cost, or says how long
    /// to wait. A 429 takes nothing.
    pub(crate) fn admit(&mut self, tokens: u64, now: Instant) -> Admission {
        for bucket in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
            bucket.refill(now);
        }
        let cost = tokens as f64;
        let limited = if let Some((left, wait)) = self.storm.as_mut() {
            let wait = *wait;
            *left -= 1;
            if *left == 0 {
                self.storm = None;
            }
            let limit = self.requests.as_ref().map_or(0, |b| b.per_minute);
            Some((LimitKind::Requests, wait, limit))
        } else {
            let waits = [
                (LimitKind::Requests, self.requests.as_ref(), 1.0),
                (LimitKind::Tokens, self.tokens.as_ref(), cost),
            ];
            waits
                .into_iter()
                .filter_map(|(kind, b, cost)| b.map(|b| (kind, b.wait_for(cost), b.per_minute)))
                .filter(|(_, wait, _)| !wait.is_zero())
                .max_by_key(|(_, wait, _)| *wait)
        };
        if limited.is_none() {
            if let Some(b) = self.requests.as_mut() {
                b.level -= 1.0;
            }
            if let Some(b) = self.tokens.as_mut() {
                b.level -= cost;
            }
        }
        let headers = self.headers();
        match limited {
            None => Admission::Admitted { headers },
            Some((kind, wait, limit)) => Admission::Limited {
                kind,
                wait,
                limit,
                headers,
            },
        }
    }

    /// `x-ratelimit-*` for every configured limit.
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::with_capacity(6);
        if let Some(b) = &self.requests {
            b.push_headers(LimitKind::Requests, &mut headers);
        }
        if let Some(b) = &self.tokens {
            b.push_headers(LimitKind::Tokens, &mut headers);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limited(config: FakeConfig, now: Instant) -> Limiter {
        Limiter::new(&config, now)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    }

    #[test]
    fn durations_look_like_go() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(12)), "12ms");
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(1250)), "1.25s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(ms(61_500)), "1m1.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        // Rounded up: a client waiting this long is never early.
        assert_eq!(go_duration(Duration::from_micros(11_001)), "12ms");
        assert_eq!(go_duration(Duration::from_nanos(1)), "1ms");
    }

    #[test]
    fn tokens_are_characters_over_four_plus_the_completion_budget() {
        let body = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "abcdefgh"}], "max_tokens": 100});
        assert_eq!(rate_limit_tokens(&body), 104);
        let body = json!({"messages": [{"role": "user", "content": "héllo"}],
                          "max_completion_tokens": 10});
        assert_eq!(rate_limit_tokens(&body), 12, "characters, not bytes");
        let body = json!({"messages": [{"role": "user",
                          "content": [{"type": "text", "text": "abcd"}]}]});
        assert_eq!(rate_limit_tokens(&body), 17);
        assert_eq!(rate_limit_tokens(&json!("nonsense")), 16);
    }

    #[test]
    fn the_request_bucket_holds_six_seconds_and_429s_take_nothing() {
        let t0 = Instant::now();
        let mut l = limited(
            FakeConfig {
                requests_per_minute: Some(60),
                ..Default::default()
            },
            t0,
        );
        for i in 0..6 {
            let Admission::Admitted { headers } = l.admit(10, t0) else {
                panic!("request {i} admitted");
            };
            assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "60");
            assert_eq!(
                header(&headers, "x-ratelimit-remaining-requests"),
                (5 - i).to_string()
            );
        }
        for _ in 0..3 {
            let Admission::Limited {
                kind,
                wait,
                headers,
                ..
            } = l.admit(10, t0)
            else {
                panic!("the seventh is limited");
            };
            assert_eq!(kind, LimitKind::Requests);
            assert_eq!(wait, Duration::from_secs(1));
            assert_eq!(header(&headers, "x-ratelimit-reset-requests"), "6s");
        }
        // Exactly the advertised wait is enough, however many 429s came first.
        assert!(matches!(
            l.admit(10, t0 + Duration::from_secs(1)),
            Admission::Admitted { .. }
        ));
    }

    #[test]
    fn an_oversized_request_waits_for_a_full_bucket_then_leaves_debt() {
        let t0 = Instant::now();
        let mut l = limited(
            FakeConfig {
                tokens_per_minute: Some(600),
                ..Default::default()
            },
            t0,
        );
        // Capacity 60 tokens, refilling 10 per second.
        assert!(matches!(l.admit(30, t0), Admission::Admitted { .. }));
        let Admission::Limited { kind, wait, .. } = l.admit(100, t0) else {
            panic!("needs a full bucket");
        };
        assert_eq!((kind, wait), (LimitKind::Tokens, Duration::from_secs(3)));
        let t1 = t0 + wait;
        assert!(matches!(l.admit(100, t1), Admission::Admitted { .. }));
        // 40 tokens of debt: 4 s until one more token, 10 s until full.
        let Admission::Limited { wait, headers, .. } = l.admit(1, t1) else {
            panic!("in debt");
        };
        assert_eq!(wait, Duration::from_secs_f64(4.1));
        assert_eq!(header(&headers, "x-ratelimit-remaining-tokens"), "0");
        assert_eq!(header(&headers, "x-ratelimit-reset-tokens"), "10s");
    }

    #[test]
    fn the_longer_wait_names_the_limit() {
        let t0 = Instant::now();
        let mut l = limited(
            FakeConfig {
                requests_per_minute: Some(600),
                tokens_per_minute: Some(600),
                ..Default::default()
            },
            t0,
        );
        assert!(matches!(l.admit(60, t0), Admission::Admitted { .. }));
        let Admission::Limited { kind, limit, .. } = l.admit(20, t0) else {
            panic!("tokens exhausted");
        };
        assert_eq!((kind, limit), (LimitKind::Tokens, 600));
    }

    #[test]
    fn storms_come_first_and_end_by_themselves() {
        let t0 = Instant::now();
        let mut l = limited(FakeConfig::default(), t0);
        assert!(l.headers().is_empty(), "no limits, no headers");
        l.start_storm(2, Duration::from_millis(1500));
        for _ in 0..2 {
            let Admission::Limited { kind, wait, .. } = l.admit(1, t0) else {
                panic!("storm");
            };
            assert_eq!(
                (kind, wait),
                (LimitKind::Requests, Duration::from_millis(1500))
            );
        }
        assert!(matches!(l.admit(1, t0), Admission::Admitted { .. }));
    }

    #[test]
    fn reconfiguring_keeps_what_the_buckets_hold() {
        let t0 = Instant::now();
        let mut config = FakeConfig {
            requests_per_minute: Some(600),
            ..Default::default()
        };
        let mut l = limited(config.clone(), t0);
        for _ in 0..60 {
            assert!(matches!(l.admit(1, t0), Admission::Admitted { .. }));
        }
        l.reconfigure(&config, t0);
        assert!(
            matches!(l.admit(1, t0), Admission::Limited { .. }),
            "same limit, same level"
        );
        config.requests_per_minute = Some(6000);
        l.reconfigure(&config, t0);
        assert!(
            matches!(l.admit(1, t0), Admission::Limited { .. }),
            "no fresh burst"
        );
        config.requests_per_minute = None;
        l.reconfigure(&config, t0);
        assert!(matches!(l.admit(1, t0), Admission::Admitted { .. }));
    }
}
