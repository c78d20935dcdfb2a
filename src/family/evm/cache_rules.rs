//! The EVM method table for the cache: which calls' answers can never change, and when
//! (after web3-proxy's `CacheMode`, with finality from Manifold's own view of the chain).
//!
//! Kept: the chain id; by-hash block lookups once found; block lookups, state reads
//! (`eth_call`, `eth_getBalance`, `eth_getCode`, `eth_getStorageAt`,
//! `eth_getTransactionCount`, `eth_getProof`) and `eth_getLogs` at a final block number or
//! at a block hash; transactions and receipts once their block is final. Never: writes,
//! filters, `txpool_*`, `eth_syncing`, node and test-node admin (`admin_*`, `anvil_*`,
//! `evm_*`), gas estimates and prices, traces, anything at `pending`, `safe` or `finalized`
//! (a tag's block moves), and reads by hash with EIP-1898's `requireCanonical`. At `latest`:
//! `AtHead`, kept only with the chain's `latest_ttl`.

use serde_json::Value;

use super::methods::{at_latest, block_param, parse_quantity};
use crate::family::{BlockNeed, CacheRule};

/// The block-addressed methods whose answer is fixed by their block.
const AT_BLOCK: &[&str] = &[
    "eth_call",
    "eth_getBalance",
    "eth_getBlockByNumber",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByNumber",
    "eth_getCode",
    "eth_getLogs",
    "eth_getProof",
    "eth_getStorageAt",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionCount",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleCountByBlockNumber",
];

pub(super) fn rule(method: &str, need: BlockNeed, params: Option<&[u8]>) -> CacheRule {
    match method {
        "eth_chainId" | "net_version" => CacheRule::Constant,
        "eth_getTransactionByHash" | "eth_getTransactionReceipt" => CacheRule::Located,
        "eth_getBlockByHash"
        | "eth_getBlockTransactionCountByHash"
        | "eth_getTransactionByBlockHashAndIndex"
        | "eth_getUncleByBlockHashAndIndex"
        | "eth_getUncleCountByBlockHash" => CacheRule::ByBlockHash,
        m if AT_BLOCK.contains(&m) => match need {
            BlockNeed::AtLeast(n) => CacheRule::AtBlock(n),
            // An EIP-1898 `{"blockHash": ..}`, a logs filter by `blockHash`, receipts by hash.
            BlockNeed::Any => CacheRule::ByBlockHash,
            // `latest` (only with the chain's `latest_ttl`): a single block's, not a range's.
            BlockNeed::Head if method != "eth_getLogs" && at_latest(method, params) => {
                CacheRule::AtHead
            }
            BlockNeed::Head => CacheRule::Never,
        },
        _ => CacheRule::Never,
    }
}

/// The params in canonical form: parsed and written again (object keys sorted), hex strings
/// in lower case (addresses, hashes and data are case-blind), and for a block-addressed call
/// the block as the number it was resolved to (`"earliest"`, `"0x05"` and
/// `{"blockNumber": "0x5"}` all become `"0x5"`).
pub(super) fn canonical_params(
    method: &str,
    params: Option<&[u8]>,
    rule: CacheRule,
) -> Option<Vec<u8>> {
    let mut value: Value = match params {
        None => Value::Array(Vec::new()),
        Some(p) => serde_json::from_slice(p).ok()?,
    };
    // EIP-1898's `requireCanonical`: the node must refuse once the block is off the chain,
    // which an answer kept by its hash would not.
    if rule == CacheRule::ByBlockHash && requires_canonical(&value) {
        return None;
    }
    lower_hex(&mut value);
    if let CacheRule::AtBlock(n) = rule {
        let number = Value::String(format!("{n:#x}"));
        if method == "eth_getLogs" {
            let filter = value.get_mut(0)?.as_object_mut()?;
            // The range's end decides the rule; its start is resolved on its own.
            let from = match filter.get("fromBlock") {
                Some(v) => Value::String(format!("{:#x}", block_number(v)?)),
                None => return None,
            };
            filter.insert("fromBlock".into(), from);
            filter.insert("toBlock".into(), number);
        } else {
            let index = block_param(method)?;
            let list = value.as_array_mut()?;
            *list.get_mut(index)? = number;
        }
    }
    serde_json::to_vec(&value).ok()
}

fn requires_canonical(params: &Value) -> bool {
    params.as_array().is_some_and(|list| {
        list.iter()
            .any(|p| p.get("requireCanonical") == Some(&Value::Bool(true)))
    })
}

/// A block parameter's number: a quantity, `"earliest"` or `{"blockNumber": ..}`.
fn block_number(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) if s == "earliest" => Some(0),
        Value::String(s) => parse_quantity(s),
        Value::Object(o) => block_number(o.get("blockNumber")?),
        _ => None,
    }
}

fn lower_hex(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("0x") || s.starts_with("0X") => {
            s.make_ascii_lowercase();
        }
        Value::Array(a) => a.iter_mut().for_each(lower_hex),
        Value::Object(o) => o.values_mut().for_each(lower_hex),
        _ => {}
    }
}

/// The `blockNumber` of a transaction or receipt; `None` while it is pending.
pub(super) fn answer_block(result: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Located<'a> {
        #[serde(borrow)]
        block_number: Option<&'a str>,
    }
    parse_quantity(
        serde_json::from_slice::<Located<'_>>(result)
            .ok()?
            .block_number?,
    )
}

#[cfg(test)]
mod tests {
    use super::super::methods::classify;
    use super::*;

    fn rule_of(method: &str, params: &str) -> CacheRule {
        let params = Some(params.as_bytes());
        rule(method, classify(method, params).need, params)
    }

    fn canonical(method: &str, params: &str) -> String {
        let r = rule_of(method, params);
        String::from_utf8(canonical_params(method, Some(params.as_bytes()), r).unwrap()).unwrap()
    }

    #[test]
    fn the_method_table() {
        let hash = format!("\"0x{}\"", "ab".repeat(32));
        assert_eq!(rule_of("eth_chainId", "[]"), CacheRule::Constant);
        assert_eq!(
            rule_of("eth_getBlockByNumber", r#"["0x10",false]"#),
            CacheRule::AtBlock(16)
        );
        assert_eq!(
            rule_of("eth_getBlockByNumber", r#"["latest",false]"#),
            CacheRule::AtHead,
            "only with latest_ttl"
        );
        assert_eq!(
            rule_of("eth_getBalance", r#"["0xabc", "latest"]"#),
            CacheRule::AtHead
        );
        for tag in ["pending", "safe", "finalized"] {
            assert_eq!(
                rule_of("eth_getBalance", &format!(r#"["0xabc","{tag}"]"#)),
                CacheRule::Never,
                "{tag}: a tag's block moves, and `pending` is not a block"
            );
        }
        assert_eq!(
            rule_of("eth_call", r#"[{"to":"0x1"}]"#),
            CacheRule::Never,
            "no block named"
        );
        assert_eq!(
            rule_of(
                "eth_call",
                &format!(r#"[{{"to":"0x1"}},{{"blockHash":{hash}}}]"#)
            ),
            CacheRule::ByBlockHash
        );
        assert_eq!(
            rule_of("eth_getLogs", r#"[{"fromBlock":"0x1","toBlock":"0x9"}]"#),
            CacheRule::AtBlock(9)
        );
        assert_eq!(
            rule_of("eth_getLogs", r#"[{"fromBlock":"0x1"}]"#),
            CacheRule::Never,
            "up to latest"
        );
        assert_eq!(
            rule_of("eth_getTransactionReceipt", &format!("[{hash}]")),
            CacheRule::Located
        );
        assert_eq!(
            rule_of("eth_getBlockByHash", &format!("[{hash},true]")),
            CacheRule::ByBlockHash
        );
        for never in [
            "eth_sendRawTransaction",
            "eth_newFilter",
            "eth_getFilterChanges",
            "txpool_content",
            "eth_syncing",
            "eth_blockNumber",
            "eth_gasPrice",
            "eth_estimateGas",
            "anvil_mine",
            "evm_mine",
            "admin_peers",
            "web3_clientVersion",
            "debug_traceTransaction",
            "made_up",
        ] {
            assert_eq!(
                rule_of(never, r#"["0x1","0x1"]"#),
                CacheRule::Never,
                "{never}"
            );
        }
    }

    #[test]
    fn every_spelling_of_one_question_has_one_key() {
        let a = canonical("eth_getBalance", r#"["0xABCdef","0x10"]"#);
        assert_eq!(a, r#"["0xabcdef","0x10"]"#);
        assert_eq!(
            canonical(
                "eth_getBalance",
                r#"[ "0xabcDEF" , {"blockNumber":"0x10"} ]"#
            ),
            a
        );
        let logs = canonical(
            "eth_getLogs",
            r#"[{"toBlock":"0x20","address":"0xAA","fromBlock":"earliest"}]"#,
        );
        assert_eq!(
            logs,
            r#"[{"address":"0xaa","fromBlock":"0x0","toBlock":"0x20"}]"#
        );
        assert_eq!(
            canonical(
                "eth_getLogs",
                r#"[{"fromBlock":"0x0","address":"0xaa","toBlock":{"blockNumber":"0x20"}}]"#
            ),
            logs
        );
        assert_ne!(canonical("eth_getBalance", r#"["0xabcdef","0x11"]"#), a);
        assert_eq!(canonical("eth_chainId", "[]"), "[]");
        assert_eq!(
            canonical_params("eth_chainId", None, CacheRule::Constant).unwrap(),
            b"[]"
        );
        assert_eq!(
            canonical_params("eth_getBalance", Some(b"not json"), CacheRule::AtBlock(1)),
            None
        );
    }

    #[test]
    fn a_read_that_requires_a_canonical_block_is_not_kept_by_hash() {
        let hash = format!("0x{}", "ab".repeat(32));
        let read = |extra: &str| {
            let params = format!(r#"["0xabcdef",{{"blockHash":"{hash}"{extra}}}]"#);
            let rule = rule_of("eth_getBalance", &params);
            assert_eq!(rule, CacheRule::ByBlockHash);
            canonical_params("eth_getBalance", Some(params.as_bytes()), rule)
        };
        assert!(read("").is_some());
        assert!(read(r#","requireCanonical":false"#).is_some());
        assert_eq!(read(r#","requireCanonical":true"#), None);
    }

    #[test]
    fn where_a_transaction_is() {
        assert_eq!(
            answer_block(br#"{"blockHash":"0x1","blockNumber":"0x2a","hash":"0x3"}"#),
            Some(42)
        );
        assert_eq!(answer_block(br#"{"blockNumber":null,"hash":"0x3"}"#), None);
        assert_eq!(answer_block(b"null"), None);
    }
}
