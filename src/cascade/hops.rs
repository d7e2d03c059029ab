//! The walk up the cascade: [`Cascade`] holds the hops after the one asking
//! (device → host → cloud; a host asks only the cloud), each with its client,
//! breaker and timeout, and tries them in order for one request until one
//! answers. Decisions are `policy`'s; this file does the I/O and the logging.
//!
//! Streaming: with a [`ChunkSink`], a hop is asked for a stream and its
//! chunks are forwarded to the sink in order as they arrive, unchanged; one
//! last chunk (`choices: []`) carries `x_moe_edge`. Before the first chunk is
//! forwarded a failing hop is skipped like any other; after it, the request
//! fails (`upstream_error`), since the app already holds part of a reply.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::client::{ApiKey, Client, ClientConfig, RetryPolicy};
use super::policy::{gate, judge, served_info, HopKind};
use super::CascadeError;
use crate::breaker::{Admit, Breaker, State};
use crate::config::CascadeConfig;
use crate::openai::{
    ApiError, ChatCompletion, ChatCompletionChunk, ChunkAccumulator, ErrorCode, ServedBy,
    ValidRequest,
};

/// Where streamed chunks of an escalated request go (to the MQTT app or the HTTP client).
pub type ChunkSink = mpsc::Sender<ChatCompletionChunk>;

/// One hop: a client, a breaker, a reason it cannot be used (no API key).
#[derive(Debug)]
pub struct Hop {
    pub kind: HopKind,
    client: Option<Client>,
    unavailable: Option<String>,
    timeout: Duration,
    breaker: Mutex<Breaker>,
}

impl Hop {
    pub fn new(kind: HopKind, client: Client, breaker: Breaker) -> Hop {
        Hop {
            kind,
            timeout: client.config().timeout,
            client: Some(client),
            unavailable: None,
            breaker: Mutex::new(breaker),
        }
    }

    /// A configured hop that cannot be called (its `tried` entry says why).
    pub fn unavailable(kind: HopKind, why: String) -> Hop {
        Hop {
            kind,
            client: None,
            unavailable: Some(why),
            timeout: Duration::ZERO,
            breaker: Mutex::new(Breaker::new(1, Duration::ZERO)),
        }
    }

    pub fn breaker_state(&self) -> State {
        self.breaker
            .lock()
            .expect("breaker lock")
            .state(Instant::now())
    }

    fn admit(&self) -> Admit {
        self.breaker
            .lock()
            .expect("breaker lock")
            .allow(Instant::now())
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().expect("breaker lock");
        if ok {
            if b.state(Instant::now()) != State::Closed {
                log::info!("breaker hop={} state=closed", self.kind.as_str());
            }
            b.record_success();
        } else if b.record_failure(Instant::now()) {
            log::warn!(
                "breaker hop={} state=open failures={}",
                self.kind.as_str(),
                b.failures()
            );
        }
    }
}

/// Which side of the cascade asks: the device tries host then cloud, a host only the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Device,
    Host,
}

/// The hops above this process, in order. Cheap to clone (shared hops and breakers).
#[derive(Debug, Default, Clone)]
pub struct Cascade {
    hops: Arc<Vec<Hop>>,
}

impl Cascade {
    pub fn new(hops: Vec<Hop>) -> Cascade {
        Cascade {
            hops: Arc::new(hops),
        }
    }

    /// From a board's `[cascade]`: the host hop (for a device) when
    /// `host_url` is set, the cloud hop when `cloud_url` is set. A cloud
    /// whose `cloud_api_key_env` variable is unset stays in the list as
    /// unavailable, so the error says so.
    pub fn from_config(c: &CascadeConfig, tier: Tier) -> Result<Cascade, CascadeError> {
        let mut hops = Vec::new();
        let base = |name: &str, url: &str, model: &Option<String>| {
            let mut cfg = ClientConfig::new(name, url);
            cfg.model = model.clone();
            cfg.timeout = c.timeout;
            cfg.connect_timeout = c.connect_timeout.min(c.timeout);
            cfg.retry = RetryPolicy {
                max_retries: c.retries,
                ..RetryPolicy::default()
            };
            cfg
        };
        let breaker = || Breaker::new(c.breaker_failures, c.breaker_cooldown);
        if let (Tier::Device, Some(url)) = (tier, &c.host_url) {
            let cfg = base("host", url, &c.host_model);
            hops.push(Hop::new(HopKind::Host, Client::new(cfg)?, breaker()));
        }
        if let Some(url) = &c.cloud_url {
            let mut cfg = base("cloud", url, &c.cloud_model);
            let key = c
                .cloud_api_key_env
                .as_deref()
                .map(|var| (var, ApiKey::from_env(var)));
            match key {
                Some((var, None)) => {
                    log::warn!("cascade hop=cloud unavailable=true reason=\"{var} is not set\"");
                    hops.push(Hop::unavailable(
                        HopKind::Cloud,
                        format!("{var} is not set"),
                    ));
                }
                Some((_, Some(k))) => {
                    cfg.api_key = Some(k);
                    hops.push(Hop::new(HopKind::Cloud, Client::new(cfg)?, breaker()));
                }
                None => hops.push(Hop::new(HopKind::Cloud, Client::new(cfg)?, breaker())),
            }
        }
        Ok(Cascade::new(hops))
    }

    pub fn hops(&self) -> &[Hop] {
        &self.hops
    }

    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// Sends a request the device will not answer up the cascade.
    ///
    /// `reason` is why (an [`super::Escalation`] as text: `"fallback marker"`);
    /// `tried` starts with `"device: {reason}"`. The deadline is the
    /// request's `x-deadline-ms` counted from now, when it has one. With a
    /// `sink`, the reply streams into it (see the module doc) and the
    /// returned completion is the same reply added up.
    pub async fn escalate(
        &self,
        req: &ValidRequest,
        reason: &str,
        sink: Option<ChunkSink>,
    ) -> Result<ChatCompletion, ApiError> {
        let deadline = req
            .deadline_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.escalate_from(ServedBy::Device, req, reason, deadline, sink)
            .await
    }

    /// [`Cascade::escalate`] with who gives up (`device` or `host`) and an explicit deadline.
    pub async fn escalate_from(
        &self,
        from: ServedBy,
        req: &ValidRequest,
        reason: &str,
        deadline: Option<Instant>,
        sink: Option<ChunkSink>,
    ) -> Result<ChatCompletion, ApiError> {
        let started = Instant::now();
        let mut tried = vec![format!("{}: {reason}", from.as_str())];
        for hop in self.hops.iter() {
            let name = hop.kind.as_str();
            let now = Instant::now();
            let (budget, admit) = match gate(
                hop.kind,
                hop.unavailable.as_deref(),
                req.non_text,
                hop.timeout,
                deadline,
                now,
                || hop.admit(),
            ) {
                Ok(g) => g,
                Err(why) => {
                    log::info!("cascade hop={name} outcome=skipped reason=\"{why}\"");
                    tried.push(format!("{name}: {why}"));
                    continue;
                }
            };
            let client = hop.client.as_ref().expect("an available hop has a client");
            let hop_deadline = tokio::time::Instant::now() + budget;
            let t = Instant::now();
            let result = match &sink {
                None => client
                    .complete(req, Some(hop_deadline))
                    .await
                    .map_err(|e| (e, 0)),
                Some(sink) => {
                    let whole = deadline.map(tokio::time::Instant::from_std);
                    self.stream_hop(client, req, whole, sink).await
                }
            };
            let ms = t.elapsed().as_secs_f64() * 1e3;
            match result {
                Ok(mut c) => {
                    hop.record(true);
                    let info = served_info(
                        hop.kind,
                        c.x_moe_edge.take(),
                        reason,
                        &tried,
                        started.elapsed().as_secs_f64() * 1e3,
                    );
                    log::info!(
                        "cascade hop={name} outcome=served served_by={} probe={} ms={ms:.1}",
                        info.served_by.as_str(),
                        admit == Admit::Probe
                    );
                    if let Some(sink) = &sink {
                        let mut last = ChatCompletionChunk::usage_only(
                            &c.id,
                            &c.model,
                            c.created,
                            Default::default(),
                        );
                        last.usage = None;
                        last.x_moe_edge = Some(info.clone());
                        send_chunk(sink, last, budget).await.ok();
                    }
                    return Ok(c.with_edge(info));
                }
                Err((e, forwarded)) => {
                    let verdict = judge(&e);
                    hop.record(!verdict.hop_failed);
                    log::warn!(
                        "cascade hop={name} outcome=failed hop_failed={} forwarded_chunks={forwarded} ms={ms:.1} error=\"{e}\"",
                        verdict.hop_failed
                    );
                    if forwarded > 0 {
                        return Err(ApiError::new(
                            ErrorCode::UpstreamError,
                            format!(
                                "the {name} stream broke after {forwarded} chunks: {}",
                                e.short()
                            ),
                        ));
                    }
                    tried.push(format!("{name}: {}", e.short()));
                }
            }
        }
        log::warn!("cascade outcome=no_route tried=\"{}\"", tried.join("; "));
        Err(ApiError::no_route(&tried))
    }

    /// One hop, streamed into `sink`; the error carries how many chunks were already forwarded.
    async fn stream_hop(
        &self,
        client: &Client,
        req: &ValidRequest,
        deadline: Option<tokio::time::Instant>,
        sink: &ChunkSink,
    ) -> Result<ChatCompletion, (CascadeError, usize)> {
        // The client bounds the head and each gap by the hop's timeout, the
        // whole stream by the request's deadline (or its stream timeout).
        let mut stream = client.stream(req, deadline).await.map_err(|e| (e, 0))?;
        let idle = client.config().timeout;
        let mut acc = ChunkAccumulator::new();
        let mut forwarded = 0usize;
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|e| (e, forwarded))?;
            acc.push(&chunk);
            send_chunk(sink, chunk, idle)
                .await
                .map_err(|e| (e, forwarded))?;
            forwarded += 1;
        }
        if forwarded == 0 {
            return Err((
                CascadeError::Protocol("the stream ended without a chunk".into()),
                0,
            ));
        }
        Ok(acc.finish())
    }
}

/// Forwards one chunk; the receiver gone or stuck past `wait` ends the stream.
async fn send_chunk(
    sink: &ChunkSink,
    chunk: ChatCompletionChunk,
    wait: Duration,
) -> Result<(), CascadeError> {
    match tokio::time::timeout(wait, sink.send(chunk)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CascadeError::CallerGone),
        Err(_) => Err(CascadeError::Timeout {
            ms: wait.as_millis() as u64,
            phase: "handing a chunk to the caller",
        }),
    }
}
