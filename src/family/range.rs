//! Calls over a range of blocks (`eth_getLogs`) that the chain's call stack may ask in parts
//! (`chain::split`): what a family says about them, sans-IO.

use bytes::Bytes;

/// One end of a range, as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    Number(u64),
    /// The chain head (`latest`, or the end left out): resolved to Manifold's own head.
    Latest,
    /// Resolved to Manifold's own finalized block.
    Finalized,
}

/// A range call, read: its two ends and everything else it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub from: RangeEnd,
    pub to: RangeEnd,
    /// The call's filter with the range left out, for `ChainFamily::range_params`.
    pub filter: serde_json::Map<String, serde_json::Value>,
}

/// The answer to one part of a range call: the blocks `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePart {
    pub from: u64,
    pub to: u64,
    pub result: Bytes,
}

/// Why the parts of a range call could not be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// A part's answer is not what the family answers look like.
    Unreadable(String),
    /// A part holds an item of a block that is not the canonical one at its height: the
    /// upstream that answered it is on another branch (or the chain reorganized since).
    NotCanonical { block: u64 },
}

/// The canonical hash at a height above the finalized block, when Manifold knows it.
pub type CanonicalHash<'a> = &'a (dyn Fn(u64) -> Option<String> + Sync);
