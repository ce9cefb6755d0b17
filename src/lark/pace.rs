//! `Pace`: the rate-limit gate that concurrent calls to the platform share
//! (the user-info sync's profile fetches, the token refresher's refreshes).
//!
//! The platform's limits are per app, not per user, so when one call is
//! told to wait (HTTP 429 / code 99991400 with `x-ogw-ratelimit-reset`)
//! every call waits: a worker that kept going would only collect more
//! refusals and push the reset further out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct Pace {
    not_before: Mutex<Option<Instant>>,
    holds: AtomicU64,
}

impl Pace {
    /// Wait until no hold is in force.
    pub async fn ready(&self) {
        loop {
            let until = *self.lock();
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// Hold every caller for `wait` from now (a longer hold in force stays).
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut slot = self.lock();
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
        self.holds.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times a hold was asked for.
    pub fn holds(&self) -> u64 {
        self.holds.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The value is a plain instant: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still usable.
        self.not_before
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_hold_in_force_delays_callers() {
        let pace = Pace::default();
        let start = Instant::now();
        pace.hold(Duration::from_millis(200));
        pace.hold(Duration::from_millis(50));
        pace.ready().await;
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(pace.holds(), 2);
        let again = Instant::now();
        pace.ready().await;
        assert!(again.elapsed() < Duration::from_millis(50));
    }
}
