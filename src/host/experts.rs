//! The MQTT expert server of `moe-edge host --broker URL`: computes the
//! routed experts a device does not carry.
//!
//! Owns: the memmapped experts of a whole bundle, the shared subscription to
//! the expert topics (`$share/{group}/moe-edge/experts/{model}/v1/#`, so N
//! hosts split the load), validation of every request against the bundle
//! (layer, tokens, hidden size, expert ids, topic vs header), the bounded
//! worker queue (full → an immediate `Busy` error frame), the compute on
//! worker threads off the MQTT driver, and the replies on the MQTT 5 response
//! topic with the request's correlation data (errors as error frames).
//! Hints (a device's prediction of the experts it asks for next) go to one
//! reader thread through a bounded queue (full → dropped and counted), which
//! checks and reads those experts in before their request comes; a hint is
//! never answered. With several hosts in the group a hint reaches one of
//! them, not necessarily the one its request will.
//! Does not own: the frame layout (`wire::frame`), topic names
//! (`wire::topics`), the MQTT client (`transport`), the expert kernels
//! (`experts::kernels`), nor any policy about failures (the device decides).
//!
//! `delay` holds every reply back for a fixed time: a stand-in for network
//! latency in benches and tests, 0 in production.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bundle::{Bundle, Verify};
use crate::experts::kernels::expert_ffn_tokens;
use crate::experts::ExpertStore;
use crate::transport::{self, Message, MqttConfig, MqttHandle, PublishOptions, QoS};
use crate::wire::frame::{self, Dtype, ErrorCode, FrameError, Limits, ReplyHeader, RequestView};
use crate::wire::topics::{self, ModelId};

/// User property naming the host that computed a reply (device-side load stats).
pub const HOST_PROPERTY: &str = "x-host";

/// Failures of the expert server (start-up only: a bad request is answered
/// with an error frame, never an error here).
#[derive(Debug, thiserror::Error)]
pub enum ExpertServerError {
    #[error("bundle: {0}")]
    Bundle(String),
    #[error(transparent)]
    Store(#[from] crate::experts::ExpertError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error(transparent)]
    Topic(#[from] topics::TopicError),
    #[error("{0}")]
    Invalid(String),
}

/// Settings of one expert server.
#[derive(Debug, Clone)]
pub struct ExpertServerConfig {
    pub bundle: PathBuf,
    pub verify: Verify,
    /// Connection to the broker (client id must be unique per host).
    pub mqtt: MqttConfig,
    /// Shared-subscription group: hosts in one group split the requests.
    pub group: String,
    /// Compute threads.
    pub workers: usize,
    /// Requests waiting for a worker; one more is answered `Busy`.
    pub queue: usize,
    /// Most tokens in one request.
    pub max_tokens: u16,
    /// Added before every reply (simulated network delay; 0 in production).
    pub delay: Duration,
    /// Most requests one worker takes from the queue for one pass (requests
    /// of the same layer share it); 1 turns batching off.
    pub max_batch: usize,
}

impl ExpertServerConfig {
    pub fn new(bundle: PathBuf, mqtt: MqttConfig) -> ExpertServerConfig {
        ExpertServerConfig {
            bundle,
            verify: Verify::Full,
            mqtt,
            group: topics::HOST_GROUP.to_string(),
            workers: 2,
            queue: 32,
            max_tokens: 2048,
            delay: Duration::ZERO,
            max_batch: 16,
        }
    }
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub requests: AtomicU64,
    pub served: AtomicU64,
    pub rejected: AtomicU64,
    pub busy: AtomicU64,
    pub tokens: AtomicU64,
    /// (token, expert) pairs computed.
    pub pairs: AtomicU64,
    /// Passes that served several requests at once, and those requests.
    pub batches: AtomicU64,
    pub batched: AtomicU64,
    pub compute_us: AtomicU64,
    /// Hint frames taken, experts they named, hints dropped (queue full or
    /// not valid for this host).
    pub hints: AtomicU64,
    pub hinted: AtomicU64,
    pub hints_dropped: AtomicU64,
}

/// A copy of [`ServerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStatsSnapshot {
    pub requests: u64,
    pub served: u64,
    pub rejected: u64,
    pub busy: u64,
    pub tokens: u64,
    pub pairs: u64,
    pub batches: u64,
    pub batched: u64,
    pub compute_us: u64,
    pub hints: u64,
    pub hinted: u64,
    pub hints_dropped: u64,
}

impl ServerStats {
    pub fn snapshot(&self) -> ServerStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStatsSnapshot {
            requests: l(&self.requests),
            served: l(&self.served),
            rejected: l(&self.rejected),
            busy: l(&self.busy),
            tokens: l(&self.tokens),
            pairs: l(&self.pairs),
            batches: l(&self.batches),
            batched: l(&self.batched),
            compute_us: l(&self.compute_us),
            hints: l(&self.hints),
            hinted: l(&self.hinted),
            hints_dropped: l(&self.hints_dropped),
        }
    }
}

/// What the workers share.
struct Model {
    store: ExpertStore,
    limits: Limits,
    hidden: usize,
    experts: usize,
}

impl Model {
    /// Checks that every used expert is held here (the codec checked ids < experts).
    fn check_experts(&self, req: &RequestView<'_>) -> Result<(), (ErrorCode, String)> {
        let l = req.layer() as usize;
        for t in 0..req.tokens() {
            for p in req.pairs(t) {
                if !self.store.has(l, p.expert as usize) {
                    return Err((
                        ErrorCode::UnknownExpert,
                        format!("layer {l} expert {} is not on this host", p.expert),
                    ));
                }
                // Checked against its manifest hash on first use.
                if let Err(e) = self.store.checked(l, p.expert as usize) {
                    return Err((ErrorCode::Internal, e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// The weighted sum of each token's experts, [tokens, hidden], for
    /// several requests of one layer at once: each expert's weights are read
    /// once for every token of every request that routes to it (requests
    /// from many devices arriving together share the pass).
    fn compute_many(&self, reqs: &[RequestView<'_>], scratch: &mut Scratch) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let l = reqs.first().map_or(0, |r| r.layer() as usize);
        debug_assert!(reqs.iter().all(|r| r.layer() as usize == l));
        let total: usize = reqs.iter().map(|r| r.tokens()).sum();
        scratch.states.clear();
        scratch.states.resize(total * h, 0.0);
        let mut at = 0;
        for r in reqs {
            let t = r.tokens();
            let dst = &mut scratch.states[at * h..(at + t) * h];
            match r.states().as_f32() {
                Some(s) => dst.copy_from_slice(s),
                None => r.states().copy_to_f32(dst),
            }
            at += t;
        }
        let mut out = vec![0f32; total * h];
        for w in scratch.work.iter_mut() {
            w.clear();
        }
        scratch.work.resize(self.experts, Vec::new());
        let mut base = 0;
        for r in reqs {
            for ti in 0..r.tokens() {
                for p in r.pairs(ti) {
                    scratch.work[p.expert as usize].push((base + ti, p.weight));
                }
            }
            base += r.tokens();
        }
        let x = &scratch.states;
        for (e, work) in scratch.work.iter_mut().enumerate() {
            if work.is_empty() {
                continue;
            }
            // One token may name an expert twice: run such duplicates as separate batches.
            work.sort_by_key(|&(ti, _)| ti);
            let mut rest: &mut [(usize, f32)] = work;
            while !rest.is_empty() {
                let mut n = 1;
                while n < rest.len() && rest[n].0 != rest[n - 1].0 {
                    n += 1;
                }
                let (batch, tail) = std::mem::take(&mut rest).split_at_mut(n);
                rest = tail;
                let wts = self.store.get(l, e).expect("checked by check_experts");
                expert_ffn_tokens(wts, h, x, batch, &mut scratch.act, &mut out);
            }
        }
        let mut parts = Vec::with_capacity(reqs.len());
        let mut at = 0;
        for r in reqs {
            let t = r.tokens();
            parts.push(out[at * h..(at + t) * h].to_vec());
            at += t;
        }
        parts
    }
}

#[derive(Default)]
struct Scratch {
    states: Vec<f32>,
    act: Vec<f32>,
    work: Vec<Vec<(usize, f32)>>,
}

/// A loaded expert server, ready to [`ExpertServer::run`].
pub struct ExpertServer {
    config: ExpertServerConfig,
    model: Arc<Model>,
    model_id: ModelId,
    stats: Arc<ServerStats>,
}

impl std::fmt::Debug for ExpertServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpertServer")
            .field("model_id", &self.model_id)
            .field("group", &self.config.group)
            .finish_non_exhaustive()
    }
}

fn reply_header(req: &RequestView<'_>) -> ReplyHeader {
    ReplyHeader {
        dtype: req.header().dtype,
        layer: req.layer(),
        tokens: req.header().tokens,
        hidden: req.header().hidden,
        seq: req.seq(),
    }
}

/// A best-effort header for an error reply to bytes that did not decode.
fn raw_header(buf: &[u8]) -> ReplyHeader {
    let u16_at = |at: usize| {
        buf.get(at..at + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        buf.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    ReplyHeader {
        dtype: Dtype::F32,
        layer: u16_at(8),
        tokens: 0,
        hidden: 0,
        seq: u32_at(20),
    }
}

impl ExpertServer {
    /// Opens the bundle and maps every expert (no copy).
    pub fn open(config: ExpertServerConfig) -> Result<ExpertServer, ExpertServerError> {
        if config.workers == 0 || config.queue == 0 || config.max_tokens == 0 {
            return Err(ExpertServerError::Invalid(
                "workers, queue and max_tokens must be > 0".into(),
            ));
        }
        let bundle = Bundle::open(&config.bundle, config.verify)
            .map_err(|e| ExpertServerError::Bundle(e.to_string()))?;
        let m = &bundle.manifest;
        let a = &m.architecture;
        let model_id = ModelId::new(m.model_id.clone())?;
        let store = ExpertStore::of_bundle(&bundle)?;
        let missing = (0..a.num_layers)
            .map(|l| a.num_experts - store.present(l).len())
            .sum::<usize>();
        if missing > 0 {
            log::warn!(
                "expert server bundle={} missing_experts={missing} (requests for them get unknown_expert)",
                config.bundle.display()
            );
        }
        let limits = Limits {
            max_tokens: config.max_tokens,
            max_hidden: a.hidden_size as u32,
            max_experts: a.num_experts as u16,
            max_layers: a.num_layers as u16,
        };
        let model = Model {
            store,
            limits,
            hidden: a.hidden_size,
            experts: a.num_experts,
        };
        Ok(ExpertServer {
            config,
            model: Arc::new(model),
            model_id,
            stats: Arc::new(ServerStats::default()),
        })
    }

    pub fn model_id(&self) -> &ModelId {
        &self.model_id
    }

    /// Checks one expert against its manifest hash (as its first request
    /// does); the error is the text of the error reply.
    pub fn check_expert(&self, layer: usize, expert: usize) -> Result<(), String> {
        self.model
            .store
            .checked(layer, expert)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Largest request this server accepts, in bytes (the MQTT packet limit).
    fn max_request_bytes(&self) -> usize {
        let l = &self.model.limits;
        let t = l.max_tokens as usize;
        let k = l.max_experts as usize;
        64 + t * k * 6 + t * l.max_hidden as usize * 4
    }

    /// Connects, subscribes and serves until `shutdown` resolves. `on_ready`
    /// is called once subscribed.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        on_ready: impl FnOnce(&str) + Send,
    ) -> Result<ServerStatsSnapshot, ExpertServerError> {
        let mut mqtt = self.config.mqtt.clone();
        mqtt.max_packet_size = mqtt
            .max_packet_size
            .max(self.max_request_bytes() as u32 + 1024);
        mqtt.inbox_capacity = mqtt.inbox_capacity.max(self.config.queue * 2);
        let (handle, mut inbox, driver) = transport::connect(&mqtt)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let driver_task = tokio::spawn(driver.run(async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        }));
        let filter = topics::shared_experts_filter(&self.config.group, &self.model_id)?;
        handle.subscribe(&filter, QoS::AtMostOnce).await?;
        log::info!(
            "expert server subscribed filter={filter} workers={} queue={} delay_ms={}",
            self.config.workers,
            self.config.queue,
            self.config.delay.as_millis()
        );
        on_ready(&filter);

        let (hint_tx, hint_rx) = sync_channel::<(usize, Vec<u16>)>(HINT_QUEUE);
        let reader = {
            let (model, stats) = (self.model.clone(), self.stats.clone());
            std::thread::Builder::new()
                .name("experts-hints".into())
                .spawn(move || read_hinted(hint_rx, model, stats))
                .map_err(|e| ExpertServerError::Invalid(format!("spawn hint reader: {e}")))?
        };
        let (tx, rx) = sync_channel::<Message>(self.config.queue);
        let rx = Arc::new(Mutex::new(rx));
        let rt = tokio::runtime::Handle::current();
        let mut workers = Vec::new();
        for i in 0..self.config.workers {
            let (rx, model, stats, handle, rt) = (
                rx.clone(),
                self.model.clone(),
                self.stats.clone(),
                handle.clone(),
                rt.clone(),
            );
            let delay = self.config.delay;
            let max_batch = self.config.max_batch.max(1);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("experts-{i}"))
                    .spawn(move || worker(rx, model, stats, handle, rt, delay, max_batch))
                    .map_err(|e| ExpertServerError::Invalid(format!("spawn worker: {e}")))?,
            );
        }

        tokio::pin!(shutdown);
        loop {
            let msg = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                m = inbox.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            if !self.hint(&hint_tx, &msg) {
                self.intake(&handle, &tx, msg).await;
            }
        }
        drop(tx);
        drop(hint_tx);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
            let _ = reader.join();
        })
        .await;
        let _ = handle.unsubscribe(&filter).await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), driver_task).await;
        let s = self.stats.snapshot();
        log::info!(
            "expert server stopped requests={} served={} rejected={} busy={} hints={} hinted={} hints_dropped={}",
            s.requests,
            s.served,
            s.rejected,
            s.busy,
            s.hints,
            s.hinted,
            s.hints_dropped
        );
        Ok(s)
    }

    /// Takes `msg` if it is a hint: queues its experts for the reader (or
    /// drops it, counted). False for anything else.
    fn hint(&self, tx: &SyncSender<(usize, Vec<u16>)>, msg: &Message) -> bool {
        let Ok(hint) = frame::decode_hint(&msg.payload, &self.model.limits) else {
            return false;
        };
        let fits = matches!(topics::parse_expert_layer(&msg.topic),
            Some((model, layer)) if model == self.model_id.as_str() && layer == hint.layer);
        let experts: Vec<u16> = hint
            .experts()
            .filter(|&e| self.model.store.has(hint.layer as usize, e as usize))
            .collect();
        if !fits || tx.try_send((hint.layer as usize, experts)).is_err() {
            self.stats.hints_dropped.fetch_add(1, Ordering::Relaxed);
            log::debug!("expert hint dropped topic={} fits={fits}", msg.topic);
        } else {
            self.stats.hints.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Validates one request and queues it (or answers an error at once).
    async fn intake(&self, handle: &MqttHandle, tx: &SyncSender<Message>, msg: Message) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if msg.response_topic.is_none() {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "expert request without response topic dropped topic={}",
                msg.topic
            );
            return;
        }
        let checked = match topics::parse_expert_layer(&msg.topic) {
            Some((model, layer)) if model == self.model_id.as_str() => {
                match frame::decode_request(&msg.payload, &self.model.limits) {
                    Ok(req) if req.layer() != layer => Err((
                        reply_header(&req),
                        ErrorCode::BadFrame,
                        format!("topic layer {layer} but frame layer {}", req.layer()),
                    )),
                    Ok(req) if req.hidden() != self.model.hidden => Err((
                        reply_header(&req),
                        ErrorCode::BadFrame,
                        format!(
                            "hidden {} but the model has {}",
                            req.hidden(),
                            self.model.hidden
                        ),
                    )),
                    Ok(req) => self
                        .model
                        .check_experts(&req)
                        .map_err(|(c, m)| (reply_header(&req), c, m)),
                    Err(e) => Err((raw_header(&msg.payload), e.code(), e.to_string())),
                }
            }
            _ => Err((
                raw_header(&msg.payload),
                ErrorCode::UnknownLayer,
                format!("topic {} is not this host's model", msg.topic),
            )),
        };
        if let Err((header, code, text)) = checked {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            log::debug!("expert request rejected code={code} reason={text}");
            reply_error(handle, &msg, &header, code, &text).await;
            return;
        }
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) | Err(TrySendError::Disconnected(msg)) => {
                let n = self.stats.busy.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    log::warn!("expert server busy queue={} busy={n}", self.config.queue);
                }
                if let Ok(req) = frame::decode_request(&msg.payload, &self.model.limits) {
                    let h = reply_header(&req);
                    reply_error(handle, &msg, &h, ErrorCode::Busy, "queue full").await;
                }
            }
        }
    }
}

fn reply_options() -> PublishOptions {
    PublishOptions {
        qos: QoS::AtMostOnce,
        ..PublishOptions::default()
    }
}

async fn reply_error(
    handle: &MqttHandle,
    msg: &Message,
    header: &ReplyHeader,
    code: ErrorCode,
    text: &str,
) {
    let mut out = Vec::new();
    frame::encode_error(&mut out, header, code, text);
    let mut opts = reply_options();
    opts.user_properties
        .push((HOST_PROPERTY.to_string(), handle.client_id().to_string()));
    if let Err(e) = transport::respond(handle, msg, out, opts).await {
        log::warn!("expert error reply failed err={e}");
    }
}

/// Hints waiting for the reader; one more is dropped.
const HINT_QUEUE: usize = 64;

/// The hint reader: checks each hinted expert against its manifest hash
/// (once, as its first request would) and reads it in, so the request that
/// follows finds it in memory.
fn read_hinted(rx: Receiver<(usize, Vec<u16>)>, model: Arc<Model>, stats: Arc<ServerStats>) {
    while let Ok((layer, experts)) = rx.recv() {
        for e in experts {
            match model.store.checked(layer, e as usize) {
                Ok(_) => model.store.populate(layer, e as usize),
                // Its request gets the error reply; nothing to do here.
                Err(err) => log::debug!("hinted expert refused layer={layer} expert={e} err={err}"),
            }
            stats.hinted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn worker(
    rx: Arc<Mutex<Receiver<Message>>>,
    model: Arc<Model>,
    stats: Arc<ServerStats>,
    handle: MqttHandle,
    rt: tokio::runtime::Handle,
    delay: Duration,
    max_batch: usize,
) {
    let mut scratch = Scratch::default();
    let host = handle.client_id().to_string();
    loop {
        // One request, plus whatever else is already waiting (up to max_batch).
        let mut msgs = Vec::new();
        {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(m) => msgs.push(m),
                Err(_) => return,
            }
            while msgs.len() < max_batch {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        let clock = Instant::now();
        let mut replies: Vec<(usize, Vec<u8>, bool)> = Vec::with_capacity(msgs.len());
        let mut good: Vec<(usize, RequestView<'_>)> = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            match frame::decode_request(&msg.payload, &model.limits) {
                Ok(req) => good.push((i, req)),
                // Validated at intake: cannot happen, but never panic on it.
                Err(e) => replies.push((i, error_bytes(&raw_header(&msg.payload), &e), false)),
            }
        }
        // Requests of one layer share one pass over its experts.
        good.sort_by_key(|(_, r)| r.layer());
        for group in good.chunk_by(|a, b| a.1.layer() == b.1.layer()) {
            let reqs: Vec<RequestView<'_>> = group.iter().map(|(_, r)| *r).collect();
            let sums = model.compute_many(&reqs, &mut scratch);
            if group.len() > 1 {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .batched
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
            }
            for ((i, req), sum) in group.iter().zip(sums) {
                let mut out = Vec::new();
                let mut header = reply_header(req);
                header.dtype = req.header().dtype;
                match frame::encode_reply(&mut out, &header, frame_values(&sum)) {
                    Ok(()) => {
                        stats
                            .tokens
                            .fetch_add(req.tokens() as u64, Ordering::Relaxed);
                        stats.pairs.fetch_add(
                            (0..req.tokens())
                                .map(|t| req.pairs(t).count())
                                .sum::<usize>() as u64,
                            Ordering::Relaxed,
                        );
                        replies.push((*i, out, true));
                    }
                    Err(e) => replies.push((*i, error_bytes(&header, &e), false)),
                }
            }
        }
        stats
            .compute_us
            .fetch_add(clock.elapsed().as_micros() as u64, Ordering::Relaxed);
        drop(good);
        for (i, reply, ok) in replies {
            if ok {
                stats.served.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            let msg = msgs[i].clone();
            let mut opts = reply_options();
            opts.user_properties
                .push((HOST_PROPERTY.to_string(), host.clone()));
            let handle = handle.clone();
            let send = async move {
                // The delay stands in for the network: it holds the reply,
                // not the worker.
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if let Err(e) = transport::respond(&handle, &msg, Bytes::from(reply), opts).await {
                    log::warn!("expert reply failed err={e}");
                }
            };
            if delay.is_zero() {
                rt.block_on(send);
            } else {
                rt.spawn(send);
            }
        }
    }
}

fn frame_values(sum: &[f32]) -> frame::Values<'_> {
    frame::Values::F32(sum)
}

fn error_bytes(header: &ReplyHeader, e: &FrameError) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_error(&mut out, header, e.code(), &e.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{Pair, RequestHeader};

    fn model() -> Model {
        let b = Bundle::open(
            std::path::Path::new(crate::bundle::DEFAULT_BUNDLE),
            Verify::Sizes,
        )
        .unwrap();
        let a = b.manifest.architecture.clone();
        Model {
            store: ExpertStore::of_bundle(&b).unwrap(),
            limits: Limits {
                max_tokens: 64,
                max_hidden: a.hidden_size as u32,
                max_experts: a.num_experts as u16,
                max_layers: a.num_layers as u16,
            },
            hidden: a.hidden_size,
            experts: a.num_experts,
        }
    }

    fn frame(m: &Model, layer: u16, tokens: usize, seed: usize) -> Vec<u8> {
        let h = m.hidden;
        let states: Vec<f32> = (0..tokens * h)
            .map(|i| ((i * 31 + seed * 7) % 97) as f32 / 97.0 - 0.5)
            .collect();
        // Two experts per token; neighbouring requests share some.
        let pairs: Vec<Pair> = (0..tokens)
            .flat_map(|t| {
                let e = ((seed + t) % m.experts) as u16;
                [
                    Pair {
                        expert: e,
                        weight: 0.6,
                    },
                    Pair {
                        expert: (e + 3) % m.experts as u16,
                        weight: 0.4,
                    },
                ]
            })
            .collect();
        let header = RequestHeader {
            dtype: Dtype::F32,
            flags: 0,
            layer,
            tokens: tokens as u16,
            hidden: h as u32,
            pairs_per_token: 2,
            seq: seed as u32,
        };
        let mut out = Vec::new();
        frame::encode_request(&mut out, &header, &pairs, frame::Values::F32(&states)).unwrap();
        out
    }

    #[test]
    fn requests_served_in_one_pass_get_their_own_answers_exactly() {
        let m = model();
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(&m, 1, 1 + i % 3, i)).collect();
        let reqs: Vec<RequestView<'_>> = frames
            .iter()
            .map(|f| frame::decode_request(f, &m.limits).unwrap())
            .collect();
        let mut scratch = Scratch::default();
        let together = m.compute_many(&reqs, &mut scratch);
        assert_eq!(together.len(), reqs.len());
        for (r, t) in reqs.iter().zip(&together) {
            let alone = m.compute_many(std::slice::from_ref(r), &mut scratch);
            assert_eq!(&alone[0], t, "request {} differs when batched", r.seq());
            assert_eq!(t.len(), r.tokens() * m.hidden);
            assert!(t.iter().any(|&v| v != 0.0));
        }
    }
}
