//! Restart and retry delays: exponential with jitter, capped.
//!
//! actix's `Supervisor` restarts a stopped actor at once; an actor that
//! fails on start would spin. Each actor instead waits `delay(n)` after its
//! n-th consecutive restart before doing work again.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: `base * 2^(attempt-1)`, capped at `max`, with up to
/// 25% jitter subtracted so replicas that failed together spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The default for actor restarts: 100 ms doubling to 30 s.
    pub const RESTART: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(30),
    };

    /// Restarts of the long connection after a burst of reconnect attempts
    /// failed: 1 s doubling to 5 minutes. The cap bounds how long an outage
    /// can outlast its cause before the service notices; it is also the wait
    /// between attempts after a refusal retrying rarely fixes (a rejected
    /// app secret, the connection limit), which an operator may fix at any
    /// time without restarting the process.
    pub const RECONNECT: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(5 * 60),
    };

    /// The delay before attempt `attempt` (1-based), without jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The delay before attempt `attempt`, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jitter = rand::thread_rng().gen_range(0.0..=0.25);
        ceiling.mul_f64(1.0 - jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(500), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_a_quarter_below_the_ceiling() {
        let b = Backoff::RESTART;
        for attempt in 1..10 {
            let d = b.delay(attempt);
            assert!(d <= b.ceiling(attempt));
            assert!(d >= b.ceiling(attempt).mul_f64(0.75));
        }
    }
}
