//! `moe-edge serve` as one call: load the engine, attach remote experts and
//! the cascade the board asks for, start the daemon (and, with `http`, the
//! OpenAI HTTP face that goes through it) on one tokio runtime, and stop when
//! `shutdown` resolves.
//!
//! Owns: the wiring of those parts from [`DaemonOptions`]. Does not own any
//! of the parts (`serve::daemon`, `experts::remote`, `cascade`, `host::device`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{BrokerChoice, ServeConfig, ServeError};
use crate::bundle::Verify;
use crate::config::{Board, OnMiss};
use crate::engine::Engine;
use crate::experts::dispatch::RemoteExperts;
use crate::transport::MqttConfig;
use crate::wire::DeviceId;

/// What `moe-edge serve` was asked to do.
pub struct DaemonOptions {
    pub bundle: PathBuf,
    pub board: Board,
    pub device: DeviceId,
    /// The embedded broker's MQTT 5 listener, or an external broker.
    pub broker: BrokerChoice,
    /// How long running requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Also offer the OpenAI HTTP endpoint here (requests go through the daemon).
    pub http: Option<SocketAddr>,
    /// Send the experts this device lacks to a host (also on with `offload.enabled`).
    pub offload: bool,
    /// Skip the remote round trip below this missing router weight (substitute instead).
    pub offload_skip_below: f32,
}

/// `mqtt://` URL of the embedded broker listening on `listen`.
pub fn embedded_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    format!("mqtt://{}", SocketAddr::new(ip, listen.port()))
}

/// Loads the engine and serves until `shutdown` resolves (blocking: builds
/// its own runtime).
pub fn serve_blocking(
    opts: DaemonOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let rt = crate::process::runtime(2).map_err(ServeError::Io)?;
    rt.block_on(serve(opts, shutdown))
}

/// The async body of [`serve_blocking`].
pub async fn serve(
    opts: DaemonOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let DaemonOptions {
        bundle,
        board,
        device,
        broker,
        drain_timeout,
        http,
        offload,
        offload_skip_below,
    } = opts;
    let mut engine = Engine::load(&bundle, &board, Verify::Full)
        .map_err(|e| ServeError::Invalid(format!("loading bundle {}: {e}", bundle.display())))?;
    // The broker every client of this process uses.
    let client_mqtt = match &broker {
        BrokerChoice::External(c) => (**c).clone(),
        BrokerChoice::Embedded(listen) => MqttConfig::from_url(&embedded_url(*listen), "moe-edge")?,
    };
    if board.offload.enabled || offload {
        let remote = offload_remote(
            &engine,
            &board,
            &device,
            client_mqtt.clone(),
            offload_skip_below,
        )
        .await?;
        engine.model.set_remote(Some(remote));
    }
    let model_id = engine.model_id().to_string();
    // The cascade (host, then cloud, from the board's [cascade]); with no hop
    // configured the device answers what it can and says so when it cannot.
    let cascade =
        crate::cascade::Cascade::from_config(&board.cascade, crate::cascade::Tier::Device)
            .map_err(|e| ServeError::Invalid(format!("board {}: cascade: {e}", board.name)))?;
    let http_board = board.clone();
    let http_device = device.clone();
    let external = matches!(broker, BrokerChoice::External(_));
    let mut config = ServeConfig::new(Arc::new(engine), board, device, broker);
    config.drain_timeout = drain_timeout;
    if !cascade.is_empty() {
        config.escalate = Some(Arc::new(cascade));
    }
    let stop = crate::process::Stop::new(shutdown);
    let Some(addr) = http else {
        return super::run(config, stop.wait()).await;
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    config.on_ready = Some(ready_tx);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Invalid(format!("cannot listen on {addr}: {e}")))?;
    // Scripts and tests read the bound address from this line.
    println!(
        "moe-edge serve: http listening on http://{}",
        listener.local_addr().map_err(ServeError::Io)?
    );
    let http_task = {
        let stop = stop.wait();
        async move {
            let Ok(ready) = ready_rx.await else {
                return Ok(());
            };
            let mqtt = if external {
                client_mqtt
            } else {
                MqttConfig::from_url(&ready.broker_url, "moe-edge-http")?
            };
            crate::host::device::serve_http_over_daemon(
                listener,
                &mqtt,
                &http_device,
                model_id,
                &http_board,
                stop,
            )
            .await
            .map_err(|e| ServeError::Invalid(format!("http: {e}")))
        }
    };
    let (daemon, http) = tokio::join!(super::run(config, stop.wait()), http_task);
    daemon?;
    http
}

/// The device's remote experts: one MQTT connection on the current runtime,
/// replies routed by correlation data, alive as long as the runtime.
async fn offload_remote(
    engine: &Engine,
    board: &Board,
    device: &DeviceId,
    mqtt: MqttConfig,
    skip_below: f32,
) -> Result<Arc<dyn RemoteExperts>, ServeError> {
    use crate::experts::remote::{MqttRemote, RemoteConfig};
    let bad = |e: &dyn std::fmt::Display| ServeError::Invalid(format!("offload: {e}"));
    let mut cfg = RemoteConfig::new(
        &engine.model.manifest,
        device.clone(),
        board.offload.timeout,
    )
    .map_err(|e| bad(&e))?;
    if board.offload.on_miss == OnMiss::Substitute {
        cfg.skip_below = skip_below;
    }
    // Running requests may still need remote experts while the daemon
    // drains, so the connection lives until the runtime ends.
    let remote = MqttRemote::connect(mqtt, cfg, std::future::pending())
        .await
        .map_err(|e| bad(&e))?;
    log::info!(
        "offload on timeout_ms={} on_miss={:?} skip_below={skip_below}",
        board.offload.timeout.as_millis(),
        board.offload.on_miss
    );
    Ok(Arc::new(remote))
}
