//! Faults with real processes: Mosquitto (the deployed config, TLS,
//! passwords, ACL, persistence on) restarted while an app keeps sending
//! requests to the daemon (the `moe-edge serve` binary with its default
//! flags). The app uses a persistent session (clean_start = false, session
//! expiry), the daemon its default one, and QoS 1: every request the app
//! sent is answered by exactly one final reply (a completion or an error),
//! none lost, none processed twice. QoS 1 is at-least-once, so the broker may
//! deliver that one reply twice across a restart (an in-flight PUBLISH is
//! resent with DUP set); such a copy is byte-identical, while a request
//! processed twice gives a second reply with its own `chatcmpl-` id. The test
//! tells the two apart and fails only on the second.
//!
//! Other faults are covered where their parts live: a host killed
//! mid-generation in tests/offload.rs, a cloud answering 500 / garbage /
//! stalling in tests/cascade.rs (`faulty_clouds`,
//! `stalled_cloud_times_out_then_fails_fast`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::secure_broker::{SecureBroker, APP_A, DEVICE};
use bytes::Bytes;
use moe_edge::transport::{connect, Message, PublishOptions, QoS};
use moe_edge::wire::{topics, DeviceId};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);
const SESSION: Duration = Duration::from_secs(600);

fn bundle() -> &'static Path {
    crate::harness::fixture_bundle()
}

fn is_final(v: &Value) -> bool {
    v.get("error").is_some()
        || v["object"] == "chat.completion"
        || v["object"] == "chat.completion.done"
}

fn correlation(m: &Message) -> String {
    m.correlation_data
        .as_ref()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

/// Restarts the broker `restarts` times while `n` requests go out, one
/// every `gap`; returns (the final replies per correlation, as received,
/// duplicates included; errors by code).
async fn run_under_restarts(
    test: &str,
    n: usize,
    gap: Duration,
    restarts: usize,
) -> Option<(BTreeMap<String, Vec<Bytes>>, BTreeMap<String, usize>)> {
    let mut b = SecureBroker::start(test)?;
    // The daemon: the `moe-edge serve` binary with its default session flags
    // (a persistent session is the default on an external broker).
    let daemon_log = tempfile::NamedTempFile::new().unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_moe-edge"))
        .current_dir(crate::harness::repo())
        .args([
            "serve",
            "--board",
            "host-cpu",
            "--device-id",
            DEVICE,
            "--username",
            DEVICE,
        ])
        .arg("--bundle")
        .arg(bundle())
        .arg("--broker")
        .arg(b.url())
        .arg("--ca")
        .arg(b.ca())
        .env(
            "MOE_EDGE_MQTT_PASSWORD",
            crate::harness::secure_broker::password(DEVICE),
        )
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(daemon_log.reopen().unwrap())
        .spawn()
        .unwrap();
    // Ready once its retained status says online.
    let mut watcher_cfg = b.config("app-a-status", APP_A);
    watcher_cfg.inbox_capacity = 64;
    let (watch, mut status, watch_driver) = connect(&watcher_cfg).unwrap();
    let (stop_watch, rx) = oneshot::channel::<()>();
    let watch_task = tokio::spawn(watch_driver.run(async move {
        let _ = rx.await;
    }));
    let status_topic = topics::status(&DeviceId::new(DEVICE).unwrap());
    watch
        .subscribe(&status_topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    let online = async {
        loop {
            let m = status.recv().await.expect("status");
            if String::from_utf8_lossy(&m.payload).contains("\"online\"") {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, online)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "daemon online in time; its log:\n{}",
                std::fs::read_to_string(daemon_log.path()).unwrap()
            )
        });
    let _ = stop_watch.send(());
    let _ = watch_task.await;

    // The app, on a persistent session too.
    let mut cfg = b.config("app-a-chaos", APP_A);
    cfg.clean_start = false;
    cfg.session_expiry = SESSION;
    cfg.request_capacity = n + 16;
    cfg.inbox_capacity = 256;
    let (handle, mut inbox, driver) = connect(&cfg).unwrap();
    let (stop_app, rx) = oneshot::channel::<()>();
    let app_driver = tokio::spawn(driver.run(async move {
        let _ = rx.await;
    }));
    let reply = "moe-edge/clients/app-a/chaos/reply";
    handle.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    handle.wait_connected(WAIT).await.unwrap();

    let requests = topics::chat_requests(&DeviceId::new(DEVICE).unwrap());
    let sender = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let mut o = PublishOptions::qos(QoS::AtLeastOnce);
                o.response_topic = Some(reply.to_string());
                o.correlation_data = Some(Bytes::from(format!("r{i}")));
                let body = json!({
                    "messages": [{"role": "user", "content": format!("request {i}")}],
                    "max_tokens": 3 + (i % 4),
                    "stream": i % 3 == 0,
                });
                handle
                    .publish(&requests, serde_json::to_vec(&body).unwrap(), &o)
                    .await
                    .expect("the client queues the request (bounded, sized for the test)");
                tokio::time::sleep(gap).await;
            }
        })
    };
    let span = gap * n as u32;
    let restarter = tokio::spawn(async move {
        for r in 0..restarts {
            tokio::time::sleep(span / (restarts as u32 + 1)).await;
            let t = Instant::now();
            // Like `systemctl restart mosquitto`: SIGTERM (the broker saves
            // its sessions), then start again after a second of downtime.
            tokio::task::block_in_place(|| b.stop(true));
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::task::block_in_place(|| b.spawn());
            eprintln!("restart {r}: broker back after {:?}", t.elapsed());
        }
        b
    });

    let mut finals: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let end = Instant::now() + span + Duration::from_secs(60);
    while finals.len() < n && Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(Some(m)) = inbox.recv_timeout(left).await else {
            break;
        };
        let v: Value = serde_json::from_slice(&m.payload).expect("reply is JSON");
        if is_final(&v) {
            finals.entry(correlation(&m)).or_default().push(m.payload);
            if let Some(code) = v["error"]["code"].as_str() {
                *errors.entry(code.to_string()).or_default() += 1;
            }
        }
    }
    sender.await.unwrap();
    // Anything late (a duplicate) shows up here.
    while let Ok(Some(m)) = inbox.recv_timeout(Duration::from_secs(2)).await {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if is_final(&v) {
            finals.entry(correlation(&m)).or_default().push(m.payload);
        }
    }
    let b = restarter.await.unwrap();
    eprintln!(
        "app stats {:?}; broker log tail:\n{}",
        handle.stats(),
        b.log().lines().rev().take(8).collect::<Vec<_>>().join("\n")
    );
    let _ = stop_app.send(());
    let _ = app_driver.await;
    // SIGTERM: the daemon drains and publishes offline.
    let _ = std::process::Command::new("kill")
        .arg(daemon.id().to_string())
        .status();
    let _ = tokio::task::block_in_place(|| daemon.wait());
    let log = std::fs::read_to_string(daemon_log.path()).unwrap();
    eprintln!(
        "daemon log tail:\n{}",
        log.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !log.contains(" ERROR "),
        "ERROR lines in the daemon log:\n{log}"
    );
    Some((finals, errors))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_restarts_under_load_lose_no_request() {
    let n = 60;
    let Some((finals, errors)) = run_under_restarts(
        "mosquitto_restarts_under_load_lose_no_request",
        n,
        Duration::from_millis(60),
        2,
    )
    .await
    else {
        return;
    };
    let missing: Vec<String> = (0..n)
        .map(|i| format!("r{i}"))
        .filter(|c| !finals.contains_key(c))
        .collect();
    // Distinct final replies per request: more than one means it was processed
    // twice; identical copies are QoS 1 redeliveries.
    let twice: Vec<(&String, usize)> = finals
        .iter()
        .map(|(c, v)| (c, v.iter().collect::<BTreeSet<_>>().len()))
        .filter(|&(_, k)| k != 1)
        .collect();
    let redelivered: Vec<(&String, usize)> = finals
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(c, v)| (c, v.len()))
        .collect();
    let unknown: Vec<&String> = finals
        .keys()
        .filter(|c| {
            c.strip_prefix('r')
                .and_then(|x| x.parse::<usize>().ok())
                .is_none_or(|i| i >= n)
        })
        .collect();
    eprintln!(
        "chaos: {n} requests, 2 broker restarts: {} answered exactly once, missing {missing:?}, \
         processed more than once {twice:?}, reply redelivered (QoS 1 duplicate) {redelivered:?}, errors {errors:?}",
        finals.values().filter(|v| v.len() == 1).count()
    );
    assert!(missing.is_empty(), "lost requests: {missing:?}");
    assert!(
        twice.is_empty(),
        "processed more than once (distinct final replies): {twice:?}"
    );
    assert!(
        unknown.is_empty(),
        "answers to unknown requests: {unknown:?}"
    );
}
