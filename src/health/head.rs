//! The chain head: how far the chain has got, computed from all upstreams' heads.
//!
//! Taking the highest head would let one upstream that reports a block far ahead (a node on
//! a fork, a buggy provider) make every honest upstream look lagging. Like pokt's PATH, the
//! head is anchored on the median: the highest head within `tolerance` blocks above the
//! (lower) median. It never moves backwards, except when the upstreams agree on a lower head
//! several times in a row (a chain reset or a deep reorg), so one slow probe cannot pull it
//! back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Consecutive lower computations before the head is allowed to go back.
const BACKWARD_AFTER: u32 = 3;

/// The highest head at most `tolerance` above the lower median of `heads`.
pub fn robust_head(heads: &[u64], tolerance: u64) -> Option<u64> {
    let mut sorted = heads.to_vec();
    sorted.sort_unstable();
    let median = *sorted.get(sorted.len().checked_sub(1)? / 2)?;
    let ceiling = median.saturating_add(tolerance);
    sorted.into_iter().filter(|h| *h <= ceiling).max()
}

/// A chain's head, shared between the health checkers (writers) and requests (readers).
#[derive(Debug, Default)]
pub struct ChainHead {
    /// The head plus one: 0 until some upstream's head is known.
    value: AtomicU64,
    lower_streak: AtomicU32,
}

impl ChainHead {
    pub fn get(&self) -> Option<u64> {
        self.value.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Recompute from the heads of the upstreams currently fit to count. Returns the head
    /// and whether it went backwards.
    pub fn update(&self, heads: &[u64], tolerance: u64) -> (Option<u64>, bool) {
        let Some(candidate) = robust_head(heads, tolerance) else {
            return (self.get(), false);
        };
        let store = |v: u64| self.value.store(v.saturating_add(1), Ordering::Relaxed);
        let current = match self.get() {
            Some(c) if candidate < c => c,
            _ => {
                self.lower_streak.store(0, Ordering::Relaxed);
                store(candidate);
                return (Some(candidate), false);
            }
        };
        let streak = self.lower_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak >= BACKWARD_AFTER {
            self.lower_streak.store(0, Ordering::Relaxed);
            store(candidate);
            (Some(candidate), true)
        } else {
            (Some(current), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_outlier_far_ahead_is_ignored() {
        assert_eq!(robust_head(&[100, 101, 99, 5_000], 12), Some(101));
        assert_eq!(robust_head(&[100, 5_000], 12), Some(100));
        assert_eq!(robust_head(&[100, 101, 5_000, 5_001], 12), Some(101));
    }

    #[test]
    fn honest_spread_keeps_the_highest() {
        assert_eq!(robust_head(&[100, 102, 103], 12), Some(103));
        assert_eq!(robust_head(&[7], 0), Some(7));
        assert_eq!(robust_head(&[], 12), None);
    }

    #[test]
    fn genesis_is_a_head() {
        let h = ChainHead::default();
        assert_eq!(h.update(&[0, 0], 12), (Some(0), false));
        assert_eq!(h.get(), Some(0));
    }

    #[test]
    fn never_goes_back_on_one_low_reading() {
        let h = ChainHead::default();
        assert_eq!(h.get(), None);
        h.update(&[100, 101], 12);
        assert_eq!(h.get(), Some(101));
        assert_eq!(h.update(&[90], 12), (Some(101), false));
        assert_eq!(
            h.update(&[102], 12),
            (Some(102), false),
            "the streak is broken"
        );
        assert_eq!(h.update(&[50], 12), (Some(102), false));
        assert_eq!(h.update(&[50], 12), (Some(102), false));
        assert_eq!(
            h.update(&[50], 12),
            (Some(50), true),
            "agreed three times: a reset"
        );
    }

    proptest! {
        #[test]
        fn head_is_one_of_the_heads_and_at_least_the_median(
            heads in proptest::collection::vec(0u64..1_000_000, 1..12),
            tolerance in 0u64..100,
        ) {
            let head = robust_head(&heads, tolerance).unwrap();
            prop_assert!(heads.contains(&head));
            let mut sorted = heads.clone();
            sorted.sort_unstable();
            let median = sorted[(sorted.len() - 1) / 2];
            prop_assert!(head >= median);
            prop_assert!(head <= median + tolerance);
            // At least half at or below the head: no minority can drag it up.
            prop_assert!(heads.iter().filter(|h| **h <= head).count() * 2 >= heads.len());
        }
    }
}
