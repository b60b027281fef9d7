//! Numbered message bodies and what a consumer received of them, for load generators
//! with several producers: each body starts with its producer's number (u32) and that
//! producer's sequence number (u64), both little-endian; the rest is a pattern that
//! depends on the producer, checked byte for byte on arrival.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::seq::SeqSet;

/// Producer number and sequence number at the start of every body.
pub const HEADER_BYTES: usize = 12;

/// The body producer `p` sends, with a zero sequence number; `size` is at least
/// [`HEADER_BYTES`].
pub fn pattern(p: usize, size: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(p as u8))
        .collect();
    b[..4].copy_from_slice(&(p as u32).to_le_bytes());
    b[4..HEADER_BYTES].fill(0);
    b
}

/// Writes sequence number `seq` into a body made by [`pattern`].
pub fn set_seq(body: &mut [u8], seq: u64) {
    body[4..HEADER_BYTES].copy_from_slice(&seq.to_le_bytes());
}

/// The producer and sequence numbers at the start of `body`.
pub fn parse_header(body: &[u8]) -> Option<(usize, u64)> {
    let p = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    let seq = u64::from_le_bytes(body.get(4..HEADER_BYTES)?.try_into().ok()?);
    Some((p as usize, seq))
}

/// What one consumer has received from each producer.
pub struct Received {
    /// Bodies received, whatever they held.
    pub delivered: AtomicU64,
    /// Per producer: highest sequence number received + 1.
    pub high: Vec<AtomicU64>,
    /// Per producer: every sequence number received.
    pub seen: Mutex<Vec<SeqSet>>,
    /// Numbers received again.
    pub duplicates: AtomicU64,
    /// Fresh numbers that arrived after a higher one from the same producer.
    pub out_of_order: AtomicU64,
    /// Bodies with a wrong size, producer or pattern (or otherwise misdelivered, as the
    /// caller counts them).
    pub corrupt: AtomicU64,
}

impl Received {
    /// Nothing received yet from any of `producers`.
    pub fn new(producers: usize) -> Self {
        Self {
            delivered: AtomicU64::new(0),
            high: (0..producers).map(|_| AtomicU64::new(0)).collect(),
            seen: Mutex::new(vec![SeqSet::default(); producers]),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        }
    }

    /// Accounts for one delivered body; `patterns[p]` is what producer `p` sends.
    pub fn record(&self, body: &[u8], patterns: &[Vec<u8>]) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let Some((p, seq)) = parse_header(body) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(pattern) = patterns.get(p) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if body.len() != pattern.len() || body[HEADER_BYTES..] != pattern[HEADER_BYTES..] {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        let fresh = self.seen.lock().expect("no panics while held")[p].insert(seq);
        if !fresh {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.high[p].fetch_max(seq + 1, Ordering::Relaxed) > seq + 1 {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Distinct numbers received below `sent[p]` from each producer `p`, summed.
    pub fn distinct_below(&self, sent: &[u64]) -> u64 {
        let seen = self.seen.lock().expect("no panics while held");
        seen.iter().zip(sent).map(|(s, &n)| s.count_below(n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_reordering_and_corruption() {
        let patterns = vec![pattern(0, 64), pattern(1, 64)];
        let c = Received::new(2);
        let body = |p: usize, seq: u64| {
            let mut b = patterns[p].clone();
            set_seq(&mut b, seq);
            b
        };
        c.record(&body(0, 0), &patterns);
        c.record(&body(0, 2), &patterns);
        c.record(&body(0, 1), &patterns); // late
        c.record(&body(0, 2), &patterns); // again
        c.record(&body(1, 0), &patterns);
        let mut bad = body(1, 1);
        bad[40] ^= 1;
        c.record(&bad, &patterns);
        let mut stray = body(0, 5);
        stray[..4].copy_from_slice(&7u32.to_le_bytes());
        c.record(&stray, &patterns);
        assert_eq!(c.delivered.load(Ordering::Relaxed), 7);
        assert_eq!(c.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(c.out_of_order.load(Ordering::Relaxed), 1);
        assert_eq!(c.corrupt.load(Ordering::Relaxed), 2);
        assert_eq!(c.high[0].load(Ordering::Relaxed), 3);
        assert_eq!(c.distinct_below(&[3, 2]), 5);
        assert_eq!(c.distinct_below(&[2, 1]), 3);
    }
}
