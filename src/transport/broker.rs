//! The embedded MQTT broker: rumqttd 0.20 on its own thread.
//!
//! Owns: turning a listen address into a rumqttd config (an MQTT 5 listener
//! and an MQTT 3.1.1 one), starting it, and waiting (with a deadline) until
//! it accepts TCP. Does not own: clients (`client`), topics, auth, TLS (the
//! embedded broker is for loopback and trusted networks; use an external
//! broker with `--broker mqtts://...` otherwise).
//!
//! rumqttd facts this relies on (checked against 0.20.0's source):
//! - Each listener speaks one protocol: a `[v5.*]` server decodes only MQTT 5
//!   CONNECTs, a `[v4.*]` server only 3.1.1. There is no single port for both.
//!   So `listen` (the documented `--listen`, default 127.0.0.1:1883) is the
//!   MQTT 5 listener and 3.1.1 apps use **port + 1** (default 1884), on the
//!   same IP. Both listeners share one router, so v4 and v5 clients see each
//!   other's messages.
//! - `Broker::start()` blocks forever and there is no shutdown API: the broker
//!   lives as long as the process.
//! - A listener that fails to bind only logs from its own thread, so readiness
//!   is checked here: the ports are probed free before the start, and the v5
//!   port must accept TCP before `start` returns.
//! - rumqttd logs through `tracing`; with no tracing subscriber installed its
//!   events go to the `log` facade under the `rumqttd` target. Binaries should
//!   add [`QUIET_LOG_FILTER`] to their default filter so rumqttd stays quiet
//!   unless `RUST_LOG` asks for it.
//! - It ignores a client's Receive Maximum (it uses its own
//!   `max_inflight_count`) and accepts `$share/{group}/...` (round robin).
//!
//! The build uses rumqttd 0.20.0 patched in `vendor/rumqttd` (see its
//! `MOE-EDGE.md`): upstream keeps every subscription filter's message log,
//! and each stored message pins its connection's 8 KiB read buffer, for the
//! broker's lifetime, so apps that use a fresh reply topic per request grew
//! the daemon without bound. The patched router drops a filter's log once
//! nothing can read it again; [`Broker::filter_count`] reports how many are
//! held.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::TransportError;

/// Smallest segment of a filter's message log, bytes.
const SEGMENT_MIN: usize = 256 << 10;

/// Default filter directives that keep rumqttd to warnings (its spans reach
/// the `log` facade under `tracing::span` too).
pub const QUIET_LOG_FILTER: &str = "rumqttd=warn,tracing::span=warn";

/// What to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The MQTT 5 listener. Port 0 picks a free port (and a free port + 1).
    pub listen: SocketAddr,
    /// Also serve MQTT 3.1.1 on `listen` port + 1.
    pub v4: bool,
    /// Largest PUBLISH payload accepted, bytes.
    pub max_payload_size: usize,
    /// Most client connections.
    pub max_connections: usize,
    /// Unacknowledged QoS 1/2 messages per connection.
    pub max_inflight: usize,
    /// Time a new TCP connection gets to send CONNECT.
    pub connect_timeout: Duration,
    /// How long `start` waits for the listener to accept TCP.
    pub ready_timeout: Duration,
}

impl BrokerConfig {
    pub fn new(listen: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            listen,
            v4: true,
            max_payload_size: 1 << 20,
            max_connections: 1024,
            max_inflight: 100,
            connect_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(5),
        }
    }
}

/// A running embedded broker.
#[derive(Debug, Clone)]
pub struct Broker {
    v5_addr: SocketAddr,
    v4_addr: Option<SocketAddr>,
    filters: Arc<AtomicUsize>,
}

impl Broker {
    /// Starts rumqttd and returns once the MQTT 5 port accepts connections.
    pub fn start(config: BrokerConfig) -> Result<Broker, TransportError> {
        if config.max_payload_size == 0 || config.max_connections == 0 {
            return Err(TransportError::BadOption(
                "broker max_payload_size and max_connections must be > 0".into(),
            ));
        }
        let v5_addr = if config.listen.port() == 0 {
            free_port_pair(config.listen.ip())?
        } else {
            config.listen
        };
        let v4_addr = if config.v4 {
            let port = v5_addr.port().checked_add(1).ok_or_else(|| {
                TransportError::BadOption(format!(
                    "no MQTT 3.1.1 port after {} (listen + 1)",
                    v5_addr.port()
                ))
            })?;
            Some(SocketAddr::new(v5_addr.ip(), port))
        } else {
            None
        };
        for addr in std::iter::once(v5_addr).chain(v4_addr) {
            // Probe: rumqttd would only log a bind failure from its own thread.
            TcpListener::bind(addr).map_err(|source| TransportError::AddrInUse { addr, source })?;
        }
        let rumqttd_config = rumqttd_config(&config, v5_addr, v4_addr);
        // `new` starts the router thread; `start` runs the listeners and
        // blocks, so it gets a thread of its own.
        let mut broker = rumqttd::Broker::new(rumqttd_config);
        let filters = broker.filter_count_handle();
        std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    log::error!("embedded broker stopped error={e}");
                }
            })
            .map_err(|e| TransportError::Broker(format!("spawn broker thread: {e}")))?;
        wait_ready(v5_addr, config.ready_timeout)?;
        if let Some(v4) = v4_addr {
            wait_ready(v4, config.ready_timeout)?;
        }
        log::info!(
            "embedded broker up mqtt5={v5_addr} mqtt311={}",
            v4_addr.map_or("off".to_string(), |a| a.to_string())
        );
        Ok(Broker {
            v5_addr,
            v4_addr,
            filters,
        })
    }

    /// The MQTT 5 listener's address (as bound: a port 0 request is resolved).
    pub fn addr(&self) -> SocketAddr {
        self.v5_addr
    }

    /// How many subscription filters hold a message log in the broker. A
    /// filter's log goes once no connection and no saved persistent session
    /// subscribes to it, so this follows the live subscriptions rather than
    /// every topic ever subscribed. Updated once per router turn.
    pub fn filter_count(&self) -> usize {
        self.filters.load(Ordering::Relaxed)
    }

    /// The MQTT 3.1.1 listener (MQTT 5 port + 1), if enabled.
    pub fn v4_addr(&self) -> Option<SocketAddr> {
        self.v4_addr
    }

    /// `mqtt://host:port` of the MQTT 5 listener, for clients in this process
    /// (an unspecified listen IP becomes loopback).
    pub fn url(&self) -> String {
        let a = connectable(self.v5_addr);
        match a.ip() {
            IpAddr::V6(ip) => format!("mqtt://[{ip}]:{}", a.port()),
            IpAddr::V4(ip) => format!("mqtt://{ip}:{}", a.port()),
        }
    }
}

fn rumqttd_config(
    config: &BrokerConfig,
    v5: SocketAddr,
    v4: Option<SocketAddr>,
) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: config.connect_timeout.as_millis().min(u16::MAX as u128) as u16,
        max_payload_size: config.max_payload_size,
        max_inflight_count: config.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen| rumqttd::ServerSettings {
        name: name.to_string(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: connections.clone(),
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            // A filter's log: segments of whole messages, at most
            // max_segment_count of them; a reader that falls further behind
            // skips ahead. A live filter holds up to 4 x max(max payload,
            // 256 KiB) of recent messages (4 MiB with the 1 MiB default; it
            // was 16 MiB), a filter nobody reads nothing (vendor/rumqttd).
            max_segment_size: config.max_payload_size.max(SEGMENT_MIN),
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::RoundRobin,
        },
        v4: v4.map(|a| HashMap::from([("1".to_string(), server("mqtt311", a))])),
        v5: Some(HashMap::from([("1".to_string(), server("mqtt5", v5))])),
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Where to connect to reach a listener bound to `addr`.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<(), TransportError> {
    let target = connectable(addr);
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(TransportError::BrokerNotReady {
                addr,
                waited_ms: timeout.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free port p on `ip` such that p + 1 is free too (best effort: another
/// process may take them before rumqttd binds; `start` then fails cleanly).
pub fn free_port_pair(ip: IpAddr) -> Result<SocketAddr, TransportError> {
    for _ in 0..50 {
        let l = TcpListener::bind(SocketAddr::new(ip, 0)).map_err(|e| TransportError::Io {
            path: format!("{ip}:0"),
            source: e,
        })?;
        let addr = l.local_addr().map_err(|e| TransportError::Io {
            path: format!("{ip}:0"),
            source: e,
        })?;
        let Some(next) = addr.port().checked_add(1) else {
            continue;
        };
        if TcpListener::bind(SocketAddr::new(ip, next)).is_ok() {
            return Ok(addr);
        }
    }
    Err(TransportError::Broker(format!(
        "no free port pair on {ip} after 50 tries"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_v4_on_next_port() {
        let c = BrokerConfig::new("127.0.0.1:1883".parse().unwrap());
        let r = rumqttd_config(&c, c.listen, Some("127.0.0.1:1884".parse().unwrap()));
        assert_eq!(r.v5.as_ref().unwrap()["1"].listen.port(), 1883);
        assert_eq!(r.v4.as_ref().unwrap()["1"].listen.port(), 1884);
        assert_eq!(
            r.v5.as_ref().unwrap()["1"].connections.max_payload_size,
            1 << 20
        );
        // A segment holds a whole largest message; a live filter keeps at
        // most 4 of them (4 MiB with the default 1 MiB payloads).
        assert!(r.router.max_segment_size >= c.max_payload_size);
        assert_eq!(
            r.router.max_segment_size * r.router.max_segment_count,
            4 << 20
        );
        let mut small = c.clone();
        small.max_payload_size = 1 << 10;
        let r = rumqttd_config(&small, small.listen, None);
        assert_eq!(r.router.max_segment_size, SEGMENT_MIN);
    }

    #[test]
    fn connectable_maps_unspecified_to_loopback() {
        assert_eq!(
            connectable("0.0.0.0:5".parse().unwrap()),
            "127.0.0.1:5".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:5".parse().unwrap()),
            "[::1]:5".parse().unwrap()
        );
    }

    #[test]
    fn busy_port_is_reported() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = BrokerConfig::new(held.local_addr().unwrap());
        c.v4 = false;
        assert!(matches!(
            Broker::start(c),
            Err(TransportError::AddrInUse { .. })
        ));
    }
}
