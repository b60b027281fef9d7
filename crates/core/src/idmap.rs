//! Hash maps keyed by ids the broker assigns itself (delivery tags, message ids,
//! consumer ids, channel numbers), looked up once or more per message.
//!
//! The standard library's SipHash resists keys chosen to collide, which these keys cannot
//! be: the broker picks them, mostly in sequence, and a client only looks them up. For
//! them one multiplication is enough, and SipHash was a visible share of each delivery's
//! cost (inserting and removing unacknowledged deliveries, finding the subscription of a
//! delivery). Never key an [`IdMap`] by something a client chooses.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map from broker-assigned integer ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A set of broker-assigned integer ids.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing: multiplying by 2^64 / φ spreads consecutive ids over both the low
/// bits (which pick the bucket) and the high bits (the control byte).
const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The hasher behind [`IdMap`]: for integers, not for text.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher {
    hash: u64,
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached by key types with no integer method of their own (none in the
        // broker); correct for them, just not fast.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.hash = (self.hash.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_ids_fill_distinct_buckets_and_control_bytes() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (0u64..1024).map(|i| b.hash_one(i)).collect();
        // Low 10 bits (the bucket in a table of 1,024): a permutation.
        let mut low: Vec<u64> = hashes.iter().map(|h| h & 1023).collect();
        low.sort_unstable();
        low.dedup();
        assert_eq!(low.len(), 1024);
        // Top 7 bits (hashbrown's control byte): every value used.
        let mut top: Vec<u64> = hashes.iter().map(|h| h >> 57).collect();
        top.sort_unstable();
        top.dedup();
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn a_map_keeps_what_it_is_given() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert(i * 7, i);
        }
        for i in 0..10_000u64 {
            assert_eq!(m.remove(&(i * 7)), Some(i));
        }
        assert!(m.is_empty());
        let mut s: IdSet<u16> = IdSet::default();
        assert!(s.insert(3));
        assert!(!s.insert(3));
    }
}
