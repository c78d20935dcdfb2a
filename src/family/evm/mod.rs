//! Ethereum-style JSON-RPC (geth, reth, erigon, nethermind, besu, anvil and the providers
//! in front of them).
//!
//! `probe` (health), `methods` (which block a call needs), `errors` (what a node's error
//! object means, as tables of real wordings) and `tx` (a signed transaction's hash, sender
//! and nonce) hold the knowledge; this file answers the [`ChainFamily`] questions with it.

mod cache_rules;
mod errors;
mod labels;
mod logs;
mod methods;
mod probe;
mod pubsub;
mod repeatable;
pub mod tx;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{
    BlockRef, Broadcast, BroadcastVerdict, CacheRule, CanonicalHash, ChainFamily, ErrorClass,
    FamilyCall, Inclusion, MergeError, MethodClass, MethodInfo, MethodLabels, ProbeAnswer,
    ProbeVerdict, RangePart, RangeQuery,
};
pub use labels::KNOWN_METHODS;
pub use methods::parse_quantity;
pub use repeatable::{changes_node_state, is_repeatable};

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
    fn probe_calls(&self) -> Vec<FamilyCall> {
        probe::CALLS
            .iter()
            .map(|m| FamilyCall::new(m, "[]".into()))
            .collect()
    }

    fn judge_probe(&self, answers: &[ProbeAnswer]) -> ProbeVerdict {
        probe::judge_answers(self.chain_id, answers)
    }

    fn finalized_call(&self) -> Option<FamilyCall> {
        // Header only: the transactions' hashes are all the answer carries besides.
        Some(FamilyCall::new(
            "eth_getBlockByNumber",
            r#"["finalized",false]"#.into(),
        ))
    }

    fn parse_finalized(&self, result: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Header<'a> {
            #[serde(borrow)]
            number: &'a str,
        }
        let header: Header<'_> = serde_json::from_slice(result).ok()?;
        parse_quantity(header.number)
    }

    fn block_ref_call(&self, number: u64) -> Option<FamilyCall> {
        Some(FamilyCall::new(
            "eth_getBlockByNumber",
            format!(r#"["{number:#x}",false]"#),
        ))
    }

    fn parse_block_ref(&self, result: &[u8]) -> Option<BlockRef> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Header<'a> {
            #[serde(borrow)]
            number: &'a str,
            hash: &'a str,
            parent_hash: &'a str,
        }
        let header: Header<'_> = serde_json::from_slice(result).ok()?;
        Some(BlockRef {
            number: parse_quantity(header.number)?,
            hash: header.hash.to_ascii_lowercase(),
            parent: header.parent_hash.to_ascii_lowercase(),
        })
    }

    fn head_notification(&self, block: &[u8]) -> Option<Bytes> {
        pubsub::header(block)
    }

    fn push(&self) -> Option<&dyn crate::family::PushProtocol> {
        Some(&pubsub::EvmPush)
    }

    fn block_logs_call(&self, hash: &str) -> Option<FamilyCall> {
        Some(FamilyCall::new(
            "eth_getLogs",
            serde_json::json!([{ "blockHash": hash }]).to_string(),
        ))
    }

    fn parse_block_logs(&self, result: &[u8], header: &[u8]) -> Option<Vec<super::Log>> {
        pubsub::block_logs(result, header)
    }

    fn log_filter(&self, filter: &serde_json::Value) -> Result<super::LogFilter, String> {
        pubsub::log_filter(filter)
    }

    fn poll_filter(
        &self,
        object: &serde_json::Value,
    ) -> Result<(super::LogFilter, Option<u64>, Option<u64>), String> {
        pubsub::poll_filter(object)
    }

    fn classify(&self, method: &str, params: Option<&[u8]>) -> MethodClass {
        methods::classify(method, params)
    }

    fn method_info(&self, method: &str, params: Option<&[u8]>) -> MethodInfo {
        let class = methods::classify(method, params);
        let repeatable = is_repeatable(method);
        MethodInfo {
            label: self.method_labels().index(method),
            repeatable,
            shareable: repeatable && !changes_node_state(method),
            class,
            cache: cache_rules::rule(method, class.need, params),
        }
    }

    fn cache_params(
        &self,
        method: &str,
        params: Option<&[u8]>,
        rule: CacheRule,
    ) -> Option<Vec<u8>> {
        cache_rules::canonical_params(method, params, rule)
    }

    fn answer_block(&self, result: &[u8]) -> Option<u64> {
        cache_rules::answer_block(result)
    }

    fn range_query(&self, method: &str, params: Option<&[u8]>) -> Option<RangeQuery> {
        (method == "eth_getLogs").then(|| logs::query(params))?
    }

    fn range_params(&self, query: &RangeQuery, from: u64, to: u64) -> Option<Bytes> {
        logs::params(query, from, to)
    }

    fn is_range_error(&self, error: &[u8]) -> bool {
        logs::is_too_wide(error)
    }

    fn merge_range(
        &self,
        parts: &[RangePart],
        canonical: CanonicalHash<'_>,
    ) -> Result<Vec<u8>, MergeError> {
        logs::merge(parts, canonical)
    }

    fn is_repeatable(&self, method: &str) -> bool {
        is_repeatable(method)
    }

    fn classify_error(&self, method: &str, error: &[u8]) -> ErrorClass {
        errors::classify_error(method, error)
    }

    fn check_answer(&self, method: &str, result: &[u8]) -> Option<ProbeVerdict> {
        probe::check_chain_id(self.chain_id, method, result)
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
            tx::decode_signed(&raw)
                .map(|tx| Broadcast {
                    hash_json: format!("\"{}\"", tx.hash),
                    lookup: FamilyCall::new(
                        "eth_getTransactionByHash",
                        format!("[\"{}\"]", tx.hash),
                    ),
                    hash: tx.hash,
                    sender: Some(tx.sender),
                    nonce: Some(tx.nonce),
                })
                .map_err(|e| format!("cannot read the signed transaction: {e}")),
        )
    }

    fn broadcast_verdict(&self, error: &[u8]) -> Option<BroadcastVerdict> {
        errors::broadcast_verdict(error)
    }

    fn receipt_call(&self, hash: &str) -> FamilyCall {
        FamilyCall::new("eth_getTransactionReceipt", format!("[\"{hash}\"]"))
    }

    fn inclusion(&self, receipt: &[u8]) -> Option<Inclusion> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Receipt {
            block_number: Option<String>,
            block_hash: Option<String>,
        }
        let r: Receipt = serde_json::from_slice(receipt).ok()?;
        Some(Inclusion {
            block: parse_quantity(r.block_number.as_deref()?)?,
            block_hash: r.block_hash?.to_ascii_lowercase(),
        })
    }

    fn mined_count_call(&self, sender: &str) -> Option<FamilyCall> {
        Some(FamilyCall::new(
            "eth_getTransactionCount",
            format!("[\"{sender}\",\"latest\"]"),
        ))
    }

    fn parse_count(&self, result: &[u8]) -> Option<u64> {
        let text = std::str::from_utf8(result).ok()?.trim();
        parse_quantity(text.trim_matches('"'))
    }

    fn pending_count_read(&self, method: &str, params: Option<&[u8]>) -> Option<String> {
        if method != "eth_getTransactionCount" {
            return None;
        }
        let list: Vec<&RawValue> = serde_json::from_slice(params?).ok()?;
        let address: String = serde_json::from_str(list.first()?.get()).ok()?;
        let tag: String = serde_json::from_str(list.get(1)?.get()).ok()?;
        (tag == "pending").then(|| address.to_ascii_lowercase())
    }

    fn count_result(&self, count: u64) -> Bytes {
        Bytes::from(format!("\"0x{count:x}\""))
    }

    fn method_labels(&self) -> MethodLabels {
        MethodLabels::new(KNOWN_METHODS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_are_read_with_hash_sender_and_nonce() {
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
        let raw = "0xf86c808401a213988261a894aa000000000000000000000000000000000000000a8255448718e5bb3abd109fa073fbe7ff7e74339e7cc61fb3cb3f7630cd3f1d5fef653d7297654b2d22894daea042a188d30f35f19408c73c803bc1e9e17ce129c457e31fd2a368b54507af2f4c";
        let b = evm
            .broadcast(
                "eth_sendRawTransaction",
                Some(format!("[\"{raw}\"]").as_bytes()),
            )
            .unwrap()
            .unwrap();
        assert_eq!(b.hash_json, format!("\"{}\"", b.hash));
        assert_eq!(b.lookup.method, "eth_getTransactionByHash");
        assert_eq!(b.lookup.params, format!("[\"{}\"]", b.hash));
        assert_eq!(b.nonce, Some(0));
        assert!(b.sender.is_some());
    }

    #[test]
    fn receipts_say_where_a_transaction_is() {
        let evm = Evm::new(1);
        assert_eq!(
            evm.inclusion(br#"{"blockNumber":"0x1b","blockHash":"0xAB","status":"0x1"}"#),
            Some(Inclusion {
                block: 27,
                block_hash: "0xab".into()
            })
        );
        // A pending receipt (some nodes) or garbage: not mined.
        assert_eq!(
            evm.inclusion(br#"{"blockNumber":null,"blockHash":null}"#),
            None
        );
        assert_eq!(evm.inclusion(b"null"), None);
        assert_eq!(evm.parse_count(br#""0x10""#), Some(16));
    }

    #[test]
    fn pending_nonce_reads_are_recognised() {
        let evm = Evm::new(1);
        let read = |p: &str| evm.pending_count_read("eth_getTransactionCount", Some(p.as_bytes()));
        assert_eq!(read(r#"["0xAbC","pending"]"#), Some("0xabc".into()));
        assert_eq!(read(r#"["0xabc","latest"]"#), None);
        assert_eq!(read(r#"["0xabc"]"#), None);
        assert_eq!(read("{}"), None);
        assert_eq!(
            evm.pending_count_read("eth_getBalance", Some(br#"["0xabc","pending"]"#)),
            None
        );
        assert_eq!(&evm.count_result(26)[..], br#""0x1a""#);
    }
}
