//! MQTT transport against real brokers: the embedded rumqttd and a Mosquitto
//! started per test (own config file in a temp dir, own free port). No mocks.
//! Mosquitto tests print a notice and pass if `mosquitto` is not installed
//! (the test script installs it; CI runs that script).

use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::mosquitto::Mosquitto;

use moe_edge::transport::{
    self, connect, Broker, BrokerConfig, ConnState, Inbox, Message, MqttConfig, MqttHandle,
    PublishOptions, QoS, Rpc, RpcConfig, RpcError,
};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ helpers

fn embedded_broker() -> Broker {
    Broker::start(BrokerConfig::new("127.0.0.1:0".parse().unwrap())).expect("start rumqttd")
}

/// A connected client whose driver runs until the returned sender is dropped
/// or fired.
struct Client {
    handle: MqttHandle,
    inbox: Inbox,
    stop: Option<oneshot::Sender<()>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn new(url: &str, id: &str, tweak: impl FnOnce(&mut MqttConfig)) -> Client {
        let mut cfg = MqttConfig::from_url(url, id).unwrap();
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(200);
        tweak(&mut cfg);
        let (handle, inbox, driver) = connect(&cfg).unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let driver = tokio::spawn(driver.run(shutdown(rx)));
        handle.wait_connected(WAIT).await.expect("connect");
        Client {
            handle,
            inbox,
            stop: Some(stop),
            driver,
        }
    }

    async fn recv(&mut self) -> Message {
        self.inbox
            .recv_timeout(WAIT)
            .await
            .expect("message in time")
            .expect("driver alive")
    }

    async fn shutdown(mut self) {
        drop(self.stop.take());
        tokio::time::timeout(WAIT, &mut self.driver)
            .await
            .expect("driver stops")
            .unwrap();
        assert_eq!(self.handle.state(), ConnState::Stopped);
    }
}

async fn shutdown(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Subscribing is asynchronous (SUBACK is not awaited); publish a probe until
/// it comes back so the subscription is known to be active.
async fn settle(sub: &mut Client, publisher: &MqttHandle, topic: &str) {
    let start = Instant::now();
    loop {
        publisher
            .publish(topic, "probe", &PublishOptions::default())
            .await
            .unwrap();
        if let Ok(Some(m)) = sub.inbox.recv_timeout(Duration::from_millis(200)).await {
            if &m.payload[..] == b"probe" {
                // Drain other probes still in flight.
                while let Ok(Some(_)) = sub.inbox.recv_timeout(Duration::from_millis(100)).await {}
                return;
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "subscription to {topic} never became active"
        );
    }
}

// -------------------------------------------------------------- the checks

async fn round_trip_with_properties(url: &str) {
    let mut sub = Client::new(url, "rt-sub", |_| {}).await;
    let publ = Client::new(url, "rt-pub", |_| {}).await;
    sub.handle
        .subscribe("t/rt/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    settle(&mut sub, &publ.handle, "t/rt/probe").await;

    let opts = PublishOptions {
        qos: QoS::AtLeastOnce,
        response_topic: Some("t/replies/rt-pub".into()),
        correlation_data: Some(vec![0, 1, 2, 254, 255].into()),
        user_properties: vec![("served_by".into(), "device".into())],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    publ.handle
        .publish("t/rt/x", r#"{"hello":"world"}"#, &opts)
        .await
        .unwrap();
    let m = sub.recv().await;
    assert_eq!(m.topic, "t/rt/x");
    assert_eq!(&m.payload[..], br#"{"hello":"world"}"#);
    assert_eq!(m.response_topic.as_deref(), Some("t/replies/rt-pub"));
    assert_eq!(
        m.correlation_data.as_deref(),
        Some(&[0u8, 1, 2, 254, 255][..])
    );
    assert_eq!(m.user_property("served_by"), Some("device"));

    // 256 KiB passes (rumqttc alone would cap incoming packets at 10 KiB).
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    publ.handle
        .publish(
            "t/rt/big",
            big.clone(),
            &PublishOptions::qos(QoS::AtLeastOnce),
        )
        .await
        .unwrap();
    let m = sub.recv().await;
    assert_eq!(m.topic, "t/rt/big");
    assert_eq!(m.payload.len(), big.len());
    assert!(m.payload[..] == big[..]);

    assert_eq!(sub.handle.stats().dropped_qos0, 0);
    sub.shutdown().await;
    publ.shutdown().await;
}

async fn shared_subscription_splits(url: &str) {
    let mut a = Client::new(url, "share-a", |_| {}).await;
    let mut b = Client::new(url, "share-b", |_| {}).await;
    let publ = Client::new(url, "share-pub", |_| {}).await;
    let filter = "$share/moe-edge-hosts/t/share/#";
    a.handle.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    b.handle.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    // Both members must be active before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = 40;
    for i in 0..n {
        publ.handle
            .publish(
                "t/share/layer/1",
                format!("{i}"),
                &PublishOptions::qos(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
    }
    let (mut got_a, mut got_b) = (0, 0);
    let start = Instant::now();
    while got_a + got_b < n && start.elapsed() < WAIT {
        tokio::select! {
            m = a.inbox.recv_timeout(Duration::from_millis(100)) => if let Ok(Some(_)) = m { got_a += 1 },
            m = b.inbox.recv_timeout(Duration::from_millis(100)) => if let Ok(Some(_)) = m { got_b += 1 },
        }
    }
    // Nothing is delivered twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(Some(_)) = a.inbox.recv_timeout(Duration::from_millis(50)).await {
        got_a += 1;
    }
    while let Ok(Some(_)) = b.inbox.recv_timeout(Duration::from_millis(50)).await {
        got_b += 1;
    }
    eprintln!("shared subscription split: a={got_a} b={got_b}");
    assert_eq!(got_a + got_b, n, "every message exactly once");
    assert!(
        got_a > 0 && got_b > 0,
        "both members got work: a={got_a} b={got_b}"
    );
    for c in [a, b, publ] {
        c.shutdown().await;
    }
}

/// A responder that answers every request on `filter` with "echo:" + payload.
/// Returns what stops it: drop or fire the sender, then await the driver.
async fn spawn_echo_responder(
    url: &str,
    id: &str,
    filter: &str,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let host = Client::new(url, id, |_| {}).await;
    host.handle
        .subscribe(filter, QoS::AtMostOnce)
        .await
        .unwrap();
    let Client {
        handle,
        mut inbox,
        stop,
        driver,
    } = host;
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&req.payload);
            let _ = transport::respond(&handle, &req, reply, PublishOptions::default()).await;
        }
    });
    (stop.unwrap(), driver)
}

async fn rpc_round_trip_and_deadline(url: &str) {
    let (host_stop, host_driver) = spawn_echo_responder(url, "rpc-host", "t/rpc/experts/#").await;
    let dev = Client::new(url, "rpc-dev", |_| {}).await;
    let rpc = Rpc::new(&dev.handle, RpcConfig::new("t/rpc/rpc-dev/reply"))
        .await
        .unwrap();

    // The first calls may race the subscriptions becoming active; retry briefly.
    let start = Instant::now();
    let reply = loop {
        match rpc
            .call_timeout("t/rpc/experts/layer/3", "x", Duration::from_millis(300))
            .await
        {
            Ok(r) => break r,
            Err(RpcError::Timeout { .. }) if start.elapsed() < WAIT => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&reply[..], b"echo:x");

    // Many concurrent calls each get their own reply.
    let calls = (0..32).map(|i| {
        let rpc = rpc.clone();
        async move {
            let r = rpc
                .call_timeout("t/rpc/experts/layer/1", format!("{i}"), WAIT)
                .await
                .unwrap();
            assert_eq!(r, format!("echo:{i}").into_bytes());
        }
    });
    futures_join_all(calls).await;

    // Nobody answers this topic: the deadline fires, on time.
    let t0 = Instant::now();
    let err = rpc
        .call_timeout("t/nobody/home", "x", Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let stats = rpc.stats();
    assert_eq!(stats.pending, 0, "timed-out calls leave no entry");
    assert!(stats.timeouts >= 1);

    dev.shutdown().await;
    drop(host_stop);
    tokio::time::timeout(WAIT, host_driver)
        .await
        .unwrap()
        .unwrap();
}

async fn futures_join_all<F: Future<Output = ()> + Send + 'static>(futs: impl Iterator<Item = F>) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}

// ------------------------------------------------------------ rumqttd tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_round_trip_properties_and_large_payload() {
    let broker = embedded_broker();
    round_trip_with_properties(&broker.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_shared_subscription_splits() {
    let broker = embedded_broker();
    shared_subscription_splits(&broker.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_rpc_round_trip_and_deadline() {
    let broker = embedded_broker();
    rpc_round_trip_and_deadline(&broker.url()).await;
}

/// MQTT 3.1.1 apps reach the embedded broker on listen port + 1 and talk to
/// MQTT 5 clients on the main port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_serves_mqtt311_on_next_port() {
    let broker = embedded_broker();
    let v4 = broker.v4_addr().expect("v4 listener");
    assert_eq!(v4.port(), broker.addr().port() + 1);
    let mut sub = Client::new(&broker.url(), "v5-sub", |_| {}).await;
    sub.handle
        .subscribe("app/+/req", QoS::AtMostOnce)
        .await
        .unwrap();

    let mut opts = rumqttc::MqttOptions::new("v311-app", "127.0.0.1", v4.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                ev = eventloop.poll() => if ev.is_err() { tokio::time::sleep(Duration::from_millis(50)).await },
            }
        }
    });
    let start = Instant::now();
    let m = loop {
        client
            .publish("app/nav/req", rumqttc::QoS::AtMostOnce, false, "from 3.1.1")
            .await
            .unwrap();
        if let Ok(Some(m)) = sub.inbox.recv_timeout(Duration::from_millis(200)).await {
            break m;
        }
        assert!(start.elapsed() < WAIT, "no message from the 3.1.1 client");
    };
    assert_eq!(&m.payload[..], b"from 3.1.1");
    let _ = stop_tx.send(());
    poller.await.unwrap();
    sub.shutdown().await;
}

/// Waits up to `within` until the embedded broker holds `want` filter logs or
/// fewer; returns the last count seen.
async fn filters_settle_to(broker: &Broker, want: usize, within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = broker.filter_count();
        if n <= want || start.elapsed() > within {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The patched rumqttd drops a filter's message log once nothing can read it
/// again. Apps that use a fresh client and reply topic per request (as
/// `moe-edge ask` does) used to grow the embedded broker by every reply they
/// received; now the broker holds only the live subscriptions' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_forgets_reply_topics_nobody_reads() {
    let broker = embedded_broker();
    let url = broker.url();
    let publ = Client::new(&url, "gc-pub", |_| {}).await;
    let mut keep = Client::new(&url, "gc-keep", |_| {}).await;
    keep.handle
        .subscribe("t/gc/live", QoS::AtLeastOnce)
        .await
        .unwrap();
    settle(&mut keep, &publ.handle, "t/gc/live").await;
    let base = broker.filter_count();
    assert!(base >= 1, "the live subscription holds a log");

    for i in 0..20 {
        let mut app = Client::new(&url, &format!("gc-app-{i}"), |_| {}).await;
        let topic = format!("t/gc/reply/{i}");
        app.handle
            .subscribe(&topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        // A second reader of the same reply topic that leaves first: its
        // leaving must not cut the other reader off.
        let mut twin = Client::new(&url, &format!("gc-twin-{i}"), |_| {}).await;
        twin.handle
            .subscribe(&topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        settle(&mut twin, &publ.handle, &topic).await;
        while let Ok(Some(_)) = app.inbox.recv_timeout(Duration::from_millis(50)).await {}
        twin.shutdown().await;
        // A streamed reply: a few chunks, each well past a probe's size.
        for k in 0..4 {
            publ.handle
                .publish(
                    &topic,
                    format!("chunk {k} {}", "x".repeat(2000)),
                    &PublishOptions::qos(QoS::AtLeastOnce),
                )
                .await
                .unwrap();
        }
        for k in 0..4 {
            let m = app.recv().await;
            assert!(
                m.payload.starts_with(format!("chunk {k} ").as_bytes()),
                "request {i}: chunk {k} out of order or lost"
            );
        }
        if i % 2 == 0 {
            // Half the apps unsubscribe before they leave, half just leave.
            app.handle.unsubscribe(&topic).await.unwrap();
        }
        app.shutdown().await;
    }
    let after = filters_settle_to(&broker, base, WAIT).await;
    assert_eq!(
        after, base,
        "20 reply topics came and went; the broker should hold only the live subscription's log"
    );

    // The live subscription still works.
    publ.handle
        .publish(
            "t/gc/live",
            "still here",
            &PublishOptions::qos(QoS::AtLeastOnce),
        )
        .await
        .unwrap();
    loop {
        let m = keep.recv().await;
        if &m.payload[..] == b"still here" {
            break;
        }
    }
    keep.shutdown().await;
    publ.shutdown().await;
}

/// A persistent session with this expiry.
fn persistent(expiry: Duration) -> impl Fn(&mut MqttConfig) + Copy {
    move |c: &mut MqttConfig| {
        c.clean_start = false;
        c.session_expiry = expiry;
    }
}

/// Client `id` subscribed to `topic` (QoS 1), settled against `publ`.
async fn subscribed(
    url: &str,
    id: &str,
    topic: &str,
    publ: &Client,
    tweak: impl FnOnce(&mut MqttConfig),
) -> Client {
    let mut c = Client::new(url, id, tweak).await;
    c.handle.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    settle(&mut c, &publ.handle, topic).await;
    c
}

/// A persistent session's subscription outlives its connection: the patched
/// broker keeps that filter's log, so what was published while the app was
/// away reaches it when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_keeps_a_persistent_sessions_log() {
    let broker = embedded_broker();
    let url = broker.url();
    let persistent = persistent(Duration::from_secs(300));
    let publ = Client::new(&url, "ps-pub", |_| {}).await;
    let app = subscribed(&url, "ps-app", "t/ps/reply", &publ, persistent).await;
    // A clean-session reader of the same topic that leaves after the
    // persistent one: the last live reader is gone, the saved session is not.
    let mut other = Client::new(&url, "ps-other", |_| {}).await;
    other
        .handle
        .subscribe("t/ps/reply", QoS::AtLeastOnce)
        .await
        .unwrap();
    settle(&mut other, &publ.handle, "t/ps/reply").await;
    app.shutdown().await;
    other.shutdown().await;
    // The router handles a disconnect within milliseconds; a dropped log
    // would show well inside a second (and "while away" below would be lost).
    assert_eq!(
        filters_settle_to(&broker, 0, Duration::from_secs(1)).await,
        1,
        "the away session's filter keeps its log"
    );
    publ.handle
        .publish(
            "t/ps/reply",
            "while away",
            &PublishOptions::qos(QoS::AtLeastOnce),
        )
        .await
        .unwrap();
    let mut back = Client::new(&url, "ps-app", persistent).await;
    // Probes the app had not acknowledged when it left come again first.
    let m = loop {
        let m = back.recv().await;
        if &m.payload[..] != b"probe" {
            break m;
        }
    };
    assert_eq!(&m.payload[..], b"while away");

    // A clean start discards the saved session; its filter goes with it.
    back.shutdown().await;
    let clean = Client::new(&url, "ps-app", |_| {}).await;
    assert_eq!(filters_settle_to(&broker, 0, WAIT).await, 0);
    clean.shutdown().await;
    publ.shutdown().await;
}

/// A persistent session lives as long as its Session Expiry Interval says:
/// once that has passed, the next connect ends it and drops the log only it
/// kept (upstream rumqttd keeps every persistent session forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_ends_expired_persistent_sessions() {
    let broker = embedded_broker();
    let url = broker.url();
    let short = persistent(Duration::from_secs(1));
    let publ = Client::new(&url, "exp-pub", |_| {}).await;
    let app = subscribed(&url, "exp-app", "t/exp/reply", &publ, short).await;
    app.shutdown().await;
    assert_eq!(
        filters_settle_to(&broker, 0, Duration::from_millis(500)).await,
        1,
        "the away session keeps its filter's log until it expires"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Any connect runs the expiry.
    let other = Client::new(&url, "exp-other", |_| {}).await;
    assert_eq!(
        filters_settle_to(&broker, 0, WAIT).await,
        0,
        "the expired session's log is gone"
    );
    // Coming back after the expiry is a new session: nothing is delivered.
    let back = Client::new(&url, "exp-app", short).await;
    back.shutdown().await;
    other.shutdown().await;
    publ.shutdown().await;
}

// ---------------------------------------------------------- Mosquitto tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_round_trip_properties_and_large_payload() {
    let Some(m) = Mosquitto::start("mosquitto_round_trip_properties_and_large_payload") else {
        return;
    };
    round_trip_with_properties(&m.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_shared_subscription_splits() {
    let Some(m) = Mosquitto::start("mosquitto_shared_subscription_splits") else {
        return;
    };
    shared_subscription_splits(&m.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_rpc_round_trip_and_deadline() {
    let Some(m) = Mosquitto::start("mosquitto_rpc_round_trip_and_deadline") else {
        return;
    };
    rpc_round_trip_and_deadline(&m.url()).await;
}

/// Kill Mosquitto, restart it on the same port: the driver reconnects and
/// re-subscribes by itself (the broker forgot everything: persistence off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_resubscribes_after_broker_restart() {
    let Some(mut m) = Mosquitto::start("mosquitto_resubscribes_after_broker_restart") else {
        return;
    };
    let url = m.url();
    let mut sub = Client::new(&url, "restart-sub", |_| {}).await;
    let publ = Client::new(&url, "restart-pub", |_| {}).await;
    sub.handle
        .subscribe("t/restart", QoS::AtLeastOnce)
        .await
        .unwrap();
    settle(&mut sub, &publ.handle, "t/restart").await;

    let mut state = sub.handle.watch_state();
    m.kill();
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == ConnState::Disconnected))
        .await
        .expect("driver notices the broker is gone")
        .unwrap();
    m.spawn();
    sub.handle
        .wait_connected(WAIT)
        .await
        .expect("sub reconnects");
    publ.handle
        .wait_connected(WAIT)
        .await
        .expect("pub reconnects");
    assert!(sub.handle.stats().connects >= 2);

    // No subscribe call from the test: the driver re-subscribed on ConnAck.
    settle(&mut sub, &publ.handle, "t/restart").await;
    publ.handle
        .publish("t/restart", "after", &PublishOptions::qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"after");
    sub.shutdown().await;
    publ.shutdown().await;
}

/// The last will is published when a client vanishes, and retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_last_will_on_vanish() {
    let Some(m) = Mosquitto::start("mosquitto_last_will_on_vanish") else {
        return;
    };
    let url = m.url();
    let dev = Client::new(&url, "will-dev", |c| {
        c.keep_alive = Duration::from_secs(5);
        c.last_will = Some(transport::LastWill {
            topic: "moe-edge/will-dev/status".into(),
            payload: br#"{"online":false}"#.to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
        });
    })
    .await;
    // Abort the driver without DISCONNECT: the socket closes, the will fires.
    dev.driver.abort();
    let _ = dev.driver.await;
    drop(dev.inbox);
    drop(dev.handle);
    // Let the broker publish (and retain) the will before subscribing, so it
    // arrives as a retained message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut watcher = Client::new(&url, "will-watch", |_| {}).await;
    watcher
        .handle
        .subscribe("moe-edge/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = watcher.recv().await;
    assert_eq!(got.topic, "moe-edge/will-dev/status");
    assert_eq!(&got.payload[..], br#"{"online":false}"#);
    assert!(got.retain, "retained will delivered as retained");
    watcher.shutdown().await;
}

/// QoS 0 floods on a full inbox are dropped and counted, never block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_full_inbox_drops_qos0_and_counts() {
    let Some(m) = Mosquitto::start("mosquitto_full_inbox_drops_qos0_and_counts") else {
        return;
    };
    let url = m.url();
    let mut sub = Client::new(&url, "flood-sub", |c| c.inbox_capacity = 4).await;
    let publ = Client::new(&url, "flood-pub", |_| {}).await;
    sub.handle
        .subscribe("t/flood", QoS::AtMostOnce)
        .await
        .unwrap();
    settle(&mut sub, &publ.handle, "t/flood").await;
    for i in 0..50 {
        publ.handle
            .publish("t/flood", format!("{i}"), &PublishOptions::default())
            .await
            .unwrap();
    }
    let start = Instant::now();
    while sub.handle.stats().received < 51 && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = sub.handle.stats();
    let mut kept = 0;
    while let Ok(Some(_)) = sub.inbox.recv_timeout(Duration::from_millis(100)).await {
        kept += 1;
    }
    assert!(kept <= 4, "inbox is bounded: kept={kept}");
    assert!(stats.dropped_qos0 >= 40, "{stats:?}");
    sub.shutdown().await;
    publ.shutdown().await;
}

/// A subscriber to `topic` with a 2-message inbox and a publisher, settled.
async fn small_inbox(url: &str, name: &str, topic: &str) -> (Client, Client) {
    let mut sub = Client::new(url, &format!("{name}-sub"), |c| {
        c.inbox_capacity = 2;
        c.overflow_wait = Duration::from_millis(20);
    })
    .await;
    let publ = Client::new(url, &format!("{name}-pub"), |_| {}).await;
    sub.handle.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    settle(&mut sub, &publ.handle, topic).await;
    (sub, publ)
}

/// rumqttd ignores Receive Maximum, so a QoS 1 flood can overfill a small
/// inbox: the driver waits `overflow_wait`, then drops and counts; it neither
/// blocks for good nor dies, and later messages still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_qos1_overflow_is_bounded_and_counted() {
    let broker = embedded_broker();
    let url = broker.url();
    let (mut sub, publ) = small_inbox(&url, "ovf", "t/ovf").await;
    let before = sub.handle.stats().received;
    for i in 0..30 {
        publ.handle
            .publish(
                "t/ovf",
                format!("{i}"),
                &PublishOptions::qos(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
    }
    let start = Instant::now();
    while sub.handle.stats().received < before + 30 && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = sub.handle.stats();
    assert_eq!(stats.received, before + 30, "{stats:?}");
    // Acks for dropped messages still go out in arrival order: rumqttd would
    // drop the connection otherwise.
    assert_eq!(stats.connection_errors, 0, "{stats:?}");
    assert!(
        stats.delayed_qos1 > 0 && stats.dropped_qos1 > 0,
        "{stats:?}"
    );
    while let Ok(Some(_)) = sub.inbox.recv_timeout(Duration::from_millis(100)).await {}
    publ.handle
        .publish("t/ovf", "later", &PublishOptions::qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(&sub.recv().await.payload[..], b"later");
    sub.shutdown().await;
    publ.shutdown().await;
}

/// Mosquitto honours Receive Maximum: with manual acks sent as the
/// application takes messages, a QoS 1 flood into a 2-slot inbox loses
/// nothing; the broker holds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_qos1_flow_control_loses_nothing() {
    let Some(m) = Mosquitto::start("mosquitto_qos1_flow_control_loses_nothing") else {
        return;
    };
    let url = m.url();
    let (mut sub, publ) = small_inbox(&url, "fc", "t/fc").await;
    let n = 30;
    for i in 0..n {
        publ.handle
            .publish(
                "t/fc",
                format!("{i}"),
                &PublishOptions::qos(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    while got.len() < n {
        let msg = sub.recv().await;
        got.push(String::from_utf8(msg.payload.to_vec()).unwrap());
        // A slow consumer.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "all delivered, in order");
    let stats = sub.handle.stats();
    assert_eq!(
        (stats.dropped_qos1, stats.dropped_qos0),
        (0, 0),
        "{stats:?}"
    );
    sub.shutdown().await;
    publ.shutdown().await;
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate
/// with the openssl CLI. `None` if openssl is missing.
fn make_certs(dir: &std::path::Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\n").ok()?;
    let ok = run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=moe-edge test CA",
        ],
    ]
    .concat())
        && run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ])
        && run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=moe-edge-device",
            ],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ]);
    ok.then_some(())
}

/// `mqtts://` with our CA file and a client certificate (mutual TLS), through
/// rustls with the ring provider; an untrusted server is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_mutual_tls() {
    let mut certs_ok = true;
    let Some(m) = Mosquitto::start_with("mosquitto_mutual_tls", |dir| {
        certs_ok = make_certs(dir).is_some();
        format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\n",
            d = dir.display()
        )
    }) else {
        return;
    };
    if !certs_ok {
        eprintln!("SKIPPED mosquitto_mutual_tls: openssl could not make test certificates");
        return;
    }
    let dir = m.dir.path().to_path_buf();
    let url = format!("mqtts://127.0.0.1:{}", m.port);
    let tls = transport::TlsConfig {
        ca_file: Some(dir.join("ca.pem")),
        client_cert: Some(dir.join("client.pem")),
        client_key: Some(dir.join("client.key")),
    };
    let mut sub = Client::new(&url, "tls-sub", |c| c.tls = Some(tls.clone())).await;
    let publ = Client::new(&url, "tls-pub", |c| c.tls = Some(tls.clone())).await;
    sub.handle
        .subscribe("t/tls", QoS::AtLeastOnce)
        .await
        .unwrap();
    settle(&mut sub, &publ.handle, "t/tls").await;
    let big = vec![7u8; 300 * 1024];
    publ.handle
        .publish("t/tls", big.clone(), &PublishOptions::qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(sub.recv().await.payload.len(), big.len());
    sub.shutdown().await;
    publ.shutdown().await;

    // Trusting only the webpki roots, the self-made CA is refused.
    let mut cfg = MqttConfig::from_url(&url, "tls-untrusted").unwrap();
    cfg.tls = Some(transport::TlsConfig {
        ca_file: None,
        ..tls.clone()
    });
    let (handle, _inbox, driver) = connect(&cfg).unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(shutdown(rx)));
    assert!(handle.wait_connected(Duration::from_secs(2)).await.is_err());
    assert!(handle.stats().connection_errors >= 1);
    drop(stop);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}
