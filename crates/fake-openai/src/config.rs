//! What the fake does: how long it takes, how much it admits, how often it
//! fails. A [`FakeConfig`] is given to [`FakeServer::start`] and can be changed
//! while the server runs with [`FakeServer::update`].
//!
//! [`FakeServer::start`]: crate::FakeServer::start
//! [`FakeServer::update`]: crate::FakeServer::update

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

/// The longest latency a sample may produce: a log-normal tail is unbounded,
/// and a test should never wait on a single absurd draw.
const LATENCY_CAP: Duration = Duration::from_secs(600);

/// The server's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeConfig {
    /// Applied before every answer except 429s, which the real service sends
    /// at once.
    pub latency: Latency,
    /// `None`: unlimited.
    pub requests_per_minute: Option<u32>,
    /// `None`: unlimited. Counted as [`rate_limit_tokens`](crate::rate_limit_tokens).
    pub tokens_per_minute: Option<u32>,
    pub faults: Faults,
    /// How long a `timeout` fault hangs before answering 504: longer than any
    /// sane client timeout, so the client gives up first.
    pub hang: Duration,
    /// Replies are a function of this and the conversation; fault and latency
    /// draws come from a generator seeded with it.
    pub seed: u64,
    /// Actix workers. Read once at start; changing it live has no effect.
    pub workers: usize,
    /// The Batch API's schedule, limits and faults.
    pub batch: BatchConfig,
    /// Keep every chat-completions body and uploaded file as received, for
    /// [`FakeServer::received`](crate::FakeServer::received): what a test
    /// asserts never reached the provider. Off: they are not kept.
    pub record_received: bool,
    /// Which server it plays.
    pub server: ServerKind,
}

/// Which OpenAI-compatible server the fake plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerKind {
    /// OpenAI's API: every `response_format`, both budget parameters, its
    /// reasoning models' refusals, rate-limit headers when limits are set.
    #[default]
    OpenAi,
    /// A local server as llama-cpp-python's (`python -m llama_cpp.server`)
    /// behaves: `response_format` `json_schema` is answered HTTP 500 with
    /// pydantic's "Input should be 'text' or 'json_object'";
    /// `max_completion_tokens` is ignored (only `max_tokens` limits a
    /// reply); `{"type": "json_object", "schema": …}` is accepted and its
    /// keys and types followed; a model name is taken as it comes.
    LlamaCppPython,
}

/// How batches behave. Read whenever a batch is looked at, so a change with
/// [`FakeServer::update`](crate::FakeServer::update) applies to running
/// batches: `per_request = Duration::ZERO` finishes the rest at once,
/// `expire_after = Some(Duration::ZERO)` expires them now.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Time in `validating` after creation.
    pub validating: Duration,
    /// Time per request line; lines run one after another.
    pub per_request: Duration,
    /// Time in `finalizing` after the last line, before `completed`.
    pub finalizing: Duration,
    /// Time in `cancelling` after a cancel, before `cancelled`.
    pub cancelling: Duration,
    /// A batch still in progress this long after its creation ends
    /// `expired`: finished lines in its output file, the rest in its error
    /// file with code `batch_expired`. Checked between lines: validation and
    /// finalizing are never cut short. `None`: never (the real 24 h window
    /// is only reported, as `expires_at`).
    pub expire_after: Option<Duration>,
    /// Per line: an error line (`response` null, `error.code`
    /// `server_error`), in the error file.
    pub line_error: f64,
    /// Per line: a `response` with status 500, in the error file.
    pub line_server_error: f64,
    /// Per line: a 200 whose content violates the request's schema, in the
    /// output file.
    pub invalid_content: f64,
    /// Upload limit per file (OpenAI: 200 MB).
    pub max_file_bytes: usize,
    /// Requests per input file (OpenAI: 50,000).
    pub max_file_lines: usize,
    /// Whether `POST /files` refuses a batch input file with a bad line (a
    /// 400 naming it). When off, the upload is stored and the batch made
    /// from it ends `failed`, its `errors` naming the line.
    pub validate_on_upload: bool,
    /// Per answered line: the same `custom_id` answered a second time, with
    /// content that violates the schema, just before or just after the
    /// valid line (a provider answering a request twice). Both are billed.
    pub duplicate_lines: f64,
    /// Per answered line: one more line, for a `custom_id` the input file
    /// did not hold, billed.
    pub stray_lines: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            validating: Duration::from_millis(10),
            per_request: Duration::ZERO,
            finalizing: Duration::from_millis(10),
            cancelling: Duration::from_millis(10),
            expire_after: None,
            line_error: 0.0,
            line_server_error: 0.0,
            invalid_content: 0.0,
            max_file_bytes: 200 * 1024 * 1024,
            max_file_lines: 50_000,
            validate_on_upload: true,
            duplicate_lines: 0.0,
            stray_lines: 0.0,
        }
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            latency: Latency::Fixed(Duration::ZERO),
            requests_per_minute: None,
            tokens_per_minute: None,
            faults: Faults::default(),
            hang: Duration::from_secs(120),
            seed: 1,
            workers: 2,
            batch: BatchConfig::default(),
            record_received: false,
            server: ServerKind::OpenAi,
        }
    }
}

/// A misbehaving provider's answer, for hardening tests. Scripted with
/// [`FakeServer::misbehave`](crate::FakeServer::misbehave): each request takes
/// the next one, and the fake behaves again once the script is used up.
#[derive(Debug, Clone, PartialEq)]
pub enum Hostile {
    /// A 429 whose `retry-after` header is this text, verbatim (`1e20`, `NaN`…).
    RetryAfter(String),
    /// A 503 whose `retry-after` header is this text, verbatim.
    UnavailableRetryAfter(String),
    /// A 307 redirect to this location.
    Redirect(String),
    /// A 200 whose body is this many bytes (a valid reply padded with spaces).
    HugeReply(usize),
    /// A 200 reply whose content is this text instead of the schema's JSON.
    Content(String),
}

/// How long answers take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    /// Uniform between the two (swapped if given the wrong way round).
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Log-normal around `median` with shape `sigma` (0.3–0.6 looks like a
    /// real model endpoint); draws are capped at ten minutes.
    LogNormal {
        median: Duration,
        sigma: f64,
    },
}

impl Latency {
    /// One draw. Degenerate parameters (negative or non-finite sigma) fall
    /// back to the median instead of failing a request.
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let drawn = match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
                rng.random_range(lo..=hi)
            }
            Latency::LogNormal { median, sigma } => {
                let mu = median.as_secs_f64().max(1e-9).ln();
                LogNormal::new(mu, sigma)
                    .ok()
                    .and_then(|d| Duration::try_from_secs_f64(d.sample(rng)).ok())
                    .unwrap_or(median)
            }
        };
        drawn.min(LATENCY_CAP)
    }
}

/// Probability of each injected failure kind, per admitted request. Kinds
/// are tried in field order, so when the probabilities add up to more than
/// 1 the earlier kinds win; negative or NaN probabilities count as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// 500 with an OpenAI-style error body.
    pub server_error: f64,
    /// 503 with an OpenAI-style error body.
    pub unavailable: f64,
    /// Status line and headers sent, then the connection breaks mid-body.
    pub drop_connection: f64,
    /// 200, `application/json`, with the body cut in half.
    pub truncated_json: f64,
    /// Content wrapped in a markdown ```` ```json ```` fence. Not a failure:
    /// real models do this, clients must cope, and it counts as a success.
    pub fenced_json: f64,
    /// `message.refusal` set, `content` null.
    pub refusal: f64,
    /// Hangs for [`FakeConfig::hang`], then answers 504.
    pub timeout: f64,
    /// 200 whose content is prose, not JSON.
    pub invalid_json_content: f64,
    /// 200 whose content is JSON that violates the requested schema.
    pub schema_violation: f64,
}

impl Faults {
    /// `total` probability spread evenly over the eight failure kinds
    /// (`fenced_json`, which is not a failure, stays 0).
    pub fn uniform(total: f64) -> Self {
        let each = total / 8.0;
        Faults {
            server_error: each,
            unavailable: each,
            drop_connection: each,
            truncated_json: each,
            fenced_json: 0.0,
            refusal: each,
            timeout: each,
            invalid_json_content: each,
            schema_violation: each,
        }
    }

    /// The fault a uniform draw in `[0, 1)` selects, if any.
    pub(crate) fn pick(&self, roll: f64) -> Option<Fault> {
        let kinds = [
            (self.server_error, Fault::ServerError),
            (self.unavailable, Fault::Unavailable),
            (self.drop_connection, Fault::DropConnection),
            (self.truncated_json, Fault::TruncatedJson),
            (self.fenced_json, Fault::FencedJson),
            (self.refusal, Fault::Refusal),
            (self.timeout, Fault::Timeout),
            (self.invalid_json_content, Fault::InvalidJsonContent),
            (self.schema_violation, Fault::SchemaViolation),
        ];
        let mut threshold = 0.0;
        kinds.into_iter().find_map(|(p, kind)| {
            // `f64::max` turns NaN into 0.
            threshold += p.max(0.0);
            (roll < threshold).then_some(kind)
        })
    }
}

/// One kind of injected misbehaviour, as drawn for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    ServerError,
    Unavailable,
    DropConnection,
    TruncatedJson,
    FencedJson,
    Refusal,
    Timeout,
    InvalidJsonContent,
    SchemaViolation,
}

impl Fault {
    /// Whether the client received something it should treat as a failure.
    pub(crate) fn is_failure(self) -> bool {
        self != Fault::FencedJson
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn uniform_faults_sum_to_the_total_and_never_fence() {
        let f = Faults::uniform(0.4);
        let sum = f.server_error
            + f.unavailable
            + f.drop_connection
            + f.truncated_json
            + f.refusal
            + f.timeout
            + f.invalid_json_content
            + f.schema_violation;
        assert!((sum - 0.4).abs() < 1e-12, "{sum}");
        assert_eq!(f.fenced_json, 0.0);
    }

    #[test]
    fn certain_faults_are_always_picked_and_earlier_kinds_win() {
        let f = Faults {
            refusal: 1.0,
            ..Default::default()
        };
        assert_eq!(f.pick(0.0), Some(Fault::Refusal));
        assert_eq!(f.pick(0.999_999), Some(Fault::Refusal));
        let both = Faults {
            server_error: 1.0,
            schema_violation: 1.0,
            ..Default::default()
        };
        assert_eq!(both.pick(0.5), Some(Fault::ServerError));
        assert_eq!(Faults::default().pick(0.0), None);
        let broken = Faults {
            server_error: f64::NAN,
            unavailable: -3.0,
            timeout: 0.5,
            ..Default::default()
        };
        assert_eq!(broken.pick(0.1), Some(Fault::Timeout));
        assert_eq!(broken.pick(0.6), None);
    }

    #[test]
    fn latency_draws_stay_in_range_and_survive_bad_parameters() {
        let mut rng = StdRng::seed_from_u64(7);
        let (a, b) = (Duration::from_millis(30), Duration::from_millis(10));
        for _ in 0..200 {
            let d = Latency::Uniform { min: a, max: b }.sample(&mut rng);
            assert!((b..=a).contains(&d), "{d:?}");
        }
        let median = Duration::from_millis(400);
        let bad = Latency::LogNormal {
            median,
            sigma: f64::NAN,
        };
        assert_eq!(bad.sample(&mut rng), median);
        let wild = Latency::LogNormal {
            median,
            sigma: 50.0,
        };
        for _ in 0..200 {
            assert!(wild.sample(&mut rng) <= LATENCY_CAP);
        }
        let draws: Vec<Duration> = (0..1001)
            .map(|_| Latency::LogNormal { median, sigma: 0.4 }.sample(&mut rng))
            .collect();
        let below = draws.iter().filter(|d| **d < median).count();
        assert!((400..600).contains(&below), "median is the median: {below}");
    }
}
