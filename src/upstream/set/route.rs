//! What a call needs of the upstream that serves it, with the chain's state when it arrived.

use crate::family::{BlockNeed, Cost};
use crate::upstream::Upstream;

/// What a call needs, with the chain's state when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub need: BlockNeed,
    /// A block lookup answered `null` when the block is beyond every upstream's head.
    pub block_lookup: bool,
    pub chain_head: Option<u64>,
    pub max_lag_blocks: u64,
    /// An upstream further ahead of the chain head than this is an outlier (a fork, a
    /// broken node): it does not serve.
    pub max_ahead_blocks: u64,
    /// A heavy call is never a half-open breaker's trial: a trial must tell quickly whether
    /// the upstream is back, and a heavy call's timeout says nothing.
    pub cost: Cost,
}

impl Route {
    /// Any upstream will do (tests, probes of the set).
    pub fn any() -> Self {
        Self {
            need: BlockNeed::Any,
            block_lookup: false,
            chain_head: None,
            max_lag_blocks: u64::MAX,
            max_ahead_blocks: u64::MAX,
            cost: Cost::Normal,
        }
    }

    /// Whether `u` is within `max_lag_blocks` of the chain head (and not an outlier ahead).
    pub fn in_sync(&self, u: &Upstream) -> bool {
        u.lag(self.chain_head) <= self.max_lag_blocks && !self.too_far_ahead(u)
    }

    pub(crate) fn too_far_ahead(&self, u: &Upstream) -> bool {
        match (self.chain_head, u.active().head()) {
            (Some(c), Some(h)) => h.saturating_sub(c) > self.max_ahead_blocks,
            _ => false,
        }
    }
}

/// A block lookup this far beyond every head is answered `null` without asking: the probed
/// heads may be a few seconds old, but not this old.
pub(super) fn far_beyond(max_lag_blocks: u64) -> u64 {
    max_lag_blocks.saturating_mul(100).max(1000)
}

/// Why `first_pick` found no upstream.
pub(super) enum Beyond {
    /// A block lookup far beyond every head: `null`, without asking.
    Null,
    /// A block just beyond the probed heads: the in-sync upstreams may have it by now.
    AskInSync,
    /// Not about a block: no upstream can serve.
    No,
}

/// Whether the upstream has got far enough along the chain for the call.
pub(super) fn reaches(u: &Upstream, route: &Route) -> bool {
    match route.need {
        BlockNeed::Any => true,
        BlockNeed::Head => route.in_sync(u),
        // An upstream whose head is not known yet may try.
        BlockNeed::AtLeast(n) => u.active().head().is_none_or(|h| h >= n),
    }
}
