//! The canonical window: the hashes of the chain's newest blocks as Manifold last saw them,
//! each linked to its parent, so that a reorg is seen (a block whose parent is not the
//! hash held one below) and where it starts is known. The cache keys answers about recent
//! blocks on these hashes and drops them from the reorg's height (`chain::follow`).
//!
//! Sans-IO: `chain::follow` asks upstreams for blocks and records them here; this type only
//! decides what they mean. Bounded: `CAPACITY` blocks, the oldest dropped first.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::family::BlockRef;

/// Blocks held: the design's 128-block window, enough for any reorg a chain finalizes past.
pub const CAPACITY: usize = 128;

/// What recording a block found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Its parent is the block held one below (or nothing is held there): nothing more to
    /// ask.
    Linked,
    /// Its parent is not held (a gap, or a branch that differs further down): the block one
    /// below must be asked for and recorded too.
    NeedParent,
}

#[derive(Debug, Default)]
pub struct CanonicalWindow {
    blocks: Mutex<BTreeMap<u64, BlockRef>>,
}

impl CanonicalWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// The canonical hash at `number`, when the window holds it.
    pub fn hash_at(&self, number: u64) -> Option<String> {
        self.lock().get(&number).map(|b| b.hash.clone())
    }

    /// The newest block held.
    pub fn tip(&self) -> Option<u64> {
        self.lock().keys().next_back().copied()
    }

    /// Record `block` as the chain's head. Blocks above it are dropped (a chain whose head
    /// went back), and one held at its height with another hash is replaced: the height of
    /// the first block replaced or dropped is returned as where a reorg starts, with
    /// whether the parent must be asked for next.
    pub fn record_head(&self, block: BlockRef) -> (Recorded, Option<u64>) {
        self.record(block, true)
    }

    /// Record `block`, the parent of one recorded before (walking back to where a branch
    /// joins the window, or filling a gap): what is above it stays.
    pub fn record_parent(&self, block: BlockRef) -> (Recorded, Option<u64>) {
        self.record(block, false)
    }

    fn record(&self, block: BlockRef, head: bool) -> (Recorded, Option<u64>) {
        let mut blocks = self.lock();
        let number = block.number;
        let mut reorg_from = None;
        if head {
            let above: Vec<u64> = blocks
                .range(number.saturating_add(1)..)
                .map(|(n, _)| *n)
                .collect();
            reorg_from = above.first().copied();
            for n in above {
                blocks.remove(&n);
            }
        }
        if blocks
            .get(&number)
            .is_some_and(|held| held.hash != block.hash)
        {
            reorg_from = Some(number);
        }
        let linked = match number.checked_sub(1).and_then(|p| blocks.get(&p)) {
            Some(parent) => parent.hash == block.parent,
            // Nothing held below: the window starts here (its first block, or a gap the
            // caller fills by asking for the parent only when it holds blocks further down).
            None => blocks.range(..number).next().is_none(),
        };
        blocks.insert(number, block);
        while blocks.len() > CAPACITY {
            blocks.pop_first();
        }
        let recorded = if linked {
            Recorded::Linked
        } else {
            Recorded::NeedParent
        };
        (recorded, reorg_from)
    }

    /// Forget the blocks at and above `number` (ones not linked to the rest yet).
    pub fn forget_from(&self, number: u64) {
        self.lock().split_off(&number);
    }

    /// Forget blocks at and below `number` (final ones need no watching).
    pub fn prune_to(&self, number: u64) {
        let mut blocks = self.lock();
        while blocks
            .first_key_value()
            .is_some_and(|(n, _)| *n < number && blocks.len() > 1)
        {
            blocks.pop_first();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, BlockRef>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(number: u64, hash: &str, parent: &str) -> BlockRef {
        BlockRef {
            number,
            hash: hash.into(),
            parent: parent.into(),
        }
    }

    #[test]
    fn a_linked_chain_grows_and_a_gap_asks_for_parents() {
        let w = CanonicalWindow::new();
        assert_eq!(w.record_head(b(10, "a10", "a9")), (Recorded::Linked, None));
        assert_eq!(w.record_head(b(11, "a11", "a10")), (Recorded::Linked, None));
        assert_eq!(w.tip(), Some(11));
        // Two blocks later: 12 is missing.
        assert_eq!(
            w.record_head(b(13, "a13", "a12")),
            (Recorded::NeedParent, None)
        );
        assert_eq!(
            w.record_parent(b(12, "a12", "a11")),
            (Recorded::Linked, None)
        );
        assert_eq!(w.tip(), Some(13));
        assert_eq!(w.hash_at(12).as_deref(), Some("a12"));
        assert_eq!(w.hash_at(9), None);
    }

    #[test]
    fn a_reorg_is_found_where_it_starts() {
        let w = CanonicalWindow::new();
        for (n, h, p) in [(10, "a10", "a9"), (11, "a11", "a10"), (12, "a12", "a11")] {
            w.record_head(b(n, h, p));
        }
        // The head block replaced at the same height, on a new parent at 11.
        assert_eq!(
            w.record_head(b(12, "b12", "b11")),
            (Recorded::NeedParent, Some(12))
        );
        assert_eq!(
            w.record_parent(b(11, "b11", "a10")),
            (Recorded::Linked, Some(11)),
            "the fork point is found walking back"
        );
        assert_eq!(w.hash_at(11).as_deref(), Some("b11"));
        assert_eq!(w.hash_at(12).as_deref(), Some("b12"));
        // The head going back drops what was above it.
        assert_eq!(w.record_head(b(10, "a10", "a9")).1, Some(11));
        assert_eq!(w.tip(), Some(10));
        // The same block again changes nothing.
        assert_eq!(w.record_head(b(10, "a10", "a9")), (Recorded::Linked, None));
    }

    #[test]
    fn the_window_is_bounded() {
        let w = CanonicalWindow::new();
        for n in 0..(CAPACITY as u64 * 3) {
            w.record_head(b(n, &format!("h{n}"), &format!("h{}", n.saturating_sub(1))));
        }
        assert_eq!(w.lock().len(), CAPACITY);
        assert_eq!(w.hash_at(0), None);
        w.forget_from(CAPACITY as u64 * 3 - 2);
        assert_eq!(w.tip(), Some(CAPACITY as u64 * 3 - 3));
        w.prune_to(CAPACITY as u64 * 3 - 5);
        assert_eq!(w.lock().len(), 3);
        w.prune_to(u64::MAX);
        assert_eq!(w.lock().len(), 1, "the tip stays");
    }
}
