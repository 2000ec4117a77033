//! What differs between models: which request parameters they accept and
//! what they cost.
//!
//! OpenAI's reasoning models (the o-series and the gpt-5 family) reject
//! `max_tokens` and any `temperature` but 1, take a `reasoning_effort`, and
//! spend hidden reasoning tokens out of `max_completion_tokens`. Other
//! models take either parameter on OpenAI; servers that implement only the
//! older API (many llama.cpp and Ollama builds) know only `max_tokens`.

use std::collections::BTreeMap;

use crate::analyze::LlmUsage;
pub use crate::config::ModelPrice;

/// The Batch API bills every token at half the synchronous price.
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

impl ModelPrice {
    const fn new(input: f64, cached: f64, output: f64) -> Self {
        Self {
            input_per_million: input,
            output_per_million: output,
            cached_input_per_million: Some(cached),
        }
    }

    /// What `usage` costs: cached input at the cached price, reasoning
    /// tokens (part of the completion) at the output price, everything
    /// halved for the Batch API.
    pub fn cost(&self, usage: &LlmUsage, batch: bool) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens) as f64;
        let fresh = usage.prompt_tokens as f64 - cached;
        let cached_price = self
            .cached_input_per_million
            .unwrap_or(self.input_per_million);
        let usd = (fresh * self.input_per_million
            + cached * cached_price
            + usage.completion_tokens as f64 * self.output_per_million)
            / 1e6;
        if batch { usd * BATCH_PRICE_FACTOR } else { usd }
    }
}

/// OpenAI's published standard prices (USD per million tokens: input,
/// cached input, output) for the models PowerPulse is meant for. A dated
/// snapshot (`gpt-4o-2024-08-06`) is priced as its family; `[analyzer.openai.
/// prices.NAME]` in the config adds models or overrides these.
const PRICES: &[(&str, ModelPrice)] = &[
    ("gpt-4o", ModelPrice::new(2.5, 1.25, 10.0)),
    ("gpt-4o-mini", ModelPrice::new(0.15, 0.075, 0.6)),
    ("gpt-4.1", ModelPrice::new(2.0, 0.5, 8.0)),
    ("gpt-4.1-mini", ModelPrice::new(0.4, 0.1, 1.6)),
    ("gpt-4.1-nano", ModelPrice::new(0.1, 0.025, 0.4)),
    ("gpt-5", ModelPrice::new(1.25, 0.125, 10.0)),
    ("gpt-5-mini", ModelPrice::new(0.25, 0.025, 2.0)),
    ("gpt-5-nano", ModelPrice::new(0.05, 0.005, 0.4)),
    ("gpt-5.1", ModelPrice::new(1.25, 0.125, 10.0)),
    ("o3", ModelPrice::new(2.0, 0.5, 8.0)),
    ("o3-mini", ModelPrice::new(1.1, 0.55, 4.4)),
    ("o4-mini", ModelPrice::new(1.1, 0.275, 4.4)),
];

/// The price of `model`: the configured entry of that exact name, else the
/// longest built-in or configured name it starts with (`gpt-4o-mini-2024-07-18`
/// → `gpt-4o-mini`, never `gpt-4o`). `None` for a model nobody priced (a
/// local server's): its cost is reported as 0.
pub fn price(model: &str, configured: &BTreeMap<String, ModelPrice>) -> Option<ModelPrice> {
    if let Some(p) = configured.get(model) {
        return Some(*p);
    }
    let builtin = PRICES.iter().map(|(name, p)| (*name, p));
    let custom = configured.iter().map(|(name, p)| (name.as_str(), p));
    builtin
        .chain(custom)
        .filter(|(name, _)| is_family(model, name))
        .max_by_key(|(name, _)| name.len())
        .map(|(_, p)| *p)
}

/// `model` is `family` or a dated or suffixed version of it (`family-…`).
fn is_family(model: &str, family: &str) -> bool {
    model == family
        || model
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// A reasoning model: o1, o3, o4-mini, the gpt-5 family (not its
/// `-chat` variants, which are ordinary chat models).
pub fn is_reasoning(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    // Azure deployments and proxies may prefix a path or provider.
    let m = m.rsplit('/').next().unwrap_or(&m);
    let o_series = ["o1", "o3", "o4"].iter().any(|f| is_family(m, f));
    let gpt5 = m.starts_with("gpt-5") && !m.contains("chat");
    o_series || gpt5
}

/// The reasoning effort to ask for when the config says `auto`: the least
/// each family accepts (`minimal` exists only for gpt-5).
pub fn default_effort(model: &str) -> &'static str {
    if model.to_ascii_lowercase().contains("gpt-5") {
        "minimal"
    } else {
        "low"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_snapshots_are_priced_as_their_family() {
        let none = BTreeMap::new();
        assert_eq!(price("gpt-4o", &none).unwrap().input_per_million, 2.5);
        assert_eq!(
            price("gpt-4o-2024-08-06", &none).unwrap().input_per_million,
            2.5
        );
        assert_eq!(
            price("gpt-4o-mini-2024-07-18", &none)
                .unwrap()
                .input_per_million,
            0.15
        );
        assert_eq!(price("gpt-5-nano", &none).unwrap().output_per_million, 0.4);
        assert!(price("llama3.1:8b", &none).is_none());
        assert!(price("gpt-4omni", &none).is_none());
    }

    #[test]
    fn the_config_adds_and_overrides() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "gpt-4o".to_string(),
            ModelPrice {
                input_per_million: 1.0,
                output_per_million: 2.0,
                cached_input_per_million: None,
            },
        );
        configured.insert(
            "qwen2.5".to_string(),
            ModelPrice {
                input_per_million: 0.01,
                output_per_million: 0.02,
                cached_input_per_million: None,
            },
        );
        assert_eq!(price("gpt-4o", &configured).unwrap().input_per_million, 1.0);
        assert_eq!(
            price("qwen2.5-7b", &configured).unwrap().input_per_million,
            0.01
        );
    }

    #[test]
    fn cached_and_reasoning_tokens_are_priced_and_batch_is_half() {
        let p = ModelPrice::new(2.0, 0.5, 8.0);
        let usage = LlmUsage {
            prompt_tokens: 1_000_000,
            cached_tokens: 400_000,
            completion_tokens: 100_000,
            reasoning_tokens: 60_000,
            ..LlmUsage::default()
        };
        // 600k fresh × 2 + 400k cached × 0.5 + 100k (reasoning included) × 8.
        let sync = p.cost(&usage, false);
        assert!((sync - (1.2 + 0.2 + 0.8)).abs() < 1e-9, "{sync}");
        assert!((p.cost(&usage, true) - sync / 2.0).abs() < 1e-9);
        let no_cached_price = ModelPrice {
            cached_input_per_million: None,
            ..p
        };
        assert!((no_cached_price.cost(&usage, false) - (2.0 + 0.8)).abs() < 1e-9);
    }

    #[test]
    fn reasoning_models_are_recognised() {
        for m in [
            "o1",
            "o3-mini",
            "o4-mini-2025-04-16",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5.1",
            "azure/gpt-5-nano",
        ] {
            assert!(is_reasoning(m), "{m}");
        }
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-chat-latest",
            "llama3",
            "o1x",
        ] {
            assert!(!is_reasoning(m), "{m}");
        }
        assert_eq!(default_effort("gpt-5-mini"), "minimal");
        assert_eq!(default_effort("o4-mini"), "low");
    }
}
