//! The daemon's I/O edges on tokio: broker and client start-up, intake
//! (MQTT message → validated request → admission), the publisher, the status
//! task, the escalation task, and the shutdown sequence.
//!
//! Owns: wiring and ordering of those tasks and the engine thread
//! (`serve::worker`), every network wait's deadline on this side.
//! Does not own: the policy (`serve::admission`), reply shapes
//! (`serve::reply`), the MQTT client itself (`transport`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::admission::{Admission, RateLimiter, Rejected};
use super::dedup::Dedup;
use super::escalate::Escalate;
use super::reply::{Reply, ReplyTo, StreamState};
use super::status::{EngineFigures, State, StatusBase};
use super::worker::{final_messages, Escalation, Outgoing, Pending, Shared, Worker};
use super::{BrokerChoice, Ready, ServeConfig, ServeError};
use crate::chat::ChatPolicy;
use crate::engine::Engine;
use crate::openai::{ApiError, ChatCompletionChunk, ChatRequest, ErrorCode, RequestLimits};
use crate::transport::{
    self, Broker, BrokerConfig, ConnState, Inbox, LastWill, Message, MqttConfig, MqttHandle,
    PublishOptions, QoS,
};
use crate::wire::topics;

/// Replies waiting for the publisher.
const OUT_CAPACITY: usize = 1024;
/// Escalations waiting for a cascade slot, and cascade calls at once.
const ESCALATION_CAPACITY: usize = 64;
const ESCALATIONS_IN_FLIGHT: usize = 16;
/// Request identities remembered against QoS 1 redelivery (see `dedup`).
const DEDUP_ENTRIES: usize = 4096;
const DEDUP_TTL: Duration = Duration::from_secs(600);
/// Clients remembered by the rate limiter.
const RATE_CLIENTS: usize = 4096;
/// Longest log excerpt of a message.
const LOG_TEXT: usize = 160;

pub(super) async fn run(
    mut config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let device = config.device.clone();
    let engine = config.engine.clone();
    let limits = config.board.limits.clone();
    let requests_topic = topics::chat_requests(&device);
    let status_topic = topics::status(&device);
    let base = StatusBase {
        device: device.to_string(),
        model: engine.model_id().to_string(),
        board: config.board.name.clone(),
        queue_capacity: limits.queue_depth,
        max_concurrent: limits.max_concurrent,
        requests: requests_topic.clone(),
    };

    // Broker and client.
    let (mut mqtt, broker_desc) = match &config.broker {
        BrokerChoice::Embedded(listen) => {
            let mut bc = BrokerConfig::new(*listen);
            bc.max_payload_size = bc.max_payload_size.max(limits.max_payload_bytes * 2);
            let broker = Broker::start(bc)?;
            let url = broker.url();
            let v4 = broker
                .v4_addr()
                .map_or("off".to_string(), |a| a.to_string());
            log::info!(
                "serve embedded broker listening mqtt5={} mqtt311={v4}",
                broker.addr()
            );
            (MqttConfig::from_url(&url, "")?, url)
        }
        BrokerChoice::External(c) => {
            let desc = format!(
                "{}://{}:{}",
                if c.tls.is_some() { "mqtts" } else { "mqtt" },
                c.host,
                c.port
            );
            ((**c).clone(), desc)
        }
    };
    mqtt.client_id = format!("moe-edge-{device}");
    mqtt.inbox_capacity = 256;
    mqtt.request_capacity = 1024;
    mqtt.max_packet_size = mqtt
        .max_packet_size
        .max((limits.max_payload_bytes * 2).min(u32::MAX as usize) as u32);
    let offline = base.status(
        State::Offline,
        Default::default(),
        EngineFigures::of(&engine),
    );
    mqtt.last_will = Some(LastWill {
        topic: status_topic.clone(),
        payload: offline.to_bytes(),
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    let (handle, inbox, driver) = transport::connect(&mqtt)?;
    let (driver_stop_tx, driver_stop_rx) = oneshot::channel::<()>();
    let driver_task = tokio::spawn(driver.run(async move {
        let _ = driver_stop_rx.await;
    }));
    handle.subscribe(&requests_topic, QoS::AtLeastOnce).await?;
    if let Err(e) = handle.wait_connected(config.connect_wait).await {
        log::warn!(
            "serve broker not reachable yet, retrying in the background broker={broker_desc} error={e}"
        );
    }

    // Engine thread, publisher, status, escalations.
    let shared = Arc::new(Shared::new(Admission::new(
        limits.queue_depth,
        config.policy,
    )));
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(OUT_CAPACITY);
    let publisher = tokio::spawn(publish_loop(handle.clone(), out_rx));
    let (status_stop_tx, status_stop_rx) = watch::channel(false);
    let status_task = tokio::spawn(status_loop(
        handle.clone(),
        status_topic.clone(),
        base.clone(),
        engine.clone(),
        shared.load.subscribe(),
        config.status_interval,
        status_stop_rx,
    ));
    let (esc_tx, esc_task) = match config.escalate.clone() {
        Some(esc) => {
            let (tx, rx) = mpsc::channel(ESCALATION_CAPACITY);
            let task = tokio::spawn(escalation_loop(
                esc,
                rx,
                out_tx.clone(),
                config.board.cascade.timeout,
            ));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let worker = Worker {
        engine: engine.clone(),
        shared: shared.clone(),
        out: out_tx.clone(),
        escalations: esc_tx,
        policy: config.policy,
        max_concurrent: limits.max_concurrent.max(1),
        chat: ChatPolicy::of(&config.board),
        device: device.to_string(),
    };
    let (engine_done_tx, engine_done_rx) = oneshot::channel::<()>();
    let engine_thread = std::thread::Builder::new()
        .name("moe-edge-engine".into())
        .spawn(move || {
            let _done = engine_done_tx; // dropped when the thread ends, even by a panic
            worker.run();
        })
        .map_err(|e| ServeError::EngineThread(e.to_string()))?;

    // Intake.
    let (intake_stop_tx, intake_stop_rx) = watch::channel(false);
    let intake = Intake {
        device: device.to_string(),
        engine: engine.clone(),
        shared: shared.clone(),
        out: out_tx.clone(),
        limits: RequestLimits {
            max_body_bytes: limits.max_payload_bytes,
            ..RequestLimits::default()
        },
        rate: RateLimiter::new(limits.requests_per_client_per_sec, RATE_CLIENTS),
        dedup: Dedup::new(DEDUP_ENTRIES, DEDUP_TTL),
        model_aliases: std::mem::take(&mut config.model_aliases),
        next_id: 0,
        id_prefix: format!("{:08x}", rand::random::<u32>()),
    };
    let intake_task = tokio::spawn(intake.run(inbox, intake_stop_rx));
    drop(out_tx);

    log::info!(
        "serve ready device={device} requests={requests_topic} status={status_topic} broker={broker_desc} model={} board={} queue_depth={} max_concurrent={}",
        engine.model_id(),
        config.board.name,
        limits.queue_depth,
        limits.max_concurrent
    );
    if let Some(tx) = config.on_ready.take() {
        let _ = tx.send(Ready {
            broker_url: broker_desc.clone(),
            requests_topic: requests_topic.clone(),
            status_topic: status_topic.clone(),
        });
    }

    // Serve until shutdown (or the engine thread dies).
    tokio::pin!(shutdown);
    let mut engine_done_rx = engine_done_rx;
    let engine_died = tokio::select! {
        _ = &mut shutdown => false,
        _ = &mut engine_done_rx => true,
    };
    if engine_died {
        log::error!("serve engine thread ended unexpectedly device={device}");
    }
    log::info!(
        "serve shutting down device={device} drain_timeout_ms={}",
        config.drain_timeout.as_millis()
    );
    shared.start_draining(config.drain_timeout);
    if !engine_died {
        let wait = config.drain_timeout + Duration::from_secs(5);
        if tokio::time::timeout(wait, &mut engine_done_rx)
            .await
            .is_err()
        {
            log::error!(
                "serve engine thread did not stop within {} ms",
                wait.as_millis()
            );
        }
    }
    let _ = intake_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), intake_task).await;
    if let Some(t) = esc_task {
        let _ =
            tokio::time::timeout(config.board.cascade.timeout + Duration::from_secs(1), t).await;
    }
    // Every sender is gone now: the publisher drains what is left and stops.
    if tokio::time::timeout(Duration::from_secs(10), publisher)
        .await
        .is_err()
    {
        log::error!("serve publisher did not drain within 10 s device={device}");
    }
    let _ = status_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), status_task).await;
    let mut opts = PublishOptions::qos(QoS::AtLeastOnce);
    opts.retain = true;
    let offline = base.status(
        State::Offline,
        Default::default(),
        EngineFigures::of(&engine),
    );
    if let Err(e) = handle
        .publish(&status_topic, offline.to_bytes(), &opts)
        .await
    {
        log::warn!("serve offline status not published error={e}");
    }
    let _ = driver_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(3), driver_task).await;
    if engine_thread.is_finished() {
        let _ = engine_thread.join();
    }
    log::info!("serve stopped device={device}");
    if engine_died {
        return Err(ServeError::EngineThread(
            "the engine thread ended unexpectedly".into(),
        ));
    }
    Ok(())
}

struct Intake {
    device: String,
    engine: Arc<Engine>,
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
    limits: RequestLimits,
    rate: RateLimiter,
    dedup: Dedup,
    model_aliases: Vec<String>,
    next_id: u64,
    id_prefix: String,
}

impl Intake {
    async fn run(mut self, mut inbox: Inbox, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                m = inbox.recv() => match m {
                    Some(m) => self.handle(m).await,
                    None => break,
                },
            }
        }
    }

    async fn reject(&self, to: Option<ReplyTo>, e: ApiError, client: Option<&str>) {
        log::warn!(
            "serve request rejected device={} code={} reply_topic={} client={} message={:?}",
            self.device,
            e.code,
            to.as_ref().map_or("-", |t| t.topic.as_str()),
            client.unwrap_or("-"),
            transport::truncate_text(&e.message, LOG_TEXT)
        );
        if let Some(to) = to {
            let _ = self
                .out
                .send(Outgoing {
                    to,
                    reply: Reply::Error(e),
                })
                .await;
        }
    }

    async fn handle(&mut self, m: Message) {
        let arrived = Instant::now();
        let user_client = m
            .user_property("client_id")
            .or_else(|| m.user_property("client"))
            .map(str::to_string);
        let mut bad_response_topic = None;
        let mut to = match ReplyTo::from_properties(
            m.response_topic.as_deref(),
            m.correlation_data.as_ref(),
        ) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                bad_response_topic = Some(e);
                None
            }
            None => None,
        };
        let parsed = ChatRequest::parse(&m.payload, self.limits.max_body_bytes);
        if to.is_none() && m.payload.len() <= self.limits.max_body_bytes {
            to = match &parsed {
                Ok(r) => r.reply_topic.as_deref().and_then(|t| {
                    topics::validate_app_reply_topic(t).ok().map(|()| ReplyTo {
                        topic: t.to_string(),
                        correlation: None,
                        request_id: r.id.clone(),
                    })
                }),
                Err(_) => ReplyTo::from_body_bytes(&m.payload),
            };
        }
        let client = user_client.as_deref();
        let Some(to) = to else {
            let e = match (parsed, bad_response_topic) {
                (Err(e), _) => e,
                (Ok(_), Some(e)) => e,
                (Ok(_), None) => ApiError::new(
                    ErrorCode::MissingReplyTopic,
                    "no MQTT 5 response topic and no reply_topic in the body: nobody to answer",
                ),
            };
            log::warn!(
                "serve request dropped, no reply topic device={} topic={} code={} message={:?} payload={:?}",
                self.device,
                m.topic,
                e.code,
                transport::truncate_text(&e.message, LOG_TEXT),
                transport::preview(&m.payload, 64)
            );
            return;
        };
        let req = match parsed {
            Ok(r) => r,
            Err(e) => return self.reject(Some(to), e, client).await,
        };
        if let Some(key) = Dedup::key(
            &to.topic,
            to.correlation.as_deref(),
            to.request_id.as_deref(),
        ) {
            if !self.dedup.first_seen(key, arrived) {
                log::warn!(
                    "serve duplicate request dropped device={} reply_topic={}",
                    self.device,
                    to.topic,
                );
                return;
            }
        }
        let client_key = to.client_key(client).to_string();
        if !self.rate.allow(&client_key, arrived) {
            let e = ApiError::new(
                ErrorCode::RateLimited,
                "too many requests from this client; slow down",
            );
            return self.reject(Some(to), e, Some(&client_key)).await;
        }
        let valid = match req.validate(&self.limits) {
            Ok(v) => v,
            Err(e) => return self.reject(Some(to), e, Some(&client_key)).await,
        };
        if let Some(model) = valid.model.as_deref() {
            let ours = self.engine.model_id();
            if !(model.is_empty() || model == ours || self.model_aliases.iter().any(|a| a == model))
            {
                let e = ApiError::new(
                    ErrorCode::ModelNotFound,
                    format!("model '{model}' is not served here; this device serves '{ours}'"),
                )
                .with_param("model");
                return self.reject(Some(to), e, Some(&client_key)).await;
            }
        }
        self.next_id += 1;
        let id = format!("chatcmpl-{}-{}", self.id_prefix, self.next_id);
        let priority = valid.priority;
        let deadline = valid
            .deadline_ms
            .map(|ms| arrived + Duration::from_millis(ms));
        let pending = Pending {
            request: valid,
            reply: to,
            id,
        };
        let pushed = {
            let mut q = self.shared.queue.lock().unwrap();
            let r = q.admission.push(pending, priority, arrived, deadline);
            if r.is_ok() {
                self.shared.update_load(&q);
            }
            r
        };
        match pushed {
            Ok(()) => self.shared.wake.notify_one(),
            Err((p, why)) => {
                let e = match why {
                    Rejected::Full => ApiError::new(
                        ErrorCode::Overloaded,
                        "the request queue is full; try again shortly",
                    ),
                    Rejected::Draining => ApiError::new(
                        ErrorCode::ShuttingDown,
                        "the daemon is shutting down and takes no new requests",
                    ),
                };
                self.reject(Some(p.reply), e, Some(&client_key)).await;
            }
        }
    }
}

async fn publish_loop(handle: MqttHandle, mut rx: mpsc::Receiver<Outgoing>) {
    let mut failures = 0u64;
    while let Some(o) = rx.recv().await {
        let payload = o.reply.encode(o.to.request_id.as_deref());
        let opts = PublishOptions {
            qos: QoS::AtLeastOnce,
            correlation_data: o.to.correlation.clone(),
            // No properties at all for replies that may go to MQTT 3.1.1 apps
            // (body `reply_topic`): rumqttd's v4 listener panics forwarding them.
            content_type: o
                .to
                .correlation
                .is_some()
                .then(|| "application/json".into()),
            ..PublishOptions::default()
        };
        if let Err(e) = handle.publish(&o.to.topic, payload, &opts).await {
            failures += 1;
            log::warn!(
                "serve reply not published topic={} final={} error={e} failures={failures}",
                o.to.topic,
                o.reply.is_final()
            );
        }
    }
}

async fn status_loop(
    handle: MqttHandle,
    topic: String,
    base: StatusBase,
    engine: Arc<Engine>,
    mut load: watch::Receiver<super::status::Load>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = handle.watch_state();
    let mut opts = PublishOptions::qos(QoS::AtLeastOnce);
    opts.retain = true;
    loop {
        let l = *load.borrow_and_update();
        let published = EngineFigures::of(&engine);
        let status = base.status(State::Online, l, published);
        if let Err(e) = handle.publish(&topic, status.to_bytes(), &opts).await {
            log::warn!("serve status not published error={e}");
        }
        // At most one status per interval; the latest figures win.
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            _ = stop.changed() => return,
            r = load.changed() => if r.is_err() { return },
            // The engine's figures (prefix-cache hits, resident experts)
            // move without the load changing.
            _ = async {
                loop {
                    tokio::time::sleep(interval).await;
                    if EngineFigures::of(&engine) != published {
                        break;
                    }
                }
            } => {}
            // A reconnect may follow our last will: say online again.
            r = reconnected(&mut conn) => if !r { return },
        }
    }
}

/// Resolves after the connection was lost and came back (false: the driver is gone).
async fn reconnected(conn: &mut watch::Receiver<ConnState>) -> bool {
    if conn.wait_for(|s| *s != ConnState::Connected).await.is_err() {
        return false;
    }
    conn.wait_for(|s| *s == ConnState::Connected).await.is_ok()
}

async fn escalation_loop(
    esc: Arc<dyn Escalate>,
    mut rx: mpsc::Receiver<Escalation>,
    out: mpsc::Sender<Outgoing>,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(ESCALATIONS_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(e) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let esc = esc.clone();
        let out = out.clone();
        tasks.spawn(async move {
            let _permit = permit;
            escalate_one(esc, e, out, timeout).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Chunks of a streamed escalation buffered between the cascade and the publisher.
const PASS_THROUGH_CHUNKS: usize = 32;

/// One escalated request, from the seam to its final message. A streamed
/// request with nothing sent yet passes the upstream's chunks through to
/// the app as they arrive (a forwarding task, so the order is kept); the
/// terminator (or the error) follows the last of them.
async fn escalate_one(
    esc: Arc<dyn Escalate>,
    e: Escalation,
    out: mpsc::Sender<Outgoing>,
    timeout: Duration,
) {
    let now = Instant::now();
    let limit = e
        .deadline
        .map(|d| d.saturating_duration_since(now))
        .unwrap_or(timeout)
        .min(timeout);
    let want_stream = e.request.stream;
    let include_usage = e.request.include_usage;
    let pass_through = want_stream && !e.stream.as_ref().is_some_and(|s| s.started());
    let (sink, forwarder) = if pass_through {
        let (tx, mut rx) = mpsc::channel::<ChatCompletionChunk>(PASS_THROUGH_CHUNKS);
        let out = out.clone();
        let to = e.to.clone();
        let task = tokio::spawn(async move {
            let mut forwarded = 0usize;
            while let Some(chunk) = rx.recv().await {
                forwarded += 1;
                let reply = Reply::Chunk(Box::new(chunk));
                if out
                    .send(Outgoing {
                        to: to.clone(),
                        reply,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            forwarded
        });
        (Some(tx), Some(task))
    } else {
        (None, None)
    };
    let fut = esc.escalate(e.request, e.reason, e.device_reply, sink);
    let result = match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            ErrorCode::DeadlineExceeded,
            format!("the cascade did not answer within {} ms", limit.as_millis()),
        )),
    };
    // The future (and with it the sink) is gone: the forwarder drains and ends.
    let forwarded = match forwarder {
        Some(task) => task.await.unwrap_or(0),
        None => 0,
    };
    let replies = match result {
        Ok(c) if forwarded > 0 => vec![Reply::Done {
            id: c.id.clone(),
            created: c.created,
        }],
        Ok(c) => {
            let stream = e.stream.or_else(|| {
                want_stream.then(|| StreamState::new(&e.id, &c.model, c.created, include_usage))
            });
            final_messages(stream, c)
        }
        Err(err) => {
            log::warn!(
                "serve escalation failed id={} code={} forwarded_chunks={forwarded} message={:?}",
                e.id,
                err.code,
                err.message
            );
            vec![Reply::Error(err)]
        }
    };
    if forwarded > 0 {
        log::info!("serve escalation streamed id={} chunks={forwarded}", e.id);
    }
    for reply in replies {
        let _ = out
            .send(Outgoing {
                to: e.to.clone(),
                reply,
            })
            .await;
    }
}
