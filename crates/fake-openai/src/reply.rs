//! What a chat-completions request gets back when it is answered: parameter
//! checks as the real service makes them (reasoning models refuse
//! `max_tokens` and a `temperature` other than 1), the message fitted to the
//! schema, and `usage` with reasoning and cached tokens, cut to the
//! request's completion budget. Shared by the synchronous endpoint and the
//! batch processor, so a batch line gets exactly the reply the synchronous
//! path would give.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::config::{FakeConfig, Fault, ServerKind};
use crate::limits::prompt_tokens;
use crate::schema::{Generator, default_schema, violate};

/// Why a request could not even be considered; answered 400 as OpenAI does.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("We could not parse the JSON body of your request. ({0})")]
    NotJson(#[source] serde_json::Error),
    #[error("'messages' is a required property and must be a non-empty array")]
    NoMessages,
    /// A parameter the model does not take, or a value it does not allow.
    #[error("{message}")]
    Unsupported {
        message: String,
        param: &'static str,
        code: &'static str,
    },
    /// A local server's failure to validate the request, answered as an
    /// internal error (llama-cpp-python's route handler turns every
    /// exception into a 500 carrying the exception's text).
    #[error("{0}")]
    Internal(String),
}

impl RequestError {
    /// The OpenAI error body for this error.
    pub(crate) fn body(&self) -> Value {
        let (param, code) = match self {
            RequestError::Unsupported { param, code, .. } => (json!(param), json!(code)),
            _ => (Value::Null, Value::Null),
        };
        let kind = match self {
            RequestError::Internal(_) => "internal_server_error",
            _ => "invalid_request_error",
        };
        json!({"error": {
            "message": self.to_string(),
            "type": kind,
            "param": param,
            "code": code,
        }})
    }
}

impl ResponseError for RequestError {
    fn status_code(&self) -> StatusCode {
        match self {
            RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

/// What llama-cpp-python's server says to `response_format: json_schema`:
/// its request model allows only `text` and `json_object`, and the
/// validation error's text comes back in a 500.
pub const LLAMA_CPP_FORMAT_REFUSAL: &str = "[{'type': 'literal_error', 'loc': ('body', \
'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': \
'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}]";

/// Whether `model` is a reasoning model (o-series, gpt-5 family except its
/// `chat` variants), which takes `max_completion_tokens` only and a
/// temperature of 1 only, and spends reasoning tokens.
pub fn is_reasoning_model(model: &str) -> bool {
    let reasoning = ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| model.starts_with(prefix));
    reasoning && !model.contains("chat")
}

/// The reasoning tokens the fake spends on a request, by
/// `reasoning_effort`: `minimal` 16, `low` 64, `medium` (the default) 192,
/// `high` 512; 0 for a model that does not reason. Counted in
/// `completion_tokens`.
pub fn reasoning_tokens(body: &Value) -> u64 {
    if !is_reasoning_model(body["model"].as_str().unwrap_or_default()) {
        return 0;
    }
    match body["reasoning_effort"].as_str() {
        Some("minimal") => 16,
        Some("low") => 64,
        Some("high") => 512,
        _ => 192,
    }
}

/// A parsed chat-completions request.
pub(crate) struct ChatRequest {
    pub(crate) body: Value,
    /// The first user message: PowerPulse sends one per conversation (a
    /// re-ask after an invalid reply adds the reply and a note after it).
    pub(crate) conversation: String,
    /// The conversations it holds: the whole message, or, for a packed
    /// request (PowerPulse's `conversations_per_request`), each chat after
    /// its `#N` line.
    pub(crate) chats: Vec<String>,
    /// Hash of each chat: who was answered more than once.
    pub(crate) identities: Vec<u64>,
    /// The server it is sent to.
    pub(crate) server: ServerKind,
}

/// A packed user message's chats: the text after each `#N` line (N
/// counting from 1); `None` when the message is not packed.
pub(crate) fn packed_chats(message: &str) -> Option<Vec<String>> {
    let is_marker = |line: &str, n: usize| line.strip_prefix('#') == Some(n.to_string().as_str());
    let mut lines = message.lines();
    if !is_marker(lines.next()?, 1) {
        return None;
    }
    let mut chats = vec![String::new()];
    for line in lines {
        if is_marker(line, chats.len() + 1) {
            chats.push(String::new());
            continue;
        }
        let chat = chats.last_mut()?;
        if !chat.is_empty() {
            chat.push('\n');
        }
        chat.push_str(line);
    }
    Some(chats)
}

impl ChatRequest {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        Self::from_value(serde_json::from_slice(bytes).map_err(RequestError::NotJson)?)
    }

    pub(crate) fn from_value(body: Value) -> Result<Self, RequestError> {
        let messages = body["messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .ok_or(RequestError::NoMessages)?;
        let conversation = messages
            .iter()
            .find(|m| m["role"] == "user")
            .map(|m| text_of(&m["content"]))
            .unwrap_or_default();
        let chats = packed_chats(&conversation).unwrap_or_else(|| vec![conversation.clone()]);
        Ok(ChatRequest {
            identities: chats.iter().map(|c| fnv1a(c)).collect(),
            chats,
            conversation,
            body,
            server: ServerKind::OpenAi,
        })
    }

    /// The request as played by `server`.
    pub(crate) fn on(mut self, server: ServerKind) -> Self {
        self.server = server;
        self
    }

    /// The parameters the model refuses, as the real service words it.
    pub(crate) fn check_parameters(&self) -> Result<(), RequestError> {
        if self.server == ServerKind::LlamaCppPython {
            return match self.body["response_format"]["type"].as_str() {
                None | Some("text" | "json_object") => Ok(()),
                Some(_) => Err(RequestError::Internal(LLAMA_CPP_FORMAT_REFUSAL.into())),
            };
        }
        let model = self.model();
        if !is_reasoning_model(model) {
            return Ok(());
        }
        if !self.body["max_tokens"].is_null() {
            return Err(RequestError::Unsupported {
                message: "Unsupported parameter: 'max_tokens' is not supported with this model. \
                          Use 'max_completion_tokens' instead."
                    .into(),
                param: "max_tokens",
                code: "unsupported_parameter",
            });
        }
        let temperature = &self.body["temperature"];
        if !temperature.is_null() && temperature.as_f64() != Some(1.0) {
            return Err(RequestError::Unsupported {
                message: format!(
                    "Unsupported value: 'temperature' does not support {temperature} with this \
                     model. Only the default (1) value is supported."
                ),
                param: "temperature",
                code: "unsupported_value",
            });
        }
        Ok(())
    }

    pub(crate) fn model(&self) -> &str {
        self.body["model"].as_str().unwrap_or("gpt-4o-mini")
    }

    /// The schema the request asks the reply to follow, if any: in
    /// `response_format` (`json_schema`'s, or `json_object`'s `schema` as
    /// llama-cpp-python takes it), else one the system prompt spells out
    /// (a model follows a schema it is shown).
    fn schema(&self) -> Option<Value> {
        let format = &self.body["response_format"];
        let given = match format["type"].as_str() {
            Some("json_schema") => Some(&format["json_schema"]["schema"]),
            Some("json_object") => Some(&format["schema"]),
            _ => None,
        };
        if let Some(schema) = given.filter(|s| s.is_object()) {
            return Some(schema.clone());
        }
        self.body["messages"]
            .as_array()?
            .iter()
            .filter(|m| m["role"] == "system")
            .find_map(|m| schema_in(&text_of(&m["content"])))
    }

    /// `max_completion_tokens`, else `max_tokens`: the most the reply may
    /// spend, reasoning included. (llama-cpp-python knows only `max_tokens`.)
    fn completion_budget(&self) -> Option<u64> {
        let max_tokens = self.body["max_tokens"].as_u64();
        match self.server {
            ServerKind::LlamaCppPython => max_tokens,
            ServerKind::OpenAi => self.body["max_completion_tokens"].as_u64().or(max_tokens),
        }
    }
}

/// The first JSON object in `text` that reads as a schema (an object with
/// `properties`).
fn schema_in(text: &str) -> Option<Value> {
    text.match_indices('{').find_map(|(at, _)| {
        let value = serde_json::Deserializer::from_str(&text[at..])
            .into_iter::<Value>()
            .next()?
            .ok()?;
        value["properties"].is_object().then_some(value)
    })
}

/// A message's text, whether given as a string or as content parts.
pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// FNV-1a: a stable identity for a text, cheap to compute.
pub(crate) fn fnv1a(text: &str) -> u64 {
    fnv1a_from(0xcbf2_9ce4_8422_2325, text)
}

/// FNV-1a continued from `hash`, for hashing a text piece by piece.
pub(crate) fn fnv1a_from(hash: u64, text: &str) -> u64 {
    text.bytes().fold(hash, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What the assistant's message carries.
pub(crate) enum Content {
    Text(String),
    Refusal(String),
}

/// The message for a request that gets an answer, faulty or not.
pub(crate) fn content(request: &ChatRequest, config: &FakeConfig, fault: Option<Fault>) -> Content {
    let schema = request.schema().unwrap_or_else(default_schema);
    let schema = &schema;
    let answer = match packed_item_schema(schema) {
        // One result per chat, each as it would be alone, with its ref.
        Some(item) => {
            let results: Vec<Value> = request
                .chats
                .iter()
                .zip(&request.identities)
                .enumerate()
                .map(|(i, (chat, identity))| {
                    let mut generator = Generator {
                        text: chat,
                        rng: StdRng::seed_from_u64(identity ^ config.seed),
                    };
                    let mut result = generator.generate(item);
                    result["ref"] = json!(i + 1);
                    result
                })
                .collect();
            json!({ "results": results })
        }
        None => {
            let mut generator = Generator {
                text: &request.conversation,
                rng: StdRng::seed_from_u64(request.identities[0] ^ config.seed),
            };
            generator.generate(schema)
        }
    };
    match fault {
        Some(Fault::FencedJson) => Content::Text(format!("```json\n{answer}\n```")),
        Some(Fault::Refusal) => {
            Content::Refusal("I'm sorry, but I can't help with that request.".into())
        }
        Some(Fault::InvalidJsonContent) => {
            Content::Text("Based on the conversation, the customer seems mostly satisfied.".into())
        }
        Some(Fault::SchemaViolation) => Content::Text(violate(schema, &answer).to_string()),
        _ => Content::Text(answer.to_string()),
    }
}

/// The item schema of a packed reply (`{"results": [{"ref": …, …}]}`).
fn packed_item_schema(schema: &Value) -> Option<&Value> {
    let item = &schema["properties"]["results"]["items"];
    item["properties"]["ref"].is_object().then_some(item)
}

/// A chat.completion, with what it bills.
pub(crate) struct Reply {
    pub(crate) body: Value,
    pub(crate) prompt_tokens: u64,
    /// Reasoning included.
    pub(crate) completion_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) reasoning_tokens: u64,
}

/// The chat.completion answering `request` with `content`, its id and
/// creation time given; `cached_tokens` from the prompt cache. A reply
/// whose reasoning and content exceed the completion budget stops at it
/// with `finish_reason` `length`, its content cut (empty when reasoning
/// took everything), as the real service does.
pub(crate) fn completion(
    request: &ChatRequest,
    content: Content,
    id: &str,
    created: u64,
    cached_tokens: u64,
) -> Reply {
    let prompt = prompt_tokens(&request.body);
    let mut reasoning = reasoning_tokens(&request.body);
    let mut finish_reason = "stop";
    let (mut text, refusal) = match content {
        Content::Text(text) => (text, false),
        Content::Refusal(text) => (text, true),
    };
    let mut completion = reasoning + (text.chars().count() as u64).div_ceil(4);
    if let Some(budget) = request.completion_budget()
        && completion > budget
        && !refusal
    {
        finish_reason = "length";
        reasoning = reasoning.min(budget);
        let keep = (budget - reasoning).saturating_mul(4);
        text = text
            .chars()
            .take(usize::try_from(keep).unwrap_or(usize::MAX))
            .collect();
        completion = budget;
    }
    let message = if refusal {
        json!({"role": "assistant", "content": null, "refusal": text})
    } else {
        json!({"role": "assistant", "content": text, "refusal": null})
    };
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": request.model(),
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    });
    Reply {
        body,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens,
        reasoning_tokens: reasoning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ChatRequest {
        ChatRequest::from_value(body).unwrap()
    }

    #[test]
    fn packed_requests_are_answered_per_chat_with_refs() {
        assert_eq!(
            packed_chats("#1\nC: a\nA: b\n#2\nC: c"),
            Some(vec!["C: a\nA: b".to_string(), "C: c".to_string()])
        );
        assert_eq!(packed_chats("C: #1"), None);
        let item = json!({"type": "object", "required": ["ref", "sentiment"], "properties": {
            "ref": {"type": "integer"}, "sentiment": {"type": "number"}}});
        let body = json!({
            "model": "gpt-4o",
            "response_format": {"type": "json_schema", "json_schema": {"schema": {
                "type": "object", "properties": {"results": {"type": "array", "items": item}}}}},
            "messages": [{"role": "user", "content": "#1\nC: thanks, all fixed\n#2\nC: still no power, useless"}],
        });
        let request = ChatRequest::from_value(body).unwrap();
        assert_eq!(request.identities.len(), 2);
        let Content::Text(text) = content(&request, &FakeConfig::default(), None) else {
            panic!("a text reply");
        };
        let reply: Value = serde_json::from_str(&text).unwrap();
        let results = reply["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["ref"], 1);
        assert_eq!(results[1]["ref"], 2);
        assert!(results[0]["sentiment"].as_f64().unwrap() > 0.0);
        assert!(results[1]["sentiment"].as_f64().unwrap() < 0.0);
    }

    #[test]
    fn reasoning_models_are_told_apart_by_name() {
        for m in [
            "o1",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
        ] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-chat-latest",
            "omni",
        ] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }

    #[test]
    fn reasoning_models_refuse_max_tokens_and_other_temperatures() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let err = |body: Value| request(body).check_parameters().unwrap_err().body();
        let e = err(json!({"model": "gpt-5-mini", "max_tokens": 10, "messages": msgs}));
        assert_eq!(e["error"]["param"], "max_tokens");
        assert_eq!(e["error"]["code"], "unsupported_parameter");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        let e = err(json!({"model": "o3", "temperature": 0, "messages": msgs}));
        assert_eq!(e["error"]["param"], "temperature");
        assert_eq!(e["error"]["code"], "unsupported_value");
        for fine in [
            json!({"model": "o3", "temperature": 1, "max_completion_tokens": 9, "messages": msgs}),
            json!({"model": "gpt-5-chat-latest", "max_tokens": 9, "temperature": 0, "messages": msgs}),
            json!({"model": "gpt-4o", "max_tokens": 9, "reasoning_effort": "low", "messages": msgs}),
        ] {
            request(fine).check_parameters().unwrap();
        }
    }

    #[test]
    fn reasoning_counts_in_completion_tokens_and_the_budget_cuts_the_reply() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let text = "x".repeat(400); // 100 tokens
        let run =
            |body: Value| completion(&request(body), Content::Text(text.clone()), "id", 0, 0).body;
        let r = run(json!({"model": "gpt-5", "reasoning_effort": "low", "messages": msgs}));
        assert_eq!(r["usage"]["completion_tokens"], 164);
        assert_eq!(
            r["usage"]["completion_tokens_details"]["reasoning_tokens"],
            64
        );
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        let r = run(json!({"model": "gpt-5", "reasoning_effort": "minimal",
            "max_completion_tokens": 66, "messages": msgs}));
        assert_eq!(r["choices"][0]["finish_reason"], "length");
        assert_eq!(r["usage"]["completion_tokens"], 66);
        assert_eq!(r["choices"][0]["message"]["content"], "x".repeat(200));
        let r = run(json!({"model": "o4-mini", "max_completion_tokens": 100, "messages": msgs}));
        assert_eq!(r["choices"][0]["message"]["content"], "");
        assert_eq!(
            r["usage"]["completion_tokens_details"]["reasoning_tokens"],
            100
        );
        let r = run(json!({"model": "gpt-4o", "max_tokens": 10, "messages": msgs}));
        assert_eq!(r["choices"][0]["finish_reason"], "length");
        assert_eq!(
            r["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
    }
}
