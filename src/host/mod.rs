//! The host side: the full model of a bundle behind an OpenAI-compatible
//! HTTP endpoint (`http`), run on its own thread (`local`), so that devices
//! can fall back to it and any OpenAI client can use it. The MQTT expert
//! server (remote expert compute for devices) joins this module as `experts`.
//! Does not own: the cascade's policy and client (`cascade`), the MQTT
//! daemon (`serve`).

pub mod http;
pub mod local;

pub use http::{router, serve_http, serve_listener, ChatBackend, HttpState};
pub use local::LocalModel;

/// Failures of the host's servers.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),
    #[error("model: {0}")]
    Model(String),
}
