//! Request/reply mapping, pure: where a reply goes and what its bytes are.
//!
//! Owns: the reply target of a request ([`ReplyTo`]: the MQTT 5 Response
//! Topic + Correlation Data, else the body's `reply_topic` + `id` for MQTT
//! 3.1.1 apps), the encoding of every reply message ([`Reply`]), and the
//! streaming state machine ([`StreamState`]) that turns engine deltas into
//! `chat.completion.chunk` messages and the terminator.
//! Does not own: publishing (`serve::daemon`), tool-call parsing
//! (`chat::toolcall`), the OpenAI types themselves (`openai`).
//!
//! Wire contract (documented in the README):
//! - non-streamed: exactly one message, a `chat.completion` or an error
//!   `{"error": {"message", "type", "param", "code"}}`;
//! - streamed: `chat.completion.chunk` messages in order (the first carries
//!   `delta.role`, the last one `finish_reason`, `x_moe_edge` and, with
//!   `stream_options.include_usage`, `usage`), then exactly one terminator
//!   `{"id": ..., "object": "chat.completion.done", "created": ...}`; or, if
//!   the request fails part-way, an error body instead of the terminator.
//!   The terminator or the error is the *final* message: one per request.
//! - MQTT 3.1.1 apps that sent an `id` get it back as `request_id` in every
//!   message (MQTT 5 apps get their Correlation Data back instead).

use bytes::Bytes;
use serde_json::{json, Value};

use crate::openai::{
    ApiError, ChatCompletion, ChatCompletionChunk, Delta, ErrorCode, FinishReason, ToolCallDelta,
};
use crate::wire::topics::validate_app_reply_topic;

/// `object` of the stream terminator.
pub const DONE_OBJECT: &str = "chat.completion.done";

/// Where the replies to one request go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub topic: String,
    /// MQTT 5 Correlation Data, echoed unchanged.
    pub correlation: Option<Bytes>,
    /// MQTT 3.1.1: the body's `id`, echoed as `request_id`.
    pub request_id: Option<String>,
}

impl ReplyTo {
    /// From the MQTT 5 properties of the request, if it named a usable
    /// response topic. A bad one (wildcards, a request topic) is an error.
    pub fn from_properties(
        response_topic: Option<&str>,
        correlation: Option<&Bytes>,
    ) -> Option<Result<ReplyTo, ApiError>> {
        let topic = response_topic?;
        Some(match validate_app_reply_topic(topic) {
            Ok(()) => Ok(ReplyTo {
                topic: topic.to_string(),
                correlation: correlation.cloned(),
                request_id: None,
            }),
            Err(e) => Err(ApiError::new(
                ErrorCode::MissingReplyTopic,
                format!("unusable response topic: {e}"),
            )),
        })
    }

    /// From a body's `reply_topic` and `id` (MQTT 3.1.1 apps). Read from raw
    /// JSON so that even a request that fails validation can be answered.
    pub fn from_body_value(body: &Value) -> Option<ReplyTo> {
        let topic = body.get("reply_topic")?.as_str()?;
        validate_app_reply_topic(topic).ok()?;
        Some(ReplyTo {
            topic: topic.to_string(),
            correlation: None,
            request_id: body.get("id").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// Best effort on bytes that may not even be JSON.
    pub fn from_body_bytes(body: &[u8]) -> Option<ReplyTo> {
        let v: Value = serde_json::from_slice(body).ok()?;
        ReplyTo::from_body_value(&v)
    }

    /// Who is asking, for the rate limit. A reply topic below
    /// `moe-edge/clients/{name}/` is keyed on `moe-edge/clients/{name}`,
    /// whatever the user property says: with the broker ACL
    /// (`deploy/mosquitto/acl`) only the user `name` can read there, so an app
    /// cannot dodge its limit by varying the property or the rest of the
    /// topic. Otherwise the `client_id` user property if given, else the
    /// reply topic.
    pub fn client_key<'a>(&'a self, user_property: Option<&'a str>) -> &'a str {
        const CLIENTS: &str = "moe-edge/clients/";
        if let Some(rest) = self.topic.strip_prefix(CLIENTS) {
            let name = rest.split('/').next().unwrap_or("");
            if !name.is_empty() {
                return &self.topic[..CLIENTS.len() + name.len()];
            }
        }
        user_property.unwrap_or(&self.topic)
    }
}

/// One message to an app.
#[derive(Debug, Clone)]
pub enum Reply {
    Completion(Box<ChatCompletion>),
    Chunk(Box<ChatCompletionChunk>),
    /// The stream terminator.
    Done {
        id: String,
        created: u64,
    },
    Error(ApiError),
}

impl Reply {
    /// Whether this is the last message for its request.
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Chunk(_))
    }

    pub fn to_value(&self, request_id: Option<&str>) -> Value {
        let mut v = match self {
            Reply::Completion(c) => serde_json::to_value(c).expect("completion serialises"),
            Reply::Chunk(c) => serde_json::to_value(c).expect("chunk serialises"),
            Reply::Done { id, created } => {
                json!({"id": id, "object": DONE_OBJECT, "created": created})
            }
            Reply::Error(e) => e.to_value(),
        };
        if let (Some(rid), Value::Object(m)) = (request_id, &mut v) {
            m.insert("request_id".into(), Value::String(rid.to_string()));
        }
        v
    }

    pub fn encode(&self, request_id: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&self.to_value(request_id)).expect("json serialises")
    }
}

/// Streaming progress of one request: which chunks were sent already.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub include_usage: bool,
    role_sent: bool,
    /// Content already sent.
    sent: String,
    /// Trailing whitespace held back: the final reply's content is trimmed,
    /// so whitespace is only sent once more text follows it.
    held_ws: String,
}

impl StreamState {
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        include_usage: bool,
    ) -> Self {
        StreamState {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            role_sent: false,
            sent: String::new(),
            held_ws: String::new(),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, &self.model, self.created, delta, finish)
    }

    /// Whether anything was sent yet.
    pub fn started(&self) -> bool {
        self.role_sent
    }

    /// The content sent so far.
    pub fn sent_content(&self) -> &str {
        &self.sent
    }

    /// Content that is safe to show (already split from tool-call markup):
    /// the chunks to send now (the role chunk first, once). Leading
    /// whitespace of the reply is dropped and trailing whitespace held back,
    /// as the final reply's content is trimmed.
    pub fn content(&mut self, text: &str) -> Vec<ChatCompletionChunk> {
        let mut piece = std::mem::take(&mut self.held_ws);
        piece.push_str(text);
        if self.sent.is_empty() {
            piece = piece.trim_start().to_string();
        }
        let body_len = piece.trim_end().len();
        self.held_ws = piece[body_len..].to_string();
        piece.truncate(body_len);
        self.send(&piece)
    }

    fn send(&mut self, text: &str) -> Vec<ChatCompletionChunk> {
        let mut out = Vec::new();
        if !self.role_sent {
            self.role_sent = true;
            let mut d = Delta::role();
            if !text.is_empty() {
                d.content = Some(text.to_string());
            }
            self.sent.push_str(text);
            out.push(self.chunk(d, None));
            return out;
        }
        if !text.is_empty() {
            self.sent.push_str(text);
            out.push(self.chunk(Delta::content(text), None));
        }
        out
    }

    /// The end: the rest of the final reply's content (if it extends what
    /// was sent), its tool calls, then the finish chunk carrying
    /// `finish_reason`, `x_moe_edge` and (if asked) `usage`. The caller sends
    /// [`Reply::Done`] after these.
    pub fn finish(&mut self, completion: &ChatCompletion) -> Vec<ChatCompletionChunk> {
        let mut out = Vec::new();
        let msg = completion.message();
        let content = msg.and_then(|m| m.content.as_deref()).unwrap_or("");
        let rest = content.strip_prefix(self.sent.as_str()).unwrap_or("");
        if !self.role_sent || !rest.is_empty() {
            out.extend(self.send(rest));
        }
        if let Some(m) = msg {
            if !m.tool_calls().is_empty() {
                let deltas = m
                    .tool_calls()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ToolCallDelta::full(i as u32, c))
                    .collect();
                out.push(self.chunk(
                    Delta {
                        tool_calls: Some(deltas),
                        ..Delta::default()
                    },
                    None,
                ));
            }
        }
        let finish = completion
            .choices
            .first()
            .and_then(|c| c.finish_reason.clone())
            .unwrap_or(FinishReason::Stop);
        let mut last = self.chunk(Delta::default(), Some(finish));
        // logprobs all at once: clients add the chunks' lists up, so the total is the same
        completion.dress_finish_chunk(&mut last, self.include_usage);
        out.push(last);
        out
    }

    pub fn done(&self) -> Reply {
        Reply::Done {
            id: self.id.clone(),
            created: self.created,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{AssistantMessage, ChunkAccumulator, EdgeInfo, ToolCall, Usage};

    fn completion(content: Option<&str>, calls: Vec<ToolCall>) -> ChatCompletion {
        let finish = if calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        };
        ChatCompletion::new(
            "chatcmpl-1",
            "m",
            7,
            AssistantMessage::with_tool_calls(content.map(str::to_string), calls),
            finish,
            Usage::new(3, 4),
        )
        .with_edge(EdgeInfo::default())
    }

    #[test]
    fn stream_adds_up_to_the_completion() {
        let c = completion(
            Some("hello world"),
            vec![ToolCall::new("call_1", "f", "{\"a\":1}")],
        );
        let mut s = StreamState::new("chatcmpl-1", "m", 7, true);
        let mut chunks = s.content("  hel");
        chunks.extend(s.content(""));
        chunks.extend(s.content("lo "));
        assert_eq!(
            s.sent_content(),
            "hello",
            "leading space dropped, trailing held"
        );
        chunks.extend(s.finish(&c));
        assert_eq!(
            chunks[0].choices[0].delta.role.as_ref().unwrap().as_str(),
            "assistant"
        );
        let last = chunks.last().unwrap();
        assert_eq!(last.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert!(last.x_moe_edge.is_some() && last.usage.is_some());
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.x_moe_edge.is_none() && c.choices[0].finish_reason.is_none()));
        let mut acc = ChunkAccumulator::new();
        chunks.iter().for_each(|c| acc.push(c));
        let back = acc.finish();
        assert_eq!(
            back.message().unwrap().content.as_deref(),
            Some("hello world")
        );
        assert_eq!(
            back.message().unwrap().tool_calls(),
            c.message().unwrap().tool_calls()
        );
        assert_eq!(back.usage, c.usage);
    }

    #[test]
    fn stream_of_nothing_still_has_role_and_finish() {
        let c = completion(None, vec![]);
        let mut s = StreamState::new("chatcmpl-1", "m", 7, false);
        let chunks = s.finish(&c);
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].choices[0].delta.role.is_some());
        assert!(chunks[1].usage.is_none());
        let done = s.done().to_value(Some("r1"));
        assert_eq!(done["object"], DONE_OBJECT);
        assert_eq!(done["id"], "chatcmpl-1");
        assert_eq!(done["request_id"], "r1");
        assert!(s.done().is_final());
    }

    #[test]
    fn reply_targets() {
        let corr = Bytes::from_static(b"\x01\x02");
        let r = ReplyTo::from_properties(Some("app/replies"), Some(&corr))
            .unwrap()
            .unwrap();
        assert_eq!(r.correlation.as_ref(), Some(&corr));
        assert!(ReplyTo::from_properties(None, Some(&corr)).is_none());
        let bad = ReplyTo::from_properties(Some("moe-edge/d/v1/chat/completions"), None).unwrap();
        assert_eq!(bad.unwrap_err().code, ErrorCode::MissingReplyTopic);
        let b =
            ReplyTo::from_body_bytes(br#"{"reply_topic":"app/r","id":"42","messages":5}"#).unwrap();
        assert_eq!(
            (b.topic.as_str(), b.request_id.as_deref()),
            ("app/r", Some("42"))
        );
        assert!(ReplyTo::from_body_bytes(b"not json").is_none());
        assert!(ReplyTo::from_body_bytes(br#"{"reply_topic":"a/#"}"#).is_none());
        assert_eq!(b.client_key(Some("car-7")), "car-7");
        assert_eq!(b.client_key(None), "app/r");
        for (topic, prop) in [
            ("moe-edge/clients/app-a/c1/reply", None),
            ("moe-edge/clients/app-a/c2/reply", Some("spoofed-1")),
            ("moe-edge/clients/app-a/x/y/z", Some("spoofed-2")),
        ] {
            let t = ReplyTo {
                topic: topic.into(),
                correlation: None,
                request_id: None,
            };
            assert_eq!(t.client_key(prop), "moe-edge/clients/app-a", "{topic}");
        }
    }

    #[test]
    fn error_replies_are_openai_shaped() {
        let e = Reply::Error(ApiError::new(ErrorCode::Overloaded, "busy"));
        assert!(e.is_final());
        let v = e.to_value(None);
        assert_eq!(v["error"]["code"], "overloaded");
        assert!(v.get("request_id").is_none());
    }
}
