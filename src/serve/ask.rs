//! `moe-edge ask`: a small MQTT 5 client that sends one chat request to a
//! running daemon and waits (with a deadline) for its reply.
//!
//! Owns: the client side of the serve protocol: a private reply topic
//! (`moe-edge/clients/{client}/reply`), Correlation Data to match the reply,
//! reading a `chat.completion`, a stream of chunks up to the terminator, or
//! an error. Does not own: printing (the binary), the request's content.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::reply::DONE_OBJECT;
use super::ServeError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, ChunkAccumulator, ErrorBody,
};
use crate::transport::{self, MqttConfig, PublishOptions, QoS};
use crate::wire::topics::{self, ClientId};
use crate::wire::DeviceId;

/// One request to send.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// The broker (its client id is replaced by a fresh one).
    pub mqtt: MqttConfig,
    pub device: DeviceId,
    pub request: ChatRequest,
    /// For the whole exchange: connect, send, last reply message.
    pub timeout: Duration,
    /// Sent as the `client_id` user property (the daemon's rate-limit key).
    pub client_name: Option<String>,
}

/// Sends the request and returns the reply (a stream is added up into one
/// completion); `on_text` sees streamed content as it arrives.
/// [`ask`] on a runtime of its own (for the `ask` subcommand).
pub fn ask_blocking(
    opts: AskOptions,
    on_text: impl FnMut(&str),
) -> Result<ChatCompletion, ServeError> {
    crate::process::runtime(2)?.block_on(ask(opts, on_text))
}

pub async fn ask(
    opts: AskOptions,
    mut on_text: impl FnMut(&str),
) -> Result<ChatCompletion, ServeError> {
    let start = Instant::now();
    let client_id = format!("moe-edge-ask-{:016x}", rand::random::<u64>());
    let client = ClientId::new(client_id.clone())?;
    // Logged in: below the username, where a broker ACL lets only us read.
    let reply_topic = match &opts.mqtt.username {
        Some(user) => topics::user_reply(&ClientId::new(user.clone())?, &client),
        None => topics::client_reply(&client),
    };
    let mut mqtt = opts.mqtt.clone();
    mqtt.client_id = client_id;
    mqtt.last_will = None;
    let (handle, mut inbox, driver) = transport::connect(&mqtt)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let driver = tokio::spawn(driver.run(async move {
        let _ = stop_rx.await;
    }));
    let result = async {
        handle.subscribe(&reply_topic, QoS::AtLeastOnce).await?;
        handle.wait_connected(opts.timeout).await?;
        let correlation = Bytes::from(format!("{:016x}", rand::random::<u64>()).into_bytes());
        let mut publish = PublishOptions::qos(QoS::AtLeastOnce);
        publish.response_topic = Some(reply_topic.clone());
        publish.correlation_data = Some(correlation.clone());
        publish.content_type = Some("application/json".into());
        if let Some(c) = &opts.client_name {
            publish
                .user_properties
                .push(("client_id".into(), c.clone()));
        }
        let body =
            serde_json::to_vec(&opts.request).map_err(|e| ServeError::Invalid(e.to_string()))?;
        handle
            .publish(&topics::chat_requests(&opts.device), body, &publish)
            .await?;
        let mut acc: Option<ChunkAccumulator> = None;
        loop {
            let left = opts.timeout.saturating_sub(start.elapsed());
            let msg = match inbox.recv_timeout(left).await {
                Ok(Some(m)) => m,
                Ok(None) => return Err(ServeError::Transport(transport::TransportError::Closed)),
                Err(_) => return Err(ServeError::Timeout(opts.timeout)),
            };
            if msg.correlation_data.as_ref() != Some(&correlation) {
                continue;
            }
            let v: Value = serde_json::from_slice(&msg.payload)
                .map_err(|e| ServeError::BadReply(format!("not JSON: {e}")))?;
            if v.get("error").is_some() {
                let body = ErrorBody::parse(&msg.payload)
                    .ok_or_else(|| ServeError::BadReply(transport::preview(&msg.payload, 200)))?;
                return Err(ServeError::Reply(body.into_api_error()));
            }
            match v.get("object").and_then(Value::as_str) {
                Some("chat.completion") => {
                    return serde_json::from_value(v)
                        .map_err(|e| ServeError::BadReply(e.to_string()))
                }
                Some("chat.completion.chunk") => {
                    let c: ChatCompletionChunk = serde_json::from_value(v)
                        .map_err(|e| ServeError::BadReply(e.to_string()))?;
                    for ch in &c.choices {
                        if let Some(t) = &ch.delta.content {
                            on_text(t);
                        }
                    }
                    acc.get_or_insert_with(ChunkAccumulator::new).push(&c);
                }
                Some(o) if o == DONE_OBJECT => {
                    return acc
                        .map(ChunkAccumulator::finish)
                        .ok_or_else(|| ServeError::BadReply("stream ended with no chunks".into()))
                }
                other => return Err(ServeError::BadReply(format!("object {other:?}"))),
            }
        }
    }
    .await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
    result
}
