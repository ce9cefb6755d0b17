//! When to try the long connection again after it dropped (§1.9), and
//! what a refusal means.
//!
//! The official SDKs wait `random() * ReconnectNonce` once, so that many
//! clients cut off together do not return together, then retry every
//! `ReconnectInterval`; a negative `ReconnectCount` means forever, a
//! non-negative one stops them for good after that many attempts
//! (lark-oapi `ws/client.py` `_reconnect`, node-sdk `ws-client/index.ts`
//! `reConnect`, oapi-sdk-go `ws/client.go` `reconnect`). A stopped client
//! needs a process restart, so here a schedule is only one *burst*: at most
//! `WEBSOCKET_MAX_RECONNECT_RETRIES` attempts (or the platform's count, if
//! smaller and not negative). When a burst runs out the actor fails and its
//! supervisor restarts it after [`Backoff::RECONNECT`], which starts a new
//! burst: the service reconnects on its own after an outage of any length.
//!
//! The SDKs also stop for good on a refusal (a rejected app secret, 403,
//! the connection limit). Those are retried at the backoff's cap instead
//! ([`REFUSED_RETRY`]), since an operator can fix each one in the console
//! without touching this process. Pure arithmetic and classification: the
//! caller owns the clock and the timer.

use std::time::Duration;

use rand::Rng;

use super::client_config::ClientConfig;
use crate::supervise::backoff::Backoff;

/// The wait between attempts while the platform refuses the app.
pub const REFUSED_RETRY: Duration = Backoff::RECONNECT.max;

/// Why the platform refuses the app, as `lark_ws_refused{reason}` and
/// `/admin/actors` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// The bootstrap call refused the credentials (e.g. 99991543).
    AppRejected,
    /// The handshake answered 403.
    Forbidden,
    /// 514 with 1000040350: the app already has 50 connections.
    ConnectionLimit,
}

impl RefusedReason {
    pub const ALL: [RefusedReason; 3] = [
        RefusedReason::AppRejected,
        RefusedReason::Forbidden,
        RefusedReason::ConnectionLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusedReason::AppRejected => "app_rejected",
            RefusedReason::Forbidden => "forbidden",
            RefusedReason::ConnectionLimit => "connection_limit",
        }
    }
}

/// The delays of one burst of reconnect attempts. Build a new one after
/// each successful connection, since the platform's config may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectSchedule {
    attempts: u32,
    limit: u32,
    interval: Duration,
    nonce: Duration,
}

impl ReconnectSchedule {
    /// `max_retries` is our own bound on one burst.
    pub fn new(max_retries: u32, config: &ClientConfig) -> Self {
        // A negative ReconnectCount means "no limit"; a huge one is no limit either.
        let limit = u32::try_from(config.reconnect_count)
            .map_or(max_retries, |theirs| theirs.min(max_retries));
        Self {
            attempts: 0,
            limit,
            interval: config.reconnect_interval,
            nonce: config.reconnect_nonce,
        }
    }

    /// The wait before the next attempt, or `None` once the burst is used up.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Option<Duration> {
        if self.attempts >= self.limit {
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

    /// The attempts this burst allows.
    pub fn limit(&self) -> u32 {
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
        let mut s = ReconnectSchedule::new(3, &config(-1));
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
                ReconnectSchedule::new(10, &config(-1))
                    .next_delay(&mut rng)
                    .unwrap()
            })
            .collect();
        assert!(firsts.iter().all(|d| *d < Duration::from_secs(30)));
        assert!(firsts.iter().any(|d| *d > Duration::from_secs(15)));
        assert!(firsts.iter().any(|d| *d < Duration::from_secs(15)));
    }

    #[test]
    fn a_burst_is_the_smaller_of_both_limits_and_negative_means_ours() {
        assert_eq!(ReconnectSchedule::new(10, &config(2)).limit(), 2);
        assert_eq!(ReconnectSchedule::new(2, &config(10)).limit(), 2);
        assert_eq!(ReconnectSchedule::new(4, &config(-1)).limit(), 4);
        assert_eq!(ReconnectSchedule::new(4, &config(i64::MAX)).limit(), 4);
    }

    #[test]
    fn a_zero_burst_never_starts() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut never = ReconnectSchedule::new(0, &config(-1));
        assert_eq!(never.next_delay(&mut rng), None);
        let mut never = ReconnectSchedule::new(5, &config(0));
        assert_eq!(never.next_delay(&mut rng), None);
    }

    #[test]
    fn refusals_are_retried_at_the_restart_cap_of_five_minutes() {
        assert_eq!(REFUSED_RETRY, Duration::from_secs(300));
        let labels: Vec<_> = RefusedReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["app_rejected", "forbidden", "connection_limit"]);
    }
}
