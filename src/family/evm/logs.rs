//! `eth_getLogs` in parts (`chain::split`): the range a filter asks, the same filter for a
//! part of it, the wordings by which nodes refuse a range as too wide, and the parts'
//! answers merged into one.

use serde_json::value::RawValue;
use serde_json::Value;

use super::errors::texts;
use super::methods::parse_quantity;
use crate::family::{CanonicalHash, MergeError, RangeEnd, RangePart, RangeQuery};

/// Wordings (lower case, substrings) of a node or provider refusing a log query as too
/// wide or its answer as too large: ask for less. Sources: geth (`exceed maximum block
/// range`, `--rpc.logquerylimit`), Infura and erigon (`more than 10000 results`, `max
/// results`), Alchemy (`Log response size exceeded`), QuickNode (`eth_getLogs is limited
/// to a 10,000 range`), besu (`exceeds maximum range limit`), Ankr (`response too large`).
const TOO_WIDE: &[&str] = &[
    "more than",
    "max results",
    "too many results",
    "too many logs",
    "maximum block range",
    "block range is too",
    "block range too",
    "block range limit",
    "maximum range",
    "range limit",
    "range is too",
    "range too",
    "is limited to",
    "response size",
    "too large",
    "too wide",
];

/// The filter's range, when it is one Manifold may split: by numbers and the `earliest`,
/// `latest` and `finalized` tags; not by `blockHash` (one block), nor `pending` or `safe`.
pub(super) fn query(params: Option<&[u8]>) -> Option<RangeQuery> {
    let list: Vec<Value> = serde_json::from_slice(params?).ok()?;
    let [Value::Object(mut filter)] = <[Value; 1]>::try_from(list).ok()? else {
        return None;
    };
    if filter.contains_key("blockHash") {
        return None;
    }
    let from = end(filter.remove("fromBlock"))?;
    let to = end(filter.remove("toBlock"))?;
    Some(RangeQuery { from, to, filter })
}

fn end(v: Option<Value>) -> Option<RangeEnd> {
    match v {
        None | Some(Value::Null) => Some(RangeEnd::Latest),
        Some(Value::String(s)) => match s.as_str() {
            "latest" => Some(RangeEnd::Latest),
            "finalized" => Some(RangeEnd::Finalized),
            "earliest" => Some(RangeEnd::Number(0)),
            s => parse_quantity(s).map(RangeEnd::Number),
        },
        Some(_) => None,
    }
}

/// `[filter]` for the blocks `from..=to`.
pub(super) fn params(query: &RangeQuery, from: u64, to: u64) -> Option<bytes::Bytes> {
    let mut filter = query.filter.clone();
    filter.insert("fromBlock".into(), Value::String(format!("{from:#x}")));
    filter.insert("toBlock".into(), Value::String(format!("{to:#x}")));
    serde_json::to_vec(&[Value::Object(filter)])
        .ok()
        .map(bytes::Bytes::from)
}

/// An error answer refusing the range as too wide ("invalid block range" is a bad range,
/// not a wide one).
pub(super) fn is_too_wide(error: &[u8]) -> bool {
    let (_, message) = texts(error);
    !message.contains("invalid") && TOO_WIDE.iter().any(|m| message.contains(m))
}

/// The logs of consecutive parts as one list, ordered by (block, log index), each log once,
/// and only those inside the part that answered it (a node that clamps or ignores a range
/// does not add logs twice). Each log is its own text from the part's answer. A log of a
/// block whose canonical hash is known must carry that hash.
pub(super) fn merge(
    parts: &[RangePart],
    canonical: CanonicalHash<'_>,
) -> Result<Vec<u8>, MergeError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Place<'a> {
        #[serde(borrow)]
        block_number: Option<&'a str>,
        #[serde(borrow)]
        log_index: Option<&'a str>,
        #[serde(borrow)]
        block_hash: Option<&'a str>,
    }
    let unreadable = |part: &RangePart, why: String| {
        MergeError::Unreadable(format!("blocks {}..={}: {why}", part.from, part.to))
    };
    let mut logs: Vec<(u64, u64, &str)> = Vec::new();
    for part in parts {
        let list: Vec<&RawValue> = serde_json::from_slice(&part.result)
            .map_err(|e| unreadable(part, format!("not a list of logs: {e}")))?;
        for log in list {
            let place: Place<'_> = serde_json::from_str(log.get())
                .map_err(|e| unreadable(part, format!("not a log: {e}")))?;
            let number = place.block_number.and_then(parse_quantity);
            let index = place.log_index.and_then(parse_quantity);
            let (Some(number), Some(index)) = (number, index) else {
                return Err(unreadable(
                    part,
                    "a log without blockNumber or logIndex".into(),
                ));
            };
            if !(part.from..=part.to).contains(&number) {
                continue;
            }
            if let (Some(want), Some(hash)) = (canonical(number), place.block_hash) {
                if !hash.eq_ignore_ascii_case(&want) {
                    return Err(MergeError::NotCanonical { block: number });
                }
            }
            logs.push((number, index, log.get()));
        }
    }
    logs.sort_by_key(|&(number, index, _)| (number, index));
    logs.dedup_by_key(|&mut (number, index, _)| (number, index));
    let size = logs
        .iter()
        .map(|(_, _, text)| text.len() + 1)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'[');
    for (i, (_, _, text)) in logs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(params: &str) -> Option<RangeQuery> {
        query(Some(params.as_bytes()))
    }

    #[test]
    fn ranges_by_number_and_tag_are_read_and_others_are_not() {
        let r = q(r#"[{"fromBlock":"0x10","toBlock":"latest","address":"0xAb"}]"#).unwrap();
        assert_eq!((r.from, r.to), (RangeEnd::Number(16), RangeEnd::Latest));
        assert_eq!(r.filter.len(), 1);
        let r = q(r#"[{"fromBlock":"earliest","toBlock":"finalized"}]"#).unwrap();
        assert_eq!((r.from, r.to), (RangeEnd::Number(0), RangeEnd::Finalized));
        let r = q(r#"[{}]"#).unwrap();
        assert_eq!((r.from, r.to), (RangeEnd::Latest, RangeEnd::Latest));
        assert_eq!(q(r#"[{"blockHash":"0xab"}]"#), None);
        assert_eq!(q(r#"[{"fromBlock":"pending"}]"#), None);
        assert_eq!(q(r#"[{"fromBlock":"safe"}]"#), None);
        assert_eq!(q(r#"[{"fromBlock":"0x1"},1]"#), None);
        assert_eq!(q(r#"[{"fromBlock":7}]"#), None);
        assert_eq!(q("{}"), None);
    }

    #[test]
    fn a_part_asks_the_same_filter_over_its_blocks() {
        let r = q(r#"[{"fromBlock":"0x1","toBlock":"0x9999","topics":[null,"0x01"]}]"#).unwrap();
        let p = params(&r, 4000, 5999).unwrap();
        assert_eq!(
            &p[..],
            br#"[{"fromBlock":"0xfa0","toBlock":"0x176f","topics":[null,"0x01"]}]"#
        );
    }

    #[test]
    fn too_wide_wordings() {
        let wide = [
            "query returned more than 10000 results",
            "exceed maximum block range: 5000",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            "eth_getLogs is limited to a 10,000 range",
            "Requested range exceeds maximum range limit",
            "query exceeds max results 20000",
            "response too large",
            "block range is too wide",
        ];
        for m in wide {
            let e = serde_json::json!({"code": -32005, "message": m}).to_string();
            assert!(is_too_wide(e.as_bytes()), "{m}");
        }
        for m in [
            "invalid block range params",
            "execution reverted",
            "header not found",
        ] {
            let e = serde_json::json!({"code": -32000, "message": m}).to_string();
            assert!(!is_too_wide(e.as_bytes()), "{m}");
        }
    }

    fn log(block: u64, index: u64) -> String {
        format!(
            r#"{{"blockHash":"0xb{block}","blockNumber":"{block:#x}","logIndex":"{index:#x}","data":"0x"}}"#
        )
    }

    fn unknown(_: u64) -> Option<String> {
        None
    }

    fn part(from: u64, to: u64, logs: &[String]) -> RangePart {
        RangePart {
            from,
            to,
            result: format!("[{}]", logs.join(",")).into(),
        }
    }

    #[test]
    fn parts_merge_in_order_once_each_and_within_their_blocks() {
        let parts = [
            part(0, 9, &[log(3, 0), log(3, 1), log(9, 0)]),
            part(10, 19, &[]),
            // A node that ignored the range: the log of block 9 again, and one of block 25.
            part(20, 29, &[log(9, 0), log(21, 2), log(20, 0), log(25, 0)]),
        ];
        let merged = merge(&parts, &unknown).unwrap();
        let want = format!(
            "[{}]",
            [
                log(3, 0),
                log(3, 1),
                log(9, 0),
                log(20, 0),
                log(21, 2),
                log(25, 0)
            ]
            .join(",")
        );
        assert_eq!(String::from_utf8(merged).unwrap(), want);
        assert_eq!(merge(&[part(0, 1, &[])], &unknown).unwrap(), b"[]");
        let not_a_list = RangePart {
            from: 0,
            to: 1,
            result: "{}".into(),
        };
        assert!(merge(&[not_a_list], &unknown).is_err());
        assert!(merge(&[part(0, 1, &[r#"{"logIndex":"0x0"}"#.into()])], &unknown).is_err());
    }

    #[test]
    fn a_log_of_another_branch_is_not_merged() {
        let parts = [part(0, 9, &[log(3, 0), log(8, 0)])];
        // Block 8's canonical hash is another: its log came from another branch.
        let canonical = |n: u64| (n == 8).then(|| "0xb8-other".to_string());
        assert_eq!(
            merge(&parts, &canonical),
            Err(MergeError::NotCanonical { block: 8 })
        );
        // The same hash in another case is the same block.
        let canonical = |n: u64| (n == 8).then(|| "0xB8".to_string());
        assert!(merge(&parts, &canonical).is_ok());
    }
}
