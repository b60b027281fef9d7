//! [`Refused`]: the op sequence numbers whose records the journal refused for lack of space,
//! as a bounded set of ranges that [`SyncWaiter`](super::SyncWaiter)s test their tickets
//! against.
//!
//! A waiter may look at a ticket long after its op was refused (a connection drains its
//! pending confirms only when the synced point moves), so a refusal cannot simply be
//! forgotten. Instead the set is bounded by merging: beyond
//! [`limits::REFUSED_RANGES_MAX`](crate::limits::REFUSED_RANGES_MAX) ranges, the two oldest
//! become one that also covers the ops between them. That can only turn a confirm into a
//! refusal (a message that was stored is nacked, and at worst published twice), never the
//! other way round.

use std::collections::VecDeque;

/// # Invariants
/// - `ranges` holds inclusive `(first, last)` ranges, ascending, disjoint and not adjacent
///   (adjacent ones are merged), at most `limit` of them.
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    ranges: VecDeque<(u64, u64)>,
    limit: usize,
}

impl Refused {
    pub(crate) fn new(limit: usize) -> Self {
        Refused {
            ranges: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Adds one refused op. Ops arrive nearly in order, so this is usually an extension of
    /// the last range.
    pub(crate) fn insert(&mut self, seq: u64) {
        // The first range that ends at or after seq - 1 (it may absorb seq).
        let i = self.ranges.partition_point(|&(_, last)| last + 1 < seq);
        match self.ranges.get_mut(i) {
            Some(r) if r.0 <= seq + 1 => {
                r.0 = r.0.min(seq);
                r.1 = r.1.max(seq);
                // Extending upwards may have made it adjacent to the next one.
                if let Some(&(next_first, next_last)) = self.ranges.get(i + 1) {
                    if next_first <= self.ranges[i].1 + 1 {
                        self.ranges[i].1 = self.ranges[i].1.max(next_last);
                        self.ranges.remove(i + 1);
                    }
                }
            }
            _ => self.ranges.insert(i, (seq, seq)),
        }
        if self.ranges.len() > self.limit {
            let (first, _) = self.ranges.pop_front().expect("over the limit");
            self.ranges[0].0 = first;
        }
    }

    /// True if any op in `first..=last` was refused.
    pub(crate) fn any_in(&self, first: u64, last: u64) -> bool {
        if first > last {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, l)| l < first);
        self.ranges.get(i).is_some_and(|&(f, _)| f <= last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_coalesce_and_answer_overlaps() {
        let mut r = Refused::new(8);
        for s in [5, 6, 8, 7, 20, 4] {
            r.insert(s);
        }
        assert_eq!(r.ranges, [(4, 8), (20, 20)]);
        assert!(r.any_in(1, 4) && r.any_in(8, 10) && r.any_in(20, 20) && r.any_in(0, 100));
        assert!(!r.any_in(1, 3) && !r.any_in(9, 19) && !r.any_in(21, 30));
        assert!(!r.any_in(6, 5), "an empty range owns nothing");
    }

    #[test]
    fn beyond_the_limit_the_oldest_merge_conservatively() {
        let mut r = Refused::new(2);
        r.insert(1);
        r.insert(10);
        r.insert(20);
        assert_eq!(r.ranges, [(1, 10), (20, 20)]);
        assert!(
            r.any_in(5, 5),
            "covered by the merge: refused, never wrongly confirmed"
        );
        assert!(!r.any_in(11, 19));
    }
}
