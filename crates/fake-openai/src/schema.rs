//! Replies fitted to the request's JSON schema, and a validator for the same
//! subset: `type` (a name or a list of names) object with `properties`,
//! `required` and `additionalProperties`; string with `enum`, `minLength`,
//! `maxLength`; number and integer with `minimum`, `maximum`; boolean; null;
//! array with `items`, `minItems`, `maxItems`; `anyOf`.
//!
//! Generation is deterministic for a given random generator and lightly
//! content-aware, so a benchmark's results look like a model's: a
//! `sentiment.label` follows the customer's words, a score agrees with its
//! label, a satisfaction label agrees with its score.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

/// Checks `value` against `schema` (the subset in the module docs; other
/// keywords are ignored). The error names the offending path.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "$")
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    if let Some(options) = schema["anyOf"].as_array()
        && !options.iter().any(|s| check(s, value, path).is_ok())
    {
        return Err(format!("{path}: {value} matches no anyOf branch"));
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{path}: {value} is not one of {options:?}"));
    }
    let types = types(schema);
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        return Err(format!("{path}: {value} is not of type {types:?}"));
    }
    match value {
        Value::Object(map) => {
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if !map.contains_key(key) {
                    return Err(format!("{path}: missing required property {key:?}"));
                }
            }
            let properties = schema["properties"].as_object();
            for (k, v) in map {
                let inner = format!("{path}.{k}");
                match properties.and_then(|p| p.get(k)) {
                    Some(s) => check(s, v, &inner)?,
                    None if schema["additionalProperties"] == Value::Bool(false) => {
                        return Err(format!("{path}: unexpected property {k:?}"));
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if schema["minItems"].as_u64().is_some_and(|min| n < min)
                || schema["maxItems"].as_u64().is_some_and(|max| n > max)
            {
                return Err(format!("{path}: {n} items is out of bounds"));
            }
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"))?;
            }
        }
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if schema["maxLength"].as_u64().is_some_and(|max| n > max)
                || schema["minLength"].as_u64().is_some_and(|min| n < min)
            {
                return Err(format!(
                    "{path}: a string of {n} characters is out of bounds"
                ));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if schema["minimum"].as_f64().is_some_and(|m| x < m)
                || schema["maximum"].as_f64().is_some_and(|m| x > m)
            {
                return Err(format!("{path}: {x} is out of range"));
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
    Ok(())
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn has_type(value: &Value, t: &str) -> bool {
    match (t, value) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("number", Value::Number(_))
        | ("boolean", Value::Bool(_))
        | ("null", Value::Null) => true,
        // JSON Schema counts 3.0 as an integer.
        ("integer", Value::Number(n)) => n.as_f64().is_some_and(|x| x.fract() == 0.0),
        _ => false,
    }
}

/// The customer's mood as the fake reads it from the words used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mood {
    Positive,
    Negative,
}

/// Negative words win: "thanks, but it is still broken" is not a happy chat.
pub(crate) fn mood(text: &str) -> Option<Mood> {
    let t = text.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if any(&["angry", "worst", "still", "useless", "ridiculous"]) {
        Some(Mood::Negative)
    } else if any(&["thank", "great", "works now"]) {
        Some(Mood::Positive)
    } else {
        None
    }
}

/// Builds values for a schema from one conversation's text.
pub(crate) struct Generator<'a> {
    pub(crate) text: &'a str,
    pub(crate) rng: StdRng,
}

impl Generator<'_> {
    /// A value that fits `schema`, unless the schema contradicts itself
    /// (minimum above maximum, say), which yields the nearest thing.
    pub(crate) fn generate(&mut self, schema: &Value) -> Value {
        self.value(schema, &[])
    }

    fn value(&mut self, schema: &Value, path: &[&str]) -> Value {
        if let Some(options) = schema["anyOf"].as_array().filter(|o| !o.is_empty()) {
            let branch = &options[self.rng.random_range(0..options.len())];
            return self.value(branch, path);
        }
        if let Some(options) = schema["enum"].as_array().filter(|o| !o.is_empty()) {
            return self.choice(options, path);
        }
        let types = types(schema);
        let name = path.last().copied().unwrap_or_default();
        let ty = match (name, mood(self.text)) {
            // Whether the issue was resolved follows the mood, where allowed.
            ("resolved", Some(_)) if types.contains(&"boolean") => "boolean",
            _ if types.is_empty() => "null",
            _ => types[self.rng.random_range(0..types.len())],
        };
        match ty {
            "object" => self.object(schema, path),
            "array" => {
                let min = schema["minItems"].as_u64().unwrap_or(0);
                let max = schema["maxItems"].as_u64().unwrap_or(min + 2).max(min);
                let n = self.rng.random_range(min..=max.min(min + 8));
                Value::Array((0..n).map(|_| self.value(&schema["items"], path)).collect())
            }
            "string" => Value::String(self.string(schema, name)),
            // PowerPulse's compact schema: bare scores, named by what they
            // score, following the mood as a model's would.
            "integer" if name == "satisfaction" => {
                let band = match mood(self.text) {
                    Some(Mood::Positive) => Some((4.0, 5.0)),
                    Some(Mood::Negative) => Some((1.0, 2.0)),
                    None => None,
                };
                json!(self.integer(schema, "score", band))
            }
            "number" if name == "sentiment" => {
                let band = match mood(self.text) {
                    Some(Mood::Positive) => Some((0.3, 1.0)),
                    Some(Mood::Negative) => Some((-1.0, -0.3)),
                    None => Some((-0.2, 0.2)),
                };
                json!(self.number(schema, band))
            }
            "integer" => json!(self.integer(schema, name, None)),
            "number" => json!(self.number(schema, None)),
            "boolean" => Value::Bool(match (name, mood(self.text)) {
                ("resolved", Some(Mood::Positive)) => true,
                ("resolved", Some(Mood::Negative)) => false,
                _ => self.rng.random(),
            }),
            _ => Value::Null,
        }
    }

    fn choice(&mut self, options: &[Value], path: &[&str]) -> Value {
        let wanted = match (path, mood(self.text)) {
            ([.., "sentiment", "label"], Some(Mood::Positive)) => Some("positive"),
            ([.., "sentiment", "label"], Some(Mood::Negative)) => Some("negative"),
            _ => None,
        };
        match wanted.filter(|w| options.iter().any(|o| o == w)) {
            Some(w) => Value::String(w.into()),
            None => options[self.rng.random_range(0..options.len())].clone(),
        }
    }

    fn object(&mut self, schema: &Value, path: &[&str]) -> Value {
        let mut out = Map::new();
        let Some(properties) = schema["properties"].as_object() else {
            return Value::Object(out);
        };
        for (key, inner) in properties {
            let mut p = path.to_vec();
            p.push(key);
            out.insert(key.clone(), self.value(inner, &p));
        }
        self.harmonize(properties, &mut out);
        Value::Object(out)
    }

    /// Makes a `score` agree with its sibling `label`, the way a model's
    /// answer would: a positive sentiment has a positive score, a score of
    /// 2 out of 5 is "dissatisfied".
    fn harmonize(&mut self, properties: &Map<String, Value>, out: &mut Map<String, Value>) {
        let (Some(label_schema), Some(score_schema)) =
            (properties.get("label"), properties.get("score"))
        else {
            return;
        };
        let labels = label_schema["enum"].as_array().cloned().unwrap_or_default();
        let has = |l: &str| labels.iter().any(|o| o == l);
        let integer = types(score_schema).contains(&"integer");
        if has("positive") && has("negative") {
            let band = match out.get("label").and_then(Value::as_str) {
                Some("positive") => (0.3, 1.0),
                Some("negative") => (-1.0, -0.3),
                Some("neutral") => (-0.2, 0.2),
                _ => return,
            };
            let score = if integer {
                json!(self.integer(score_schema, "score", Some(band)))
            } else {
                json!(self.number(score_schema, Some(band)))
            };
            out.insert("score".into(), score);
        } else if has("satisfied") && has("dissatisfied") && integer {
            let band = match mood(self.text) {
                Some(Mood::Positive) => Some((4.0, 5.0)),
                Some(Mood::Negative) => Some((1.0, 2.0)),
                None => None,
            };
            let score = self.integer(score_schema, "score", band);
            let label = match score {
                i64::MIN..=2 => "dissatisfied",
                3 => "neutral",
                _ => "satisfied",
            };
            out.insert("score".into(), json!(score));
            if has(label) {
                out.insert("label".into(), Value::String(label.into()));
            }
        }
    }

    /// The schema's bounds, or `default` where it gives none; narrowed to
    /// `prefer` when the two overlap.
    fn bounds(schema: &Value, default: (f64, f64), prefer: Option<(f64, f64)>) -> (f64, f64) {
        let width = default.1 - default.0;
        let (lo, hi) = match (schema["minimum"].as_f64(), schema["maximum"].as_f64()) {
            (Some(lo), Some(hi)) => (lo, hi),
            (Some(lo), None) => (lo, lo + width),
            (None, Some(hi)) => (hi - width, hi),
            (None, None) => default,
        };
        match prefer {
            Some((a, b)) if a.max(lo) <= b.min(hi) => (a.max(lo), b.min(hi)),
            _ => (lo, hi),
        }
    }

    fn integer(&mut self, schema: &Value, name: &str, prefer: Option<(f64, f64)>) -> i64 {
        // PowerPulse's schema states its 1–5 range only in prose.
        let default = if name == "score" {
            (1.0, 5.0)
        } else {
            (0.0, 10.0)
        };
        let (lo, hi) = Self::bounds(schema, default, prefer);
        let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
        if lo >= hi {
            return lo;
        }
        self.rng.random_range(lo..=hi)
    }

    fn number(&mut self, schema: &Value, prefer: Option<(f64, f64)>) -> f64 {
        let (lo, hi) = Self::bounds(schema, (-1.0, 1.0), prefer);
        if lo.is_nan() || hi.is_nan() || lo >= hi {
            return lo;
        }
        if !(hi - lo).is_finite() {
            // Too wide for a uniform draw; any value inside will do.
            return lo / 2.0 + hi / 2.0;
        }
        let x: f64 = self.rng.random_range(lo..=hi);
        // Two decimals, as a model writes them, kept inside the bounds.
        ((x * 100.0).round() / 100.0).clamp(lo, hi)
    }

    fn string(&mut self, schema: &Value, name: &str) -> String {
        const SUMMARIES: [&str; 4] = [
            "The customer asked about",
            "The customer reported a problem with",
            "The customer wanted help with",
            "The customer followed up on",
        ];
        const TOPICS: [&str; 5] = [
            "a meter reading",
            "a billing question",
            "a power outage",
            "a tariff change",
            "a delayed refund",
        ];
        let outcome = match mood(self.text) {
            Some(Mood::Positive) => "and the agent resolved it.",
            Some(Mood::Negative) => "and the issue remains open.",
            None => "and the agent explained the next steps.",
        };
        let mut s = if name == "summary" || name.is_empty() {
            let lead = SUMMARIES[self.rng.random_range(0..SUMMARIES.len())];
            let topic = TOPICS[self.rng.random_range(0..TOPICS.len())];
            format!("{lead} {topic} {outcome}")
        } else {
            format!("{name} {}", self.rng.random_range(0..1000u32))
        };
        let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
        let max = schema["maxLength"]
            .as_u64()
            .map_or(usize::MAX, |m| m as usize);
        while s.chars().count() < min {
            s.push('.');
        }
        if s.chars().count() > max {
            s = s.chars().take(max).collect();
        }
        s
    }
}

/// A copy of `valid` that violates `schema` the way models do: a label
/// outside its enum, else a missing required property, else the wrong type
/// altogether. A schema that accepts everything cannot be violated; then the
/// copy is returned unchanged.
pub(crate) fn violate(schema: &Value, valid: &Value) -> Value {
    let mut out = valid.clone();
    if break_enum(schema, &mut out) && validate(schema, &out).is_err() {
        return out;
    }
    let mut out = valid.clone();
    if let (Some(first), Value::Object(map)) = (
        schema["required"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(Value::as_str),
        &mut out,
    ) {
        map.remove(first);
        if validate(schema, &out).is_err() {
            return out;
        }
    }
    [
        json!("I think the customer is happy."),
        json!(42),
        json!([]),
        json!({"unexpected": true}),
    ]
    .into_iter()
    .find(|v| validate(schema, v).is_err())
    .unwrap_or_else(|| valid.clone())
}

/// Replaces the first string enum value found with one outside the enum.
fn break_enum(schema: &Value, value: &mut Value) -> bool {
    if schema["enum"].is_array()
        && let Value::String(s) = value
    {
        *s = format!("very {s}");
        return true;
    }
    match value {
        Value::Object(map) => map.iter_mut().any(|(k, v)| {
            let inner = &schema["properties"][k.as_str()];
            !inner.is_null() && break_enum(inner, v)
        }),
        Value::Array(items) => items.iter_mut().any(|v| break_enum(&schema["items"], v)),
        _ => false,
    }
}

/// The schema replies follow when the request names none: PowerPulse's
/// result, with the ranges its prompt states in prose made explicit.
pub(crate) fn default_schema() -> Value {
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["sentiment", "satisfaction", "resolved", "summary"],
        "properties": {
            "sentiment": {"type": "object", "additionalProperties": false,
                "required": ["label", "score"],
                "properties": {
                    "label": {"type": "string", "enum": ["positive", "neutral", "negative"]},
                    "score": {"type": "number", "minimum": -1, "maximum": 1}}},
            "satisfaction": {"type": "object", "additionalProperties": false,
                "required": ["score", "label"],
                "properties": {
                    "score": {"type": "integer", "minimum": 1, "maximum": 5},
                    "label": {"type": "string", "enum": ["satisfied", "neutral", "dissatisfied"]}}},
            "resolved": {"type": ["boolean", "null"]},
            "summary": {"type": "string", "maxLength": 200}
        }
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn generate(schema: &Value, text: &str, seed: u64) -> Value {
        Generator {
            text,
            rng: StdRng::seed_from_u64(seed),
        }
        .generate(schema)
    }

    const TEXTS: [&str; 4] = [
        "C: thanks, great help",
        "C: worst service ever, still no power",
        "C: what is my tariff?",
        "",
    ];

    #[test]
    fn replies_fit_assorted_schemas() {
        let schemas = [
            default_schema(),
            json!({"type": "object", "required": ["tags", "n", "x", "maybe", "pick"],
                   "additionalProperties": false,
                   "properties": {
                       "tags": {"type": "array", "minItems": 1, "maxItems": 3,
                                "items": {"type": "string", "minLength": 30, "maxLength": 40}},
                       "n": {"type": "integer", "minimum": 2.5, "maximum": 7.5},
                       "x": {"type": "number", "minimum": 100},
                       "maybe": {"type": ["null", "string"], "maxLength": 0},
                       "pick": {"anyOf": [{"type": "boolean"}, {"enum": [1, 2]}]}}}),
            json!({"type": "array", "items": {"type": "integer", "maximum": -50}}),
            json!({"type": "string", "enum": ["only"]}),
            json!({}),
        ];
        for schema in &schemas {
            for text in TEXTS {
                for seed in 0..50 {
                    let v = generate(schema, text, seed);
                    if let Err(e) = validate(schema, &v) {
                        panic!("{v} does not fit {schema}: {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn replies_are_deterministic_and_follow_the_mood() {
        let schema = default_schema();
        let a = generate(&schema, TEXTS[0], 3);
        assert_eq!(a, generate(&schema, TEXTS[0], 3));
        for seed in 0..30 {
            let happy = generate(&schema, TEXTS[0], seed);
            assert_eq!(happy["sentiment"]["label"], "positive");
            assert!(happy["sentiment"]["score"].as_f64().unwrap() >= 0.3);
            assert_eq!(happy["satisfaction"]["label"], "satisfied");
            assert_eq!(happy["resolved"], true);
            let angry = generate(&schema, TEXTS[1], seed);
            assert_eq!(angry["sentiment"]["label"], "negative");
            assert!(angry["satisfaction"]["score"].as_i64().unwrap() <= 2);
            assert_eq!(angry["resolved"], false);
            let calm = generate(&schema, TEXTS[2], seed);
            let label = calm["satisfaction"]["label"].as_str().unwrap();
            let score = calm["satisfaction"]["score"].as_i64().unwrap();
            let expected = match score {
                1 | 2 => "dissatisfied",
                3 => "neutral",
                _ => "satisfied",
            };
            assert_eq!(label, expected, "labels agree with scores");
        }
        let nested = json!({"type": "object", "properties": {"analysis": default_schema()}});
        assert_eq!(
            generate(&nested, TEXTS[1], 0)["analysis"]["sentiment"]["label"],
            "negative",
            "the label is found at any depth"
        );
    }

    #[test]
    fn contradictory_schemas_yield_something_without_panicking() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 5, "maximum": 1},
            "x": {"type": "number", "minimum": 1.5, "maximum": -1.5},
            "w": {"type": "number", "minimum": -1e308, "maximum": 1e308},
            "a": {"type": "array", "minItems": 4, "maxItems": 1},
            "e": {"enum": []},
            "t": {"type": []}}});
        let v = generate(&schema, "hi", 0);
        assert_eq!(v["n"], 5);
        assert_eq!(v["a"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn violations_violate() {
        let schemas = [
            default_schema(),
            json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}),
            json!({"type": "integer"}),
            json!({"type": "string"}),
        ];
        for schema in &schemas {
            let valid = generate(schema, "thanks", 1);
            let bad = violate(schema, &valid);
            assert!(validate(schema, &bad).is_err(), "{bad} fits {schema}");
        }
        let bad = violate(&default_schema(), &generate(&default_schema(), "thanks", 1));
        let labels = [&bad["sentiment"]["label"], &bad["satisfaction"]["label"]];
        assert!(
            labels
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.starts_with("very "))),
            "a label outside the enum: {bad}"
        );
        assert_eq!(violate(&json!({}), &json!(1)), json!(1));
    }

    #[test]
    fn the_validator_rejects_what_it_should() {
        let schema = default_schema();
        let good = generate(&schema, "thanks", 0);
        assert_eq!(validate(&schema, &good), Ok(()));
        let cases = [
            (json!({"sentiment": 1}), "missing required property"),
            (json!([]), "not of type"),
            (json!(null), "not of type"),
        ];
        for (value, needle) in cases {
            let e = validate(&schema, &value).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        let mut wrong = good.clone();
        wrong["sentiment"] = json!(1);
        assert!(
            validate(&schema, &wrong)
                .unwrap_err()
                .starts_with("$.sentiment: 1 is not")
        );
        let mut extra = good.clone();
        extra["sentiment"]["why"] = json!("x");
        assert!(
            validate(&schema, &extra)
                .unwrap_err()
                .contains("unexpected property")
        );
        let mut long = good.clone();
        long["summary"] = json!("x".repeat(201));
        assert!(validate(&schema, &long).unwrap_err().contains("$.summary"));
        let mut low = good;
        low["satisfaction"]["score"] = json!(0);
        assert!(
            validate(&schema, &low)
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(validate(&json!({"type": "integer"}), &json!(3.0)), Ok(()));
        assert!(validate(&json!({"type": "integer"}), &json!(3.5)).is_err());
        assert!(validate(&json!({"anyOf": [{"type": "null"}]}), &json!(1)).is_err());
    }

    #[test]
    fn mood_prefers_bad_news() {
        assert_eq!(mood("Thank you!"), Some(Mood::Positive));
        assert_eq!(mood("GREAT"), Some(Mood::Positive));
        assert_eq!(mood("thanks, but it still fails"), Some(Mood::Negative));
        assert_eq!(mood("I am angry"), Some(Mood::Negative));
        assert_eq!(mood("hello"), None);
    }
}
