//! The order of acknowledgements: MQTT wants PUBACKs in the order the
//! PUBLISHes arrived (see the parent module's doc). Each QoS ≥ 1 message
//! takes a ticket on arrival; a ticket's ack is released only when every
//! earlier one is done; the acker task sends released acks.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::AsyncClient;

/// Orders acknowledgements: see the module doc.
#[derive(Default)]
pub(super) struct AckQueue {
    /// Bumped on every ConnAck: tickets of an older connection are void.
    pub(super) epoch: u64,
    /// Sequence number of `pending[0]`.
    base: u64,
    /// (ack token, done) in arrival order.
    pending: std::collections::VecDeque<(Publish, bool)>,
    /// Released acks, in order, for the acker task.
    ready: Vec<Publish>,
}

/// A QoS ≥ 1 message's place in the ack order.
#[derive(Debug, Clone, Copy)]
pub(super) struct AckTicket {
    pub(super) epoch: u64,
    pub(super) seq: u64,
}

pub(super) struct Acks {
    pub(super) queue: Mutex<AckQueue>,
    pub(super) wake: tokio::sync::Notify,
}

impl Acks {
    pub(super) fn new() -> Acks {
        Acks {
            queue: Mutex::new(AckQueue::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// A ticket for a QoS ≥ 1 publish (`None` for QoS 0).
    pub(super) fn take(&self, p: &Publish) -> Option<AckTicket> {
        if p.qos == QoS::AtMostOnce {
            return None;
        }
        let mut token = Publish::new("", p.qos, Bytes::new(), None);
        token.pkid = p.pkid;
        let mut q = self.queue.lock().unwrap();
        let seq = q.base + q.pending.len() as u64;
        q.pending.push_back((token, false));
        Some(AckTicket {
            epoch: q.epoch,
            seq,
        })
    }

    /// Marks a message done; releases every ack now in order.
    pub(super) fn done(&self, ticket: Option<AckTicket>) {
        let Some(t) = ticket else { return };
        let mut q = self.queue.lock().unwrap();
        if t.epoch != q.epoch || t.seq < q.base {
            return;
        }
        let idx = (t.seq - q.base) as usize;
        let Some(entry) = q.pending.get_mut(idx) else {
            return;
        };
        entry.1 = true;
        let mut released = false;
        while q.pending.front().is_some_and(|(_, done)| *done) {
            let (token, _) = q.pending.pop_front().unwrap();
            q.base += 1;
            q.ready.push(token);
            released = true;
        }
        drop(q);
        if released {
            self.wake.notify_one();
        }
    }

    /// A new connection: pending packet ids belong to the old one.
    pub(super) fn reset(&self) {
        let mut q = self.queue.lock().unwrap();
        q.epoch += 1;
        q.base = 0;
        q.pending.clear();
        q.ready.clear();
    }

    pub(super) fn take_ready(&self) -> Vec<Publish> {
        std::mem::take(&mut self.queue.lock().unwrap().ready)
    }
}

/// Sends released acks in order. Runs beside the driver, never inside it
/// (rumqtt#1025): awaiting the request channel here is safe.
pub(super) async fn acker(acks: Arc<Acks>, client: AsyncClient) {
    loop {
        acks.wake.notified().await;
        for token in acks.take_ready() {
            if client.ack(&token).await.is_err() {
                return; // event loop gone
            }
        }
    }
}
