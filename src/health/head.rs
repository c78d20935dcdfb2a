//! The chain head: how far the chain has got, computed from the upstreams' heads.
//!
//! Taking the highest head would let one upstream that reports a block far ahead (a node on
//! a fork, a buggy provider) make every honest upstream look lagging. Like pokt's PATH, the
//! head is anchored on the median: the highest head within `tolerance` blocks above it. The
//! median is the upper one, so that with two upstreams (or an even split) the head follows
//! progress: a node stuck behind is more common than one racing ahead, and a stuck node must
//! never set the head for everyone. The head never moves backwards, except when the
//! upstreams keep reporting a lower head for `hold` (a chain reset or a deep reorg), so one
//! slow probe cannot pull it back.
//!
//! The finalized block is Manifold's own too: the lower median of the upstreams' finalized
//! blocks (with two, the lower one), never above the head, never going back. One upstream
//! that claims too much cannot make the cache keep a block that may still change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The highest head at most `tolerance` above the (upper) median of `heads`.
pub fn robust_head(heads: &[u64], tolerance: u64) -> Option<u64> {
    let mut sorted = heads.to_vec();
    sorted.sort_unstable();
    let median = *sorted.get(sorted.len() / 2)?;
    let ceiling = median.saturating_add(tolerance);
    sorted.into_iter().filter(|h| *h <= ceiling).max()
}

/// The lower median of the upstreams' finalized blocks: at least half of them have
/// finalized it.
pub fn robust_finalized(readings: &[u64]) -> Option<u64> {
    let mut sorted = readings.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// A chain's head, shared between the health checkers (writers, serialized by a lock) and
/// requests (readers of one atomic).
#[derive(Debug)]
pub struct ChainHead {
    /// The head plus one: 0 until some upstream's head is known.
    value: AtomicU64,
    /// The finalized block plus one: 0 while none is known.
    finalized: AtomicU64,
    state: Mutex<State>,
    hold: Duration,
    /// Told each time the head changes, so that the chain's background rounds take a new
    /// block in at once (a socket tells heads between probes).
    moved: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Since when every update has proposed a lower head.
    lower_since: Option<Instant>,
    /// How many upstreams' heads the current head was computed from.
    set_by: usize,
}

impl ChainHead {
    /// `hold`: how long the upstreams must agree on a lower head before the head goes back.
    pub fn new(hold: Duration) -> Self {
        Self {
            value: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            hold,
            moved: watch::channel(0).0,
        }
    }

    /// Changes each time the head does.
    pub fn moves(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }

    pub fn get(&self) -> Option<u64> {
        self.value.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The chain's finalized block, once known: answers at or below it cannot change.
    pub fn finalized(&self) -> Option<u64> {
        self.finalized.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Move the finalized block to `candidate` (capped at the head) when that is higher.
    /// It goes back only with the head (`head_went_back`: a chain reset), to the head.
    pub fn advance_finalized(&self, candidate: Option<u64>, head_went_back: bool) {
        let store = |v: u64| self.finalized.store(v.saturating_add(1), Ordering::Relaxed);
        let head = self.get();
        if let (true, Some(h), Some(f)) = (head_went_back, head, self.finalized()) {
            if f > h {
                store(h);
            }
        }
        let Some(candidate) = candidate.map(|c| head.map_or(c, |h| c.min(h))) else {
            return;
        };
        if self.finalized().is_none_or(|f| candidate > f) {
            store(candidate);
        }
    }

    /// Recompute from the heads of the upstreams currently fit to count. Returns the head
    /// and whether it went backwards.
    pub fn update(&self, heads: &[u64], tolerance: u64) -> (Option<u64>, bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(candidate) = robust_head(heads, tolerance) else {
            return (self.get(), false);
        };
        let store = |v: u64| {
            let v = v.saturating_add(1);
            self.value.store(v, Ordering::Relaxed);
            self.moved
                .send_if_modified(|old| std::mem::replace(old, v) != v);
        };
        match self.get() {
            // Fewer upstreams count than set the head: the lower candidate only says that the
            // leaders went away, not that the chain went back. Keep the head, so that the
            // laggards left behind are not taken for in sync.
            Some(current) if candidate < current && heads.len() < state.set_by => {
                state.lower_since = None;
                (Some(current), false)
            }
            Some(current) if candidate < current => {
                let since = *state.lower_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.hold {
                    state.lower_since = None;
                    state.set_by = heads.len();
                    store(candidate);
                    (Some(candidate), true)
                } else {
                    (Some(current), false)
                }
            }
            _ => {
                state.lower_since = None;
                state.set_by = heads.len();
                store(candidate);
                (Some(candidate), false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOLD: Duration = Duration::from_secs(10);

    #[test]
    fn an_outlier_far_ahead_is_ignored() {
        assert_eq!(robust_head(&[100, 101, 99, 5_000], 12), Some(101));
        assert_eq!(robust_head(&[100, 101, 5_000], 12), Some(101));
        assert_eq!(robust_head(&[100, 101, 102, 5_000, 5_001], 12), Some(102));
    }

    #[test]
    fn a_stuck_node_never_sets_the_head() {
        // Two upstreams, one stuck: the head follows the one that moves.
        assert_eq!(robust_head(&[100, 5_000], 12), Some(5_000));
        assert_eq!(robust_head(&[100, 100, 5_000, 5_001], 12), Some(5_001));
    }

    #[test]
    fn honest_spread_keeps_the_highest() {
        assert_eq!(robust_head(&[100, 102, 103], 12), Some(103));
        assert_eq!(robust_head(&[7], 0), Some(7));
        assert_eq!(robust_head(&[], 12), None);
    }

    #[test]
    fn finalized_is_the_lower_median_capped_at_the_head_and_never_goes_back() {
        assert_eq!(robust_finalized(&[]), None);
        assert_eq!(robust_finalized(&[90, 95]), Some(90), "with two, the lower");
        assert_eq!(
            robust_finalized(&[90, 1_000_000, 91]),
            Some(91),
            "a liar ahead"
        );
        assert_eq!(robust_finalized(&[7]), Some(7));
        let h = ChainHead::new(HOLD);
        h.advance_finalized(Some(5), false);
        assert_eq!(h.finalized(), Some(5), "before any head, as reported");
        h.update(&[100], 12);
        h.advance_finalized(Some(150), false);
        assert_eq!(h.finalized(), Some(100), "never above the head");
        h.advance_finalized(Some(60), false);
        h.advance_finalized(None, false);
        assert_eq!(h.finalized(), Some(100), "never back on lower readings");
    }

    #[tokio::test(start_paused = true)]
    async fn finalized_goes_back_with_a_chain_reset() {
        let h = ChainHead::new(HOLD);
        h.update(&[100], 12);
        h.advance_finalized(Some(90), false);
        h.update(&[10], 12);
        tokio::time::advance(HOLD).await;
        let (_, went_back) = h.update(&[10], 12);
        assert!(went_back);
        h.advance_finalized(Some(8), went_back);
        assert_eq!(h.finalized(), Some(10));
        h.advance_finalized(Some(8), false);
        assert_eq!(h.finalized(), Some(10));
    }

    #[test]
    fn genesis_is_a_head() {
        let h = ChainHead::new(HOLD);
        assert_eq!(h.update(&[0, 0], 12), (Some(0), false));
        assert_eq!(h.get(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn goes_back_only_after_lower_heads_for_the_hold_time() {
        let h = ChainHead::new(HOLD);
        assert_eq!(h.get(), None);
        h.update(&[100, 101], 12);
        assert_eq!(h.get(), Some(101));
        for _ in 0..10 {
            assert_eq!(
                h.update(&[90], 12),
                (Some(101), false),
                "many low readings at once"
            );
        }
        tokio::time::advance(HOLD / 2).await;
        assert_eq!(
            h.update(&[102], 12),
            (Some(102), false),
            "a higher one resets the wait"
        );
        assert_eq!(h.update(&[50], 12), (Some(102), false));
        tokio::time::advance(HOLD - Duration::from_millis(1)).await;
        assert_eq!(h.update(&[50], 12), (Some(102), false));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            h.update(&[50], 12),
            (Some(50), true),
            "agreed for the hold time: a reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leaders_going_down_never_lower_the_head() {
        let h = ChainHead::new(HOLD);
        h.update(&[1000, 1001, 500], 16);
        assert_eq!(h.get(), Some(1001));
        // The two leaders are down; the one left is 500 behind, for as long as it takes.
        for _ in 0..5 {
            tokio::time::advance(HOLD).await;
            assert_eq!(h.update(&[500], 16), (Some(1001), false));
        }
        // They come back: all is as before.
        assert_eq!(h.update(&[1002, 1002, 500], 16), (Some(1002), false));
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
            let median = sorted[sorted.len() / 2];
            prop_assert!(head >= median);
            prop_assert!(head <= median + tolerance);
            // More than half at or below the head: no minority far ahead can drag it up.
            prop_assert!(heads.iter().filter(|h| **h <= head).count() * 2 > heads.len());
        }
    }
}
