//! A fake OpenAI-compatible chat-completions server, owned by PowerPulse, for
//! tests and benchmarks on 127.0.0.1. It behaves like the real service where
//! PowerPulse cares:
//!
//! - **Rate limits** per minute on requests and tokens, enforced continuously
//!   by token buckets refilling at limit/60 per second. A bucket holds six
//!   seconds' worth (OpenAI documents per-minute limits but enforces them over
//!   shorter windows; a six-second window punishes clients that burst a
//!   minute's quota at once, as the real service does). Over the limit: 429
//!   with `retry-after-ms`, `retry-after` and an OpenAI-style error body; a
//!   429 consumes no quota. Every response carries `x-ratelimit-limit-*`,
//!   `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` (time until the
//!   bucket is full again, Go-style: `1.5s`, `6m0s`, `12ms`).
//! - **Token counting** as OpenAI's limiter does: ⌈characters / 4⌉ of the
//!   messages plus `max_tokens` ([`rate_limit_tokens`]).
//! - **Replies fitted to the request's JSON schema**, deterministic per
//!   conversation, lightly content-aware.
//! - **Latency** (fixed, uniform or log-normal) and **faults** (500, 503,
//!   dropped connections, truncated bodies, fenced JSON, refusals, hangs,
//!   non-JSON content, schema violations), each with its own probability.
//! - **Stats** (`GET /stats` or [`FakeServer::stats`]): requests, 429s,
//!   tokens, conversations answered more than once, requests that ignored a
//!   retry-after, peak concurrency.

mod server;

pub use server::{FakeConfig, FakeServer, Faults, Latency, Stats};

/// Rate-limit tokens of a chat-completions request: ⌈characters of every
/// message's content / 4⌉ + `max_tokens` (or `max_completion_tokens`, 16 when
/// neither is given).
pub fn rate_limit_tokens(body: &serde_json::Value) -> u64 {
    let chars: usize = body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["content"].as_str())
                .map(|c| c.chars().count())
                .sum()
        })
        .unwrap_or(0);
    let max = body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_completion_tokens"].as_u64())
        .unwrap_or(16);
    (chars as u64).div_ceil(4) + max
}

/// Formats a duration the way OpenAI's headers do: `12ms`, `1s`, `1.5s`, `6m0s`.
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{:.3}", secs);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return format!("{s}s");
    }
    let minutes = (secs / 60.0).floor();
    let rest = secs - minutes * 60.0;
    if minutes >= 60.0 {
        let hours = (minutes / 60.0).floor();
        return format!(
            "{}h{}m{:.0}s",
            hours as u64,
            (minutes - hours * 60.0) as u64,
            rest
        );
    }
    format!("{}m{:.0}s", minutes as u64, rest)
}

/// Checks `value` against the JSON Schema subset the fake generates from
/// (object/properties/required/additionalProperties, enum, string, number,
/// integer, boolean, null, type lists, arrays).
pub fn validate(schema: &serde_json::Value, value: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{value} is not one of {options:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let matches = |t: &str| match (t, value) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) | ("null", Value::Null) => true,
        ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !types.iter().any(|t| matches(t)) {
        return Err(format!("{value} is not of type {types:?}"));
    }
    match value {
        Value::Object(map) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                let key = r.as_str().unwrap_or_default();
                if !map.contains_key(key) {
                    return Err(format!("missing required property {key}"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => validate(s, v).map_err(|e| format!("{k}: {e}"))?,
                    None if schema["additionalProperties"] == Value::Bool(false) => {
                        return Err(format!("unexpected property {k}"));
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                validate(&schema["items"], item)?;
            }
        }
        Value::String(s) => {
            if let Some(max) = schema["maxLength"].as_u64()
                && s.chars().count() as u64 > max
            {
                return Err(format!("string longer than {max}"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if schema["minimum"].as_f64().is_some_and(|m| x < m)
                || schema["maximum"].as_f64().is_some_and(|m| x > m)
            {
                return Err(format!("{x} out of range"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
