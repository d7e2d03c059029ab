//! Admission policy, plain synchronous code (no tokio, no clocks of its own:
//! every call takes `now`).
//!
//! Owns: the bounded wait queue ([`Admission`], a `heapless::Vec` of at most
//! [`MAX_QUEUE`] entries, capped again by the board's `queue_depth`), the
//! order in which waiting requests start (highest effective priority first,
//! ageing so nothing starves, FIFO among equals), queue-side deadline expiry,
//! the draining flag used at shutdown, the choice of which running
//! generation takes the next token step ([`pick_next`]) and the per-client
//! rate limit ([`RateLimiter`]).
//! Does not own: parsing requests, running the engine, publishing replies
//! (`serve::daemon`), or what an error reply looks like (`serve::reply`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use crate::config::MAX_QUEUE;
use crate::openai::Priority;

/// Ageing and interleaving knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// A waiting request gains one priority level per `queue_aging` spent in
    /// the queue (a `low` request waiting 7 × this outranks a fresh `safety` one).
    pub queue_aging: Duration,
    /// A running generation gains one level per `step_aging` since its last
    /// token step, so a low-priority stream still advances while urgent ones run.
    pub step_aging: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            queue_aging: Duration::from_secs(2),
            step_aging: Duration::from_millis(50),
        }
    }
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The queue holds `queue_depth` requests already.
    Full,
    /// The daemon is shutting down.
    Draining,
}

/// One waiting request.
#[derive(Debug)]
pub struct Waiting<T> {
    pub item: T,
    pub priority: Priority,
    pub arrived: Instant,
    pub deadline: Option<Instant>,
    seq: u64,
}

/// Priority plus ageing, in priority levels.
pub fn effective_priority(priority: Priority, waited: Duration, aging: Duration) -> f64 {
    let aging = aging.as_secs_f64().max(1e-6);
    priority.0 as f64 + waited.as_secs_f64() / aging
}

/// The bounded wait queue.
#[derive(Debug)]
pub struct Admission<T> {
    entries: heapless::Vec<Waiting<T>, MAX_QUEUE>,
    capacity: usize,
    next_seq: u64,
    policy: Policy,
    draining: bool,
}

impl<T> Admission<T> {
    /// `capacity` is clamped to `1..=MAX_QUEUE`.
    pub fn new(capacity: usize, policy: Policy) -> Self {
        Admission {
            entries: heapless::Vec::new(),
            capacity: capacity.clamp(1, MAX_QUEUE),
            next_seq: 0,
            policy,
            draining: false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// From now on every push is refused with [`Rejected::Draining`].
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Queues a request, or gives it back at once with the reason.
    pub fn push(
        &mut self,
        item: T,
        priority: Priority,
        arrived: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), (T, Rejected)> {
        if self.draining {
            return Err((item, Rejected::Draining));
        }
        if self.entries.len() >= self.capacity {
            return Err((item, Rejected::Full));
        }
        let w = Waiting {
            item,
            priority,
            arrived,
            deadline,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.entries.push(w).map_err(|w| (w.item, Rejected::Full))
    }

    /// Takes out the request to start next: highest effective priority,
    /// then the earliest arrival.
    pub fn pop(&mut self, now: Instant) -> Option<Waiting<T>> {
        let aging = self.policy.queue_aging;
        let best = self
            .entries
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| {
                let ea =
                    effective_priority(a.priority, now.saturating_duration_since(a.arrived), aging);
                let eb =
                    effective_priority(b.priority, now.saturating_duration_since(b.arrived), aging);
                ea.total_cmp(&eb).then(b.seq.cmp(&a.seq))
            })
            .map(|(i, _)| i)?;
        Some(self.entries.remove(best))
    }

    /// Removes and returns every request whose deadline is at or before `now`
    /// (they are answered, never run).
    pub fn take_expired(&mut self, now: Instant) -> Vec<Waiting<T>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].deadline.is_some_and(|d| d <= now) {
                out.push(self.entries.remove(i));
            } else {
                i += 1;
            }
        }
        out
    }

    /// Removes every waiting request (shutdown), oldest first.
    pub fn take_all(&mut self) -> Vec<Waiting<T>> {
        let mut out: Vec<Waiting<T>> = Vec::with_capacity(self.entries.len());
        while let Some(w) = self.entries.pop() {
            out.push(w);
        }
        out.sort_by_key(|w| w.seq);
        out
    }

    /// The earliest deadline among waiting requests.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|w| w.deadline).min()
    }
}

/// What [`pick_next`] needs to know about a running generation.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub priority: Priority,
    /// When it last took a step (or started).
    pub last_step: Instant,
}

/// Which running generation takes the next token step: highest priority,
/// aged by the time since its last step; ties go to the one that waited
/// longest (round robin among equals).
pub fn pick_next(running: &[Running], now: Instant, policy: &Policy) -> Option<usize> {
    running
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| {
            let ea = effective_priority(
                a.priority,
                now.saturating_duration_since(a.last_step),
                policy.step_aging,
            );
            let eb = effective_priority(
                b.priority,
                now.saturating_duration_since(b.last_step),
                policy.step_aging,
            );
            // ties: the one that waited longest, then the earlier admitted
            ea.total_cmp(&eb)
                .then(b.last_step.cmp(&a.last_step))
                .then(j.cmp(i))
        })
        .map(|(i, _)| i)
}

/// A token bucket per client: `rate` requests per second, bursts of `burst`.
/// At most `max_clients` buckets are kept; when full, the least recently
/// seen client is forgotten (it starts again with a full bucket).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_clients: usize,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate <= 0` or not finite disables the limit.
    pub fn new(rate: f64, max_clients: usize) -> Self {
        RateLimiter {
            rate,
            burst: rate.max(1.0),
            max_clients: max_clients.max(1),
            buckets: HashMap::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.rate.is_finite() && self.rate > 0.0
    }

    /// Whether `client` may send one more request now (and counts it).
    pub fn allow(&mut self, client: &str, now: Instant) -> bool {
        if !self.is_enabled() {
            return true;
        }
        if !self.buckets.contains_key(client) && self.buckets.len() >= self.max_clients {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn clients(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn full_queue_refuses_at_once_and_keeps_what_it_has() {
        let t0 = Instant::now();
        let mut q = Admission::new(2, Policy::default());
        q.push(1, Priority::NORMAL, t0, None).unwrap();
        q.push(2, Priority::NORMAL, t0, None).unwrap();
        assert_eq!(
            q.push(3, Priority::SAFETY, t0, None),
            Err((3, Rejected::Full))
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(t0).unwrap().item, 1);
        assert_eq!(q.pop(t0).unwrap().item, 2);
        assert!(q.pop(t0).is_none());
    }

    #[test]
    fn capacity_is_bounded_by_the_compiled_maximum() {
        let q: Admission<()> = Admission::new(10_000, Policy::default());
        assert_eq!(q.capacity(), MAX_QUEUE);
        let q: Admission<()> = Admission::new(0, Policy::default());
        assert_eq!(q.capacity(), 1);
    }

    #[test]
    fn higher_priority_first_fifo_among_equals() {
        let t0 = Instant::now();
        let mut q = Admission::new(8, Policy::default());
        q.push("playlist-1", Priority::LOW, t0, None).unwrap();
        q.push("nav-1", Priority::NORMAL, t0, None).unwrap();
        q.push("brake-warning", Priority::SAFETY, t0 + ms(1), None)
            .unwrap();
        q.push("nav-2", Priority::NORMAL, t0 + ms(2), None).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop(t0 + ms(3)).map(|w| w.item)).collect();
        assert_eq!(order, ["brake-warning", "nav-1", "nav-2", "playlist-1"]);
    }

    #[test]
    fn ageing_prevents_starvation() {
        let t0 = Instant::now();
        let policy = Policy {
            queue_aging: ms(100),
            ..Policy::default()
        };
        let mut q = Admission::new(8, policy);
        q.push("old-low", Priority::LOW, t0, None).unwrap();
        // 2 + 800/100 = 10 > 9: the old low request beats a fresh safety one.
        q.push("new-safety", Priority::SAFETY, t0 + ms(800), None)
            .unwrap();
        assert_eq!(q.pop(t0 + ms(800)).unwrap().item, "old-low");
        // Not yet aged enough: safety wins.
        let mut q = Admission::new(8, policy);
        q.push("old-low", Priority::LOW, t0, None).unwrap();
        q.push("new-safety", Priority::SAFETY, t0 + ms(300), None)
            .unwrap();
        assert_eq!(q.pop(t0 + ms(300)).unwrap().item, "new-safety");
    }

    #[test]
    fn expired_requests_leave_the_queue_unrun() {
        let t0 = Instant::now();
        let mut q = Admission::new(8, Policy::default());
        q.push(1, Priority::NORMAL, t0, Some(t0 + ms(10))).unwrap();
        q.push(2, Priority::NORMAL, t0, None).unwrap();
        q.push(3, Priority::NORMAL, t0, Some(t0 + ms(50))).unwrap();
        assert_eq!(q.next_deadline(), Some(t0 + ms(10)));
        assert!(q.take_expired(t0 + ms(5)).is_empty());
        let gone: Vec<_> = q
            .take_expired(t0 + ms(10))
            .into_iter()
            .map(|w| w.item)
            .collect();
        assert_eq!(gone, [1]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_deadline(), Some(t0 + ms(50)));
    }

    #[test]
    fn draining_refuses_and_hands_back_everything() {
        let t0 = Instant::now();
        let mut q = Admission::new(8, Policy::default());
        for i in 0..3 {
            q.push(i, Priority(i as u8), t0, None).unwrap();
        }
        q.start_draining();
        assert_eq!(
            q.push(9, Priority::NORMAL, t0, None),
            Err((9, Rejected::Draining))
        );
        let all: Vec<_> = q.take_all().into_iter().map(|w| w.item).collect();
        assert_eq!(all, [0, 1, 2]);
        assert!(q.is_empty());
    }

    #[test]
    fn running_generations_interleave_by_priority_without_starving() {
        let t0 = Instant::now();
        let policy = Policy::default(); // step_aging 50 ms
        let mut run = [
            Running {
                priority: Priority::LOW,
                last_step: t0,
            },
            Running {
                priority: Priority::SAFETY,
                last_step: t0,
            },
        ];
        // Simulate 1 ms steps: safety takes almost all of them, low still advances.
        let mut steps = [0u32; 2];
        for k in 1..=1000u64 {
            let now = t0 + ms(k);
            let i = pick_next(&run, now, &policy).unwrap();
            steps[i] += 1;
            run[i].last_step = now;
        }
        assert!(steps[1] > 900, "{steps:?}");
        assert!(steps[0] >= 2, "low starved: {steps:?}");
        // Equal priorities alternate.
        let mut run = [
            Running {
                priority: Priority::NORMAL,
                last_step: t0,
            },
            Running {
                priority: Priority::NORMAL,
                last_step: t0,
            },
        ];
        let mut seq = Vec::new();
        for k in 1..=4u64 {
            let now = t0 + ms(k);
            let i = pick_next(&run, now, &policy).unwrap();
            seq.push(i);
            run[i].last_step = now;
        }
        assert_eq!(seq, [0, 1, 0, 1]);
        assert_eq!(pick_next(&[], t0, &policy), None);
    }

    #[test]
    fn rate_limit_per_client_refills() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2.0, 16);
        assert!(r.allow("a", t0));
        assert!(r.allow("a", t0));
        assert!(!r.allow("a", t0));
        assert!(r.allow("b", t0), "clients are independent");
        assert!(r.allow("a", t0 + ms(500)), "refilled one token");
        assert!(!r.allow("a", t0 + ms(500)));
        let mut off = RateLimiter::new(0.0, 16);
        for _ in 0..100 {
            assert!(off.allow("a", t0));
        }
    }

    #[test]
    fn rate_limiter_memory_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 4);
        for i in 0..100u64 {
            r.allow(&format!("c{i}"), t0 + ms(i));
        }
        assert_eq!(r.clients(), 4);
    }
}
