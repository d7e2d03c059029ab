//! The daemon (`moe-edge serve`) and its client (`moe-edge ask`): OpenAI
//! chat completions over MQTT 5.
//!
//! Owns: admission (bounded heapless queue, priorities with ageing,
//! deadlines, per-client rate limit: [`admission`], pure), request/reply
//! mapping and the streaming protocol ([`reply`], pure), the retained status
//! ([`status`]), the engine thread that interleaves generations at token
//! granularity (`worker`), the tokio edges (`daemon`: intake, publisher,
//! status, shutdown), the cascade seam ([`escalate`]), the `ask` client
//! ([`ask`]) and the wiring of `moe-edge serve` ([`launch`]).
//! Does not own: the MQTT client and embedded broker (`transport`), topic
//! names (`wire::topics`), request validation and reply types (`openai`),
//! generation (`engine`), the cascade itself (`cascade`).
//!
//! Shape: [`run`]`(config, shutdown)` serves until the `shutdown` future
//! resolves, then stops accepting (new requests get `shutting_down`),
//! answers queued requests `shutting_down`, lets running ones finish within
//! `drain_timeout` (else answers `shutting_down`), publishes the offline
//! status and disconnects.

pub mod admission;
pub mod ask;
mod daemon;
pub mod dedup;
pub mod escalate;
pub mod launch;
pub mod reply;
pub mod status;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use admission::Policy;
pub use escalate::{ChunkSink, Escalate, EscalateReason};
pub use launch::{embedded_url, serve_blocking, DaemonOptions};

use crate::config::Board;
use crate::engine::Engine;
use crate::openai::ApiError;
use crate::transport::{MqttConfig, TransportError};
use crate::wire::{DeviceId, TopicError};

/// The embedded broker's default MQTT 5 listener (MQTT 3.1.1 on port + 1).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("engine thread: {0}")]
    EngineThread(String),
    /// `ask`: the daemon answered with an error.
    #[error("error reply: {0}")]
    Reply(ApiError),
    /// `ask`: no (complete) reply in time.
    #[error("no reply within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// `ask`: a reply that is not a chat.completion, chunk or error.
    #[error("unexpected reply: {0}")]
    BadReply(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Which broker the daemon talks through.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// Start rumqttd in-process on this MQTT 5 address (3.1.1 on port + 1).
    Embedded(SocketAddr),
    /// Connect to an external broker.
    External(Box<MqttConfig>),
}

/// Sent once the daemon is subscribed (for tests and embedders).
#[derive(Debug, Clone)]
pub struct Ready {
    /// `mqtt://host:port` of the broker in use.
    pub broker_url: String,
    pub requests_topic: String,
    pub status_topic: String,
}

/// Everything [`run`] needs.
pub struct ServeConfig {
    pub engine: Arc<Engine>,
    pub board: Board,
    pub device: DeviceId,
    pub broker: BrokerChoice,
    /// The cascade seam; `None` answers everything on the device.
    pub escalate: Option<Arc<dyn Escalate>>,
    pub policy: Policy,
    /// At most one status update per interval.
    pub status_interval: Duration,
    /// How long running requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// How long start-up waits for the broker before going on (the client
    /// keeps reconnecting in the background).
    pub connect_wait: Duration,
    /// `model` values accepted besides the bundle's model id (absent and
    /// empty are always accepted).
    pub model_aliases: Vec<String>,
    pub on_ready: Option<tokio::sync::oneshot::Sender<Ready>>,
}

impl ServeConfig {
    pub fn new(engine: Arc<Engine>, board: Board, device: DeviceId, broker: BrokerChoice) -> Self {
        ServeConfig {
            engine,
            board,
            device,
            broker,
            escalate: None,
            policy: Policy::default(),
            status_interval: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(10),
            connect_wait: Duration::from_secs(10),
            model_aliases: vec!["moe-edge".into(), "default".into()],
            on_ready: None,
        }
    }
}

/// Serves until `shutdown` resolves; see the module docs for the sequence.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    daemon::run(config, shutdown).await
}

/// Broker options from the command line: a `mqtt://` or `mqtts://` URL,
/// CA file, client certificate and key (mutual TLS), username and password.
pub fn broker_config(
    url: &str,
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<MqttConfig, ServeError> {
    let mut c = MqttConfig::from_url(url, "moe-edge")?;
    if ca.is_some() || cert.is_some() || key.is_some() {
        let Some(tls) = c.tls.as_mut() else {
            return Err(ServeError::Invalid(
                "--ca, --cert and --key need an mqtts:// broker url".into(),
            ));
        };
        tls.ca_file = ca.map(Path::to_path_buf);
        tls.client_cert = cert.map(Path::to_path_buf);
        tls.client_key = key.map(Path::to_path_buf);
    }
    if let Some(u) = username {
        c.username = Some(u.to_string());
    }
    if let Some(p) = password {
        c.password = Some(p.to_string());
    }
    Ok(c)
}

/// A device id from a host name: lower case, characters outside
/// `[a-z0-9_-]` become `-`, at most 64 bytes, `moe-edge` if nothing is left.
pub fn sanitize_device_id(name: &str) -> DeviceId {
    let mut s: String = name
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(crate::wire::topics::MAX_ID_LEN);
    let s = s.trim_matches('-').to_string();
    DeviceId::new(if s.is_empty() {
        "moe-edge".to_string()
    } else {
        s
    })
    .expect("sanitised ids are valid")
}

/// The device id from this machine's host name.
pub fn default_device_id() -> DeviceId {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    sanitize_device_id(&name)
}

/// `serve --dry-run`: what would be served, without loading weights.
pub fn describe_plan(board: &Board, bundle_dir: &Path, device: &DeviceId, broker: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let l = &board.limits;
    let _ = writeln!(s, "device     {device}");
    let _ = writeln!(s, "broker     {broker}");
    let _ = writeln!(
        s,
        "requests   {}",
        crate::wire::topics::chat_requests(device)
    );
    let _ = writeln!(s, "status     {}", crate::wire::topics::status(device));
    let _ = writeln!(
        s,
        "board      {} ({}) from {}",
        board.name, board.description, board.source
    );
    let _ = writeln!(
        s,
        "backend    {:?} threads={}",
        board.backend.kind, board.backend.threads
    );
    let _ = writeln!(
        s,
        "memory     experts={} MiB kv_cache={} MiB prefix_cache={} MiB block_tokens={}",
        board.memory.experts_bytes >> 20,
        board.memory.kv_cache_bytes >> 20,
        board.kv.prefix_cache_bytes >> 20,
        board.kv.block_tokens
    );
    let _ = writeln!(
        s,
        "limits     max_context={} max_concurrent={} queue_depth={} max_tokens={} max_payload_bytes={} requests_per_client_per_sec={}",
        l.max_context, l.max_concurrent, l.queue_depth, l.max_tokens, l.max_payload_bytes, l.requests_per_client_per_sec
    );
    match crate::bundle::Bundle::open(bundle_dir, crate::bundle::Verify::Sizes) {
        Ok(b) => {
            let m = &b.manifest;
            let a = &m.architecture;
            let _ = writeln!(
                s,
                "bundle     {} model={} dtype={:?} layers={} hidden={} experts={} top_k={} max_context={}",
                bundle_dir.display(),
                m.model_id,
                m.dtype,
                a.num_layers,
                a.hidden_size,
                a.num_experts,
                a.top_k,
                a.max_context
            );
        }
        Err(e) => {
            let _ = writeln!(s, "bundle     {} NOT USABLE: {e}", bundle_dir.display());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_from_host_names() {
        assert_eq!(
            sanitize_device_id("Car-Cockpit.local\n").as_str(),
            "car-cockpit-local"
        );
        assert_eq!(sanitize_device_id("").as_str(), "moe-edge");
        assert_eq!(sanitize_device_id("a/b+c#d$e").as_str(), "a-b-c-d-e");
        assert_eq!(sanitize_device_id(&"x".repeat(100)).as_str().len(), 64);
        assert!(!default_device_id().as_str().is_empty());
    }

    #[test]
    fn broker_options() {
        let c = broker_config(
            "mqtts://b.example:8883",
            Some(Path::new("ca.pem")),
            None,
            None,
            Some("u"),
            Some("p"),
        )
        .unwrap();
        assert_eq!(c.tls.unwrap().ca_file.unwrap(), Path::new("ca.pem"));
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert!(broker_config(
            "mqtt://b:1883",
            Some(Path::new("ca.pem")),
            None,
            None,
            None,
            None
        )
        .is_err());
    }
}
