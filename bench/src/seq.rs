//! Exact accounting of what a consumer received: every message body carries a sequence
//! number, and a bitmap says which numbers have arrived, so lost and duplicated messages
//! are counted, not estimated.

/// The set of sequence numbers received from one producer.
///
/// # Invariants
/// Bit `n % 64` of word `n / 64` is set once number `n` has been inserted. The bitmap
/// grows to the highest number seen (rounded up to a power of two words), so numbers
/// should be dense from 0, as a producer's counter is.
#[derive(Default, Debug, Clone)]
pub struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Records `seq`; returns `false` if it was already there (a duplicate).
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.words.len() <= word {
            self.words.resize((word + 1).next_power_of_two(), 0);
        }
        let fresh = self.words[word] & (1 << bit) == 0;
        self.words[word] |= 1 << bit;
        fresh
    }

    /// How many distinct numbers below `n` have been inserted.
    pub fn count_below(&self, n: u64) -> u64 {
        let full_words = (n / 64) as usize;
        let mut count: u64 = self
            .words
            .iter()
            .take(full_words)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if let Some(w) = self.words.get(full_words) {
            let mask = (1u64 << (n % 64)) - 1;
            count += u64::from((w & mask).count_ones());
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::SeqSet;

    #[test]
    fn counts_distinct_numbers_below_a_bound_and_flags_repeats() {
        let mut s = SeqSet::default();
        for n in [0, 1, 63, 64, 65, 200] {
            assert!(s.insert(n));
        }
        assert!(!s.insert(64));
        assert_eq!(s.count_below(0), 0);
        assert_eq!(s.count_below(64), 3);
        assert_eq!(s.count_below(65), 4);
        assert_eq!(s.count_below(66), 5);
        assert_eq!(s.count_below(1_000), 6);
    }
}
