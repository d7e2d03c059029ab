//! Routed experts: where their weights live and who computes them.
//! - `store`: `experts.safetensors` memmapped, one page-aligned slice per expert (no copies)
//! - `cache`: the residency policy under the board's budget (LRU, LFU, pinned); pure, no I/O
//! - `kernels`: the expert FFN (SwiGLU) as SIMD GEMV straight from f32/f16/q8/q4 weights
//! - `batch`: the experts of one layer step together, spread over the compute pool
//! - `qkernels`: the int8/int4 row kernels of quantised experts (AVX2, NEON/sdot, portable)
//! - `prefetch`: experts paged in ahead of use on I/O threads (bounded queue, late/ready counts)
//! - `dispatch`: what happens to an expert this device does not carry (substitute, remote)
//! - `remote`: the MQTT client of remote experts (one request per layer step, deadlines, counters)
//!
//! Routing itself (softmax, top-k) is the engine's (`engine::router`).

pub mod batch;
pub mod cache;
pub mod dispatch;
pub mod kernels;
pub mod prefetch;
pub mod qkernels;
pub mod remote;
pub mod store;

pub use cache::{Access, CacheStats, ExpertId, ResidencyCache};
pub use store::{ExpertStore, ExpertWeights};

#[derive(Debug, thiserror::Error)]
pub enum ExpertError {
    #[error("{path}: {msg}")]
    Store { path: String, msg: String },
    #[error("{path}: expert {expert} of layer {layer} does not match its sha256 in the manifest (file corrupted or modified); requests that route to it fail")]
    Corrupt {
        path: String,
        layer: usize,
        expert: usize,
    },
    #[error("remote experts: {0}")]
    Remote(String),
    #[error(
        "layer {layer}: experts {experts:?} are not on this device and no remote host answered"
    )]
    Unreachable { layer: usize, experts: Vec<u32> },
}
