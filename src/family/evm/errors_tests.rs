//! The wording tables of `errors.rs`, one case per wording, each with where it comes from.

use super::*;

/// Read errors as real nodes and gateways word them (source, code, message), each with
/// what it means: the answer (passed to the client, never retried), a node that cannot
/// answer now (failed over), or a rate limit (parked).
#[test]
fn read_error_wordings() {
    use ErrorClass::{Answer, NodeCannotAnswer, RateLimited};
    let cases: &[(&str, i64, &str, ErrorClass)] = &[
        // answers: about the call itself, every node would say the same
        ("geth revert", 3, "execution reverted: rate limit exceeded", Answer),
        ("geth revert", -32000, "execution reverted", Answer),
        ("nethermind revert", -32603, "execution reverted: not owner", Answer),
        ("geth", -32602, "invalid argument 0: hex string has length 3", Answer),
        ("geth", -32602, "too many arguments, want at most 3", Answer),
        ("geth", -32601, "the method foo does not exist/is not available", Answer),
        ("geth", -32601, "the method eth_quota_capacity does not exist/is not available", Answer),
        ("a node", -32601, "rate limit: no such method", Answer),
        ("geth eth_call", -32000, "insufficient funds for gas * price + value", Answer),
        ("geth eth_call", -32000, "nonce too low", Answer),
        ("geth eth_call", -32000, "max code size exceeded", Answer),
        ("geth --rpc.evmtimeout", -32000, "execution aborted (timeout = 5s)", Answer),
        ("erigon", -32603, "execution aborted (timeout = 5m0s)", Answer),
        ("reth", -32000, "execution aborted (timeout = 5s)", Answer),
        ("geth eth_call", -32000, "out of gas", Answer),
        ("geth eth_estimateGas", -32000, "gas required exceeds allowance (30000000)", Answer),
        ("geth", -32000, "invalid opcode: INVALID", Answer),
        ("infura eth_getLogs", -32005, "query returned more than 10000 results", Answer),
        ("alchemy eth_getLogs", -32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range", Answer),
        ("geth eth_getLogs", -32000, "exceed maximum block range: 5000", Answer),
        ("ankr", -32000, "response too large", Answer),
        // the node cannot answer now: another may
        ("geth", -32000, "header not found", NodeCannotAnswer),
        ("geth", -32000, "missing trie node 1234abcd (path )", NodeCannotAnswer),
        ("geth path scheme", -32000, "historical state 0xab is not available", NodeCannotAnswer),
        ("geth 1.14", -32000, "transaction indexing is in progress", NodeCannotAnswer),
        ("geth", -32002, "request timed out", NodeCannotAnswer),
        ("geth", -32603, "method handler crashed", NodeCannotAnswer),
        ("besu", -32000, "Unknown block", NodeCannotAnswer),
        ("besu", -32000, "Block not found", NodeCannotAnswer),
        ("besu", -32000, "World state unavailable", NodeCannotAnswer),
        ("besu", -32603, "Timeout expired", NodeCannotAnswer),
        ("nethermind", -32001, "Block 0x12 could not be found", NodeCannotAnswer),
        ("nethermind", -32000, "Node is still syncing, the requested block is not available", NodeCannotAnswer),
        ("nethermind", -32016, "Request was canceled due to enabled timeout.", NodeCannotAnswer),
        ("erigon", -32000, "old data not available due to pruning", NodeCannotAnswer),
        ("reth", -32000, "state at block #100 is pruned", NodeCannotAnswer),
        ("a gateway", -32603, "request timed out", NodeCannotAnswer),
        ("a gateway", -32603, "internal error", NodeCannotAnswer),
        ("metamask-style", -32603, "Internal JSON-RPC error.", NodeCannotAnswer),
        ("a gateway", -32000, "internal server error", NodeCannotAnswer),
        ("envoy", -32000, "no healthy upstream", NodeCannotAnswer),
        ("chainstack", -32000, "Must be authenticated!", NodeCannotAnswer),
        ("infura", -32002, "invalid project id", NodeCannotAnswer),
        ("a provider", -32000, "Unauthorized", NodeCannotAnswer),
        // rate limits
        ("EIP-1474", -32005, "limit exceeded", RateLimited),
        ("infura", -32005, "project ID request rate exceeded", RateLimited),
        ("infura", -32005, "daily request count exceeded, request rate limited", RateLimited),
        ("a gateway", 429, "Too Many Requests", RateLimited),
        ("alchemy", 429, "Your app has exceeded its compute units per second capacity", RateLimited),
        ("quicknode", -32007, "request limit reached", RateLimited),
    ];
    for (source, code, message, class) in cases {
        let error = format!(r#"{{"code":{code},"message":"{message}"}}"#);
        assert_eq!(
            classify_error("eth_call", error.as_bytes()),
            *class,
            "{source}: {error}"
        );
    }
    assert_eq!(classify_error("eth_call", b"not json"), Answer);
}

/// Each of `wordings` (code, message) says `verdict` of the transaction, and is the
/// answer to a send (not a node that cannot answer, nor a rate limit).
fn says(verdict: BroadcastVerdict, wordings: &[(i64, &str)]) {
    for (code, message) in wordings {
        let error = format!(r#"{{"code":{code},"message":"{message}"}}"#);
        assert_eq!(
            broadcast_verdict(error.as_bytes()),
            Some(verdict),
            "{error}"
        );
        assert_eq!(
            classify_error("eth_sendRawTransaction", error.as_bytes()),
            ErrorClass::Answer,
            "{error}"
        );
    }
}

/// Each wording a node or gateway sends for a transaction it has already, with the code
/// it comes with: success, whatever the code or the other words in it.
#[test]
fn already_known_wordings() {
    says(
        BroadcastVerdict::AlreadyKnown,
        &[
            (-32000, "already known"),
            (-32603, "already known"),
            (-32000, "Known transaction: 0x5b6d4c"),
            (-32000, "known transaction"),
            (-32003, "AlreadyKnown"),
            (-32010, "AlreadyKnown"),
            (-32000, "transaction already imported"),
            (-32000, "already imported"),
            (-32000, "transaction already exists"),
            (-32000, "ALREADY_EXISTS: already known"),
            (-32000, "INTERNAL_ERROR: existing txn with same hash"),
            (
                -32010,
                "Transaction with the same hash was already imported.",
            ),
            (-32003, "transaction already imported"),
            (
                4,
                "the transaction was added to the transaction pool but wasn't processed in 2s",
            ),
            (
                -32000,
                "transaction 0xab was added to the mempool but wasn't confirmed within 2s",
            ),
            (-32603, "request timed out: already known"),
            (-32005, "rate limit reached; already known"),
            (-32000, "transaction already in mempool"),
            (-32000, "already in the txpool"),
        ],
    );
    // The reason in `data` (nethermind, besu): read too.
    let error = br#"{"code":-32010,"message":"Invalid","data":"AlreadyKnown"}"#;
    assert_eq!(
        broadcast_verdict(error),
        Some(BroadcastVerdict::AlreadyKnown)
    );
}

#[test]
fn nonce_used_wordings() {
    says(
        BroadcastVerdict::NonceUsed,
        &[
            (-32000, "nonce too low"),
            (-32000, "nonce too low: next nonce 6, tx nonce 5"),
            (-32000, "nonce too low: address 0xab, tx: 5 state: 6"),
            (-32001, "Nonce too low"),
            (-32000, "NONCE_TOO_LOW"),
            (-32010, "OldNonce"),
            (-32000, "nonce has already been used"),
            (-32603, "nonce too low"),
            (-32000, "INTERNAL_ERROR: nonce too low"),
            (
                -32010,
                "OldNonce, Current nonce: 5, nonce of rejected tx: 3",
            ),
            (
                -32010,
                "Transaction nonce is too low. Try incrementing the nonce.",
            ),
            (-32000, "INTERNAL_ERROR: mined"),
        ],
    );
}

/// Rejections: the answer, even with the words the general rules take for a rate limit
/// or a node that cannot answer.
#[test]
fn rejection_wordings() {
    says(
        BroadcastVerdict::Rejected,
        &[
        (-32000, "insufficient funds for gas * price + value"),
        (-32000, "insufficient funds for gas * price + value: balance 0, tx cost 21000"),
        (-32010, "InsufficientFunds, Account balance: 0, cumulative cost: 21000"),
        (-32000, "transaction underpriced"),
        (-32000, "replacement transaction underpriced"),
        (-32000, "intrinsic gas too low"),
        (-32000, "exceeds block gas limit"),
        (-32005, "exceeds block gas limit"),
        (-32000, "tx fee (1.20 ether) exceeds the configured cap (1.00 ether)"),
        (-32000, "max fee per gas less than block base fee"),
        (-32000, "max priority fee per gas higher than max fee per gas"),
        (-32000, "invalid sender"),
        (-32000, "only replay-protected (EIP-155) transactions allowed over RPC"),
        (-32000, "transaction type not supported"),
        (-32000, "oversized data"),
        (-32000, "nonce too high"),
        (-32603, "txpool is full"),
        (-32000, "invalid chain id for signer"),
        (-32000, "authority nonce too low"),
        (-32000, "address already reserved"),
        (-32000, "INTERNAL_ERROR: insufficient funds"),
        (-32003, "txpool is full"),
        (-32000, "INTERNAL_ERROR: queued sub-pool is full"),
        (-32000, "FEE_TOO_LOW: replacement transaction underpriced"),
        (-32010, "FeeTooLow"),
        (-32009, "Gas price below configured minimum gas price"),
        (-32005, "Transaction gas limit exceeds block gas limit"),
        (-32002, "Invalid signature"),
        (-32000, "Wrong chainId"),
        (-32000, "transaction nonce is too distant from current sender nonce"),
        (-32000, "account limit exceeded: pooled 16 txs"),
        (-32010, "NonceGap"),
        (-32000, "max fee per gas less than block base fee: address 0xab, maxFeePerGas: 1, baseFee: 7"),
    ],
    );
}

/// A gateway's words after forwarding say nothing about the transaction: classified as
/// any error (the node may have pooled it; the broadcast treats it as maybe delivered).
#[test]
fn gateway_words_are_not_a_verdict() {
    for (code, message, class) in [
        (-32603, "request timed out", ErrorClass::NodeCannotAnswer),
        (-32603, "Internal error", ErrorClass::NodeCannotAnswer),
        (-32603, "Timeout expired", ErrorClass::NodeCannotAnswer),
        (
            -32000,
            "request timed out: Some(Elapsed(()))",
            ErrorClass::NodeCannotAnswer,
        ),
        (
            -32000,
            "context deadline exceeded",
            ErrorClass::NodeCannotAnswer,
        ),
        (-32000, "bad gateway", ErrorClass::NodeCannotAnswer),
        (-32000, "upstream error", ErrorClass::NodeCannotAnswer),
        (-32005, "limit exceeded", ErrorClass::RateLimited),
        (429, "Too Many Requests", ErrorClass::RateLimited),
    ] {
        let error = format!(r#"{{"code":{code},"message":"{message}"}}"#);
        assert_eq!(broadcast_verdict(error.as_bytes()), None, "{error}");
        assert_eq!(
            classify_error("eth_sendRawTransaction", error.as_bytes()),
            class,
            "{error}"
        );
    }
}
