//! Wire formats, pure and synchronous: the remote-expert frame codec
//! ([`frame`]: requests, replies, errors and hints) and the MQTT topic
//! names ([`topics`]).
//!
//! Owns: byte layouts, validation of untrusted bytes and ids, the error codes
//! that travel between device and host. Does not own: any I/O, MQTT sessions
//! or deadlines (see `transport`), nor what a host computes for a frame
//! (see `host`) or which experts a device sends away (see `experts`).
//! Nothing here allocates per call beyond growing a caller-provided buffer,
//! and nothing here needs tokio.

pub mod frame;
pub mod topics;

pub use frame::{
    decode, decode_hint, decode_reply, decode_request, encode_error, encode_hint, encode_reply,
    encode_request, Dtype, ErrorCode, ErrorView, Frame, FrameError, HintView, Kind, Limits, Pair,
    ReplyHeader, ReplyView, RequestHeader, RequestView, Response, Values, ValuesView, MAGIC,
    MAX_ERROR_MESSAGE, NO_EXPERT, VERSION,
};
pub use topics::{ClientId, DeviceId, ModelId, TopicError};

/// The module's error: a bad frame or a bad topic/id.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Topic(#[from] TopicError),
}
