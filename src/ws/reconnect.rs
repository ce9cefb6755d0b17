//! When to try the long connection again after it dropped (§1.9).
//!
//! The official SDKs wait `random() * ReconnectNonce` once, so that many
//! clients cut off together do not return together, then retry every
//! `ReconnectInterval`. They stop after `ReconnectCount` attempts when that
//! is non-negative; we also stop at our own configured maximum, whichever
//! comes first. Pure arithmetic: the caller owns the clock and the timer.

use std::time::Duration;

use rand::Rng;

use super::client_config::ClientConfig;

/// The delays of one run of reconnect attempts. Build a new one after each
/// successful connection, since the platform's config may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectSchedule {
    attempts: u32,
    limit: Option<u32>,
    interval: Duration,
    nonce: Duration,
}

impl ReconnectSchedule {
    /// `max_retries` is our own limit (`None`: none of our own).
    pub fn new(max_retries: Option<u32>, config: &ClientConfig) -> Self {
        // A negative ReconnectCount means "no limit"; a huge one is no limit either.
        let platform = u32::try_from(config.reconnect_count).ok();
        let limit = match (max_retries, platform) {
            (Some(ours), Some(theirs)) => Some(ours.min(theirs)),
            (ours, theirs) => ours.or(theirs),
        };
        Self {
            attempts: 0,
            limit,
            interval: config.reconnect_interval,
            nonce: config.reconnect_nonce,
        }
    }

    /// The wait before the next attempt, or `None` once attempts are used up.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Option<Duration> {
        if self.limit.is_some_and(|limit| self.attempts >= limit) {
            return None;
        }
        let delay = if self.attempts == 0 {
            self.nonce.mul_f64(rng.gen::<f64>())
        } else {
            self.interval
        };
        self.attempts += 1;
        Some(delay)
    }

    /// Attempts handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The attempt limit in force, `None` when unlimited.
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn config(count: i64) -> ClientConfig {
        ClientConfig {
            reconnect_count: count,
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
        }
    }

    #[test]
    fn first_attempt_is_jittered_then_every_interval() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut s = ReconnectSchedule::new(Some(3), &config(-1));
        let first = s.next_delay(&mut rng).unwrap();
        assert!(first < Duration::from_secs(30));
        assert_eq!(s.next_delay(&mut rng), Some(Duration::from_secs(120)));
        assert_eq!(s.next_delay(&mut rng), Some(Duration::from_secs(120)));
        assert_eq!(s.next_delay(&mut rng), None);
        assert_eq!(s.attempts(), 3);
    }

    #[test]
    fn jitter_spreads_over_the_nonce() {
        let mut rng = StdRng::seed_from_u64(1);
        let firsts: Vec<Duration> = (0..50)
            .map(|_| {
                ReconnectSchedule::new(None, &config(-1))
                    .next_delay(&mut rng)
                    .unwrap()
            })
            .collect();
        assert!(firsts.iter().all(|d| *d < Duration::from_secs(30)));
        assert!(firsts.iter().any(|d| *d > Duration::from_secs(15)));
        assert!(firsts.iter().any(|d| *d < Duration::from_secs(15)));
    }

    #[test]
    fn the_smaller_limit_wins() {
        assert_eq!(
            ReconnectSchedule::new(Some(10), &config(2)).limit(),
            Some(2)
        );
        assert_eq!(
            ReconnectSchedule::new(Some(2), &config(10)).limit(),
            Some(2)
        );
        assert_eq!(
            ReconnectSchedule::new(Some(4), &config(-1)).limit(),
            Some(4)
        );
        assert_eq!(ReconnectSchedule::new(None, &config(5)).limit(), Some(5));
        assert_eq!(ReconnectSchedule::new(None, &config(-1)).limit(), None);
    }

    #[test]
    fn unlimited_never_runs_out_and_zero_never_starts() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut forever = ReconnectSchedule::new(None, &config(-1));
        assert!((0..1000).all(|_| forever.next_delay(&mut rng).is_some()));
        let mut never = ReconnectSchedule::new(Some(0), &config(-1));
        assert_eq!(never.next_delay(&mut rng), None);
    }
}
