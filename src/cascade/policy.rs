//! The cascade's policy, as plain synchronous decisions (no I/O, no clock of
//! its own): why a request leaves the device ([`Escalation`]), whether a hop
//! may be tried now and with what time budget ([`gate`]), what an upstream
//! failure means for the hop's breaker ([`Verdict`]), and the `x_moe_edge`
//! of a reply served upstream ([`served_info`]).
//!
//! A request goes to the next hop when the local model says `<|fallback|>`,
//! makes a tool call that is malformed or not allowed, or one it was not sure
//! of (below `cascade.min_confidence`), when its prompt does
//! not fit the context, when the device cannot meet its deadline, when
//! experts it needs cannot be reached, or when it carries images or audio
//! (passed through untouched; a `moe-edge host` runs the same text model, so
//! such requests skip it and go to the cloud).
//! Not here: HTTP (`client`), the walk over hops (`hops`), breakers' state (`breaker`).

use std::time::{Duration, Instant};

use super::CascadeError;
use crate::breaker::Admit;
use crate::chat::toolcall::FallbackReason;
use crate::openai::{ApiError, EdgeInfo, ErrorCode, ServedBy, ToolChoice, ValidRequest};

/// Why a request goes up the cascade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escalation {
    /// The model said `<|fallback|>`.
    FallbackMarker,
    /// A tool call that does not parse or is not allowed by the request.
    InvalidToolCall(String),
    /// The model said nothing usable.
    EmptyReply,
    /// A valid call the model was not sure of (the board's confidence gate).
    LowConfidence(String),
    /// The prompt does not fit the model's context.
    ContextTooLong(String),
    /// The request's deadline cannot be met here.
    Deadline(String),
    /// Experts the request needs are neither resident nor reachable.
    ExpertsUnreachable(String),
    /// Images, audio or other non-text parts.
    NonText,
}

impl std::fmt::Display for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Escalation::FallbackMarker => f.write_str("fallback marker"),
            Escalation::InvalidToolCall(m) => write!(f, "invalid tool call: {m}"),
            Escalation::EmptyReply => f.write_str("empty reply"),
            Escalation::LowConfidence(m) => f.write_str(m),
            Escalation::ContextTooLong(m) => write!(f, "prompt beyond the context: {m}"),
            Escalation::Deadline(m) => write!(f, "deadline cannot be met: {m}"),
            Escalation::ExpertsUnreachable(m) => write!(f, "experts unreachable: {m}"),
            Escalation::NonText => f.write_str("non-text content (images/audio)"),
        }
    }
}

impl Escalation {
    /// The local model's own verdict on its output.
    pub fn from_fallback(r: &FallbackReason) -> Escalation {
        match r {
            FallbackReason::Marker => Escalation::FallbackMarker,
            FallbackReason::Malformed(m) => Escalation::InvalidToolCall(format!("malformed: {m}")),
            FallbackReason::InvalidCall(m) => Escalation::InvalidToolCall(m.clone()),
            FallbackReason::Empty => Escalation::EmptyReply,
            FallbackReason::LowConfidence { .. } => Escalation::LowConfidence(r.to_string()),
        }
    }

    /// An error of the local engine that another hop may not have
    /// (context, deadline, unreachable experts); `None` for errors that are
    /// the request's fault and would fail anywhere.
    pub fn from_engine_error(e: &ApiError) -> Option<Escalation> {
        match e.code {
            ErrorCode::ContextLengthExceeded => Some(Escalation::ContextTooLong(e.message.clone())),
            ErrorCode::DeadlineExceeded => Some(Escalation::Deadline(e.message.clone())),
            ErrorCode::NoRoute => Some(Escalation::ExpertsUnreachable(e.message.clone())),
            _ => None,
        }
    }

    /// Decided before the device runs anything.
    pub fn before_local(req: &ValidRequest) -> Option<Escalation> {
        req.non_text.then_some(Escalation::NonText)
    }
}

/// Can the device finish in time? Estimates from measured rates (ms per
/// prompt token, ms per generated token); `None` when there is no deadline
/// or no measurement yet (the device then tries and is cut off at the deadline).
pub fn deadline_miss(
    deadline_ms: Option<u64>,
    prompt_tokens: usize,
    max_new_tokens: usize,
    prefill_ms_per_token: Option<f64>,
    decode_ms_per_token: Option<f64>,
) -> Option<Escalation> {
    let deadline = deadline_ms? as f64;
    let (p, d) = (prefill_ms_per_token?, decode_ms_per_token?);
    // Tool calls are short: judge on the first 32 tokens, not the cap.
    let est = prompt_tokens as f64 * p + max_new_tokens.min(32) as f64 * d;
    (est > deadline)
        .then(|| Escalation::Deadline(format!("needs ~{est:.0} ms, deadline {deadline:.0} ms")))
}

/// Whether a local reply's text may be streamed before generation ends.
/// Not when a tool call is required: text alone is then a reply the device
/// must not give (it escalates), so nothing may have been sent by then.
pub fn may_stream_text_early(req: &ValidRequest) -> bool {
    !matches!(
        req.tool_choice,
        ToolChoice::Required | ToolChoice::Function(_)
    )
}

/// One hop of the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopKind {
    /// A `moe-edge host`: the same model family with all experts; text only.
    Host,
    /// Any OpenAI-compatible endpoint.
    Cloud,
}

impl HopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HopKind::Host => "host",
            HopKind::Cloud => "cloud",
        }
    }

    pub fn served_by(self) -> ServedBy {
        match self {
            HopKind::Host => ServedBy::Host,
            HopKind::Cloud => ServedBy::Cloud,
        }
    }

    pub fn takes_non_text(self) -> bool {
        matches!(self, HopKind::Cloud)
    }
}

/// Below this, a hop is not worth calling.
pub const MIN_HOP_BUDGET: Duration = Duration::from_millis(5);

/// Whether to call a hop now; `Err` is the `tried` reason for skipping it.
/// `admit` is asked last (it claims the half-open probe slot).
pub fn gate(
    kind: HopKind,
    unavailable: Option<&str>,
    non_text: bool,
    timeout: Duration,
    deadline: Option<Instant>,
    now: Instant,
    admit: impl FnOnce() -> Admit,
) -> Result<(Duration, Admit), String> {
    if non_text && !kind.takes_non_text() {
        return Err("skipped: cannot take images or audio".into());
    }
    if let Some(why) = unavailable {
        return Err(why.to_string());
    }
    let budget = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(now);
            if left < MIN_HOP_BUDGET {
                return Err("skipped: the request's deadline has passed".into());
            }
            left.min(timeout)
        }
        None => timeout,
    };
    match admit() {
        Admit::No { retry_in } => Err(format!(
            "breaker open (retry in {} ms)",
            retry_in.as_millis()
        )),
        a => Ok((budget, a)),
    }
}

/// What an upstream failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Counts against the hop's breaker (the hop is unwell), rather than
    /// against the request (the hop is fine and said no).
    pub hop_failed: bool,
}

pub fn judge(e: &CascadeError) -> Verdict {
    let hop_failed = match e {
        CascadeError::Status { status, error } => {
            // A moe-edge host answering no_route/context/invalid is healthy: it said no.
            let said_no = matches!(status, 400 | 404 | 409 | 413 | 422)
                || matches!(
                    error.code,
                    ErrorCode::NoRoute | ErrorCode::ContextLengthExceeded
                );
            !said_no
        }
        CascadeError::Config(_) | CascadeError::CallerGone => false,
        _ => true,
    };
    Verdict { hop_failed }
}

/// The `x_moe_edge` of a reply served by `kind`: the upstream's own (a
/// `moe-edge host` reports experts, timings and its own escalations) or a
/// fresh one, with our reason and earlier hops put in front.
pub fn served_info(
    kind: HopKind,
    upstream: Option<EdgeInfo>,
    reason: &str,
    tried: &[String],
    total_ms: f64,
) -> EdgeInfo {
    let mut info = upstream.unwrap_or_else(|| EdgeInfo {
        served_by: kind.served_by(),
        ..EdgeInfo::default()
    });
    // The farthest hop that worked on it: an upstream `moe-edge host` that
    // escalated to its cloud says `cloud`; an OpenAI endpoint that happens to
    // be a `moe-edge host` but is configured as our cloud hop is `cloud` to us.
    let rank = |s: ServedBy| match s {
        ServedBy::Device => 0,
        ServedBy::Host => 1,
        ServedBy::Cloud => 2,
    };
    if rank(info.served_by) < rank(kind.served_by()) {
        info.served_by = kind.served_by();
    }
    let mut all = tried.to_vec();
    all.append(&mut info.tried);
    info.tried = all;
    info.fallback_reason = Some(reason.to_string());
    info.timings_ms.total = total_ms;
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{ChatRequest, Content, ContentPart, Message, RequestLimits};

    fn valid(req: ChatRequest) -> ValidRequest {
        req.validate(&RequestLimits::default()).unwrap()
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            Escalation::from_fallback(&FallbackReason::Marker).to_string(),
            "fallback marker"
        );
        assert!(
            Escalation::from_fallback(&FallbackReason::InvalidCall("unknown tool `x`".into()))
                .to_string()
                .starts_with("invalid tool call")
        );
        let ctx = ApiError::new(
            ErrorCode::ContextLengthExceeded,
            "needs 600 tokens, the limit is 512",
        );
        assert!(matches!(
            Escalation::from_engine_error(&ctx),
            Some(Escalation::ContextTooLong(_))
        ));
        assert!(Escalation::from_engine_error(&ApiError::invalid_request("bad", "x")).is_none());
        let unreachable = ApiError::new(ErrorCode::NoRoute, "expert 3 of layer 1 unreachable");
        assert!(matches!(
            Escalation::from_engine_error(&unreachable),
            Some(Escalation::ExpertsUnreachable(_))
        ));
    }

    #[test]
    fn non_text_goes_up_before_the_device() {
        let text = valid(ChatRequest {
            messages: vec![Message::user("hi")],
            ..ChatRequest::default()
        });
        assert_eq!(Escalation::before_local(&text), None);
        let parts: Content = serde_json::from_value(serde_json::json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        ]))
        .unwrap();
        let img = valid(ChatRequest {
            messages: vec![Message::user(parts)],
            ..ChatRequest::default()
        });
        assert_eq!(Escalation::before_local(&img), Some(Escalation::NonText));
        let _ = ContentPart::text("x");
    }

    #[test]
    fn deadline_estimate() {
        assert_eq!(deadline_miss(None, 100, 32, Some(1.0), Some(5.0)), None);
        assert_eq!(deadline_miss(Some(100), 100, 32, None, Some(5.0)), None);
        assert_eq!(
            deadline_miss(Some(1000), 100, 32, Some(1.0), Some(5.0)),
            None
        );
        assert!(matches!(
            deadline_miss(Some(200), 100, 32, Some(1.0), Some(5.0)),
            Some(Escalation::Deadline(_))
        ));
    }

    #[test]
    fn gate_order_and_budgets() {
        let now = Instant::now();
        let t = Duration::from_secs(10);
        let yes = || Admit::Yes;
        assert_eq!(
            gate(HopKind::Cloud, None, false, t, None, now, yes),
            Ok((t, Admit::Yes))
        );
        assert!(gate(HopKind::Host, None, true, t, None, now, yes)
            .unwrap_err()
            .contains("images"));
        assert!(gate(HopKind::Cloud, None, true, t, None, now, yes).is_ok());
        assert_eq!(
            gate(
                HopKind::Cloud,
                Some("DASHSCOPE_API_KEY is not set"),
                false,
                t,
                None,
                now,
                yes
            ),
            Err("DASHSCOPE_API_KEY is not set".into())
        );
        let soon = now + Duration::from_millis(300);
        assert_eq!(
            gate(HopKind::Cloud, None, false, t, Some(soon), now, yes)
                .unwrap()
                .0,
            Duration::from_millis(300)
        );
        assert!(gate(HopKind::Cloud, None, false, t, Some(now), now, yes)
            .unwrap_err()
            .contains("deadline"));
        let no = || Admit::No {
            retry_in: Duration::from_millis(4200),
        };
        assert_eq!(
            gate(HopKind::Host, None, false, t, None, now, no),
            Err("breaker open (retry in 4200 ms)".into())
        );
        // The breaker is not asked when the hop is skipped anyway.
        let mut asked = false;
        let _ = gate(HopKind::Host, None, true, t, None, now, || {
            asked = true;
            Admit::Yes
        });
        assert!(!asked);
    }

    #[test]
    fn verdicts() {
        let st = |status, code| CascadeError::Status {
            status,
            error: ApiError::new(code, "x"),
        };
        assert!(judge(&st(500, ErrorCode::UpstreamError)).hop_failed);
        assert!(judge(&st(429, ErrorCode::RateLimited)).hop_failed);
        assert!(judge(&st(401, ErrorCode::UpstreamError)).hop_failed);
        assert!(!judge(&st(400, ErrorCode::InvalidRequest)).hop_failed);
        assert!(!judge(&st(503, ErrorCode::NoRoute)).hop_failed);
        assert!(judge(&CascadeError::Connect("refused".into())).hop_failed);
        assert!(judge(&CascadeError::Timeout { ms: 1, phase: "x" }).hop_failed);
    }

    #[test]
    fn served_info_merges_upstream_tried() {
        let up = EdgeInfo {
            served_by: ServedBy::Cloud,
            tried: vec!["host: fallback marker".into()],
            ..EdgeInfo::default()
        };
        let i = served_info(
            HopKind::Host,
            Some(up),
            "fallback marker",
            &["device: fallback marker".into()],
            12.0,
        );
        assert_eq!(i.served_by, ServedBy::Cloud);
        assert_eq!(
            i.tried,
            vec!["device: fallback marker", "host: fallback marker"]
        );
        let own = served_info(HopKind::Host, Some(EdgeInfo::default()), "r", &[], 1.0);
        assert_eq!(own.served_by, ServedBy::Host);
        let fresh = served_info(
            HopKind::Cloud,
            None,
            "r",
            &["device: r".into(), "host: breaker open".into()],
            3.0,
        );
        assert_eq!(fresh.served_by, ServedBy::Cloud);
        assert_eq!(fresh.tried.len(), 2);
        assert_eq!(fresh.fallback_reason.as_deref(), Some("r"));
    }
}
