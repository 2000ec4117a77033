//! What the fake saw and did, for tests and benchmarks to assert on: counts,
//! tokens, repeated answers, peak concurrency, and requests that ignored a
//! 429's retry-after.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Requests already on their way when a 429 went out are not counted as
/// ignoring it: this covers the request's own flight time, which on a
/// loaded two-core machine (tests running beside a build) reaches a few
/// hundred milliseconds for requests queued behind others.
const GRACE: Duration = Duration::from_millis(250);

/// A snapshot of the server's counters (also `GET /stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Every chat-completions request, malformed ones included.
    pub requests: u64,
    /// Well-formed successful synchronous completions (fenced JSON
    /// included); batch lines are in `batch_requests_answered`.
    pub succeeded: u64,
    /// 429s: limits, storms and insufficient quota.
    pub rate_limited: u64,
    /// Injected faults of any kind (fenced JSON is not one).
    pub faults: u64,
    /// Chat-completions requests refused with a 400 (malformed, or a
    /// parameter the model does not take), or by a local server with a 500
    /// (a `response_format` it does not take).
    pub invalid_requests: u64,
    /// Billed on every synchronous 200, faulty content included, as the
    /// real service bills whatever it generated. Batch lines are in
    /// `batch_prompt_tokens` and `batch_completion_tokens`.
    pub prompt_tokens: u64,
    /// Reasoning tokens included.
    pub completion_tokens: u64,
    /// `prompt_tokens_details.cached_tokens` reported, synchronous and batch.
    pub cached_tokens: u64,
    /// `completion_tokens_details.reasoning_tokens` reported, synchronous
    /// and batch.
    pub reasoning_tokens: u64,
    /// Tokens taken from the limiter by admitted requests.
    pub rate_limit_tokens: u64,
    /// Conversations (first user message) answered successfully at least
    /// once, synchronously or in a batch.
    pub distinct_conversations_answered: u64,
    /// Conversations answered successfully more than once, whichever way
    /// (twice synchronously, in a batch and synchronously, in two
    /// batches): paid for twice.
    pub conversations_answered_more_than_once: u64,
    /// `POST /files` accepted.
    pub files_uploaded: u64,
    /// `POST /batches` accepted.
    pub batches_created: u64,
    /// Batches a `POST /batches/{id}/cancel` moved to `cancelling`.
    pub batches_cancelled: u64,
    /// Batch lines answered with a valid 200 (invalid content excluded).
    pub batch_requests_answered: u64,
    /// Batch lines written to an error file: error lines, 500s, 400s
    /// (refused parameters) and `batch_expired`. Lines with invalid content
    /// are in the output file and not counted here nor as answered.
    pub batch_requests_failed: u64,
    /// Billed on every batch line answered 200.
    pub batch_prompt_tokens: u64,
    pub batch_completion_tokens: u64,
    pub max_in_flight: u64,
    /// Requests that arrived while a 429's retry-after (storm or limit) was
    /// still running, more than 50 ms after that 429 was sent.
    pub requests_during_retry_after: u64,
    /// Since the server started.
    pub last_request_at: Option<Duration>,
    /// Distinct raw `Authorization` and `api-key` header values, sorted.
    pub authorization_seen: Vec<String>,
    /// Distinct `api-version` query values, sorted.
    pub api_versions_seen: Vec<String>,
}

/// What a request brought, recorded as it arrives.
pub(crate) struct Arrival<'a> {
    pub(crate) at: Instant,
    pub(crate) in_flight: u64,
    pub(crate) keys: Vec<&'a str>,
    pub(crate) api_version: Option<&'a str>,
}

/// The mutable counters behind [`Stats`].
#[derive(Debug)]
pub(crate) struct Recorder {
    started: Instant,
    counts: Stats,
    /// Successful answers per conversation identity.
    answered: HashMap<u64, u32>,
    keys: BTreeSet<String>,
    api_versions: BTreeSet<String>,
    windows: RetryWindows,
}

impl Recorder {
    pub(crate) fn new(started: Instant) -> Self {
        Recorder {
            started,
            counts: Stats::default(),
            answered: HashMap::new(),
            keys: BTreeSet::new(),
            api_versions: BTreeSet::new(),
            windows: RetryWindows::default(),
        }
    }

    pub(crate) fn arrived(&mut self, arrival: Arrival<'_>) {
        let c = &mut self.counts;
        c.requests += 1;
        c.max_in_flight = c.max_in_flight.max(arrival.in_flight);
        c.last_request_at = Some(arrival.at.saturating_duration_since(self.started));
        for key in arrival.keys {
            if !self.keys.contains(key) {
                self.keys.insert(key.to_string());
            }
        }
        if let Some(v) = arrival.api_version
            && !self.api_versions.contains(v)
        {
            self.api_versions.insert(v.to_string());
        }
        if self.windows.violated(arrival.at) {
            c.requests_during_retry_after += 1;
        }
    }

    /// A 429 sent at `sent`; `retry_after` when it carried one.
    pub(crate) fn rate_limited(&mut self, sent: Instant, retry_after: Option<Duration>) {
        self.counts.rate_limited += 1;
        if let Some(wait) = retry_after {
            self.windows.open(sent, sent + wait);
        }
    }

    pub(crate) fn admitted(&mut self, tokens: u64) {
        self.counts.rate_limit_tokens += tokens;
    }

    pub(crate) fn fault(&mut self) {
        self.counts.faults += 1;
    }

    pub(crate) fn billed(&mut self, prompt: u64, completion: u64) {
        self.counts.prompt_tokens += prompt;
        self.counts.completion_tokens += completion;
    }

    pub(crate) fn batch_billed(&mut self, prompt: u64, completion: u64) {
        self.counts.batch_prompt_tokens += prompt;
        self.counts.batch_completion_tokens += completion;
    }

    pub(crate) fn details(&mut self, cached: u64, reasoning: u64) {
        self.counts.cached_tokens += cached;
        self.counts.reasoning_tokens += reasoning;
    }

    pub(crate) fn invalid_request(&mut self) {
        self.counts.invalid_requests += 1;
    }

    pub(crate) fn answered(&mut self, conversation: u64) {
        self.counts.succeeded += 1;
        *self.answered.entry(conversation).or_default() += 1;
    }

    pub(crate) fn answered_in_batch(&mut self, conversation: u64) {
        self.counts.batch_requests_answered += 1;
        *self.answered.entry(conversation).or_default() += 1;
    }

    pub(crate) fn batch_lines_failed(&mut self, lines: u64) {
        self.counts.batch_requests_failed += lines;
    }

    pub(crate) fn file_uploaded(&mut self) {
        self.counts.files_uploaded += 1;
    }

    pub(crate) fn batch_created(&mut self) {
        self.counts.batches_created += 1;
    }

    pub(crate) fn batch_cancelled(&mut self) {
        self.counts.batches_cancelled += 1;
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            distinct_conversations_answered: self.answered.len() as u64,
            conversations_answered_more_than_once: self
                .answered
                .values()
                .filter(|n| **n > 1)
                .count() as u64,
            authorization_seen: self.keys.iter().cloned().collect(),
            api_versions_seen: self.api_versions.iter().cloned().collect(),
            ..self.counts.clone()
        }
    }
}

/// The retry-after windows of past 429s. Windows still inside their grace
/// period wait in `fresh` (in the order sent, as instants are monotonic and
/// every call happens under one lock); once past it only the latest end among
/// them matters, so they fold into `matured_until`. Memory stays bounded by
/// the 429s of the last 50 ms.
#[derive(Debug, Default)]
struct RetryWindows {
    fresh: VecDeque<(Instant, Instant)>,
    matured_until: Option<Instant>,
}

impl RetryWindows {
    fn open(&mut self, sent: Instant, until: Instant) {
        self.fresh.push_back((sent, until));
    }

    /// Whether a request arriving `now` ignores a retry-after.
    fn violated(&mut self, now: Instant) -> bool {
        while let Some(&(sent, until)) = self.fresh.front() {
            if now <= sent + GRACE {
                break;
            }
            self.fresh.pop_front();
            self.matured_until = Some(self.matured_until.map_or(until, |u| u.max(until)));
        }
        self.matured_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(at: Instant) -> Arrival<'static> {
        Arrival {
            at,
            in_flight: 1,
            keys: vec![],
            api_version: None,
        }
    }

    #[test]
    fn only_requests_after_the_grace_and_inside_a_window_ignore_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Recorder::new(t0);
        r.rate_limited(t0, Some(ms(1000)));
        r.arrived(arrival(t0 + ms(200))); // already on its way
        r.arrived(arrival(t0 + ms(300))); // too early
        // A later, shorter 429 must not hide the earlier, longer window.
        r.rate_limited(t0 + ms(310), Some(ms(100)));
        r.arrived(arrival(t0 + ms(500))); // too early for the first
        r.arrived(arrival(t0 + ms(1000))); // on time
        r.rate_limited(t0 + ms(1000), None); // insufficient quota: no window
        r.arrived(arrival(t0 + ms(1200)));
        let s = r.snapshot();
        assert_eq!(s.requests_during_retry_after, 2);
        assert_eq!((s.requests, s.rate_limited), (5, 3));
        assert_eq!(s.last_request_at, Some(ms(1200)));
    }

    #[test]
    fn conversations_answered_twice_are_counted_once_each() {
        let mut r = Recorder::new(Instant::now());
        for conversation in [1, 2, 2, 3, 3, 3] {
            r.answered(conversation);
        }
        let s = r.snapshot();
        assert_eq!(s.succeeded, 6);
        assert_eq!(s.distinct_conversations_answered, 3);
        assert_eq!(s.conversations_answered_more_than_once, 2);
    }

    #[test]
    fn keys_and_versions_are_distinct_and_sorted() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        for (keys, version) in [
            (vec!["Bearer b"], Some("2024-10-21")),
            (vec!["Bearer a", "k"], None),
            (vec!["Bearer b"], Some("2024-10-21")),
        ] {
            r.arrived(Arrival {
                at: t0,
                in_flight: 3,
                keys,
                api_version: version,
            });
        }
        let s = r.snapshot();
        assert_eq!(s.authorization_seen, ["Bearer a", "Bearer b", "k"]);
        assert_eq!(s.api_versions_seen, ["2024-10-21"]);
        assert_eq!(s.max_in_flight, 3);
    }
}
