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
