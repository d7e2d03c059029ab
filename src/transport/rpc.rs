//! Request/response over MQTT 5: response topic + correlation data.
//!
//! Owns: one response topic per client, a u64 correlation counter, the bounded
//! map of pending calls, deadlines (a call always resolves: reply, timeout or
//! error) and the counting of late or stray replies. Does not own: what a
//! request or reply means (`wire::frame` for experts, OpenAI JSON for `ask`),
//! nor what to do on a timeout (the caller's policy).
//!
//! The response topic is subscribed at QoS 0: a reply is useful only before
//! its deadline, so a lost reply is a timeout, not a redelivery. Replies skip
//! the inbox: the driver hands them straight to the waiting call (a map look-up
//! and a oneshot send, never blocking). A reply whose call has already timed
//! out, or was cancelled, is dropped and counted as late.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::client::{Message, MqttHandle, PublishOptions, QoS, Route};
use super::TransportError;

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no reply before the deadline ({waited_ms} ms)")]
    Timeout { waited_ms: u64 },
    #[error("{limit} calls already pending")]
    TooManyPending { limit: usize },
    #[error("publish failed: {0}")]
    Publish(#[source] TransportError),
    #[error("the rpc client was closed")]
    Closed,
}

/// Settings of one [`Rpc`].
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Where replies come back; unique to this client (e.g.
    /// `wire::topics::expert_reply(device)` or `client_reply(client)`).
    pub response_topic: String,
    /// Most calls in flight at once.
    pub max_pending: usize,
    /// QoS of the requests.
    pub qos: QoS,
}

impl RpcConfig {
    pub fn new(response_topic: impl Into<String>) -> RpcConfig {
        RpcConfig {
            response_topic: response_topic.into(),
            max_pending: 256,
            qos: QoS::AtMostOnce,
        }
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    replies: AtomicU64,
    timeouts: AtomicU64,
    late: AtomicU64,
    stray: AtomicU64,
}

/// A copy of an [`Rpc`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RpcStats {
    pub calls: u64,
    pub replies: u64,
    pub timeouts: u64,
    /// Replies for calls that had already timed out or been dropped.
    pub late: u64,
    /// Messages on the response topic without valid correlation data.
    pub stray: u64,
    pub pending: usize,
}

struct Inner {
    pending: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    next: AtomicU64,
    counters: Counters,
}

impl Inner {
    fn complete(&self, msg: Message) {
        let id = match msg.correlation_data.as_deref().map(<[u8; 8]>::try_from) {
            Some(Ok(b)) => u64::from_be_bytes(b),
            _ => {
                let n = self.counters.stray.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    log::warn!(
                        "rpc reply without valid correlation data topic={} stray={n}",
                        msg.topic
                    );
                }
                return;
            }
        };
        let waiter = self.pending.lock().unwrap().remove(&id);
        // A send error means the caller gave up just now: late too.
        match waiter.map(|tx| tx.send(msg).is_ok()) {
            Some(true) => {
                self.counters.replies.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let n = self.counters.late.fetch_add(1, Ordering::Relaxed) + 1;
                log::debug!("rpc late reply dropped correlation={id} late={n}");
            }
        }
    }
}

/// Removes a call's entry however the call ends (reply, timeout, cancel).
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.pending.lock().unwrap().remove(&self.id);
    }
}

/// An RPC client on a handle. Clone it freely; all clones share the pending map.
#[derive(Clone)]
pub struct Rpc {
    handle: MqttHandle,
    config: Arc<RpcConfig>,
    inner: Arc<Inner>,
}

impl Rpc {
    /// Routes the response topic to this client and subscribes to it (again
    /// after every reconnect, as all subscriptions).
    pub async fn new(handle: &MqttHandle, config: RpcConfig) -> Result<Rpc, TransportError> {
        if config.max_pending == 0 {
            return Err(TransportError::BadOption(
                "rpc max_pending must be > 0".into(),
            ));
        }
        crate::wire::topics::validate_reply_topic(&config.response_topic)
            .map_err(|e| TransportError::BadOption(e.to_string()))?;
        let inner = Arc::new(Inner {
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            counters: Counters::default(),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let route: Route = Arc::new(move |msg| {
            if let Some(inner) = weak.upgrade() {
                inner.complete(msg);
            }
        });
        handle.set_route(&config.response_topic, route);
        if let Err(e) = handle
            .subscribe(&config.response_topic, QoS::AtMostOnce)
            .await
        {
            handle.remove_route(&config.response_topic);
            return Err(e);
        }
        Ok(Rpc {
            handle: handle.clone(),
            config: Arc::new(config),
            inner,
        })
    }

    pub fn response_topic(&self) -> &str {
        &self.config.response_topic
    }

    /// Publishes `payload` to `topic` and waits for the reply's payload until
    /// `deadline`.
    pub async fn call(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        deadline: impl Into<Instant>,
    ) -> Result<Bytes, RpcError> {
        self.call_with(topic, payload, deadline, PublishOptions::default())
            .await
            .map(|m| m.payload)
    }

    /// Like [`Rpc::call`] with extra publish properties (user properties,
    /// content type; QoS, response topic and correlation data are set here)
    /// and the whole reply message (its user properties) as the result.
    pub async fn call_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        deadline: impl Into<Instant>,
        mut options: PublishOptions,
    ) -> Result<Message, RpcError> {
        let deadline = deadline.into();
        let started = Instant::now();
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.inner.pending.lock().unwrap();
            if pending.len() >= self.config.max_pending {
                return Err(RpcError::TooManyPending {
                    limit: self.config.max_pending,
                });
            }
            pending.insert(id, tx);
        }
        let _guard = PendingGuard {
            inner: &self.inner,
            id,
        };
        self.inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        options.qos = self.config.qos;
        options.retain = false;
        options.response_topic = Some(self.config.response_topic.clone());
        options.correlation_data = Some(Bytes::copy_from_slice(&id.to_be_bytes()));
        let timeout = || {
            self.inner.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            RpcError::Timeout {
                waited_ms: started.elapsed().as_millis() as u64,
            }
        };
        match tokio::time::timeout_at(deadline, self.handle.publish(topic, payload, &options)).await
        {
            Err(_) => return Err(timeout()),
            Ok(Err(e)) => return Err(RpcError::Publish(e)),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(msg)) => Ok(msg),
            Ok(Err(_)) => Err(RpcError::Closed),
            Err(_) => Err(timeout()),
        }
    }

    /// Calls with a timeout instead of a deadline.
    pub async fn call_timeout(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        self.call(topic, payload, Instant::now() + timeout).await
    }

    pub fn stats(&self) -> RpcStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RpcStats {
            calls: l(&c.calls),
            replies: l(&c.replies),
            timeouts: l(&c.timeouts),
            late: l(&c.late),
            stray: l(&c.stray),
            pending: self.inner.pending.lock().unwrap().len(),
        }
    }
}

/// Publishes `reply` as the answer to `request` (MQTT 5 response topic and
/// correlation data copied over). Returns `false` if the request named no
/// response topic (an MQTT 3.1.1 sender: the caller uses the body's topic).
pub async fn respond(
    handle: &MqttHandle,
    request: &Message,
    reply: impl Into<Bytes>,
    mut options: PublishOptions,
) -> Result<bool, TransportError> {
    let Some(topic) = request.response_topic.as_deref() else {
        return Ok(false);
    };
    options.correlation_data = request.correlation_data.clone();
    options.retain = false;
    handle.publish(topic, reply, &options).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(corr: Option<&[u8]>) -> Message {
        Message {
            topic: "r".into(),
            payload: Bytes::from_static(b"ok"),
            qos: QoS::AtMostOnce,
            retain: false,
            response_topic: None,
            correlation_data: corr.map(Bytes::copy_from_slice),
            user_properties: vec![],
            content_type: None,
        }
    }

    #[test]
    fn complete_matches_counts_late_and_stray() {
        let inner = Inner {
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            counters: Counters::default(),
        };
        let (tx, mut rx) = oneshot::channel();
        inner.pending.lock().unwrap().insert(7, tx);
        inner.complete(msg(Some(&7u64.to_be_bytes())));
        assert_eq!(rx.try_recv().unwrap().payload, Bytes::from_static(b"ok"));
        inner.complete(msg(Some(&7u64.to_be_bytes())));
        assert_eq!(inner.counters.late.load(Ordering::Relaxed), 1);
        inner.complete(msg(Some(b"abc")));
        inner.complete(msg(None));
        assert_eq!(inner.counters.stray.load(Ordering::Relaxed), 2);
        {
            let _g = PendingGuard {
                inner: &inner,
                id: 9,
            };
            inner
                .pending
                .lock()
                .unwrap()
                .insert(9, oneshot::channel().0);
        }
        assert!(inner.pending.lock().unwrap().is_empty());
    }
}
