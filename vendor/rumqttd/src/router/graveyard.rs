use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{
    scheduler::{PauseReason, Tracker},
    ConnectionEvents,
};

pub struct Graveyard {
    connections: HashMap<String, SavedState>,
}

impl Graveyard {
    pub fn new() -> Graveyard {
        Graveyard {
            connections: HashMap::new(),
        }
    }

    /// Add a new connection.
    /// Return tracker of previous connection if connection id already exists
    pub fn retrieve(&mut self, id: &str) -> Option<SavedState> {
        self.connections.remove(id)
    }

    /// moe-edge: whether a saved (persistent) session subscribes to `filter`.
    pub fn subscribes(&self, filter: &str) -> bool {
        self.connections.values().any(|saved| {
            saved
                .session_state
                .as_ref()
                .is_some_and(|s| s.subscriptions.contains(filter))
        })
    }

    /// moe-edge: removes the saved sessions whose expiry has passed and
    /// returns the filters they subscribed to (whose logs may now be unused).
    /// Upstream keeps every persistent session forever.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .connections
            .iter()
            .filter(|(_, s)| s.expires_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut filters = Vec::new();
        for id in gone {
            if let Some(saved) = self.connections.remove(&id) {
                if let Some(state) = saved.session_state {
                    filters.extend(state.subscriptions);
                }
            }
        }
        filters
    }

    /// Save connection tracker; moe-edge: it expires `expiry` from now.
    pub fn save_state(
        &mut self,
        mut tracker: Tracker,
        subscriptions: HashSet<String>,
        metrics: ConnectionEvents,
        unacked_pubrels: VecDeque<u16>,
        expiry: Duration,
    ) {
        tracker.pause(PauseReason::Busy);
        let id = tracker.id.clone();

        let session_state = SessionState {
            tracker,
            subscriptions,
            unacked_pubrels,
        };

        self.connections.insert(
            id,
            SavedState {
                session_state: Some(session_state),
                metrics,
                expires_at: Some(Instant::now() + expiry),
            },
        );
    }

    /// Save only metrics for connection
    pub fn save_metrics(&mut self, id: String, metrics: ConnectionEvents) {
        self.connections.insert(
            id,
            SavedState {
                session_state: None,
                metrics,
                expires_at: None,
            },
        );
    }
}

#[derive(Debug)]
pub struct SavedState {
    pub session_state: Option<SessionState>,
    pub metrics: ConnectionEvents,
    /// moe-edge: when the saved session ends (None: never, metrics only).
    pub expires_at: Option<Instant>,
}

#[derive(Debug)]
pub struct SessionState {
    pub tracker: Tracker,
    pub subscriptions: HashSet<String>,
    // used for pubrel in qos2
    pub unacked_pubrels: VecDeque<u16>,
}
