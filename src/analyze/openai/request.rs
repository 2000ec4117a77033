//! The request body's static part, per configuration: which parameters
//! the model takes, the system prompt and the schema, serialised once.

use serde_json::{Map, Value, json};

use super::models;
use super::prompt;
use crate::config::{OpenAiSettings, TokenParameter, TopicSettings};

/// How requests to the configured model look.
#[derive(Debug, Clone)]
pub struct RequestShape {
    model: String,
    /// A reasoning model: no `temperature`, a `reasoning_effort`, hidden
    /// reasoning tokens on top of the reply.
    reasoning: bool,
    effort: String,
    /// Send `max_completion_tokens` (else `max_tokens`).
    completion_parameter: bool,
    structured: bool,
    per_result_tokens: u32,
    reasoning_budget: u32,
    /// The topics the model picks from (`with_topics`): named in the
    /// prompt, an enum in the schema.
    topics: Vec<TopicSettings>,
}

impl RequestShape {
    pub fn new(settings: &OpenAiSettings) -> Self {
        let reasoning = models::is_reasoning(&settings.model);
        let official = reqwest::Url::parse(&settings.base_url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.eq_ignore_ascii_case("api.openai.com"))
            })
            .unwrap_or(false);
        let completion_parameter = match settings.token_parameter {
            TokenParameter::MaxTokens => false,
            TokenParameter::MaxCompletionTokens => true,
            // OpenAI deprecated `max_tokens` and its reasoning models reject
            // it; servers implementing the older API may know only it.
            TokenParameter::Auto => reasoning || official,
        };
        let effort = match settings.reasoning_effort.as_str() {
            "auto" => models::default_effort(&settings.model).to_string(),
            other => other.to_string(),
        };
        Self {
            model: settings.model.clone(),
            reasoning,
            effort,
            completion_parameter,
            structured: settings.structured_output,
            per_result_tokens: settings.max_output_tokens,
            reasoning_budget: settings.reasoning_token_budget,
            topics: Vec::new(),
        }
    }

    /// Asks for one of `topics` in every result.
    pub fn with_topics(mut self, topics: &[TopicSettings]) -> Self {
        self.topics = topics.to_vec();
        self
    }

    /// The system prompt, with the topics when there are any.
    fn system_prompt(&self, packed: bool) -> String {
        let mut system = prompt::system_prompt(self.structured, packed);
        if !self.topics.is_empty() {
            system.push_str(&prompt::topics_instruction(&self.topics));
        }
        system
    }

    /// Tokens a reply of `conversations` results may use (hidden reasoning
    /// included, for a reasoning model).
    pub fn reply_tokens(&self, conversations: u32) -> u32 {
        let reply = prompt::reply_budget(self.per_result_tokens, conversations);
        if self.reasoning {
            reply + self.reasoning_budget
        } else {
            reply
        }
    }

    /// Rate-limit tokens of a request without its transcript: the system
    /// prompt and the reply budget, as OpenAI's limiter counts them.
    pub fn fixed_tokens(&self, conversations: u32) -> u32 {
        prompt::estimate_tokens(&self.system_prompt(conversations > 1))
            + self.reply_tokens(conversations)
    }

    /// The body of `powerpulse check`'s probe: this model's parameters,
    /// a one-line prompt, the smallest reply budget (a reasoning model gets
    /// a little room to think), no schema.
    pub fn probe_body(&self) -> String {
        let mut body = Map::new();
        body.insert("model".into(), self.model.clone().into());
        let budget = if self.reasoning {
            body.insert("reasoning_effort".into(), self.effort.clone().into());
            16
        } else {
            body.insert("temperature".into(), 0.into());
            1
        };
        body.insert(self.budget_name().into(), budget.into());
        body.insert(
            "messages".into(),
            json!([{"role": "user", "content": "Say OK."}]),
        );
        Value::Object(body).to_string()
    }

    fn budget_name(&self) -> &'static str {
        if self.completion_parameter {
            "max_completion_tokens"
        } else {
            "max_tokens"
        }
    }

    /// Everything in the body before the user message's content:
    /// `{…parameters…,"messages":[{system},{"role":"user","content":`.
    pub fn prefix(&self, conversations: u32) -> String {
        let packed = conversations > 1;
        let mut body = Map::new();
        body.insert("model".into(), self.model.clone().into());
        if self.reasoning {
            body.insert("reasoning_effort".into(), self.effort.clone().into());
        } else {
            body.insert("temperature".into(), 0.into());
        }
        body.insert(
            self.budget_name().into(),
            self.reply_tokens(conversations).into(),
        );
        if self.structured {
            let (name, mut schema) = if packed {
                ("conversation_analyses", prompt::packed_schema())
            } else {
                ("conversation_analysis", prompt::result_schema())
            };
            if !self.topics.is_empty() {
                let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
                prompt::add_topic_enum(&mut schema, &names);
            }
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": {"name": name, "strict": true, "schema": schema}
                }),
            );
        }
        let parameters = Value::Object(body).to_string();
        let system = json_string(&self.system_prompt(packed));
        format!(
            "{},\"messages\":[{{\"role\":\"system\",\"content\":{system}}},{{\"role\":\"user\",\"content\":",
            // Exactly the object's own closing brace (nested objects end in '}' too).
            parameters.strip_suffix('}').unwrap_or(&parameters)
        )
    }
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// A whole body: `prefix` + the user message + the closing brackets.
pub fn body(prefix: &str, user: &str) -> String {
    let content = json_string(user);
    let mut body = String::with_capacity(prefix.len() + content.len() + 4);
    body.push_str(prefix);
    body.push_str(&content);
    body.push_str("}]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(model: &str, base_url: &str, parameter: TokenParameter) -> Value {
        let settings = OpenAiSettings {
            model: model.into(),
            base_url: base_url.into(),
            token_parameter: parameter,
            ..OpenAiSettings::default()
        };
        serde_json::from_str(&body(&RequestShape::new(&settings).prefix(1), "C: hi")).unwrap()
    }

    #[test]
    fn the_probe_asks_the_model_as_analysis_does_for_one_token() {
        let probe = |model: &str, base_url: &str| -> Value {
            let settings = OpenAiSettings {
                model: model.into(),
                base_url: base_url.into(),
                ..OpenAiSettings::default()
            };
            serde_json::from_str(&RequestShape::new(&settings).probe_body()).unwrap()
        };
        let official = probe("gpt-4o", "https://api.openai.com/v1");
        assert_eq!(official["max_completion_tokens"], 1);
        assert_eq!(official["model"], "gpt-4o");
        assert!(official.get("response_format").is_none());
        assert_eq!(official["messages"].as_array().unwrap().len(), 1);
        let local = probe("llama3", "http://127.0.0.1:8080/v1");
        assert_eq!(local["max_tokens"], 1);
        assert!(local.get("max_completion_tokens").is_none());
    }

    #[test]
    fn openai_gets_max_completion_tokens_other_servers_max_tokens() {
        let official = shape("gpt-4o", "https://api.openai.com/v1", TokenParameter::Auto);
        assert_eq!(official["max_completion_tokens"], 64);
        assert!(official.get("max_tokens").is_none());
        assert_eq!(official["temperature"], 0);
        let local = shape("llama3", "http://127.0.0.1:8080/v1", TokenParameter::Auto);
        assert_eq!(local["max_tokens"], 64);
        assert!(local.get("max_completion_tokens").is_none());
        let forced = shape(
            "llama3",
            "http://127.0.0.1:8080/v1",
            TokenParameter::MaxCompletionTokens,
        );
        assert_eq!(forced["max_completion_tokens"], 64);
    }

    #[test]
    fn reasoning_models_get_effort_no_temperature_and_room_to_think() {
        for (model, effort) in [("gpt-5-mini", "minimal"), ("o4-mini", "low")] {
            let v = shape(model, "http://127.0.0.1:9/v1", TokenParameter::Auto);
            assert!(v.get("temperature").is_none(), "{model}");
            assert!(v.get("max_tokens").is_none(), "{model}");
            assert_eq!(v["reasoning_effort"], effort);
            assert_eq!(v["max_completion_tokens"], 64 + 512);
        }
    }

    #[test]
    fn packed_requests_carry_the_packed_schema_and_a_bigger_budget() {
        let settings = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            ..OpenAiSettings::default()
        };
        let shape = RequestShape::new(&settings);
        let v: Value = serde_json::from_str(&body(&shape.prefix(5), "#1\nC: hi")).unwrap();
        assert_eq!(
            v["response_format"]["json_schema"]["name"],
            "conversation_analyses"
        );
        assert_eq!(v["max_tokens"], prompt::reply_budget(64, 5));
        assert!(shape.fixed_tokens(5) > shape.fixed_tokens(1));
    }
}
