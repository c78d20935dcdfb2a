//! The Bitcoin family (`family = "bitcoin"`): Bitcoin Core's JSON-RPC, and nodes that speak
//! it (Bitcoin SV's, which the tests run). Facts and sources: `shared/design/families.md` §2.
//!
//! - Identity is the genesis block (`genesis_hash`), checked on every probe with
//!   `getblockhash 0`; the head is `getblockchaininfo`'s `blocks`.
//! - A node answers an RPC error with HTTP 500 and an unknown method with 404, a JSON-RPC
//!   error in the body: those are answers (`answer_statuses`), not a failing node.
//! - `sendrawtransaction` is a broadcast: the txid is computed locally (`tx`), "already in
//!   the mempool / in the chain" is success, spent inputs are checked by looking the txid
//!   up (`getrawtransaction`) before a rejection is returned.
//! - No logs, filters, subscriptions or finality tag: those stay EVM's.

mod errors;
mod methods;
mod probe;
pub mod tx;

use bytes::Bytes;

use super::{
    Broadcast, BroadcastVerdict, ChainFamily, ErrorClass, FamilyCall, Inclusion, MethodClass,
    MethodLabels, ProbeAnswer, ProbeVerdict,
};
pub use methods::KNOWN_METHODS;

#[derive(Debug)]
pub struct Bitcoin {
    /// The genesis block's hash, lower case.
    genesis: String,
}

impl Bitcoin {
    pub fn new(genesis_hash: &str) -> Self {
        Self {
            genesis: genesis_hash.to_ascii_lowercase(),
        }
    }
}

impl ChainFamily for Bitcoin {
    fn probe_calls(&self) -> Vec<FamilyCall> {
        probe::calls()
    }

    fn answer_statuses(&self) -> &'static [u16] {
        &[404, 500]
    }

    fn node_local(&self, method: &str) -> bool {
        methods::node_local(method)
    }

    fn takes_json_rpc_1(&self) -> bool {
        // bitcoin-cli sends "1.0", python-bitcoinrpc "version": "1.1" and no "jsonrpc".
        true
    }

    fn judge_probe(&self, answers: &[ProbeAnswer]) -> ProbeVerdict {
        probe::judge(&self.genesis, answers)
    }

    fn classify(&self, method: &str, params: Option<&[u8]>) -> MethodClass {
        methods::classify(method, params)
    }

    fn is_repeatable(&self, method: &str) -> bool {
        methods::is_repeatable(method)
    }

    fn classify_error(&self, _method: &str, error: &[u8]) -> ErrorClass {
        errors::classify_error(error)
    }

    fn check_answer(&self, _method: &str, _result: &[u8]) -> Option<ProbeVerdict> {
        // No client call names the chain the way `eth_chainId` does; `getblockhash 0` on
        // every probe is the check.
        None
    }

    fn broadcast(&self, method: &str, params: Option<&[u8]>) -> Option<Result<Broadcast, String>> {
        if method != "sendrawtransaction" {
            return None;
        }
        // `[hex]` or `[hex, maxfeerate]` (a number, or Core's older `allowhighfees` bool).
        let raw = params
            .and_then(|p| serde_json::from_slice::<Vec<serde_json::Value>>(p).ok())
            .and_then(|p| p.into_iter().next())
            .and_then(|v| v.as_str().map(str::to_string));
        let Some(raw) = raw else {
            return Some(Err("params must be [\"<raw transaction hex>\"]".into()));
        };
        Some(tx::txid(&raw).map(|txid| Broadcast {
            hash_json: format!("\"{txid}\""),
            lookup: FamilyCall::new("getrawtransaction", format!("[\"{txid}\"]")),
            hash: txid,
            sender: None,
            nonce: None,
        }))
    }

    fn broadcast_verdict(&self, error: &[u8]) -> Option<BroadcastVerdict> {
        errors::broadcast_verdict(error)
    }

    fn receipt_call(&self, hash: &str) -> FamilyCall {
        FamilyCall::new("getrawtransaction", format!("[\"{hash}\", 1]"))
    }

    fn inclusion(&self, receipt: &[u8]) -> Option<Inclusion> {
        #[derive(serde::Deserialize)]
        struct Verbose {
            blockhash: Option<String>,
            /// Bitcoin SV says it; Bitcoin Core does not (`confirmations` is relative).
            blockheight: Option<u64>,
        }
        let v: Verbose = serde_json::from_slice(receipt).ok()?;
        Some(Inclusion {
            block: v.blockheight?,
            block_hash: v.blockhash?.to_ascii_lowercase(),
        })
    }

    fn mined_count_call(&self, _sender: &str) -> Option<FamilyCall> {
        // No accounts, no nonces.
        None
    }

    fn parse_count(&self, _result: &[u8]) -> Option<u64> {
        None
    }

    fn pending_count_read(&self, _method: &str, _params: Option<&[u8]>) -> Option<String> {
        None
    }

    fn count_result(&self, count: u64) -> Bytes {
        Bytes::from(count.to_string())
    }

    fn method_labels(&self) -> MethodLabels {
        MethodLabels::new(KNOWN_METHODS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_the_locally_computed_txid_and_its_lookup() {
        let b = Bitcoin::new("0F9188F13CB7B2C71F2A335E3A4FC328BF5BEB436012AFCA590B1A11466E2206");
        assert_eq!(b.genesis, b.genesis.to_ascii_lowercase());
        assert!(b.broadcast("getblockcount", Some(b"[]")).is_none());
        let tx = b
            .broadcast(
                "sendrawtransaction",
                Some(format!("[\"{}\", 0.1]", COINBASE).as_bytes()),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            tx.hash,
            "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
        );
        assert_eq!(tx.hash_json, format!("\"{}\"", tx.hash));
        assert_eq!(tx.lookup.method, "getrawtransaction");
        assert!(b
            .broadcast("sendrawtransaction", Some(b"[]"))
            .unwrap()
            .is_err());
        assert!(b
            .broadcast("sendrawtransaction", Some(b"[\"00ff\"]"))
            .unwrap()
            .is_err());
    }

    #[test]
    fn inclusion_from_a_verbose_transaction() {
        let b = Bitcoin::new("00");
        let mined = br#"{"txid":"45a5","blockhash":"4EB1","confirmations":1,"blockheight":102}"#;
        assert_eq!(
            b.inclusion(mined),
            Some(Inclusion {
                block: 102,
                block_hash: "4eb1".into()
            })
        );
        assert_eq!(b.inclusion(br#"{"txid":"45a5","confirmations":0}"#), None);
    }

    /// What Bitcoin's clients send: JSON-RPC 1.0 objects, taken when the family says so.
    #[test]
    fn json_rpc_1_requests_are_taken_for_bitcoin_only() {
        use crate::jsonrpc::{decode, Incoming, Item, Limits};
        let decoded = |body: &'static str, version_1: bool| {
            let limits = Limits {
                max_batch_len: 10,
                version_1,
            };
            match decode(&Bytes::from_static(body.as_bytes()), limits) {
                Ok(Incoming::Single(Item::Call(c))) => Some(c.method.to_string()),
                _ => None,
            }
        };
        let cli = r#"{"jsonrpc":"1.0","id":"curltest","method":"getblockcount","params":[]}"#;
        let python = r#"{"version":"1.1","method":"getblockcount","params":[],"id":1}"#;
        assert!(Bitcoin::new("00").takes_json_rpc_1());
        for body in [cli, python] {
            assert_eq!(
                decoded(body, true).as_deref(),
                Some("getblockcount"),
                "{body}"
            );
            assert_eq!(decoded(body, false), None, "{body}: not for an evm chain");
        }
        let odd = r#"{"jsonrpc":"3.0","id":1,"method":"getblockcount"}"#;
        assert_eq!(decoded(odd, true), None);
    }

    /// The config that names a bitcoin chain, and the errors that name its keys.
    #[test]
    fn a_bitcoin_chain_is_named_by_its_genesis_hash() {
        let chain = |identity: &str| {
            format!(
                "[[chains]]\nname = \"btc\"\nfamily = \"bitcoin\"\n{identity}\n\
                 [[chains.upstreams]]\nname = \"a\"\nurl = \"http://u:p@127.0.0.1:8332\"\n"
            )
        };
        let errors = |toml: &str| match crate::config::Config::from_toml(toml, "t.toml", &|_| None)
        {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        let regtest =
            "genesis_hash = \"0F9188F13CB7B2C71F2A335E3A4FC328BF5BEB436012AFCA590B1A11466E2206\"";
        let config =
            crate::config::Config::from_toml(&chain(regtest), "t.toml", &|_| None).unwrap();
        let c = &config.chains[0];
        assert_eq!(c.family.as_str(), "bitcoin");
        assert_eq!(
            c.genesis_hash.as_deref(),
            Some("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")
        );
        assert_eq!(crate::family::for_chain(c).answer_statuses(), &[404, 500]);
        let e = errors(&chain(""));
        assert!(
            e.contains("t.toml: chains[0].genesis_hash: required for a bitcoin chain"),
            "{e}"
        );
        let e = errors(&chain("genesis_hash = \"abc\""));
        assert!(
            e.contains("chains[0].genesis_hash: `abc` is not a block hash"),
            "{e}"
        );
        let e = errors(&chain(&format!("{regtest}\nchain_id = 1")));
        assert!(
            e.contains("chains[0].chain_id: not taken for a bitcoin chain"),
            "{e}"
        );
        let evm = chain(regtest).replace("family = \"bitcoin\"", "chain_id = 1");
        assert!(errors(&evm).contains("chains[0].genesis_hash: not taken for an evm chain"));
    }

    const COINBASE: &str = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";
}
