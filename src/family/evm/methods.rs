//! Which block an EVM call needs: the routing knowledge of the Ethereum JSON-RPC methods.
//!
//! A call either wants the newest state (`latest`, `pending`, no block given), a specific
//! height (a hex number, or `{"blockNumber": ..}` as EIP-1898 allows), or nothing in
//! particular (lookups by hash, chain constants). Unknown methods are treated as wanting the
//! newest state: the safe choice, since an in-sync upstream can answer anything a lagging
//! one can.

use serde_json::value::RawValue;

use crate::family::{BlockNeed, Cost, MethodClass};

/// Where the block parameter sits for methods that take one.
pub(super) fn block_param(method: &str) -> Option<usize> {
    Some(match method {
        "eth_getBlockByNumber"
        | "eth_getBlockTransactionCountByNumber"
        | "eth_getTransactionByBlockNumberAndIndex"
        | "eth_getUncleByBlockNumberAndIndex"
        | "eth_getUncleCountByBlockNumber"
        | "eth_getBlockReceipts"
        | "debug_traceBlockByNumber"
        | "debug_getRawBlock"
        | "debug_getRawHeader"
        | "debug_getRawReceipts"
        | "trace_block"
        | "trace_replayBlockTransactions" => 0,
        "eth_getBalance"
        | "eth_getTransactionCount"
        | "eth_getCode"
        | "eth_call"
        | "eth_estimateGas"
        | "eth_createAccessList"
        | "eth_feeHistory"
        | "debug_traceCall" => 1,
        "eth_getStorageAt" | "eth_getProof" => 2,
        _ => return None,
    })
}

/// Methods answered `null` when the block does not exist yet (execution-apis:
/// `get-block-notfound`, `get-block-receipts-future`).
fn is_block_lookup(method: &str) -> bool {
    matches!(
        method,
        "eth_getBlockByNumber"
            | "eth_getBlockReceipts"
            | "eth_getBlockTransactionCountByNumber"
            | "eth_getTransactionByBlockNumberAndIndex"
            | "eth_getUncleByBlockNumberAndIndex"
            | "eth_getUncleCountByBlockNumber"
    )
}

/// Methods that need no particular block: lookups by hash and chain constants. Any healthy
/// upstream may answer them, lagging or not.
fn is_blockless(method: &str) -> bool {
    matches!(
        method,
        "eth_chainId"
            | "net_version"
            | "web3_clientVersion"
            | "web3_sha3"
            | "eth_getBlockByHash"
            | "eth_getBlockTransactionCountByHash"
            | "eth_getTransactionByBlockHashAndIndex"
            | "eth_getUncleByBlockHashAndIndex"
            | "eth_getUncleCountByBlockHash"
            | "eth_getTransactionByHash"
            | "eth_getTransactionReceipt"
            | "debug_traceTransaction"
            | "debug_traceBlockByHash"
            | "debug_getRawTransaction"
            | "trace_transaction"
            | "trace_replayTransaction"
    )
}

pub fn classify(method: &str, params: Option<&[u8]>) -> MethodClass {
    let block_lookup = is_block_lookup(method);
    let cost = cost(method);
    if is_blockless(method) {
        return MethodClass {
            need: BlockNeed::Any,
            block_lookup,
            cost,
        };
    }
    let need = match (method, block_param(method)) {
        ("eth_getLogs", _) => logs_need(params),
        (_, Some(index)) => match param(params, index) {
            // Absent block parameter: the node's default, `latest`.
            None => BlockNeed::Head,
            Some(p) => block_need(p.get()),
        },
        _ => BlockNeed::Head,
    };
    MethodClass {
        need,
        block_lookup,
        cost,
    }
}

/// Log queries and traces take seconds to minutes on a healthy node.
fn cost(method: &str) -> Cost {
    const HEAVY_PREFIXES: &[&str] = &["debug_trace", "trace_"];
    const HEAVY: &[&str] = &["eth_getLogs", "eth_getFilterLogs", "eth_getBlockReceipts"];
    if HEAVY.contains(&method) || HEAVY_PREFIXES.iter().any(|p| method.starts_with(p)) {
        Cost::Heavy
    } else {
        Cost::Normal
    }
}

/// Whether a block-addressed call names `latest` as its block (not `pending`, `safe`,
/// `finalized`, nor a block left out).
pub(super) fn at_latest(method: &str, params: Option<&[u8]>) -> bool {
    block_param(method)
        .and_then(|i| param(params, i))
        .is_some_and(|raw| raw.get().trim() == r#""latest""#)
}

fn param(params: Option<&[u8]>, index: usize) -> Option<&RawValue> {
    let list: Vec<&RawValue> = serde_json::from_slice(params?).ok()?;
    list.get(index).copied()
}

/// A block tag, number or EIP-1898 object.
fn block_need(raw: &str) -> BlockNeed {
    match raw.trim() {
        r#""earliest""# => BlockNeed::AtLeast(0),
        r#""latest""# | r#""pending""# | r#""safe""# | r#""finalized""# | "null" => BlockNeed::Head,
        s if s.starts_with('"') => match parse_quantity(s.trim_matches('"')) {
            Some(n) => BlockNeed::AtLeast(n),
            // 32-byte hex: a block hash, as some methods accept.
            None if s.len() == 68 => BlockNeed::Any,
            None => BlockNeed::Head,
        },
        s if s.starts_with('{') => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Eip1898<'a> {
                #[serde(borrow)]
                block_number: Option<&'a RawValue>,
                block_hash: Option<&'a RawValue>,
            }
            match serde_json::from_str::<Eip1898<'_>>(s) {
                Ok(Eip1898 {
                    block_number: Some(n),
                    ..
                }) => block_need(n.get()),
                Ok(Eip1898 {
                    block_hash: Some(_),
                    ..
                }) => BlockNeed::Any,
                _ => BlockNeed::Head,
            }
        }
        _ => BlockNeed::Head,
    }
}

/// `eth_getLogs`: the higher end of the range decides; a block hash needs nothing particular.
fn logs_need(params: Option<&[u8]>) -> BlockNeed {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Filter<'a> {
        #[serde(borrow)]
        from_block: Option<&'a RawValue>,
        to_block: Option<&'a RawValue>,
        block_hash: Option<&'a RawValue>,
    }
    let Some(filter) =
        param(params, 0).and_then(|f| serde_json::from_str::<Filter<'_>>(f.get()).ok())
    else {
        return BlockNeed::Head;
    };
    if filter.block_hash.is_some() {
        return BlockNeed::Any;
    }
    // A missing `toBlock` means `latest`.
    let to = filter
        .to_block
        .map_or(BlockNeed::Head, |t| block_need(t.get()));
    let from = filter
        .from_block
        .map_or(BlockNeed::Head, |f| block_need(f.get()));
    match (from, to) {
        (BlockNeed::AtLeast(a), BlockNeed::AtLeast(b)) => BlockNeed::AtLeast(a.max(b)),
        _ => BlockNeed::Head,
    }
}

/// `0x`-prefixed hex quantity.
pub fn parse_quantity(s: &str) -> Option<u64> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(method: &str, params: &str) -> BlockNeed {
        classify(method, Some(params.as_bytes())).need
    }

    #[test]
    fn head_sensitive_calls() {
        assert_eq!(need("eth_blockNumber", "[]"), BlockNeed::Head);
        assert_eq!(
            need("eth_getBalance", r#"["0xabc","latest"]"#),
            BlockNeed::Head
        );
        assert_eq!(need("eth_getBalance", r#"["0xabc"]"#), BlockNeed::Head);
        assert_eq!(
            need("eth_getTransactionCount", r#"["0xabc","pending"]"#),
            BlockNeed::Head
        );
        assert_eq!(
            need("eth_call", r#"[{"to":"0x1"},"finalized"]"#),
            BlockNeed::Head
        );
        assert_eq!(
            need("eth_getLogs", r#"[{"fromBlock":"0x1"}]"#),
            BlockNeed::Head
        );
        assert_eq!(need("made_up", "[]"), BlockNeed::Head);
        assert_eq!(classify("eth_gasPrice", None).need, BlockNeed::Head);
    }

    #[test]
    fn block_addressed_calls() {
        assert_eq!(
            need("eth_getBlockByNumber", r#"["0x10",false]"#),
            BlockNeed::AtLeast(16)
        );
        assert_eq!(
            need("eth_getBalance", r#"["0xabc","0x1f"]"#),
            BlockNeed::AtLeast(31)
        );
        assert_eq!(
            need("eth_getStorageAt", r#"["0xabc","0x0","0x2"]"#),
            BlockNeed::AtLeast(2)
        );
        assert_eq!(
            need("eth_call", r#"[{"to":"0x1"},{"blockNumber":"0x5"}]"#),
            BlockNeed::AtLeast(5)
        );
        assert_eq!(
            need("eth_getLogs", r#"[{"fromBlock":"0x1","toBlock":"0x4"}]"#),
            BlockNeed::AtLeast(4)
        );
        assert_eq!(
            need("eth_getBlockByNumber", r#"["earliest",false]"#),
            BlockNeed::AtLeast(0)
        );
        assert!(classify("eth_getBlockByNumber", Some(b"[\"0x1\",true]")).block_lookup);
        assert!(!classify("eth_getBalance", Some(b"[\"0x1\",\"0x1\"]")).block_lookup);
    }

    #[test]
    fn calls_that_need_no_particular_block() {
        let hash = format!("\"0x{}\"", "ab".repeat(32));
        assert_eq!(
            need("eth_getTransactionReceipt", &format!("[{hash}]")),
            BlockNeed::Any
        );
        assert_eq!(
            need("eth_getBlockByHash", &format!("[{hash},false]")),
            BlockNeed::Any
        );
        assert_eq!(need("eth_chainId", "[]"), BlockNeed::Any);
        assert_eq!(
            need(
                "eth_getBalance",
                &format!(r#"["0xabc",{{"blockHash":{hash}}}]"#)
            ),
            BlockNeed::Any
        );
        assert_eq!(
            need("eth_getLogs", &format!(r#"[{{"blockHash":{hash}}}]"#)),
            BlockNeed::Any
        );
        assert_eq!(
            need("eth_getBlockReceipts", &format!("[{hash}]")),
            BlockNeed::Any
        );
    }

    #[test]
    fn malformed_params_fall_back_to_head() {
        assert_eq!(need("eth_getBalance", "not json"), BlockNeed::Head);
        assert_eq!(need("eth_getBalance", r#"{"a":1}"#), BlockNeed::Head);
        assert_eq!(
            need("eth_getBalance", r#"["0xabc","0xZZ"]"#),
            BlockNeed::Head
        );
        assert_eq!(
            need("eth_getBalance", r#"["0xabc","0x10000000000000000"]"#),
            BlockNeed::Head
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("0x0"), Some(0));
        assert_eq!(parse_quantity("0x36"), Some(54));
        assert_eq!(parse_quantity("36"), None);
        assert_eq!(parse_quantity("0x"), None);
        assert_eq!(parse_quantity("0xffffffffffffffff"), Some(u64::MAX));
    }

    #[test]
    fn log_queries_and_traces_are_heavy() {
        for m in [
            "eth_getLogs",
            "eth_getFilterLogs",
            "eth_getBlockReceipts",
            "debug_traceTransaction",
            "debug_traceCall",
            "trace_block",
        ] {
            assert_eq!(classify(m, None).cost, Cost::Heavy, "{m}");
        }
        for m in [
            "eth_call",
            "eth_getBalance",
            "eth_blockNumber",
            "debug_getRawBlock",
        ] {
            assert_eq!(classify(m, None).cost, Cost::Normal, "{m}");
        }
    }
}
