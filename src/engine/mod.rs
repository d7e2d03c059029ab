//! The inference core: the step runner (`model`), KV cache (`kv`), the
//! prefix cache shared by requests (`prefix`), router, the next layer's
//! experts predicted from the residual (`predict`), sampler and the
//! generation state machine (`generate`).
//! Does not own: what turns requests into prompts and text into OpenAI replies
//! (`chat`), evaluation (`eval`), expert storage and residency (`experts`),
//! graph execution (`runtime`).

pub mod generate;
pub mod kv;
pub mod model;
pub mod predict;
pub mod prefix;
pub mod router;
pub mod sampler;

pub use generate::{Engine, FinishReason, Finished, GenParams, Generation, Step, Timings};
pub use model::{ExpertCounts, Model, Observer};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("bundle: {0}")]
    Bundle(String),
    #[error(transparent)]
    BundleFile(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Experts(#[from] crate::experts::ExpertError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("this request needs {needed} tokens of context, the limit is {limit}")]
    ContextLength { needed: usize, limit: usize },
    #[error("{0}")]
    Invalid(String),
}
