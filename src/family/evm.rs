//! Ethereum-style JSON-RPC (geth, reth, erigon, nethermind, besu, anvil and the providers
//! in front of them).

use std::time::Duration;

use bytes::Bytes;

use super::evm_methods::{self, parse_quantity};
use super::evm_tx::transaction_hash_hex;
use super::{
    Broadcast, BroadcastVerdict, ChainFamily, ErrorClass, MethodClass, MethodLabels, ProbeFuture,
    ProbeVerdict,
};
use crate::jsonrpc::Payload;
use crate::upstream::{read_reply, UpstreamClient};

/// The EVM family, for a chain with this chain id.
#[derive(Debug, Clone)]
pub struct Evm {
    chain_id: u64,
}

impl Evm {
    pub fn new(chain_id: u64) -> Self {
        Self { chain_id }
    }
}

impl ChainFamily for Evm {
    fn probe<'a>(
        &'a self,
        client: &'a UpstreamClient,
        timeout: Duration,
        check_identity: bool,
    ) -> ProbeFuture<'a> {
        Box::pin(async move {
            let identity = async {
                if check_identity {
                    Some(call(client, timeout, "eth_chainId").await)
                } else {
                    None
                }
            };
            let (identity, head, syncing) = tokio::join!(
                identity,
                call(client, timeout, "eth_blockNumber"),
                call(client, timeout, "eth_syncing"),
            );
            judge(self.chain_id, identity, head, syncing)
        })
    }

    fn classify(&self, method: &str, params: Option<&[u8]>) -> MethodClass {
        evm_methods::classify(method, params)
    }

    fn is_repeatable(&self, method: &str) -> bool {
        is_repeatable(method)
    }

    fn classify_error(&self, error: &[u8]) -> ErrorClass {
        classify_error(error)
    }

    fn check_answer(&self, method: &str, result: &[u8]) -> Option<ProbeVerdict> {
        check_chain_id(self.chain_id, method, result)
    }

    fn broadcast(&self, method: &str, params: Option<&[u8]>) -> Option<Result<Broadcast, String>> {
        if method != "eth_sendRawTransaction" {
            return None;
        }
        let raw = params
            .and_then(|p| serde_json::from_slice::<Vec<String>>(p).ok())
            .and_then(|p| p.into_iter().next());
        let Some(raw) = raw else {
            return Some(Err("params must be [\"0x<signed transaction>\"]".into()));
        };
        Some(
            transaction_hash_hex(&raw)
                .map(|hash| Broadcast {
                    hash_json: format!("\"{hash}\""),
                    lookup: ("eth_getTransactionByHash".into(), format!("[\"{hash}\"]")),
                })
                .map_err(|e| format!("cannot read the signed transaction: {e}")),
        )
    }

    fn broadcast_verdict(&self, error: &[u8]) -> BroadcastVerdict {
        broadcast_verdict(error)
    }

    fn method_labels(&self) -> MethodLabels {
        MethodLabels::new(KNOWN_METHODS)
    }
}

/// Error messages (lower case, matched as substrings) by which nodes and providers say "I
/// cannot answer this now" rather than "this is the answer": geth, erigon, nethermind,
/// besu, reth, and the provider gateways in front of them. Data, not logic: extend it as
/// new wordings are seen.
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
    "request timed out",
    "timeout",
    "try again later",
    "temporarily unavailable",
    "service unavailable",
    "no available nodes",
    "upstream error",
    "bad gateway",
    "internal error",
    "internal server error",
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

/// Answers to `eth_sendRawTransaction` meaning the node has the transaction already (geth,
/// erigon, nethermind, besu, reth and providers' wordings).
const ALREADY_KNOWN: &[&str] = &[
    "already known",
    "known transaction",
    "already imported",
    "alreadyknown",
    "transaction already exists",
    "already in mempool",
    "already in the txpool",
];

/// Answers meaning the sender's nonce is already used: by this transaction or another.
const NONCE_USED: &[&str] = &[
    "nonce too low",
    "nonce has already been used",
    "oldnonce",
    "nonce is too low",
];

fn broadcast_verdict(error: &[u8]) -> BroadcastVerdict {
    let message = serde_json::from_slice::<serde_json::Value>(error)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_lowercase)
        })
        .unwrap_or_default();
    if ALREADY_KNOWN.iter().any(|m| message.contains(m)) {
        BroadcastVerdict::AlreadyKnown
    } else if NONCE_USED.iter().any(|m| message.contains(m)) {
        BroadcastVerdict::NonceUsed
    } else {
        BroadcastVerdict::Rejected
    }
}

fn classify_error(error: &[u8]) -> ErrorClass {
    #[derive(serde::Deserialize)]
    struct ErrorObject<'a> {
        code: Option<i64>,
        #[serde(borrow)]
        message: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(e) = serde_json::from_slice::<ErrorObject<'_>>(error) else {
        return ErrorClass::Answer;
    };
    let message = e.message.unwrap_or_default().to_lowercase();
    // Reverts, unknown methods and bad params first: their messages carry the client's own
    // text (a method name, revert data) that may contain any of the words below.
    if message.contains("revert") || matches!(e.code, Some(3 | -32601 | -32602)) {
        return ErrorClass::Answer;
    }
    if SIZE_LIMITS.iter().any(|m| message.contains(m)) {
        return ErrorClass::Answer;
    }
    if e.code.is_some_and(|c| RATE_LIMITED_CODES.contains(&c))
        || RATE_LIMITED.iter().any(|m| message.contains(m))
    {
        return ErrorClass::RateLimited;
    }
    // -32603 is JSON-RPC's "internal error": the server failed, not the request (reverts,
    // which some nodes send with this code, were sorted out above).
    if e.code == Some(INTERNAL_ERROR) || NODE_CANNOT_ANSWER.iter().any(|m| message.contains(m)) {
        return ErrorClass::NodeCannotAnswer;
    }
    ErrorClass::Answer
}

/// One probe request; the raw `result` text, or why there is none. A JSON-RPC error answer
/// is `Ok(Err(..))`: the upstream answers, but not this method.
async fn call(
    client: &UpstreamClient,
    timeout: Duration,
    method: &str,
) -> Result<Result<String, String>, String> {
    // A string id, never used by requests (their ids are numbers), so that probes stand out
    // in an upstream's logs.
    let body = Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":"health","method":"{method}","params":[]}}"#
    ));
    let reply = client
        .probe(body, timeout)
        .await
        .map_err(|e| format!("{method}: {e}"))?;
    match read_reply(br#""health""#, &reply) {
        Ok(Payload::Result(r)) => Ok(Ok(String::from_utf8_lossy(&r).into_owned())),
        Ok(Payload::Error(e)) => Ok(Err(String::from_utf8_lossy(&e).into_owned())),
        Err((_, why)) => Err(format!("{method}: {why}")),
    }
}

/// `ChainFamily::check_answer`: an `eth_chainId` result must be the configured id.
fn check_chain_id(chain_id: u64, method: &str, result: &[u8]) -> Option<ProbeVerdict> {
    if method != "eth_chainId" {
        return None;
    }
    let text = std::str::from_utf8(result).unwrap_or_default().trim();
    match parse_quantity(text.trim_matches('"')) {
        Some(id) if id == chain_id => None,
        Some(id) => Some(ProbeVerdict::WrongChain(format!(
            "answered a client's eth_chainId with {id}, expected {chain_id}"
        ))),
        None => Some(ProbeVerdict::Failed(format!(
            "eth_chainId: unreadable answer {}",
            excerpt_text(text)
        ))),
    }
}

/// The first 100 characters of `text`.
fn excerpt_text(text: &str) -> String {
    text.chars().take(100).collect()
}

type ProbeAnswer = Result<Result<String, String>, String>;

/// The verdict from the three answers.
fn judge(
    chain_id: u64,
    identity: Option<ProbeAnswer>,
    head: ProbeAnswer,
    syncing: ProbeAnswer,
) -> ProbeVerdict {
    if let Some(identity) = identity {
        match identity {
            Ok(Ok(id)) => match parse_quantity(id.trim_matches('"')) {
                Some(id) if id == chain_id => {}
                Some(id) => {
                    return ProbeVerdict::WrongChain(format!(
                        "reports chain id {id}, expected {chain_id}"
                    ))
                }
                None => {
                    return ProbeVerdict::Failed(format!("eth_chainId: unreadable answer {id}"))
                }
            },
            Ok(Err(e)) => return ProbeVerdict::Failed(format!("eth_chainId: error {e}")),
            Err(e) => return ProbeVerdict::Failed(e),
        }
    }
    let head = match head {
        Ok(Ok(h)) => match parse_quantity(h.trim_matches('"')) {
            Some(h) => h,
            None => return ProbeVerdict::Failed(format!("eth_blockNumber: unreadable answer {h}")),
        },
        Ok(Err(e)) => return ProbeVerdict::Failed(format!("eth_blockNumber: error {e}")),
        Err(e) => return ProbeVerdict::Failed(e),
    };
    match syncing {
        // `false` when in sync; a sync-status object while syncing.
        Ok(Ok(s)) if s.trim() == "false" => ProbeVerdict::Healthy { head },
        Ok(Ok(_)) => ProbeVerdict::Syncing { head: Some(head) },
        // Some providers do not offer eth_syncing: they answer, so they are up.
        Ok(Err(_)) => ProbeVerdict::Healthy { head },
        Err(e) => ProbeVerdict::Failed(e),
    }
}

/// Methods that get their own metric label, sorted for binary search. Anything else is
/// counted as `other`, which keeps label cardinality bounded whatever clients send.
pub const KNOWN_METHODS: &[&str] = &[
    "debug_getRawBlock",
    "debug_getRawHeader",
    "debug_getRawReceipts",
    "debug_getRawTransaction",
    "debug_traceBlockByHash",
    "debug_traceBlockByNumber",
    "debug_traceCall",
    "debug_traceTransaction",
    "eth_accounts",
    "eth_blobBaseFee",
    "eth_blockNumber",
    "eth_call",
    "eth_chainId",
    "eth_createAccessList",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getBlockByHash",
    "eth_getBlockByNumber",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getCode",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_getLogs",
    "eth_getProof",
    "eth_getStorageAt",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_getUncleByBlockHashAndIndex",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleCountByBlockHash",
    "eth_getUncleCountByBlockNumber",
    "eth_maxPriorityFeePerGas",
    "eth_newBlockFilter",
    "eth_newFilter",
    "eth_newPendingTransactionFilter",
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_sign",
    "eth_signTransaction",
    "eth_simulateV1",
    "eth_subscribe",
    "eth_syncing",
    "eth_uninstallFilter",
    "eth_unsubscribe",
    "net_listening",
    "net_peerCount",
    "net_version",
    "trace_block",
    "trace_call",
    "trace_filter",
    "trace_replayBlockTransactions",
    "trace_replayTransaction",
    "trace_transaction",
    "txpool_content",
    "txpool_inspect",
    "txpool_status",
    "web3_clientVersion",
    "web3_sha3",
];

/// Whether a call may be sent again after an attempt that may have reached a node. Sending a
/// transaction twice is harmless on chain but turns a success into "already known", and
/// creating a filter twice leaks one; reads are always safe to repeat.
pub fn is_repeatable(method: &str) -> bool {
    // Sends of every flavour (private, conditional, sync, bundles, account abstraction) and
    // calls tied to state on one node (filters, subscriptions).
    const WRITE_PREFIXES: &[&str] = &["eth_send", "personal_send", "mev_send"];
    !(WRITE_PREFIXES.iter().any(|p| method.starts_with(p))
        || matches!(
            method,
            "eth_newFilter"
                | "eth_newBlockFilter"
                | "eth_newPendingTransactionFilter"
                | "eth_uninstallFilter"
                | "eth_getFilterChanges"
                | "eth_subscribe"
                | "eth_unsubscribe"
                | "eth_cancelPrivateTransaction"
        ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_clients_eth_chain_id_answer_must_be_the_configured_id() {
        assert_eq!(check_chain_id(1, "eth_chainId", br#""0x1""#), None);
        assert!(matches!(
            check_chain_id(1, "eth_chainId", br#""0x7a69""#),
            Some(ProbeVerdict::WrongChain(w)) if w.contains("31337, expected 1")
        ));
        assert!(matches!(
            check_chain_id(1, "eth_chainId", br#""p1""#),
            Some(ProbeVerdict::Failed(w)) if w.contains("unreadable answer \"p1\"")
        ));
        // Other calls are not checked.
        assert_eq!(check_chain_id(1, "eth_blockNumber", br#""0x7a69""#), None);
    }

    use super::*;

    #[test]
    fn writes_and_node_bound_calls_are_not_repeatable() {
        for m in [
            "eth_sendRawTransaction",
            "eth_sendRawTransactionSync",
            "eth_sendRawTransactionConditional",
            "eth_sendPrivateTransaction",
            "eth_sendBundle",
            "eth_sendUserOperation",
            "personal_sendTransaction",
            "eth_newFilter",
            "eth_getFilterChanges",
            "eth_subscribe",
        ] {
            assert!(!is_repeatable(m), "{m}");
        }
        for m in [
            "eth_call",
            "eth_getBalance",
            "eth_getLogs",
            "eth_estimateGas",
        ] {
            assert!(is_repeatable(m), "{m}");
        }
    }

    fn ok(s: &str) -> ProbeAnswer {
        Ok(Ok(s.to_string()))
    }

    #[test]
    fn node_errors_are_classified() {
        let class = |s: &str| classify_error(s.as_bytes());
        for answer in [
            r#"{"code":3,"message":"execution reverted: rate limit exceeded","data":"0x08c3"}"#,
            r#"{"code":-32000,"message":"execution reverted"}"#,
            r#"{"code":-32603,"message":"execution reverted: not owner","data":"0x08c3"}"#,
            r#"{"code":-32602,"message":"invalid argument 0: hex string has length 3"}"#,
            r#"{"code":-32000,"message":"insufficient funds for gas * price + value"}"#,
            r#"{"code":-32000,"message":"nonce too low"}"#,
            r#"{"code":-32601,"message":"the method foo does not exist/is not available"}"#,
            r#"{"code":-32000,"message":"max code size exceeded"}"#,
            r#"{"code":-32601,"message":"the method eth_quota_capacity does not exist/is not available"}"#,
            r#"{"code":-32601,"message":"rate limit: no such method"}"#,
            r#"{"code":-32005,"message":"query returned more than 10000 results"}"#,
            "not json",
        ] {
            assert_eq!(class(answer), ErrorClass::Answer, "{answer}");
        }
        for behind in [
            r#"{"code":-32000,"message":"header not found"}"#,
            r#"{"code":-32000,"message":"missing trie node 1234abcd (path )"}"#,
            r#"{"code":-32000,"message":"Unknown block"}"#,
            r#"{"code":-32603,"message":"request timed out"}"#,
            r#"{"code":-32603,"message":"internal error"}"#,
            r#"{"code":-32603,"message":"Internal JSON-RPC error."}"#,
            r#"{"code":-32000,"message":"internal server error"}"#,
        ] {
            assert_eq!(class(behind), ErrorClass::NodeCannotAnswer, "{behind}");
        }
        for limited in [
            r#"{"code":-32005,"message":"limit exceeded"}"#,
            r#"{"code":-32005,"message":"project ID request rate exceeded"}"#,
            r#"{"code":429,"message":"Too Many Requests"}"#,
            r#"{"code":-32000,"message":"Your app has exceeded its compute units per second capacity"}"#,
        ] {
            assert_eq!(class(limited), ErrorClass::RateLimited, "{limited}");
        }
    }

    #[test]
    fn broadcast_answers() {
        let v =
            |m: &str| broadcast_verdict(format!(r#"{{"code":-32000,"message":"{m}"}}"#).as_bytes());
        assert_eq!(v("already known"), BroadcastVerdict::AlreadyKnown);
        assert_eq!(v("Known transaction: 0xab"), BroadcastVerdict::AlreadyKnown);
        assert_eq!(
            v("nonce too low: next nonce 5, tx nonce 4"),
            BroadcastVerdict::NonceUsed
        );
        assert_eq!(
            v("insufficient funds for gas * price + value"),
            BroadcastVerdict::Rejected
        );
        assert_eq!(v("transaction underpriced"), BroadcastVerdict::Rejected);
        let evm = Evm::new(1);
        assert!(evm.broadcast("eth_call", Some(b"[]")).is_none());
        assert!(matches!(
            evm.broadcast("eth_sendRawTransaction", Some(b"[1]")),
            Some(Err(_))
        ));
        assert!(matches!(
            evm.broadcast("eth_sendRawTransaction", Some(b"[\"0xzz\"]")),
            Some(Err(_))
        ));
        let b = evm
            .broadcast("eth_sendRawTransaction", Some(br#"["0x04c20102"]"#))
            .unwrap()
            .unwrap();
        assert!(
            b.hash_json.starts_with("\"0x") && b.hash_json.len() == 68,
            "{b:?}"
        );
        assert_eq!(b.lookup.0, "eth_getTransactionByHash");
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            judge(1, Some(ok("\"0x1\"")), ok("\"0x10\""), ok("false")),
            ProbeVerdict::Healthy { head: 16 }
        );
        assert_eq!(
            judge(1, None, ok("\"0x10\""), ok("false")),
            ProbeVerdict::Healthy { head: 16 }
        );
        assert!(
            matches!(judge(1, Some(ok("\"0x5\"")), ok("\"0x10\""), ok("false")), ProbeVerdict::WrongChain(w) if w.contains("chain id 5, expected 1"))
        );
        assert_eq!(
            judge(
                1,
                None,
                ok("\"0x10\""),
                ok(r#"{"startingBlock":"0x0","currentBlock":"0x10","highestBlock":"0x99"}"#)
            ),
            ProbeVerdict::Syncing { head: Some(16) }
        );
        assert!(
            matches!(judge(1, None, Err("eth_blockNumber: no answer within 2s".into()), ok("false")), ProbeVerdict::Failed(w) if w.contains("no answer"))
        );
        assert!(matches!(
            judge(1, None, ok("\"zz\""), ok("false")),
            ProbeVerdict::Failed(_)
        ));
        assert_eq!(
            judge(1, None, ok("\"0x10\""), Ok(Err("method not found".into()))),
            ProbeVerdict::Healthy { head: 16 }
        );
    }
}
