//! What travels and what is counted: outgoing publish options, incoming
//! messages, connection state and the client's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};

use super::{QoS, LOG_PAYLOAD};
use crate::transport::preview;

/// Properties of an outgoing publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub qos: QoS,
    pub retain: bool,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// Seconds the broker keeps the message for offline subscribers.
    pub message_expiry: Option<u32>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            qos: QoS::AtMostOnce,
            retain: false,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            content_type: None,
            message_expiry: None,
        }
    }
}

impl PublishOptions {
    pub fn qos(qos: QoS) -> Self {
        PublishOptions {
            qos,
            ..Default::default()
        }
    }

    pub(super) fn properties(&self) -> Option<PublishProperties> {
        if self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.content_type.is_none()
            && self.message_expiry.is_none()
        {
            return None;
        }
        Some(PublishProperties {
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            content_type: self.content_type.clone(),
            message_expiry_interval: self.message_expiry,
            ..Default::default()
        })
    }
}

/// An incoming publish.
#[derive(Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload", &preview(&self.payload, LOG_PAYLOAD))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("response_topic", &self.response_topic)
            .field("correlation_data", &self.correlation_data)
            .field("user_properties", &self.user_properties)
            .finish()
    }
}

impl Message {
    /// The value of the first user property named `key`.
    pub fn user_property(&self, key: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `Err(topic length)` if the topic is not UTF-8.
    pub(super) fn from_publish(p: Publish) -> Result<Message, usize> {
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            return Err(p.topic.len());
        };
        let topic = topic.to_owned();
        let props = p.properties.unwrap_or_default();
        Ok(Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
            content_type: props.content_type,
        })
    }
}

/// Connection state, as seen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    /// Lost; the driver is backing off before the next attempt.
    Disconnected,
    /// The driver has returned.
    Stopped,
}

/// Counters (monotonic).
#[derive(Debug, Default)]
pub struct Stats {
    pub(super) connects: AtomicU64,
    pub(super) connection_errors: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) routed: AtomicU64,
    pub(super) dropped_qos0: AtomicU64,
    pub(super) dropped_qos1: AtomicU64,
    pub(super) delayed_qos1: AtomicU64,
    pub(super) bad_topic: AtomicU64,
    pub(super) refused: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Successful CONNACKs.
    pub connects: u64,
    pub connection_errors: u64,
    /// Publishes received (all).
    pub received: u64,
    /// Publishes handed to a route (RPC replies) instead of the inbox.
    pub routed: u64,
    /// QoS 0 publishes dropped on a full inbox.
    pub dropped_qos0: u64,
    /// QoS ≥ 1 publishes dropped after `overflow_wait` on a full inbox.
    pub dropped_qos1: u64,
    /// QoS ≥ 1 publishes that had to wait for inbox room.
    pub delayed_qos1: u64,
    /// Publishes whose topic was not UTF-8.
    pub bad_topic: u64,
    /// Subscriptions and QoS 1 publishes the broker refused (a SUBACK or
    /// PUBACK failure code, e.g. denied by an ACL).
    pub refused: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            connects: l(&self.connects),
            connection_errors: l(&self.connection_errors),
            received: l(&self.received),
            routed: l(&self.routed),
            dropped_qos0: l(&self.dropped_qos0),
            dropped_qos1: l(&self.dropped_qos1),
            delayed_qos1: l(&self.delayed_qos1),
            bad_topic: l(&self.bad_topic),
            refused: l(&self.refused),
        }
    }
}

pub(super) fn bump(a: &AtomicU64) -> u64 {
    a.fetch_add(1, Ordering::Relaxed) + 1
}

/// Logs the 1st, 2nd, 4th, 8th... occurrence only.
pub(super) fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}
