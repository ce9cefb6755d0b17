//! Reassembly of data messages the platform splits over several frames.
//!
//! Fragments share a `message_id`; `sum` says how many there are and `seq`
//! where each goes. A partial message is dropped [`FRAGMENT_TTL`] after its
//! latest fragment, as the Python and Go SDKs do; the platform redelivers
//! anything we never acked. The buffer is bounded in messages, fragments
//! per message and bytes, so a peer that starts many messages and never
//! finishes them costs us a fixed amount of memory: when full, the message
//! touched least recently is evicted.
//!
//! Time comes in as `Instant` arguments, so tests need no sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a partial message waits for its next fragment.
pub const FRAGMENT_TTL: Duration = Duration::from_secs(5);

/// Bounds on what the buffer holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Partial messages held at once.
    pub max_messages: usize,
    /// Largest `sum` accepted.
    pub max_fragments: u32,
    /// Payload bytes held across all partial messages.
    pub max_bytes: usize,
}

impl Default for FragmentLimits {
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_fragments: 1024,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why a fragment was refused. The message it belongs to stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("message {message_id}: fragment says sum={got}, earlier ones said {expected}")]
    InconsistentSum {
        message_id: String,
        expected: u32,
        got: u32,
    },
    #[error("message {message_id}: seq {seq} is out of range for sum {sum}")]
    SeqOutOfRange {
        message_id: String,
        seq: u32,
        sum: u32,
    },
    #[error("message {message_id}: {sum} fragments is more than the {max} allowed")]
    TooManyFragments {
        message_id: String,
        sum: u32,
        max: u32,
    },
    #[error("message {message_id} would hold more than {max} buffered bytes")]
    TooLarge { message_id: String, max: usize },
}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    filled: usize,
    bytes: usize,
    last_seen: Instant,
}

/// Partial messages by `message_id`.
pub struct FragmentBuffer {
    limits: FragmentLimits,
    ttl: Duration,
    partial: HashMap<String, Partial>,
    bytes: usize,
}

impl Default for FragmentBuffer {
    fn default() -> Self {
        Self::new(FragmentLimits::default(), FRAGMENT_TTL)
    }
}

impl FragmentBuffer {
    pub fn new(limits: FragmentLimits, ttl: Duration) -> Self {
        Self {
            limits,
            ttl,
            partial: HashMap::new(),
            bytes: 0,
        }
    }

    /// Add one fragment. Returns the whole payload once the last missing
    /// fragment arrives, `None` while parts are still missing. An unsplit
    /// message (`sum` 1) comes straight back. A repeated `seq` is ignored:
    /// the first copy wins, since a redelivered fragment carries the same bytes.
    pub fn push(
        &mut self,
        message_id: &str,
        sum: u32,
        seq: u32,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, FragmentError> {
        self.expire(now);
        let sum = sum.max(1);
        if sum > self.limits.max_fragments {
            return Err(FragmentError::TooManyFragments {
                message_id: message_id.to_owned(),
                sum,
                max: self.limits.max_fragments,
            });
        }
        if seq >= sum {
            return Err(FragmentError::SeqOutOfRange {
                message_id: message_id.to_owned(),
                seq,
                sum,
            });
        }
        if sum == 1 {
            return Ok(Some(payload));
        }
        if let Some(p) = self.partial.get(message_id) {
            let expected = p.parts.len() as u32;
            if expected != sum {
                return Err(FragmentError::InconsistentSum {
                    message_id: message_id.to_owned(),
                    expected,
                    got: sum,
                });
            }
            if p.parts[seq as usize].is_some() {
                return Ok(None);
            }
        }
        let held = self.partial.get(message_id).map_or(0, |p| p.bytes);
        if held + payload.len() > self.limits.max_bytes {
            return Err(FragmentError::TooLarge {
                message_id: message_id.to_owned(),
                max: self.limits.max_bytes,
            });
        }
        self.make_room(message_id, payload.len());

        let partial = self
            .partial
            .entry(message_id.to_owned())
            .or_insert_with(|| Partial {
                parts: vec![None; sum as usize],
                filled: 0,
                bytes: 0,
                last_seen: now,
            });
        partial.last_seen = now;
        partial.bytes += payload.len();
        partial.filled += 1;
        self.bytes += payload.len();
        partial.parts[seq as usize] = Some(payload);
        if partial.filled < partial.parts.len() {
            return Ok(None);
        }
        Ok(self.take(message_id))
    }

    /// Drop partial messages whose latest fragment is older than the TTL.
    /// Returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.ttl;
        let stale: Vec<String> = self
            .partial
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            tracing::debug!(message_id = %id, "dropping an incomplete fragmented message");
            self.remove(id);
        }
        stale.len()
    }

    /// Partial messages held.
    pub fn len(&self) -> usize {
        self.partial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// Payload bytes held across partial messages.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Forget everything, e.g. when the connection that carried it is gone.
    pub fn clear(&mut self) {
        self.partial.clear();
        self.bytes = 0;
    }

    /// Evict the least recently touched other messages until `incoming`
    /// more bytes (and, for a new message, one more slot) fit.
    fn make_room(&mut self, message_id: &str, incoming: usize) {
        let is_new = !self.partial.contains_key(message_id);
        loop {
            let over_bytes = self.bytes + incoming > self.limits.max_bytes;
            let over_count = is_new && self.partial.len() >= self.limits.max_messages;
            if !(over_bytes || over_count) {
                return;
            }
            let oldest = self
                .partial
                .iter()
                .filter(|(id, _)| id.as_str() != message_id)
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(id, _)| id.clone());
            let Some(oldest) = oldest else { return };
            tracing::warn!(message_id = %oldest, "fragment buffer full, evicting a partial message");
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, message_id: &str) -> Option<Partial> {
        let p = self.partial.remove(message_id)?;
        self.bytes -= p.bytes;
        Some(p)
    }

    fn take(&mut self, message_id: &str) -> Option<Vec<u8>> {
        let p = self.remove(message_id)?;
        let mut whole = Vec::with_capacity(p.bytes);
        for part in p.parts.into_iter().flatten() {
            whole.extend_from_slice(&part);
        }
        Some(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn unsplit_message_comes_straight_back() {
        let mut buf = FragmentBuffer::default();
        let now = Instant::now();
        assert_eq!(
            buf.push("m", 1, 0, b"abc".to_vec(), now),
            Ok(Some(b"abc".to_vec()))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn fragments_reassemble_in_seq_order() {
        let mut buf = FragmentBuffer::default();
        let now = Instant::now();
        assert_eq!(buf.push("m", 3, 2, b"c".to_vec(), now), Ok(None));
        assert_eq!(buf.push("m", 3, 0, b"a".to_vec(), now), Ok(None));
        assert_eq!(buf.buffered_bytes(), 2);
        assert_eq!(
            buf.push("m", 3, 1, b"b".to_vec(), now),
            Ok(Some(b"abc".to_vec()))
        );
        assert!(buf.is_empty());
        assert_eq!(buf.buffered_bytes(), 0);
    }

    #[test]
    fn inconsistent_sum_and_bad_seq_are_refused() {
        let mut buf = FragmentBuffer::default();
        let now = Instant::now();
        buf.push("m", 2, 0, b"a".to_vec(), now).unwrap();
        assert!(matches!(
            buf.push("m", 3, 1, b"b".to_vec(), now),
            Err(FragmentError::InconsistentSum {
                expected: 2,
                got: 3,
                ..
            })
        ));
        assert!(matches!(
            buf.push("m", 2, 2, b"b".to_vec(), now),
            Err(FragmentError::SeqOutOfRange { seq: 2, sum: 2, .. })
        ));
        assert!(matches!(
            buf.push("x", 1_000_000, 0, vec![], now),
            Err(FragmentError::TooManyFragments { .. })
        ));
        // The refused fragments left the partial message intact.
        assert_eq!(
            buf.push("m", 2, 1, b"b".to_vec(), now),
            Ok(Some(b"ab".to_vec()))
        );
    }

    #[test]
    fn duplicate_fragment_is_ignored() {
        let mut buf = FragmentBuffer::default();
        let now = Instant::now();
        buf.push("m", 2, 0, b"a".to_vec(), now).unwrap();
        assert_eq!(buf.push("m", 2, 0, b"zzz".to_vec(), now), Ok(None));
        assert_eq!(buf.buffered_bytes(), 1);
        assert_eq!(
            buf.push("m", 2, 1, b"b".to_vec(), now),
            Ok(Some(b"ab".to_vec()))
        );
    }

    #[test]
    fn partial_message_expires_ttl_after_its_latest_fragment() {
        let mut buf = FragmentBuffer::default();
        let t0 = Instant::now();
        buf.push("m", 3, 0, b"a".to_vec(), t0).unwrap();
        buf.push("m", 3, 1, b"b".to_vec(), t0 + secs(4)).unwrap();
        // 8 s after the first fragment but only 4 s after the latest: kept.
        assert_eq!(buf.expire(t0 + secs(8)), 0);
        assert_eq!(buf.expire(t0 + secs(9)), 1);
        assert_eq!(buf.buffered_bytes(), 0);
        // The last fragment alone now starts a new partial message.
        assert_eq!(buf.push("m", 3, 2, b"c".to_vec(), t0 + secs(9)), Ok(None));
    }

    #[test]
    fn bounds_evict_the_least_recently_touched_message() {
        let limits = FragmentLimits {
            max_messages: 2,
            max_fragments: 8,
            max_bytes: 10,
        };
        let mut buf = FragmentBuffer::new(limits, FRAGMENT_TTL);
        let t0 = Instant::now();
        buf.push("a", 2, 0, b"1".to_vec(), t0).unwrap();
        buf.push("b", 2, 0, b"1".to_vec(), t0 + Duration::from_millis(1))
            .unwrap();
        buf.push("c", 2, 0, b"1".to_vec(), t0 + Duration::from_millis(2))
            .unwrap();
        assert_eq!(buf.len(), 2);
        // "a" was evicted, so its second half starts over instead of completing.
        assert_eq!(
            buf.push("a", 2, 1, b"2".to_vec(), t0 + Duration::from_millis(3)),
            Ok(None)
        );
        // A byte-heavy message pushes the oldest ("c") out to fit in 10 bytes.
        buf.push(
            "d",
            2,
            0,
            b"123456789".to_vec(),
            t0 + Duration::from_millis(4),
        )
        .unwrap();
        assert_eq!(buf.len(), 2);
        assert_eq!(buf.buffered_bytes(), 10);
        assert!(matches!(
            buf.push("d", 2, 1, b"xx".to_vec(), t0 + Duration::from_millis(5)),
            Err(FragmentError::TooLarge { .. })
        ));
        assert!(buf.buffered_bytes() <= 10);
    }

    proptest! {
        #[test]
        fn shuffled_fragments_reassemble(
            payload in proptest::collection::vec(any::<u8>(), 1..200),
            parts in 1usize..12,
            seed in any::<u64>(),
        ) {
            let chunk = payload.len().div_ceil(parts);
            let chunks: Vec<Vec<u8>> = payload.chunks(chunk).map(<[u8]>::to_vec).collect();
            let sum = chunks.len() as u32;
            let mut order: Vec<usize> = (0..chunks.len()).collect();
            // Deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut buf = FragmentBuffer::default();
            let now = Instant::now();
            let mut result = None;
            for (n, &i) in order.iter().enumerate() {
                let out = buf.push("m", sum, i as u32, chunks[i].clone(), now).unwrap();
                if n + 1 < order.len() {
                    prop_assert!(out.is_none());
                } else {
                    result = out;
                }
            }
            prop_assert_eq!(result, Some(payload));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_fragments_never_break_the_bounds(
            pushes in proptest::collection::vec((0u8..4, 0u32..6, 0u32..6, 0usize..8), 0..64)
        ) {
            let limits = FragmentLimits { max_messages: 2, max_fragments: 4, max_bytes: 12 };
            let mut buf = FragmentBuffer::new(limits, FRAGMENT_TTL);
            let t0 = Instant::now();
            for (n, (id, sum, seq, len)) in pushes.into_iter().enumerate() {
                let _ = buf.push(&id.to_string(), sum, seq, vec![0; len], t0 + Duration::from_millis(n as u64 * 300));
                prop_assert!(buf.len() <= 2);
                prop_assert!(buf.buffered_bytes() <= 12);
            }
        }
    }
}
