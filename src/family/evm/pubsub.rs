//! What `eth_subscribe` notifications carry, made from the answers Manifold already has.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::family::{FamilyCall, Log, LogFilter, Push, PushProtocol};

/// Fields of `eth_getBlockByNumber(n, false)` that are the block's body or totals, not its
/// header: geth's `newHeads` sends the header alone (`RPCMarshalHeader`).
const NOT_HEADER: &[&str] = &[
    "transactions",
    "uncles",
    "withdrawals",
    "size",
    "totalDifficulty",
];

/// `eth_subscribe("newHeads")` and `eth_subscribe("newPendingTransactions")`, as geth,
/// erigon, nethermind, besu, reth and anvil serve them.
#[derive(Debug)]
pub struct EvmPush;

impl PushProtocol for EvmPush {
    fn subscribe(&self, what: Push) -> FamilyCall {
        let kind = match what {
            Push::Heads => r#"["newHeads"]"#,
            Push::Pending => r#"["newPendingTransactions"]"#,
        };
        FamilyCall::new("eth_subscribe", kind.into())
    }

    fn unsubscribe(&self, id: &str) -> FamilyCall {
        FamilyCall::new("eth_unsubscribe", format!("[{id}]"))
    }

    fn head_number(&self, result: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            number: &'a str,
        }
        let head: Head = serde_json::from_slice(result).ok()?;
        u64::from_str_radix(head.number.strip_prefix("0x")?, 16).ok()
    }

    fn pending_hash(&self, result: &[u8]) -> Option<String> {
        // A hash; some nodes (and `newPendingTransactions` with `true`) send the whole
        // transaction instead.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Pending {
            Hash(String),
            Tx { hash: String },
        }
        let hash = match serde_json::from_slice(result).ok()? {
            Pending::Hash(h) | Pending::Tx { hash: h } => h,
        };
        let valid = hash.len() == 66
            && hash.starts_with("0x")
            && hash.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
        valid.then(|| hash.to_ascii_lowercase())
    }
}

/// The header of a block answer, as a `newHeads` notification's `result`.
pub fn header(block: &[u8]) -> Option<Bytes> {
    let mut fields: Map<String, Value> = serde_json::from_slice(block).ok()?;
    fields.get("hash")?.as_str()?;
    for f in NOT_HEADER {
        fields.remove(*f);
    }
    serde_json::to_vec(&fields).ok().map(Bytes::from)
}

/// The logs of an `eth_getLogs({"blockHash": ..})` answer, each kept as the node sent it.
/// `None` when it cannot be the block's answer: not a list of logs, or empty while the
/// header's `logsBloom` says the block has some.
pub fn block_logs(result: &[u8], header: &[u8]) -> Option<Vec<Log>> {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow)]
        address: &'a str,
        #[serde(default, borrow)]
        topics: Vec<&'a str>,
    }
    let raw: Vec<&RawValue> = serde_json::from_slice(result).ok()?;
    if raw.is_empty() && has_logs(header) {
        return None;
    }
    raw.into_iter()
        .map(|r| {
            let f: Fields<'_> = serde_json::from_str(r.get()).ok()?;
            Some(Log {
                address: f.address.to_ascii_lowercase(),
                topics: f.topics.iter().map(|t| t.to_ascii_lowercase()).collect(),
                json: Bytes::copy_from_slice(r.get().as_bytes()),
            })
        })
        .collect()
}

/// Whether a block header's `logsBloom` has any bit set (no header, or no bloom: assume so).
fn has_logs(header: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Bloom<'a> {
        #[serde(borrow)]
        logs_bloom: Option<&'a str>,
    }
    match serde_json::from_slice::<Bloom<'_>>(header) {
        Ok(Bloom {
            logs_bloom: Some(b),
        }) => b.trim_start_matches("0x").bytes().any(|c| c != b'0'),
        _ => true,
    }
}

/// A logs filter object: `address` (one or a list), `topics` (per position: null, one, or a
/// list). Block ranges are not a subscription's (`fromBlock`, `toBlock` and `blockHash` are
/// refused).
pub fn log_filter(filter: &Value) -> Result<LogFilter, String> {
    let Some(fields) = filter.as_object() else {
        return Err("the filter must be an object".into());
    };
    let mut out = LogFilter::default();
    for (key, value) in fields {
        match key.as_str() {
            "address" => out.addresses = hex_list(value, 20, "address")?,
            "topics" => {
                let Some(positions) = value.as_array() else {
                    return Err("topics must be a list".into());
                };
                if positions.len() > 4 {
                    return Err("at most 4 topic positions".into());
                }
                out.topics = positions
                    .iter()
                    .map(|p| match p {
                        Value::Null => Ok(None),
                        p => hex_list(p, 32, "topic").map(Some),
                    })
                    .collect::<Result<_, _>>()?;
            }
            other => {
                return Err(format!(
                    "`{other}` is not a field of a logs subscription's filter"
                ))
            }
        }
    }
    Ok(out)
}

/// An `eth_newFilter` object: the logs filter, and the block range it watches (`None`: an
/// open end; tags other than `earliest` are open ends, as the range follows the head).
pub fn poll_filter(object: &Value) -> Result<(LogFilter, Option<u64>, Option<u64>), String> {
    let Some(fields) = object.as_object() else {
        return Err("the filter must be an object".into());
    };
    if fields.contains_key("blockHash") {
        return Err("eth_newFilter takes no blockHash (ask eth_getLogs)".into());
    }
    let end = |key: &str| -> Result<Option<u64>, String> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s == "earliest" => Ok(Some(0)),
            Some(Value::String(s))
                if ["latest", "pending", "safe", "finalized"].contains(&s.as_str()) =>
            {
                Ok(None)
            }
            Some(Value::String(s)) => super::parse_quantity(s).map(Some).ok_or_else(|| {
                format!(
                    "{key} `{}` is not a block number",
                    s.chars().take(40).collect::<String>()
                )
            }),
            Some(_) => Err(format!("{key} must be a block number or tag")),
        }
    };
    let (from, to) = (end("fromBlock")?, end("toBlock")?);
    let mut rest = fields.clone();
    rest.remove("fromBlock");
    rest.remove("toBlock");
    Ok((log_filter(&Value::Object(rest))?, from, to))
}

/// One `0x` hex value of `bytes` bytes, or a list of them, lower-cased.
fn hex_list(value: &Value, bytes: usize, what: &str) -> Result<Vec<String>, String> {
    let one = |v: &Value| -> Result<String, String> {
        let s = v
            .as_str()
            .ok_or_else(|| format!("{what} must be a hex string"))?;
        let hex = s.strip_prefix("0x").unwrap_or("");
        if hex.len() != bytes * 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{what} `{}` is not {bytes} bytes of 0x hex",
                s.chars().take(80).collect::<String>()
            ));
        }
        Ok(s.to_ascii_lowercase())
    };
    match value {
        Value::Array(list) => list.iter().map(one).collect(),
        Value::Null => Ok(Vec::new()),
        v => Ok(vec![one(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_logs_are_kept_as_sent_and_an_empty_answer_must_fit_the_bloom() {
        let zero = format!(r#"{{"logsBloom":"0x{}"}}"#, "0".repeat(512));
        let some = format!(r#"{{"logsBloom":"0x{}1"}}"#, "0".repeat(511));
        assert_eq!(block_logs(b"[]", zero.as_bytes()), Some(vec![]));
        assert_eq!(
            block_logs(b"[]", some.as_bytes()),
            None,
            "a node without the block"
        );
        assert_eq!(block_logs(b"null", zero.as_bytes()), None);
        let logs = block_logs(
            br#"[{"address":"0xAB","topics":["0xCD"],"removed":false}]"#,
            some.as_bytes(),
        )
        .unwrap();
        assert_eq!(logs[0].address, "0xab");
        assert_eq!(logs[0].topics, ["0xcd"]);
        assert_eq!(
            &logs[0].json[..],
            br#"{"address":"0xAB","topics":["0xCD"],"removed":false}"#
        );
    }

    #[test]
    fn filters_from_params() {
        let a = format!("0x{}", "Ab".repeat(20));
        let t = format!("0x{}", "1".repeat(64));
        let f = log_filter(&serde_json::json!({"address": a, "topics": [null, [t]]})).unwrap();
        assert_eq!(f.addresses, [a.to_ascii_lowercase()]);
        assert_eq!(f.topics, [None, Some(vec![t.clone()])]);
        assert!(log_filter(&serde_json::json!({"address": "0x12"})).is_err());
        assert!(log_filter(&serde_json::json!({"fromBlock": "0x1"})).is_err());
        assert!(log_filter(&serde_json::json!([])).is_err());
        assert_eq!(
            log_filter(&serde_json::json!({})).unwrap(),
            LogFilter::default()
        );
    }

    #[test]
    fn pushed_heads_and_pending_hashes() {
        let p = EvmPush;
        assert_eq!(
            p.head_number(br#"{"number":"0x1f","hash":"0xab"}"#),
            Some(31)
        );
        assert_eq!(p.head_number(br#"{"hash":"0xab"}"#), None);
        let h = format!("\"0x{}\"", "AB".repeat(32));
        assert_eq!(
            p.pending_hash(h.as_bytes()),
            Some(format!("0x{}", "ab".repeat(32)))
        );
        let tx = format!("{{\"hash\":\"0x{}\",\"nonce\":\"0x1\"}}", "cd".repeat(32));
        assert_eq!(
            p.pending_hash(tx.as_bytes()),
            Some(format!("0x{}", "cd".repeat(32)))
        );
        assert_eq!(p.pending_hash(br#""0x12""#), None);
        assert_eq!(p.unsubscribe("\"0x9\"").params, "[\"0x9\"]");
    }

    #[test]
    fn a_header_is_the_block_without_its_body() {
        let block = br#"{"number":"0x2","hash":"0xab","parentHash":"0xaa","transactions":["0x1"],"uncles":[],"size":"0x200","withdrawals":[],"baseFeePerGas":"0x7"}"#;
        let h: Value = serde_json::from_slice(&header(block).unwrap()).unwrap();
        assert_eq!(
            h,
            serde_json::json!({"number":"0x2","hash":"0xab","parentHash":"0xaa","baseFeePerGas":"0x7"})
        );
        assert!(header(b"null").is_none());
        assert!(
            header(br#"{"number":"0x1"}"#).is_none(),
            "a pending block has no hash"
        );
    }
}
