//! Numbered message bodies and what a consumer received of them, shared by every load
//! generator (amqp, mqtt, stomp) so that all number, stamp and check bodies the same way.
//! Each body starts with a [`Header`]: its producer's number (u16), that producer's
//! sequence number (48 bits) and the time the message was due (u64, in
//! [`crate::latency::now_ns`] nanoseconds; 0 when the run is not paced), all
//! little-endian, 16 bytes, so that the smallest size the benchmarks use (16 B) holds
//! it whole; the rest is a pattern that depends on the producer, checked byte for byte
//! on arrival.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::seq::SeqSet;

/// One producer's counts: messages handed to the broker, and how many of those the broker
/// confirmed (PUBACK, RECEIPT; stays 0 in runs without confirms).
#[derive(Debug, Default)]
pub struct Sent {
    /// Messages handed to the broker (the next sequence number).
    pub sent: AtomicU64,
    /// Of those, how many the broker confirmed.
    pub confirmed: AtomicU64,
}

impl Sent {
    /// Sent and not (yet) confirmed.
    pub fn unconfirmed(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.confirmed.load(Ordering::Relaxed))
    }
}

/// Each producer's sent count, in order, and the producers' unconfirmed messages in total.
pub fn sent_totals<'a>(producers: impl IntoIterator<Item = &'a Sent>) -> (Vec<u64>, u64) {
    let mut unconfirmed = 0;
    let sent = producers
        .into_iter()
        .map(|p| {
            unconfirmed += p.unconfirmed();
            p.sent.load(Ordering::Relaxed)
        })
        .collect();
    (sent, unconfirmed)
}

/// Bytes of the [`Header`] at the start of every body.
pub const HEADER_BYTES: usize = 16;

/// Producers a header can name (its producer field is a u16).
pub const PRODUCERS_MAX: usize = 1 << 16;

/// Sequence numbers a header can carry (48 bits: 2.8e14, years of messages at any rate
/// reached here).
pub const SEQ_LIMIT: u64 = 1 << 48;

/// What the start of a body says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// The producer's number, from 0.
    pub producer: usize,
    /// The producer's sequence number, from 0.
    pub seq: u64,
    /// When the message was due to be sent, in [`crate::latency::now_ns`] nanoseconds;
    /// 0 when the run is not paced.
    pub due_ns: u64,
}

/// The body producer `p` (below [`PRODUCERS_MAX`]) sends, with a zero sequence number
/// and due time; `size` is at least [`HEADER_BYTES`].
pub fn pattern(p: usize, size: usize) -> Vec<u8> {
    assert!(p < PRODUCERS_MAX, "producer {p}: a header holds a u16");
    let mut b: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(p as u8))
        .collect();
    b[..2].copy_from_slice(&(p as u16).to_le_bytes());
    b[2..HEADER_BYTES].fill(0);
    b
}

/// Writes sequence number `seq` (below [`SEQ_LIMIT`]) and due time `due_ns` into a body
/// made by [`pattern`].
pub fn stamp(body: &mut [u8], seq: u64, due_ns: u64) {
    assert!(
        seq < SEQ_LIMIT,
        "sequence number {seq}: a header holds 48 bits"
    );
    body[2..8].copy_from_slice(&seq.to_le_bytes()[..6]);
    body[8..HEADER_BYTES].copy_from_slice(&due_ns.to_le_bytes());
}

/// The header at the start of `body`, or `None` if `body` is too short for one.
pub fn parse_header(body: &[u8]) -> Option<Header> {
    let producer = u16::from_le_bytes(body.get(..2)?.try_into().ok()?);
    let mut seq = [0u8; 8];
    seq[..6].copy_from_slice(body.get(2..8)?);
    let seq = u64::from_le_bytes(seq);
    let due_ns = u64::from_le_bytes(body.get(8..HEADER_BYTES)?.try_into().ok()?);
    Some(Header {
        producer: producer as usize,
        seq,
        due_ns,
    })
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
    /// Returns the body's header if this is the first arrival of its number (a fixed-rate
    /// run times exactly these), `None` for a repeat or a body from no known producer.
    pub fn record(&self, body: &[u8], patterns: &[Vec<u8>]) -> Option<Header> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let Some(h) = parse_header(body) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let Some(pattern) = patterns.get(h.producer) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if body.len() != pattern.len() || body[HEADER_BYTES..] != pattern[HEADER_BYTES..] {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        let fresh = self.seen.lock().expect("no panics while held")[h.producer].insert(h.seq);
        if !fresh {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self.high[h.producer].fetch_max(h.seq + 1, Ordering::Relaxed) > h.seq + 1 {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        Some(h)
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
    fn header_round_trips_and_leaves_the_pattern_alone() {
        let mut b = pattern(3, 64);
        let before = b.clone();
        stamp(&mut b, 0x0102_0304_0506, u64::MAX - 1);
        assert_eq!(b[2], 0x06, "little-endian");
        assert_eq!(b[7], 0x01, "48 bits");
        assert_eq!(
            parse_header(&b),
            Some(Header {
                producer: 3,
                seq: 0x0102_0304_0506,
                due_ns: u64::MAX - 1,
            })
        );
        assert_eq!(b[HEADER_BYTES..], before[HEADER_BYTES..]);
        assert_eq!(parse_header(&b[..HEADER_BYTES - 1]), None);
    }

    #[test]
    fn the_smallest_body_is_all_header() {
        let patterns = vec![pattern(0, HEADER_BYTES), pattern(1, HEADER_BYTES)];
        let mut b = patterns[1].clone();
        stamp(&mut b, SEQ_LIMIT - 1, 7);
        assert_eq!(parse_header(&b).map(|h| h.seq), Some(SEQ_LIMIT - 1));
        stamp(&mut b, 5, 7);
        let c = Received::new(2);
        let h = c.record(&b, &patterns).expect("first arrival");
        assert_eq!((h.producer, h.seq, h.due_ns), (1, 5, 7));
        assert_eq!(c.corrupt.load(Ordering::Relaxed), 0);
        let mut long = b.clone();
        long.push(0);
        assert_eq!(c.record(&long, &patterns), None, "a repeat");
        assert_eq!(c.corrupt.load(Ordering::Relaxed), 1, "one byte too long");
    }

    #[test]
    fn counts_duplicates_reordering_and_corruption() {
        let patterns = vec![pattern(0, 64), pattern(1, 64)];
        let c = Received::new(2);
        let body = |p: usize, seq: u64| {
            let mut b = patterns[p].clone();
            stamp(&mut b, seq, 1_000 + seq);
            b
        };
        let got = |h: Option<Header>| h.map(|h| (h.producer, h.seq, h.due_ns));
        assert_eq!(got(c.record(&body(0, 0), &patterns)), Some((0, 0, 1_000)));
        assert_eq!(got(c.record(&body(0, 2), &patterns)), Some((0, 2, 1_002)));
        assert_eq!(got(c.record(&body(0, 1), &patterns)), Some((0, 1, 1_001))); // late
        assert_eq!(c.record(&body(0, 2), &patterns), None); // again
        assert_eq!(got(c.record(&body(1, 0), &patterns)), Some((1, 0, 1_000)));
        let mut bad = body(1, 1);
        bad[40] ^= 1;
        // Its pattern is wrong but its header is readable and new: still returned.
        assert_eq!(got(c.record(&bad, &patterns)), Some((1, 1, 1_001)));
        let mut stray = body(0, 5);
        stray[..2].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(c.record(&stray, &patterns), None);
        assert_eq!(c.delivered.load(Ordering::Relaxed), 7);
        assert_eq!(c.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(c.out_of_order.load(Ordering::Relaxed), 1);
        assert_eq!(c.corrupt.load(Ordering::Relaxed), 2);
        assert_eq!(c.high[0].load(Ordering::Relaxed), 3);
        assert_eq!(c.distinct_below(&[3, 2]), 5);
        assert_eq!(c.distinct_below(&[2, 1]), 3);
    }
}
