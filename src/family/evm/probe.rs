//! Health probes of an EVM upstream: `eth_chainId` (identity), `eth_blockNumber` (head) and
//! `eth_syncing`, judged into one verdict; and the same identity check on a client's own
//! `eth_chainId` answer.

use std::time::Duration;

use bytes::Bytes;

use super::methods::parse_quantity;
use crate::family::ProbeVerdict;
use crate::jsonrpc::Payload;
use crate::upstream::{read_reply, UpstreamClient};

/// One probe request; the raw `result` text, or why there is none. A JSON-RPC error answer
/// is `Ok(Err(..))`: the upstream answers, but not this method.
pub(super) async fn call(
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
pub(super) fn check_chain_id(chain_id: u64, method: &str, result: &[u8]) -> Option<ProbeVerdict> {
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

pub(super) type ProbeAnswer = Result<Result<String, String>, String>;

/// The verdict from the three answers.
pub(super) fn judge(
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn ok(s: &str) -> ProbeAnswer {
        Ok(Ok(s.to_string()))
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
