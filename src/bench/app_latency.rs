//! What an app sees: request-to-reply latency measured by a third-party
//! MQTT client (paho-mqtt, driven through `paho_probe.py`), against a
//! `moe-edge serve` child process on the embedded broker and on Mosquitto,
//! next to the daemon's own `timings_ms.total`.
//!
//! Paths per broker: a raw echo through the broker (no daemon), an error
//! reply (no model run), a final reply, and a stream (first chunk and final
//! message); MQTT 5 (Response Topic + Correlation Data) and MQTT 3.1.1
//! (`reply_topic` + `id` in the body). The probe sends one request at a time
//! on one connection, as an app does, `gap` apart; paho keeps Nagle's
//! algorithm on, as most clients do, so any delayed-ACK stall in the path
//! shows. One row sends requests 20 ms apart: a client with Nagle on then
//! waits for the broker's delayed ACK of its last PUBACK before its next
//! PUBLISH leaves (the embedded broker acknowledges at once; Mosquitto does
//! not).
//!
//! Owns: starting the brokers and daemons for the rows and reading the
//! probe's figures. Does not own the daemon or the brokers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::{percentile, BenchError};
use crate::wire::topics::{self, DeviceId};

const PROBE: &str = include_str!("paho_probe.py");

/// One measured path.
#[derive(Debug, Clone, Serialize)]
pub struct AppRow {
    pub broker: String,
    pub path: String,
    pub mqtt: String,
    pub n: usize,
    pub lost: usize,
    /// First reply message (the first chunk of a stream), app-side, ms.
    pub first_p50_ms: f64,
    pub first_p99_ms: f64,
    /// Final reply message, app-side, ms.
    pub final_p50_ms: f64,
    pub final_p99_ms: f64,
    /// The daemon's own `x_moe_edge.timings_ms.total`, ms (none for echo and errors).
    pub engine_p50_ms: Option<f64>,
    pub error_codes: Value,
}

/// Everything the app-side rows need from the caller.
pub struct AppOptions<'a> {
    pub exe: &'a Path,
    pub bundle: &'a Path,
    pub board: &'a str,
    pub requests: usize,
    pub python: Option<PathBuf>,
    pub mosquitto: Option<PathBuf>,
    /// Pause between one reply and the next request.
    pub gap: Duration,
}

fn other(e: impl std::fmt::Display) -> BenchError {
    BenchError::Other(e.to_string())
}

/// A free port whose successor is free too (the embedded broker's 3.1.1
/// listener is port + 1).
pub(super) fn free_port() -> Result<u16, BenchError> {
    crate::transport::broker::free_port_pair([127, 0, 0, 1].into())
        .map(|a| a.port())
        .map_err(other)
}

/// A Python that imports paho-mqtt: `--python`, `$MOE_EDGE_PYTHON`, `python3`.
pub fn find_python(given: Option<PathBuf>) -> Option<PathBuf> {
    let candidates = given
        .into_iter()
        .chain(std::env::var_os("MOE_EDGE_PYTHON").map(PathBuf::from))
        .chain(Some(PathBuf::from("python3")));
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import paho.mqtt.client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `mosquitto`: `--mosquitto`, else on PATH or in /usr/sbin.
pub fn find_mosquitto(given: Option<PathBuf>) -> Option<PathBuf> {
    if given.is_some() {
        return given;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d: PathBuf| d.join("mosquitto"))
        .find(|p| p.exists())
}

/// A child process killed on drop.
pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, within: Duration) -> Result<(), BenchError> {
    let end = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            return Err(BenchError::Other(format!("nothing listens on port {port}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_mosquitto(bin: &Path, port: u16, dir: &Path, nodelay: bool) -> Result<Proc, BenchError> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let conf = dir.join("mosquitto.conf");
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{}{}",
        if root { "user root\n" } else { "" },
        if nodelay {
            "set_tcp_nodelay true\n"
        } else {
            ""
        }
    );
    std::fs::write(&conf, text).map_err(other)?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Other(format!("{}: {e}", bin.display())))?;
    let p = Proc(child);
    wait_port(port, Duration::from_secs(10))?;
    Ok(p)
}

/// A `moe-edge serve` child process (`exe`) for `device`: on its embedded
/// broker listening on `port`, or on the broker at `port` when `external`.
pub(super) fn start_daemon(
    exe: &Path,
    bundle: &Path,
    board: &str,
    device: &str,
    port: u16,
    external: bool,
) -> Result<Proc, BenchError> {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--device-id", device, "--board", board, "--bundle"])
        .arg(bundle);
    if external {
        cmd.args(["--broker", &format!("mqtt://127.0.0.1:{port}")]);
    } else {
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Other(format!("spawning the daemon: {e}")))?;
    Ok(Proc(child))
}

fn probe(py: &Path, script: &Path, cfg: &Value) -> Result<Value, BenchError> {
    let out = Command::new(py)
        .arg(script)
        .arg(cfg.to_string())
        .output()
        .map_err(other)?;
    if !out.status.success() {
        return Err(BenchError::Other(format!(
            "paho probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Other(format!("paho probe output: {e}")))
}

fn row(broker: &str, path: &str, mqtt: &str, v: &Value) -> AppRow {
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (first, fin, eng) = (nums("first_ms"), nums("final_ms"), nums("engine_ms"));
    AppRow {
        broker: broker.into(),
        path: path.into(),
        mqtt: mqtt.into(),
        n: fin.len(),
        lost: v["lost"].as_u64().unwrap_or(0) as usize,
        first_p50_ms: percentile(&first, 50.0),
        first_p99_ms: percentile(&first, 99.0),
        final_p50_ms: percentile(&fin, 50.0),
        final_p99_ms: percentile(&fin, 99.0),
        engine_p50_ms: (!eng.is_empty()).then(|| percentile(&eng, 50.0)),
        error_codes: v["errors"].clone(),
    }
}

/// The demo catalogue's tools (`models/assist-moe/tools.json`, from the
/// working directory), as apps send them.
pub fn catalogue_tools() -> Option<Value> {
    let tools = crate::eval::load_tools(Path::new("models/assist-moe/tools.json")).ok()?;
    (!tools.is_empty())
        .then(|| serde_json::to_value(tools).ok())
        .flatten()
}

/// Every path on every broker found; `Err` only for a broken set-up.
pub fn run(o: &AppOptions) -> Result<(Vec<AppRow>, Vec<String>), BenchError> {
    let mut notes = Vec::new();
    let Some(py) = find_python(o.python.clone()) else {
        notes.push("no Python with paho-mqtt (give --python or set MOE_EDGE_PYTHON): app-side rows skipped".into());
        return Ok((Vec::new(), notes));
    };
    let dir = tempfile::tempdir().map_err(other)?;
    let script = dir.path().join("paho_probe.py");
    std::fs::write(&script, PROBE).map_err(other)?;
    // Mosquitto as deploy/mosquitto configures it (set_tcp_nodelay) and as
    // it comes (Nagle on its side too).
    let mut brokers = vec![("embedded", None, false)];
    match find_mosquitto(o.mosquitto.clone()) {
        Some(m) => {
            brokers.push(("mosquitto (set_tcp_nodelay)", Some(m.clone()), true));
            brokers.push(("mosquitto (stock config)", Some(m), false));
        }
        None => notes.push("no mosquitto binary: Mosquitto rows skipped".into()),
    }
    let tools = catalogue_tools();
    let mut rows = Vec::new();
    for (i, (name, mosq, nodelay)) in brokers.into_iter().enumerate() {
        let port = free_port()?;
        let _broker = match &mosq {
            Some(bin) => Some(start_mosquitto(bin, port, dir.path(), nodelay)?),
            None => None,
        };
        let device = format!("bench-app-{i}");
        let _daemon = start_daemon(o.exe, o.bundle, o.board, &device, port, mosq.is_some())?;
        wait_port(port, Duration::from_secs(60))?;
        let topic = topics::chat_requests(&DeviceId::new(device.clone()).map_err(other)?);
        let v4_port = if mosq.is_some() { port } else { port + 1 };
        let count = o.requests.max(1);
        let base = |proto: u8| {
            json!({"port": if proto == 5 { port } else { v4_port }, "proto": proto,
                   "count": count, "warmup": 3, "topic": topic, "timeout_s": 30,
                   "gap_s": o.gap.as_secs_f64()})
        };
        let with = |proto: u8, extra: Value| {
            let mut c = base(proto);
            for (k, v) in extra.as_object().expect("an object") {
                c[k] = v.clone();
            }
            c
        };
        let mut ask = json!({"messages": [{"role": "user", "content": "set the volume to 7"}],
                             "max_tokens": 32});
        if let Some(t) = &tools {
            ask["tools"] = t.clone();
        }
        let mut stream = ask.clone();
        stream["stream"] = json!(true);
        // The daemon answers once it has subscribed: the first request waits for it.
        let ready = with(
            5,
            json!({"mode": "daemon", "body": ask, "count": 1, "warmup": 0, "timeout_s": 60}),
        );
        probe(&py, &script, &ready)?;
        let cases = [
            (
                "echo through the broker (no daemon)",
                5,
                json!({"mode": "echo"}),
            ),
            (
                "echo through the broker (no daemon)",
                4,
                json!({"mode": "echo"}),
            ),
            (
                "error reply (`{not json`)",
                5,
                json!({"mode": "daemon", "body": null, "raw": "{not json"}),
            ),
            (
                "error reply (`messages` not an array)",
                4,
                json!({"mode": "daemon", "body": {"messages": 5}}),
            ),
            (
                "final reply (\"set the volume to 7\")",
                5,
                json!({"mode": "daemon", "body": ask}),
            ),
            (
                "final reply (\"set the volume to 7\")",
                4,
                json!({"mode": "daemon", "body": ask}),
            ),
            ("stream", 5, json!({"mode": "daemon", "body": stream})),
            ("stream", 4, json!({"mode": "daemon", "body": stream})),
            (
                "final reply, requests 20 ms apart",
                5,
                json!({"mode": "daemon", "body": ask, "gap_s": 0.02}),
            ),
        ];
        for (path, proto, extra) in cases {
            let v = probe(&py, &script, &with(proto, extra))?;
            let mqtt = if proto == 5 { "5" } else { "3.1.1" };
            rows.push(row(name, path, mqtt, &v));
        }
    }
    Ok((rows, notes))
}

/// The app-side table.
pub fn table(rows: &[AppRow]) -> String {
    let mut s = String::from(
        "| broker | path | MQTT | n | lost | first message p50 / p99 ms | final reply p50 / p99 ms | daemon timings_ms.total p50 | app − daemon p50 ms |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (eng, gap) = match r.engine_p50_ms {
            Some(e) => (format!("{e:.2}"), format!("{:.2}", r.final_p50_ms - e)),
            None => ("-".into(), "-".into()),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} |\n",
            r.broker,
            r.path,
            r.mqtt,
            r.n,
            r.lost,
            r.first_p50_ms,
            r.first_p99_ms,
            r.final_p50_ms,
            r.final_p99_ms,
            eng,
            gap
        );
    }
    s
}
