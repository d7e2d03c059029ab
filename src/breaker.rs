//! A circuit breaker for one remote dependency (a hop of the cascade, the
//! host serving remote experts): pure state, no I/O, no clock of its own
//! (every call is given `now`), so it is tested with a fake clock and used
//! under a plain mutex.
//!
//! Closed (calls go through) → open after `failures` consecutive failures
//! (calls are refused at once, costing nothing) → half-open once `cooldown`
//! has passed: exactly one probe call goes through; its success closes the
//! breaker, its failure opens it again for another cooldown. A probe whose
//! outcome is never reported (its task was dropped) is given up after one more
//! cooldown, so a lost probe cannot wedge the breaker half-open.
//! Not here: what counts as a failure (the cascade, `experts::remote`
//! decide) or timeouts.

use std::time::{Duration, Instant};

/// The breaker's state, as shown in logs and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// What [`Breaker::allow`] decides for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go ahead.
    Yes,
    /// Half-open: go ahead as the single probe; report its outcome.
    Probe,
    /// Open (or a probe is in flight): do not call; retry after this long.
    No { retry_in: Duration },
}

impl Admit {
    pub fn is_allowed(self) -> bool {
        !matches!(self, Admit::No { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    consecutive: u32,
    /// Set while open: when it opened.
    opened_at: Option<Instant>,
    /// Set while a half-open probe is in flight: when it started.
    probe_since: Option<Instant>,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (at least 1) for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            consecutive: 0,
            opened_at: None,
            probe_since: None,
        }
    }

    pub fn state(&self, now: Instant) -> State {
        match (self.opened_at, self.probe_since) {
            (None, _) => State::Closed,
            (Some(_), Some(_)) => State::HalfOpen,
            (Some(t), None) if now.saturating_duration_since(t) >= self.cooldown => State::HalfOpen,
            (Some(_), None) => State::Open,
        }
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.consecutive
    }

    /// May a call go through now? A `Probe` answer claims the single probe slot.
    pub fn allow(&mut self, now: Instant) -> Admit {
        let Some(opened) = self.opened_at else {
            return Admit::Yes;
        };
        if let Some(since) = self.probe_since {
            let waited = now.saturating_duration_since(since);
            if waited < self.cooldown {
                return Admit::No {
                    retry_in: self.cooldown - waited,
                };
            }
            // The probe never reported back: give another caller the slot.
        }
        let open_for = now.saturating_duration_since(opened);
        if open_for < self.cooldown && self.probe_since.is_none() {
            return Admit::No {
                retry_in: self.cooldown - open_for,
            };
        }
        self.probe_since = Some(now);
        Admit::Probe
    }

    /// A call succeeded: closes the breaker and clears the failure count.
    pub fn record_success(&mut self) {
        self.consecutive = 0;
        self.opened_at = None;
        self.probe_since = None;
    }

    /// A call failed: counts it; opens (again) at the threshold or when a probe failed.
    /// Returns true when this failure opened the breaker.
    pub fn record_failure(&mut self, now: Instant) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        let was_probe = self.probe_since.take().is_some();
        if was_probe || (self.opened_at.is_none() && self.consecutive >= self.threshold) {
            self.opened_at = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: an origin and an offset moved by hand.
    struct Clock {
        origin: Instant,
        at: Duration,
    }

    impl Clock {
        fn new() -> Self {
            Clock {
                origin: Instant::now(),
                at: Duration::ZERO,
            }
        }
        fn now(&self) -> Instant {
            self.origin + self.at
        }
        fn advance(&mut self, ms: u64) {
            self.at += Duration::from_millis(ms);
        }
    }

    #[test]
    fn opens_after_n_consecutive_failures() {
        let c = Clock::new();
        let mut b = Breaker::new(3, Duration::from_secs(5));
        assert_eq!(b.allow(c.now()), Admit::Yes);
        assert!(!b.record_failure(c.now()));
        assert!(!b.record_failure(c.now()));
        assert_eq!(b.state(c.now()), State::Closed);
        assert!(b.record_failure(c.now()));
        assert_eq!(b.state(c.now()), State::Open);
        assert_eq!(
            b.allow(c.now()),
            Admit::No {
                retry_in: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn success_resets_the_count() {
        let c = Clock::new();
        let mut b = Breaker::new(3, Duration::from_secs(5));
        b.record_failure(c.now());
        b.record_failure(c.now());
        b.record_success();
        b.record_failure(c.now());
        b.record_failure(c.now());
        assert_eq!(b.state(c.now()), State::Closed);
        assert_eq!(b.failures(), 2);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_success_closes() {
        let mut c = Clock::new();
        let mut b = Breaker::new(2, Duration::from_millis(1000));
        b.record_failure(c.now());
        b.record_failure(c.now());
        c.advance(400);
        assert_eq!(
            b.allow(c.now()),
            Admit::No {
                retry_in: Duration::from_millis(600)
            }
        );
        c.advance(600);
        assert_eq!(b.state(c.now()), State::HalfOpen);
        assert_eq!(b.allow(c.now()), Admit::Probe);
        // A second caller while the probe is in flight is refused.
        c.advance(10);
        assert!(!b.allow(c.now()).is_allowed());
        b.record_success();
        assert_eq!(b.state(c.now()), State::Closed);
        assert_eq!(b.allow(c.now()), Admit::Yes);
    }

    #[test]
    fn failed_probe_reopens_for_a_full_cooldown() {
        let mut c = Clock::new();
        let mut b = Breaker::new(1, Duration::from_millis(1000));
        assert!(b.record_failure(c.now()));
        c.advance(1000);
        assert_eq!(b.allow(c.now()), Admit::Probe);
        c.advance(200);
        assert!(b.record_failure(c.now()));
        assert_eq!(b.state(c.now()), State::Open);
        c.advance(999);
        assert!(!b.allow(c.now()).is_allowed());
        c.advance(1);
        assert_eq!(b.allow(c.now()), Admit::Probe);
    }

    #[test]
    fn a_lost_probe_is_given_up_after_a_cooldown() {
        let mut c = Clock::new();
        let mut b = Breaker::new(1, Duration::from_millis(100));
        b.record_failure(c.now());
        c.advance(100);
        assert_eq!(b.allow(c.now()), Admit::Probe);
        // Its outcome is never reported.
        c.advance(99);
        assert!(!b.allow(c.now()).is_allowed());
        c.advance(1);
        assert_eq!(b.allow(c.now()), Admit::Probe);
    }

    #[test]
    fn threshold_zero_means_one() {
        let c = Clock::new();
        let mut b = Breaker::new(0, Duration::from_millis(100));
        assert!(b.record_failure(c.now()));
        assert_eq!(b.state(c.now()), State::Open);
    }
}
