//! The seam where the cascade (device → host → cloud, `crate::cascade`)
//! plugs into the daemon.
//!
//! Owns: the [`Escalate`] trait and the reasons a request is handed up
//! ([`EscalateReason`]). Does not own: any policy, client or breaker (all of
//! that is `cascade`'s), nor the publishing of the answer (`serve::daemon`
//! publishes what `escalate` streams into its [`ChunkSink`] as it arrives,
//! or whatever it returns, re-chunked if the app asked for a stream).
//!
//! Without an escalator (`ServeConfig::escalate == None`) the daemon answers
//! on its own: a reply the model marked for fallback is sent as the device's
//! reply with `x_moe_edge.fallback_reason` set; a request with images/audio
//! is answered by the device from its text parts, with
//! `fallback_reason: "non-text content"`; experts that cannot be reached end
//! in a `no_route` error.

use futures_util::future::BoxFuture;

use crate::chat::toolcall::FallbackReason;
use crate::openai::{ApiError, ChatCompletion, ValidRequest};

/// Where an escalator streams the chunks of a streamed request, as they
/// arrive from upstream (bounded: a stuck app stalls the upstream read, it
/// does not grow memory).
pub use crate::cascade::ChunkSink;

/// Why the device hands a request up.
#[derive(Debug, Clone, PartialEq)]
pub enum EscalateReason {
    /// The device answered, but its reply says it should not be the one
    /// (the `<|fallback|>` marker, a malformed or invalid tool call, nothing said).
    Fallback(FallbackReason),
    /// The request carries images, audio or other non-text parts; the device
    /// has not run it.
    NonText,
    /// Experts the device needed could not be reached (remote host down);
    /// generation was stopped.
    ExpertsUnreachable(String),
}

impl std::fmt::Display for EscalateReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EscalateReason::Fallback(r) => write!(f, "{r}"),
            EscalateReason::NonText => f.write_str("non-text content"),
            EscalateReason::ExpertsUnreachable(m) => write!(f, "experts unreachable: {m}"),
        }
    }
}

/// What the daemon asks of the cascade. Called on the tokio runtime, never
/// on the engine thread; the daemon puts its own deadline around the future
/// (the request's `x-deadline-ms` if any, else the board's cascade timeout)
/// and answers `deadline_exceeded` when it passes.
pub trait Escalate: Send + Sync + 'static {
    /// Serve `request` elsewhere. `device_reply` is what the device said, if
    /// it ran (for [`EscalateReason::Fallback`]); the cascade may return it
    /// (e.g. every hop is down and the device's answer is better than
    /// nothing) or its own. An `Err` is sent to the app as is (`no_route`
    /// listing what was tried, `upstream_error`, ...).
    ///
    /// `sink` is given when the app asked for a stream and nothing has been
    /// sent to it yet: chunks sent into it reach the app unchanged as they
    /// come (the daemon adds only the stream terminator), and the returned
    /// completion must be the same reply added up. An escalator that sends
    /// nothing into the sink is re-chunked from its returned completion.
    fn escalate(
        &self,
        request: ValidRequest,
        reason: EscalateReason,
        device_reply: Option<ChatCompletion>,
        sink: Option<ChunkSink>,
    ) -> BoxFuture<'static, Result<ChatCompletion, ApiError>>;
}
