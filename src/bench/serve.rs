//! Daemon benchmark. First what an app sees (`app_latency`: a third-party
//! client against the daemon on the embedded broker and on Mosquitto, beside
//! the daemon's own timings). Then N concurrent MQTT 5 clients of ours
//! against a `moe-edge serve` child process on its embedded broker: requests/s,
//! p50/p99 latency, how many were refused `overloaded`, and the RSS after a
//! nominal phase and after a 10× overload phase (admission is bounded, so RSS
//! must stay flat).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use std::path::Path;

use super::{percentile, BenchError};
use crate::config::Board;
use crate::transport::rpc::{Rpc, RpcConfig};
use crate::transport::{client, MqttConfig};
use crate::wire::topics::{self, DeviceId};

/// `moe-edge bench serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeBenchOptions {
    /// Concurrent clients of the load phase (then 10x as many).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Requests per client in the load phases.
    #[arg(long, default_value_t = 10)]
    pub requests: usize,
    /// Token cap of each load-phase request (a tool call takes about 20).
    #[arg(long, default_value_t = 48)]
    pub max_tokens: u64,
    /// Apps of the prefix phase, each repeating its own system prompt and
    /// tools with different commands (0: no such phase).
    #[arg(long, default_value_t = 4)]
    pub apps: usize,
    /// Requests per path measured with the third-party client (0: none).
    #[arg(long, default_value_t = 30)]
    pub app_requests: usize,
    /// Python with paho-mqtt for the app-side rows (default: $MOE_EDGE_PYTHON, else python3).
    #[arg(long)]
    pub python: Option<std::path::PathBuf>,
    /// Mosquitto binary for the Mosquitto rows (default: `mosquitto` on PATH or /usr/sbin).
    #[arg(long)]
    pub mosquitto: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: String,
    pub clients: usize,
    pub requests: usize,
    pub ok: usize,
    /// `no_route`: the device ran the prompt and would hand it up (no hop
    /// above on this daemon); counted in the latencies.
    pub handed_up: usize,
    pub overloaded: usize,
    pub other_errors: usize,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The daemon's RSS after the phase, and its peak so far.
    pub rss_mb_after: f64,
    pub peak_rss_mb: f64,
    /// From the replies: prompt tokens, of them reused from the prefix
    /// cache, and the daemon's prefill time, p50.
    pub prompt_tokens_p50: f64,
    pub cached_tokens_p50: f64,
    pub prefill_ms_p50: f64,
    /// Reused prompt tokens over all prompt tokens the daemon looked up in
    /// the phase (its status, before and after).
    pub prefix_hit_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServeBenchReport {
    pub board: String,
    pub max_concurrent: usize,
    pub queue_depth: usize,
    /// The daemon's RSS before any request.
    pub idle_rss_mb: f64,
    pub phases: Vec<PhaseReport>,
    /// App-side latency per broker and path (third-party client).
    pub app: Vec<super::app_latency::AppRow>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
}

async fn phase(
    name: &str,
    url: &str,
    topic: &str,
    clients: usize,
    per_client: usize,
    body: Body,
) -> Result<PhaseReport, BenchError> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let cfg = MqttConfig::from_url(url, format!("bench-{name}-{c}"))
            .map_err(|e| BenchError::Other(e.to_string()))?;
        let (handle, _inbox, driver) =
            client::connect(&cfg).map_err(|e| BenchError::Other(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let drv = tokio::spawn(driver.run(async move {
            let _ = stop_rx.await;
        }));
        let topic = topic.to_string();
        let body = body.clone();
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let id = topics::ClientId::new(format!("bench-{name}-{c}")).expect("valid client id");
            let _ = handle.wait_connected(Duration::from_secs(10)).await;
            let rpc = match Rpc::new(&handle, RpcConfig::new(topics::client_reply(&id))).await {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("bench client={c} rpc setup failed error={e}");
                    let _ = stop_tx.send(());
                    return (Vec::new(), Vec::new(), 0, 0, per_client, 0);
                }
            };
            let mut lat = Vec::new();
            let mut usage = Vec::new();
            let (mut ok, mut over, mut other, mut handed) = (0, 0, 0, 0);
            for r in 0..per_client {
                let t = Instant::now();
                match rpc
                    .call(&topic, body(c, r), Instant::now() + Duration::from_secs(60))
                    .await
                {
                    Ok(reply) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&reply).unwrap_or_default();
                        if v["object"] == "chat.completion" {
                            ok += 1;
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                            let num = |x: &serde_json::Value| x.as_f64().unwrap_or(0.0);
                            usage.push([
                                num(&v["usage"]["prompt_tokens"]),
                                num(&v["usage"]["prompt_tokens_details"]["cached_tokens"]),
                                num(&v["x_moe_edge"]["timings_ms"]["prefill"]),
                            ]);
                        } else if v["error"]["code"] == "overloaded" {
                            over += 1;
                        } else if v["error"]["code"] == "no_route" {
                            // the device ran the prompt and would hand it up
                            handed += 1;
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        } else {
                            other += 1;
                        }
                    }
                    Err(_) => other += 1,
                }
            }
            let _ = stop_tx.send(());
            let _ = drv.await;
            (lat, usage, ok, over, other, handed)
        }));
    }
    let (mut lat, mut usage, mut ok, mut over, mut other, mut handed) =
        (Vec::new(), Vec::new(), 0, 0, 0, 0);
    for t in tasks {
        let (l, u, o, v, e, h) = t.await.map_err(|e| BenchError::Other(e.to_string()))?;
        handed += h;
        lat.extend(l);
        usage.extend(u);
        ok += o;
        over += v;
        other += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let col = |i: usize| usage.iter().map(|u: &[f64; 3]| u[i]).collect::<Vec<f64>>();
    Ok(PhaseReport {
        phase: name.to_string(),
        clients,
        requests: clients * per_client,
        ok,
        handed_up: handed,
        overloaded: over,
        other_errors: other,
        requests_per_s: (ok + handed) as f64 / secs,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        rss_mb_after: 0.0,
        peak_rss_mb: 0.0,
        prompt_tokens_p50: percentile(&col(0), 50.0),
        cached_tokens_p50: percentile(&col(1), 50.0),
        prefill_ms_p50: percentile(&col(2), 50.0),
        prefix_hit_rate: 0.0,
    })
}

/// The daemon's prefix-cache figures from its retained status (after the
/// status interval, so they are current).
async fn prefix_figures(url: &str, device: &str) -> Result<(f64, f64), BenchError> {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let other = |e: &dyn std::fmt::Display| BenchError::Other(e.to_string());
    let cfg = MqttConfig::from_url(url, format!("bench-status-{}", std::process::id()))
        .map_err(|e| other(&e))?;
    let (handle, mut inbox, driver) = client::connect(&cfg).map_err(|e| other(&e))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drv = tokio::spawn(driver.run(async move {
        let _ = stop_rx.await;
    }));
    let _ = handle.wait_connected(Duration::from_secs(10)).await;
    handle
        .subscribe(
            &format!("moe-edge/{device}/status"),
            crate::transport::QoS::AtLeastOnce,
        )
        .await
        .map_err(|e| other(&e))?;
    let m = inbox
        .recv_timeout(Duration::from_secs(10))
        .await
        .map_err(|e| other(&e))?
        .ok_or_else(|| other(&"no status"))?;
    let _ = stop_tx.send(());
    let _ = drv.await;
    let v: serde_json::Value = serde_json::from_slice(&m.payload).map_err(|e| other(&e))?;
    let num = |k: &str| v["prefix_cache"][k].as_f64().unwrap_or(0.0);
    Ok((num("prompt_tokens"), num("reused_tokens")))
}

/// The phase's share of prompt tokens reused, from the status before and after.
fn hit_rate(before: (f64, f64), after: (f64, f64)) -> f64 {
    (after.1 - before.1) / (after.0 - before.0).max(1.0)
}

/// The board's text with the prefix cache off.
fn board_without_prefix_cache(board: &Board) -> Result<String, BenchError> {
    let text = match board.source.strip_prefix("builtin:") {
        Some(name) => crate::config::BUILTIN_BOARDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| BenchError::Other(format!("no built-in board {name}")))?,
        None => std::fs::read_to_string(&board.source)
            .map_err(|e| BenchError::Other(format!("{}: {e}", board.source)))?,
    };
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("prefix_cache_mb"))
        .map(str::to_string)
        .collect();
    match out.iter().position(|l| l.trim() == "[kv]") {
        Some(i) => out.insert(i + 1, "prefix_cache_mb = 0".into()),
        None => out.extend(["[kv]".into(), "prefix_cache_mb = 0".into()]),
    }
    Ok(out.join("\n") + "\n")
}

/// The apps phase again against a daemon whose prefix cache is off.
fn apps_without_prefix_cache(
    exe: &Path,
    bundle: &Path,
    board: &Board,
    o: &ServeBenchOptions,
) -> Result<PhaseReport, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Other(e.to_string()))?;
    let file = dir
        .path()
        .join(format!("{}-no-prefix-cache.toml", board.name));
    std::fs::write(&file, board_without_prefix_cache(board)?)
        .map_err(|e| BenchError::Other(e.to_string()))?;
    let port = super::app_latency::free_port()?;
    let daemon = super::app_latency::start_daemon(
        exe,
        bundle,
        &file.display().to_string(),
        "bench",
        port,
        false,
    )?;
    let pid = daemon.0.id();
    let rt = crate::process::runtime(2).map_err(|e| BenchError::Other(e.to_string()))?;
    let r = rt.block_on(async {
        wait_listening(port).await?;
        let topic = topics::chat_requests(&DeviceId::new("bench").expect("valid device id"));
        let url = format!("mqtt://127.0.0.1:{port}");
        let before = prefix_figures(&url, "bench").await?;
        let mut p = phase(
            "apps-own-prefix, prefix cache off",
            &url,
            &topic,
            o.apps,
            o.requests,
            apps_body(o.max_tokens),
        )
        .await?;
        p.prefix_hit_rate = hit_rate(before, prefix_figures(&url, "bench").await?);
        let (rss, hwm) = proc_rss_mb(pid);
        p.rss_mb_after = rss;
        p.peak_rss_mb = hwm;
        Ok(p)
    });
    drop(daemon);
    r
}

async fn wait_listening(port: u16) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err(BenchError::Other("daemon not listening in 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the daemon subscribes right after its broker accepts connections
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// App `a`'s `r`-th request: its system prompt, a command, the catalogue.
fn apps_body(max_tokens: u64) -> Body {
    let tools = super::app_latency::catalogue_tools();
    Arc::new(move |a, r| {
        let cmd = super::prefix::COMMANDS[(a + r) % super::prefix::COMMANDS.len()];
        let mut req = serde_json::json!({
            "messages": [
                {"role": "system", "content": app_system(a)},
                {"role": "user", "content": cmd},
            ],
            "max_tokens": max_tokens,
        });
        if let Some(t) = &tools {
            req["tools"] = t.clone();
        }
        serde_json::to_vec(&req).expect("body serialises")
    })
}

/// The request body of client `c`'s `r`-th request.
type Body = Arc<dyn Fn(usize, usize) -> Vec<u8> + Send + Sync>;

/// App `a`'s system prompt: its own product, rules and vocabulary, a few
/// hundred tokens (the demo's context is 512), the same in each of its requests.
fn app_system(a: usize) -> String {
    let products = [
        "cockpit assistant of a family car",
        "voice assistant of smart glasses",
        "navigation companion of a delivery van",
        "comfort assistant of a rear-seat cabin",
    ];
    let mut s = format!("You are the {}. ", products[a % products.len()]);
    for i in 0..4 {
        s += &format!("Rule {i}: answer in one short sentence or one tool call, never both; confirm actions that move parts of the vehicle; prefer the driver's zone unless told otherwise (app {a}). ");
    }
    s
}

/// VmRSS and VmHWM of another process, in MB.
fn proc_rss_mb(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| -> f64 {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Nominal load (`clients`), then 10× as many clients, against a `moe-edge
/// serve` child process (so its RSS is the daemon's alone).
pub fn run(
    bundle: &Path,
    board: &Board,
    o: &ServeBenchOptions,
) -> Result<ServeBenchReport, BenchError> {
    let port = super::app_latency::free_port()?;
    let exe = std::env::current_exe().map_err(|e| BenchError::Other(e.to_string()))?;
    let daemon = super::app_latency::start_daemon(&exe, bundle, &board.name, "bench", port, false)?;
    let pid = daemon.0.id();
    let rt = crate::process::runtime(2).map_err(|e| BenchError::Other(e.to_string()))?;
    let result = rt.block_on(async {
        let url = format!("mqtt://127.0.0.1:{port}");
        wait_listening(port).await?;
        let topic = topics::chat_requests(&DeviceId::new("bench").expect("valid device id"));
        // With the catalogue's tools, as an app sends it (without tools the
        // demo model hands the request up: `no_route` with no hop above).
        let mut req = serde_json::json!({
            "messages": [{"role": "user", "content": "set the fan speed to 3"}],
            "max_tokens": o.max_tokens,
        });
        if let Some(tools) = super::app_latency::catalogue_tools() {
            req["tools"] = tools;
        }
        let fixed = serde_json::to_vec(&req).expect("body serialises");
        let body: Body = Arc::new(move |_, _| fixed.clone());
        let apps = apps_body(o.max_tokens);
        let (idle_rss, _) = proc_rss_mb(pid);
        let mut phases = Vec::new();
        let mut plan = vec![
            ("nominal", o.clients, body.clone()),
            ("overload-10x", o.clients * 10, body),
        ];
        if o.apps > 0 {
            plan.push(("apps-own-prefix", o.apps, apps));
        }
        for (name, n, body) in plan {
            let before = prefix_figures(&url, "bench").await?;
            let mut p = phase(name, &url, &topic, n, o.requests, body).await?;
            p.prefix_hit_rate = hit_rate(before, prefix_figures(&url, "bench").await?);
            let (rss, hwm) = proc_rss_mb(pid);
            p.rss_mb_after = rss;
            p.peak_rss_mb = hwm;
            phases.push(p);
        }
        Ok::<_, BenchError>((idle_rss, phases))
    });
    drop(daemon);
    let (idle_rss_mb, mut phases) = result?;
    if o.apps > 0 {
        phases.push(apps_without_prefix_cache(&exe, bundle, board, o)?);
    }
    let (app, notes) = if o.app_requests > 0 {
        super::app_latency::run(&super::app_latency::AppOptions {
            exe: &exe,
            bundle,
            board: &board.name,
            requests: o.app_requests,
            python: o.python.clone(),
            mosquitto: o.mosquitto.clone(),
            gap: Duration::from_millis(100),
        })?
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(ServeBenchReport {
        board: board.name.clone(),
        max_concurrent: board.limits.max_concurrent,
        queue_depth: board.limits.queue_depth,
        idle_rss_mb,
        phases,
        app,
        notes,
    })
}

impl ServeBenchReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        if !self.app.is_empty() {
            s += "What an app sees (paho-mqtt, one request at a time 100 ms apart, QoS 1):\n";
            s += &super::app_latency::table(&self.app);
            s += "\n";
        }
        for n in &self.notes {
            s += &format!("note: {n}\n");
        }
        s += &format!(
            "board {} (max_concurrent {}, queue_depth {}); daemon RSS idle {:.1} MB\n| phase | clients | requests | ok | handed up | overloaded | other errors | req/s | p50 ms | p99 ms | prompt tokens p50 | reused p50 | prefix hit rate | daemon prefill ms p50 | daemon RSS after / peak (MB) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.board, self.max_concurrent, self.queue_depth, self.idle_rss_mb
        );
        for p in &self.phases {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} % | {:.1} | {:.1} / {:.1} |\n",
                p.phase,
                p.clients,
                p.requests,
                p.ok,
                p.handed_up,
                p.overloaded,
                p.other_errors,
                p.requests_per_s,
                p.p50_ms,
                p.p99_ms,
                p.prompt_tokens_p50,
                p.cached_tokens_p50,
                p.prefix_hit_rate * 100.0,
                p.prefill_ms_p50,
                p.rss_mb_after,
                p.peak_rss_mb
            );
        }
        s
    }
}
