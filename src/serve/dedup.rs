//! Duplicate requests: MQTT QoS 1 delivers at least once, so a broker that
//! restarts (or a client that retransmits after a reconnect) can hand the
//! daemon the same request twice. [`Dedup`] remembers the identities of the
//! requests accepted recently (reply topic + correlation data, or the body's
//! `id` for MQTT 3.1.1 apps) so that every request gets exactly one final
//! reply. Bounded in entries and in age; plain synchronous code, no I/O.
//! Requests without an identity (no correlation data, no `id`) are never
//! taken for duplicates.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A request's identity: its reply topic and its correlation data or `id`.
pub type Key = (String, Vec<u8>);

#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    ttl: Duration,
    order: VecDeque<(Instant, Key)>,
    seen: HashSet<Key>,
}

impl Dedup {
    /// Remembers at most `capacity` identities, each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Dedup {
        Dedup {
            capacity: capacity.max(1),
            ttl,
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// The identity of a request, if it has one.
    pub fn key(topic: &str, correlation: Option<&[u8]>, request_id: Option<&str>) -> Option<Key> {
        match (correlation, request_id) {
            (Some(c), _) if !c.is_empty() => Some((topic.to_string(), c.to_vec())),
            (_, Some(id)) if !id.is_empty() => {
                let mut k = b"id:".to_vec();
                k.extend_from_slice(id.as_bytes());
                Some((topic.to_string(), k))
            }
            _ => None,
        }
    }

    /// True the first time `key` is seen (and remembers it); false for a
    /// duplicate of a request accepted within the last `ttl`.
    pub fn first_seen(&mut self, key: Key, now: Instant) -> bool {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < self.ttl && self.order.len() < self.capacity {
                break;
            }
            let (_, k) = self.order.pop_front().expect("front exists");
            self.seen.remove(&k);
        }
        if self.seen.contains(&key) {
            return false;
        }
        self.seen.insert(key.clone());
        self.order.push_back((now, key));
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(t: &str, c: &str) -> Key {
        Dedup::key(t, Some(c.as_bytes()), None).unwrap()
    }

    #[test]
    fn a_repeat_is_a_duplicate_until_it_ages_out() {
        let t0 = Instant::now();
        let mut d = Dedup::new(16, Duration::from_secs(60));
        assert!(d.first_seen(k("a/r", "1"), t0));
        assert!(!d.first_seen(k("a/r", "1"), t0 + Duration::from_secs(1)));
        assert!(d.first_seen(k("a/r", "2"), t0), "another correlation");
        assert!(d.first_seen(k("b/r", "1"), t0), "another reply topic");
        assert!(
            d.first_seen(k("a/r", "1"), t0 + Duration::from_secs(61)),
            "aged out"
        );
    }

    #[test]
    fn bounded_in_entries() {
        let t0 = Instant::now();
        let mut d = Dedup::new(3, Duration::from_secs(600));
        for i in 0..10 {
            assert!(d.first_seen(k("a", &i.to_string()), t0));
            assert!(d.len() <= 3);
        }
        assert!(!d.first_seen(k("a", "9"), t0), "recent ones are kept");
        assert!(d.first_seen(k("a", "0"), t0), "the oldest were dropped");
    }

    #[test]
    fn identity_needs_correlation_or_id() {
        assert_eq!(Dedup::key("t", None, None), None);
        assert_eq!(Dedup::key("t", Some(b""), None), None);
        assert_ne!(
            Dedup::key("t", Some(b"x"), None),
            Dedup::key("t", None, Some("x")),
            "correlation and body id do not collide"
        );
    }
}
