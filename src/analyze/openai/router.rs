//! Which endpoint takes each call, and when: plain code over the endpoints'
//! limits and health, no actix.
//!
//! - **Free capacity.** A call asks the endpoints in order of preference
//!   (lowest `priority` first; within a tier, the fewest calls in flight
//!   per unit of `weight`) whether their limits admit it now
//!   ([`Limits::check`], governor's limiters): the first that admits takes
//!   it. When none does, the call sleeps until the earliest instant one of
//!   them named, plus a little jitter ([`JITTER`], so that the calls
//!   waiting do not all wake at once), and asks again. N endpoints admit N
//!   paces at once, so they finish about N times sooner, and none is sent
//!   faster than its limits allow (no 429s of our making).
//! - **Tiers.** An endpoint of a higher `priority` gets a call only while
//!   every endpoint of the lower tiers is cooling down, out of service, or
//!   out of rate budget (its limits refuse the call now): the lower tiers
//!   run at their full rate, and the higher one takes the rest.
//! - **Cooldowns.** An endpoint failing [`COOL_AFTER`] times in a row (no
//!   answer, 5xx) while another endpoint is up is cooled down: no calls for
//!   its `Retry-After`, or for a wait that doubles with each cooldown in a
//!   row ([`COOLDOWN_FIRST`] up to [`COOLDOWN_MAX`]); then one call probes
//!   it, and an answer brings it back. A call that failed on an endpoint
//!   tries another one next. A change of health, or a limit adopted, wakes
//!   the waiting calls to choose again. An endpoint whose key, quota or URL is
//!   refused is out of service for the process; when none is left, the
//!   calls stop with that reason.
//! - **Outages.** `analyzer.outage_failures` failures in a row, across
//!   every endpoint and conversation, mean the provider is down: calls wait
//!   (their retries untouched), one call at a time probes it at growing
//!   intervals ([`OUTAGE_PROBE_FIRST`], doubling up to
//!   [`OUTAGE_PROBE_MAX`]), and the first answer ends it. After
//!   `analyzer.outage_timeout_seconds` the waiting calls stop, naming the
//!   provider's last answer. The state is published ([`Router::outage`])
//!   for progress, the CLI and webhooks.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Request;
use super::client::CallError;
use super::endpoint::Endpoint;
use crate::analyze::FatalKind;

/// Failures in a row that cool an endpoint down (when another is up).
pub const COOL_AFTER: u32 = 3;
/// The first cooldown without a `Retry-After`, and the longest.
pub const COOLDOWN_FIRST: Duration = Duration::from_secs(1);
pub const COOLDOWN_MAX: Duration = Duration::from_secs(60);
/// The most a call waiting for a rate limit sleeps past the instant it was
/// named (uniformly drawn): the calls waiting for one endpoint do not all
/// wake in the same instant. A late call loses nothing while the limit has
/// burst to spare (one second's worth).
pub const JITTER: Duration = Duration::from_millis(2);
/// The first wait between outage probes, and the longest.
pub const OUTAGE_PROBE_FIRST: Duration = Duration::from_secs(5);
pub const OUTAGE_PROBE_MAX: Duration = Duration::from_secs(300);

/// The provider is down: what the progress, the CLI and webhooks show.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProviderOutage {
    /// The last failure, short: `HTTP 503`, `timeout`, `connection failed`.
    pub reason: String,
    /// The provider's last answer (its error message), without the key.
    pub detail: String,
    pub since: DateTime<Utc>,
    /// When the next probe goes.
    pub next_try: DateTime<Utc>,
    /// When the uploads waiting on it stop as failed (resumable).
    pub gives_up_at: DateTime<Utc>,
}

impl ProviderOutage {
    /// `provider unavailable: HTTP 503 since 12:04, next try 12:06` (local time).
    pub fn headline(&self) -> String {
        let hm = |t: &DateTime<Utc>| t.with_timezone(&chrono::Local).format("%H:%M").to_string();
        format!(
            "provider unavailable: {} since {}, next try {}",
            self.reason,
            hm(&self.since),
            hm(&self.next_try)
        )
    }
}

/// How an endpoint is doing.
#[derive(Debug, Clone, PartialEq)]
enum Health {
    Up,
    /// No calls until `until`; then one probes it.
    Cooling {
        until: Instant,
    },
    /// Its probe is in flight.
    Probing,
    /// Out of service for the process: its key, quota or URL was refused.
    Out {
        kind: FatalKind,
        detail: String,
    },
}

#[derive(Debug, Clone)]
struct EndpointHealth {
    health: Health,
    /// Failures in a row on this endpoint.
    failures: u32,
    /// Cooldowns in a row (each one twice as long).
    strikes: u32,
    in_flight: u32,
}

/// An outage in force.
#[derive(Debug, Clone)]
struct Outage {
    since: Instant,
    shown: ProviderOutage,
    next_probe: Instant,
    interval: Duration,
    probing: bool,
}

struct State {
    endpoints: Vec<EndpointHealth>,
    /// Failures in a row across every endpoint and conversation.
    failures: u32,
    outage: Option<Outage>,
    /// The endpoint the next outage probe goes to.
    probe_turn: usize,
}

/// Why a call took no endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Cancelled,
    /// Nothing more can succeed: every endpoint is out of service, or the
    /// outage outlasted `analyzer.outage_timeout_seconds`.
    Fatal {
        kind: FatalKind,
        detail: String,
    },
}

/// What a call on a ticket got.
#[derive(Debug)]
pub enum Report<'e> {
    /// An answer (valid or not, refused or not): the endpoint is up.
    Answered,
    /// A 429: the endpoint is up but pauses for the wait given.
    RateLimited(Option<Duration>),
    /// No answer, or a 5xx, 408, 409.
    Unavailable(&'e CallError),
    /// The endpoint can do nothing more.
    Out { kind: FatalKind, detail: String },
}

/// Which probe a ticket is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    No,
    /// Of an endpoint whose cooldown is over.
    Endpoint,
    /// Of the provider, during an outage.
    Outage,
}

pub struct Router {
    endpoints: Vec<Endpoint>,
    state: Mutex<State>,
    /// Woken when health changes: waiting calls choose again.
    changed: Notify,
    outage_failures: u32,
    outage_timeout: Duration,
    outage_tx: watch::Sender<Option<ProviderOutage>>,
}

/// A call admitted on an endpoint, in flight until reported.
pub struct Ticket<'r> {
    router: &'r Router,
    index: usize,
    probe: Probe,
    reported: bool,
}

impl<'r> Ticket<'r> {
    pub fn endpoint(&self) -> &'r Endpoint {
        &self.router.endpoints[self.index]
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn probe(&self) -> Probe {
        self.probe
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.reported {
            return;
        }
        let mut state = self.router.state();
        state.endpoints[self.index].in_flight -= 1;
        // A probe abandoned (a cancel): the next call probes. (An ordinary
        // call abandoned changes nothing for the others: they are not woken.)
        match self.probe {
            Probe::No => return,
            Probe::Endpoint => {
                let h = &mut state.endpoints[self.index];
                if h.health == Health::Probing {
                    h.health = Health::Cooling {
                        until: Instant::now(),
                    };
                }
            }
            Probe::Outage => {
                if let Some(o) = &mut state.outage {
                    o.probing = false;
                }
            }
        }
        drop(state);
        self.router.changed.notify_waiters();
    }
}

enum Decision {
    /// Admitted on endpoint `index`.
    Go {
        index: usize,
        probe: Probe,
    },
    /// Nothing admits the call now: wait until then (jittered when it is a
    /// rate limit's instant), or a change of health or limits.
    Wait {
        until: Option<Instant>,
        jitter: bool,
    },
    Stop(Stop),
}

impl Router {
    pub fn new(endpoints: Vec<Endpoint>, outage_failures: u32, outage_timeout: Duration) -> Self {
        let health = endpoints
            .iter()
            .map(|_| EndpointHealth {
                health: Health::Up,
                failures: 0,
                strikes: 0,
                in_flight: 0,
            })
            .collect();
        Self {
            endpoints,
            state: Mutex::new(State {
                endpoints: health,
                failures: 0,
                outage: None,
                probe_turn: 0,
            }),
            changed: Notify::new(),
            outage_failures: outage_failures.max(1),
            outage_timeout,
            outage_tx: watch::Sender::new(None),
        }
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The outage in force (`None` while the provider answers), as it changes.
    pub fn outage(&self) -> watch::Receiver<Option<ProviderOutage>> {
        self.outage_tx.subscribe()
    }

    /// Each endpoint's state, for `/metrics`: `up`, `cooling`, `probing`, `out`.
    pub fn health(&self) -> Vec<&'static str> {
        self.state()
            .endpoints
            .iter()
            .map(|h| match h.health {
                Health::Up => "up",
                Health::Cooling { .. } => "cooling",
                Health::Probing => "probing",
                Health::Out { .. } => "out",
            })
            .collect()
    }

    /// Waits for an endpoint whose limits admit `request`, and takes it.
    /// `avoid` (bit i: endpoint i) are endpoints this call failed on: they
    /// are used only when nothing else is.
    pub async fn acquire(
        &self,
        request: &Request,
        avoid: u64,
        cancel: &CancellationToken,
    ) -> Result<Ticket<'_>, Stop> {
        loop {
            if cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            // Registered before looking, so no change is missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut adopted: Vec<_> = self
                .endpoints
                .iter()
                .map(|e| Box::pin(e.limits().changed().notified()))
                .collect();
            for n in &mut adopted {
                n.as_mut().enable();
            }
            let decision = {
                let mut state = self.state();
                self.decide(&mut state, request, avoid, Instant::now())
            };
            match decision {
                Decision::Stop(stop) => return Err(stop),
                Decision::Go { index, probe } => {
                    return Ok(Ticket {
                        router: self,
                        index,
                        probe,
                        reported: false,
                    });
                }
                Decision::Wait { until, jitter } => {
                    let sleep = async {
                        match until {
                            Some(t) if jitter => {
                                let late = governor::Jitter::up_to(JITTER) + Duration::ZERO;
                                tokio::time::sleep_until(t + late).await
                            }
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    };
                    let adopted = async {
                        if adopted.is_empty() {
                            std::future::pending::<()>().await;
                        }
                        futures_util::future::select_all(adopted).await;
                    };
                    tokio::select! {
                        _ = sleep => {}
                        _ = changed => {}
                        _ = adopted => {}
                        _ = cancel.cancelled() => return Err(Stop::Cancelled),
                    }
                }
            }
        }
    }

    fn decide(&self, state: &mut State, request: &Request, avoid: u64, now: Instant) -> Decision {
        if let Some(stop) = self.all_out(state) {
            return Decision::Stop(stop);
        }
        let timeout = self.outage_timeout;
        if let Some(outage) = &mut state.outage {
            let gives_up = outage.since + timeout;
            if now >= gives_up {
                return Decision::Stop(Stop::Fatal {
                    kind: FatalKind::ProviderUnavailable,
                    detail: gave_up(&outage.shown, timeout),
                });
            }
            if outage.probing || now < outage.next_probe {
                return Decision::Wait {
                    until: Some(outage.next_probe.min(gives_up)),
                    jitter: false,
                };
            }
            let n = state.endpoints.len();
            let index = (0..n)
                .map(|k| (state.probe_turn + k) % n)
                .find(|&i| !matches!(state.endpoints[i].health, Health::Out { .. }))
                .unwrap_or(0);
            let endpoint = &self.endpoints[index];
            if let Err(at) = endpoint.limits().check(endpoint.tokens(request)) {
                return Decision::Wait {
                    until: Some(at.min(gives_up)),
                    jitter: true,
                };
            }
            outage.probing = true;
            state.probe_turn = index + 1;
            return self.go(state, index, Probe::Outage);
        }
        let usable = |i: usize| !matches!(state.endpoints[i].health, Health::Out { .. });
        let n = self.endpoints.len();
        let preferred = |i: usize| usable(i) && avoid & (1 << (i % 64)) == 0;
        let allowed: Vec<usize> = if (0..n).any(preferred) {
            (0..n).filter(|&i| preferred(i)).collect()
        } else {
            (0..n).filter(|&i| usable(i)).collect()
        };
        // The earliest instant something may change: a cooldown's end, or
        // an instant a refusing limiter named.
        let mut earliest: Option<Instant> = None;
        let mut note = |at: Instant| earliest = Some(earliest.map_or(at, |e| e.min(at)));
        // A cooled-down endpoint whose time is up is probed first, when its
        // limits admit the call.
        for &i in &allowed {
            let Health::Cooling { until } = state.endpoints[i].health else {
                continue;
            };
            if until > now {
                note(until);
                continue;
            }
            let endpoint = &self.endpoints[i];
            match endpoint.limits().check(endpoint.tokens(request)) {
                Ok(()) => {
                    state.endpoints[i].health = Health::Probing;
                    return self.go(state, i, Probe::Endpoint);
                }
                Err(at) => note(at),
            }
        }
        // The endpoints up, in order of preference: tier, then load.
        let mut order: Vec<(u32, f64, usize)> = allowed
            .iter()
            .filter(|&&i| state.endpoints[i].health == Health::Up)
            .map(|&i| {
                let e = &self.endpoints[i];
                let load = f64::from(state.endpoints[i].in_flight) / f64::from(e.weight());
                (e.priority(), load, i)
            })
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (_, _, i) in order {
            let endpoint = &self.endpoints[i];
            match endpoint.limits().check(endpoint.tokens(request)) {
                Ok(()) => return self.go(state, i, Probe::No),
                Err(at) => note(at),
            }
        }
        Decision::Wait {
            until: earliest,
            jitter: true,
        }
    }

    /// The call admitted on endpoint `index`, in flight from now.
    fn go(&self, state: &mut State, index: usize, probe: Probe) -> Decision {
        state.endpoints[index].in_flight += 1;
        Decision::Go { index, probe }
    }

    /// When every endpoint is out of service: why (the last one's reason).
    fn all_out(&self, state: &State) -> Option<Stop> {
        let mut last = None;
        for h in &state.endpoints {
            match &h.health {
                Health::Out { kind, detail } => last = Some((*kind, detail.clone())),
                _ => return None,
            }
        }
        last.map(|(kind, detail)| Stop::Fatal { kind, detail })
    }

    /// Records how a call on `ticket` went. Whether an outage is in force
    /// now (a failure then is the outage's, not the conversation's).
    pub fn report(&self, mut ticket: Ticket<'_>, report: Report<'_>) -> bool {
        ticket.reported = true;
        let index = ticket.index;
        let endpoint = &self.endpoints[index];
        let now = Instant::now();
        let mut state = self.state();
        state.endpoints[index].in_flight -= 1;
        let mut changed = false;
        match report {
            Report::Answered | Report::RateLimited(_) => {
                if let Report::RateLimited(wait) = report {
                    endpoint.count(|c| c.rate_limited += 1);
                    endpoint.limits().pause_for(
                        wait.unwrap_or(super::client::backoff(1).max(Duration::from_secs(1))),
                    );
                }
                state.failures = 0;
                let h = &mut state.endpoints[index];
                h.failures = 0;
                if matches!(h.health, Health::Cooling { .. } | Health::Probing) {
                    tracing::info!(endpoint = endpoint.name(), "the endpoint answers again");
                    h.health = Health::Up;
                    h.strikes = 0;
                    changed = true;
                }
                if state.outage.take().is_some() {
                    tracing::warn!(
                        endpoint = endpoint.name(),
                        "the provider answers again: the outage is over"
                    );
                    self.outage_tx.send_replace(None);
                    changed = true;
                }
            }
            Report::Unavailable(error) => {
                endpoint.count(|c| c.unavailable += 1);
                state.failures += 1;
                state.endpoints[index].failures += 1;
                let others_up = state
                    .endpoints
                    .iter()
                    .enumerate()
                    .any(|(i, h)| i != index && h.health == Health::Up);
                let h = &state.endpoints[index];
                let cool = state.outage.is_none()
                    && (ticket.probe == Probe::Endpoint
                        || (h.health == Health::Up && h.failures >= COOL_AFTER && others_up));
                if cool {
                    self.cool(&mut state, index, error.retry_after(), now);
                    changed = true;
                }
                if let Some(outage) = &mut state.outage {
                    outage.shown.reason = error.short();
                    outage.shown.detail = said(endpoint, error);
                    if ticket.probe == Probe::Outage {
                        outage.probing = false;
                        outage.next_probe = now + outage.interval;
                        outage.shown.next_try = wall(outage.next_probe, now);
                        outage.interval = (outage.interval * 2).min(OUTAGE_PROBE_MAX);
                        tracing::warn!(
                            next_try = %outage.shown.next_try,
                            "the provider still does not answer"
                        );
                        self.outage_tx.send_replace(Some(outage.shown.clone()));
                        changed = true;
                    }
                } else if state.failures >= self.outage_failures {
                    self.begin_outage(&mut state, endpoint, error, now);
                    changed = true;
                }
            }
            Report::Out { kind, detail } => {
                tracing::error!(
                    endpoint = endpoint.name(),
                    ?kind,
                    %detail,
                    "the endpoint is out of service for this process"
                );
                state.endpoints[index].health = Health::Out { kind, detail };
                if let (Probe::Outage, Some(o)) = (ticket.probe, &mut state.outage) {
                    o.probing = false;
                }
                changed = true;
            }
        }
        let outage = state.outage.is_some();
        drop(state);
        if changed {
            self.changed.notify_waiters();
        }
        outage
    }

    fn cool(&self, state: &mut State, index: usize, retry_after: Option<Duration>, now: Instant) {
        let endpoint = &self.endpoints[index];
        let h = &mut state.endpoints[index];
        h.strikes += 1;
        let wait = match retry_after {
            Some(asked) => endpoint.limits().clamp_wait(asked),
            None => COOLDOWN_FIRST
                .saturating_mul(1 << (h.strikes - 1).min(16))
                .min(COOLDOWN_MAX),
        };
        h.health = Health::Cooling { until: now + wait };
        endpoint.count(|c| c.cooldowns += 1);
        tracing::warn!(
            endpoint = endpoint.name(),
            failures = h.failures,
            cooldown_ms = wait.as_millis() as u64,
            "the endpoint keeps failing: cooled down, its calls go elsewhere"
        );
    }

    fn begin_outage(
        &self,
        state: &mut State,
        endpoint: &Endpoint,
        error: &CallError,
        now: Instant,
    ) {
        let since = Utc::now();
        let next_probe = now + OUTAGE_PROBE_FIRST;
        let shown = ProviderOutage {
            reason: error.short(),
            detail: said(endpoint, error),
            since,
            next_try: wall(next_probe, now),
            gives_up_at: since
                + chrono::Duration::from_std(self.outage_timeout).unwrap_or(chrono::Duration::MAX),
        };
        tracing::error!(
            failures = state.failures,
            reason = %shown.reason,
            detail = %shown.detail,
            gives_up_at = %shown.gives_up_at,
            "the provider is unavailable: calls pause, one probe at a time asks whether it is back"
        );
        // Every endpoint is as good as another now: the probes decide.
        for h in &mut state.endpoints {
            if !matches!(h.health, Health::Out { .. }) {
                h.health = Health::Up;
                h.failures = 0;
            }
        }
        self.outage_tx.send_replace(Some(shown.clone()));
        state.outage = Some(Outage {
            since: now,
            shown,
            next_probe,
            interval: OUTAGE_PROBE_FIRST * 2,
            probing: false,
        });
    }
}

/// What the provider said with a failure (its error, for an answer), without the key.
fn said(endpoint: &Endpoint, error: &CallError) -> String {
    let text = match error.api_error() {
        Some(api) => api.to_string(),
        None => error.to_string(),
    };
    endpoint.connection().redact(text)
}

/// The wall-clock time of `at`.
fn wall(at: Instant, now: Instant) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(at.saturating_duration_since(now)).unwrap_or_default()
}

/// Why the calls waiting on an outage stop.
fn gave_up(outage: &ProviderOutage, timeout: Duration) -> String {
    format!(
        "provider unavailable since {} ({}: {}); no answer for {} s \
         (analyzer.outage_timeout_seconds): stopped, resume the upload once the provider is back",
        outage.since.format("%Y-%m-%d %H:%M:%S UTC"),
        outage.reason,
        outage.detail,
        timeout.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::openai::client::{ApiError, http_client};
    use crate::config::{EndpointSettings, OpenAiSettings, RateSetting};

    /// A router over endpoints `(name, priority, weight, requests per minute)`.
    fn router(endpoints: &[(&str, u32, u32, Option<u32>)], outage: (u32, u64)) -> Router {
        let settings = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            tokens_per_minute: RateSetting::PerMinute(100_000_000),
            endpoints: endpoints
                .iter()
                .map(|(name, priority, weight, rpm)| EndpointSettings {
                    name: name.to_string(),
                    priority: *priority,
                    weight: *weight,
                    requests_per_minute: Some(match rpm {
                        None => RateSetting::PerMinute(6_000_000),
                        Some(0) => RateSetting::Auto,
                        Some(n) => RateSetting::PerMinute(*n),
                    }),
                    ..EndpointSettings::default()
                })
                .collect(),
            ..OpenAiSettings::default()
        };
        let client = http_client(Duration::from_secs(1)).unwrap();
        let endpoints = settings
            .resolved_endpoints()
            .iter()
            .map(|e| Endpoint::new(e, &settings, &[], client.clone(), "k".to_string().into()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        Router::new(endpoints, outage.0, Duration::from_secs(outage.1))
    }

    fn request() -> Request {
        Request::new("C: no power".into(), 1)
    }

    fn unavailable() -> CallError {
        CallError::Status {
            status: 503,
            error: ApiError::parse(br#"{"error":{"message":"overloaded","type":"server_error"}}"#),
            retry_after: None,
        }
    }

    /// Takes a ticket at once (or panics), reporting nothing yet.
    async fn take(r: &Router) -> Ticket<'_> {
        let never = CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(3600), r.acquire(&request(), 0, &never))
            .await
            .expect("an endpoint in time")
            .expect("not stopped")
    }

    fn name(t: &Ticket<'_>) -> String {
        t.endpoint().name().to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn two_endpoints_drain_twice_as_fast_as_one() {
        // 600 a minute each: a burst of 10, then one every 100 ms.
        let r = router(&[("a", 0, 1, Some(600)), ("b", 0, 1, Some(600))], (20, 900));
        let start = Instant::now();
        let mut by = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..220 {
            let t = take(&r).await;
            *by.entry(name(&t)).or_default() += 1;
            r.report(t, Report::Answered);
        }
        // 220 calls: 20 in the two bursts, then 200 at 20 a second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(9_900) && took <= Duration::from_millis(10_100),
            "{took:?}"
        );
        assert_eq!(by["a"], 110);
        assert_eq!(by["b"], 110);
    }

    #[tokio::test(start_paused = true)]
    async fn a_higher_tier_takes_calls_only_while_the_lower_tier_refuses_them() {
        // Listed first, the higher tier is still asked last.
        let r = router(
            &[("dear", 1, 1, None), ("cheap", 0, 1, Some(60))],
            (20, 900),
        );
        let chosen = || async {
            let t = take(&r).await;
            let name = name(&t);
            r.report(t, Report::Answered);
            name
        };
        // 60 a minute: a burst of one, then one a second. Calls in between
        // go to the higher tier, at once.
        assert_eq!(chosen().await, "cheap");
        let start = Instant::now();
        assert_eq!(chosen().await, "dear");
        assert_eq!(chosen().await, "dear");
        assert_eq!(start.elapsed(), Duration::ZERO);
        // With budget again, the lower tier: it runs at its full rate.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(chosen().await, "cheap");
        assert_eq!(chosen().await, "dear");
        let mut cheap = 0;
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(100)).await;
            cheap += u32::from(chosen().await == "cheap");
        }
        assert_eq!(cheap, 10, "one a second over ten seconds");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_endpoint_cools_down_its_calls_go_elsewhere_and_a_probe_brings_it_back() {
        let r = router(&[("a", 0, 1, None), ("b", 0, 1, None)], (20, 900));
        let error = unavailable();
        // Both in flight, so the least loaded alternates: fail a's calls.
        let mut failed = 0;
        while failed < COOL_AFTER {
            let t = take(&r).await;
            if name(&t) == "a" {
                assert!(!r.report(t, Report::Unavailable(&error)));
                failed += 1;
            } else {
                r.report(t, Report::Answered);
            }
        }
        assert_eq!(r.health(), ["cooling", "up"]);
        assert_eq!(r.endpoints()[0].counters().cooldowns, 1);
        // While it cools, everything goes to b.
        for _ in 0..10 {
            let t = take(&r).await;
            assert_eq!(name(&t), "b");
            r.report(t, Report::Answered);
        }
        // After the first cooldown (a second), one call probes it...
        tokio::time::sleep(COOLDOWN_FIRST).await;
        let probe = take(&r).await;
        assert_eq!(
            (name(&probe), probe.probe()),
            ("a".to_string(), Probe::Endpoint)
        );
        assert_eq!(r.health(), ["probing", "up"]);
        // ...a failed probe cools it down twice as long...
        r.report(probe, Report::Unavailable(&error));
        tokio::time::sleep(COOLDOWN_FIRST).await;
        assert_eq!(name(&take(&r).await), "b", "still cooling");
        tokio::time::sleep(COOLDOWN_FIRST).await;
        let probe = take(&r).await;
        assert_eq!(probe.probe(), Probe::Endpoint);
        // ...and an answer brings it back.
        r.report(probe, Report::Answered);
        assert_eq!(r.health(), ["up", "up"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_failed_somewhere_tries_elsewhere_first() {
        let r = router(&[("a", 0, 1, None), ("b", 0, 1, None)], (20, 900));
        let never = CancellationToken::new();
        for _ in 0..4 {
            let t = r.acquire(&request(), 0b01, &never).await.unwrap();
            assert_eq!(name(&t), "b");
            r.report(t, Report::Answered);
        }
        // Avoiding every endpoint is avoiding none.
        let t = r.acquire(&request(), 0b11, &never).await.unwrap();
        r.report(t, Report::Answered);
    }

    #[tokio::test(start_paused = true)]
    async fn weights_share_unlimited_endpoints() {
        let r = router(&[("small", 0, 1, None), ("big", 0, 3, None)], (20, 900));
        // Calls held in flight spread 1 : 3.
        let mut held = Vec::new();
        for _ in 0..40 {
            held.push(take(&r).await);
        }
        let big = held.iter().filter(|t| name(t) == "big").count();
        assert_eq!(big, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_pauses_every_call_probes_one_at_a_time_and_ends_with_an_answer() {
        let r = std::sync::Arc::new(router(&[("a", 0, 1, None)], (5, 900)));
        let error = unavailable();
        let mut outage = r.outage();
        for i in 0..5 {
            let t = take(&r).await;
            let in_force = r.report(t, Report::Unavailable(&error));
            assert_eq!(in_force, i == 4, "after the fifth failure in a row");
        }
        let shown = outage.borrow_and_update().clone().expect("published");
        assert_eq!(shown.reason, "HTTP 503");
        assert_eq!(shown.detail, "server_error: overloaded");
        assert!(
            shown
                .headline()
                .starts_with("provider unavailable: HTTP 503 since ")
        );
        // Calls wait; after the first interval, one of them probes.
        let start = Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move {
                    let t = r
                        .acquire(&request(), 0, &CancellationToken::new())
                        .await
                        .unwrap();
                    let probe = t.probe();
                    r.report(t, Report::Answered);
                    (probe, Instant::now())
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let probe = take(&r).await;
        assert_eq!(probe.probe(), Probe::Outage);
        assert_eq!(start.elapsed(), OUTAGE_PROBE_FIRST);
        // It fails: the next probe waits twice as long; nobody else went.
        r.report(probe, Report::Unavailable(&error));
        assert!(waiters.iter().all(|w| !w.is_finished()));
        let probe = take(&r).await;
        assert_eq!(probe.probe(), Probe::Outage);
        assert_eq!(start.elapsed(), OUTAGE_PROBE_FIRST * 3);
        // It is answered: the outage is over and every waiting call goes.
        r.report(probe, Report::Answered);
        for w in waiters {
            let (probe, at) = w.await.unwrap();
            assert_eq!(probe, Probe::No);
            assert_eq!(at - start, OUTAGE_PROBE_FIRST * 3);
        }
        assert_eq!(*outage.borrow_and_update(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_past_its_timeout_stops_the_calls_with_the_providers_answer() {
        let error = unavailable();
        let never = CancellationToken::new();
        for timeout in [0, 60] {
            let r = router(&[("a", 0, 1, None), ("b", 0, 1, None)], (4, timeout));
            for _ in 0..4 {
                let t = take(&r).await;
                r.report(t, Report::Unavailable(&error));
            }
            let start = Instant::now();
            let mut stopped = None;
            while stopped.is_none() {
                match r.acquire(&request(), 0, &never).await {
                    Ok(probe) => {
                        r.report(probe, Report::Unavailable(&error));
                    }
                    Err(stop) => stopped = Some(stop),
                }
            }
            assert_eq!(start.elapsed(), Duration::from_secs(timeout));
            let Some(Stop::Fatal { kind, detail }) = stopped else {
                panic!("{stopped:?}");
            };
            assert_eq!(kind, FatalKind::ProviderUnavailable);
            assert!(
                detail.contains("(HTTP 503: server_error: overloaded)"),
                "{detail}"
            );
            assert!(
                detail.contains("analyzer.outage_timeout_seconds"),
                "{detail}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_out_of_service_leave_the_others_then_stop_the_calls() {
        let r = router(&[("a", 0, 1, None), ("b", 1, 1, None)], (20, 900));
        let t = take(&r).await;
        assert_eq!(name(&t), "a");
        r.report(
            t,
            Report::Out {
                kind: FatalKind::KeyRejected,
                detail: "endpoint a: the API key was rejected (401)".into(),
            },
        );
        // The higher tier now takes everything.
        let t = take(&r).await;
        assert_eq!(name(&t), "b");
        r.report(
            t,
            Report::Out {
                kind: FatalKind::QuotaExhausted,
                detail: "endpoint b: quota".into(),
            },
        );
        let stop = r
            .acquire(&request(), 0, &CancellationToken::new())
            .await
            .err();
        assert_eq!(
            stop,
            Some(Stop::Fatal {
                kind: FatalKind::QuotaExhausted,
                detail: "endpoint b: quota".into()
            })
        );
    }

    /// Many calls waiting while the endpoint's limit is adopted from its
    /// headers: none goes faster than the adopted limit allows.
    #[tokio::test(start_paused = true)]
    async fn calls_waiting_when_a_limit_is_adopted_keep_to_it() {
        let r = std::sync::Arc::new(router(&[("a", 0, 1, Some(0))], (20, 900)));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (r, done) = (r.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let t = r
                        .acquire(&request(), 0, &CancellationToken::new())
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let mut h = reqwest::header::HeaderMap::new();
                    h.insert("x-ratelimit-limit-requests", "1500".parse().unwrap());
                    t.endpoint().limits().observe(&h);
                    r.report(t, Report::Answered);
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(12_700)).await;
        // Under "auto": 8 at the starting 500 a minute, then the adopted
        // 1,500 a minute: a burst of 25 and one every 40 ms.
        let most = 8 + 25 + (12_500 / 40);
        let n = done.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n <= most, "{n} calls in {:?}", start.elapsed());
        assert!(n >= most - 10, "{n} calls: the limit is used");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_the_earliest_admission_and_a_cancelled_one_takes_nothing() {
        let r = router(&[("a", 0, 1, Some(60)), ("b", 0, 1, Some(30))], (20, 900));
        // A burst of one each; then a admits one a second, b one every two.
        for _ in 0..2 {
            let t = take(&r).await;
            r.report(t, Report::Answered);
        }
        // The next admission is a second away; a call cancelled while it
        // waits for it takes nothing.
        let cancel = CancellationToken::new();
        let req = request();
        let waiting = r.acquire(&req, 0, &cancel);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut waiting)
                .await
                .is_err()
        );
        cancel.cancel();
        assert_eq!(waiting.await.err(), Some(Stop::Cancelled));
        let start = Instant::now();
        let t = take(&r).await;
        let waited = start.elapsed();
        assert_eq!(name(&t), "a");
        assert!(
            waited >= Duration::from_millis(990) && waited <= Duration::from_millis(990) + JITTER,
            "the earliest admission (a's, not b's a second later), jittered: {waited:?}"
        );
    }
}
