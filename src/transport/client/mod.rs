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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::{mpsc, watch};

pub use rumqttc::v5::mqttbytes::QoS;

mod acks;
mod config;
mod message;

use acks::{acker, AckTicket, Acks};
pub use config::{LastWill, MqttConfig, TlsConfig};
use message::{bump, worth_logging};
pub use message::{ConnState, Message, PublishOptions, Stats, StatsSnapshot};

use super::{preview, truncate_text, TransportError};

/// Longest payload excerpt in a log line.
pub(super) const LOG_PAYLOAD: usize = 64;
/// Longest error text in a log line.
const LOG_ERROR: usize = 200;

/// A handler the driver calls synchronously for publishes on an exact topic
/// (used by `rpc`; must not block).
pub(crate) type Route = Arc<dyn Fn(Message) + Send + Sync>;

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
    use super::config::rustls_config;
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
