//! `moe-edge bench offload`: what remote experts cost.
//!
//! Measures, on one broker (the embedded rumqttd unless `--broker`):
//! - the remote-expert round trip of a decode step (1 token, top-k pairs,
//!   f32 hidden states) against a raw MQTT 5 request/response of the same
//!   request and reply sizes (an echo client, no expert math);
//! - decode tokens/s with 100/75/50/25 % of the experts on the device and the
//!   rest on an expert server (in this process, own MQTT connection), with
//!   and without an added per-reply delay (the server's `delay`), plus two
//!   avoidance rows at the smallest fraction: no host (substitute only) and
//!   skip-below (substitute when the missing router weight is small).
//!
//! Owns the measurement only: the server is `host::experts`, the client
//! `experts::remote`, the pruning `plan`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{percentile, BenchError};
use crate::bundle::Verify;
use crate::config::{Board, OnMiss};
use crate::engine::model::StepTimes;
use crate::engine::sampler::argmax;
use crate::engine::{Engine, ExpertCounts};
use crate::experts::dispatch::RemoteExperts;
use crate::experts::remote::{MqttRemote, RemoteConfig};
use crate::host::experts::{ExpertServer, ExpertServerConfig};
use crate::transport::{self, Broker, BrokerConfig, MqttConfig, PublishOptions, Rpc, RpcConfig};
use crate::wire::DeviceId;

#[derive(Debug, Clone)]
pub struct OffloadBenchOptions {
    pub bundle: PathBuf,
    /// External broker URL; `None` starts the embedded one.
    pub broker: Option<String>,
    pub fractions: Vec<f64>,
    /// Added per-reply delays to measure (0 = none).
    pub delays_ms: Vec<u64>,
    pub prompts: usize,
    pub gen_tokens: usize,
    pub rtt_calls: usize,
    pub timeout: Duration,
    /// The skip-below row's threshold.
    pub skip_below: f32,
    /// Calibration requests for the device plans.
    pub calib: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RttRow {
    pub what: String,
    pub request_bytes: usize,
    pub reply_bytes: usize,
    pub calls: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeRow {
    pub experts_on_device_pct: f64,
    pub mode: String,
    pub delay_ms: u64,
    pub decode_tok_s: f64,
    pub ms_per_token: f64,
    pub remote_calls_per_token: f64,
    pub remote_wait_ms_per_token: f64,
    pub counts: ExpertCounts,
    pub timeouts: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OffloadBenchReport {
    pub model_id: String,
    pub broker: String,
    pub gen_tokens: usize,
    pub prompts: usize,
    pub rtt: Vec<RttRow>,
    pub decode: Vec<DecodeRow>,
}

impl OffloadBenchReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "remote-expert round trip vs raw MQTT (broker {})\n{:<28} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9}\n",
            self.broker, "what", "req B", "reply B", "calls", "p50 us", "p99 us", "mean us"
        );
        for r in &self.rtt {
            s += &format!(
                "{:<28} {:>9} {:>9} {:>7} {:>9.0} {:>9.0} {:>9.0}\n",
                r.what, r.request_bytes, r.reply_bytes, r.calls, r.p50_us, r.p99_us, r.mean_us
            );
        }
        s += &format!(
            "\ndecode, {} prompts x {} tokens\n{:>8} {:<18} {:>6} {:>9} {:>8} {:>11} {:>11} {:>9} {:>9} {:>9}\n",
            self.prompts, self.gen_tokens, "device", "mode", "delay", "tok/s", "ms/tok", "calls/tok", "wait ms/tok", "remote", "subst", "timeouts"
        );
        for r in &self.decode {
            s += &format!(
                "{:>7.0}% {:<18} {:>4}ms {:>9.1} {:>8.2} {:>11.2} {:>11.2} {:>9} {:>9} {:>9}\n",
                r.experts_on_device_pct,
                r.mode,
                r.delay_ms,
                r.decode_tok_s,
                r.ms_per_token,
                r.remote_calls_per_token,
                r.remote_wait_ms_per_token,
                r.counts.remote,
                r.counts.substituted,
                r.timeouts
            );
        }
        s
    }
}

fn other(e: impl std::fmt::Display) -> BenchError {
    BenchError::Other(e.to_string())
}

const PROMPTS: &[&str] = &[
    "<|im_start|>user\nset the temperature to 22 degrees on the driver side<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nplay some jazz by Miles Davis please<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nnavigate to the nearest charging station<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\n明日の天気を教えて<|im_end|>\n<|im_start|>assistant\n",
];

/// Writes device bundles keeping `fraction` of the experts (plan from `calib`).
fn device_bundles(
    full: &Engine,
    calib: &Path,
    fractions: &[f64],
    dir: &Path,
) -> Result<Vec<(f64, PathBuf)>, BenchError> {
    let text = std::fs::read_to_string(calib).map_err(other)?;
    let mut prompts = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(60) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(other)?;
        let req = crate::openai::ChatRequest::from_value(
            serde_json::json!({ "messages": v["messages"] }),
        )
        .map_err(|e| other(e.message))?;
        prompts.push(
            crate::chat::template::render_chat(
                &req.text_messages(),
                full.bundle.manifest.chat_template.as_deref(),
            )
            .map_err(other)?,
        );
    }
    let stats = crate::plan::collect(full, &prompts, 8)?;
    let a = &full.model.manifest.architecture;
    let total = a.num_layers * a.num_experts;
    let mut out = Vec::new();
    for &f in fractions {
        if f >= 1.0 {
            out.push((f, full.bundle.dir.clone()));
            continue;
        }
        let slots = ((f * total as f64).round() as usize).max(a.num_layers * a.top_k);
        let sel = crate::plan::select(&stats, slots, a.top_k);
        let path = dir.join(format!("dev{}", (f * 100.0).round() as u32));
        crate::plan::device_bundle::write_device_bundle(
            &full.bundle,
            &sel.per_layer,
            None,
            &path,
            true,
        )
        .map_err(other)?;
        out.push((f, path));
    }
    Ok(out)
}

/// Greedy decode of `gen` tokens after each prompt; returns (tokens, seconds, counts, wait us).
fn decode(
    engine: &Engine,
    prompts: &[Vec<u32>],
    gen: usize,
) -> Result<(usize, f64, ExpertCounts, u64), BenchError> {
    let m = &engine.model;
    let mut counts = ExpertCounts::default();
    let (mut tokens, mut secs, mut wait) = (0, 0.0, 0);
    for ids in prompts {
        let mut kv = m.new_kv();
        let mut times = StepTimes::default();
        let mut c = ExpertCounts::default();
        let l = m.forward(&mut kv, ids, false, &mut c, &mut times, None)?;
        let mut next = argmax(l.as_f32().unwrap_or(&[0.0]));
        let mut times = StepTimes::default();
        let t = Instant::now();
        for _ in 0..gen {
            let l = m.forward(&mut kv, &[next], false, &mut counts, &mut times, None)?;
            next = argmax(l.as_f32().unwrap_or(&[0.0]));
            tokens += 1;
        }
        secs += t.elapsed().as_secs_f64();
        wait += times.remote_wait_us;
    }
    Ok((tokens, secs, counts, wait))
}

pub fn run(board: &Board, o: &OffloadBenchOptions) -> Result<OffloadBenchReport, BenchError> {
    let rt = crate::process::runtime(2).map_err(other)?;
    let _embedded;
    let url = match &o.broker {
        Some(u) => u.clone(),
        None => {
            let b =
                Broker::start(BrokerConfig::new("127.0.0.1:0".parse().unwrap())).map_err(other)?;
            let u = b.url();
            _embedded = b;
            u
        }
    };
    let mut full_board = board.all_resident();
    full_board.offload.enabled = false;
    let full = Engine::load(&o.bundle, &full_board, Verify::Sizes)?;
    let model_id = full.model_id().to_string();
    let tmp = tempfile::tempdir().map_err(other)?;
    let mut fractions = o.fractions.clone();
    fractions.sort_by(|a, b| b.total_cmp(a));
    let bundles = device_bundles(&full, &o.calib, &fractions, tmp.path())?;
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .cycle()
        .take(o.prompts.max(1))
        .map(|p| full.encode(p))
        .collect::<Result<_, _>>()?;

    let start_server =
        |delay: Duration, id: &str| -> Result<tokio::sync::oneshot::Sender<()>, BenchError> {
            let mqtt = MqttConfig::from_url(&url, id).map_err(other)?;
            let mut cfg = ExpertServerConfig::new(o.bundle.clone(), mqtt);
            cfg.delay = delay;
            cfg.workers = 1;
            let server = ExpertServer::open(cfg).map_err(other)?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let _ = server
                    .run(
                        async move {
                            let _ = stop_rx.await;
                        },
                        move |_| {
                            let _ = ready_tx.send(());
                        },
                    )
                    .await;
            });
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| other("expert server did not start"))?;
            Ok(stop_tx)
        };
    let device = |bundle: &Path,
                  name: &str,
                  skip: f32,
                  timeout: Duration|
     -> Result<(Engine, MqttRemote), BenchError> {
        let mut b = board.all_resident();
        b.offload.enabled = true;
        b.offload.timeout = timeout;
        b.offload.on_miss = OnMiss::Substitute;
        let mut e = Engine::load(bundle, &b, Verify::Sizes)?;
        let mut cfg = RemoteConfig::new(
            &e.model.manifest,
            DeviceId::new(name).map_err(other)?,
            timeout,
        )
        .map_err(other)?;
        cfg.skip_below = skip;
        let mqtt = MqttConfig::from_url(&url, name).map_err(other)?;
        let remote = rt
            .block_on(MqttRemote::connect(mqtt, cfg, std::future::pending()))
            .map_err(other)?;
        e.model.set_remote(Some(Arc::new(remote.clone())));
        Ok((e, remote))
    };

    // ------------------------------------------------------------ round trips
    let a = full.model.manifest.architecture.clone();
    let h = a.hidden_size;
    let mut rtt = Vec::new();
    let stop = start_server(Duration::ZERO, "bench-host-rtt")?;
    {
        let (_e, remote) = device(&bundles.last().unwrap().1, "bench-rtt", 0.0, o.timeout)?;
        remote.probe(Duration::from_secs(10)).map_err(other)?;
        let pairs = vec![(0..a.top_k as u16)
            .map(|e| (e, 1.0 / a.top_k as f32))
            .collect::<Vec<_>>()];
        let states: Vec<f32> = (0..h).map(|i| (i as f32 * 0.01).sin()).collect();
        let mut samples = Vec::new();
        for i in 0..o.rtt_calls + 20 {
            let t = Instant::now();
            remote
                .submit(1 % a.num_layers, &pairs, &states, h)
                .and_then(|p| p())
                .map_err(other)?;
            if i >= 20 {
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        let req_bytes = 24 + (a.top_k * 6).div_ceil(4) * 4 + h * 4;
        let reply_bytes = 20 + h * 4;
        rtt.push(RttRow {
            what: "remote experts (layer step)".into(),
            request_bytes: req_bytes,
            reply_bytes,
            calls: samples.len(),
            p50_us: percentile(&samples, 50.0),
            p99_us: percentile(&samples, 99.0),
            mean_us: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        });
        // Raw MQTT: an echo client answering with a reply of the same size.
        let raw = rt.block_on(raw_rtt(&url, req_bytes, reply_bytes, o.rtt_calls))?;
        rtt.push(RttRow {
            what: "raw MQTT request/response".into(),
            request_bytes: req_bytes,
            reply_bytes,
            calls: raw.len(),
            p50_us: percentile(&raw, 50.0),
            p99_us: percentile(&raw, 99.0),
            mean_us: raw.iter().sum::<f64>() / raw.len().max(1) as f64,
        });
    }
    let _ = stop.send(());

    // ------------------------------------------------------------ tokens/s
    let mut rows = Vec::new();
    let mut n = 0;
    for &delay in &o.delays_ms {
        let stop = start_server(
            Duration::from_millis(delay),
            &format!("bench-host-d{delay}"),
        )?;
        for (f, path) in &bundles {
            n += 1;
            let (e, remote) = device(path, &format!("bench-dev-{n}"), 0.0, o.timeout)?;
            if *f < 1.0 {
                remote.probe(Duration::from_secs(10)).map_err(other)?;
            }
            let (tokens, secs, counts, wait) = decode(&e, &prompts, o.gen_tokens)?;
            let s = remote.stats();
            rows.push(row(*f, "host", delay, tokens, secs, counts, wait, &s));
            log::info!(
                "bench offload fraction={f} delay_ms={delay} tok_s={:.1}",
                tokens as f64 / secs
            );
        }
        let (f, path) = bundles.last().unwrap().clone();
        if f < 1.0 && o.skip_below > 0.0 {
            n += 1;
            let (e, remote) = device(&path, &format!("bench-dev-{n}"), o.skip_below, o.timeout)?;
            remote.probe(Duration::from_secs(10)).map_err(other)?;
            let (tokens, secs, counts, wait) = decode(&e, &prompts, o.gen_tokens)?;
            let mode = format!("host+skip<{}", o.skip_below);
            rows.push(row(
                f,
                &mode,
                delay,
                tokens,
                secs,
                counts,
                wait,
                &remote.stats(),
            ));
        }
        let _ = stop.send(());
    }
    // No host at all: substitution only (fast-fail after the breaker opens).
    let (f, path) = bundles.last().unwrap().clone();
    if f < 1.0 {
        let mut b = board.all_resident();
        b.offload.on_miss = OnMiss::Substitute;
        let e = Engine::load(&path, &b, Verify::Sizes)?;
        let (tokens, secs, counts, wait) = decode(&e, &prompts, o.gen_tokens)?;
        rows.push(row(
            f,
            "substitute only",
            0,
            tokens,
            secs,
            counts,
            wait,
            &Default::default(),
        ));
    }
    Ok(OffloadBenchReport {
        model_id,
        broker: o
            .broker
            .clone()
            .unwrap_or_else(|| format!("embedded rumqttd {url}")),
        gen_tokens: o.gen_tokens,
        prompts: prompts.len(),
        rtt,
        decode: rows,
    })
}

#[allow(clippy::too_many_arguments)]
fn row(
    f: f64,
    mode: &str,
    delay: u64,
    tokens: usize,
    secs: f64,
    counts: ExpertCounts,
    wait_us: u64,
    s: &crate::experts::remote::RemoteStats,
) -> DecodeRow {
    let t = tokens.max(1) as f64;
    DecodeRow {
        experts_on_device_pct: f * 100.0,
        mode: mode.to_string(),
        delay_ms: delay,
        decode_tok_s: t / secs.max(1e-9),
        ms_per_token: secs * 1e3 / t,
        remote_calls_per_token: s.calls as f64 / t,
        remote_wait_ms_per_token: wait_us as f64 / 1e3 / t,
        counts,
        timeouts: s.timeouts,
        skipped: s.skipped,
    }
}

/// Round trips of a plain MQTT 5 request/response (an echo client replying
/// `reply_bytes`), same broker, same RPC machinery, no frame codec or math.
async fn raw_rtt(
    url: &str,
    req: usize,
    reply: usize,
    calls: usize,
) -> Result<Vec<f64>, BenchError> {
    let topic = "moe-edge/bench/echo";
    let (eh, mut inbox, driver) =
        transport::connect(&MqttConfig::from_url(url, "bench-echo").map_err(other)?)
            .map_err(other)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(driver.run(async move {
        let _ = stop_rx.await;
    }));
    eh.subscribe(topic, transport::QoS::AtMostOnce)
        .await
        .map_err(other)?;
    let echo = eh.clone();
    tokio::spawn(async move {
        let body = bytes::Bytes::from(vec![7u8; reply]);
        while let Some(m) = inbox.recv().await {
            let _ = transport::respond(&echo, &m, body.clone(), PublishOptions::default()).await;
        }
    });
    let (ch, _ci, cd) =
        transport::connect(&MqttConfig::from_url(url, "bench-caller").map_err(other)?)
            .map_err(other)?;
    let (stop2_tx, stop2_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cd.run(async move {
        let _ = stop2_rx.await;
    }));
    ch.wait_connected(Duration::from_secs(5))
        .await
        .map_err(other)?;
    eh.wait_connected(Duration::from_secs(5))
        .await
        .map_err(other)?;
    let rpc = Rpc::new(&ch, RpcConfig::new("moe-edge/clients/bench-caller/reply"))
        .await
        .map_err(other)?;
    let payload = bytes::Bytes::from(vec![1u8; req]);
    let mut out = Vec::new();
    for i in 0..calls + 20 {
        let t = Instant::now();
        let r = rpc
            .call_timeout(topic, payload.clone(), Duration::from_secs(1))
            .await;
        if r.is_ok() && i >= 20 {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let _ = stop_tx.send(());
    let _ = stop2_tx.send(());
    Ok(out)
}
