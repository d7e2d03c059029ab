//! The chat-completions request: [`ChatRequest`] (wire shape, parsing with
//! located errors), [`RequestLimits`] and [`ValidRequest`].
//!
//! Parsing is lenient where OpenAI's shape has open sets (roles, content part
//! types, `tool_choice`) so that [`ChatRequest::validate`] can name the
//! offending field, and everything unknown is kept verbatim (`extra`) so a
//! request forwarded to a cloud loses nothing.
//!
//! Cut: `types` (messages, content, tools, tool choice, priority), `shape`
//! (JSON types of every field, checked before serde so errors name the
//! field), `validate` (limits and semantics into a [`ValidRequest`]).
//! Not here: tool schemas themselves (`schema`), prompt rendering
//! (`chat::template`).

mod shape;
mod types;
mod validate;

use shape::check_shape;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};
pub use types::*;

/// A chat-completions request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Return the log probability of each generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// With `logprobs`: also the N (0..=20) most likely tokens at each position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// moe-edge: 0..=9 or `safety|high|normal|low`.
    #[serde(
        rename = "x-priority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub x_priority: Option<PriorityField>,
    /// moe-edge: answer within this many milliseconds of arrival, or fail.
    #[serde(
        rename = "x-deadline-ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub x_deadline_ms: Option<u64>,
    /// moe-edge: the confidence gate for this request (replaces the board's
    /// `cascade.min_confidence`; 0 turns it off).
    #[serde(
        rename = "x-min-confidence",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub x_min_confidence: Option<f64>,
    /// MQTT 3.1.1 clients: where to publish the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_topic: Option<String>,
    /// MQTT 3.1.1 clients: correlation id echoed in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Limits applied by [`ChatRequest::validate`] (and the payload size by [`ChatRequest::parse`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_messages: usize,
    pub max_tools: usize,
    pub max_stop: usize,
    /// Requests asking for more completion tokens are rejected (`param: max_tokens`).
    pub max_completion_tokens: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 1 << 20,
            max_messages: 256,
            max_tools: 128,
            max_stop: 4,
            max_completion_tokens: 1 << 20,
        }
    }
}

/// A request that passed validation, with its knobs resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub request: ChatRequest,
    pub priority: Priority,
    pub deadline_ms: Option<u64>,
    /// `x-min-confidence`, when the request sets its own gate.
    pub min_confidence: Option<f32>,
    /// `logprobs: true`: how many alternatives per token (`top_logprobs`, 0 if absent).
    pub logprobs: Option<usize>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Explicit, else `auto` with tools and `none` without.
    pub tool_choice: ToolChoice,
    /// Images, audio or other non-text parts: the cloud's job.
    pub non_text: bool,
}

impl std::ops::Deref for ValidRequest {
    type Target = ChatRequest;
    fn deref(&self) -> &ChatRequest {
        &self.request
    }
}

impl ChatRequest {
    /// Parses a body: size, UTF-8, JSON syntax, then shape, each with its own
    /// code; a field of the wrong type is `invalid_request` naming the field.
    pub fn parse(body: &[u8], max_body_bytes: usize) -> Result<ChatRequest, ApiError> {
        if body.len() > max_body_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is {} bytes; the limit is {max_body_bytes}",
                    body.len()
                ),
            ));
        }
        let text = std::str::from_utf8(body).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidUtf8,
                format!("request body is not UTF-8 (at byte {})", e.valid_up_to()),
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("request body is not JSON: {e}"),
            )
        })?;
        ChatRequest::from_value(value)
    }

    /// Builds a request from a parsed JSON value (shape errors are located).
    pub fn from_value(value: Value) -> Result<ChatRequest, ApiError> {
        check_shape(&value)?;
        serde_json::from_value(value)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid request: {e}")))
    }

    /// The request to forward to an OpenAI-compatible upstream (a cloud):
    /// `model` replaced, moe-edge's own fields (`x-priority`,
    /// `x-deadline-ms`, `x-min-confidence`, `reply_topic`, `id`) removed, `max_tokens` sent as
    /// `max_completion_tokens`; everything else (non-text parts, unknown
    /// fields) untouched.
    pub fn to_upstream(&self, model: &str) -> ChatRequest {
        let mut r = self.clone();
        r.model = Some(model.to_string());
        r.x_priority = None;
        r.x_deadline_ms = None;
        r.x_min_confidence = None;
        r.reply_topic = None;
        r.id = None;
        r.max_completion_tokens = self.max_tokens();
        r.max_tokens = None;
        r
    }

    /// The JSON value of this request (everything kept).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("request serialises")
    }

    pub fn tools(&self) -> &[Tool] {
        self.tools.as_deref().unwrap_or(&[])
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Images, audio or other non-text parts anywhere in the conversation.
    pub fn has_non_text_content(&self) -> bool {
        self.messages
            .iter()
            .any(|m| m.content.as_ref().is_some_and(Content::has_non_text))
    }

    /// What `x-grounded` strings are copied from: the text of every user and
    /// tool message, in order, joined by NUL (a grounded value never holds
    /// NUL, so none spans two messages). System and assistant messages are
    /// left out: a grounded value is what the user said or a tool returned,
    /// not the app's instructions or the model's own earlier words.
    pub fn grounding_text(&self) -> String {
        self.messages
            .iter()
            .filter(|m| matches!(m.role, Role::User | Role::Tool))
            .map(Message::text)
            .collect::<Vec<_>>()
            .join("\0")
    }

    /// The conversation reduced to text (non-text parts dropped, text parts joined by `\n`).
    pub fn text_messages(&self) -> Vec<TextMessage> {
        self.messages
            .iter()
            .map(|m| TextMessage {
                role: m.role.clone(),
                content: m.text(),
                name: m.name.clone(),
                tool_calls: m.tool_calls.clone().unwrap_or_default(),
                tool_call_id: m.tool_call_id.clone(),
            })
            .collect()
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }

    /// `x-priority` resolved; the default when absent or invalid.
    pub fn priority(&self) -> Priority {
        self.x_priority
            .as_ref()
            .and_then(Priority::from_field)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
