//! The host side: the full model of a bundle behind an OpenAI-compatible
//! HTTP endpoint (`http`), run on its own thread (`local`), so that devices
//! can fall back to it and any OpenAI client can use it, and the MQTT expert
//! server (`experts`: remote expert compute for devices), alongside or alone.
//! Does not own: the cascade's policy and client (`cascade`), the MQTT
//! daemon (`serve`).

pub mod device;
pub mod experts;
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
    /// The MQTT expert server (`experts`), when `--broker` is given.
    pub experts: Option<experts::ExpertServerConfig>,
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
    // One shutdown signal for both servers.
    let stop = crate::process::Stop::new(shutdown);
    let expert_server = match opts.experts {
        Some(cfg) => {
            let server = tokio::task::spawn_blocking(move || experts::ExpertServer::open(cfg))
                .await
                .map_err(|e| HostError::Model(format!("loading the experts: {e}")))?
                .map_err(|e| HostError::Experts(e.to_string()))?;
            let model = server.model_id().clone();
            let stop = stop.wait();
            Some(tokio::spawn(async move {
                server
                    .run(stop, move |filter| {
                        // Scripts and tests read this line on stdout.
                        println!(
                            "moe-edge host: expert server ready model={model} filter={filter}"
                        );
                    })
                    .await
                    .inspect(|s| {
                        // Scripts and tests read this line on stdout too.
                        println!(
                            "moe-edge host: expert server stopped requests={} served={} rejected={} busy={} hints={} hinted={} hints_dropped={}",
                            s.requests, s.served, s.rejected, s.busy, s.hints, s.hinted, s.hints_dropped
                        );
                    })
            }))
        }
        None => None,
    };
    let Some(listener) = opts.http else {
        return match expert_server {
            Some(task) => task
                .await
                .map_err(|e| HostError::Experts(e.to_string()))?
                .map(|_| ())
                .map_err(|e| HostError::Experts(e.to_string())),
            None => Err(HostError::Model(
                "nothing to serve: give --http ADDR and/or --broker URL".into(),
            )),
        };
    };
    let (bundle, board, verify) = (opts.bundle, opts.board.clone(), opts.verify);
    let model = tokio::task::spawn_blocking(move || {
        LocalModel::start(bundle, board, verify, ServedBy::Host, Some(cascade))
    })
    .await
    .map_err(|e| HostError::Model(format!("loading the model: {e}")))??;
    let state = HttpState::for_board(model, &opts.board);
    let served = serve_listener(listener, state, stop.wait()).await;
    if let Some(task) = expert_server {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!("expert server ended err={e}"),
            Err(e) => log::warn!("expert server task failed err={e}"),
        }
    }
    served
}

/// `moe-edge host` as one call: binds the HTTP endpoint (if `http_addr`),
/// prints its address on stdout (scripts and tests read it there), then
/// [`run`]s on a runtime of its own until `shutdown` resolves.
pub fn run_blocking(
    mut opts: HostOptions,
    http_addr: Option<std::net::SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    let rt = crate::process::runtime(2).map_err(HostError::Serve)?;
    rt.block_on(async move {
        if let Some(addr) = http_addr {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            println!(
                "moe-edge host: listening on http://{}",
                l.local_addr().map_err(HostError::Serve)?
            );
            opts.http = Some(l);
        }
        let result = run(opts, shutdown).await;
        log::info!("host stopped");
        result
    })
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
    #[error("expert server: {0}")]
    Experts(String),
}
