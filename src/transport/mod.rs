//! MQTT transport: the embedded broker, the client (handle + driver over
//! rumqttc's v5 event loop) and request/response RPC over MQTT 5.
//!
//! Owns: broker start-up, connection options (URL, TLS, last will, limits),
//! reconnects and re-subscription, bounded delivery of incoming messages,
//! correlation of RPC replies and their deadlines. Does not own: what the
//! payloads mean (`wire`, `serve`, `host`), topic names (`wire::topics`), nor
//! any policy about what to do when a call fails (`experts`, `cascade`).
//!
//! Shape: [`client::connect`] returns an [`MqttHandle`] (clone it freely), an
//! [`Inbox`] (the bounded stream of incoming publishes) and a [`Driver`] that
//! must be spawned; [`Driver::run`] takes the shutdown future. [`Rpc`] sits on
//! a handle. [`Broker::start`] runs rumqttd on its own thread.

pub mod broker;
pub mod client;
pub mod rpc;

pub use broker::{Broker, BrokerConfig};
pub use client::{
    connect, ConnState, Driver, Inbox, LastWill, Message, MqttConfig, MqttHandle, PublishOptions,
    QoS, Stats, StatsSnapshot, TlsConfig,
};
pub use rpc::{respond, Rpc, RpcConfig, RpcError, RpcStats};

/// Everything that can go wrong in this module, except an RPC call's own
/// outcome ([`RpcError`], which callers match on).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("bad broker url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("bad option: {0}")]
    BadOption(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("io on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("broker: {0}")]
    Broker(String),
    #[error("broker at {addr} did not accept connections within {waited_ms} ms")]
    BrokerNotReady {
        addr: std::net::SocketAddr,
        waited_ms: u64,
    },
    #[error("address {addr} is in use: {source}")]
    AddrInUse {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("mqtt client: {0}")]
    Client(String),
    #[error("the driver has stopped")]
    Closed,
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// Cuts a payload for a log line: at most `max` bytes shown, lossy UTF-8,
/// with the full length. rumqttc's `Debug` output prints whole payloads; never
/// log those.
pub fn preview(payload: &[u8], max: usize) -> String {
    let shown = &payload[..payload.len().min(max)];
    let text = String::from_utf8_lossy(shown);
    if payload.len() > max {
        format!("{text}…({} bytes)", payload.len())
    } else {
        text.into_owned()
    }
}

/// Cuts any text (an error's Display, which may embed a payload) for logging.
pub fn truncate_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_short() {
        assert_eq!(preview(b"hello", 10), "hello");
        assert_eq!(preview(&[b'a'; 1000], 4), "aaaa…(1000 bytes)");
        assert_eq!(truncate_text("héllo", 2), "h");
    }
}
