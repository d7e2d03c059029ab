//! The cascade: device → host (full model) → cloud.
//!
//! Owns: the OpenAI-compatible client for upstream hops (`client`), a circuit
//! breaker per hop (the state machine is `crate::breaker`), the policy
//! deciding what leaves the device and what a failure means (`policy`), and
//! the walk over the hops with streaming pass-through (`hops`:
//! [`Cascade::escalate`] is what `serve` and the HTTP endpoint call).
//! Does not own: running the local model (`engine`), the HTTP server
//! (`host::http`), MQTT (`serve`, `transport`), or the wire types (`openai`).

pub mod client;
pub mod hops;
pub mod policy;
mod serve_seam;

pub use crate::breaker::{Admit, Breaker, State as BreakerState};
pub use client::{ApiKey, ChunkStream, Client, ClientConfig, RetryPolicy};
pub use hops::{Cascade, ChunkSink, Hop, Tier};
pub use policy::{Escalation, HopKind};

use crate::openai::{ApiError, ErrorCode};

/// Failures of one upstream call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CascadeError {
    /// No connection could be made (refused, DNS, TLS handshake).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A wait ran out.
    #[error("timeout after {ms} ms ({phase})")]
    Timeout { ms: u64, phase: &'static str },
    /// The upstream answered with an error status (or an error event in a stream).
    #[error("HTTP {status}: {error}")]
    Status { status: u16, error: ApiError },
    /// The upstream's reply is not what OpenAI's API promises.
    #[error("bad reply: {0}")]
    Protocol(String),
    /// The stream broke after some chunks.
    #[error("stream broke after {chunks} chunks: {msg}")]
    Stream { chunks: usize, msg: String },
    /// Whoever consumed the stream went away.
    #[error("the caller went away")]
    CallerGone,
    /// A hop that is configured wrongly (bad URL, bad key).
    #[error("configuration: {0}")]
    Config(String),
}

impl CascadeError {
    /// Safe to send again: nothing reached the upstream, or it said "try again".
    pub fn is_retryable(&self) -> bool {
        match self {
            CascadeError::Connect(_) => true,
            CascadeError::Status { status: 429, error }
            | CascadeError::Status { status: 503, error } => {
                matches!(
                    error.code,
                    ErrorCode::UpstreamError | ErrorCode::Overloaded | ErrorCode::RateLimited
                )
            }
            _ => false,
        }
    }

    /// A short form for `tried` lists: `timeout after 10000 ms`, `HTTP 500 (...)`.
    pub fn short(&self) -> String {
        match self {
            CascadeError::Timeout { ms, .. } => format!("timeout after {ms} ms"),
            CascadeError::Connect(m) => format!("unreachable ({})", last_cause(m)),
            CascadeError::Status { status, error } => {
                format!(
                    "HTTP {status} {} ({})",
                    error.code,
                    truncate(&error.message, 160)
                )
            }
            other => truncate(&other.to_string(), 200),
        }
    }

    /// As an error for the app when this one call is all there is.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            CascadeError::Status { error, .. } if error.code != ErrorCode::UpstreamError => {
                error.clone()
            }
            CascadeError::Status { status, error } => ApiError::new(
                ErrorCode::UpstreamError,
                format!("HTTP {status}: {}", error.message),
            ),
            CascadeError::Connect(_) => ApiError::no_route(&[self.short()]),
            CascadeError::Timeout { .. } => {
                ApiError::new(ErrorCode::UpstreamError, self.to_string())
            }
            _ => ApiError::new(ErrorCode::UpstreamError, self.to_string()),
        }
    }
}

fn last_cause(m: &str) -> &str {
    m.rsplit(": ").next().unwrap_or(m)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
