//! Replies: `chat.completion`, `chat.completion.chunk`, and the `x_moe_edge`
//! extension object saying who served a request and how.
//!
//! The types serialise to OpenAI's shape and also read replies from an
//! OpenAI-compatible upstream (unknown fields are kept in `extra`). Not here:
//! turning model output into tool calls (`chat::toolcall`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::request::{Role, ToolCall};

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// Anything an upstream sends that we do not know, verbatim.
    Other(String),
}

impl FinishReason {
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Other(s),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// OpenAI's breakdown of the prompt: `cached_tokens` came from the prefix cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
        }
    }

    /// With `cached_tokens` of the prompt reused from the prefix cache.
    pub fn with_cached(mut self, cached_tokens: u64) -> Self {
        self.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens });
        self
    }
}

/// The assistant message of a non-streamed choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    #[serde(default)]
    pub role: Role,
    /// `null` when the reply is only tool calls.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// e.g. `refusal`, `reasoning_content` from an upstream.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AssistantMessage {
    pub fn text(content: impl Into<String>) -> Self {
        AssistantMessage {
            role: Role::Assistant,
            content: Some(content.into()),
            tool_calls: None,
            extra: Map::new(),
        }
    }

    /// Tool calls, with optional text said alongside.
    pub fn with_tool_calls(content: Option<String>, calls: Vec<ToolCall>) -> Self {
        AssistantMessage {
            role: Role::Assistant,
            content,
            tool_calls: if calls.is_empty() { None } else { Some(calls) },
            extra: Map::new(),
        }
    }

    pub fn tool_calls(&self) -> &[ToolCall] {
        self.tool_calls.as_deref().unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: AssistantMessage,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `object: "chat.completion"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_moe_edge: Option<EdgeInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".into()
}

fn chunk_object() -> String {
    "chat.completion.chunk".into()
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ChatCompletion {
    /// One choice, index 0.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        message: AssistantMessage,
        finish_reason: FinishReason,
        usage: Usage,
    ) -> Self {
        ChatCompletion {
            id: id.into(),
            object: completion_object(),
            created,
            model: model.into(),
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish_reason),
                extra: Map::new(),
            }],
            usage: Some(usage),
            x_moe_edge: None,
            extra: Map::new(),
        }
    }

    pub fn with_edge(mut self, info: EdgeInfo) -> Self {
        self.x_moe_edge = Some(info);
        self
    }

    /// The first choice's message, if any.
    pub fn message(&self) -> Option<&AssistantMessage> {
        self.choices.first().map(|c| &c.message)
    }

    /// The same reply as a stream: a role chunk, a content chunk (if any), a
    /// tool-calls chunk (if any), a finish chunk; usage (when `include_usage`)
    /// and `x_moe_edge` ride on the last chunk.
    pub fn to_chunks(&self, include_usage: bool) -> Vec<ChatCompletionChunk> {
        let mut out = Vec::new();
        let mk = |index: u32, delta: Delta, finish: Option<FinishReason>| ChatCompletionChunk {
            id: self.id.clone(),
            object: chunk_object(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index,
                delta,
                finish_reason: finish,
                extra: Map::new(),
            }],
            usage: None,
            x_moe_edge: None,
            extra: Map::new(),
        };
        for c in &self.choices {
            out.push(mk(c.index, Delta::role(), None));
            if let Some(text) = c.message.content.as_ref().filter(|t| !t.is_empty()) {
                out.push(mk(c.index, Delta::content(text.clone()), None));
            }
            if !c.message.tool_calls().is_empty() {
                let deltas = c
                    .message
                    .tool_calls()
                    .iter()
                    .enumerate()
                    .map(|(i, tc)| ToolCallDelta::full(i as u32, tc))
                    .collect();
                out.push(mk(
                    c.index,
                    Delta {
                        tool_calls: Some(deltas),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            out.push(mk(c.index, Delta::default(), c.finish_reason.clone()));
        }
        if let Some(last) = out.last_mut() {
            self.dress_finish_chunk(last, include_usage);
        }
        out
    }

    /// What only a stream's finish chunk carries, taken from the whole
    /// reply: `x_moe_edge`, `usage` (when the app asked for it) and the
    /// choice's `logprobs` (a device reply's, all at once).
    pub fn dress_finish_chunk(&self, last: &mut ChatCompletionChunk, include_usage: bool) {
        if include_usage {
            last.usage = self.usage;
        }
        last.x_moe_edge = self.x_moe_edge.clone();
        for c in &mut last.choices {
            let lp = self
                .choices
                .iter()
                .find(|x| x.index == c.index)
                .and_then(|x| x.extra.get("logprobs"));
            if let Some(lp) = lp {
                c.extra.insert("logprobs".into(), lp.clone());
            }
        }
    }
}

/// `object: "chat.completion.chunk"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Only on the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_moe_edge: Option<EdgeInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionChunk {
    /// One choice (index 0) carrying `delta`.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        delta: Delta,
        finish_reason: Option<FinishReason>,
    ) -> Self {
        ChatCompletionChunk {
            id: id.into(),
            object: chunk_object(),
            created,
            model: model.into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Map::new(),
            }],
            usage: None,
            x_moe_edge: None,
            extra: Map::new(),
        }
    }

    /// A usage-only chunk (`choices: []`), as OpenAI sends with `include_usage`.
    pub fn usage_only(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        usage: Usage,
    ) -> Self {
        ChatCompletionChunk {
            id: id.into(),
            object: chunk_object(),
            created,
            model: model.into(),
            choices: Vec::new(),
            usage: Some(usage),
            x_moe_edge: None,
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    /// Serialised as `null` until the last chunk.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Delta {
    /// `{"role": "assistant"}`, the first delta of a stream.
    pub fn role() -> Self {
        Delta {
            role: Some(Role::Assistant),
            ..Delta::default()
        }
    }

    pub fn content(text: impl Into<String>) -> Self {
        Delta {
            content: Some(text.into()),
            ..Delta::default()
        }
    }

    pub fn tool_calls(calls: &[ToolCall]) -> Self {
        Delta {
            tool_calls: Some(
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ToolCallDelta::full(i as u32, c))
                    .collect(),
            ),
            ..Delta::default()
        }
    }
}

/// A (piece of a) tool call in a stream; pieces with the same `index` add up.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

impl ToolCallDelta {
    /// A whole call in one delta.
    pub fn full(index: u32, call: &ToolCall) -> Self {
        ToolCallDelta {
            index,
            id: Some(call.id.clone()),
            kind: Some(call.kind.clone()),
            function: Some(FunctionCallDelta {
                name: Some(call.function.name.clone()),
                arguments: Some(call.function.arguments.clone()),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Adds up a stream of chunks into the `chat.completion` it stands for
/// (content concatenated, tool-call pieces merged by index, `logprobs`
/// lists joined, the last finish reason, usage and `x_moe_edge` kept). For
/// an upstream stream whose result is needed whole.
#[derive(Debug, Default)]
pub struct ChunkAccumulator {
    id: String,
    created: u64,
    model: String,
    content: Option<String>,
    calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    edge: Option<EdgeInfo>,
    extra: Map<String, Value>,
    /// `choices[0].logprobs.content`, chunk after chunk; `None` if no chunk had any.
    logprobs: Option<Vec<Value>>,
}

impl ChunkAccumulator {
    pub fn new() -> Self {
        ChunkAccumulator::default()
    }

    /// Adds one chunk (choice 0 only; `n` is always 1 here).
    pub fn push(&mut self, chunk: &ChatCompletionChunk) {
        if self.id.is_empty() {
            self.id = chunk.id.clone();
            self.created = chunk.created;
            self.model = chunk.model.clone();
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.x_moe_edge.is_some() {
            self.edge = chunk.x_moe_edge.clone();
        }
        for c in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = &c.delta.content {
                self.content.get_or_insert_with(String::new).push_str(text);
            }
            for (k, v) in &c.delta.extra {
                // e.g. reasoning_content: strings concatenate, others replace.
                match (self.extra.get_mut(k), v) {
                    (Some(Value::String(acc)), Value::String(more)) => acc.push_str(more),
                    _ => {
                        self.extra.insert(k.clone(), v.clone());
                    }
                }
            }
            for d in c.delta.tool_calls.iter().flatten() {
                let i = d.index as usize;
                while self.calls.len() <= i {
                    self.calls.push(ToolCall::new("", "", ""));
                }
                let call = &mut self.calls[i];
                if let Some(id) = &d.id {
                    call.id.clone_from(id);
                }
                if let Some(kind) = &d.kind {
                    call.kind.clone_from(kind);
                }
                if let Some(f) = &d.function {
                    if let Some(name) = &f.name {
                        call.function.name.push_str(name);
                    }
                    if let Some(args) = &f.arguments {
                        call.function.arguments.push_str(args);
                    }
                }
            }
            if let Some(Value::Array(lp)) = c.extra.get("logprobs").and_then(|l| l.get("content")) {
                self.logprobs
                    .get_or_insert_with(Vec::new)
                    .extend(lp.iter().cloned());
            }
            if c.finish_reason.is_some() {
                self.finish_reason = c.finish_reason.clone();
            }
        }
    }

    /// The whole reply.
    pub fn finish(self) -> ChatCompletion {
        let mut message = AssistantMessage::with_tool_calls(self.content, self.calls);
        message.extra = self.extra;
        let mut choice_extra = Map::new();
        if let Some(lp) = self.logprobs {
            choice_extra.insert(
                "logprobs".into(),
                serde_json::json!({"content": lp, "refusal": null}),
            );
        }
        ChatCompletion {
            id: self.id,
            object: completion_object(),
            created: self.created,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: self.finish_reason,
                extra: choice_extra,
            }],
            usage: self.usage,
            x_moe_edge: self.edge,
            extra: Map::new(),
        }
    }
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServedBy {
    #[default]
    Device,
    Host,
    Cloud,
}

impl ServedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ServedBy::Device => "device",
            ServedBy::Host => "host",
            ServedBy::Cloud => "cloud",
        }
    }
}

/// Expert invocations (token × layer × top-k slots) by where they ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExpertStats {
    pub resident: u64,
    pub remote: u64,
    pub substituted: u64,
    pub low_precision: u64,
}

/// Milliseconds spent per phase.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    pub queue: f64,
    pub prefill: f64,
    pub decode: f64,
    pub total: f64,
}

/// The `x_moe_edge` extension object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeInfo {
    pub served_by: ServedBy,
    pub experts: ExpertStats,
    pub timings_ms: Timings,
    pub tokens_per_second: f64,
    /// Why the device did not answer itself (`null` when it did).
    pub fallback_reason: Option<String>,
    /// Hops tried before the one that served, each with why it failed.
    pub tried: Vec<String>,
    /// Device replies: prompt tokens whose KV came from the prefix cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u64>,
    /// Device replies: the lowest probability the model gave a token it
    /// wrote (what `cascade.min_confidence` is compared with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edge() -> EdgeInfo {
        EdgeInfo {
            served_by: ServedBy::Cloud,
            experts: ExpertStats {
                resident: 10,
                remote: 2,
                substituted: 1,
                low_precision: 0,
            },
            timings_ms: Timings {
                queue: 1.0,
                prefill: 2.5,
                decode: 10.0,
                total: 14.0,
            },
            tokens_per_second: 120.5,
            fallback_reason: Some("fallback marker".into()),
            tried: vec!["device: fallback marker".into()],
            cached_prompt_tokens: None,
            confidence: None,
        }
    }

    #[test]
    fn completion_has_openai_shape() {
        let c = ChatCompletion::new(
            "chatcmpl-1",
            "assist-moe",
            1700000000,
            AssistantMessage::with_tool_calls(
                None,
                vec![ToolCall::new("call_ab", "set_fan_speed", "{\"level\":3}")],
            ),
            FinishReason::ToolCalls,
            Usage::new(20, 5),
        )
        .with_edge(edge());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "assist-moe",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": null,
                    "tool_calls": [{"id": "call_ab", "type": "function", "function": {"name": "set_fan_speed", "arguments": "{\"level\":3}"}}]}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
                "x_moe_edge": {"served_by": "cloud", "experts": {"resident": 10, "remote": 2, "substituted": 1, "low_precision": 0},
                    "timings_ms": {"queue": 1.0, "prefill": 2.5, "decode": 10.0, "total": 14.0},
                    "tokens_per_second": 120.5, "fallback_reason": "fallback marker", "tried": ["device: fallback marker"]}
            })
        );
        let back: ChatCompletion = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn reads_upstream_replies_with_unknown_fields() {
        let v = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "qwen3-max",
            "system_fingerprint": "fp", "choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "hi", "refusal": null, "reasoning_content": "hmm"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        let c: ChatCompletion = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(c.message().unwrap().content.as_deref(), Some("hi"));
        assert_eq!(c.message().unwrap().extra["reasoning_content"], "hmm");
        assert_eq!(c.extra["system_fingerprint"], "fp");
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
        let odd: FinishReason =
            serde_json::from_value(json!("insufficient_system_resource")).unwrap();
        assert_eq!(
            odd,
            FinishReason::Other("insufficient_system_resource".into())
        );
    }

    #[test]
    fn chunk_shape() {
        let c = ChatCompletionChunk::new("c1", "m", 5, Delta::content("Hel"), None);
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]})
        );
        let first = ChatCompletionChunk::new("c1", "m", 5, Delta::role(), None);
        assert_eq!(
            serde_json::to_value(&first).unwrap()["choices"][0]["delta"],
            json!({"role": "assistant"})
        );
        let u = ChatCompletionChunk::usage_only("c1", "m", 5, Usage::new(1, 2));
        assert_eq!(serde_json::to_value(&u).unwrap()["choices"], json!([]));
    }

    #[test]
    fn completion_to_chunks() {
        let c = ChatCompletion::new(
            "id",
            "m",
            1,
            AssistantMessage::with_tool_calls(
                Some("ok".into()),
                vec![ToolCall::new("call_1", "f", "{}")],
            ),
            FinishReason::ToolCalls,
            Usage::new(3, 4),
        )
        .with_edge(edge());
        let chunks = c.to_chunks(true);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(chunks[1].choices[0].delta.content.as_deref(), Some("ok"));
        let tc = &chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(tc.function.as_ref().unwrap().name.as_deref(), Some("f"));
        assert_eq!(
            chunks[3].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        assert_eq!(chunks[3].usage, Some(Usage::new(3, 4)));
        assert!(chunks[3].x_moe_edge.is_some());
        assert!(chunks[..3]
            .iter()
            .all(|c| c.x_moe_edge.is_none() && c.usage.is_none()));
        assert!(c.to_chunks(false)[3].usage.is_none());
    }

    #[test]
    fn accumulator_rebuilds_the_completion() {
        let c = ChatCompletion::new(
            "id",
            "m",
            1,
            AssistantMessage::with_tool_calls(
                Some("ok".into()),
                vec![ToolCall::new("call_1", "f", "{\"a\":1}")],
            ),
            FinishReason::ToolCalls,
            Usage::new(3, 4),
        )
        .with_edge(edge());
        let mut acc = ChunkAccumulator::new();
        for ch in c.to_chunks(true) {
            acc.push(&ch);
        }
        assert_eq!(acc.finish(), c);
        // logprobs ride on the finish chunk and come back whole
        let mut with_lp = c.clone();
        with_lp.choices[0].extra.insert(
            "logprobs".into(),
            json!({"content": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107], "top_logprobs": []}], "refusal": null}),
        );
        let chunks = with_lp.to_chunks(true);
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|ch| !ch.choices[0].extra.contains_key("logprobs")));
        let mut acc = ChunkAccumulator::new();
        for ch in &chunks {
            acc.push(ch);
        }
        assert_eq!(acc.finish(), with_lp);
        // Pieces as an upstream sends them.
        let pieces = [
            json!({"id": "u", "created": 2, "model": "q", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "u", "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}),
            json!({"id": "u", "choices": [{"index": 0, "delta": {"reasoning_content": "m", "tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}),
            json!({"id": "u", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"day\":"}}]}}]}),
            json!({"id": "u", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"today\"}"}}]}}]}),
            json!({"id": "u", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "u", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}),
        ];
        let mut acc = ChunkAccumulator::new();
        for p in pieces {
            acc.push(&serde_json::from_value(p).unwrap());
        }
        let done = acc.finish();
        let m = done.message().unwrap();
        assert_eq!(m.content.as_deref(), Some(""));
        assert_eq!(m.extra["reasoning_content"], "hmm");
        assert_eq!(m.tool_calls()[0].function.arguments, "{\"day\":\"today\"}");
        assert_eq!(m.tool_calls()[0].id, "c1");
        assert_eq!(done.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(done.usage, Some(Usage::new(5, 6)));
        assert_eq!(
            (done.id.as_str(), done.model.as_str(), done.created),
            ("u", "q", 2)
        );
    }

    #[test]
    fn edge_info_defaults_when_partial() {
        let e: EdgeInfo = serde_json::from_value(json!({"served_by": "host"})).unwrap();
        assert_eq!(e.served_by, ServedBy::Host);
        assert_eq!(e.tried, Vec::<String>::new());
        let v = serde_json::to_value(EdgeInfo::default()).unwrap();
        assert!(v["fallback_reason"].is_null());
        assert_eq!(v["served_by"], "device");
    }
}
