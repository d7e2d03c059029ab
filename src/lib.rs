//! moe-edge: run an expert-pruned Mixture-of-Experts model on an edge board,
//! serve it over MQTT, offload missing experts to a host, fall back to a cloud.
//!
//! Layout (the folder map is the module map):
//! - `config`    boards/NAME.toml: raw serde structs, validated into `Board`
//! - `bundle`    manifest, file checks; `bundle::import` turns HF checkpoints into bundles
//! - `runtime`   trait `Backend` + own `Tensor`; tract and ort backends
//! - `schema`    JSON-schema validation and `pattern` regexes (a leaf)
//! - `openai`    chat-completions wire types, validation, errors in OpenAI's shape, SSE
//! - `constrain` schema-constrained decoding: schema → automaton → token masks
//! - `engine`    the inference core: step runner, KV cache, router, sampler, generation
//! - `chat`      the OpenAI face of the engine: prompt templates, tool-call parsing, replies
//! - `eval`      accuracy on labelled splits, golden-vector replay
//! - `experts`   expert store (memmap), residency cache (budget, policies), kernels, dispatch
//! - `wire`      remote-expert frame codec and MQTT topic builders (pure, synchronous)
//! - `transport` MQTT client driver and embedded broker
//! - `serve`     the daemon: admission, request/reply mapping, status
//! - `host`      expert server and the OpenAI HTTP endpoint
//! - `cascade`   fallback policy and the OpenAI-compatible cloud client
//! - `plan`      routing statistics, resident-expert selection, pruned device bundles
//! - `bench`     the `bench` subcommand
//! - `process`   tokio runtime and shutdown signal for the subcommands

pub mod bench;
pub mod breaker;
pub mod bundle;
pub mod cascade;
pub mod chat;
pub mod config;
pub mod constrain;
pub mod engine;
pub mod eval;
pub mod experts;
pub mod host;
pub mod openai;
pub mod plan;
pub mod process;
pub mod runtime;
pub mod schema;
pub mod serve;
pub mod transport;
pub mod wire;

/// The crate-level error: every module's error, unchanged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
}
