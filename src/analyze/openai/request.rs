//! The request body's static part, per endpoint: which parameters the
//! model takes, how the server is asked for JSON (its [`StructuredMode`]),
//! the system prompt and the schema, serialised once per mode.

use serde_json::{Map, Value, json};

use super::models;
use super::negotiate::{BudgetParameter, StructuredMode};
use super::prompt;
use crate::config::{OpenAiSettings, TokenParameter, TopicSettings};

/// How requests to one endpoint's model look.
#[derive(Debug, Clone)]
pub struct RequestShape {
    model: String,
    /// A reasoning model: no `temperature`, a `reasoning_effort`, hidden
    /// reasoning tokens on top of the reply.
    reasoning: bool,
    effort: String,
    /// Which parameter carries the reply's budget.
    budget: BudgetParameter,
    structured: StructuredMode,
    per_result_tokens: u32,
    reasoning_budget: u32,
    /// The topics the model picks from (`with_topics`): named in the
    /// prompt, an enum in the schema.
    topics: Vec<TopicSettings>,
}

/// The budget parameter `token_parameter` asks for, for `model` at `base_url`.
pub fn budget_parameter(setting: TokenParameter, model: &str, base_url: &str) -> BudgetParameter {
    let official = reqwest::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h.eq_ignore_ascii_case("api.openai.com"))
        })
        .unwrap_or(false);
    match setting {
        TokenParameter::MaxTokens => BudgetParameter::MaxTokens,
        TokenParameter::MaxCompletionTokens => BudgetParameter::MaxCompletionTokens,
        // OpenAI deprecated `max_tokens` and its reasoning models reject
        // it; servers implementing the older API may know only it.
        TokenParameter::Auto if models::is_reasoning(model) || official => {
            BudgetParameter::MaxCompletionTokens
        }
        TokenParameter::Auto => BudgetParameter::MaxTokens,
    }
}

impl RequestShape {
    /// The shape of requests to `model` at `base_url`, as the settings ask
    /// (before anything is learnt from the server).
    pub fn new(settings: &OpenAiSettings, model: &str, base_url: &str) -> Self {
        let effort = match settings.reasoning_effort.as_str() {
            "auto" => models::default_effort(model).to_string(),
            other => other.to_string(),
        };
        Self {
            model: model.to_string(),
            reasoning: models::is_reasoning(model),
            effort,
            budget: budget_parameter(settings.token_parameter, model, base_url),
            structured: if settings.structured_output {
                StructuredMode::JsonSchema
            } else {
                StructuredMode::Prompt
            },
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

    /// The same shape in another structured mode and budget parameter.
    pub fn with_mode(mut self, structured: StructuredMode, budget: BudgetParameter) -> Self {
        self.structured = structured;
        self.budget = budget;
        self
    }

    pub fn structured(&self) -> StructuredMode {
        self.structured
    }

    pub fn budget(&self) -> BudgetParameter {
        self.budget
    }

    /// The result schema (one result, or a packed reply's), with the topics' enum.
    fn schema(&self, packed: bool) -> Value {
        let mut schema = if packed {
            prompt::packed_schema()
        } else {
            prompt::result_schema()
        };
        if !self.topics.is_empty() {
            let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
            prompt::add_topic_enum(&mut schema, &names);
        }
        schema
    }

    /// The system prompt: the rubric, the topics, and the schema itself
    /// where the server does not hold the reply to it.
    fn system_prompt(&self, packed: bool) -> String {
        let mut system = prompt::system_prompt(packed);
        if !self.topics.is_empty() {
            system.push_str(&prompt::topics_instruction(&self.topics));
        }
        if self.structured.schema_in_prompt() {
            system.push_str(&prompt::schema_instruction(&self.schema(packed)));
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

    /// The body of `powerpulse check`'s probe: this model's parameters, a
    /// one-line prompt that a model not held to its budget answers at
    /// length (so a server ignoring the parameter shows), the smallest reply
    /// budget (a reasoning model gets a little room to think), no schema.
    /// Also its budget.
    pub fn probe_body(&self) -> (String, u32) {
        let mut body = Map::new();
        body.insert("model".into(), self.model.clone().into());
        let budget = if self.reasoning {
            body.insert("reasoning_effort".into(), self.effort.clone().into());
            16
        } else {
            body.insert("temperature".into(), 0.into());
            1
        };
        body.insert(self.budget.name().into(), budget.into());
        body.insert(
            "messages".into(),
            json!([{"role": "user", "content": "Count from 1 to 20."}]),
        );
        (Value::Object(body).to_string(), budget)
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
            self.budget.name().into(),
            self.reply_tokens(conversations).into(),
        );
        let name = if packed {
            "conversation_analyses"
        } else {
            "conversation_analysis"
        };
        let format = match self.structured {
            StructuredMode::JsonSchema => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": name, "strict": true, "schema": self.schema(packed)}
            })),
            StructuredMode::JsonObjectSchema => Some(json!({
                "type": "json_object",
                "schema": self.schema(packed)
            })),
            StructuredMode::JsonObject => Some(json!({"type": "json_object"})),
            StructuredMode::Prompt => None,
        };
        if let Some(format) = format {
            body.insert("response_format".into(), format);
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

/// A whole body: `prefix` + the user message + the messages that follow it
/// (a re-ask's: JSON objects separated by commas, or nothing) + the closing
/// brackets.
pub fn body(prefix: &str, user: &str, follow_up: &str) -> String {
    let content = json_string(user);
    let mut body = String::with_capacity(prefix.len() + content.len() + follow_up.len() + 5);
    body.push_str(prefix);
    body.push_str(&content);
    body.push('}');
    if !follow_up.is_empty() {
        body.push(',');
        body.push_str(follow_up);
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(model: &str, base_url: &str, parameter: TokenParameter) -> Value {
        let settings = OpenAiSettings {
            token_parameter: parameter,
            ..OpenAiSettings::default()
        };
        let shape = RequestShape::new(&settings, model, base_url);
        serde_json::from_str(&body(&shape.prefix(1), "C: hi", "")).unwrap()
    }

    #[test]
    fn the_probe_asks_the_model_as_analysis_does_for_one_token() {
        let probe = |model: &str, base_url: &str| -> Value {
            let settings = OpenAiSettings::default();
            let (body, _) = RequestShape::new(&settings, model, base_url).probe_body();
            serde_json::from_str(&body).unwrap()
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
        let settings = OpenAiSettings::default();
        let shape = RequestShape::new(&settings, "gpt-4o", "http://127.0.0.1:9/v1");
        let v: Value = serde_json::from_str(&body(&shape.prefix(5), "#1\nC: hi", "")).unwrap();
        assert_eq!(
            v["response_format"]["json_schema"]["name"],
            "conversation_analyses"
        );
        assert_eq!(v["max_tokens"], prompt::reply_budget(64, 5));
        assert!(shape.fixed_tokens(5) > shape.fixed_tokens(1));
    }

    #[test]
    fn each_structured_mode_asks_for_json_its_own_way() {
        let settings = OpenAiSettings::default();
        let topics = crate::config::TopicSettings::defaults();
        let shape =
            RequestShape::new(&settings, "llama3", "http://127.0.0.1:9/v1").with_topics(&topics);
        let request = |mode: StructuredMode| -> Value {
            let s = shape.clone().with_mode(mode, BudgetParameter::MaxTokens);
            serde_json::from_str(&body(&s.prefix(1), "C: hi", "")).unwrap()
        };
        let strict = request(StructuredMode::JsonSchema);
        assert_eq!(strict["response_format"]["type"], "json_schema");
        assert_eq!(strict["response_format"]["json_schema"]["strict"], true);
        let with_schema = request(StructuredMode::JsonObjectSchema);
        assert_eq!(with_schema["response_format"]["type"], "json_object");
        assert_eq!(
            with_schema["response_format"]["schema"],
            strict["response_format"]["json_schema"]["schema"]
        );
        let system = |v: &Value| v["messages"][0]["content"].as_str().unwrap().to_string();
        assert_eq!(
            system(&strict),
            system(&with_schema),
            "the server holds the reply to the schema"
        );
        let object = request(StructuredMode::JsonObject);
        assert_eq!(object["response_format"], json!({"type": "json_object"}));
        let prompt = request(StructuredMode::Prompt);
        assert!(prompt.get("response_format").is_none());
        for v in [&object, &prompt] {
            // The schema, with the topics' enum, is in the prompt itself.
            let text = system(v);
            let at = text.find("{\"").unwrap();
            let schema: Value = serde_json::from_str(&text[at..]).unwrap();
            assert_eq!(schema, strict["response_format"]["json_schema"]["schema"]);
        }
        assert!(
            shape
                .clone()
                .with_mode(StructuredMode::JsonObject, BudgetParameter::MaxTokens)
                .fixed_tokens(1)
                > shape.fixed_tokens(1)
        );
        let follow = body(
            &shape.prefix(1),
            "C: hi",
            "{\"role\":\"user\",\"content\":\"again\"}",
        );
        let v: Value = serde_json::from_str(&follow).unwrap();
        assert_eq!(v["messages"][2]["content"], "again");
    }
}
