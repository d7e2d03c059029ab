//! Local MoE inference: the step runner (`model`), KV cache (`kv`), router,
//! sampler, the generation state machine (`generate`), and what turns model
//! text into OpenAI replies (`toolcall`, `schema`, `template`, `chat`).
//! Expert storage and residency are `experts`'; graph execution is `runtime`'s.

pub mod chat;
pub mod eval;
pub mod generate;
pub mod golden;
pub mod kv;
pub mod model;
pub mod plan_file;
pub mod router;
pub mod sampler;
pub mod schema;
pub mod template;
pub mod toolcall;

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
