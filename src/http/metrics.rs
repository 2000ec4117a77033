//! Prometheus text exposition (format 0.0.4): upload and conversation
//! counts, LLM usage, HTTP request latency by route, requests refused by the
//! guards and caps, and the load limits with how much of them is in use.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::limits::Limits;
use crate::analyze::LlmUsage;
use crate::analyze::OpenAiAnalyzer;
use crate::model::Stage;
use crate::progress::ProgressSnapshot;
use crate::store::UploadRecord;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Statuses that mean "refused": no token, cross-site, too slow, wrong host, over a cap.
const REFUSED: [u16; 5] = [401, 403, 408, 421, 429];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// HTTP request latencies by (method, route pattern, status). Every label
/// comes from a closed set — the methods of [`method_label`], the route
/// patterns and `other`, the statuses the server answers with — so the
/// number of series is bounded whatever clients send.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), Histogram>>,
}

/// A request's method as a metrics label: the standard methods by name,
/// anything else (`BREW`, a random token) as `other`.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

impl HttpMetrics {
    pub fn observe(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let h = map.entry((method, route.to_string(), status)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }
}

/// Renders every metric. `live` holds uploads running in this process
/// (their stored records are not final yet).
pub fn render(
    records: &[UploadRecord],
    live: &[ProgressSnapshot],
    http: &HttpMetrics,
    limits: &Limits,
) -> String {
    let mut out = String::new();
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for s in [
        Stage::Parsing,
        Stage::Analyzing,
        Stage::Saving,
        Stage::Completed,
        Stage::Failed,
        Stage::Cancelled,
    ] {
        by_status.insert(s.as_str(), 0);
    }
    let (mut analyzed, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    let mut llm = LlmUsage::default();
    for r in records {
        let live_one = live
            .iter()
            .find(|l| l.upload_id == r.id && !l.stage.is_final());
        let status = live_one.map_or(r.status, |l| l.stage);
        *by_status.entry(status.as_str()).or_default() += 1;
        match live_one {
            Some(l) => {
                analyzed += l.analyzed;
                failed += l.failed;
                skipped += l.skipped;
                llm.add(&l.llm);
            }
            None => {
                analyzed += r.counts.analyzed;
                failed += r.counts.failed;
                skipped += r.counts.skipped_already_processed;
                llm.add(&r.llm);
            }
        }
    }

    let _ = writeln!(
        out,
        "# HELP powerpulse_uploads Uploads in the database, by status."
    );
    let _ = writeln!(out, "# TYPE powerpulse_uploads gauge");
    for (status, n) in &by_status {
        let _ = writeln!(out, "powerpulse_uploads{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP powerpulse_conversations_total Conversations with an outcome, by outcome."
    );
    let _ = writeln!(out, "# TYPE powerpulse_conversations_total counter");
    for (outcome, n) in [
        ("analyzed", analyzed),
        ("failed", failed),
        ("skipped_already_processed", skipped),
    ] {
        let _ = writeln!(
            out,
            "powerpulse_conversations_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    for (name, help, value) in [
        (
            "powerpulse_llm_requests_total",
            "LLM HTTP requests sent.",
            llm.requests,
        ),
        (
            "powerpulse_llm_rate_limited_total",
            "LLM requests answered 429.",
            llm.rate_limited,
        ),
        (
            "powerpulse_llm_retries_total",
            "LLM requests that were retries.",
            llm.retries,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP powerpulse_llm_tokens_total LLM tokens billed, by kind."
    );
    let _ = writeln!(out, "# TYPE powerpulse_llm_tokens_total counter");
    let _ = writeln!(
        out,
        "powerpulse_llm_tokens_total{{kind=\"prompt\"}} {}",
        llm.prompt_tokens
    );
    let _ = writeln!(
        out,
        "powerpulse_llm_tokens_total{{kind=\"completion\"}} {}",
        llm.completion_tokens
    );
    // Parts of the two above: prompt tokens served from the provider's
    // cache, completion tokens a reasoning model spent thinking.
    let _ = writeln!(
        out,
        "powerpulse_llm_tokens_total{{kind=\"cached_prompt\"}} {}",
        llm.cached_tokens
    );
    let _ = writeln!(
        out,
        "powerpulse_llm_tokens_total{{kind=\"reasoning\"}} {}",
        llm.reasoning_tokens
    );
    let _ = writeln!(
        out,
        "# HELP powerpulse_llm_cost_usd_total Estimated LLM cost in US dollars."
    );
    let _ = writeln!(out, "# TYPE powerpulse_llm_cost_usd_total counter");
    let _ = writeln!(out, "powerpulse_llm_cost_usd_total {}", llm.cost_usd);

    let name = "powerpulse_http_request_duration_seconds";
    let _ = writeln!(out, "# HELP {name} HTTP request latency by route.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let map = http.requests.lock().unwrap_or_else(PoisonError::into_inner);
    for ((method, route, status), h) in map.iter() {
        let labels = format!(
            "method=\"{method}\",route=\"{}\",status=\"{status}\"",
            route.replace('"', "'")
        );
        for (bound, count) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
    let name = "powerpulse_http_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests refused: 401 no token, 403 cross-site, 408 too slow, \
         421 unknown Host, 429 over a cap."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for status in REFUSED {
        let n: u64 = map
            .iter()
            .filter(|((_, _, s), _)| *s == status)
            .map(|(_, h)| h.count)
            .sum();
        let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
    }
    drop(map);
    limits.render(&mut out);
    out
}

/// Each LLM endpoint since the process started: requests, failures to
/// answer, 429s, cooldowns, tokens and cost, and its state (`up`,
/// `cooling`, `probing`, `out`), plus whether the provider is in an outage.
pub fn render_endpoints(llm: &OpenAiAnalyzer, out: &mut String) {
    let endpoints = llm.endpoints();
    let health = llm.router().health();
    let label = |name: &str| name.replace('\\', "\\\\").replace('"', "\\\"");
    let counters: Vec<_> = endpoints.iter().map(|e| e.counters()).collect();
    type Of = fn(&crate::analyze::openai::endpoint::EndpointCounters) -> f64;
    let series: [(&str, &str, &str, Of); 8] = [
        (
            "powerpulse_llm_endpoint_requests_total",
            "counter",
            "Requests sent to each LLM endpoint.",
            |c| c.requests as f64,
        ),
        (
            "powerpulse_llm_endpoint_unavailable_total",
            "counter",
            "Requests an LLM endpoint did not answer (timeouts, refused connections, 5xx).",
            |c| c.unavailable as f64,
        ),
        (
            "powerpulse_llm_endpoint_rate_limited_total",
            "counter",
            "429 answers of each LLM endpoint.",
            |c| c.rate_limited as f64,
        ),
        (
            "powerpulse_llm_endpoint_cooldowns_total",
            "counter",
            "Times an LLM endpoint was cooled down after failing.",
            |c| c.cooldowns as f64,
        ),
        (
            "powerpulse_llm_endpoint_prompt_tokens_total",
            "counter",
            "Prompt tokens billed by each LLM endpoint.",
            |c| c.usage.prompt_tokens as f64,
        ),
        (
            "powerpulse_llm_endpoint_completion_tokens_total",
            "counter",
            "Completion tokens billed by each LLM endpoint.",
            |c| c.usage.completion_tokens as f64,
        ),
        (
            "powerpulse_llm_endpoint_cached_tokens_total",
            "counter",
            "Prompt tokens each LLM endpoint served from its cache.",
            |c| c.usage.cached_tokens as f64,
        ),
        (
            "powerpulse_llm_endpoint_cost_usd_total",
            "counter",
            "Estimated cost of each LLM endpoint's answers, US dollars.",
            |c| c.usage.cost_usd,
        ),
    ];
    for (name, kind, help, of) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (e, c) in endpoints.iter().zip(&counters) {
            let _ = writeln!(out, "{name}{{endpoint=\"{}\"}} {}", label(e.name()), of(c));
        }
    }
    let name = "powerpulse_llm_endpoint_up";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while an LLM endpoint takes calls, by state (up, cooling, probing, out)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (e, state) in endpoints.iter().zip(&health) {
        for s in ["up", "cooling", "probing", "out"] {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\",state=\"{s}\"}} {}",
                label(e.name()),
                u8::from(*state == s)
            );
        }
    }
    let name = "powerpulse_llm_provider_unavailable";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while the LLM provider is in an outage (every endpoint failing; uploads wait)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(
        out,
        "{name} {}",
        u8::from(llm.router().outage().borrow().is_some())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = HttpMetrics::default();
        m.observe("GET", "/healthz", 200, Duration::from_millis(3));
        m.observe("GET", "/healthz", 200, Duration::from_millis(300));
        m.observe("POST", "/api/upload", 403, Duration::from_millis(1));
        m.observe(
            "DELETE",
            "/api/uploads/{upload_id}",
            403,
            Duration::from_millis(1),
        );
        let limits = Limits::new(&crate::config::ServerSettings::default());
        let text = render(&[], &[], &m, &limits);
        assert!(text.contains(
            "powerpulse_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",status=\"200\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(text.contains("le=\"1\"} 2"), "{text}");
        assert!(text.contains("powerpulse_uploads{status=\"completed\"} 0"));
        assert!(
            text.contains("powerpulse_http_refused_total{status=\"403\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("powerpulse_http_refused_total{status=\"421\"} 0"),
            "{text}"
        );
        assert!(text.contains("powerpulse_http_limit{limit=\"max_sse_subscribers\"} 64"));
    }

    #[test]
    fn made_up_methods_are_one_label() {
        use actix_web::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for made_up in ["BREW", "XYZZY", "get", "PROPFIND"] {
            let m = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{made_up}");
        }
    }
}
