//! `moe-edge serve` end to end, no mocks: the daemon (in-process through
//! `serve::run`, or the real binary) against the embedded rumqttd and a real
//! Mosquitto started per test on a free port with its own config, driven by
//! our MQTT 5 client, `moe-edge ask`, `mosquitto_pub`/`mosquitto_sub` and
//! (when `$MOE_EDGE_PYTHON` has it) paho-mqtt.
//!
//! The model is the random-weight `tests/fixtures/qwen3_moe` imported into a
//! temp dir: replies are gibberish but exercise every path (prefill, decode,
//! streaming, tool-call parsing, fallback). Mosquitto tests print a notice
//! and pass if `mosquitto` is not installed (scripts/test.sh installs it).

use crate::harness::repo;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::daemon::Daemon;
use crate::harness::mosquitto::{find_bin, Mosquitto};
use bytes::Bytes;
use moe_edge::bundle::Verify;
use moe_edge::config::Board;
use moe_edge::engine::Engine;
use moe_edge::serve::{self, BrokerChoice, ServeConfig};
use moe_edge::transport::{connect, Inbox, MqttConfig, MqttHandle, PublishOptions, QoS};
use moe_edge::wire::DeviceId;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ fixtures

fn bundle() -> &'static Path {
    crate::harness::fixture_bundle()
}

fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        Arc::new(Engine::load(bundle(), &Board::load("host-cpu").unwrap(), Verify::Full).unwrap())
    })
    .clone()
}

/// `host-cpu` with other limits.
fn board(max_concurrent: usize, queue_depth: usize, rate: f64) -> Board {
    let text = std::fs::read_to_string(repo().join("boards/host-cpu.toml")).unwrap();
    let text = text
        .replace(
            "max_concurrent = 4",
            &format!("max_concurrent = {max_concurrent}"),
        )
        .replace("queue_depth = 32", &format!("queue_depth = {queue_depth}"))
        .replace(
            "requests_per_client_per_sec = 50",
            &format!("requests_per_client_per_sec = {rate}"),
        );
    Board::parse(&text, Path::new("test-board.toml")).unwrap()
}

/// Log lines, captured for the whole process (and echoed to stderr).
fn logs() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static INIT: OnceLock<()> = OnceLock::new();
    let lines = LINES.get_or_init(|| Mutex::new(Vec::new()));
    INIT.get_or_init(|| {
        struct Capture;
        impl log::Log for Capture {
            fn enabled(&self, m: &log::Metadata) -> bool {
                m.level() <= log::Level::Info && !m.target().starts_with("rumqttd")
            }
            fn log(&self, r: &log::Record) {
                if self.enabled(r.metadata()) {
                    let line = format!("{} {}", r.level(), r.args());
                    eprintln!("{line}");
                    logs().lock().unwrap().push(line);
                }
            }
            fn flush(&self) {}
        }
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Info);
    });
    lines
}

fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

// ------------------------------------------------------------------ daemon

/// A daemon on this file's engine, a fresh device id, status every 50 ms.
async fn start_daemon(
    board: Board,
    broker: BrokerChoice,
    tweak: impl FnOnce(&mut ServeConfig),
) -> Daemon {
    logs();
    let device = DeviceId::new(unique("dev")).unwrap();
    Daemon::start(engine(), board, device, broker, |c| {
        c.status_interval = Duration::from_millis(50);
        tweak(c)
    })
    .await
}

/// [`start_daemon`] on the embedded broker (a free port).
async fn embedded_daemon(board: Board) -> Daemon {
    start_daemon(
        board,
        BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        |_| {},
    )
    .await
}

/// An MQTT 5 app: its own reply topic, correlation data per request.
struct App {
    handle: MqttHandle,
    inbox: Inbox,
    reply_topic: String,
    _stop: oneshot::Sender<()>,
}

impl App {
    async fn new(url: &str) -> App {
        let id = unique("app");
        let cfg = MqttConfig::from_url(url, id.clone()).unwrap();
        let (handle, inbox, driver) = connect(&cfg).unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(driver.run(async move {
            let _ = rx.await;
        }));
        let reply_topic = format!("apps/{id}/replies");
        handle
            .subscribe(&reply_topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        handle.wait_connected(WAIT).await.unwrap();
        App {
            handle,
            inbox,
            reply_topic,
            _stop: stop,
        }
    }

    /// An app subscribed to the daemon's status (the retained one first).
    async fn status_watcher(d: &Daemon) -> App {
        let app = App::new(&d.ready.broker_url).await;
        app.handle
            .subscribe(&d.ready.status_topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        app
    }

    /// Sends `body` to the daemon with the response topic and correlation `corr`.
    async fn send_raw(&self, device: &DeviceId, body: Vec<u8>, corr: &str, props: bool) {
        let mut o = PublishOptions::qos(QoS::AtLeastOnce);
        if props {
            o.response_topic = Some(self.reply_topic.clone());
            o.correlation_data = Some(Bytes::from(corr.to_string()));
        }
        self.handle
            .publish(&moe_edge::wire::topics::chat_requests(device), body, &o)
            .await
            .unwrap();
    }

    async fn send(&self, device: &DeviceId, body: &Value, corr: &str) {
        self.send_raw(device, serde_json::to_vec(body).unwrap(), corr, true)
            .await
    }

    /// The next reply: (correlation, JSON, when).
    async fn recv(&mut self) -> (String, Value, Instant) {
        let m = self
            .inbox
            .recv_timeout(WAIT)
            .await
            .expect("reply in time")
            .expect("driver alive");
        let corr = m
            .correlation_data
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        (
            corr,
            serde_json::from_slice(&m.payload).expect("reply is JSON"),
            Instant::now(),
        )
    }

    /// Waits for the final message of `n` requests; returns every message by correlation.
    async fn collect_finals(&mut self, n: usize) -> HashMap<String, Vec<(Value, Instant)>> {
        let mut by: HashMap<String, Vec<(Value, Instant)>> = HashMap::new();
        let mut finals = 0;
        while finals < n {
            let (c, v, t) = self.recv().await;
            if is_final(&v) {
                finals += 1;
            }
            by.entry(c).or_default().push((v, t));
        }
        by
    }

    /// Nothing more arrives within `d`.
    async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some(m)) = self.inbox.recv_timeout(d).await {
            panic!(
                "unexpected extra message: {}",
                String::from_utf8_lossy(&m.payload)
            );
        }
    }
}

fn is_final(v: &Value) -> bool {
    v.get("error").is_some()
        || v["object"] == "chat.completion"
        || v["object"] == "chat.completion.done"
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn chat(text: &str, max_tokens: u64) -> Value {
    json!({"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})
}

/// The log lines of one device that mention `needle`.
fn log_lines(device: &DeviceId, needle: &str) -> Vec<String> {
    let dev = format!("device={device}");
    logs()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&dev) && l.contains(needle))
        .cloned()
        .collect()
}

// ------------------------------------------------------------------ external tools

/// `mosquitto_sub` collecting messages (`-v`: topic and payload per line) into a file.
struct Sub {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sub {
    /// `mosquitto_sub -V version -t topic -v` on 127.0.0.1:`port`.
    fn on(port: &str, version: &str, topic: &str) -> Sub {
        Sub::start(&[
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-V",
            version,
            "-t",
            topic,
            "-v",
        ])
    }

    fn start(args: &[&str]) -> Sub {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        let child = Command::new(find_bin("mosquitto_sub").expect("mosquitto_sub"))
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Sub {
            child,
            out,
            _dir: dir,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the output satisfies `ok`.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if ok(&t) {
                return t;
            }
            assert!(start.elapsed() < WAIT, "mosquitto_sub: no {what} in:\n{t}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub -q 1` of `body` on 127.0.0.1:`port`; `props` are MQTT 5
/// publish properties (`-D publish NAME VALUE`).
fn publish_on(port: &str, version: &str, topic: &str, body: &str, props: &[(&str, &str)]) {
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-V",
        version,
        "-q",
        "1",
        "-t",
        topic,
    ];
    for (name, value) in props {
        args.extend(["-D", "publish", name, value]);
    }
    args.extend(["-m", body]);
    mosquitto_pub(&args);
}

fn mosquitto_pub(args: &[&str]) {
    let st = Command::new(find_bin("mosquitto_pub").expect("mosquitto_pub"))
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "mosquitto_pub {args:?}");
}

/// The daemon binary as a child process, stderr captured.
struct DaemonProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl DaemonProcess {
    fn start(args: &[&str]) -> DaemonProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_moe-edge"))
            .arg("serve")
            .arg("--bundle")
            .arg(bundle())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        DaemonProcess {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < WAIT,
                "no {needle:?} in daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < WAIT,
                "daemon did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_streams_through_the_embedded_broker() {
    let d = embedded_daemon(board(4, 32, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;

    // Non-streamed: one chat.completion, correlation data echoed.
    app.send(&d.device, &chat("turn on the lights", 12), "plain")
        .await;
    let (corr, v, _) = app.recv().await;
    assert_eq!(corr, "plain");
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "fixture-moe");
    assert_eq!(v["x_moe_edge"]["served_by"], "device");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert!(v["x_moe_edge"]["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    let p = v["x_moe_edge"]["confidence"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0, "{v}");

    // Streamed, same request (greedy): chunks in order, then the terminator.
    let mut body = chat("turn on the lights", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    app.send(&d.device, &body, "stream").await;
    let mut msgs = Vec::new();
    loop {
        let (corr, v, _) = app.recv().await;
        assert_eq!(corr, "stream");
        let end = is_final(&v);
        msgs.push(v);
        if end {
            break;
        }
    }
    let (done, chunks) = msgs.split_last().unwrap();
    assert_eq!(done["object"], "chat.completion.done", "{done}");
    assert!(chunks.len() >= 2, "{chunks:?}");
    let id = &chunks[0]["id"];
    assert_eq!(&done["id"], id);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(&c["id"], id);
        let last = i == chunks.len() - 1;
        assert_eq!(c["choices"][0]["finish_reason"].is_null(), !last, "{c}");
        assert_eq!(c.get("x_moe_edge").is_some(), last, "{c}");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"], v["usage"]);
    let mut acc = moe_edge::openai::ChunkAccumulator::new();
    for c in chunks {
        acc.push(&serde_json::from_value(c.clone()).unwrap());
    }
    let streamed = serde_json::to_value(acc.finish()).unwrap();
    assert_eq!(
        streamed["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"],
        "streamed text differs from the plain reply"
    );
    app.assert_quiet(Duration::from_millis(200)).await;

    // logprobs: one per generated token; a stream carries the same list on
    // its finish chunk
    let mut body = chat("turn on the lights", 12);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    app.send(&d.device, &body, "lp").await;
    let (_, plain, _) = app.recv().await;
    let lp = plain["choices"][0]["logprobs"]["content"].clone();
    assert_eq!(
        lp.as_array().map(Vec::len),
        plain["usage"]["completion_tokens"]
            .as_u64()
            .map(|n| n as usize),
        "{plain}"
    );
    assert!(lp[0]["top_logprobs"].as_array().unwrap().len() <= 2, "{lp}");
    body["stream"] = json!(true);
    app.send(&d.device, &body, "lp-stream").await;
    let finish = loop {
        let (_, v, _) = app.recv().await;
        if !v["choices"][0]["finish_reason"].is_null() {
            break v;
        }
    };
    assert_eq!(finish["choices"][0]["logprobs"]["content"], lp, "{finish}");
    let (_, done, _) = app.recv().await;
    assert_eq!(done["object"], "chat.completion.done", "{done}");

    // Retained status, online, with the live figures.
    let mut watcher = App::status_watcher(&d).await;
    let m = watcher.inbox.recv_timeout(WAIT).await.unwrap().unwrap();
    let s: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(s["state"], "online", "{s}");
    assert_eq!(s["model"], "fixture-moe");
    assert_eq!(s["queue_capacity"], 32);
    assert!(s["resident_experts"].as_u64().is_some());
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    d.stop().await;
}

/// `cascade.min_confidence` on a daemon without hops: a call below the floor
/// still reaches the app, marked with why the device would have handed it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsure_calls_are_marked_when_there_is_no_hop() {
    // the demo model: the fixture's tokenizer has no tool-call markers, so
    // it cannot be constrained to a call
    let demo = Arc::new(
        Engine::load(
            &repo().join("models/assist-moe/bundle"),
            &Board::load("host-cpu").unwrap(),
            Verify::Sizes,
        )
        .unwrap(),
    );
    let mut b = board(2, 16, 0.0);
    b.cascade.min_confidence = 0.999;
    let d = start_daemon(
        b,
        BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        |c| c.engine = demo,
    )
    .await;
    let mut app = App::new(&d.ready.broker_url).await;
    // an indirect wish: the model is not sure how hard to blow
    let mut body = chat("the air is a bit stuffy, blow a little harder", 64);
    body["tools"] = json!([{"type": "function", "function": {"name": "set_fan_speed",
        "parameters": {"type": "object", "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 7}},
                       "required": ["level"]}}}]);
    body["tool_choice"] = json!("required");
    app.send(&d.device, &body, "gate").await;
    let (_, v, _) = app.recv().await;
    assert_eq!(v["object"], "chat.completion", "{v}");
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no call: {v}"));
    assert_eq!(calls[0]["function"]["name"], "set_fan_speed", "{v}");
    let x = &v["x_moe_edge"];
    assert_eq!(x["served_by"], "device");
    let p = x["confidence"].as_f64().unwrap();
    assert!(p < 0.999, "{v}");
    assert!(
        x["fallback_reason"].as_str().is_some_and(|r| r
            .starts_with("low confidence: the call is right with p=")
            && r.contains("(calibrated)")),
        "{v}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_replies_log_lines_and_the_daemon_keeps_serving() {
    let d = embedded_daemon(board(2, 16, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    let user = |t: &str| json!([{"role": "user", "content": t}]);
    let long_prompt: String = (0..3000).map(|i| format!("w{i} ")).collect();
    let big = vec![b' '; 300 * 1024];
    // (name, body, MQTT 5 response topic?, expected code)
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "not json",
            b"{\"messages\": [".to_vec(),
            true,
            "invalid_json",
        ),
        (
            "invalid utf-8",
            b"{\"messages\": \"\xff\xfe\"}".to_vec(),
            true,
            "invalid_utf8",
        ),
        ("over the limit", big, true, "payload_too_large"),
        (
            "no messages",
            br#"{"messages": []}"#.to_vec(),
            true,
            "invalid_request",
        ),
        (
            "wrong types",
            br#"{"messages": "hello", "max_tokens": "ten"}"#.to_vec(),
            true,
            "invalid_request",
        ),
        (
            "unknown model",
            serde_json::to_vec(&json!({"model": "gpt-9", "messages": user("hi")})).unwrap(),
            true,
            "model_not_found",
        ),
        (
            "prompt over the context",
            serde_json::to_vec(&json!({"messages": user(&long_prompt)})).unwrap(),
            true,
            "context_length_exceeded",
        ),
        (
            "tools with an invalid schema",
            serde_json::to_vec(&json!({"messages": user("hi"), "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}))
            .unwrap(),
            true,
            "invalid_tools",
        ),
        (
            "no reply topic",
            serde_json::to_vec(&json!({"messages": user("hi")})).unwrap(),
            false,
            "missing_reply_topic",
        ),
        (
            "3.1.1 body reply topic, bad request",
            serde_json::to_vec(
                &json!({"messages": [], "reply_topic": app.reply_topic, "id": "r-7"}),
            )
            .unwrap(),
            false,
            "invalid_request",
        ),
    ];
    for (name, body, props, _) in &cases {
        app.send_raw(&d.device, body.clone(), name, *props).await;
    }
    let expected: usize = cases
        .iter()
        .filter(|(_, _, props, code)| *props || *code != "missing_reply_topic")
        .count();
    let mut got: HashMap<String, Value> = HashMap::new();
    for _ in 0..expected {
        let (corr, v, _) = app.recv().await;
        let key = if corr.is_empty() {
            v["request_id"].as_str().unwrap_or("?").to_string()
        } else {
            corr
        };
        assert!(
            got.insert(key.clone(), v).is_none(),
            "two replies for {key}"
        );
    }
    for (name, _, props, want) in &cases {
        let key = if *name == "3.1.1 body reply topic, bad request" {
            "r-7"
        } else {
            name
        };
        if *props || *want != "missing_reply_topic" {
            let v = got.get(key).unwrap_or_else(|| panic!("{name}: no reply"));
            assert_eq!(code(v), *want, "{name}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().len() > 3, "{name}");
            assert!(v["error"]["type"].is_string(), "{name}");
        }
        assert!(
            !log_lines(&d.device, &format!("code={want}")).is_empty(),
            "{name}: no log line with code={want}"
        );
    }
    assert!(!log_lines(&d.device, "no reply topic").is_empty());

    // Still serving.
    app.send(&d.device, &chat("hello again", 4), "good").await;
    let (corr, v, _) = app.recv().await;
    assert_eq!(
        (corr.as_str(), v["object"].as_str()),
        ("good", Some("chat.completion")),
        "{v}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_overloaded_at_once_and_loses_nothing_accepted() {
    let d = embedded_daemon(board(1, 3, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    let n = 24;
    let t0 = Instant::now();
    for i in 0..n {
        app.send(
            &d.device,
            &chat(&format!("request number {i}"), 200),
            &format!("r{i}"),
        )
        .await;
    }
    let by = app.collect_finals(n).await;
    app.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(by.len(), n, "every request answered");
    let mut ok = Vec::new();
    let mut overloaded = Vec::new();
    for (c, msgs) in &by {
        assert_eq!(
            msgs.iter().filter(|(v, _)| is_final(v)).count(),
            1,
            "{c}: one final reply"
        );
        let (v, t) = msgs.last().unwrap();
        match (v["object"].as_str(), code(v)) {
            (Some("chat.completion"), _) => ok.push(*t),
            (_, "overloaded") => overloaded.push(*t),
            other => panic!("{c}: unexpected {other:?}: {v}"),
        }
    }
    // At least the queue's depth is accepted (one more when the engine had
    // already taken the first request off the queue when the burst arrived).
    assert!(
        ok.len() >= 3,
        "the 3 queued (and maybe 1 running) complete, got {}",
        ok.len()
    );
    assert!(!overloaded.is_empty(), "nothing was refused");
    assert_eq!(ok.len() + overloaded.len(), n);
    // "At once": each refusal arrived before the accepted work was done.
    let last_ok = ok.iter().max().unwrap();
    let last_refusal = overloaded.iter().max().unwrap();
    assert!(last_refusal < last_ok, "refusals waited for the queue");
    eprintln!(
        "overload: ok={} overloaded={} last refusal at {:?}, last ok at {:?}",
        ok.len(),
        overloaded.len(),
        *last_refusal - t0,
        *last_ok - t0
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_runs_first() {
    let d = embedded_daemon(board(1, 16, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    // Occupy the only slot, then queue a mix while it runs.
    // A streaming blocker: its first chunk proves it holds the slot before
    // the mix is queued (a fixed sleep races admission on a loaded machine).
    let mut blocker = chat("a long blocking request", 250);
    blocker["stream"] = json!(true);
    app.send(&d.device, &blocker, "blocker").await;
    let (c, first, _) = app.recv().await;
    assert_eq!(
        (c.as_str(), first["object"].as_str()),
        ("blocker", Some("chat.completion.chunk")),
        "{first}"
    );
    let mix = [
        ("low-1", "low"),
        ("normal-1", "normal"),
        ("low-2", "low"),
        ("safety", "safety"),
        ("high", "high"),
        ("normal-2", "normal"),
    ];
    for (name, p) in mix {
        let mut b = chat(&format!("queued {name}"), 3);
        b["x-priority"] = json!(p);
        app.send(&d.device, &b, name).await;
    }
    let mut order = Vec::new();
    while order.len() < 7 {
        let (c, v, _) = app.recv().await;
        if c == "blocker" {
            // the blocker's stream: its terminator is its final reply
            if v["object"] == "chat.completion.done" {
                order.push(c);
            } else {
                assert_eq!(v["object"], "chat.completion.chunk", "{c}: {v}");
            }
            continue;
        }
        assert_eq!(v["object"], "chat.completion", "{c}: {v}");
        order.push(c);
    }
    assert_eq!(order[0], "blocker", "{order:?}");
    assert_eq!(
        &order[1..],
        ["safety", "high", "normal-1", "normal-2", "low-1", "low-2"],
        "{order:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_expire_queued_requests_and_stop_running_ones() {
    let d = embedded_daemon(board(1, 16, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    // Back to back on one connection, so they arrive in this order; a sleep
    // between them can outlast the blocker on a loaded machine.
    app.send(&d.device, &chat("blocking request", 250), "blocker")
        .await;
    let mut b = chat("in a hurry", 4);
    b["x-deadline-ms"] = json!(1);
    app.send(&d.device, &b, "queued-expires").await;
    let mut b = chat("fine", 4);
    b["x-deadline-ms"] = json!(60_000);
    app.send(&d.device, &b, "queued-fine").await;
    let by = app.collect_finals(3).await;
    let v = &by["queued-expires"].last().unwrap().0;
    assert_eq!(code(v), "deadline_exceeded", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not run"),
        "{v}"
    );
    assert_eq!(
        by["queued-fine"].last().unwrap().0["object"],
        "chat.completion"
    );
    assert_eq!(by["blocker"].last().unwrap().0["object"], "chat.completion");
    // The expired one was answered before the blocker finished, i.e. not run.
    assert!(by["queued-expires"][0].1 < by["blocker"][0].1);

    // A running request past its deadline is stopped and answered (streamed:
    // some chunks, then the error as the final message).
    let mut b = chat("a long one with a short deadline", 250);
    b["x-deadline-ms"] = json!(15);
    b["stream"] = json!(true);
    app.send(&d.device, &b, "running-expires").await;
    let by = app.collect_finals(1).await;
    let msgs = &by["running-expires"];
    let v = &msgs.last().unwrap().0;
    if code(v) == "deadline_exceeded" {
        assert!(
            v["error"]["message"].as_str().unwrap().contains("stopped"),
            "{v}"
        );
        assert!(msgs[..msgs.len() - 1]
            .iter()
            .all(|(c, _)| c["object"] == "chat.completion.chunk"));
    } else {
        // The fixture may end (EOS) within 15 ms on a fast machine.
        assert_eq!(v["object"], "chat.completion.done", "{v}");
        eprintln!("NOTE: the request finished before its 15 ms deadline");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_rate_limit() {
    let d = embedded_daemon(board(2, 32, 2.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    for i in 0..6 {
        app.send(&d.device, &chat("hi", 2), &format!("r{i}")).await;
    }
    let by = app.collect_finals(6).await;
    let limited = by
        .values()
        .filter(|m| code(&m.last().unwrap().0) == "rate_limited")
        .count();
    assert_eq!(limited, 4, "burst of 2 allowed, the rest limited");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_everything_and_goes_offline() {
    let d = embedded_daemon(board(1, 8, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    let mut watcher = App::status_watcher(&d).await;
    // A burst of eight: the daemon accepts them faster than it answers them.
    for i in 0..8 {
        app.send(
            &d.device,
            &chat(&format!("in flight {i}"), 200),
            &format!("r{i}"),
        )
        .await;
    }
    // Wait until the status shows one running and more queued.
    loop {
        let m = watcher.inbox.recv_timeout(WAIT).await.unwrap().unwrap();
        let s: Value = serde_json::from_slice(&m.payload).unwrap();
        let (active, queued) = (
            s["active"].as_u64().unwrap(),
            s["queue_depth"].as_u64().unwrap(),
        );
        if active >= 1 && queued >= 1 {
            break;
        }
    }
    let device = d.device.clone();
    let stopping = tokio::spawn(d.stop());
    let by = app.collect_finals(8).await;
    for (c, msgs) in &by {
        let v = &msgs.last().unwrap().0;
        assert!(
            v["object"] == "chat.completion" || code(v) == "shutting_down",
            "{c}: {v}"
        );
    }
    assert_eq!(
        by["r0"].last().unwrap().0["object"],
        "chat.completion",
        "the running one finishes"
    );
    stopping.await.unwrap();
    let start = Instant::now();
    loop {
        let m = watcher.inbox.recv_timeout(WAIT).await.unwrap().unwrap();
        let s: Value = serde_json::from_slice(&m.payload).unwrap();
        if s["state"] == "offline" {
            assert_eq!(s["device"], device.as_str());
            break;
        }
        assert!(start.elapsed() < WAIT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_mqtt5_and_third_party_clients() {
    let Some(m) = Mosquitto::start("mosquitto_mqtt5_and_third_party_clients") else {
        return;
    };
    let mqtt = serve::broker_config(&m.url(), None, None, None, None, None).unwrap();
    let d = start_daemon(
        board(2, 16, 0.0),
        BrokerChoice::External(Box::new(mqtt)),
        |_| {},
    )
    .await;
    let port = m.port.to_string();
    let req_topic = d.ready.requests_topic.clone();

    // Our MQTT 5 client.
    let mut app = App::new(&m.url()).await;
    app.send(&d.device, &chat("open the window", 6), "c1").await;
    let (c, v, _) = app.recv().await;
    assert_eq!(
        (c.as_str(), v["object"].as_str()),
        ("c1", Some("chat.completion"))
    );

    // mosquitto_pub/sub, MQTT 5: response topic + correlation data.
    let sub = Sub::on(&port, "mqttv5", "tp/replies");
    std::thread::sleep(Duration::from_millis(300));
    let body = serde_json::to_string(&chat("play some music", 5)).unwrap();
    publish_on(
        &port,
        "mqttv5",
        &req_topic,
        &body,
        &[
            ("response-topic", "tp/replies"),
            ("correlation-data", "mp-1"),
        ],
    );
    let out = sub.wait_for("chat.completion", |t| t.contains("\"chat.completion\""));
    assert!(out.starts_with("tp/replies {"), "{out}");

    // mosquitto_pub MQTT 3.1.1: reply topic and id in the body.
    let sub311 = Sub::on(&port, "mqttv311", "legacy/replies");
    std::thread::sleep(Duration::from_millis(300));
    let mut b = chat("navigate home", 5);
    b["reply_topic"] = json!("legacy/replies");
    b["id"] = json!("legacy-42");
    publish_on(
        &port,
        "mqttv311",
        &req_topic,
        &serde_json::to_string(&b).unwrap(),
        &[],
    );
    let out = sub311.wait_for("reply", |t| t.contains("legacy-42"));
    let payload = out.trim().strip_prefix("legacy/replies ").unwrap();
    let v: Value = serde_json::from_str(payload).unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["request_id"], "legacy-42");
    d.stop().await;
}

#[test]
fn daemon_process_on_mosquitto_status_last_will_and_sigterm() {
    let Some(m) = Mosquitto::start("daemon_process_on_mosquitto_status_last_will_and_sigterm")
    else {
        return;
    };
    let port = m.port.to_string();
    let device = unique("proc");
    let status = format!("moe-edge/{device}/status");
    let url = m.url();

    // Killed with SIGKILL: the broker publishes the last will (offline, retained).
    let mut p = DaemonProcess::start(&["--broker", &url, "--device-id", &device]);
    p.wait_log("serve ready");
    let sub = Sub::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-t",
        &status,
    ]);
    sub.wait_for("online status", |t| t.contains("\"state\":\"online\""));
    p.signal("-KILL");
    p.wait_exit();
    let out = sub.wait_for("offline will", |t| t.contains("\"state\":\"offline\""));
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["device"], device.as_str());
    drop(sub);
    // Retained: a new subscriber sees offline at once.
    let sub = Sub::start(&["-h", "127.0.0.1", "-p", &port, "-t", &status, "-C", "1"]);
    sub.wait_for("retained offline", |t| t.contains("\"state\":\"offline\""));

    // SIGTERM: a request in flight is answered, then offline, exit 0.
    let mut p = DaemonProcess::start(&["--broker", &url, "--device-id", &device]);
    p.wait_log("serve ready");
    let replies = Sub::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-t",
        "term/replies",
    ]);
    let status_sub = Sub::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-t",
        &status,
    ]);
    status_sub.wait_for("online", |t| t.contains("\"state\":\"online\""));
    std::thread::sleep(Duration::from_millis(200));
    let body = serde_json::to_string(&chat("something long", 250)).unwrap();
    publish_on(
        &port,
        "mqttv5",
        &format!("moe-edge/{device}/v1/chat/completions"),
        &body,
        &[("response-topic", "term/replies")],
    );
    p.wait_log("serve engine thread started");
    std::thread::sleep(Duration::from_millis(30));
    p.signal("-TERM");
    let st = p.wait_exit();
    assert!(st.success(), "exit {st:?}\n{}", p.log());
    let r = replies.wait_for("reply", |t| {
        t.contains("chat.completion") || t.contains("\"error\"")
    });
    assert!(
        r.contains("\"chat.completion\"") || r.contains("shutting_down"),
        "{r}"
    );
    status_sub.wait_for("offline", |t| t.contains("\"state\":\"offline\""));
    assert!(p.log().contains("SIGTERM received"), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_serves_mqtt311_apps_on_port_plus_one() {
    if find_bin("mosquitto_pub").is_none() {
        eprintln!("SKIPPED embedded_broker_serves_mqtt311_apps_on_port_plus_one: no mosquitto_pub");
        return;
    }
    let d = embedded_daemon(board(2, 16, 0.0)).await;
    let port = (d.port() + 1).to_string();
    let sub = Sub::on(&port, "mqttv311", "old/replies");
    std::thread::sleep(Duration::from_millis(300));
    let mut b = chat("dim the lights", 4);
    b["reply_topic"] = json!("old/replies");
    b["id"] = json!("old-1");
    publish_on(
        &port,
        "mqttv311",
        &d.ready.requests_topic,
        &serde_json::to_string(&b).unwrap(),
        &[],
    );
    let out = sub.wait_for("reply", |t| t.contains("old-1"));
    assert!(out.contains("\"chat.completion\""), "{out}");
    drop(sub);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt5_client_streams() {
    let Some(py) = std::env::var_os("MOE_EDGE_PYTHON") else {
        eprintln!("SKIPPED paho_mqtt5_client_streams: $MOE_EDGE_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let d = embedded_daemon(board(2, 16, 0.0)).await;
    let script = r#"
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, topic = int(sys.argv[1]), sys.argv[2]
done = threading.Event()
out = []
def on_message(c, u, m):
    corr = m.properties.CorrelationData.decode() if hasattr(m.properties, "CorrelationData") else ""
    v = json.loads(m.payload)
    out.append({"corr": corr, "msg": v})
    if "error" in v or v.get("object") in ("chat.completion", "chat.completion.done"):
        done.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-test", protocol=mqtt.MQTTv5)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.subscribe("paho/replies", qos=1)
c.loop_start()
import time; time.sleep(0.3)
p = Properties(PacketTypes.PUBLISH)
p.ResponseTopic = "paho/replies"
p.CorrelationData = b"paho-1"
body = {"messages": [{"role": "user", "content": "what is the weather"}], "max_tokens": 6, "stream": True}
c.publish(topic, json.dumps(body), qos=1, properties=p)
ok = done.wait(20)
c.loop_stop()
print(json.dumps(out))
sys.exit(0 if ok else 3)
"#;
    let out = Command::new(py)
        .args(["-c", script, &d.port().to_string(), &d.ready.requests_topic])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(msgs.iter().all(|m| m["corr"] == "paho-1"));
    assert_eq!(
        msgs.last().unwrap()["msg"]["object"],
        "chat.completion.done"
    );
    assert_eq!(msgs[0]["msg"]["object"], "chat.completion.chunk");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_subcommand_prints_replies_and_fails_on_errors() {
    let d = embedded_daemon(board(2, 16, 0.0)).await;
    let url = d.ready.broker_url.clone();
    let dev = d.device.to_string();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_moe-edge"))
                .arg("ask")
                .args(args)
                .current_dir(repo())
                .output()
                .unwrap()
        })
    };
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--broker".into(),
            url.clone(),
            "--device-id".into(),
            dev.clone(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Plain, with the catalogue's tools (default), as JSON.
    let out = run(base(&["--json", "--max-tokens", "6", "turn on the lights"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["object"], "chat.completion");
    // Streamed.
    let out = run(base(&[
        "--stream",
        "--no-tools",
        "--max-tokens",
        "6",
        "hello",
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("served_by=device"), "{err}");
    assert!(
        err.contains(" confidence=0.") || err.contains(" confidence=1.000"),
        "{err}"
    );
    // An error reply: non-zero exit, the code on stderr.
    let out = run(base(&["--max-tokens", "0", "hello"])).await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_request"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nobody listening: a timeout, non-zero exit.
    let mut args = base(&["--timeout-ms", "700", "hello"]);
    args[3] = "nobody-home".into();
    let t = Instant::now();
    let out = run(args).await.unwrap();
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no reply within"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop().await;
}

#[test]
fn dry_run_prints_the_plan() {
    let out = Command::new(env!("CARGO_BIN_EXE_moe-edge"))
        .args(["serve", "--dry-run", "--device-id", "car-1", "--bundle"])
        .arg(bundle())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("moe-edge/car-1/v1/chat/completions"),
        "{text}"
    );
    assert!(text.contains("host-cpu"), "{text}");
    assert!(text.contains("fixture-moe"), "{text}");
}

/// A streamed request the device hands up (an image: non-text content) to a
/// cloud that streams slowly: the cloud's chunks reach the MQTT app one by
/// one as they arrive, unchanged, then one chunk saying who served it, then
/// the terminator with the cloud's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_stream_passes_through_to_the_mqtt_app() {
    use axum::routing::post;

    const GAP: Duration = Duration::from_millis(150);
    const WORDS: [&str; 5] = ["hello ", "from ", "the ", "slow ", "cloud"];
    // A real HTTP server streaming SSE, one event every GAP.
    let handler = |body: Bytes| async move {
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["stream"], true, "the cascade asked for a stream");
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "cmpl-up", "object": "chat.completion.chunk", "created": 5, "model": "slow-cloud",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        events.extend(
            WORDS
                .iter()
                .map(|w| chunk(json!({"content": w}), Value::Null)),
        );
        events.push(chunk(json!({}), json!("stop")));
        events.push("data: [DONE]\n\n".to_string());
        crate::harness::sse(events, GAP)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cloud = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/v1/chat/completions", post(handler)),
        )
        .await
        .unwrap();
    });

    std::env::set_var("MOE_EDGE_TEST_STREAM_KEY", "sk-stream");
    let text = std::fs::read_to_string(repo().join("boards/host-cpu.toml")).unwrap();
    let text = text.split("[cascade]").next().unwrap().to_string()
        + &format!(
            "[cascade]\ncloud_url = \"http://{cloud}/v1\"\ncloud_model = \"slow\"\ncloud_api_key_env = \"MOE_EDGE_TEST_STREAM_KEY\"\ntimeout_ms = 3000\nretries = 0\n"
        );
    let board = Board::parse(&text, Path::new("stream-board.toml")).unwrap();
    let cascade =
        moe_edge::cascade::Cascade::from_config(&board.cascade, moe_edge::cascade::Tier::Device)
            .unwrap();
    let d = start_daemon(
        board,
        BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        move |c| c.escalate = Some(Arc::new(cascade)),
    )
    .await;
    let mut app = App::new(&d.ready.broker_url).await;
    let body = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what does this sign say?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
        "stream": true, "max_tokens": 16});
    let t0 = Instant::now();
    app.send(&d.device, &body, "img").await;
    let mut msgs = Vec::new();
    loop {
        let (corr, v, t) = app.recv().await;
        assert_eq!(corr, "img");
        let end = is_final(&v);
        msgs.push((v, t - t0));
        if end {
            break;
        }
    }
    let (done, chunks) = msgs.split_last().unwrap();
    assert_eq!(done.0["object"], "chat.completion.done", "{}", done.0);
    assert_eq!(
        done.0["id"], "cmpl-up",
        "the terminator names the upstream stream"
    );
    // 7 upstream chunks (role, 5 words, finish), unchanged, then the x_moe_edge chunk.
    assert_eq!(chunks.len(), 8, "{chunks:?}");
    for (c, _) in &chunks[..7] {
        assert_eq!(c["id"], "cmpl-up", "{c}");
        assert_eq!(c["model"], "slow-cloud", "{c}");
        assert!(c.get("x_moe_edge").is_none(), "{c}");
    }
    let words: Vec<&str> = chunks[1..6]
        .iter()
        .map(|(c, _)| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(words, WORDS);
    assert_eq!(chunks[6].0["choices"][0]["finish_reason"], "stop");
    let x = &chunks[7].0["x_moe_edge"];
    assert_eq!(x["served_by"], "cloud", "{x}");
    assert!(
        x["tried"][0]
            .as_str()
            .unwrap()
            .starts_with("device: non-text"),
        "{x}"
    );
    // As they arrive: the first word long before the stream ended, the words spread out.
    let first = chunks[1].1;
    let last = chunks[6].1;
    assert!(
        last - first >= GAP * 4,
        "chunks reached the app bunched together: first {first:?}, last {last:?}"
    );
    eprintln!("mqtt pass-through: first word after {first:?}, finish after {last:?} (upstream gap {GAP:?})");
    app.assert_quiet(Duration::from_millis(200)).await;
    d.stop().await;
}

/// QoS 1 may deliver a request twice (a broker restart, a retransmission):
/// the same reply topic and correlation data within the dedup window get one
/// answer; another correlation is a new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_request_is_answered_once() {
    let d = embedded_daemon(board(4, 32, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    let body = chat("turn on the lights", 4);
    app.send(&d.device, &body, "once").await;
    app.send(&d.device, &body, "once").await;
    app.send(&d.device, &body, "twice").await;
    let by = app.collect_finals(2).await;
    assert_eq!(by["once"].len(), 1, "{by:?}");
    assert_eq!(by["twice"].len(), 1, "{by:?}");
    app.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(log_lines(&d.device, "duplicate request dropped").len(), 1);
    d.stop().await;
}

// ------------------------------------------------------------- never silence

/// The demo model (it says `<|fallback|>` to what is not for it).
fn demo_engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        Arc::new(
            Engine::load(
                &repo().join("models/assist-moe/bundle"),
                &Board::load("host-cpu").unwrap(),
                Verify::Sizes,
            )
            .unwrap(),
        )
    })
    .clone()
}

fn catalogue_tools() -> Value {
    let text = std::fs::read_to_string(repo().join("models/assist-moe/tools.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["tools"].clone()
}

/// The final message of one exchange (chunks before it are skipped).
async fn final_reply(app: &mut App) -> Value {
    loop {
        let (_, v, _) = app.recv().await;
        if v.get("error").is_some()
            || v["object"] == "chat.completion"
            || v["object"] == "chat.completion.done"
        {
            return v;
        }
    }
}

fn assert_no_route(v: &Value, first_hop: &str, what: &str) {
    assert_eq!(v["error"]["code"], "no_route", "{what}: {v}");
    let tried: Vec<&str> = v["x_moe_edge"]["tried"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no x_moe_edge.tried: {v}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tried.iter().any(|t| t.starts_with(first_hop)),
        "{what}: tried {tried:?} names no `{first_hop}`: {v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(first_hop), "{what}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_when_the_device_cannot_answer_and_nothing_is_above_it() {
    let d = start_daemon(
        board(2, 16, 0.0),
        BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        |c| c.engine = demo_engine(),
    )
    .await;
    let mut app = App::new(&d.ready.broker_url).await;
    // Out of domain: the model says <|fallback|>; no host, no cloud.
    let mut body = chat("ok, what's the history of the Beatles?", 32);
    body["tools"] = catalogue_tools();
    app.send(&d.device, &body, "ood").await;
    let v = final_reply(&mut app).await;
    assert_no_route(&v, "device: fallback marker", "out of domain");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[cascade]"),
        "the message says what to configure: {v}"
    );
    // The same, streamed: the stream ends with the error, not a silent stop.
    body["stream"] = json!(true);
    app.send(&d.device, &body, "ood-stream").await;
    let v = final_reply(&mut app).await;
    assert_no_route(&v, "device: fallback marker", "out of domain, streamed");
    // An image part: only a cloud takes it, and there is none.
    let img = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what does this sign say?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
        "max_tokens": 16});
    app.send(&d.device, &img, "img").await;
    let v = final_reply(&mut app).await;
    assert_no_route(&v, "device: non-text content", "image part");
    // What the device can answer it still answers.
    let mut body = chat("set the volume to 7", 32);
    body["tools"] = catalogue_tools();
    app.send(&d.device, &body, "ok").await;
    let v = final_reply(&mut app).await;
    assert_eq!(v["object"], "chat.completion", "{v}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_when_the_host_is_down_and_there_is_no_cloud() {
    // A host URL nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(repo().join("boards/host-cpu.toml")).unwrap();
    let text = text.split("[cascade]").next().unwrap().to_string()
        + &format!("[cascade]\nhost_url = \"http://127.0.0.1:{port}/v1\"\ntimeout_ms = 2000\nretries = 0\n");
    let board = Board::parse(&text, Path::new("host-down-board.toml")).unwrap();
    let cascade =
        moe_edge::cascade::Cascade::from_config(&board.cascade, moe_edge::cascade::Tier::Device)
            .unwrap();
    let d = start_daemon(
        board,
        BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        move |c| {
            c.engine = demo_engine();
            c.escalate = Some(Arc::new(cascade));
        },
    )
    .await;
    let mut app = App::new(&d.ready.broker_url).await;
    let mut body = chat("ok, what's the history of the Beatles?", 32);
    body["tools"] = catalogue_tools();
    app.send(&d.device, &body, "ood").await;
    let v = final_reply(&mut app).await;
    assert_no_route(&v, "host", "host down, no cloud");
    d.stop().await;
}

/// Two apps repeating their own long system prompt: from each app's second
/// request on, the reply says how many prompt tokens came from the prefix
/// cache (OpenAI's `usage.prompt_tokens_details.cached_tokens` and
/// `x_moe_edge.cached_prompt_tokens`), the greedy reply is the one a cold
/// prompt gets, and the status reports the hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_system_prompts_reuse_the_prefix_cache() {
    let d = embedded_daemon(board(4, 32, 0.0)).await;
    let mut app = App::new(&d.ready.broker_url).await;
    let system = |a: usize| {
        format!("You are app {a}. ")
            + &"Answer in one short sentence and confirm every action. ".repeat(6)
    };
    let req = |a: usize, text: &str| {
        json!({"messages": [{"role": "system", "content": system(a)}, {"role": "user", "content": text}],
               "max_tokens": 6})
    };
    let mut replies = Vec::new();
    for (i, (a, text)) in [
        (0, "lights on"),
        (1, "lights on"),
        (0, "fan to 3"),
        (1, "fan to 3"),
        (0, "lights on"),
    ]
    .into_iter()
    .enumerate()
    {
        app.send(&d.device, &req(a, text), &format!("r{i}")).await;
        let (corr, v, _) = app.recv().await;
        assert_eq!(corr, format!("r{i}"));
        assert_eq!(v["object"], "chat.completion", "{v}");
        replies.push(v);
    }
    let cached = |v: &Value| {
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(cached(&replies[0]), 0, "{}", replies[0]);
    assert_eq!(
        cached(&replies[1]),
        0,
        "another app's prompt shares nothing"
    );
    for v in &replies[2..] {
        let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
        let c = cached(v);
        assert!(c >= 64 && c < prompt, "{v}");
        assert_eq!(v["x_moe_edge"]["cached_prompt_tokens"].as_u64(), Some(c));
    }
    // the same prompt again, now mostly cached, gives the same greedy reply
    assert_eq!(replies[4]["choices"], replies[0]["choices"]);
    let mut watcher = App::status_watcher(&d).await;
    // the retained status, then newer ones as the figures move
    let s = loop {
        let m = watcher.inbox.recv_timeout(WAIT).await.unwrap().unwrap();
        let s: Value = serde_json::from_slice(&m.payload).unwrap();
        if s["prefix_cache"]["lookups"].as_u64().unwrap() >= 5 {
            break s;
        }
    };
    assert!(s["prefix_cache"]["hits"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["prefix_hit_rate"].as_f64().unwrap() > 0.3, "{s}");
    d.stop().await;
}
