//! OpenAI chat-completions wire types, shared by the MQTT daemon, the HTTP
//! endpoint, the cloud client and the engine.
//!
//! Owns: the request ([`ChatRequest`], parsing with located errors,
//! [`ChatRequest::validate`] into a [`ValidRequest`]), the replies
//! ([`ChatCompletion`], [`ChatCompletionChunk`], the `x_moe_edge` extension
//! [`EdgeInfo`]), errors in OpenAI's shape ([`ApiError`] with stable
//! [`ErrorCode`]s) and SSE formatting/parsing ([`sse`]).
//! Does not own: transport (MQTT, HTTP), admission, the cascade, tool-call
//! parsing of model output (`chat::toolcall`), JSON-schema checking
//! (`schema`) or prompt rendering (`chat::template`).
//! Pure and synchronous: no I/O, no clocks except [`unix_now`].

pub mod error;
pub mod request;
pub mod response;
pub mod sse;

pub use error::{ApiError, ErrorBody, ErrorCode, ErrorEdgeInfo, ErrorObject};
pub use request::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, Message, Priority, PriorityField,
    RequestLimits, Role, Stop, StreamOptions, TextMessage, Tool, ToolCall, ToolChoice,
    ValidRequest,
};
pub use response::{
    unix_now, AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChunkAccumulator,
    ChunkChoice, Delta, EdgeInfo, ExpertStats, FinishReason, FunctionCallDelta, ServedBy, Timings,
    ToolCallDelta, Usage,
};
pub use sse::{sse_chunk, sse_data, sse_error, SseParser, DONE, SSE_DONE};
