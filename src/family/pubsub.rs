//! What subscriptions to a chain's events are made of, family-neutral: a log and a logs
//! filter (addresses, and topics by position), as geth's `eth_subscribe("logs")` and
//! `eth_newFilter` take them.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::FamilyCall;

/// What an upstream socket subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Each new head block.
    Heads,
    /// The hashes of transactions entering the node's pool.
    Pending,
}

/// How a family's nodes push over a WebSocket: the calls that subscribe and unsubscribe,
/// and what a notification's `result` says. The socket itself (`upstream::socket`) is
/// family-neutral: the JSON-RPC envelope of a notification (`params.subscription`,
/// `params.result`) is the same on every chain that has one.
pub trait PushProtocol: Send + Sync + std::fmt::Debug {
    fn subscribe(&self, what: Push) -> FamilyCall;
    /// `id`: the subscription id as the node gave it (JSON text).
    fn unsubscribe(&self, id: &str) -> FamilyCall;
    /// The block number of a heads notification's `result`.
    fn head_number(&self, result: &[u8]) -> Option<u64>;
    /// The transaction hash of a pending notification's `result` (lower case).
    fn pending_hash(&self, result: &[u8]) -> Option<String>;
}

/// One log of a block, as a node answered it, with what filters look at (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub address: String,
    pub topics: Vec<String>,
    /// The node's log object, as it sent it (`"removed": false`).
    pub json: Bytes,
}

impl Log {
    /// The log object again with `"removed": true` (its block left the chain).
    pub fn removed_json(&self) -> Bytes {
        let Ok(mut fields) = serde_json::from_slice::<Map<String, Value>>(&self.json) else {
            return self.json.clone();
        };
        fields.insert("removed".into(), Value::Bool(true));
        serde_json::to_vec(&fields).map_or_else(|_| self.json.clone(), Bytes::from)
    }
}

/// Which logs a subscription or filter wants: any of `addresses` (none: any address), and
/// at each position of `topics` any of the listed ones (`None`: any topic there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub addresses: Vec<String>,
    pub topics: Vec<Option<Vec<String>>>,
}

impl LogFilter {
    /// geth's rule (`filterLogs`): a log with fewer topics than the filter lists positions
    /// never matches, even where the filter says any.
    pub fn matches(&self, log: &Log) -> bool {
        (self.addresses.is_empty() || self.addresses.contains(&log.address))
            && self.topics.len() <= log.topics.len()
            && self
                .topics
                .iter()
                .enumerate()
                .all(|(i, wanted)| match wanted {
                    None => true,
                    Some(any) => log.topics.get(i).is_some_and(|t| any.contains(t)),
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(address: &str, topics: &[&str]) -> Log {
        Log {
            address: address.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            json: Bytes::from_static(br#"{"address":"0xa","removed":false,"logIndex":"0x0"}"#),
        }
    }

    #[test]
    fn filters_match_by_address_and_topic_position() {
        let l = log("0xa", &["0x1", "0x2"]);
        assert!(LogFilter::default().matches(&l));
        let f = |addresses: &[&str], topics: Vec<Option<Vec<&str>>>| LogFilter {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            topics: topics
                .into_iter()
                .map(|t| t.map(|t| t.iter().map(|s| s.to_string()).collect()))
                .collect(),
        };
        assert!(f(&["0xb", "0xa"], vec![]).matches(&l));
        assert!(!f(&["0xb"], vec![]).matches(&l));
        assert!(f(&[], vec![None, Some(vec!["0x3", "0x2"])]).matches(&l));
        assert!(!f(&[], vec![Some(vec!["0x2"])]).matches(&l));
        assert!(
            !f(&[], vec![None, None, Some(vec!["0x9"])]).matches(&l),
            "no third topic"
        );
        assert!(
            !f(&[], vec![None, None, None]).matches(&l),
            "geth: more positions than topics"
        );
        assert!(f(&[], vec![None, None]).matches(&l));
    }

    #[test]
    fn a_removed_log_says_so() {
        let v: Value = serde_json::from_slice(&log("0xa", &[]).removed_json()).unwrap();
        assert_eq!(v["removed"], true);
        assert_eq!(v["logIndex"], "0x0");
    }
}
