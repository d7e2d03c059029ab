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

use std::future::Future;
use std::path::PathBuf;

use crate::bundle::Verify;
use crate::cascade::{Cascade, Tier};
use crate::config::Board;
use crate::openai::ServedBy;

/// What `moe-edge host` runs.
#[derive(Debug)]
pub struct HostOptions {
    pub bundle: PathBuf,
    pub board: Board,
    /// The OpenAI HTTP endpoint, on a listener bound by the caller (so it can print the port).
    pub http: Option<tokio::net::TcpListener>,
    /// The MQTT broker of the remote-expert server (`experts`, not built yet: accepted and logged).
    pub broker: Option<String>,
    pub verify: Verify,
}

/// Runs the host until `shutdown` completes: loads the full model (all
/// experts) on its own thread and serves it over HTTP; a request its model
/// marks for fallback goes to the board's cloud, if it names one.
pub async fn run(
    opts: HostOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    let cascade = Cascade::from_config(&opts.board.cascade, Tier::Host)
        .map_err(|e| HostError::Model(e.to_string()))?;
    log::info!(
        "host bundle={} board={} cloud={}",
        opts.bundle.display(),
        opts.board.name,
        if cascade.is_empty() {
            "none"
        } else {
            "configured"
        }
    );
    if let Some(url) = &opts.broker {
        // Seam: the MQTT expert server (`host::experts`) plugs in here.
        log::warn!("host broker={url} expert_server=unavailable (remote expert compute is not built into this binary yet)");
    }
    let Some(listener) = opts.http else {
        return Err(HostError::Model(
            "nothing to serve: give --http ADDR".into(),
        ));
    };
    let (bundle, board, verify) = (opts.bundle, opts.board.clone(), opts.verify);
    let model = tokio::task::spawn_blocking(move || {
        LocalModel::start(bundle, board, verify, ServedBy::Host, Some(cascade))
    })
    .await
    .map_err(|e| HostError::Model(format!("loading the model: {e}")))??;
    let state = HttpState::for_board(model, &opts.board);
    serve_listener(listener, state, shutdown).await
}

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
