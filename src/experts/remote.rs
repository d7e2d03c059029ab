//! The device side of remote experts: [`MqttRemote`] implements
//! [`RemoteExperts`] over the MQTT transport, one request per layer step.
//!
//! Owns: encoding a layer step's missing (expert, weight) pairs and hidden
//! states into one frame, the call with its deadline (`offload.timeout`),
//! decoding and checking the reply, the counters (calls, timeouts, errors,
//! bytes, round-trip times, which host served), when to skip the host (a
//! `crate::breaker::Breaker`: after `breaker_failures` failed calls in a row
//! the remote is skipped for `breaker_cooldown`, then one call probes it
//! again), the hints (the next layer's predicted experts, published at most
//! once per layer step without waiting, none while the breaker is open) and
//! the avoidance rule
//! (`skip_below`: when every token's missing router weight is below it, the
//! round trip is not worth it and the engine substitutes).
//! Does not own: what happens on a failure (the engine's `on_miss` policy),
//! the frame layout (`wire::frame`), the MQTT client and RPC (`transport`).
//!
//! The engine is synchronous: [`RemoteExperts::submit`] spawns the call on a
//! tokio runtime handle held here and returns a closure that blocks on a
//! `std::sync::mpsc` channel until the deadline (plus a small grace), so the
//! caller never needs to be inside tokio.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dispatch::{Pairs, Pending, RemoteExperts};
use super::ExpertError;
use crate::breaker::{Breaker, State};
use crate::transport::{self, MqttConfig, MqttHandle, PublishOptions, Rpc, RpcConfig, RpcError};
use crate::wire::frame::{self, Dtype, Limits, Pair, RequestHeader, Response, Values};
use crate::wire::topics::{self, DeviceId, ModelId};

/// User property a host sets on its replies (see `host::experts`).
const HOST_PROPERTY: &str = "x-host";
/// How long a pending call waits past its deadline for the RPC task's answer.
const GRACE: Duration = Duration::from_millis(5);
/// Round-trip samples kept for percentiles.
const RTT_SAMPLES: usize = 8192;

/// Failures setting the remote up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error(transparent)]
    Topic(#[from] topics::TopicError),
    #[error("probe: {0}")]
    Probe(String),
}

/// Settings of the device's remote experts.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub model: ModelId,
    pub device: DeviceId,
    pub layers: usize,
    pub experts: usize,
    pub hidden: usize,
    /// Deadline of each call (the board's `offload.timeout`).
    pub timeout: Duration,
    /// Wire dtype of the hidden states (f32 is exact; f16 halves the bytes).
    pub dtype: Dtype,
    /// Skip the round trip when every token's missing router weight is below
    /// this (0 = never skip). Only meaningful with `on_miss = substitute`.
    pub skip_below: f32,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Publish hints (the predicted experts of the next layer) to the hosts.
    pub hints: bool,
}

impl RemoteConfig {
    /// Defaults for a model, from its manifest and the board's offload timeout.
    pub fn new(
        manifest: &crate::bundle::Manifest,
        device: DeviceId,
        timeout: Duration,
    ) -> Result<RemoteConfig, RemoteError> {
        let a = &manifest.architecture;
        Ok(RemoteConfig {
            model: ModelId::new(manifest.model_id.clone())?,
            device,
            layers: a.num_layers,
            experts: a.num_experts,
            hidden: a.hidden_size,
            timeout,
            dtype: Dtype::F32,
            skip_below: 0.0,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_millis(500),
            hints: true,
        })
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    busy: AtomicU64,
    fast_fail: AtomicU64,
    skipped: AtomicU64,
    hints: AtomicU64,
    hints_dropped: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    rtt_us_total: AtomicU64,
    rtt_us_max: AtomicU64,
}

/// A copy of the counters, for the reply's extension, logs and the bench.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RemoteStats {
    /// Requests sent.
    pub calls: u64,
    /// Replies with a usable sum.
    pub ok: u64,
    pub timeouts: u64,
    /// Error frames, bad replies and publish failures.
    pub errors: u64,
    /// Error frames saying `busy`.
    pub busy: u64,
    /// Calls not sent because the breaker was open.
    pub fast_fail: u64,
    /// Calls not sent because the missing weight was below `skip_below`.
    pub skipped: u64,
    /// Replies that came after their deadline (dropped).
    pub late: u64,
    /// Hints published, and hints not published (the client's request
    /// queue was full).
    pub hints: u64,
    pub hints_dropped: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub rtt_mean_us: f64,
    pub rtt_p50_us: f64,
    pub rtt_p99_us: f64,
    pub rtt_max_us: u64,
    /// Replies per host (`x-host` user property).
    pub hosts: BTreeMap<String, u64>,
}

struct Inner {
    rt: tokio::runtime::Handle,
    rpc: Rpc,
    handle: MqttHandle,
    config: RemoteConfig,
    topics: Vec<String>,
    limits: Limits,
    seq: AtomicU32,
    counters: Counters,
    rtts: Mutex<(Vec<u32>, usize)>,
    hosts: Mutex<BTreeMap<String, u64>>,
    breaker: Mutex<Breaker>,
}

/// Remote experts over MQTT. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct MqttRemote {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MqttRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttRemote")
            .field("model", &self.inner.config.model)
            .field("device", &self.inner.config.device)
            .finish_non_exhaustive()
    }
}

impl MqttRemote {
    /// On an existing connection: routes and subscribes the device's reply
    /// topic. Must be called inside the runtime that drives `handle`.
    pub async fn new(handle: &MqttHandle, config: RemoteConfig) -> Result<MqttRemote, RemoteError> {
        let mut rc = RpcConfig::new(topics::expert_reply(&config.device));
        rc.max_pending = 64;
        let rpc = Rpc::new(handle, rc).await?;
        let topics = (0..config.layers)
            .map(|l| topics::expert_layer(&config.model, l as u16))
            .collect();
        let limits = Limits {
            max_tokens: u16::MAX,
            max_hidden: config.hidden as u32,
            max_experts: config.experts as u16,
            max_layers: config.layers as u16,
        };
        let breaker = Mutex::new(Breaker::new(
            config.breaker_failures,
            config.breaker_cooldown,
        ));
        Ok(MqttRemote {
            inner: Arc::new(Inner {
                rt: tokio::runtime::Handle::current(),
                rpc,
                handle: handle.clone(),
                config,
                topics,
                limits,
                seq: AtomicU32::new(1),
                counters: Counters::default(),
                rtts: Mutex::new((Vec::with_capacity(RTT_SAMPLES), 0)),
                hosts: Mutex::new(BTreeMap::new()),
                breaker,
            }),
        })
    }

    /// Its own MQTT connection (client id `{device}-experts`), driven on the
    /// current runtime until `shutdown` resolves.
    pub async fn connect(
        mut mqtt: MqttConfig,
        config: RemoteConfig,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<MqttRemote, RemoteError> {
        mqtt.client_id = format!("{}-experts", config.device);
        mqtt.max_packet_size = mqtt.max_packet_size.max(16 << 20);
        let (handle, mut inbox, driver) = transport::connect(&mqtt)?;
        tokio::spawn(driver.run(shutdown));
        // Replies are routed past the inbox; anything else is drained and dropped.
        tokio::spawn(async move { while inbox.recv().await.is_some() {} });
        MqttRemote::new(&handle, config).await
    }

    /// One small call (layer 0, expert 0, one token) until a host answers or
    /// `within` passes. Returns the round trip of the successful call.
    pub fn probe(&self, within: Duration) -> Result<Duration, RemoteError> {
        let end = Instant::now() + within;
        let h = self.inner.config.hidden;
        let mut last = String::from("no attempt");
        while Instant::now() < end {
            let t = Instant::now();
            let pairs: Pairs = vec![vec![(0, 1.0)]];
            match self
                .call(0, &pairs, &vec![0.0; h], h, true)
                .and_then(|p| p())
            {
                Ok(_) => return Ok(t.elapsed()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(RemoteError::Probe(last))
    }

    /// Closes the breaker (e.g. after a probe found a host again).
    pub fn reset_breaker(&self) {
        self.inner.breaker.lock().unwrap().record_success();
    }

    pub fn stats(&self) -> RemoteStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (mean, p50, p99) = {
            let r = self.inner.rtts.lock().unwrap();
            let mut v: Vec<f64> = r.0.iter().map(|&x| x as f64).collect();
            if v.is_empty() {
                (0.0, 0.0, 0.0)
            } else {
                v.sort_by(f64::total_cmp);
                let at = |p: f64| v[((p / 100.0) * (v.len() - 1) as f64).round() as usize];
                (v.iter().sum::<f64>() / v.len() as f64, at(50.0), at(99.0))
            }
        };
        RemoteStats {
            calls: l(&c.calls),
            ok: l(&c.ok),
            timeouts: l(&c.timeouts),
            errors: l(&c.errors),
            busy: l(&c.busy),
            fast_fail: l(&c.fast_fail),
            skipped: l(&c.skipped),
            late: self.inner.rpc.stats().late,
            hints: l(&c.hints),
            hints_dropped: l(&c.hints_dropped),
            bytes_sent: l(&c.bytes_sent),
            bytes_received: l(&c.bytes_received),
            rtt_mean_us: mean,
            rtt_p50_us: p50,
            rtt_p99_us: p99,
            rtt_max_us: l(&c.rtt_us_max),
            hosts: self.inner.hosts.lock().unwrap().clone(),
        }
    }

    /// Forgets the round-trip samples (between bench phases).
    pub fn clear_rtts(&self) {
        let mut r = self.inner.rtts.lock().unwrap();
        r.0.clear();
        r.1 = 0;
    }

    fn call(
        &self,
        layer: usize,
        pairs: &Pairs,
        states: &[f32],
        hidden: usize,
        probe: bool,
    ) -> Result<Pending, ExpertError> {
        let inner = &self.inner;
        let cfg = &inner.config;
        let mut experts: Vec<u32> = pairs.iter().flatten().map(|p| p.0 as u32).collect();
        experts.sort_unstable();
        experts.dedup();
        let unreachable = move || ExpertError::Unreachable { layer, experts };
        let tokens = pairs.len();
        if tokens == 0 {
            return Ok(Box::new(|| Ok(Vec::new())));
        }
        if layer >= inner.topics.len() || hidden != cfg.hidden || states.len() != tokens * hidden {
            return Err(ExpertError::Remote(format!(
                "bad call: layer {layer}, {tokens} tokens, hidden {hidden}, {} values",
                states.len()
            )));
        }
        if !probe && cfg.skip_below > 0.0 {
            let worst = pairs
                .iter()
                .map(|p| p.iter().map(|x| x.1).sum::<f32>())
                .fold(0f32, f32::max);
            if worst < cfg.skip_below {
                inner.counters.skipped.fetch_add(1, Ordering::Relaxed);
                return Err(ExpertError::Remote(format!(
                    "skipped: missing weight {worst:.3} below {}",
                    cfg.skip_below
                )));
            }
        }
        let k = pairs.iter().map(Vec::len).max().unwrap_or(0);
        if k == 0 || k > 255 || tokens > u16::MAX as usize {
            return Err(ExpertError::Remote(format!(
                "bad call: {tokens} tokens with up to {k} experts"
            )));
        }
        // Last check before sending: a call the half-open breaker admits is
        // its probe and must reach `settle`. An explicit probe (`probe()`)
        // bypasses the breaker.
        if !probe
            && !inner
                .breaker
                .lock()
                .unwrap()
                .allow(Instant::now())
                .is_allowed()
        {
            inner.counters.fast_fail.fetch_add(1, Ordering::Relaxed);
            return Err(unreachable.clone()());
        }
        let mut flat = Vec::with_capacity(tokens * k);
        for p in pairs {
            flat.extend(p.iter().map(|&(expert, weight)| Pair { expert, weight }));
            flat.extend(std::iter::repeat_n(Pair::UNUSED, k - p.len()));
        }
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader {
            dtype: cfg.dtype,
            flags: 0,
            layer: layer as u16,
            tokens: tokens as u16,
            hidden: hidden as u32,
            pairs_per_token: k as u8,
            seq,
        };
        let mut buf = Vec::new();
        frame::encode_request(&mut buf, &header, &flat, Values::F32(states))
            .map_err(|e| ExpertError::Remote(format!("encode: {e}")))?;
        inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        inner
            .counters
            .bytes_sent
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let deadline = Instant::now() + cfg.timeout;
        let (tx, rx) = sync_channel(1);
        let rpc = inner.rpc.clone();
        let topic = inner.topics[layer].clone();
        inner.rt.spawn(async move {
            let started = Instant::now();
            let r = rpc
                .call_with(
                    &topic,
                    buf,
                    tokio::time::Instant::from_std(deadline),
                    PublishOptions::default(),
                )
                .await;
            let _ = tx.send((r, started.elapsed()));
        });
        let this = self.clone();
        Ok(Box::new(move || {
            let wait = deadline.saturating_duration_since(Instant::now()) + GRACE;
            let res = match rx.recv_timeout(wait) {
                Ok((r, rtt)) => this.finish(r, rtt, tokens, hidden, seq),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    Err(Failure::Timeout)
                }
            };
            this.settle(res.is_ok(), probe);
            res.map_err(|f| match f {
                Failure::Timeout => unreachable(),
                Failure::Other(m) => ExpertError::Remote(m),
            })
        }))
    }

    fn finish(
        &self,
        r: Result<transport::Message, RpcError>,
        rtt: Duration,
        tokens: usize,
        hidden: usize,
        seq: u32,
    ) -> Result<Vec<f32>, Failure> {
        let c = &self.inner.counters;
        let msg = match r {
            Ok(m) => m,
            Err(RpcError::Timeout { .. }) => {
                c.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::Timeout);
            }
            Err(e) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::Other(format!("call: {e}")));
            }
        };
        c.bytes_received
            .fetch_add(msg.payload.len() as u64, Ordering::Relaxed);
        if let Some(host) = msg.user_property(HOST_PROPERTY) {
            let mut hosts = self.inner.hosts.lock().unwrap();
            if let Some(n) = hosts.get_mut(host) {
                *n += 1;
            } else if hosts.len() < 64 {
                hosts.insert(host.to_string(), 1);
            }
        }
        let bad = |m: String| {
            c.errors.fetch_add(1, Ordering::Relaxed);
            Err(Failure::Other(m))
        };
        match frame::decode_reply(&msg.payload, &self.inner.limits) {
            Ok(Response::Reply(r)) => {
                let hd = r.header();
                if hd.tokens as usize != tokens || hd.hidden as usize != hidden || hd.seq != seq {
                    return bad(format!(
                        "reply shape {}x{} seq {} for {tokens}x{hidden} seq {seq}",
                        hd.tokens, hd.hidden, hd.seq
                    ));
                }
                let mut out = vec![0f32; tokens * hidden];
                r.sum().copy_to_f32(&mut out);
                c.ok.fetch_add(1, Ordering::Relaxed);
                let us = rtt.as_micros() as u64;
                c.rtt_us_total.fetch_add(us, Ordering::Relaxed);
                c.rtt_us_max.fetch_max(us, Ordering::Relaxed);
                let mut s = self.inner.rtts.lock().unwrap();
                let (v, next) = &mut *s;
                if v.len() < RTT_SAMPLES {
                    v.push(us.min(u32::MAX as u64) as u32);
                } else {
                    v[*next] = us.min(u32::MAX as u64) as u32;
                    *next = (*next + 1) % RTT_SAMPLES;
                }
                Ok(out)
            }
            Ok(Response::Error(e)) => {
                if e.code == frame::ErrorCode::Busy {
                    c.busy.fetch_add(1, Ordering::Relaxed);
                }
                bad(format!("host error {}: {}", e.code, e.message))
            }
            Err(e) => bad(format!("bad reply: {e}")),
        }
    }

    /// Feeds the breaker with a call's outcome.
    fn settle(&self, ok: bool, probe: bool) {
        let cfg = &self.inner.config;
        let mut b = self.inner.breaker.lock().unwrap();
        let now = Instant::now();
        if ok {
            if b.state(now) != State::Closed {
                log::info!("remote experts reachable again");
            }
            b.record_success();
            return;
        }
        if probe {
            return;
        }
        if b.record_failure(now) {
            log::warn!(
                "remote experts unreachable failures={} cooldown_ms={}",
                b.failures(),
                cfg.breaker_cooldown.as_millis()
            );
        }
    }
}

enum Failure {
    Timeout,
    Other(String),
}

impl RemoteExperts for MqttRemote {
    fn submit(
        &self,
        layer: usize,
        pairs: &Pairs,
        states: &[f32],
        hidden: usize,
    ) -> Result<Pending, ExpertError> {
        self.call(layer, pairs, states, hidden, false)
    }

    fn hint(&self, layer: usize, experts: &[u16]) {
        let inner = &self.inner;
        if !inner.config.hints
            || experts.is_empty()
            || layer >= inner.topics.len()
            || inner.breaker.lock().unwrap().state(Instant::now()) == State::Open
        {
            return;
        }
        let mut buf = Vec::new();
        if let Err(e) = frame::encode_hint(&mut buf, layer as u16, experts) {
            log::debug!("hint not encoded layer={layer} err={e}");
            return;
        }
        let opts = PublishOptions {
            qos: transport::QoS::AtMostOnce,
            ..PublishOptions::default()
        };
        let c = &inner.counters;
        match inner.handle.try_publish(&inner.topics[layer], buf, &opts) {
            Ok(()) => c.hints.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.hints_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}
