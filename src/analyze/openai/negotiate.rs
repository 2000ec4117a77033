//! What a server accepts, found out by asking: how it is asked for JSON of
//! the result schema ([`StructuredMode`], most exact first, stepped down on
//! a refusal that names `response_format`), and which parameter carries the
//! reply's token budget ([`BudgetParameter`], switched when a server ignores
//! or refuses the one sent). What an endpoint learns is an
//! [`EndpointMemory`], stored in the database so the next run starts there.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::CallError;

/// How an endpoint is asked for JSON of the result schema.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum StructuredMode {
    /// `response_format: {"type": "json_schema", "json_schema": {…, "strict":
    /// true}}`: OpenAI, Azure OpenAI, vLLM, recent llama.cpp.
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": {…}}`:
    /// llama-cpp-python's server, which enforces the schema's keys and types.
    JsonObjectSchema,
    /// `response_format: {"type": "json_object"}`, the schema in the system prompt.
    JsonObject,
    /// No `response_format` at all, the schema in the system prompt
    /// (`structured_output = false`, or a server refusing even JSON mode).
    Prompt,
}

impl StructuredMode {
    /// The next, less demanding mode after a refusal of this one.
    pub fn fallback(self) -> Option<Self> {
        match self {
            StructuredMode::JsonSchema => Some(StructuredMode::JsonObjectSchema),
            StructuredMode::JsonObjectSchema => Some(StructuredMode::JsonObject),
            StructuredMode::JsonObject => Some(StructuredMode::Prompt),
            StructuredMode::Prompt => None,
        }
    }

    /// Whether the schema travels in the system prompt (the server does not
    /// hold the reply to it).
    pub fn schema_in_prompt(self) -> bool {
        matches!(self, StructuredMode::JsonObject | StructuredMode::Prompt)
    }

    /// For people: `json_schema`, `json_object with the schema`, …
    pub fn describe(self) -> &'static str {
        match self {
            StructuredMode::JsonSchema => "response_format json_schema (strict)",
            StructuredMode::JsonObjectSchema => "response_format json_object with the schema",
            StructuredMode::JsonObject => "response_format json_object, the schema in the prompt",
            StructuredMode::Prompt => "no response_format, the schema in the prompt",
        }
    }
}

/// The request parameter carrying the reply's token budget.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BudgetParameter {
    MaxTokens,
    MaxCompletionTokens,
}

impl BudgetParameter {
    pub fn name(self) -> &'static str {
        match self {
            BudgetParameter::MaxTokens => "max_tokens",
            BudgetParameter::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    pub fn other(self) -> Self {
        match self {
            BudgetParameter::MaxTokens => BudgetParameter::MaxCompletionTokens,
            BudgetParameter::MaxCompletionTokens => BudgetParameter::MaxTokens,
        }
    }
}

/// What an endpoint has learnt about itself, kept in the database (one row
/// per endpoint: its URL and model) so the next run starts there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointMemory {
    /// The structured-output mode that works.
    pub structured: Option<StructuredMode>,
    /// The budget parameter that is honoured.
    pub budget_parameter: Option<BudgetParameter>,
    pub learned_at: DateTime<Utc>,
    /// What taught it (the server's refusal, or `check`'s probe).
    pub reason: String,
}

/// Whether a refusal is of the `response_format` sent: an answer of 400,
/// 422 or 500 (llama-cpp-python answers a request it cannot validate with a
/// 500) whose error names `response_format` or `json_schema`, as its
/// `param`, as FastAPI's location of the invalid field, or — for the
/// servers that name it nowhere else — in its message. This is the one
/// place an error's text is read: the alternative is never learning that
/// a server refuses the schema.
pub fn refuses_format(error: &CallError) -> bool {
    let Some(status) = error.status() else {
        return false;
    };
    let Some(api) = error.api_error() else {
        return false;
    };
    let names = |text: &str| text.contains("response_format") || text.contains("json_schema");
    matches!(status, 400 | 422 | 500)
        && (api.param.as_deref().is_some_and(names) || names(&api.message))
}

/// Whether a 400 refuses `parameter` itself (OpenAI's reasoning models
/// refuse `max_tokens`, saying so in `param`).
pub fn refuses_parameter(error: &CallError, parameter: BudgetParameter) -> bool {
    error.status() == Some(400)
        && error
            .api_error()
            .and_then(|e| e.param.as_deref())
            .is_some_and(|p| p == parameter.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::openai::client::ApiError;

    fn answer(status: u16, body: &str) -> CallError {
        CallError::Status {
            status,
            error: ApiError::parse(body.as_bytes()),
            retry_after: None,
        }
    }

    #[test]
    fn refusals_of_the_format_are_recognised_as_each_server_words_them() {
        // llama-cpp-python: a 500 with pydantic's message, no param.
        let llama = answer(
            500,
            r#"{"error":{"message":"1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]","type":"internal_server_error","param":null,"code":null}}"#,
        );
        assert!(refuses_format(&llama));
        // FastAPI's 422, by location; OpenAI-style 400, by param.
        assert!(refuses_format(&answer(
            422,
            r#"{"detail":[{"loc":["body","response_format","type"],"msg":"Input should be 'text' or 'json_object'"}]}"#
        )));
        assert!(refuses_format(&answer(
            400,
            r#"{"error":{"message":"Invalid value","type":"invalid_request_error","param":"response_format","code":null}}"#
        )));
        // Other refusals and failures are not about the format.
        assert!(!refuses_format(&answer(
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error"}}"#
        )));
        assert!(!refuses_format(&answer(
            503,
            r#"{"error":{"message":"response_format overloaded"}}"#
        )));
        assert!(!refuses_format(&CallError::Timeout("json_schema".into())));
        let max_tokens = answer(
            400,
            r#"{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}"#,
        );
        assert!(refuses_parameter(&max_tokens, BudgetParameter::MaxTokens));
        assert!(!refuses_parameter(
            &max_tokens,
            BudgetParameter::MaxCompletionTokens
        ));
        assert!(!refuses_format(&max_tokens));
    }

    #[test]
    fn modes_step_down_to_the_prompt_and_read_back_by_name() {
        let mut mode = StructuredMode::JsonSchema;
        let mut seen = vec![mode];
        while let Some(next) = mode.fallback() {
            mode = next;
            seen.push(mode);
        }
        assert_eq!(
            seen,
            [
                StructuredMode::JsonSchema,
                StructuredMode::JsonObjectSchema,
                StructuredMode::JsonObject,
                StructuredMode::Prompt
            ]
        );
        for m in seen {
            assert_eq!(m.to_string().parse::<StructuredMode>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
        }
        assert_eq!(
            "max_completion_tokens".parse::<BudgetParameter>().unwrap(),
            BudgetParameter::MaxCompletionTokens
        );
        assert_eq!(
            BudgetParameter::MaxTokens.other(),
            BudgetParameter::MaxCompletionTokens
        );
    }
}
