//! The chat-completions request: wire types, parsing with located errors,
//! validation into a [`ValidRequest`].
//!
//! Parsing is lenient where OpenAI's shape has open sets (roles, content part
//! types, `tool_choice`) so that [`ChatRequest::validate`] can name the
//! offending field, and everything unknown is kept verbatim (`extra`) so a
//! request forwarded to a cloud loses nothing. Not here: tool schemas
//! themselves (`engine::schema`), prompt rendering (`engine::template`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};

/// A message role. Unknown roles parse as `Other` and fail validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Role {
    System,
    /// OpenAI's newer name for `system`; rendered as `system`.
    Developer,
    User,
    #[default]
    Assistant,
    Tool,
    Other(String),
}

impl Role {
    pub fn as_str(&self) -> &str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Role {
        match s {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => Role::Other(other.to_string()),
        }
    }

    /// `system` and `developer`.
    pub fn is_system(&self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Role::parse(&s))
    }
}

/// `content`: a string or an array of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content: the string, or the text parts joined by `\n`
    /// (non-text parts are left out).
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.as_text()).collect();
                texts.join("\n")
            }
        }
    }

    /// Whether any part is not text (image, audio, file, ...).
    pub fn has_non_text(&self) -> bool {
        match self {
            Content::Text(_) => false,
            Content::Parts(parts) => parts.iter().any(|p| p.as_text().is_none()),
        }
    }

    /// No text and no parts.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(s) => s.is_empty(),
            Content::Parts(parts) => parts.is_empty(),
        }
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_string())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

/// One content part. Text parts are typed; every other part is kept verbatim
/// (the whole part object) so it reaches a cloud untouched.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    /// `{"type": "text", "text": ...}`; other keys of the part kept in `extra`.
    Text {
        text: String,
        extra: Map<String, Value>,
    },
    /// `{"type": "image_url", "image_url": {...}}`, verbatim.
    ImageUrl(Value),
    /// `{"type": "input_audio", "input_audio": {...}}`, verbatim.
    InputAudio(Value),
    /// Any other part (or a malformed one), verbatim.
    Other(Value),
}

impl ContentPart {
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text {
            text: text.into(),
            extra: Map::new(),
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentPart::Text { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The part's `type` string, if it has one.
    pub fn part_type(&self) -> Option<&str> {
        match self {
            ContentPart::Text { .. } => Some("text"),
            ContentPart::ImageUrl(_) => Some("image_url"),
            ContentPart::InputAudio(_) => Some("input_audio"),
            ContentPart::Other(v) => v.get("type").and_then(Value::as_str),
        }
    }
}

impl Serialize for ContentPart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ContentPart::Text { text, extra } => {
                let mut m = Map::new();
                m.insert("type".into(), Value::String("text".into()));
                m.insert("text".into(), Value::String(text.clone()));
                for (k, v) in extra {
                    m.insert(k.clone(), v.clone());
                }
                m.serialize(s)
            }
            ContentPart::ImageUrl(v) | ContentPart::InputAudio(v) | ContentPart::Other(v) => {
                v.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let kind = v.get("type").and_then(Value::as_str).map(str::to_string);
        Ok(match kind.as_deref() {
            Some("text") if v.get("text").is_some_and(Value::is_string) => {
                let Value::Object(mut m) = v else {
                    unreachable!("has keys")
                };
                m.remove("type");
                let Some(Value::String(text)) = m.remove("text") else {
                    unreachable!("checked")
                };
                ContentPart::Text { text, extra: m }
            }
            Some("image_url") => ContentPart::ImageUrl(v),
            Some("input_audio") => ContentPart::InputAudio(v),
            _ => ContentPart::Other(v),
        })
    }
}

/// A tool call, as in an assistant message (request history and replies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

impl ToolCall {
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }
}

fn function_kind() -> String {
    "function".into()
}

/// `{name, arguments}`; `arguments` is a JSON text (a string on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default = "missing_role")]
    pub role: Role,
    /// `null` and absent are the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn missing_role() -> Role {
    Role::Other(String::new())
}

impl Message {
    pub fn new(role: Role, content: impl Into<Content>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }
    pub fn system(content: impl Into<Content>) -> Self {
        Message::new(Role::System, content)
    }
    pub fn user(content: impl Into<Content>) -> Self {
        Message::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<Content>) -> Self {
        Message::new(Role::Assistant, content)
    }
    /// An assistant turn that called tools.
    pub fn assistant_tool_calls(calls: Vec<ToolCall>) -> Self {
        Message {
            content: None,
            tool_calls: Some(calls),
            ..Message::new(Role::Assistant, "")
        }
    }
    /// A tool result answering `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            ..Message::new(Role::Tool, content)
        }
    }

    /// The text of the content ("" when absent).
    pub fn text(&self) -> String {
        self.content.as_ref().map(Content::text).unwrap_or_default()
    }
}

/// A message reduced to text, for prompt rendering (also read from corpus
/// files: `{"role": ..., "content": ...}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextMessage {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl TextMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        TextMessage {
            role,
            content: content.into(),
            ..TextMessage::default()
        }
    }
}

/// `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub function: FunctionDef,
    /// e.g. the catalogue's `x-scenarios`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Tool {
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
                extra: Map::new(),
            },
            extra: Map::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.function.name
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionDef {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON schema of `type: object`; absent means "no arguments".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_choice`. Anything unrecognised parses as `Invalid` and fails validation.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    /// `{"type": "function", "function": {"name": ...}}`.
    Function(String),
    Invalid(Value),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
            ToolChoice::Invalid(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::String(s) if s == "none" => ToolChoice::None,
            Value::String(s) if s == "auto" => ToolChoice::Auto,
            Value::String(s) if s == "required" => ToolChoice::Required,
            Value::Object(m)
                if m.get("type").and_then(Value::as_str) == Some("function") && m.len() == 2 =>
            {
                match m
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) if m["function"].as_object().is_some_and(|f| f.len() == 1) => {
                        ToolChoice::Function(name.to_string())
                    }
                    _ => ToolChoice::Invalid(v),
                }
            }
            _ => ToolChoice::Invalid(v),
        })
    }
}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `x-priority` as sent: a level 0..=9 or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PriorityField {
    Level(i64),
    Name(String),
}

/// A resolved priority, 0..=9, larger is more urgent (as JMS): `low` = 2,
/// `normal` = 4 (the default), `high` = 7, `safety` = 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    pub const LOW: Priority = Priority(2);
    pub const NORMAL: Priority = Priority(4);
    pub const HIGH: Priority = Priority(7);
    pub const SAFETY: Priority = Priority(9);
    pub const MAX: Priority = Priority(9);

    /// Resolves `x-priority`; `None` when out of range or an unknown name.
    pub fn from_field(f: &PriorityField) -> Option<Priority> {
        match f {
            PriorityField::Level(n) if (0..=9).contains(n) => Some(Priority(*n as u8)),
            PriorityField::Level(_) => None,
            PriorityField::Name(s) => match s.as_str() {
                "safety" => Some(Priority::SAFETY),
                "high" => Some(Priority::HIGH),
                "normal" => Some(Priority::NORMAL),
                "low" => Some(Priority::LOW),
                _ => None,
            },
        }
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

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

    /// Checks everything the daemon relies on; the first problem found is returned.
    pub fn validate(&self, limits: &RequestLimits) -> Result<ValidRequest, ApiError> {
        self.validate_messages(limits)?;
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid_request(
                    format!("n = {n} is not supported; only n = 1"),
                    "n",
                ));
            }
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(ApiError::invalid_request(
                    format!("temperature {t} is out of range 0..=2"),
                    "temperature",
                ));
            }
        }
        if let Some(p) = self.top_p {
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(ApiError::invalid_request(
                    format!("top_p {p} is out of range 0..=1"),
                    "top_p",
                ));
            }
        }
        for (field, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if let Some(v) = v {
                if v == 0 || v > limits.max_completion_tokens {
                    return Err(ApiError::invalid_request(
                        format!(
                            "{field} = {v} is out of range 1..={}",
                            limits.max_completion_tokens
                        ),
                        field,
                    ));
                }
            }
        }
        let stop = self.stop_sequences();
        if stop.len() > limits.max_stop {
            return Err(ApiError::invalid_request(
                format!("at most {} stop sequences", limits.max_stop),
                "stop",
            ));
        }
        if let Some(i) = stop.iter().position(String::is_empty) {
            let param = match self.stop {
                Some(Stop::Many(_)) => format!("stop[{i}]"),
                _ => "stop".to_string(),
            };
            return Err(ApiError::invalid_request(
                "stop sequences must not be empty",
                param,
            ));
        }
        let priority = match &self.x_priority {
            None => Priority::default(),
            Some(f) => Priority::from_field(f).ok_or_else(|| {
                ApiError::invalid_request(
                    "x-priority must be an integer 0..=9 or one of safety, high, normal, low",
                    "x-priority",
                )
            })?,
        };
        if self.x_deadline_ms == Some(0) {
            return Err(ApiError::invalid_request(
                "x-deadline-ms must be at least 1",
                "x-deadline-ms",
            ));
        }
        if let Some(n) = self.top_logprobs {
            if n > 20 {
                return Err(ApiError::invalid_request(
                    "top_logprobs must be at most 20",
                    "top_logprobs",
                ));
            }
            if self.logprobs != Some(true) {
                return Err(ApiError::invalid_request(
                    "top_logprobs needs logprobs: true",
                    "top_logprobs",
                ));
            }
        }
        if let Some(p) = self.x_min_confidence {
            if !(0.0..1.0).contains(&p) {
                return Err(ApiError::invalid_request(
                    "x-min-confidence must be a probability in 0..1 (0: no gate)",
                    "x-min-confidence",
                ));
            }
        }
        if let Some(t) = &self.reply_topic {
            if t.is_empty() || t.contains(['+', '#', '\0']) {
                return Err(ApiError::invalid_request(
                    "reply_topic must be a non-empty topic name without wildcards",
                    "reply_topic",
                ));
            }
        }
        if let Some(rf) = &self.response_format {
            match rf.get("type").and_then(Value::as_str) {
                Some("text" | "json_object" | "json_schema") => {}
                _ => {
                    return Err(ApiError::invalid_request(
                        "response_format.type must be text, json_object or json_schema",
                        "response_format.type",
                    ))
                }
            }
        }
        let tool_choice = self.validate_tools(limits)?;
        Ok(ValidRequest {
            request: self.clone(),
            priority,
            deadline_ms: self.x_deadline_ms,
            min_confidence: self.x_min_confidence.map(|p| p as f32),
            logprobs: (self.logprobs == Some(true))
                .then(|| self.top_logprobs.unwrap_or(0) as usize),
            max_tokens: self.max_tokens(),
            stop,
            stream: self.is_stream(),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            tool_choice,
            non_text: self.has_non_text_content(),
        })
    }

    fn validate_messages(&self, limits: &RequestLimits) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request(
                "messages must not be empty",
                "messages",
            ));
        }
        if self.messages.len() > limits.max_messages {
            return Err(ApiError::invalid_request(
                format!("at most {} messages", limits.max_messages),
                "messages",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            let at = |field: &str| format!("messages[{i}].{field}");
            if let Role::Other(r) = &m.role {
                let msg = if r.is_empty() {
                    "role is required".to_string()
                } else {
                    format!("unsupported role '{r}'; expected system, developer, user, assistant or tool")
                };
                return Err(ApiError::invalid_request(msg, at("role")));
            }
            if let Some(Content::Parts(parts)) = &m.content {
                for (j, p) in parts.iter().enumerate() {
                    let pat = |f: &str| format!("messages[{i}].content[{j}].{f}");
                    match (p, p.part_type()) {
                        (ContentPart::Text { .. }, _) => {}
                        (_, None) => {
                            return Err(ApiError::invalid_request(
                                "content part needs a string 'type'",
                                pat("type"),
                            ))
                        }
                        (_, Some("text")) => {
                            return Err(ApiError::invalid_request(
                                "text content part needs a string 'text'",
                                pat("text"),
                            ))
                        }
                        (_, Some(t)) if m.role != Role::User => {
                            return Err(ApiError::invalid_request(
                                format!("content part type '{t}' is only allowed in user messages"),
                                pat("type"),
                            ))
                        }
                        _ => {}
                    }
                }
            }
            let empty = m.content.as_ref().is_none_or(Content::is_empty);
            match m.role {
                Role::System | Role::Developer | Role::User => {
                    if empty {
                        return Err(ApiError::invalid_request(
                            format!("{} message content must not be empty", m.role),
                            at("content"),
                        ));
                    }
                    if m.tool_calls.is_some() {
                        return Err(ApiError::invalid_request(
                            "only assistant messages carry tool_calls",
                            at("tool_calls"),
                        ));
                    }
                }
                Role::Assistant => {
                    let calls = m.tool_calls.as_deref().unwrap_or(&[]);
                    if empty && calls.is_empty() {
                        return Err(ApiError::invalid_request(
                            "assistant message needs content or tool_calls",
                            at("content"),
                        ));
                    }
                    for (j, c) in calls.iter().enumerate() {
                        let cat = |f: &str| format!("messages[{i}].tool_calls[{j}].{f}");
                        if c.id.is_empty() {
                            return Err(ApiError::invalid_request(
                                "tool call id must not be empty",
                                cat("id"),
                            ));
                        }
                        if c.kind != "function" {
                            return Err(ApiError::invalid_request(
                                "tool call type must be 'function'",
                                cat("type"),
                            ));
                        }
                        if c.function.name.is_empty() {
                            return Err(ApiError::invalid_request(
                                "tool call function name must not be empty",
                                cat("function.name"),
                            ));
                        }
                    }
                }
                Role::Tool => {
                    if m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                        return Err(ApiError::invalid_request(
                            "tool message needs tool_call_id",
                            at("tool_call_id"),
                        ));
                    }
                    if m.content.is_none() {
                        return Err(ApiError::invalid_request(
                            "tool message needs content",
                            at("content"),
                        ));
                    }
                }
                Role::Other(_) => unreachable!("rejected above"),
            }
        }
        Ok(())
    }

    fn validate_tools(&self, limits: &RequestLimits) -> Result<ToolChoice, ApiError> {
        let tools = self.tools();
        if tools.len() > limits.max_tools {
            return Err(ApiError::invalid_tools(
                format!("at most {} tools", limits.max_tools),
                "tools",
            ));
        }
        for (i, t) in tools.iter().enumerate() {
            let at = |f: &str| format!("tools[{i}].{f}");
            if t.kind != "function" {
                return Err(ApiError::invalid_tools(
                    "tool type must be 'function'",
                    at("type"),
                ));
            }
            let name = &t.function.name;
            if name.is_empty() {
                return Err(ApiError::invalid_tools(
                    "function name is required",
                    at("function.name"),
                ));
            }
            if name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ApiError::invalid_tools(
                    format!("function name '{name}' must be 1..=64 of a-z, A-Z, 0-9, _ and -"),
                    at("function.name"),
                ));
            }
            if tools[..i].iter().any(|o| o.function.name == *name) {
                return Err(ApiError::invalid_tools(
                    format!("function name '{name}' is declared twice"),
                    at("function.name"),
                ));
            }
            if let Some(p) = &t.function.parameters {
                let is_object_schema = match p.get("type") {
                    None => p.is_object(),
                    Some(Value::String(s)) => s == "object",
                    Some(_) => false,
                };
                if !is_object_schema {
                    return Err(ApiError::invalid_tools(
                        "parameters must be a JSON schema of type 'object'",
                        at("function.parameters"),
                    ));
                }
                crate::engine::schema::check_schema(p).map_err(|e| {
                    ApiError::invalid_tools(
                        format!("invalid parameters schema: {e}"),
                        at("function.parameters"),
                    )
                })?;
            }
        }
        let choice = match &self.tool_choice {
            None if tools.is_empty() => ToolChoice::None,
            None => ToolChoice::Auto,
            Some(ToolChoice::Invalid(_)) => {
                return Err(ApiError::invalid_tools(
                    "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    "tool_choice",
                ))
            }
            Some(ToolChoice::Required) if tools.is_empty() => {
                return Err(ApiError::invalid_tools(
                    "tool_choice 'required' needs tools",
                    "tool_choice",
                ))
            }
            Some(ToolChoice::Function(name)) if !tools.iter().any(|t| &t.function.name == name) => {
                return Err(ApiError::invalid_tools(
                    format!("tool_choice names '{name}', which is not in tools"),
                    "tool_choice.function.name",
                ))
            }
            Some(c) => c.clone(),
        };
        Ok(choice)
    }
}

/// JSON type names for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Clone, Copy)]
enum Want {
    Str,
    Bool,
    Num,
    /// Non-negative integer.
    Count,
    Int,
    Obj,
    Arr,
    /// String or array of strings.
    StrOrStrs,
    /// String, array or null (message content).
    Content,
    /// Integer or string.
    IntOrStr,
}

fn check(v: Option<&Value>, path: &str, want: Want) -> Result<(), ApiError> {
    let Some(v) = v else { return Ok(()) };
    if v.is_null() {
        return Ok(());
    }
    let ok = match want {
        Want::Str => v.is_string(),
        Want::Bool => v.is_boolean(),
        Want::Num => v.is_number(),
        Want::Count => v.is_u64(),
        Want::Int => v.is_i64() || v.is_u64(),
        Want::Obj => v.is_object(),
        Want::Arr => v.is_array(),
        Want::StrOrStrs => {
            v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        }
        Want::Content => v.is_string() || v.is_array(),
        Want::IntOrStr => v.is_string() || v.is_i64(),
    };
    if ok {
        return Ok(());
    }
    let expected = match want {
        Want::Str => "a string",
        Want::Bool => "a boolean",
        Want::Num => "a number",
        Want::Count => "a non-negative integer",
        Want::Int => "an integer",
        Want::Obj => "an object",
        Want::Arr => "an array",
        Want::StrOrStrs => "a string or an array of strings",
        Want::Content => "a string or an array of content parts",
        Want::IntOrStr => "an integer or a string",
    };
    Err(ApiError::invalid_request(
        format!("{path} must be {expected}, not {}", type_name(v)),
        path,
    ))
}

/// Checks the JSON types of every field the typed structs read, so a type
/// error names its field instead of surfacing as a serde message.
fn check_shape(v: &Value) -> Result<(), ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("request must be a JSON object, not {}", type_name(v)),
        ));
    };
    let g = |k: &str| obj.get(k);
    check(g("model"), "model", Want::Str)?;
    check(g("messages"), "messages", Want::Arr)?;
    check(g("tools"), "tools", Want::Arr)?;
    check(g("parallel_tool_calls"), "parallel_tool_calls", Want::Bool)?;
    check(g("stream"), "stream", Want::Bool)?;
    check(g("stream_options"), "stream_options", Want::Obj)?;
    if let Some(o) = g("stream_options") {
        check(
            o.get("include_usage"),
            "stream_options.include_usage",
            Want::Bool,
        )?;
    }
    check(g("max_tokens"), "max_tokens", Want::Count)?;
    check(
        g("max_completion_tokens"),
        "max_completion_tokens",
        Want::Count,
    )?;
    check(g("temperature"), "temperature", Want::Num)?;
    check(g("top_p"), "top_p", Want::Num)?;
    check(g("stop"), "stop", Want::StrOrStrs)?;
    check(g("seed"), "seed", Want::Int)?;
    check(g("logprobs"), "logprobs", Want::Bool)?;
    check(g("top_logprobs"), "top_logprobs", Want::Count)?;
    check(g("n"), "n", Want::Count)?;
    check(g("response_format"), "response_format", Want::Obj)?;
    check(g("user"), "user", Want::Str)?;
    check(g("x-priority"), "x-priority", Want::IntOrStr)?;
    check(g("x-deadline-ms"), "x-deadline-ms", Want::Count)?;
    check(g("x-min-confidence"), "x-min-confidence", Want::Num)?;
    check(g("reply_topic"), "reply_topic", Want::Str)?;
    check(g("id"), "id", Want::Str)?;
    if let Some(Value::Array(msgs)) = g("messages") {
        for (i, m) in msgs.iter().enumerate() {
            let at = format!("messages[{i}]");
            if !m.is_object() {
                return Err(ApiError::invalid_request(
                    format!("{at} must be an object, not {}", type_name(m)),
                    at,
                ));
            }
            check(m.get("role"), &format!("{at}.role"), Want::Str)?;
            check(m.get("content"), &format!("{at}.content"), Want::Content)?;
            check(m.get("name"), &format!("{at}.name"), Want::Str)?;
            check(
                m.get("tool_call_id"),
                &format!("{at}.tool_call_id"),
                Want::Str,
            )?;
            check(m.get("tool_calls"), &format!("{at}.tool_calls"), Want::Arr)?;
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                for (j, c) in calls.iter().enumerate() {
                    let cat = format!("{at}.tool_calls[{j}]");
                    check(Some(c), &cat, Want::Obj)?;
                    check(c.get("id"), &format!("{cat}.id"), Want::Str)?;
                    check(c.get("type"), &format!("{cat}.type"), Want::Str)?;
                    let f = c.get("function");
                    if f.is_none_or(Value::is_null) || c.get("id").is_none_or(Value::is_null) {
                        return Err(ApiError::invalid_request(
                            "tool call needs id and function",
                            cat,
                        ));
                    }
                    check(f, &format!("{cat}.function"), Want::Obj)?;
                    let f = f.expect("checked");
                    check(f.get("name"), &format!("{cat}.function.name"), Want::Str)?;
                    check(
                        f.get("arguments"),
                        &format!("{cat}.function.arguments"),
                        Want::Str,
                    )?;
                    if f.get("name").is_none_or(Value::is_null) {
                        return Err(ApiError::invalid_request(
                            "tool call needs a function name",
                            format!("{cat}.function.name"),
                        ));
                    }
                }
            }
        }
    }
    if let Some(Value::Array(tools)) = g("tools") {
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            if !t.is_object() {
                return Err(ApiError::invalid_tools(
                    format!("{at} must be an object, not {}", type_name(t)),
                    at,
                ));
            }
            let wrap = |e: ApiError| ApiError {
                code: ErrorCode::InvalidTools,
                ..e
            };
            check(t.get("type"), &format!("{at}.type"), Want::Str).map_err(wrap)?;
            check(t.get("function"), &format!("{at}.function"), Want::Obj).map_err(wrap)?;
            if let Some(f) = t.get("function") {
                check(f.get("name"), &format!("{at}.function.name"), Want::Str).map_err(wrap)?;
                check(
                    f.get("description"),
                    &format!("{at}.function.description"),
                    Want::Str,
                )
                .map_err(wrap)?;
                check(
                    f.get("strict"),
                    &format!("{at}.function.strict"),
                    Want::Bool,
                )
                .map_err(wrap)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(v.to_string().as_bytes(), 1 << 20)
    }

    fn valid(v: Value) -> Result<ValidRequest, ApiError> {
        parse(v)?.validate(&RequestLimits::default())
    }

    fn err(v: Value) -> ApiError {
        valid(v).expect_err("should fail")
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    fn full_request() -> Value {
        json!({
            "model": "assist-moe",
            "messages": [
                {"role": "system", "content": "You are a car."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "f1"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Kyoto\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "thanks", "name": "alice"}
            ],
            "tools": [weather_tool()],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 64,
            "max_completion_tokens": 32,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": ["\n\n", "END"],
            "seed": 42,
            "n": 1,
            "response_format": {"type": "text"},
            "user": "u1",
            "x-priority": "safety",
            "x-deadline-ms": 1500,
            "x-min-confidence": 0.6,
            "logprobs": true,
            "top_logprobs": 3,
            "reply_topic": "apps/hud/replies",
            "id": "req-7",
            "enable_thinking": false,
            "metadata": {"a": [1, 2, {"b": null}]}
        })
    }

    /// Null and absent are the same: drop nulls for comparison.
    fn strip_nulls(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip_nulls(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn grounding_text_is_the_user_and_tool_messages() {
        let req = parse(json!({"model": "m", "messages": [
            {"role": "system", "content": "You are the in-car assistant."},
            {"role": "user", "content": "Text Anna"},
            {"role": "assistant", "content": "What should I say?"},
            {"role": "tool", "tool_call_id": "c1", "content": "Anna Kim"},
            {"role": "user", "content": [{"type": "text", "text": "that I'm late"}]}
        ]}))
        .unwrap();
        assert_eq!(req.grounding_text(), "Text Anna\0Anna Kim\0that I'm late");
        let none = parse(json!({"model": "m", "messages": [
            {"role": "system", "content": "hi"}]}))
        .unwrap();
        assert_eq!(none.grounding_text(), "");
    }

    #[test]
    fn round_trip_keeps_everything() {
        let original = full_request();
        let req = parse(original.clone()).unwrap();
        let back = serde_json::to_value(&req).unwrap();
        // metadata contains a null inside an unknown field: kept verbatim.
        assert_eq!(back["metadata"], original["metadata"]);
        assert_eq!(strip_nulls(&back), strip_nulls(&original));
        let again: ChatRequest = serde_json::from_value(back).unwrap();
        assert_eq!(again, req);
    }

    #[test]
    fn typed_fields_are_read() {
        let req = parse(full_request()).unwrap();
        assert_eq!(req.max_tokens(), Some(32));
        assert_eq!(req.stop_sequences(), vec!["\n\n", "END"]);
        assert_eq!(req.priority(), Priority::SAFETY);
        assert!(req.has_non_text_content());
        assert_eq!(
            req.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(req.extra["enable_thinking"], json!(false));
        let Some(Content::Parts(parts)) = &req.messages[1].content else {
            panic!()
        };
        assert_eq!(parts[0].as_text(), Some("What is this?"));
        assert_eq!(parts[1].part_type(), Some("image_url"));
        assert_eq!(parts[2].part_type(), Some("input_audio"));
        assert_eq!(parts[3].part_type(), Some("file"));
        let text = req.text_messages();
        assert_eq!(text[1].content, "What is this?");
        assert_eq!(text[2].tool_calls[0].function.name, "get_weather");
        assert_eq!(text[3].tool_call_id.as_deref(), Some("call_1"));
        let v = req.validate(&RequestLimits::default()).unwrap();
        assert!(v.stream && v.include_usage && v.non_text);
        assert_eq!(v.deadline_ms, Some(1500));
        assert_eq!(v.min_confidence, Some(0.6));
        assert_eq!(v.logprobs, Some(3));
        assert_eq!(v.priority, Priority(9));
        assert_eq!(v.max_tokens, Some(32));
    }

    #[test]
    fn minimal_request_defaults() {
        let v = valid(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert_eq!(v.priority, Priority::NORMAL);
        assert_eq!(v.tool_choice, ToolChoice::None);
        assert!(!v.stream && !v.non_text);
        assert_eq!(v.max_tokens, None);
        assert!(v.stop.is_empty());
        let v = valid(json!({"messages": [{"role": "user", "content": "hi"}], "tools": [weather_tool()], "stop": "x", "max_tokens": 5})).unwrap();
        assert_eq!(v.tool_choice, ToolChoice::Auto);
        assert_eq!(v.stop, vec!["x"]);
        assert_eq!(v.max_tokens, Some(5));
        assert_eq!(v.tools()[0].name(), "get_weather");
    }

    #[test]
    fn parse_errors_have_their_codes() {
        let e = ChatRequest::parse(b"{\"messages\": [", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = ChatRequest::parse(b"{\"a\": \"\xff\"}", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidUtf8);
        let e = ChatRequest::parse(&[b' '; 101], 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        let e = ChatRequest::parse(b"[1]", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [], "temperature": "hot"}), "temperature"),
            (json!({"messages": [], "max_tokens": -1}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 1.5}), "max_tokens"),
            (json!({"messages": [], "stream": "yes"}), "stream"),
            (json!({"messages": [], "stop": [1]}), "stop"),
            (json!({"messages": [], "x-priority": 1.5}), "x-priority"),
            (
                json!({"messages": [], "x-deadline-ms": "soon"}),
                "x-deadline-ms",
            ),
            (json!({"messages": [], "reply_topic": 5}), "reply_topic"),
            (json!({"messages": [], "logprobs": "yes"}), "logprobs"),
            (json!({"messages": [], "top_logprobs": -1}), "top_logprobs"),
            (json!({"messages": [3]}), "messages[0]"),
            (
                json!({"messages": [{"role": 1, "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        let e = parse(
            json!({"messages": [], "tools": [{"type": "function", "function": {"name": 3}}]}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTools);
        assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let user = json!({"role": "user", "content": "hi"});
        let cases: Vec<(Value, ErrorCode, &str)> = vec![
            (
                json!({"messages": []}),
                ErrorCode::InvalidRequest,
                "messages",
            ),
            (json!({}), ErrorCode::InvalidRequest, "messages"),
            (
                json!({"messages": [{"role": "robot", "content": "x"}]}),
                ErrorCode::InvalidRequest,
                "messages[0].role",
            ),
            (
                json!({"messages": [{"content": "x"}]}),
                ErrorCode::InvalidRequest,
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": ""}]}),
                ErrorCode::InvalidRequest,
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": []}]}),
                ErrorCode::InvalidRequest,
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                ErrorCode::InvalidRequest,
                "messages[0].content",
            ),
            (
                json!({"messages": [user, {"role": "assistant", "content": null}]}),
                ErrorCode::InvalidRequest,
                "messages[1].content",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                ErrorCode::InvalidRequest,
                "messages[0].tool_call_id",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                ErrorCode::InvalidRequest,
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
                ErrorCode::InvalidRequest,
                "messages[0].content[0].text",
            ),
            (
                json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                ErrorCode::InvalidRequest,
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [user], "n": 2}),
                ErrorCode::InvalidRequest,
                "n",
            ),
            (
                json!({"messages": [user], "temperature": 2.5}),
                ErrorCode::InvalidRequest,
                "temperature",
            ),
            (
                json!({"messages": [user], "temperature": -0.1}),
                ErrorCode::InvalidRequest,
                "temperature",
            ),
            (
                json!({"messages": [user], "top_p": 1.5}),
                ErrorCode::InvalidRequest,
                "top_p",
            ),
            (
                json!({"messages": [user], "max_tokens": 0}),
                ErrorCode::InvalidRequest,
                "max_tokens",
            ),
            (
                json!({"messages": [user], "stop": ["a", "b", "c", "d", "e"]}),
                ErrorCode::InvalidRequest,
                "stop",
            ),
            (
                json!({"messages": [user], "stop": ["a", ""]}),
                ErrorCode::InvalidRequest,
                "stop[1]",
            ),
            (
                json!({"messages": [user], "x-priority": 10}),
                ErrorCode::InvalidRequest,
                "x-priority",
            ),
            (
                json!({"messages": [user], "x-priority": "urgent"}),
                ErrorCode::InvalidRequest,
                "x-priority",
            ),
            (
                json!({"messages": [user], "x-deadline-ms": 0}),
                ErrorCode::InvalidRequest,
                "x-deadline-ms",
            ),
            (
                json!({"messages": [user], "top_logprobs": 21, "logprobs": true}),
                ErrorCode::InvalidRequest,
                "top_logprobs",
            ),
            (
                json!({"messages": [user], "top_logprobs": 2}),
                ErrorCode::InvalidRequest,
                "top_logprobs",
            ),
            (
                json!({"messages": [user], "x-min-confidence": 1.0}),
                ErrorCode::InvalidRequest,
                "x-min-confidence",
            ),
            (
                json!({"messages": [user], "x-min-confidence": "high"}),
                ErrorCode::InvalidRequest,
                "x-min-confidence",
            ),
            (
                json!({"messages": [user], "reply_topic": "a/+/b"}),
                ErrorCode::InvalidRequest,
                "reply_topic",
            ),
            (
                json!({"messages": [user], "response_format": {"type": "xml"}}),
                ErrorCode::InvalidRequest,
                "response_format.type",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "function", "function": {"description": "no name"}}]}),
                ErrorCode::InvalidTools,
                "tools[0].function.name",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
                ErrorCode::InvalidTools,
                "tools[0].function.name",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
                ErrorCode::InvalidTools,
                "tools[0].type",
            ),
            (
                json!({"messages": [user], "tools": [weather_tool(), weather_tool()]}),
                ErrorCode::InvalidTools,
                "tools[1].function.name",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}),
                ErrorCode::InvalidTools,
                "tools[0].function.parameters",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
                ErrorCode::InvalidTools,
                "tools[0].function.parameters",
            ),
            (
                json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}}}]}),
                ErrorCode::InvalidTools,
                "tools[0].function.parameters",
            ),
            (
                json!({"messages": [user], "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
                ErrorCode::InvalidTools,
                "tool_choice.function.name",
            ),
            (
                json!({"messages": [user], "tool_choice": "required"}),
                ErrorCode::InvalidTools,
                "tool_choice",
            ),
            (
                json!({"messages": [user], "tool_choice": "sometimes"}),
                ErrorCode::InvalidTools,
                "tool_choice",
            ),
        ];
        for (body, code, param) in cases {
            let e = err(body.clone());
            assert_eq!(
                (e.code, e.param.as_deref()),
                (code, Some(param)),
                "{body}: {e}"
            );
        }
    }

    #[test]
    fn accepted_edge_cases() {
        let user = json!({"role": "user", "content": "hi"});
        for body in [
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "noargs"}}]}),
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
            json!({"messages": [user], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x-ui": 1, "$defs": {}, "format": "x"}}}]}),
            json!({"messages": [{"role": "developer", "content": "be brief"}, user], "x-priority": 0, "temperature": 0, "top_p": 1}),
            json!({"messages": [user], "tools": [weather_tool()], "tool_choice": "none"}),
            json!({"messages": [user, {"role": "assistant", "content": "ok"}, {"role": "tool", "tool_call_id": "c", "content": ""}]}),
        ] {
            valid(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
        }
        let limits = RequestLimits {
            max_messages: 1,
            ..RequestLimits::default()
        };
        let req = parse(json!({"messages": [user, user]})).unwrap();
        assert_eq!(
            req.validate(&limits).unwrap_err().param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn priority_names_and_levels() {
        for (f, p) in [
            (json!(0), 0),
            (json!(9), 9),
            (json!("low"), 2),
            (json!("normal"), 4),
            (json!("high"), 7),
            (json!("safety"), 9),
        ] {
            let field: PriorityField = serde_json::from_value(f).unwrap();
            assert_eq!(Priority::from_field(&field), Some(Priority(p)));
        }
        assert!(Priority::SAFETY > Priority::HIGH && Priority::HIGH > Priority::NORMAL);
    }

    #[test]
    fn upstream_copy_drops_only_our_fields() {
        let req = parse(full_request()).unwrap();
        let up = req.to_upstream("qwen3-max").to_value();
        assert_eq!(up["model"], "qwen3-max");
        assert_eq!(up["max_completion_tokens"], 32);
        for gone in [
            "x-priority",
            "x-deadline-ms",
            "x-min-confidence",
            "reply_topic",
            "id",
            "max_tokens",
        ] {
            assert!(up.get(gone).is_none(), "{gone}");
        }
        let orig = full_request();
        assert_eq!(up["messages"][1], orig["messages"][1]);
        assert_eq!(up["metadata"], orig["metadata"]);
        assert_eq!(up["enable_thinking"], false);
    }

    #[test]
    fn builders_serialise_like_openai() {
        let m = Message::assistant_tool_calls(vec![ToolCall::new("call_1", "f", "{}")]);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        );
        assert_eq!(
            serde_json::to_value(Message::tool("call_1", "22")).unwrap(),
            json!({"role": "tool", "content": "22", "tool_call_id": "call_1"})
        );
        assert_eq!(
            serde_json::to_value(ToolChoice::Required).unwrap(),
            json!("required")
        );
    }
}
