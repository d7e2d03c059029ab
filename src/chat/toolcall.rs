//! Model output → OpenAI tool calls.
//!
//! Owns: splitting the demo model's text into content, `<tool_call>{json}</tool_call>`
//! calls and the `<|fallback|>` marker ([`parse_output`]), checking calls
//! against the request's tools and `tool_choice` ([`validate_calls`],
//! [`check_tool_choice`]), deciding whether the reply must go up the cascade
//! ([`ParsedOutput::needs_fallback`]), deterministic call ids
//! ([`tool_call_id`]), building the OpenAI assistant message, and holding back
//! streamed text that may be the start of a marker ([`StreamSplitter`]).
//! Does not own: generation, sampling or stop handling (the rest of `engine`),
//! JSON-schema rules (`schema`), what the cascade does with a fallback.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::openai::{AssistantMessage, FinishReason, Tool, ToolCall, ToolChoice};
use crate::schema::{self, SchemaError};

pub const TOOL_CALL_OPEN: &str = "<tool_call>";
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";
pub const FALLBACK_MARKER: &str = "<|fallback|>";
/// End-of-turn tokens; text after one is ignored.
pub const END_MARKERS: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

/// A call as the model wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCall {
    pub name: String,
    /// Always a JSON object after parsing (a string holding JSON is decoded).
    pub arguments: Value,
}

/// The model's output, split.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedOutput {
    /// Text outside calls and markers, trimmed; `None` when empty.
    pub content: Option<String>,
    /// Well-formed calls, in order.
    pub calls: Vec<RawCall>,
    /// The model emitted `<|fallback|>`.
    pub fallback: bool,
    /// The first malformed call: unclosed tag, invalid JSON, no name.
    pub malformed: Option<String>,
    /// Set by [`ParsedOutput::check`]: a call the request does not allow.
    pub invalid: Option<CallError>,
}

/// A well-formed call the request does not allow.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("call {index}: '{name}' is not one of the request's tools")]
    UnknownTool { index: usize, name: String },
    #[error("call {index} to '{name}': {error}")]
    InvalidArguments {
        index: usize,
        name: String,
        error: SchemaError,
    },
    #[error("tool_choice is 'none' but the model called '{name}'")]
    NotAllowed { name: String },
    #[error("tool_choice requires a tool call but the model made none")]
    Missing,
    #[error("tool_choice names '{expected}' but the model called '{name}'")]
    WrongTool { expected: String, name: String },
}

/// Why a reply must go up the cascade instead of to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum FallbackReason {
    /// The model said `<|fallback|>`.
    Marker,
    /// A call could not be parsed.
    Malformed(String),
    /// A call is not allowed by the request (unknown tool, bad arguments, tool_choice).
    InvalidCall(String),
    /// Nothing was said at all.
    Empty,
    /// A well-formed, allowed call that the model was not sure of: the least
    /// likely token it wrote had probability `p`, below the board's `floor`
    /// (`cascade.min_confidence`).
    LowConfidence {
        p: f32,
        floor: f32,
        calibrated: bool,
    },
}

impl FallbackReason {
    /// Whether the device's reply still carries an answer (a valid call it
    /// is unsure of) rather than nothing usable.
    pub fn has_answer(&self) -> bool {
        matches!(self, FallbackReason::LowConfidence { .. })
    }
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FallbackReason::Marker => f.write_str("fallback marker"),
            FallbackReason::Malformed(m) => write!(f, "malformed tool call: {m}"),
            FallbackReason::InvalidCall(m) => write!(f, "invalid tool call: {m}"),
            FallbackReason::Empty => f.write_str("empty reply"),
            FallbackReason::LowConfidence {
                p,
                floor,
                calibrated: true,
            } => write!(
                f,
                "low confidence: the call is right with p={p:.3} (calibrated), below {floor}"
            ),
            FallbackReason::LowConfidence { p, floor, .. } => {
                write!(f, "low confidence: a token at p={p:.3}, below {floor}")
            }
        }
    }
}

/// Splits model output into content, calls and the fallback marker.
pub fn parse_output(text: &str) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    let end = END_MARKERS
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    let mut rest = &text[..end];
    let mut content = String::new();
    loop {
        let next_call = rest.find(TOOL_CALL_OPEN);
        let next_fb = rest.find(FALLBACK_MARKER);
        let next_close = rest.find(TOOL_CALL_CLOSE);
        let first = [next_call, next_fb, next_close].into_iter().flatten().min();
        let Some(at) = first else {
            content.push_str(rest);
            break;
        };
        content.push_str(&rest[..at]);
        if Some(at) == next_fb {
            out.fallback = true;
            rest = &rest[at + FALLBACK_MARKER.len()..];
        } else if Some(at) == next_close {
            out.malformed
                .get_or_insert_with(|| "</tool_call> without <tool_call>".into());
            rest = &rest[at + TOOL_CALL_CLOSE.len()..];
        } else {
            let body_start = at + TOOL_CALL_OPEN.len();
            let Some(len) = rest[body_start..].find(TOOL_CALL_CLOSE) else {
                out.malformed
                    .get_or_insert_with(|| "<tool_call> without </tool_call>".into());
                break;
            };
            match parse_call(&rest[body_start..body_start + len]) {
                Ok(call) => out.calls.push(call),
                Err(e) => {
                    out.malformed.get_or_insert(e);
                }
            }
            rest = &rest[body_start + len + TOOL_CALL_CLOSE.len()..];
        }
    }
    let content = content.trim();
    if !content.is_empty() {
        out.content = Some(content.to_string());
    }
    out
}

fn parse_call(body: &str) -> Result<RawCall, String> {
    let short = |s: &str| -> String {
        let s = s.trim();
        if s.chars().count() > 80 {
            format!("{}...", s.chars().take(77).collect::<String>())
        } else {
            s.to_string()
        }
    };
    let v: Value = serde_json::from_str(body.trim())
        .map_err(|e| format!("invalid JSON in <tool_call> ({e}): {}", short(body)))?;
    let Value::Object(mut obj) = v else {
        return Err(format!("<tool_call> is not a JSON object: {}", short(body)));
    };
    let name = match obj.remove("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.trim().to_string(),
        _ => return Err(format!("<tool_call> without a name: {}", short(body))),
    };
    let arguments = match obj.remove("arguments").or_else(|| obj.remove("parameters")) {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Default::default()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(&s)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| format!("arguments of '{name}' are not a JSON object: {}", short(&s)))?,
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(format!(
                "arguments of '{name}' are not a JSON object: {}",
                short(&other.to_string())
            ))
        }
    };
    Ok(RawCall { name, arguments })
}

/// Checks each call names one of `tools` and matches its parameters schema.
pub fn validate_calls(calls: &[RawCall], tools: &[Tool]) -> Result<(), CallError> {
    for (index, call) in calls.iter().enumerate() {
        let Some(tool) = tools.iter().find(|t| t.function.name == call.name) else {
            return Err(CallError::UnknownTool {
                index,
                name: call.name.clone(),
            });
        };
        if let Some(params) = &tool.function.parameters {
            schema::validate(params, &call.arguments, "arguments").map_err(|error| {
                CallError::InvalidArguments {
                    index,
                    name: call.name.clone(),
                    error,
                }
            })?;
        }
    }
    Ok(())
}

/// Checks the calls against the request's (resolved) `tool_choice`.
pub fn check_tool_choice(calls: &[RawCall], choice: &ToolChoice) -> Result<(), CallError> {
    match choice {
        ToolChoice::None => match calls.first() {
            Some(c) => Err(CallError::NotAllowed {
                name: c.name.clone(),
            }),
            None => Ok(()),
        },
        ToolChoice::Required if calls.is_empty() => Err(CallError::Missing),
        ToolChoice::Function(expected) => {
            if calls.is_empty() {
                return Err(CallError::Missing);
            }
            match calls.iter().find(|c| &c.name != expected) {
                Some(c) => Err(CallError::WrongTool {
                    expected: expected.clone(),
                    name: c.name.clone(),
                }),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// `call_<24 hex>`, the same for the same request id and index.
pub fn tool_call_id(request_id: &str, index: usize) -> String {
    let mut h = Sha256::new();
    h.update(request_id.as_bytes());
    h.update(b"\0");
    h.update(index.to_le_bytes());
    let digest = h.finalize();
    format!("call_{}", hex::encode(&digest[..12]))
}

/// OpenAI tool calls with ids derived from `request_id`; arguments as compact JSON text.
pub fn to_tool_calls(calls: &[RawCall], request_id: &str) -> Vec<ToolCall> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            ToolCall::new(
                tool_call_id(request_id, i),
                c.name.clone(),
                serde_json::to_string(&c.arguments).expect("JSON value serialises"),
            )
        })
        .collect()
}

impl ParsedOutput {
    /// Validates the calls against the request's tools and tool_choice;
    /// records the first problem in `invalid`. Malformed output is not re-checked.
    pub fn check(&mut self, tools: &[Tool], choice: &ToolChoice) {
        if self.fallback || self.malformed.is_some() {
            return;
        }
        self.invalid = validate_calls(&self.calls, tools)
            .and_then(|()| check_tool_choice(&self.calls, choice))
            .err();
    }

    /// Whether (and why) this reply must go up the cascade.
    pub fn needs_fallback(&self) -> Option<FallbackReason> {
        if self.fallback {
            Some(FallbackReason::Marker)
        } else if let Some(m) = &self.malformed {
            Some(FallbackReason::Malformed(m.clone()))
        } else if let Some(e) = &self.invalid {
            Some(FallbackReason::InvalidCall(e.to_string()))
        } else if self.calls.is_empty() && self.content.is_none() {
            Some(FallbackReason::Empty)
        } else {
            None
        }
    }

    /// The assistant message and finish reason for the app (`tool_calls` when
    /// there are calls, else `stop`; the generator replaces `stop` by `length`
    /// when it ran out of tokens).
    pub fn to_message(&self, request_id: &str) -> (AssistantMessage, FinishReason) {
        if self.calls.is_empty() {
            (
                AssistantMessage::text(self.content.clone().unwrap_or_default()),
                FinishReason::Stop,
            )
        } else {
            (
                AssistantMessage::with_tool_calls(
                    self.content.clone(),
                    to_tool_calls(&self.calls, request_id),
                ),
                FinishReason::ToolCalls,
            )
        }
    }
}

/// Parses model output and checks it against the request in one go.
pub fn parse_and_check(text: &str, tools: &[Tool], choice: &ToolChoice) -> ParsedOutput {
    let mut p = parse_output(text);
    p.check(tools, choice);
    p
}

/// For streaming: feed decoded text pieces, get back the text that is safe
/// to send as content now. Text that may be the start of `<tool_call>`,
/// `</tool_call>`, `<|fallback|>` or an end marker is held back; once a
/// marker has been seen nothing more is released (the whole output is then
/// parsed with [`parse_output`]).
#[derive(Debug, Default)]
pub struct StreamSplitter {
    held: String,
    marker_seen: bool,
}

const MARKERS: [&str; 5] = [
    TOOL_CALL_OPEN,
    TOOL_CALL_CLOSE,
    FALLBACK_MARKER,
    END_MARKERS[0],
    END_MARKERS[1],
];

impl StreamSplitter {
    pub fn new() -> Self {
        StreamSplitter::default()
    }

    /// Whether a marker (call, fallback, end) has appeared.
    pub fn marker_seen(&self) -> bool {
        self.marker_seen
    }

    /// Adds a piece; returns what can be released as content now (maybe "").
    pub fn push(&mut self, piece: &str) -> String {
        if self.marker_seen {
            return String::new();
        }
        self.held.push_str(piece);
        if let Some(at) = MARKERS.iter().filter_map(|m| self.held.find(m)).min() {
            self.marker_seen = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return out;
        }
        // Hold back the longest suffix that is a proper prefix of a marker.
        let mut keep = 0;
        for m in MARKERS {
            for (i, _) in m.char_indices().skip(1) {
                if self.held.ends_with(&m[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        out
    }

    /// End of output: releases what was held back (if no marker came).
    pub fn finish(&mut self) -> String {
        if self.marker_seen {
            String::new()
        } else {
            std::mem::take(&mut self.held)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalogue() -> Vec<Tool> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/assist-moe/tools.json"
        ))
        .expect("models/assist-moe/tools.json");
        let v: Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(v["tools"].clone()).unwrap()
    }

    #[test]
    fn single_call() {
        let p = parse_output(
            r#"<tool_call>{"name": "set_temperature", "arguments": {"zone": "driver", "celsius": 22}}</tool_call><|im_end|>"#,
        );
        assert_eq!(
            p.calls,
            vec![RawCall {
                name: "set_temperature".into(),
                arguments: json!({"zone": "driver", "celsius": 22})
            }]
        );
        assert_eq!(p.content, None);
        assert!(!p.fallback && p.malformed.is_none());
        assert_eq!(p.needs_fallback(), None);
    }

    #[test]
    fn several_calls_and_text() {
        let p = parse_output(
            "Sure.\n<tool_call>\n{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": 3}}\n</tool_call>\n<tool_call>{\"name\": \"set_window\", \"arguments\": \"{\\\"window\\\": \\\"all\\\", \\\"percent\\\": 0}\"}</tool_call> done",
        );
        assert_eq!(p.calls.len(), 2);
        assert_eq!(p.calls[1].arguments, json!({"window": "all", "percent": 0}));
        assert_eq!(p.content.as_deref(), Some("Sure.\n\n done"));
        let plain = parse_output("  Hello there  <|im_end|>ignored");
        assert_eq!(plain.content.as_deref(), Some("Hello there"));
        assert!(plain.calls.is_empty() && plain.needs_fallback().is_none());
        let noargs = parse_output(r#"<tool_call>{"name": "read_notifications"}</tool_call>"#);
        assert_eq!(noargs.calls[0].arguments, json!({}));
    }

    #[test]
    fn fallback_and_malformed() {
        let p = parse_output("<|fallback|><|im_end|>");
        assert!(p.fallback);
        assert_eq!(p.needs_fallback(), Some(FallbackReason::Marker));
        for bad in [
            "<tool_call>{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": 3}}",
            "<tool_call>{\"name\": \"set_fan_speed\", \"arguments\": {\"level\": 3}</tool_call>",
            "<tool_call>[1]</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": \"not json\"}</tool_call>",
            "text </tool_call>",
        ] {
            let p = parse_output(bad);
            assert!(p.malformed.is_some(), "{bad}");
            assert!(
                matches!(p.needs_fallback(), Some(FallbackReason::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_output("  ").needs_fallback(),
            Some(FallbackReason::Empty)
        );
        assert_eq!(
            parse_output("<|im_end|>").needs_fallback(),
            Some(FallbackReason::Empty)
        );
    }

    #[test]
    fn validation_against_the_catalogue() {
        let tools = catalogue();
        assert_eq!(tools.len(), 20);
        let ok = parse_and_check(
            r#"<tool_call>{"name": "set_temperature", "arguments": {"zone": "driver", "celsius": 22.5}}</tool_call>"#,
            &tools,
            &ToolChoice::Auto,
        );
        assert_eq!(ok.needs_fallback(), None);
        let hot = parse_and_check(
            r#"<tool_call>{"name": "set_temperature", "arguments": {"zone": "driver", "celsius": 35}}</tool_call>"#,
            &tools,
            &ToolChoice::Auto,
        );
        let Some(FallbackReason::InvalidCall(msg)) = hot.needs_fallback() else {
            panic!("{hot:?}")
        };
        assert!(
            msg.contains("arguments.celsius: 35 is above maximum 30"),
            "{msg}"
        );
        let unknown = parse_and_check(
            r#"<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>"#,
            &tools,
            &ToolChoice::Auto,
        );
        assert!(matches!(
            unknown.invalid,
            Some(CallError::UnknownTool { .. })
        ));
        let call = r#"<tool_call>{"name": "set_fan_speed", "arguments": {"level": 2}}</tool_call>"#;
        assert!(matches!(
            parse_and_check(call, &tools, &ToolChoice::None).invalid,
            Some(CallError::NotAllowed { .. })
        ));
        assert!(matches!(
            parse_and_check("hello", &tools, &ToolChoice::Required).invalid,
            Some(CallError::Missing)
        ));
        assert!(matches!(
            parse_and_check(call, &tools, &ToolChoice::Function("set_window".into())).invalid,
            Some(CallError::WrongTool { .. })
        ));
        assert!(
            parse_and_check(call, &tools, &ToolChoice::Function("set_fan_speed".into()))
                .invalid
                .is_none()
        );
        assert!(parse_and_check("hello", &tools, &ToolChoice::None)
            .invalid
            .is_none());
    }

    #[test]
    fn ids_and_message() {
        assert_eq!(tool_call_id("req-1", 0), tool_call_id("req-1", 0));
        assert_ne!(tool_call_id("req-1", 0), tool_call_id("req-1", 1));
        assert_ne!(tool_call_id("req-1", 0), tool_call_id("req-2", 0));
        let id = tool_call_id("req-1", 0);
        assert!(id.starts_with("call_") && id.len() == 29);
        assert!(id[5..].chars().all(|c| c.is_ascii_hexdigit()));
        let p = parse_output(
            r#"<tool_call>{"name": "set_fan_speed", "arguments": {"level": 3}}</tool_call>"#,
        );
        let (msg, finish) = p.to_message("req-1");
        assert_eq!(finish, FinishReason::ToolCalls);
        assert_eq!(msg.content, None);
        let tc = &msg.tool_calls()[0];
        assert_eq!(tc.id, id);
        assert_eq!(tc.function.name, "set_fan_speed");
        assert_eq!(tc.function.arguments, r#"{"level":3}"#);
        let (msg, finish) = parse_output("hi").to_message("r");
        assert_eq!(
            (msg.content.as_deref(), finish),
            (Some("hi"), FinishReason::Stop)
        );
    }

    #[test]
    fn stream_splitter_holds_back_markers() {
        let run = |pieces: &[&str]| -> (String, bool) {
            let mut s = StreamSplitter::new();
            let mut out = String::new();
            for p in pieces {
                out.push_str(&s.push(p));
            }
            out.push_str(&s.finish());
            (out, s.marker_seen())
        };
        assert_eq!(
            run(&["Hel", "lo <", "b>", "!"]),
            ("Hello <b>!".into(), false)
        );
        assert_eq!(
            run(&["ok <tool", "_call>{\"name\"", "}</tool_call>"]),
            ("ok ".into(), true)
        );
        assert_eq!(run(&["<|fall", "back|>"]), ("".into(), true));
        assert_eq!(run(&["done<|im_", "end|>"]), ("done".into(), true));
        assert_eq!(run(&["a <", "|"]), ("a <|".into(), false));
        let mut s = StreamSplitter::new();
        assert_eq!(s.push("x <tool_"), "x ");
        assert_eq!(s.push("ca"), "");
        assert_eq!(s.push("t"), "<tool_cat");
        assert_eq!(s.push("日本"), "日本");
    }
}
