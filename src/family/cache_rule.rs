//! When a call's answer may be kept by the cache: the family's method table says which rule
//! a call falls under; `chain::cache` applies it to the answer.

/// What makes a call's answer safe to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRule {
    /// Never kept: writes, filters, the pool, the node's own state (`eth_syncing`,
    /// `web3_clientVersion`), the newest state (`latest`, `pending`), unknown methods.
    Never,
    /// The same for the chain's whole life (`eth_chainId`).
    Constant,
    /// About block `n` (its contents, the state after it, the logs of a range ending at it):
    /// kept once `n` is final, from an upstream whose head had reached it.
    AtBlock(u64),
    /// Addressed by a block hash: the answer can never change once the block is found, so
    /// it is kept unless it is empty (`null`, `[]`: not found, perhaps not yet).
    ByBlockHash,
    /// A transaction or its receipt, by hash: kept once the block the answer names is
    /// final (before that, a reorg may move it or drop it).
    Located,
    /// About the newest state, by `latest`: kept only when the chain's `latest_ttl` is set,
    /// for that long, under the head block's hash (a new head is a new question).
    AtHead,
}

/// An answer that says "nothing here": never kept unless its block is final (and `null`
/// never: a final block is never missing, so a `null` is a node that lacks it).
pub fn is_null(result: &[u8]) -> bool {
    result.trim_ascii() == b"null"
}

pub fn is_empty_list(result: &[u8]) -> bool {
    let t = result.trim_ascii();
    t.first() == Some(&b'[') && t.get(1..).is_some_and(|r| r.trim_ascii() == b"]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_answers() {
        assert!(is_null(b" null "));
        assert!(!is_null(b"\"null\""));
        assert!(is_empty_list(b"[]"));
        assert!(is_empty_list(b"[ \n ]"));
        assert!(!is_empty_list(b"[1]"));
        assert!(!is_empty_list(b"{}"));
    }
}
