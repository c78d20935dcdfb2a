//! Chain families: what differs between EVM, Solana and Bitcoin JSON-RPC.
//!
//! The core (routing, failover, health, metrics) knows nothing of any chain's methods. What a
//! family knows sits behind [`ChainFamily`]: how to probe an upstream (identity, head,
//! syncing), which block a call needs, which calls are unsafe to repeat, what a node's error
//! object means, and which method names deserve a metric label. A new family implements the trait; the core is untouched.

pub mod bitcoin;
pub mod cache_rule;
pub mod evm;
mod labels;
pub mod pubsub;
pub mod range;

use std::sync::Arc;

pub use cache_rule::CacheRule;
pub use labels::MethodLabels;
pub use pubsub::{Log, LogFilter, Push, PushProtocol};
pub use range::{CanonicalHash, MergeError, RangeEnd, RangePart, RangeQuery};

use crate::config::{ChainConfig, Family};

/// What state of the chain a call needs from the upstream that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockNeed {
    /// The newest state (`latest`, `pending`, nonces, balances): in-sync upstreams only.
    Head,
    /// A specific height: any upstream whose head has reached it.
    AtLeast(u64),
    /// No particular block (lookups by hash, chain constants).
    Any,
}

/// How a call is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodClass {
    pub need: BlockNeed,
    /// A block lookup (`eth_getBlockByNumber`, ...), answered `null` when the block is beyond
    /// every upstream's head.
    pub block_lookup: bool,
    pub cost: Cost,
}

/// A call classified once, when it arrives: everything the chain's call stack asks about
/// its method, so that no layer dispatches on the name again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Its index in the family's [`MethodLabels`] (metrics).
    pub label: usize,
    /// May be sent again after an attempt that may have reached a node.
    pub repeatable: bool,
    /// Identical calls in flight at once may share one upstream call: a read. Not a call
    /// that changes a node's state however safe it is to repeat (`evm_mine` twice mines
    /// two blocks; shared, one).
    pub shareable: bool,
    pub class: MethodClass,
    /// When its answer may be kept.
    pub cache: CacheRule,
}

/// How long a call may take by nature: decides its timeouts and whether it is hedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Answered in milliseconds by a healthy node.
    Normal,
    /// Slow by nature (log queries over ranges, traces): the chain's `heavy_request_timeout`
    /// applies, a timeout is not held against the upstream, and it is never hedged.
    Heavy,
}

/// What one health probe of an upstream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeVerdict {
    Healthy {
        head: u64,
    },
    /// Still syncing: not fit to serve, whatever its head.
    Syncing {
        head: Option<u64>,
    },
    /// Serves another chain than the one configured: never used.
    WrongChain(String),
    /// Did not answer the probe properly (timeout, error, garbage).
    Failed(String),
}

/// What one probe call got back (`ChainFamily::judge_probe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// The `result`, as JSON text.
    Result(String),
    /// A JSON-RPC error answer: the upstream answers, but not this method.
    Error(String),
    /// No usable answer (no connection, a timeout, an HTTP error, garbage), in words that
    /// name the method.
    Failed(String),
}

/// What a JSON-RPC error object from a node means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The answer to the request (a revert, invalid params): the same anywhere; returned as
    /// it is and never held against the node.
    Answer,
    /// This node cannot answer now (behind, pruned, overloaded): another node may.
    NodeCannotAnswer,
    /// A rate limit expressed as a JSON-RPC error rather than an HTTP 429.
    RateLimited,
}

/// What a node's error answer to a transaction broadcast says about the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastVerdict {
    /// The node has the transaction already: the broadcast succeeded.
    AlreadyKnown,
    /// The sender's nonce is used: by this very transaction (success), or by another one
    /// (a real rejection). Only a lookup of the hash tells which.
    NonceUsed,
    /// A real rejection (insufficient funds, underpriced, bad signature): the answer.
    Rejected,
}

/// A JSON-RPC call a family asks the core to make: method and params JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyCall {
    pub method: &'static str,
    pub params: String,
}

impl FamilyCall {
    pub fn new(method: &'static str, params: String) -> Self {
        Self { method, params }
    }

    /// The upstream request for this call, with request id `id` (JSON text).
    pub fn encode(&self, id: &[u8]) -> bytes::Bytes {
        let method = serde_json::to_string(self.method).unwrap_or_default();
        crate::jsonrpc::encode_request(id, method.as_bytes(), Some(self.params.as_bytes()))
    }
}

/// A transaction broadcast: which transaction it is and what to ask to confirm it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The transaction's id (hash), computed locally.
    pub hash: String,
    /// `hash` as the JSON text of the result (`"0x…"`).
    pub hash_json: String,
    /// A call that returns the transaction if a node knows it, `null` if not.
    pub lookup: FamilyCall,
    /// The account that signed it and its nonce, for families with nonces: another
    /// transaction of the same sender and nonce replaces it.
    pub sender: Option<String>,
    pub nonce: Option<u64>,
}

/// A block as the canonical window holds it (`health::canonical`): hashes in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub number: u64,
    pub hash: String,
    pub parent: String,
}

/// Where a mined transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    pub block: u64,
    /// Lower case: a reorg shows as another hash at the same height, or none.
    pub block_hash: String,
}

pub trait ChainFamily: Send + Sync + std::fmt::Debug {
    /// The calls of one health probe of an upstream, sent at once: its identity (that it
    /// serves the configured chain, checked on every probe), its head, whether it is
    /// syncing. A few cheap requests: paid providers bill for them. The family does no I/O:
    /// the health checker (`chain::checker`) sends them and hands the answers to
    /// `judge_probe`.
    fn probe_calls(&self) -> Vec<FamilyCall>;

    /// HTTP statuses whose JSON-RPC error body is the node's answer, not a failing
    /// upstream (Bitcoin Core's legacy replies: 500 for an RPC error, 404 for an unknown
    /// method). None for a family whose nodes answer errors with 200.
    fn answer_statuses(&self) -> &'static [u16] {
        &[]
    }

    /// Whether its clients send JSON-RPC 1.0 request objects (no `"jsonrpc"`, or `"1.0"`),
    /// which are then taken as 2.0's (`jsonrpc::Limits::version_1`).
    fn takes_json_rpc_1(&self) -> bool {
        false
    }

    /// Whether `method` acts on one node's own state (a Bitcoin node's wallet, its
    /// settings), so that its answer depends on which node it reaches: refused unsent,
    /// unless an upstream's `methods.allow` names it (`Upstream::serves`).
    fn node_local(&self, _method: &str) -> bool {
        false
    }

    /// The verdict from the answers to `probe_calls`, in their order.
    fn judge_probe(&self, answers: &[ProbeAnswer]) -> ProbeVerdict;

    /// The call that asks an upstream for its finalized block (made by the health checker
    /// every few probes), for a family with a finality tag; `None` otherwise.
    fn finalized_call(&self) -> Option<FamilyCall> {
        None
    }

    /// The block number in a `result` answering `finalized_call`.
    fn parse_finalized(&self, _result: &[u8]) -> Option<u64> {
        None
    }

    /// The call asking for block `number`'s hash and parent (the canonical window), for a
    /// family with block hashes; `None` otherwise.
    fn block_ref_call(&self, _number: u64) -> Option<FamilyCall> {
        None
    }

    /// The block in a `result` answering `block_ref_call` (`None`: not a block, or `null`).
    fn parse_block_ref(&self, _result: &[u8]) -> Option<BlockRef> {
        None
    }

    /// A `newHeads` notification's `result` for a block answering `block_ref_call`: its
    /// header, as a node's own subscription sends it.
    fn head_notification(&self, _block: &[u8]) -> Option<bytes::Bytes> {
        None
    }

    /// How its nodes push heads and pending transactions over a WebSocket, for a family
    /// that has upstream sockets.
    fn push(&self) -> Option<&dyn PushProtocol> {
        None
    }

    /// The call asking for the logs of the block with hash `hash` (logs subscriptions and
    /// filters), for a family with logs.
    fn block_logs_call(&self, _hash: &str) -> Option<FamilyCall> {
        None
    }

    /// The logs in a `result` answering `block_logs_call` for the block whose header is
    /// `header`. `None` when the answer cannot be the block's: not a list, or empty while
    /// the header says the block has logs (a node that lacks the block may answer `[]`).
    fn parse_block_logs(&self, _result: &[u8], _header: &[u8]) -> Option<Vec<Log>> {
        None
    }

    /// A logs filter from its JSON object (`{"address": .., "topics": [..]}`).
    fn log_filter(&self, _filter: &serde_json::Value) -> Result<LogFilter, String> {
        Err("this chain has no logs".into())
    }

    /// A polled logs filter (`eth_newFilter`): the filter and its block range.
    fn poll_filter(
        &self,
        _object: &serde_json::Value,
    ) -> Result<(LogFilter, Option<u64>, Option<u64>), String> {
        Err("this chain has no logs".into())
    }

    /// Which block a call needs.
    fn classify(&self, method: &str, params: Option<&[u8]>) -> MethodClass;

    /// Everything about a call the stack needs, classified once.
    fn method_info(&self, method: &str, params: Option<&[u8]>) -> MethodInfo {
        let repeatable = self.is_repeatable(method);
        MethodInfo {
            label: self.method_labels().index(method),
            repeatable,
            shareable: repeatable,
            class: self.classify(method, params),
            cache: CacheRule::Never,
        }
    }

    /// The call's params in a canonical form, for the cache key: the same for every
    /// spelling of the same question (key order, hex case, the block as a tag resolved to
    /// its number or as an EIP-1898 object). `None`: not cacheable after all.
    fn cache_params(
        &self,
        _method: &str,
        _params: Option<&[u8]>,
        _rule: CacheRule,
    ) -> Option<Vec<u8>> {
        None
    }

    /// For `CacheRule::Located`: the block a transaction or receipt answer names (`None`
    /// while pending).
    fn answer_block(&self, _result: &[u8]) -> Option<u64> {
        None
    }

    /// For a call over a range of blocks that may be asked in parts (`eth_getLogs` by
    /// number or tag): its range and filter. `None` for any other call.
    fn range_query(&self, _method: &str, _params: Option<&[u8]>) -> Option<RangeQuery> {
        None
    }

    /// The params asking `query` for the blocks `from..=to` only.
    fn range_params(&self, _query: &RangeQuery, _from: u64, _to: u64) -> Option<bytes::Bytes> {
        None
    }

    /// A node's error answer to a range call saying the range or its answer is too large
    /// ("more than 10000 results", "exceed maximum block range"): ask for less.
    fn is_range_error(&self, _error: &[u8]) -> bool {
        false
    }

    /// One answer from the answers to consecutive parts of a range call, in order, each
    /// item once: the items' own text, never re-encoded. Items of blocks whose canonical
    /// hash `canonical` knows must be of that block.
    fn merge_range(
        &self,
        _parts: &[RangePart],
        _canonical: CanonicalHash<'_>,
    ) -> Result<Vec<u8>, MergeError> {
        Err(MergeError::Unreadable("not a range call".into()))
    }

    /// Whether a call may be sent again after an attempt that may have reached a node.
    fn is_repeatable(&self, method: &str) -> bool;

    /// What a node's error object in answer to `method` means. For a transaction send,
    /// what it says about the transaction (`broadcast_verdict`) comes first.
    fn classify_error(&self, method: &str, error: &[u8]) -> ErrorClass;

    /// Checks a `result` answering a client's call of `method` for what a probe would have
    /// caught: `Some(WrongChain)` when it shows the upstream serves another chain (an EVM
    /// `eth_chainId` with another id), `Some(Failed)` when it is not a valid answer at all.
    /// Either way the answer is not passed on; the call moves to another upstream. Without
    /// it, an upstream re-pointed at another chain would tell clients the wrong chain until
    /// its next probe.
    fn check_answer(&self, method: &str, result: &[u8]) -> Option<ProbeVerdict>;

    /// For a call that broadcasts a signed transaction: its locally computed hash and how to
    /// look it up. `None` for any other call; `Some(Err)` when the transaction cannot be read.
    fn broadcast(&self, method: &str, params: Option<&[u8]>) -> Option<Result<Broadcast, String>>;

    /// What a node's error answer to a broadcast says about the transaction; `None` when it
    /// says nothing about it (a gateway's timeout, a rate limit).
    fn broadcast_verdict(&self, error: &[u8]) -> Option<BroadcastVerdict>;

    // The transaction watch (`crate::watch`): what "mined", "final" and "replaced" mean.

    /// The call that answers a transaction's receipt: `null` while it is not mined.
    fn receipt_call(&self, hash: &str) -> FamilyCall;

    /// Where a receipt says the transaction is; `None` when not mined (or unreadable).
    fn inclusion(&self, receipt: &[u8]) -> Option<Inclusion>;

    /// The call that answers how many transactions of `sender` are mined (its next nonce on
    /// the chain); `None` for a family without nonces.
    fn mined_count_call(&self, sender: &str) -> Option<FamilyCall>;

    /// The number in an answer to `mined_count_call` or `pending_count_read`.
    fn parse_count(&self, result: &[u8]) -> Option<u64>;

    /// For a read of an account's next nonce counting pending transactions
    /// (`eth_getTransactionCount(addr, "pending")`): the account, as the watch keys it.
    fn pending_count_read(&self, method: &str, params: Option<&[u8]>) -> Option<String>;

    /// The `result` JSON text for a count.
    fn count_result(&self, count: u64) -> bytes::Bytes;

    /// The metric labels for method names.
    fn method_labels(&self) -> MethodLabels;
}

/// The family of a configured chain.
pub fn for_chain(chain: &ChainConfig) -> Arc<dyn ChainFamily> {
    match chain.family {
        Family::Evm => Arc::new(evm::Evm::new(chain.chain_id.unwrap_or_default())),
        Family::Bitcoin => Arc::new(bitcoin::Bitcoin::new(
            chain.genesis_hash.as_deref().unwrap_or_default(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_sorted_and_unique() {
        assert!(evm::KNOWN_METHODS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn transactions_and_filters_are_not_repeatable() {
        let evm = evm::Evm::new(1);
        assert!(!evm.is_repeatable("eth_sendRawTransaction"));
        assert!(!evm.is_repeatable("eth_newFilter"));
        assert!(evm.is_repeatable("eth_getBalance"));
        assert!(evm.is_repeatable("eth_call"));
    }

    #[test]
    fn unknown_methods_share_the_other_label() {
        let labels = evm::Evm::new(1).method_labels();
        let i = labels.index("eth_call");
        assert_eq!(labels.label(i), "eth_call");
        let o = labels.index("made_up_method");
        assert_eq!(labels.label(o), "other");
        assert_eq!(o, labels.len() - 1);
    }
}
