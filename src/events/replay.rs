//! Refuses a signed webhook request seen before: the `(timestamp, nonce)`
//! pair of every request taken is remembered for as long as its timestamp
//! stays inside the freshness window ([`super::webhook::MAX_AGE`]), so a
//! captured body replayed inside the window is refused whatever its event
//! type, including types that never reach the dedup ledger.
//!
//! A pair is claimed before the event is routed and released again when the
//! answer is not a success, because the platform retries a request it got
//! no 200 for, and a retry may carry the original timestamp and nonce (the
//! docs do not say; §3.4): refusing it would lose the event. A retry of a
//! request that was answered 200 is refused, which loses nothing, since the
//! event was handled.
//!
//! Only a keyed 64-bit hash of each pair is kept. The set is bounded
//! ([`CAPACITY`]): past that, the oldest pairs are forgotten first, and the
//! dedup ledger still keeps a replayed event from being handled twice.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pairs remembered at most: about 10 MB, eight hours at 9 requests/s.
pub const CAPACITY: usize = 262_144;

/// The replay cache, shared by every HTTP worker.
#[derive(Debug)]
pub struct ReplayCache {
    keys: RandomState,
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    hashes: HashSet<u64>,
    /// `(forget after, hash)` in claim order.
    order: VecDeque<(u64, u64)>,
}

impl ReplayCache {
    /// Remember pairs for `window` past their timestamp, at most `capacity`.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            keys: RandomState::new(),
            window,
            capacity: capacity.max(1),
            seen: Mutex::default(),
        }
    }

    /// Claim the pair of a request; `false` when it was claimed before.
    /// `timestamp` is the request's, in Unix seconds, already checked fresh.
    pub fn claim(&self, timestamp: u64, nonce: &str, now: SystemTime) -> bool {
        let hash = self.keys.hash_one((timestamp, nonce));
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut seen = self.lock();
        while let Some(&(forget_after, old)) = seen.order.front() {
            if forget_after >= now && seen.order.len() < self.capacity {
                break;
            }
            seen.order.pop_front();
            seen.hashes.remove(&old);
        }
        if !seen.hashes.insert(hash) {
            return false;
        }
        let forget_after = timestamp.saturating_add(self.window.as_secs());
        seen.order.push_back((forget_after, hash));
        true
    }

    /// Give a claim back: the request was not answered with a success, so
    /// the platform's retry of it must get through.
    pub fn release(&self, timestamp: u64, nonce: &str) {
        let hash = self.keys.hash_one((timestamp, nonce));
        let mut seen = self.lock();
        seen.hashes.remove(&hash);
        seen.order.retain(|&(_, h)| h != hash);
    }

    pub fn len(&self) -> usize {
        self.lock().hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // The set holds no invariant a panic elsewhere could break halfway.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(super::webhook::MAX_AGE, CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_pair_is_taken_once() {
        let cache = ReplayCache::default();
        assert!(cache.claim(T, "n1", at(T)));
        assert!(!cache.claim(T, "n1", at(T + 5)));
        assert!(cache.claim(T, "n2", at(T)), "another nonce");
        assert!(cache.claim(T + 1, "n1", at(T + 1)), "another timestamp");
    }

    #[test]
    fn a_released_pair_can_be_retried() {
        let cache = ReplayCache::default();
        assert!(cache.claim(T, "n", at(T)));
        cache.release(T, "n");
        assert!(cache.claim(T, "n", at(T + 15)));
        assert!(!cache.claim(T, "n", at(T + 16)));
    }

    #[test]
    fn pairs_are_remembered_for_the_window_then_forgotten() {
        let cache = ReplayCache::new(Duration::from_secs(100), 10);
        assert!(cache.claim(T, "n", at(T)));
        assert!(!cache.claim(T, "n", at(T + 100)));
        assert!(cache.claim(T + 150, "m", at(T + 150)));
        assert_eq!(cache.len(), 1, "the expired pair was dropped");
    }

    #[test]
    fn the_size_is_bounded_and_the_oldest_go_first() {
        let cache = ReplayCache::new(Duration::from_secs(3600), 3);
        for n in ["a", "b", "c", "d"] {
            assert!(cache.claim(T, n, at(T)));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.claim(T, "d", at(T)));
        assert!(cache.claim(T, "a", at(T)), "the oldest was forgotten");
    }
}
