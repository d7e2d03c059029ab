//! The device daemon as a [`ChatBackend`], for `moe-edge serve --http`:
//! each HTTP request is published to the daemon's request topic over one
//! persistent MQTT 5 connection (response topic + correlation data), exactly
//! as an app would send it, so local tools share the daemon's admission,
//! priorities, deadlines, engine and cascade instead of a second copy of the
//! model. Replies (a `chat.completion`, chunks then the
//! `chat.completion.done` terminator, or an error body) are routed back to
//! their request by correlation data.
//!
//! Not here: the daemon (`serve`), the MQTT client (`transport`), HTTP (`http`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::http::ChatBackend;
use super::HostError;
use crate::cascade::ChunkSink;
use crate::openai::{
    ApiError, ChatCompletion, ChatCompletionChunk, ChunkAccumulator, ErrorBody, ErrorCode,
    ValidRequest,
};
use crate::transport::{self, MqttConfig, MqttHandle, PublishOptions, QoS};
use crate::wire::topics::{self, ClientId};
use crate::wire::DeviceId;

/// `object` of the daemon's stream terminator.
const DONE_OBJECT: &str = "chat.completion.done";

type Pending = Arc<Mutex<HashMap<Bytes, mpsc::Sender<Bytes>>>>;

/// A client of one daemon, shared by every HTTP request.
pub struct DaemonClient {
    handle: MqttHandle,
    reply_topic: String,
    requests_topic: String,
    model_id: String,
    pending: Pending,
    next: AtomicU64,
    /// Longest wait for the next reply message of a request (without its own deadline).
    gap: Duration,
}

impl std::fmt::Debug for DaemonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonClient")
            .field("requests_topic", &self.requests_topic)
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

impl DaemonClient {
    /// Connects to the daemon's broker (`mqtt`: its client id is replaced)
    /// and serves until `shutdown` completes. `gap` bounds the wait for each
    /// reply message (the first one included) of a request without `x-deadline-ms`.
    pub async fn connect(
        mqtt: &MqttConfig,
        device: &DeviceId,
        model_id: impl Into<String>,
        gap: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<DaemonClient>, HostError> {
        let err = |e: &dyn std::fmt::Display| HostError::Model(format!("daemon connection: {e}"));
        let client_id = format!("moe-edge-http-{:016x}", rand::random::<u64>());
        let reply_topic =
            topics::client_reply(&ClientId::new(client_id.clone()).map_err(|e| err(&e))?);
        let mut cfg = mqtt.clone();
        cfg.client_id = client_id;
        cfg.last_will = None;
        let (handle, mut inbox, driver) = transport::connect(&cfg).map_err(|e| err(&e))?;
        tokio::spawn(driver.run(shutdown));
        handle
            .subscribe(&reply_topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| err(&e))?;
        handle
            .wait_connected(cfg.connect_timeout)
            .await
            .map_err(|e| err(&e))?;
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbox.recv().await {
                let Some(corr) = msg.correlation_data.clone() else {
                    continue;
                };
                let tx = routes.lock().expect("pending").get(&corr).cloned();
                match tx {
                    // A full queue means the HTTP side stalled: it times out on its own.
                    Some(tx) => {
                        let _ = tx.try_send(msg.payload.clone());
                    }
                    None => log::debug!("http daemon_reply=stray topic={}", msg.topic),
                }
            }
        });
        Ok(Arc::new(DaemonClient {
            handle,
            reply_topic,
            requests_topic: topics::chat_requests(device),
            model_id: model_id.into(),
            pending,
            next: AtomicU64::new(0),
            gap,
        }))
    }

    /// Sends one request and relays its replies (see [`ChatBackend::chat`]).
    pub async fn send(
        &self,
        request: ValidRequest,
        sink: Option<ChunkSink>,
    ) -> Result<ChatCompletion, ApiError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let corr = Bytes::from(format!("http-{n:x}").into_bytes());
        let (tx, mut rx) = mpsc::channel(256);
        self.pending
            .lock()
            .expect("pending")
            .insert(corr.clone(), tx);
        let _unregister = Unregister(self.pending.clone(), corr.clone());
        let deadline = request
            .deadline_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms) + Duration::from_millis(500));
        let mut opts = PublishOptions::qos(QoS::AtLeastOnce);
        opts.response_topic = Some(self.reply_topic.clone());
        opts.correlation_data = Some(corr);
        opts.content_type = Some("application/json".into());
        opts.user_properties
            .push(("client_id".into(), "http".into()));
        let body =
            serde_json::to_vec(&request.request).map_err(|e| ApiError::internal(e.to_string()))?;
        self.handle
            .publish(&self.requests_topic, body, &opts)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Overloaded,
                    format!("cannot reach the daemon: {e}"),
                )
            })?;
        let mut acc: Option<ChunkAccumulator> = None;
        loop {
            let limit = deadline
                .unwrap_or_else(|| Instant::now() + self.gap)
                .min(Instant::now() + self.gap);
            let payload = match tokio::time::timeout_at(limit, rx.recv()).await {
                Err(_) => {
                    return Err(ApiError::new(
                        ErrorCode::DeadlineExceeded,
                        "the daemon did not answer in time",
                    ))
                }
                Ok(None) => {
                    return Err(ApiError::new(
                        ErrorCode::ShuttingDown,
                        "the daemon connection closed",
                    ))
                }
                Ok(Some(p)) => p,
            };
            let v: Value = serde_json::from_slice(&payload).map_err(|e| {
                ApiError::internal(format!("the daemon sent a reply that is not JSON: {e}"))
            })?;
            if v.get("error").is_some() {
                return Err(ErrorBody::parse(&payload)
                    .map(ErrorBody::into_api_error)
                    .unwrap_or_else(|| ApiError::internal("the daemon sent an unreadable error")));
            }
            match v.get("object").and_then(Value::as_str) {
                Some("chat.completion") => {
                    return serde_json::from_value(v)
                        .map_err(|e| ApiError::internal(format!("daemon reply: {e}")))
                }
                Some("chat.completion.chunk") => {
                    let mut c: ChatCompletionChunk = serde_json::from_value(v)
                        .map_err(|e| ApiError::internal(format!("daemon chunk: {e}")))?;
                    c.extra.remove("request_id");
                    acc.get_or_insert_with(ChunkAccumulator::new).push(&c);
                    if let Some(s) = &sink {
                        s.send(c)
                            .await
                            .map_err(|_| ApiError::internal("the caller went away"))?;
                    }
                }
                Some(DONE_OBJECT) => {
                    return acc.map(ChunkAccumulator::finish).ok_or_else(|| {
                        ApiError::internal("the daemon ended a stream with no chunks")
                    })
                }
                other => {
                    return Err(ApiError::internal(format!(
                        "the daemon sent object {other:?}"
                    )))
                }
            }
        }
    }
}

/// Forgets a request's route when its call ends (however it ends).
struct Unregister(Pending, Bytes);

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.lock() {
            p.remove(&self.1);
        }
    }
}

impl ChatBackend for DaemonClient {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn chat(
        self: Arc<Self>,
        request: ValidRequest,
        sink: Option<ChunkSink>,
    ) -> BoxFuture<'static, Result<ChatCompletion, ApiError>> {
        Box::pin(async move { self.send(request, sink).await })
    }
}

/// `moe-edge serve --http`: serves the OpenAI HTTP endpoint on `listener`
/// over the running daemon reachable through `mqtt` (the daemon's broker;
/// the client id is replaced) as device `device`, until `shutdown` completes.
pub async fn serve_http_over_daemon(
    listener: tokio::net::TcpListener,
    mqtt: &MqttConfig,
    device: &DeviceId,
    model_id: String,
    board: &crate::config::Board,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Queueing, local generation and up to two hops of the cascade.
    let gap = board.cascade.timeout * 2 + Duration::from_secs(30);
    let client = DaemonClient::connect(mqtt, device, model_id, gap, stopped(rx.clone())).await?;
    let state = super::HttpState::for_board(client, board);
    super::serve_listener(listener, state, stopped(rx)).await
}
