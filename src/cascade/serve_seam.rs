//! The daemon's seam: `serve::Escalate` implemented by [`Cascade`], so
//! `moe-edge serve` hands requests the device will not answer up the cascade.
//! Nothing else here: the policy is `policy`'s, the walk `hops`'.

use super::{Cascade, Escalation};
use crate::openai::{ApiError, ChatCompletion, ValidRequest};

/// The daemon's seam (`serve::Escalate`): a request the device will not
/// answer goes up the cascade; the device's own reply is not sent in its
/// place (the app gets a `no_route` error listing what was tried instead).
/// A streamed request streams through: the hop's chunks go into the daemon's
/// sink as they arrive, unchanged, then one chunk carrying `x_moe_edge`.
impl crate::serve::Escalate for Cascade {
    fn escalate(
        &self,
        request: ValidRequest,
        reason: crate::serve::EscalateReason,
        _device_reply: Option<ChatCompletion>,
        sink: Option<crate::serve::escalate::ChunkSink>,
    ) -> futures_util::future::BoxFuture<'static, Result<ChatCompletion, ApiError>> {
        let me = self.clone();
        Box::pin(async move {
            let why = match &reason {
                crate::serve::EscalateReason::Fallback(r) => Escalation::from_fallback(r),
                crate::serve::EscalateReason::NonText => Escalation::NonText,
                crate::serve::EscalateReason::ExpertsUnreachable(m) => {
                    Escalation::ExpertsUnreachable(m.clone())
                }
            };
            me.escalate(&request, &why.to_string(), sink).await
        })
    }
}
