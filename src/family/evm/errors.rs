//! What an EVM node's error object means, as tables of the wordings real nodes and provider
//! gateways use (geth, erigon, nethermind, besu, reth, and the gateways in front of them).
//! Data, not logic: extend the tables as new wordings are seen, each with a test below.
//!
//! For a transaction send, what the error says about the transaction comes first: an
//! "already known" is success even when a gateway wraps it in `-32603` or words it with
//! "timeout" in it, and a real rejection is the answer even when its wording holds a word
//! the general rules take for a rate limit ("exceeds block gas limit"). Only an error that
//! says nothing about the transaction goes on to the general rules.

use crate::family::{BroadcastVerdict, ErrorClass};

/// Error messages (lower case, matched as substrings) by which nodes and providers say "I
/// cannot answer this now" rather than "this is the answer".
const NODE_CANNOT_ANSWER: &[&str] = &[
    "header not found",
    "missing trie node",
    "unknown block",
    "block not found",
    "header for hash not found",
    "is behind",
    "not synced",
    "still syncing",
    "node is syncing",
    "state is not available",
    "state unavailable",
    "historical state",
    "pruned",
    // erigon: "old data not available due to pruning"
    "pruning",
    // geth 1.14+ while its transaction indexer catches up (receipts, lookups by hash)
    "indexing is in progress",
    // nethermind: "Block 0x12 could not be found"
    "could not be found",
    "request timed out",
    "timeout",
    "deadline exceeded",
    "try again later",
    "temporarily unavailable",
    "service unavailable",
    "no available nodes",
    "upstream error",
    "bad gateway",
    "internal error",
    "internal server error",
    // envoy in front of a provider's nodes
    "no healthy upstream",
    // a provider refusing our credentials with HTTP 200: the upstream is misconfigured,
    // another may answer
    "unauthorized",
    "must be authenticated",
    "invalid api key",
    "invalid project id",
];

/// Answers about the call itself, whatever other words they hold ("timeout"): geth ends an
/// `eth_call` that runs past its `--rpc.evmtimeout` with "execution aborted (timeout = 5s)",
/// and every node would, so it is not retried elsewhere nor held against anyone.
const DETERMINISTIC: &[&str] = &[
    "execution aborted",
    "out of gas",
    "gas required exceeds allowance",
    "invalid opcode",
    "stack underflow",
    "stack limit reached",
];

/// JSON-RPC 2.0's "Internal error" code.
const INTERNAL_ERROR: i64 = -32603;

/// Error messages meaning a rate limit. Specific phrases only: "max code size exceeded" is
/// a deterministic answer, not a rate limit.
const RATE_LIMITED: &[&str] = &[
    "rate limit",
    "ratelimit",
    "rate exceeded",
    "too many requests",
    "request limit",
    "throttl",
    "capacity",
    "compute units",
    "daily limit",
    "quota",
];

/// JSON-RPC error codes meaning a rate limit (EIP-1474's "limit exceeded"; a 429 as a code).
const RATE_LIMITED_CODES: &[i64] = &[-32005, 429];

/// With those codes, messages that are about the request's size, not the rate: the answer
/// to this query ("query returned more than 10000 results"), for the client to narrow.
const SIZE_LIMITS: &[&str] = &["results", "range", "response size", "too large"];

/// Answers to a send meaning the node has this very transaction already: in its pool, or
/// mined. Never a bare "already" ("address already reserved" is a rejection) nor a bare
/// "known" ("unknown block"). Sources, for this table and the two below: each client's
/// own code (geth `core/txpool/errors.go`, reth `rpc-eth-types/src/error/mod.rs`, erigon
/// `txpoolcfg.go`, besu `RpcErrorType.java`, nethermind `AcceptTxResult.cs` and
/// `TxPoolErrorMessages.cs`, openethereum `errors.rs`, anvil `eth/error.rs`).
const ALREADY_KNOWN: &[&str] = &[
    // geth ErrAlreadyKnown, reth, erigon ("ALREADY_EXISTS: already known"), nethermind 2026+
    "already known",
    // erigon's import result prefix
    "already_exists",
    // erigon DuplicateHash
    "existing txn with same hash",
    // besu ETH_SEND_TX_ALREADY_KNOWN ("Known transaction"), geth before 1.9
    "known transaction",
    // nethermind before 2026 (AcceptTxResult.AlreadyKnown, sent as its name)
    "alreadyknown",
    // openethereum ("...with the same hash was already imported"), anvil
    "already imported",
    // eth_sendRawTransactionSync timing out (geth code 4, reth): in the pool, not mined yet
    "was added to the transaction pool",
    "was added to the mempool",
    // gateways and L2 sequencers
    "transaction already exists",
    "already in mempool",
    "already in the txpool",
];

/// Answers meaning the sender's nonce is already used: by this transaction (mined) or by
/// another. Only a lookup of the hash tells which.
const NONCE_USED: &[&str] = &[
    // geth, reth, erigon ("INTERNAL_ERROR: nonce too low"), besu (-32001), nethermind 2026+
    "nonce too low",
    // besu's reason name
    "nonce_too_low",
    // nethermind before 2026
    "oldnonce",
    "ownnoncealreadyused",
    // openethereum ("Transaction nonce is too low. Try incrementing the nonce.")
    "nonce is too low",
    // erigon Mined
    "internal_error: mined",
    "nonce has already been used",
];

/// Rejections that hold a `NONCE_USED` wording: checked first.
const REJECTED_FIRST: &[&str] = &[
    // geth EIP-7702: an authorization's nonce, not the transaction's
    "authority nonce too low",
    "authorization nonce does not match",
];

/// Answers meaning the node refused this transaction for a reason of its own (funds, fees,
/// gas, signature, chain, size, a nonce gap, a full pool): it is not in that node's pool.
/// Listed so that the words inside them ("limit", "full", "internal", "already") cannot be
/// taken for a node that cannot answer, a rate limit, or "already known".
const REJECTED: &[&str] = &[
    // funds and fees
    "insufficient funds",
    "insufficientfunds",
    "upfront cost exceeds",
    "transaction cost overflow",
    "int256overflow",
    "underpriced",
    "replacementnotallowed",
    "could not replace existing tx",
    "fee too low",
    "fee_too_low",
    "feetoolow",
    "gas price below",
    "gas price is too low",
    "max fee per gas less than block base fee",
    "fee cap less than base fee",
    "blob gas price below",
    "less than block blob gas fee",
    "max priority fee per gas higher than max fee per gas",
    "max priority fee per gas exceeds max fee per gas",
    "higher than 2^256-1",
    "exceeds the configured cap",
    "fee cap exceeded",
    "below minimum required priority fee",
    // gas
    "intrinsic gas too low",
    "exceeds block gas limit",
    "gas limit exceeds",
    "gas limit reached",
    "gas limit too low",
    "max initcode size exceeded",
    "initcode too large",
    // signature, chain, type, encoding
    "invalid sender",
    "invalid signature",
    "invalid transaction signature",
    "invalid transaction v, r, s",
    "failed to recover sender",
    "failedtoresolvesender",
    "invalid chain id",
    "wrong chainid",
    "chainid is required",
    "chainid not supported",
    "only replay-protected",
    "should not have a chain id",
    "transaction type not supported",
    "unsupported transaction type",
    "notsupportedtxtype",
    "invalid transaction type",
    "authorization list not supported",
    "not activated yet",
    "oversized data",
    "transaction too large",
    "maxtxsizeexceeded",
    "rlptoolong",
    "transaction is too big",
    "invalid rlp",
    "failed to decode signed transaction",
    "typed transaction too short",
    "negative value",
    "nonce has max value",
    "sender not an eoa",
    "sender is not an eoa",
    "senderiscontract",
    "blobless blob transaction",
    "too many blobs",
    "missing sidecar",
    "kzg",
    // nonce gaps (taken as queued where allowed; these wordings are the refusals)
    "nonce too high",
    "gapped nonce",
    "gapped-nonce",
    "noncegap",
    "nonce gap",
    "too distant from current sender nonce",
    "nonce too far in future",
    // full pools and per-account limits (another node may take it: the broadcast asks
    // several at once)
    "txpool is full",
    "transaction pool is full",
    "sub-pool is full",
    "spammer",
    "account limit exceeded",
    "too many transactions in the queue",
    "address already reserved",
    "authority already reserved",
    "pending transaction type conflict",
    "pendingtxsofconflictingtype",
    "transaction pool not enabled",
];

/// The `message`, and `data` when it is text (nethermind and besu put the reason there), in
/// lower case.
pub(super) fn texts(error: &[u8]) -> (Option<i64>, String) {
    #[derive(serde::Deserialize)]
    struct ErrorObject<'a> {
        code: Option<i64>,
        #[serde(borrow)]
        message: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    let Ok(e) = serde_json::from_slice::<ErrorObject<'_>>(error) else {
        return (None, String::new());
    };
    let mut text = e.message.unwrap_or_default().to_lowercase();
    if let Some(data) = e
        .data
        .and_then(|d| serde_json::from_str::<String>(d.get()).ok())
    {
        text.push(' ');
        text.push_str(&data.to_lowercase());
    }
    (e.code, text)
}

/// What an error answer to a send says about the transaction; `None` when it says nothing
/// about it (a gateway's timeout, a rate limit): then it is an error like any other.
pub fn broadcast_verdict(error: &[u8]) -> Option<BroadcastVerdict> {
    let (_, text) = texts(error);
    let has = |table: &[&str]| table.iter().any(|m| text.contains(m));
    if has(REJECTED_FIRST) {
        Some(BroadcastVerdict::Rejected)
    } else if has(ALREADY_KNOWN) {
        Some(BroadcastVerdict::AlreadyKnown)
    } else if has(NONCE_USED) {
        Some(BroadcastVerdict::NonceUsed)
    } else if has(REJECTED) {
        Some(BroadcastVerdict::Rejected)
    } else {
        None
    }
}

/// Calls that send a transaction: what their errors say about it comes first.
fn is_send(method: &str) -> bool {
    method.starts_with("eth_send")
}

pub fn classify_error(method: &str, error: &[u8]) -> ErrorClass {
    if is_send(method) && broadcast_verdict(error).is_some() {
        return ErrorClass::Answer;
    }
    let (code, message) = texts(error);
    if code.is_none() && message.is_empty() {
        return ErrorClass::Answer;
    }
    // Reverts, unknown methods and bad params first: their messages carry the client's own
    // text (a method name, revert data) that may contain any of the words below.
    if message.contains("revert")
        || matches!(code, Some(3 | -32601 | -32602))
        || DETERMINISTIC.iter().any(|m| message.contains(m))
    {
        return ErrorClass::Answer;
    }
    if SIZE_LIMITS.iter().any(|m| message.contains(m)) {
        return ErrorClass::Answer;
    }
    if code.is_some_and(|c| RATE_LIMITED_CODES.contains(&c))
        || RATE_LIMITED.iter().any(|m| message.contains(m))
    {
        return ErrorClass::RateLimited;
    }
    // -32603 is JSON-RPC's "internal error": the server failed, not the request (reverts,
    // which some nodes send with this code, were sorted out above).
    if code == Some(INTERNAL_ERROR) || NODE_CANNOT_ANSWER.iter().any(|m| message.contains(m)) {
        return ErrorClass::NodeCannotAnswer;
    }
    ErrorClass::Answer
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod tests;
