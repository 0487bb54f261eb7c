//! A per-peer circuit breaker with half-open probes.
//!
//! Closed: requests flow; `threshold` consecutive failures, or a single
//! timeout (a hung peer costs a full timeout each time), open it. Open:
//! requests are skipped without touching the network until the cooldown
//! passes. Half-open: exactly one probe goes through; success closes the
//! breaker, failure reopens it with the cooldown doubled (up to 30 s).

use std::time::Duration;
use tokio::time::Instant;

use crate::timing::BREAKER_MAX_COOLDOWN as MAX_COOLDOWN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker of one peer.
#[derive(Clone, Debug)]
pub struct Breaker {
    state: State,
    threshold: u32,
    base: Duration,
    cooldown: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            base: cooldown,
            cooldown,
        }
    }

    /// Whether a request may go now; taking the half-open probe slot if so.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Whether [`Breaker::allow`] would say yes, without taking the probe.
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } => now >= until,
            State::HalfOpen => false,
        }
    }

    /// A request succeeded.
    pub fn success(&mut self) {
        self.state = State::Closed { failures: 0 };
        self.cooldown = self.base;
    }

    /// A request failed; `timeout` marks the expensive kind.
    pub fn failure(&mut self, now: Instant, timeout: bool) {
        self.state = match self.state {
            State::Closed { failures } if failures + 1 < self.threshold && !timeout => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            State::HalfOpen => {
                self.cooldown = (self.cooldown * 2).min(MAX_COOLDOWN);
                State::Open {
                    until: now + self.cooldown,
                }
            }
            _ => State::Open {
                until: now + self.cooldown,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        assert!(b.allow(t0));
        b.failure(t0, false);
        assert!(b.allow(t0), "one refusal does not open it");
        b.failure(t0, false);
        assert!(!b.allow(t0), "two do");
        let later = t0 + Duration::from_millis(1001);
        assert!(b.allow(later), "half-open probe");
        assert!(!b.allow(later), "only one probe at a time");
        b.failure(later, false);
        assert!(
            !b.allow(later + Duration::from_millis(1500)),
            "cooldown doubled"
        );
        assert!(b.allow(later + Duration::from_millis(2001)));
        b.success();
        assert!(b.allow(later + Duration::from_millis(2001)));
    }

    #[test]
    fn one_timeout_opens_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(1));
        b.failure(t0, true);
        assert!(!b.would_allow(t0));
    }
}
