//! The MQTT 5 client: a clone-able [`MqttHandle`], a bounded [`Inbox`] and a
//! [`Driver`] that polls rumqttc's v5 event loop.
//!
//! Owns: connection options (from a `mqtt://` / `mqtts://` URL plus fields),
//! TLS with rustls + ring, the subscription list (re-sent on every ConnAck:
//! rumqttc does not restore subscriptions), reconnect backoff, delivery of
//! incoming publishes into a bounded queue, connection state and counters.
//! Does not own: what is published (it publishes nothing itself), topic names
//! (`wire::topics`), request/response correlation (`rpc`).
//!
//! Rules the driver keeps (rumqttc 0.25 quirks):
//! - It never awaits the request channel (publish/subscribe/ack) itself: the
//!   channel is drained only by the loop it runs (rumqtt#1025). Re-subscribes
//!   go through a spawned task; acks from the driver use `try_ack`.
//! - Incoming packets are capped at 10 KiB unless `set_max_packet_size` is
//!   given: [`MqttConfig::max_packet_size`] (default 1 MiB) always sets it.
//! - `TCP_NODELAY` is off by default in rumqttc: always turned on here.
//! - Keep-alive below 5 s panics inside rumqttc: rejected by [`connect`].
//! - Error `Debug` output prints whole payloads: only truncated `Display`
//!   text is logged.
//! - After a connection error rumqttc keeps queued requests, but drops them
//!   when the broker starts a new session (clean start): a publish made while
//!   disconnected may be lost. Callers that care put a deadline on the answer
//!   (see `rpc`), which they must have anyway.
//!
//! Backpressure of incoming messages: the inbox holds `inbox_capacity`
//! messages. QoS 0 messages that find it full are dropped, counted and logged
//! (rate-limited): a QoS 0 sender accepted loss. QoS 1/2 messages use MQTT's
//! own flow control: the client acks manually, when the application takes the
//! message out of the inbox, and announces Receive Maximum = inbox capacity,
//! so a conforming broker (Mosquitto, EMQX, VerneMQ, HiveMQ) never has more
//! unacknowledged messages out to us than fit and holds the rest itself. A
//! broker that ignores Receive Maximum (rumqttd does) can still overfill the
//! inbox: then the driver waits up to `overflow_wait` for room (this pauses
//! the event loop: bounded, so an application blocked on `publish` cannot
//! deadlock with it), and after that drops the message, acks it so the broker's
//! window does not leak, and counts it in `dropped_qos1`.
//!
//! MQTT requires PUBACKs in the order the PUBLISHes arrived (§4.6; rumqttd
//! drops a connection that acks out of order). Messages leave the inbox in
//! order, but routed (RPC) and dropped messages are done at once, so acks go
//! through [`AckQueue`]: each QoS ≥ 1 message takes a ticket on arrival, and
//! a ticket's ack is released only when every earlier one is done. A small
//! acker task (not the event-loop task) sends the released acks in order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{mpsc, watch};

pub use rumqttc::v5::mqttbytes::QoS;

use super::{preview, truncate_text, TransportError};

/// Longest payload excerpt in a log line.
const LOG_PAYLOAD: usize = 64;
/// Longest error text in a log line.
const LOG_ERROR: usize = 200;

/// TLS settings for `mqtts://`.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM file of CA certificates; `None` trusts the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The message the broker publishes if this client vanishes.
#[derive(Debug, Clone)]
pub struct LastWill {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// Everything needed to connect.
#[derive(Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// `Some` for `mqtts://`.
    pub tls: Option<TlsConfig>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// At least 5 s (rumqttc asserts it).
    pub keep_alive: Duration,
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval: with `clean_start = false`, how long
    /// the broker keeps the session (subscriptions, queued QoS 1 messages)
    /// after a disconnect. Zero: the session ends with the connection.
    pub session_expiry: Duration,
    pub last_will: Option<LastWill>,
    /// Largest packet we accept from the broker (rumqttc's default is 10 KiB).
    pub max_packet_size: u32,
    /// Incoming messages held for the application (also Receive Maximum).
    pub inbox_capacity: usize,
    /// Outgoing requests queued towards the event loop.
    pub request_capacity: usize,
    /// Deadline for TCP + TLS + CONNECT/CONNACK (whole seconds, ≥ 1).
    pub connect_timeout: Duration,
    /// Deadline for handing a request to the event loop (publish, subscribe).
    pub request_timeout: Duration,
    /// Reconnect backoff: first wait, doubled per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long the driver waits for inbox room for a QoS ≥ 1 message.
    pub overflow_wait: Duration,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("keep_alive", &self.keep_alive)
            .field("clean_start", &self.clean_start)
            .field("session_expiry", &self.session_expiry)
            .field("last_will", &self.last_will.as_ref().map(|w| &w.topic))
            .field("max_packet_size", &self.max_packet_size)
            .field("inbox_capacity", &self.inbox_capacity)
            .finish_non_exhaustive()
    }
}

impl MqttConfig {
    /// Defaults for a plain TCP connection.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> MqttConfig {
        MqttConfig {
            host: host.into(),
            port,
            tls: None,
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            clean_start: true,
            session_expiry: Duration::ZERO,
            last_will: None,
            max_packet_size: 1 << 20,
            inbox_capacity: 64,
            request_capacity: 64,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            overflow_wait: Duration::from_millis(200),
        }
    }

    /// Parses `mqtt://[user[:password]@]host[:port]` or `mqtts://...`
    /// (default ports 1883 / 8883; IPv6 hosts in brackets; user and password
    /// percent-decoded). `mqtts` trusts the webpki roots until `tls` is changed.
    pub fn from_url(url: &str, client_id: impl Into<String>) -> Result<MqttConfig, TransportError> {
        let bad = |reason: &str| TransportError::BadUrl {
            url: redact_url(url),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (tls, default_port) = match scheme {
            "mqtt" | "tcp" => (None, 1883),
            "mqtts" | "ssl" => (Some(TlsConfig::default()), 8883),
            _ => return Err(bad("scheme must be mqtt or mqtts")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("no path or query allowed"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match port {
            None => default_port,
            // u16::from_str would accept "+1883"; a URL port is digits only.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(bad("bad port")),
                }
            }
            Some(_) => return Err(bad("bad port")),
        };
        let mut cfg = MqttConfig::new(host, port, client_id);
        cfg.tls = tls;
        if let Some(userinfo) = userinfo {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            cfg.username = Some(percent_decode(user).ok_or_else(|| bad("bad %-escape"))?);
            cfg.password = pass
                .map(|p| percent_decode(p).ok_or_else(|| bad("bad %-escape")))
                .transpose()?;
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), TransportError> {
        let bad = |s: String| Err(TransportError::BadOption(s));
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return bad("client id must be 1..=256 bytes".into());
        }
        if self.keep_alive < Duration::from_secs(5) {
            return bad(format!(
                "keep-alive {:?} is below rumqttc's 5 s minimum",
                self.keep_alive
            ));
        }
        if self.inbox_capacity == 0 || self.request_capacity == 0 {
            return bad("inbox and request capacities must be > 0".into());
        }
        if self.max_packet_size < 1024 {
            return bad("max packet size below 1 KiB".into());
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff must be 0 < min <= max".into());
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("a password needs a username".into());
        }
        Ok(())
    }

    fn mqtt_options(&self) -> Result<MqttOptions, TransportError> {
        self.validate()?;
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_start(self.clean_start);
        if !self.session_expiry.is_zero() {
            o.set_session_expiry_interval(Some(
                self.session_expiry.as_secs().clamp(1, u32::MAX as u64) as u32,
            ));
        }
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(w) = &self.last_will {
            o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                w.topic.clone(),
                w.payload.clone(),
                w.qos,
                w.retain,
                None,
            ));
        }
        o.set_max_packet_size(Some(self.max_packet_size));
        o.set_receive_maximum(Some(self.inbox_capacity.min(u16::MAX as usize) as u16));
        o.set_manual_acks(true);
        let secs = self.connect_timeout.as_secs().max(1);
        o.set_connection_timeout(secs);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(secs);
        o.set_network_options(net);
        if let Some(tls) = &self.tls {
            let config = rustls_config(tls)?;
            o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
                config,
            )));
        }
        Ok(o)
    }
}

/// Hides a password in a URL for error messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn rustls_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_err = |path: &PathBuf, e: rustls::pki_types::pem::Error| {
        TransportError::Tls(format!("{}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| pem_err(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(path, e))?;
            if certs.is_empty() {
                return Err(TransportError::Tls(format!(
                    "{}: no certificates",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(cert, e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError::Tls(e.to_string()))?
        }
        _ => {
            return Err(TransportError::Tls(
                "client certificate and key go together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Properties of an outgoing publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub qos: QoS,
    pub retain: bool,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// Seconds the broker keeps the message for offline subscribers.
    pub message_expiry: Option<u32>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            qos: QoS::AtMostOnce,
            retain: false,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            content_type: None,
            message_expiry: None,
        }
    }
}

impl PublishOptions {
    pub fn qos(qos: QoS) -> Self {
        PublishOptions {
            qos,
            ..Default::default()
        }
    }

    fn properties(&self) -> Option<PublishProperties> {
        if self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.content_type.is_none()
            && self.message_expiry.is_none()
        {
            return None;
        }
        Some(PublishProperties {
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            content_type: self.content_type.clone(),
            message_expiry_interval: self.message_expiry,
            ..Default::default()
        })
    }
}

/// An incoming publish.
#[derive(Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload", &preview(&self.payload, LOG_PAYLOAD))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("response_topic", &self.response_topic)
            .field("correlation_data", &self.correlation_data)
            .field("user_properties", &self.user_properties)
            .finish()
    }
}

impl Message {
    /// The value of the first user property named `key`.
    pub fn user_property(&self, key: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `Err(topic length)` if the topic is not UTF-8.
    fn from_publish(p: Publish) -> Result<Message, usize> {
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            return Err(p.topic.len());
        };
        let topic = topic.to_owned();
        let props = p.properties.unwrap_or_default();
        Ok(Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
            content_type: props.content_type,
        })
    }
}

/// Connection state, as seen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    /// Lost; the driver is backing off before the next attempt.
    Disconnected,
    /// The driver has returned.
    Stopped,
}

/// Counters (monotonic).
#[derive(Debug, Default)]
pub struct Stats {
    connects: AtomicU64,
    connection_errors: AtomicU64,
    received: AtomicU64,
    routed: AtomicU64,
    dropped_qos0: AtomicU64,
    dropped_qos1: AtomicU64,
    delayed_qos1: AtomicU64,
    bad_topic: AtomicU64,
    refused: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Successful CONNACKs.
    pub connects: u64,
    pub connection_errors: u64,
    /// Publishes received (all).
    pub received: u64,
    /// Publishes handed to a route (RPC replies) instead of the inbox.
    pub routed: u64,
    /// QoS 0 publishes dropped on a full inbox.
    pub dropped_qos0: u64,
    /// QoS ≥ 1 publishes dropped after `overflow_wait` on a full inbox.
    pub dropped_qos1: u64,
    /// QoS ≥ 1 publishes that had to wait for inbox room.
    pub delayed_qos1: u64,
    /// Publishes whose topic was not UTF-8.
    pub bad_topic: u64,
    /// Subscriptions and QoS 1 publishes the broker refused (a SUBACK or
    /// PUBACK failure code, e.g. denied by an ACL).
    pub refused: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            connects: l(&self.connects),
            connection_errors: l(&self.connection_errors),
            received: l(&self.received),
            routed: l(&self.routed),
            dropped_qos0: l(&self.dropped_qos0),
            dropped_qos1: l(&self.dropped_qos1),
            delayed_qos1: l(&self.delayed_qos1),
            bad_topic: l(&self.bad_topic),
            refused: l(&self.refused),
        }
    }
}

fn bump(a: &AtomicU64) -> u64 {
    a.fetch_add(1, Ordering::Relaxed) + 1
}

/// Logs the 1st, 2nd, 4th, 8th... occurrence only.
fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

/// A handler the driver calls synchronously for publishes on an exact topic
/// (used by `rpc`; must not block).
pub(crate) type Route = Arc<dyn Fn(Message) + Send + Sync>;

/// Orders acknowledgements: see the module doc.
#[derive(Default)]
struct AckQueue {
    /// Bumped on every ConnAck: tickets of an older connection are void.
    epoch: u64,
    /// Sequence number of `pending[0]`.
    base: u64,
    /// (ack token, done) in arrival order.
    pending: std::collections::VecDeque<(Publish, bool)>,
    /// Released acks, in order, for the acker task.
    ready: Vec<Publish>,
}

/// A QoS ≥ 1 message's place in the ack order.
#[derive(Debug, Clone, Copy)]
struct AckTicket {
    epoch: u64,
    seq: u64,
}

struct Acks {
    queue: Mutex<AckQueue>,
    wake: tokio::sync::Notify,
}

impl Acks {
    fn new() -> Acks {
        Acks {
            queue: Mutex::new(AckQueue::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// A ticket for a QoS ≥ 1 publish (`None` for QoS 0).
    fn take(&self, p: &Publish) -> Option<AckTicket> {
        if p.qos == QoS::AtMostOnce {
            return None;
        }
        let mut token = Publish::new("", p.qos, Bytes::new(), None);
        token.pkid = p.pkid;
        let mut q = self.queue.lock().unwrap();
        let seq = q.base + q.pending.len() as u64;
        q.pending.push_back((token, false));
        Some(AckTicket {
            epoch: q.epoch,
            seq,
        })
    }

    /// Marks a message done; releases every ack now in order.
    fn done(&self, ticket: Option<AckTicket>) {
        let Some(t) = ticket else { return };
        let mut q = self.queue.lock().unwrap();
        if t.epoch != q.epoch || t.seq < q.base {
            return;
        }
        let idx = (t.seq - q.base) as usize;
        let Some(entry) = q.pending.get_mut(idx) else {
            return;
        };
        entry.1 = true;
        let mut released = false;
        while q.pending.front().is_some_and(|(_, done)| *done) {
            let (token, _) = q.pending.pop_front().unwrap();
            q.base += 1;
            q.ready.push(token);
            released = true;
        }
        drop(q);
        if released {
            self.wake.notify_one();
        }
    }

    /// A new connection: pending packet ids belong to the old one.
    fn reset(&self) {
        let mut q = self.queue.lock().unwrap();
        q.epoch += 1;
        q.base = 0;
        q.pending.clear();
        q.ready.clear();
    }

    fn take_ready(&self) -> Vec<Publish> {
        std::mem::take(&mut self.queue.lock().unwrap().ready)
    }
}

/// Sends released acks in order. Runs beside the driver, never inside it
/// (rumqtt#1025): awaiting the request channel here is safe.
async fn acker(acks: Arc<Acks>, client: AsyncClient) {
    loop {
        acks.wake.notified().await;
        for token in acks.take_ready() {
            if client.ack(&token).await.is_err() {
                return; // event loop gone
            }
        }
    }
}

struct Shared {
    client_id: String,
    acks: Arc<Acks>,
    subscriptions: Mutex<Vec<(String, QoS)>>,
    routes: Mutex<HashMap<String, Route>>,
    stats: Stats,
    state: watch::Sender<ConnState>,
    request_timeout: Duration,
}

/// The clone-able side: publish, subscribe, observe.
#[derive(Clone)]
pub struct MqttHandle {
    client: AsyncClient,
    shared: Arc<Shared>,
}

/// Incoming publishes, bounded. Taking a QoS ≥ 1 message out acks it.
pub struct Inbox {
    rx: mpsc::Receiver<Delivery>,
    acks: Arc<Acks>,
}

struct Delivery {
    msg: Message,
    ack: Option<AckTicket>,
}

impl Drop for Inbox {
    /// Messages nobody will read are done: their acks must not block later ones.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(d) = self.rx.try_recv() {
            self.acks.done(d.ack);
        }
    }
}

/// The event-loop side: spawn [`Driver::run`] on the runtime.
pub struct Driver {
    eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Delivery>,
    backoff_min: Duration,
    backoff_max: Duration,
    overflow_wait: Duration,
}

/// Builds the three parts. Nothing touches the network until the driver runs.
pub fn connect(config: &MqttConfig) -> Result<(MqttHandle, Inbox, Driver), TransportError> {
    let options = config.mqtt_options()?;
    let (client, eventloop) = AsyncClient::new(options, config.request_capacity);
    let (tx, rx) = mpsc::channel(config.inbox_capacity);
    let (state, _) = watch::channel(ConnState::Connecting);
    let acks = Arc::new(Acks::new());
    let shared = Arc::new(Shared {
        client_id: config.client_id.clone(),
        acks: acks.clone(),
        subscriptions: Mutex::new(Vec::new()),
        routes: Mutex::new(HashMap::new()),
        stats: Stats::default(),
        state,
        request_timeout: config.request_timeout,
    });
    Ok((
        MqttHandle {
            client: client.clone(),
            shared: shared.clone(),
        },
        Inbox { rx, acks },
        Driver {
            eventloop,
            client,
            shared,
            tx,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            overflow_wait: config.overflow_wait,
        },
    ))
}

fn client_err(e: rumqttc::v5::ClientError) -> TransportError {
    // ClientError's Display is short; its Debug would print the whole request.
    TransportError::Client(truncate_text(&e.to_string(), LOG_ERROR).to_string())
}

impl MqttHandle {
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// Publishes; waits (at most `request_timeout`) for room in the request
    /// queue, not for the broker's acknowledgement.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        options: &PublishOptions,
    ) -> Result<(), TransportError> {
        let t = self.shared.request_timeout;
        let fut = self.client.publish_with_properties(
            topic,
            options.qos,
            options.retain,
            payload.into(),
            options.properties().unwrap_or_default(),
        );
        match tokio::time::timeout(t, fut).await {
            Ok(r) => r.map_err(client_err),
            Err(_) => Err(TransportError::Timeout(t)),
        }
    }

    /// Publishes without waiting; fails if the request queue is full.
    pub fn try_publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        options: &PublishOptions,
    ) -> Result<(), TransportError> {
        self.client
            .try_publish_with_properties(
                topic,
                options.qos,
                options.retain,
                payload.into(),
                options.properties().unwrap_or_default(),
            )
            .map_err(client_err)
    }

    /// Subscribes now and again after every reconnect.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), TransportError> {
        {
            let mut subs = self.shared.subscriptions.lock().unwrap();
            match subs.iter_mut().find(|(f, _)| f == filter) {
                Some(s) => s.1 = qos,
                None => subs.push((filter.to_string(), qos)),
            }
        }
        let t = self.shared.request_timeout;
        match tokio::time::timeout(t, self.client.subscribe(filter, qos)).await {
            Ok(r) => r.map_err(|e| {
                self.forget(filter);
                client_err(e)
            }),
            Err(_) => Err(TransportError::Timeout(t)),
        }
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), TransportError> {
        self.forget(filter);
        let t = self.shared.request_timeout;
        match tokio::time::timeout(t, self.client.unsubscribe(filter)).await {
            Ok(r) => r.map_err(client_err),
            Err(_) => Err(TransportError::Timeout(t)),
        }
    }

    fn forget(&self, filter: &str) {
        self.shared
            .subscriptions
            .lock()
            .unwrap()
            .retain(|(f, _)| f != filter);
    }

    pub fn state(&self) -> ConnState {
        *self.shared.state.borrow()
    }

    /// Waits until connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), TransportError> {
        let mut rx = self.shared.state.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| *s == ConnState::Connected)
                .await
                .map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<ConnState> {
        self.shared.state.subscribe()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Sends publishes on exactly `topic` to `route` instead of the inbox.
    pub(crate) fn set_route(&self, topic: &str, route: Route) {
        self.shared
            .routes
            .lock()
            .unwrap()
            .insert(topic.to_string(), route);
    }

    pub(crate) fn remove_route(&self, topic: &str) {
        self.shared.routes.lock().unwrap().remove(topic);
    }
}

impl Inbox {
    /// The next incoming publish; `None` once the driver has stopped and the
    /// queue is empty. A QoS ≥ 1 message is acknowledged to the broker here.
    pub async fn recv(&mut self) -> Option<Message> {
        let d = self.rx.recv().await?;
        self.acks.done(d.ack);
        Some(d.msg)
    }

    /// Like [`Inbox::recv`] with a deadline: `Ok(None)` when the driver stopped.
    pub async fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Message>, TransportError> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| TransportError::Timeout(timeout))
    }
}

impl Driver {
    /// Polls the event loop until `shutdown` resolves: reconnects with backoff,
    /// re-subscribes on every ConnAck, delivers publishes. On shutdown it sends
    /// DISCONNECT (flushing requests queued before it, at most 1 s) and returns.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let id = self.shared.client_id.clone();
        let acker = tokio::spawn(acker(self.shared.acks.clone(), self.client.clone()));
        let mut backoff = self.backoff_min;
        loop {
            let event = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                ev = self.eventloop.poll() => ev,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = self.backoff_min;
                    self.shared.acks.reset();
                    bump(&self.shared.stats.connects);
                    self.shared.state.send_replace(ConnState::Connected);
                    log::info!(
                        "mqtt connected client={id} broker={}:{} session_present={}",
                        self.eventloop.options.broker_address().0,
                        self.eventloop.options.broker_address().1,
                        ack.session_present
                    );
                    if !ack.session_present {
                        self.resubscribe();
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.deliver(p).await,
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
                    for code in &ack.return_codes {
                        if !matches!(code, R::Success(_)) {
                            bump(&self.shared.stats.refused);
                            log::warn!("mqtt subscribe refused client={id} code={code:?}");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    use rumqttc::v5::mqttbytes::v5::PubAckReason as R;
                    if !matches!(ack.reason, R::Success | R::NoMatchingSubscribers) {
                        let n = bump(&self.shared.stats.refused);
                        if worth_logging(n) {
                            log::warn!(
                                "mqtt publish refused client={id} pkid={} reason={:?} refused={n}",
                                ack.pkid,
                                ack.reason
                            );
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    log::warn!(
                        "mqtt broker sent disconnect client={id} reason={:?}",
                        d.reason_code
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    let n = bump(&self.shared.stats.connection_errors);
                    let was = self.shared.state.send_replace(ConnState::Disconnected);
                    let text = e.to_string();
                    if was == ConnState::Connected || worth_logging(n) {
                        log::warn!(
                            "mqtt connection error client={id} error={} retry_in_ms={} errors={n}",
                            truncate_text(&text, LOG_ERROR),
                            backoff.as_millis()
                        );
                    }
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.backoff_max);
                }
            }
        }
        self.stop(&id).await;
        acker.abort();
    }

    async fn stop(&mut self, id: &str) {
        if *self.shared.state.borrow() == ConnState::Connected
            && self.client.try_disconnect().is_ok()
        {
            let flush = async {
                loop {
                    match self.eventloop.poll().await {
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
        }
        self.shared.state.send_replace(ConnState::Stopped);
        log::info!("mqtt driver stopped client={id}");
    }

    fn resubscribe(&self) {
        let subs = self.shared.subscriptions.lock().unwrap().clone();
        if subs.is_empty() {
            return;
        }
        let filters: Vec<Filter> = subs
            .iter()
            .map(|(f, q)| Filter::new(f.clone(), *q))
            .collect();
        let n = filters.len();
        match self.client.try_subscribe_many(filters.clone()) {
            Ok(()) => log::debug!("mqtt resubscribed filters={n}"),
            Err(_) => {
                // Queue full: never await it here (rumqtt#1025); a task may.
                let client = self.client.clone();
                let t = self.shared.request_timeout;
                tokio::spawn(async move {
                    if tokio::time::timeout(t, client.subscribe_many(filters))
                        .await
                        .map_or(true, |r| r.is_err())
                    {
                        log::warn!("mqtt resubscribe failed filters={n}");
                    }
                });
            }
        }
    }

    async fn deliver(&mut self, p: Publish) {
        let stats = &self.shared.stats;
        bump(&stats.received);
        let acks = &self.shared.acks;
        let ack = acks.take(&p);
        let msg = match Message::from_publish(p) {
            Ok(m) => m,
            Err(topic_len) => {
                let n = bump(&stats.bad_topic);
                if worth_logging(n) {
                    log::warn!(
                        "mqtt publish with non-UTF-8 topic dropped topic_bytes={} count={n}",
                        topic_len
                    );
                }
                acks.done(ack);
                return;
            }
        };
        let route = self.shared.routes.lock().unwrap().get(&msg.topic).cloned();
        if let Some(route) = route {
            bump(&stats.routed);
            route(msg);
            acks.done(ack);
            return;
        }
        let qos = msg.qos;
        match self.tx.try_send(Delivery { msg, ack }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(d)) => {
                log::debug!("mqtt inbox closed, dropping topic={}", d.msg.topic);
                acks.done(d.ack);
            }
            Err(mpsc::error::TrySendError::Full(d)) if qos == QoS::AtMostOnce => {
                let n = bump(&stats.dropped_qos0);
                if worth_logging(n) {
                    log::warn!(
                        "mqtt inbox full, qos0 dropped topic={} payload={:?} dropped_qos0={n}",
                        d.msg.topic,
                        preview(&d.msg.payload, LOG_PAYLOAD)
                    );
                }
            }
            Err(mpsc::error::TrySendError::Full(d)) => {
                bump(&stats.delayed_qos1);
                let topic = d.msg.topic.clone();
                let ack = d.ack;
                match self.tx.send_timeout(d, self.overflow_wait).await {
                    Ok(()) => {}
                    Err(_) => {
                        let n = bump(&stats.dropped_qos1);
                        log::warn!(
                            "mqtt inbox full for {} ms, qos1 dropped topic={topic} dropped_qos1={n}",
                            self.overflow_wait.as_millis()
                        );
                        self.shared.acks.done(ack);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let c = MqttConfig::from_url("mqtt://localhost", "c").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls.is_none()),
            ("localhost", 1883, true)
        );
        let c = MqttConfig::from_url("mqtts://broker.example:8884/", "c").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls.is_some()),
            ("broker.example", 8884, true)
        );
        let c = MqttConfig::from_url("mqtts://h", "c").unwrap();
        assert_eq!(c.port, 8883);
        let c = MqttConfig::from_url("mqtt://u%40x:p%3Aw@10.0.0.1:1999", "c").unwrap();
        assert_eq!(c.username.as_deref(), Some("u@x"));
        assert_eq!(c.password.as_deref(), Some("p:w"));
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.1", 1999));
        let c = MqttConfig::from_url("mqtt://[::1]:1884", "c").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 1884));
        let c = MqttConfig::from_url("mqtt://[::1]", "c").unwrap();
        assert_eq!(c.port, 1883);
        for bad in [
            "localhost:1883",
            "http://h",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://h:x",
            "mqtt://h:+1883",
            "mqtt://h/path",
            "mqtt://h?x=1",
            "mqtt://[::1",
            "mqtt://u:%zz@h",
        ] {
            assert!(MqttConfig::from_url(bad, "c").is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_errors_and_debug() {
        let e = MqttConfig::from_url("mqtt://user:secret@h:bad", "c").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let c = MqttConfig::from_url("mqtt://user:secret@h", "c").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn options_are_validated() {
        let mut c = MqttConfig::new("h", 1883, "c");
        c.keep_alive = Duration::from_secs(1);
        assert!(matches!(
            c.mqtt_options(),
            Err(TransportError::BadOption(_))
        ));
        let mut c = MqttConfig::new("h", 1883, "");
        assert!(c.mqtt_options().is_err());
        c.client_id = "ok".into();
        c.inbox_capacity = 0;
        assert!(c.mqtt_options().is_err());
        let c = MqttConfig::new("h", 1883, "c");
        let o = c.mqtt_options().unwrap();
        assert_eq!(o.max_packet_size(), Some(1 << 20));
    }

    #[test]
    fn tls_config_builds_with_ring() {
        let c = rustls_config(&TlsConfig::default()).unwrap();
        assert!(!c.alpn_protocols.iter().any(|p| p.is_empty()));
        let missing = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            rustls_config(&missing),
            Err(TransportError::Tls(_))
        ));
        let half = TlsConfig {
            client_cert: Some("/x".into()),
            ..Default::default()
        };
        assert!(rustls_config(&half).is_err());
    }

    fn publish(pkid: u16, qos: QoS) -> Publish {
        let mut p = Publish::new("t", qos, Bytes::new(), None);
        p.pkid = pkid;
        p
    }

    #[test]
    fn acks_are_released_in_arrival_order() {
        let acks = Acks::new();
        assert!(acks.take(&publish(0, QoS::AtMostOnce)).is_none());
        let t1 = acks.take(&publish(1, QoS::AtLeastOnce));
        let t2 = acks.take(&publish(2, QoS::AtLeastOnce));
        let t3 = acks.take(&publish(3, QoS::AtLeastOnce));
        acks.done(t3);
        acks.done(t2);
        assert!(acks.take_ready().is_empty(), "1 is still unread");
        acks.done(t1);
        let order: Vec<u16> = acks.take_ready().iter().map(|p| p.pkid).collect();
        assert_eq!(order, vec![1, 2, 3]);
        // Done twice or from an old connection: ignored.
        acks.done(t1);
        let t4 = acks.take(&publish(4, QoS::AtLeastOnce));
        acks.reset();
        acks.done(t4);
        assert!(acks.take_ready().is_empty());
        let t5 = acks.take(&publish(5, QoS::AtLeastOnce));
        acks.done(t5);
        assert_eq!(acks.take_ready()[0].pkid, 5);
    }

    #[test]
    fn message_debug_truncates_payload() {
        let m = Message {
            topic: "t".into(),
            payload: Bytes::from(vec![b'x'; 100_000]),
            qos: QoS::AtMostOnce,
            retain: false,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
            content_type: None,
        };
        assert!(format!("{m:?}").len() < 400);
    }
}
