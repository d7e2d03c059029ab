//! `moe-edge bench fleet`: one expert host serving many devices. An expert
//! server (`host::experts`, in this process, `--workers` compute threads)
//! on the embedded broker, and N devices, each its own MQTT client
//! (`experts::remote`) on its own thread, each sending what a decoding
//! device sends: one request per layer step, one token with top-k experts
//! (seeded random routing and hidden states), waiting for the reply before
//! the next layer. Measured with the host batching requests that arrive
//! together (one pass over each expert for every device that routes to it)
//! and without: requests and expert pairs served per second per host core,
//! and the device-side round trip. Owns the measurement only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{percentile, BenchError};
use crate::bundle::{Bundle, Verify};
use crate::experts::dispatch::RemoteExperts;
use crate::experts::remote::{MqttRemote, RemoteConfig};
use crate::host::experts::{ExpertServer, ExpertServerConfig};
use crate::transport::{Broker, BrokerConfig, MqttConfig};
use crate::wire::DeviceId;

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub bundle: PathBuf,
    pub devices: Vec<usize>,
    pub workers: usize,
    pub max_batch: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    pub devices: usize,
    pub batching: bool,
    pub requests_per_s: f64,
    /// (token, expert) pairs computed per second.
    pub pairs_per_s: f64,
    pub pairs_per_s_per_core: f64,
    /// Of the host's requests, the share served in a pass with others.
    pub batched_share: f64,
    pub rtt_p50_ms: f64,
    pub rtt_p99_ms: f64,
    /// Per device: decode steps (all layers) per second it could sustain.
    pub steps_per_s_per_device: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub bundle: PathBuf,
    pub model_id: String,
    pub expert_dtype: String,
    pub expert_bytes: usize,
    pub layers: usize,
    pub top_k: usize,
    pub workers: usize,
    pub max_batch: usize,
    pub seconds: f64,
    pub rows: Vec<FleetRow>,
}

fn other(e: impl std::fmt::Display) -> BenchError {
    BenchError::Other(e.to_string())
}

pub fn run(o: &FleetOptions) -> Result<FleetReport, BenchError> {
    let b = Bundle::open(&o.bundle, Verify::Sizes).map_err(other)?;
    let m = b.manifest.clone();
    let a = m.architecture.clone();
    let rt = crate::process::runtime(2).map_err(other)?;
    let broker =
        Broker::start(BrokerConfig::new("127.0.0.1:0".parse().expect("addr"))).map_err(other)?;
    let url = broker.url();
    let mut rows = Vec::new();
    for &n in &o.devices {
        for batching in [false, true] {
            let mqtt =
                MqttConfig::from_url(&url, format!("fleet-host-{n}-{batching}")).map_err(other)?;
            let mut cfg = ExpertServerConfig::new(o.bundle.clone(), mqtt);
            cfg.workers = o.workers;
            cfg.max_batch = if batching { o.max_batch } else { 1 };
            cfg.queue = (4 * n).max(32);
            cfg.verify = Verify::Sizes;
            let server = ExpertServer::open(cfg).map_err(other)?;
            let stats = server.stats();
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
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| other("expert server did not start"))?;
            let mut remotes = Vec::new();
            for d in 0..n {
                let name = format!("fleet-dev-{n}-{batching}-{d}");
                let cfg = RemoteConfig::new(
                    &m,
                    DeviceId::new(&name).map_err(other)?,
                    Duration::from_secs(5),
                )
                .map_err(other)?;
                let mqtt = MqttConfig::from_url(&url, &name).map_err(other)?;
                let r = rt
                    .block_on(MqttRemote::connect(mqtt, cfg, std::future::pending()))
                    .map_err(other)?;
                r.probe(Duration::from_secs(30)).map_err(other)?;
                r.clear_rtts();
                remotes.push(r);
            }
            let before = stats.snapshot();
            let go = Arc::new(AtomicBool::new(true));
            let steps = Arc::new(AtomicU64::new(0));
            let clock = Instant::now();
            let threads: Vec<_> = remotes
                .iter()
                .enumerate()
                .map(|(d, r)| {
                    let (r, go, steps) = (r.clone(), go.clone(), steps.clone());
                    let (h, e, k, layers) = (a.hidden_size, a.num_experts, a.top_k, a.num_layers);
                    std::thread::spawn(move || {
                        let mut rng = StdRng::seed_from_u64(d as u64);
                        let states: Vec<f32> = (0..h).map(|_| rng.gen_range(-1.0..1.0)).collect();
                        let mut errors = 0u64;
                        while go.load(Ordering::Relaxed) {
                            for l in 0..layers {
                                let mut pick: Vec<u16> = Vec::with_capacity(k);
                                while pick.len() < k {
                                    let x = rng.gen_range(0..e) as u16;
                                    if !pick.contains(&x) {
                                        pick.push(x);
                                    }
                                }
                                let pairs =
                                    vec![pick.iter().map(|&x| (x, 1.0 / k as f32)).collect()];
                                match r.submit(l, &pairs, &states, h).map(|p| p()) {
                                    Ok(Ok(_)) => {}
                                    _ => errors += 1,
                                }
                            }
                            steps.fetch_add(1, Ordering::Relaxed);
                        }
                        errors
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs_f64(o.seconds));
            go.store(false, Ordering::Relaxed);
            let errors: u64 = threads.into_iter().map(|t| t.join().unwrap_or(1)).sum();
            let secs = clock.elapsed().as_secs_f64();
            let after = stats.snapshot();
            let mut rtts = Vec::new();
            for r in &remotes {
                let s = r.stats();
                rtts.push((s.rtt_p50_us, s.rtt_p99_us));
            }
            let served = (after.served - before.served) as f64;
            let pairs = (after.pairs - before.pairs) as f64;
            rows.push(FleetRow {
                devices: n,
                batching,
                requests_per_s: served / secs,
                pairs_per_s: pairs / secs,
                pairs_per_s_per_core: pairs / secs / o.workers as f64,
                batched_share: (after.batched - before.batched) as f64 / served.max(1.0),
                rtt_p50_ms: percentile(&rtts.iter().map(|x| x.0).collect::<Vec<_>>(), 50.0) / 1e3,
                rtt_p99_ms: rtts.iter().map(|x| x.1).fold(0.0, f64::max) / 1e3,
                steps_per_s_per_device: steps.load(Ordering::Relaxed) as f64 / secs / n as f64,
                errors,
            });
            let _ = stop_tx.send(());
            drop(remotes);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(broker);
    Ok(FleetReport {
        bundle: o.bundle.clone(),
        model_id: m.model_id.clone(),
        expert_dtype: m.experts.dtype.name().into(),
        expert_bytes: m.experts.expert_bytes,
        layers: a.num_layers,
        top_k: a.top_k,
        workers: o.workers,
        max_batch: o.max_batch,
        seconds: o.seconds,
        rows,
    })
}

impl FleetReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} ({}): experts {} of {:.2} MB, {} layers, top-{}; host {} workers, batches up to {} requests; {:.0} s per row\n\n",
            self.bundle.display(),
            self.model_id,
            self.expert_dtype,
            self.expert_bytes as f64 / 1e6,
            self.layers,
            self.top_k,
            self.workers,
            self.max_batch,
            self.seconds
        );
        s += "| devices | host batching | requests/s | expert pairs/s | pairs/s per host core | requests in shared passes | round trip p50 / p99 ms | decode steps/s per device | errors |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} % | {:.2} / {:.2} | {:.1} | {} |\n",
                r.devices,
                if r.batching { "on" } else { "off" },
                r.requests_per_s,
                r.pairs_per_s,
                r.pairs_per_s_per_core,
                r.batched_share * 100.0,
                r.rtt_p50_ms,
                r.rtt_p99_ms,
                r.steps_per_s_per_device,
                r.errors
            );
        }
        s
    }
}
