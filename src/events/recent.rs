//! The ids of recent events that no handler or sink takes, so that their
//! redeliveries count as duplicates.
//!
//! Events with a handler are recorded in the dedup ledger. Recording the
//! others there too would put a database write on a path that otherwise
//! touches no storage at all, for events the app has said it does not want;
//! a bounded in-memory set gives the same answer for the redeliveries that
//! matter (the platform re-pushes within hours, §3.4), costs one hash per
//! event, and forgets the oldest ids first once full. It is per process: a
//! copy that reaches another replica, or arrives after a restart, counts
//! once more there, which is harmless for events nobody handles.
//!
//! Only a 64-bit hash of each id is kept (keyed randomly per process, so
//! ids cannot be crafted to collide): 65,536 of them take under 2 MB, and a
//! collision, at odds of about one in 10^10 for a full set, would only
//! count one unhandled event as a duplicate.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

/// Ids remembered by default.
pub const CAPACITY: usize = 65_536;

/// A bounded set of recently seen event ids, oldest evicted first.
#[derive(Debug)]
pub struct RecentIds {
    keys: RandomState,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl RecentIds {
    /// A set holding at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            keys: RandomState::new(),
            seen: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Remember `id`; `false` when it was already remembered.
    pub fn insert(&mut self, id: &str) -> bool {
        let hash = self.keys.hash_one(id);
        if !self.seen.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
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

    #[test]
    fn a_second_sight_is_a_duplicate() {
        let mut recent = RecentIds::default();
        assert!(recent.insert("ev-1"));
        assert!(!recent.insert("ev-1"));
        assert!(recent.insert("ev-2"));
        assert_eq!(recent.len(), 2);
    }

    #[test]
    fn the_oldest_ids_are_forgotten_first_and_the_size_stays_bounded() {
        let mut recent = RecentIds::new(3);
        for id in ["a", "b", "c", "d"] {
            assert!(recent.insert(id));
        }
        assert_eq!(recent.len(), 3);
        assert!(recent.insert("a"), "evicted, so new again");
        assert!(!recent.insert("d"));
        assert!(!recent.insert("c"));
        for i in 0..10_000 {
            recent.insert(&format!("x-{i}"));
        }
        assert_eq!(recent.len(), 3);
    }

    #[test]
    fn a_zero_capacity_still_holds_one_id() {
        let mut one = RecentIds::new(0);
        assert!(one.is_empty());
        assert!(one.insert("z"));
        assert!(!one.insert("z"));
        assert_eq!(one.len(), 1);
    }
}
