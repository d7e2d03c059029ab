//! Security with real parts: Mosquitto run from the repository's deployment
//! files (`deploy/mosquitto/`: TLS, a password per user, the topic ACL), the
//! daemon (`serve::run`), the expert server (`host::experts`), the real
//! `moe-edge` binary, and bundles with flipped bits.
//!
//! - wrong credentials (and plain TCP on the TLS port) are refused at CONNECT;
//! - an app reads only its own replies: app A subscribing to app B's reply
//!   topic (or to `#`) is refused by the broker, and B's reply reaches B but
//!   never A, while A's own request is answered;
//! - an app cannot publish to the expert topics (the host never sees it) and
//!   a host cannot send requests to a device, while device and host work end
//!   to end over TLS with their own credentials;
//! - a flipped bit in any bundle file stops the load with an error naming
//!   the file, before any answer.
//!
//! Tests print a notice and pass if mosquitto/openssl are not installed
//! (scripts/test.sh installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::daemon::Daemon;
use crate::harness::secure_broker::{password, SecureBroker, APP_A, APP_B, DEVICE, HOST};
use bytes::Bytes;
use moe_edge::bundle::{Manifest, Verify};
use moe_edge::config::Board;
use moe_edge::engine::model::StepTimes;
use moe_edge::engine::{Engine, ExpertCounts};
use moe_edge::experts::remote::{MqttRemote, RemoteConfig};
use moe_edge::host::experts::{ExpertServer, ExpertServerConfig};
use moe_edge::serve::BrokerChoice;
use moe_edge::transport::{connect, Inbox, Message, MqttConfig, MqttHandle, PublishOptions, QoS};
use moe_edge::wire::{topics, DeviceId};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_moe-edge");

fn bundle() -> &'static Path {
    crate::harness::fixture_bundle()
}

fn manifest() -> Manifest {
    let p = bundle().join("manifest.json");
    Manifest::from_json(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

/// A connected MQTT 5 client whose driver runs until dropped.
struct Client {
    handle: MqttHandle,
    inbox: Inbox,
    _stop: oneshot::Sender<()>,
}

impl Client {
    /// Connects (or fails to within 3 s: `Err` with the client's stats).
    async fn try_new(cfg: &MqttConfig) -> Result<Client, String> {
        let (handle, inbox, driver) = connect(cfg).unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(driver.run(async move {
            let _ = rx.await;
        }));
        match handle.wait_connected(Duration::from_secs(3)).await {
            Ok(()) => Ok(Client {
                handle,
                inbox,
                _stop: stop,
            }),
            Err(e) => Err(format!("{e} {:?}", handle.stats())),
        }
    }

    async fn new(cfg: &MqttConfig) -> Client {
        Client::try_new(cfg)
            .await
            .unwrap_or_else(|e| panic!("{} connects: {e}", cfg.client_id))
    }

    /// The next message within `d`, if any, skipping device status (which
    /// the ACL lets every app read).
    async fn next(&mut self, d: Duration) -> Option<Message> {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self.inbox.recv_timeout(left).await.ok().flatten()?;
            if topics::parse_chat_requests(&m.topic).is_none() && m.topic.ends_with("/status") {
                continue;
            }
            return Some(m);
        }
    }

    /// Waits until the broker has refused `n` subscriptions/publishes.
    async fn wait_refused(&self, n: u64) {
        let end = Instant::now() + WAIT;
        while self.handle.stats().refused < n {
            assert!(
                Instant::now() < end,
                "broker refused {} of {n}: {:?}",
                self.handle.stats().refused,
                self.handle.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ask(&self, device: &str, reply_topic: &str, corr: &str) {
        let mut o = PublishOptions::qos(QoS::AtLeastOnce);
        o.response_topic = Some(reply_topic.to_string());
        o.correlation_data = Some(Bytes::from(corr.to_string()));
        let body = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4});
        self.handle
            .publish(
                &topics::chat_requests(&DeviceId::new(device).unwrap()),
                serde_json::to_vec(&body).unwrap(),
                &o,
            )
            .await
            .unwrap();
    }

    /// Messages up to and including the final one of the exchange.
    async fn until_final(&mut self) -> Vec<Message> {
        let mut got = Vec::new();
        loop {
            let m = self.next(WAIT).await.expect("a reply in time");
            let v: Value = serde_json::from_slice(&m.payload).expect("reply is JSON");
            let last = v.get("error").is_some()
                || v["object"] == "chat.completion"
                || v["object"] == "chat.completion.done";
            got.push(m);
            if last {
                return got;
            }
        }
    }
}

/// The daemon for device `edge-1`, logged in as `edge-1` over TLS.
async fn start_daemon(b: &SecureBroker) -> Daemon {
    let board = Board::load("host-cpu").unwrap();
    let engine = Arc::new(Engine::load(bundle(), &board, Verify::Full).unwrap());
    let mqtt = b.config("ignored", DEVICE);
    let device = DeviceId::new(DEVICE).unwrap();
    Daemon::start(
        engine,
        board,
        device,
        BrokerChoice::External(Box::new(mqtt)),
        |_| {},
    )
    .await
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_plain_tcp_are_refused() {
    let Some(b) = SecureBroker::start("wrong_credentials_and_plain_tcp_are_refused") else {
        return;
    };
    let mut anonymous = b.config("anon", APP_A);
    anonymous.username = None;
    anonymous.password = None;
    let plain = MqttConfig::from_url(&format!("mqtt://127.0.0.1:{}", b.port), "plain").unwrap();
    let cases = [
        (
            "wrong password",
            b.config_as("wrong-pw", APP_A, "not-the-password"),
        ),
        (
            "another user's password",
            b.config_as("swapped", APP_A, &password(APP_B)),
        ),
        ("unknown user", b.config_as("mallory", "mallory", "x")),
        ("no credentials", anonymous),
        ("plain TCP on the TLS port", plain),
    ];
    for (what, cfg) in cases {
        let e = match Client::try_new(&cfg).await {
            Ok(_) => panic!("{what}: connected"),
            Err(e) => e,
        };
        eprintln!("{what}: refused: {e}");
        assert!(e.contains("connects: 0"), "{what}: {e}");
    }
    for user in [DEVICE, HOST, APP_A, APP_B] {
        Client::new(&b.config(&format!("ok-{user}"), user)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_read_only_their_own_replies_and_hosts_send_no_requests() {
    let Some(b) = SecureBroker::start("apps_read_only_their_own_replies") else {
        return;
    };
    let daemon = start_daemon(&b).await;
    let mut a = Client::new(&b.config("app-a-1", APP_A)).await;
    let mut bb = Client::new(&b.config("app-b-1", APP_B)).await;
    let a_reply = "moe-edge/clients/app-a/c1/reply";
    let b_reply = "moe-edge/clients/app-b/c1/reply";
    a.handle.subscribe(a_reply, QoS::AtLeastOnce).await.unwrap();
    bb.handle
        .subscribe(b_reply, QoS::AtLeastOnce)
        .await
        .unwrap();
    // A tries to read B's replies, every reply, the device's requests,
    // everything. Mosquitto 2.0 grants these subscriptions and filters every
    // message against A's read ACL on delivery: what counts is below.
    let snoop = [
        b_reply,
        "moe-edge/clients/app-b/#",
        "moe-edge/clients/+/c1/reply",
        "moe-edge/clients/#",
        "moe-edge/edge-1/v1/chat/completions",
        "moe-edge/experts/#",
        "#",
    ];
    for f in snoop {
        a.handle.subscribe(f, QoS::AtLeastOnce).await.unwrap();
    }

    // B asks: B is answered, A sees none of it.
    bb.ask(DEVICE, b_reply, "b-1").await;
    let b_msgs = bb.until_final().await;
    assert!(b_msgs.iter().all(|m| m.topic == b_reply));
    // A asks: A is answered (its subscription works), and sees only its own.
    a.ask(DEVICE, a_reply, "a-1").await;
    let a_msgs = a.until_final().await;
    for m in &a_msgs {
        assert_eq!(m.topic, a_reply, "A received {m:?}");
        assert_eq!(m.correlation_data.as_deref(), Some(&b"a-1"[..]));
    }
    // B asks again after A's exchange: still nothing for A.
    bb.ask(DEVICE, b_reply, "b-2").await;
    bb.until_final().await;
    // A may see copies of its own reply (MQTT 5: one per overlapping
    // subscription), nothing else.
    let mut copies = 0;
    while let Some(m) = a.next(Duration::from_millis(1500)).await {
        assert!(
            m.topic == a_reply && m.correlation_data.as_deref() == Some(&b"a-1"[..]),
            "A received a message not meant for it: {m:?}"
        );
        copies += 1;
    }
    eprintln!(
        "B got {} message(s), A got {} + {copies} copies (its own only) despite {} snooping subscriptions",
        b_msgs.len(),
        a_msgs.len(),
        snoop.len()
    );

    // A host may not send requests: the broker refuses the publish, the
    // device never answers.
    let mut host = Client::new(&b.config("host-1-x", HOST)).await;
    let host_reply = "moe-edge/clients/host-1/x/reply";
    host.handle
        .subscribe(host_reply, QoS::AtLeastOnce)
        .await
        .unwrap();
    host.ask(DEVICE, host_reply, "h-1").await;
    host.wait_refused(1).await;
    if let Some(m) = host.next(Duration::from_millis(1500)).await {
        panic!("the device answered a host's request: {m:?}");
    }

    // `moe-edge ask` over TLS with a password: replies below its username.
    let ca = b.ca();
    let url = b.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["ask", "hello", "--broker", &url, "--ca"])
            .arg(ca)
            .args([
                "--username",
                APP_A,
                "--device-id",
                DEVICE,
                "--no-tools",
                "--max-tokens",
                "4",
                "--timeout-ms",
                "20000",
            ])
            .env("MOE_EDGE_MQTT_PASSWORD", password(APP_A))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "moe-edge ask failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And with a wrong password it fails.
    let ca = b.ca();
    let url = b.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["ask", "hello", "--broker", &url, "--ca"])
            .arg(ca)
            .args([
                "--username",
                APP_B,
                "--device-id",
                DEVICE,
                "--no-tools",
                "--max-tokens",
                "4",
                "--timeout-ms",
                "3000",
            ])
            .env("MOE_EDGE_MQTT_PASSWORD", "wrong")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "ask with a wrong password succeeded");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_cannot_reach_expert_topics_while_device_and_host_work_over_tls() {
    let Some(b) = SecureBroker::start("apps_cannot_reach_expert_topics") else {
        return;
    };
    // The host: the expert server as host-1.
    let server = ExpertServer::open(ExpertServerConfig::new(
        bundle().to_path_buf(),
        b.config("host-1-experts", HOST),
    ))
    .unwrap();
    let stats = server.stats();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (stop_host, stop_rx) = oneshot::channel::<()>();
    let host = tokio::spawn(server.run(
        async move {
            let _ = stop_rx.await;
        },
        move |_| {
            let _ = ready_tx.send(());
        },
    ));
    tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();

    // The device (edge-1) gets expert answers over TLS.
    let m = manifest();
    let cfg =
        RemoteConfig::new(&m, DeviceId::new(DEVICE).unwrap(), Duration::from_secs(5)).unwrap();
    let device = MqttRemote::connect(b.config("x", DEVICE), cfg, std::future::pending())
        .await
        .unwrap();
    let d = device.clone();
    let rtt = tokio::task::spawn_blocking(move || d.probe(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("the host answers the device over TLS");
    let served = stats.snapshot();
    eprintln!("device probe answered in {rtt:?}; host {served:?}");
    assert!(served.served >= 1);

    // App A, as a remote-expert client of its own: never answered.
    let cfg = RemoteConfig::new(&m, DeviceId::new(APP_A).unwrap(), Duration::from_secs(1)).unwrap();
    let app_remote = MqttRemote::connect(b.config("x", APP_A), cfg, std::future::pending())
        .await
        .unwrap();
    let r = tokio::task::spawn_blocking(move || app_remote.probe(Duration::from_secs(3)))
        .await
        .unwrap();
    assert!(r.is_err(), "an app got expert answers");
    // And raw frames, QoS 0 and 1, on every layer topic.
    let app = Client::new(&b.config("app-a-raw", APP_A)).await;
    let model = topics::ModelId::new(m.model_id.clone()).unwrap();
    for l in 0..m.architecture.num_layers as u16 {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            app.handle
                .publish(
                    &topics::expert_layer(&model, l),
                    vec![0u8; 64],
                    &PublishOptions::qos(qos),
                )
                .await
                .unwrap();
        }
    }
    app.wait_refused(m.architecture.num_layers as u64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stats.snapshot();
    assert_eq!(
        after.requests, served.requests,
        "the host saw an app's publishes: {after:?}"
    );
    // The device still gets answers.
    let d = device.clone();
    tokio::task::spawn_blocking(move || d.probe(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the host still answers the device");
    let _ = stop_host.send(());
    tokio::time::timeout(WAIT, host)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Copies the bundle, flips one bit in the middle of `rel`.
fn corrupted_copy(rel: &str) -> tempfile::TempDir {
    corrupted_copy_of(bundle(), rel)
}

/// A copy of the bundle `src` with one bit of `rel` flipped.
fn corrupted_copy_of(src: &Path, rel: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut stack = vec![PathBuf::new()];
    while let Some(d) = stack.pop() {
        std::fs::create_dir_all(tmp.path().join(&d)).unwrap();
        for e in std::fs::read_dir(src.join(&d)).unwrap() {
            let e = e.unwrap();
            let r = d.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(r);
            } else {
                std::fs::copy(src.join(&r), tmp.path().join(&r)).unwrap();
            }
        }
    }
    let p = tmp.path().join(rel);
    let mut bytes = std::fs::read(&p).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    std::fs::write(&p, bytes).unwrap();
    tmp
}

/// The confidence calibration decides which calls the device makes: it is
/// listed in the manifest and checked like the weights.
#[test]
fn a_tampered_calibration_is_refused() {
    let demo = crate::harness::repo().join("models/assist-moe/bundle");
    let board = Board::load("host-cpu").unwrap();
    let dir = corrupted_copy_of(&demo, "calibration.json");
    let e = Engine::load(dir.path(), &board, Verify::Full)
        .expect_err("a flipped bit in the calibration was not noticed")
        .to_string();
    assert!(
        e.contains("calibration.json") && e.contains("sha256"),
        "{e}"
    );
    // the untouched bundle loads with it
    let e = Engine::load(&demo, &board, Verify::Full).unwrap();
    assert!(e.calibration.is_some());
}

#[test]
fn a_flipped_bit_in_any_bundle_file_is_refused_naming_the_file() {
    let board = Board::load("host-cpu").unwrap();
    let m = manifest();
    assert!(
        m.experts.sha256.is_some(),
        "the demo bundle lists a hash per expert"
    );
    let mut files: Vec<String> = m.files.iter().map(|f| f.path.clone()).collect();
    files.push("manifest.json".into());
    assert!(files.iter().any(|f| f == "experts.safetensors"));
    assert!(files.iter().any(|f| f == "tokenizer.json"));
    assert!(files.iter().any(|f| f.ends_with(".onnx")));
    for rel in files.iter().filter(|f| *f != "experts.safetensors") {
        let dir = corrupted_copy(rel);
        // The native backend never reads the ONNX graphs (it loads, and
        // answers from dense.safetensors); tract reads them and refuses.
        let board = if rel.ends_with(".onnx") {
            assert!(Engine::load(dir.path(), &board, Verify::Full).is_ok());
            Board::load("host-cpu-tract").unwrap()
        } else {
            board.clone()
        };
        let e = Engine::load(dir.path(), &board, Verify::Full)
            .err()
            .unwrap_or_else(|| panic!("{rel}: a flipped bit was not noticed"))
            .to_string();
        assert!(e.contains(&format!("/{rel}")), "{rel}: {e}");
        assert!(e.contains("sha256"), "{rel}: {e}");
        // The expert server refuses it too (it verifies fully by default).
        let e = ExpertServer::open(ExpertServerConfig::new(
            dir.path().to_path_buf(),
            MqttConfig::new("127.0.0.1", 1, "x"),
        ))
        .err()
        .unwrap_or_else(|| panic!("{rel}: the expert server took a corrupted bundle"))
        .to_string();
        assert!(e.contains(rel.as_str()), "{rel}: {e}");
    }
    // A corrupted manifest is caught even by the size-only check.
    let dir = corrupted_copy("manifest.json");
    let e = Engine::load(dir.path(), &board, Verify::Sizes)
        .expect_err("manifest flip noticed")
        .to_string();
    assert!(e.contains("manifest.json") && e.contains("sha256"), "{e}");

    // The daemon binary refuses to start on it, naming the file.
    let dir = corrupted_copy("dense.safetensors");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--bundle"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started on a corrupted bundle");
    assert!(
        err.contains("dense.safetensors") && err.contains("sha256"),
        "{err}"
    );
}

/// A copy of the demo bundle with one bit flipped in every expert of `layer`.
fn corrupted_experts(layer: usize) -> tempfile::TempDir {
    let dir = corrupted_copy("tokenizer.json");
    std::fs::copy(
        bundle().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let board = Board::load("host-cpu").unwrap().all_resident();
    let engine = Engine::load(bundle(), &board, Verify::Sizes).unwrap();
    let store = engine.model.store();
    let mut bytes = std::fs::read(bundle().join("experts.safetensors")).unwrap();
    for e in store.present(layer) {
        let off = store.offset(layer, e as usize).unwrap();
        bytes[off + store.expert_bytes() / 2] ^= 0x10;
    }
    std::fs::write(dir.path().join("experts.safetensors"), bytes).unwrap();
    dir
}

#[test]
fn a_corrupted_expert_is_refused_when_first_used() {
    let board = Board::load("host-cpu").unwrap();
    let dir = corrupted_experts(1);
    // Ready without reading the experts: the load succeeds.
    let engine =
        Engine::load(dir.path(), &board, Verify::Full).expect("experts are checked lazily");
    let store = engine.model.store();
    assert!(!store.is_checked(1, 0) && !store.is_checked(0, 0));
    // Every token routes through layer 1, so any prompt needs a bad expert.
    let ids = engine.encode("turn on the lights").unwrap();
    let mut kv = engine.model.new_kv();
    let (mut c, mut t) = (ExpertCounts::default(), StepTimes::default());
    let e = engine
        .model
        .forward(&mut kv, &ids, false, &mut c, &mut t, None)
        .expect_err("a corrupted expert produced an answer")
        .to_string();
    assert!(
        e.contains("experts.safetensors") && e.contains("of layer 1") && e.contains("sha256"),
        "{e}"
    );
    // Layer 0's experts were used and passed their check.
    assert!(store
        .present(0)
        .iter()
        .any(|&x| store.is_checked(0, x as usize)));
    // The refusal sticks: asking again fails the same way without rehashing.
    let mut kv = engine.model.new_kv();
    assert!(engine
        .model
        .forward(&mut kv, &ids, false, &mut c, &mut t, None)
        .is_err());
    // The intact bundle answers.
    let good = Engine::load(bundle(), &board, Verify::Full).unwrap();
    let mut kv = good.model.new_kv();
    good.model
        .forward(&mut kv, &ids, false, &mut c, &mut t, None)
        .expect("the intact bundle answers");
    // The expert server refuses the corrupted expert with an error reply.
    let server = ExpertServer::open(ExpertServerConfig::new(
        dir.path().to_path_buf(),
        MqttConfig::new("127.0.0.1", 1, "x"),
    ))
    .expect("the expert server opens without reading the experts");
    let bad = server
        .check_expert(1, 3)
        .expect_err("host refused the expert");
    assert!(bad.contains("of layer 1"), "{bad}");
    server.check_expert(0, 3).expect("an intact expert passes");
}
