//! What a Bitcoin node's error object means (`src/rpc/protocol.h` of Bitcoin Core, and
//! the wordings of Core and of Bitcoin SV, whose node the tests run): for routing, and for
//! a `sendrawtransaction`, what it says about the transaction.

use serde::Deserialize;

use crate::family::{BroadcastVerdict, ErrorClass};

#[derive(Deserialize)]
struct RpcError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

fn read(error: &[u8]) -> (i64, String) {
    serde_json::from_slice::<RpcError>(error)
        .map(|e| (e.code, e.message.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// `ChainFamily::classify_error`.
pub fn classify_error(error: &[u8]) -> ErrorClass {
    let (code, message) = read(error);
    let says = |w: &str| message.contains(w);
    match code {
        // Warming up (-28, "Loading block index…"), in initial download (-10), without
        // peers (-9), or failing inside (-32603): another node may answer.
        -28 | -10 | -9 | -32603 => ErrorClass::NodeCannotAnswer,
        // Pruned here; an archive node has it.
        -1 if says("pruned") => ErrorClass::NodeCannotAnswer,
        // Not indexed here (no -txindex, or indexing), or a block this node does not have
        // yet: another node may. A transaction unknown everywhere is the answer, and so is
        // a lookup's "not found" for the broadcast's own check.
        -5 if says("txindex") || says("being indexed") || says("block not found") => {
            ErrorClass::NodeCannotAnswer
        }
        // A height past this node's head: a node further ahead may have it.
        -8 if says("out of range") => ErrorClass::NodeCannotAnswer,
        // No wallet loaded (-18, -19): this node's setup, not the request's.
        -18 | -19 => ErrorClass::NodeCannotAnswer,
        _ if says("work queue depth exceeded") => ErrorClass::RateLimited,
        _ => ErrorClass::Answer,
    }
}

/// `ChainFamily::broadcast_verdict`: a `sendrawtransaction` error.
pub fn broadcast_verdict(error: &[u8]) -> Option<BroadcastVerdict> {
    let (code, message) = read(error);
    let says = |w: &str| message.contains(w);
    if code == -27
        || says("txn-already-in-mempool")
        || says("txn-already-known")
        || says("already in the mempool")
        || says("txn-same-nonwitness-data-in-mempool")
        || says("already in block chain")
        || says("already in utxo set")
    {
        // The node has it, in its pool or in a block.
        return Some(BroadcastVerdict::AlreadyKnown);
    }
    if says("missingorspent")
        || says("missing inputs")
        || says("inputs missing or spent")
        || says("txn-mempool-conflict")
        || says("rejecting replacement")
    {
        // Its inputs are spent: by this very transaction (mined, or in the pool of a node
        // that relayed it) or by another one. Only a lookup of the txid tells which.
        return Some(BroadcastVerdict::NonceUsed);
    }
    match code {
        // Verification (-25), a rejection by policy or consensus (-26), a transaction
        // that cannot be decoded (-22): the answer.
        -25 | -26 | -22 => Some(BroadcastVerdict::Rejected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(code: i64, message: &str) -> Vec<u8> {
        serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn routing() {
        use ErrorClass::*;
        let cases = [
            (-28, "Loading block index...", NodeCannotAnswer),
            (-28, "Verifying blocks...", NodeCannotAnswer),
            (-10, "Bitcoin is downloading blocks...", NodeCannotAnswer),
            (-9, "Bitcoin is not connected!", NodeCannotAnswer),
            (-32603, "Internal error", NodeCannotAnswer),
            (-1, "Block not available (pruned data)", NodeCannotAnswer),
            (-5, "No such mempool transaction. Use -txindex or provide a block hash to enable blockchain transaction queries. Use gettransaction for wallet transactions.", NodeCannotAnswer),
            (-5, "No such transaction found in the provided block. Use gettransaction for wallet transactions.", Answer),
            (-5, "Block not found", NodeCannotAnswer),
            (-5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.", Answer),
            (-8, "Block height out of range", NodeCannotAnswer),
            (-8, "Invalid parameter", Answer),
            (-18, "Requested wallet does not exist or is not loaded", NodeCannotAnswer),
            (-32601, "Method not found", Answer),
            (-32602, "Invalid params", Answer),
            (-22, "TX decode failed", Answer),
            (-3, "Expected type number, got string", Answer),
        ];
        for (code, message, class) in cases {
            assert_eq!(classify_error(&e(code, message)), class, "{code} {message}");
        }
    }

    #[test]
    fn broadcast_verdicts_in_core_and_bsv_wordings() {
        use BroadcastVerdict::*;
        let cases = [
            // Core
            (-27, "Transaction outputs already in utxo set", Some(AlreadyKnown)),
            (-27, "transaction already in block chain", Some(AlreadyKnown)),
            (-26, "txn-already-in-mempool", Some(AlreadyKnown)),
            (-26, "txn-same-nonwitness-data-in-mempool", Some(AlreadyKnown)),
            (-25, "bad-txns-inputs-missingorspent", Some(NonceUsed)),
            (-25, "Missing inputs", Some(NonceUsed)),
            (-26, "txn-mempool-conflict", Some(NonceUsed)),
            (-26, "insufficient fee, rejecting replacement 3b8f…", Some(NonceUsed)),
            (-26, "min relay fee not met, 100 < 141", Some(Rejected)),
            (-26, "mandatory-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)", Some(Rejected)),
            (-25, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)", Some(Rejected)),
            (-22, "TX decode failed", Some(Rejected)),
            // Bitcoin SV 1.0.13 (recorded on the regtest node the tests run)
            (-27, "Transaction already in the mempool", Some(AlreadyKnown)),
            (-26, "257: txn-already-known", Some(AlreadyKnown)),
            (-26, "258: txn-mempool-conflict", Some(NonceUsed)),
            (-25, "Missing inputs", Some(NonceUsed)),
            // Not about the transaction
            (-28, "Loading block index...", None),
            (-32603, "Internal error", None),
        ];
        for (code, message, verdict) in cases {
            assert_eq!(
                broadcast_verdict(&e(code, message)),
                verdict,
                "{code} {message}"
            );
        }
    }
}
