//! The parts of a chat request: roles, content and its parts, messages,
//! tools and tool choice, stop sequences, stream options, priorities.
//! Wire shape only; validation is `validate`'s.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

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
