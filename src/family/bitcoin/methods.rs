//! Bitcoin Core's methods: which block each needs, which are slow by nature, which must
//! never be sent twice, and which get a metric label.

use serde_json::Value;

use crate::family::{BlockNeed, Cost, MethodClass};

/// Methods with a metric label of their own, sorted for binary search; anything else is
/// counted as `other`.
pub const KNOWN_METHODS: &[&str] = &[
    "decoderawtransaction",
    "decodescript",
    "estimatesmartfee",
    "getbestblockhash",
    "getblock",
    "getblockchaininfo",
    "getblockcount",
    "getblockhash",
    "getblockheader",
    "getblockstats",
    "getchaintips",
    "getdifficulty",
    "getmempoolancestors",
    "getmempooldescendants",
    "getmempoolentry",
    "getmempoolinfo",
    "getnetworkinfo",
    "getrawmempool",
    "getrawtransaction",
    "gettxout",
    "gettxoutproof",
    "gettxoutsetinfo",
    "scantxoutset",
    "sendrawtransaction",
    "testmempoolaccept",
    "validateaddress",
];

/// Which block a call needs, and what it costs.
pub fn classify(method: &str, params: Option<&[u8]>) -> MethodClass {
    let params: Vec<Value> = params
        .and_then(|p| serde_json::from_slice(p).ok())
        .unwrap_or_default();
    let at = |i: usize| params.get(i);
    let (need, cost) = match method {
        // A height: any node whose head has reached it.
        "getblockhash" | "getblockstats" => match at(0).and_then(Value::as_u64) {
            Some(h) => (BlockNeed::AtLeast(h), Cost::Normal),
            // getblockstats also takes a hash.
            None => (BlockNeed::Any, Cost::Normal),
        },
        // By hash: the same anywhere that has the block (a node that lacks a new one says
        // "Block not found", and the call moves on). The whole block with its
        // transactions decoded (verbosity 2 or 3) is large and slow.
        "getblock" => {
            let verbosity = at(1).and_then(|v| v.as_u64().or(v.as_bool().map(u64::from)));
            let heavy = verbosity.is_some_and(|v| v >= 2);
            (
                BlockNeed::Any,
                if heavy { Cost::Heavy } else { Cost::Normal },
            )
        }
        "getblockheader"
        | "getrawtransaction"
        | "gettxoutproof"
        | "decoderawtransaction"
        | "decodescript"
        | "validateaddress"
        | "getnetworkinfo"
        | "getdifficulty" => (BlockNeed::Any, Cost::Normal),
        // Over the whole UTXO set.
        "scantxoutset" | "gettxoutsetinfo" => (BlockNeed::Head, Cost::Heavy),
        // The newest state: the head, the mempool, unspent outputs, fees.
        _ => (BlockNeed::Head, Cost::Normal),
    };
    MethodClass {
        need,
        block_lookup: false,
        cost,
    }
}

/// A node's own wallet, peers and settings: answers that depend on which node is asked
/// (an address made on one node, a balance read on another), and changes an operator makes
/// to one node on purpose.
pub fn node_local(method: &str) -> bool {
    NODE_LOCAL.binary_search(&method).is_ok() || method.starts_with("generate")
}

/// The wallet's calls and the node's settings (mining is every `generate*`), sorted for
/// binary search.
const NODE_LOCAL: &[&str] = &[
    "abandontransaction",
    "abortrescan",
    "addmultisigaddress",
    "addnode",
    "backupwallet",
    "bumpfee",
    "clearbanned",
    "createwallet",
    "disconnectnode",
    "dumpprivkey",
    "dumpwallet",
    "encryptwallet",
    "fundrawtransaction",
    "getaccount",
    "getaccountaddress",
    "getaddressesbyaccount",
    "getaddressesbylabel",
    "getaddressinfo",
    "getbalance",
    "getbalances",
    "getnewaddress",
    "getrawchangeaddress",
    "getreceivedbyaddress",
    "getreceivedbylabel",
    "gettransaction",
    "getunconfirmedbalance",
    "getwalletinfo",
    "importaddress",
    "importdescriptors",
    "importmulti",
    "importprivkey",
    "importprunedfunds",
    "importpubkey",
    "importwallet",
    "invalidateblock",
    "keypoolrefill",
    "listaccounts",
    "listaddressgroupings",
    "listdescriptors",
    "listlabels",
    "listlockunspent",
    "listreceivedbyaddress",
    "listreceivedbylabel",
    "listsinceblock",
    "listtransactions",
    "listunspent",
    "listwalletdir",
    "listwallets",
    "loadwallet",
    "lockunspent",
    "logging",
    "move",
    "preciousblock",
    "pruneblockchain",
    "psbtbumpfee",
    "reconsiderblock",
    "removeprunedfunds",
    "rescanblockchain",
    "savemempool",
    "send",
    "sendall",
    "sendfrom",
    "sendmany",
    "sendtoaddress",
    "setban",
    "sethdseed",
    "setlabel",
    "setmocktime",
    "setnetworkactive",
    "settxfee",
    "signmessage",
    "signrawtransaction",
    "signrawtransactionwithwallet",
    "stop",
    "unloadwallet",
    "upgradewallet",
    "walletcreatefundedpsbt",
    "walletlock",
    "walletpassphrase",
    "walletpassphrasechange",
    "walletprocesspsbt",
];

/// Whether a call may be sent again after an attempt that may have reached a node: not a
/// transaction or a block (broadcast handles those), not a wallet's send, not mining.
pub fn is_repeatable(method: &str) -> bool {
    !matches!(
        method,
        "sendrawtransaction"
            | "submitblock"
            | "submitpackage"
            | "submitheader"
            | "sendtoaddress"
            | "sendmany"
            | "send"
            | "sendall"
            | "bumpfee"
            | "psbtbumpfee"
            | "walletpassphrase"
            | "stop"
    ) && !method.starts_with("generate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_sorted_and_unique() {
        assert!(KNOWN_METHODS.windows(2).all(|w| w[0] < w[1]));
        assert!(NODE_LOCAL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn needs_and_costs() {
        let c = |m: &str, p: &str| classify(m, Some(p.as_bytes()));
        assert_eq!(c("getblockhash", "[120]").need, BlockNeed::AtLeast(120));
        assert_eq!(c("getblockcount", "[]").need, BlockNeed::Head);
        assert_eq!(c("getrawmempool", "[]").need, BlockNeed::Head);
        assert_eq!(c("getblock", r#"["00ab"]"#).need, BlockNeed::Any);
        assert_eq!(c("getblock", r#"["00ab", 2]"#).cost, Cost::Heavy);
        assert_eq!(c("getblock", r#"["00ab", 1]"#).cost, Cost::Normal);
        assert_eq!(c("scantxoutset", r#"["start", []]"#).cost, Cost::Heavy);
    }

    #[test]
    fn a_nodes_own_wallet_and_settings_are_node_local() {
        for m in [
            "getbalance",
            "getnewaddress",
            "sendtoaddress",
            "stop",
            "generatetoaddress",
        ] {
            assert!(node_local(m), "{m}");
        }
        for m in [
            "getblockcount",
            "sendrawtransaction",
            "getrawtransaction",
            "estimatesmartfee",
        ] {
            assert!(!node_local(m), "{m}");
        }
    }

    #[test]
    fn sends_and_mining_are_never_repeated() {
        for m in [
            "sendrawtransaction",
            "submitblock",
            "sendtoaddress",
            "generatetoaddress",
        ] {
            assert!(!is_repeatable(m), "{m}");
        }
        assert!(is_repeatable("getblockcount"));
        assert!(is_repeatable("getrawtransaction"));
    }
}
