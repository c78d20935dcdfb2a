//! Health probes of an EVM upstream: `eth_chainId` (identity), `eth_blockNumber` (head) and
//! `eth_syncing`, judged into one verdict; and the same identity check on a client's own
//! `eth_chainId` answer.

use super::methods::parse_quantity;
use crate::family::{ProbeAnswer, ProbeVerdict};

/// The probe's calls, in the order `judge_answers` reads their answers.
pub(super) const CALLS: [&str; 3] = ["eth_blockNumber", "eth_syncing", "eth_chainId"];

/// `ChainFamily::judge_probe`: the answers to `CALLS`, in order.
pub(super) fn judge_answers(chain_id: u64, answers: &[ProbeAnswer]) -> ProbeVerdict {
    let missing = || ProbeAnswer::Failed("no answer".into());
    let at = |i: usize| answers.get(i).cloned().unwrap_or_else(missing);
    judge(chain_id, Some(at(2)), at(0), at(1))
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

/// The verdict from the three answers.
pub(super) fn judge(
    chain_id: u64,
    identity: Option<ProbeAnswer>,
    head: ProbeAnswer,
    syncing: ProbeAnswer,
) -> ProbeVerdict {
    if let Some(identity) = identity {
        match identity {
            ProbeAnswer::Result(id) => match parse_quantity(id.trim_matches('"')) {
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
            ProbeAnswer::Error(e) => {
                return ProbeVerdict::Failed(format!("eth_chainId: error {e}"))
            }
            ProbeAnswer::Failed(e) => return ProbeVerdict::Failed(e),
        }
    }
    let head = match head {
        ProbeAnswer::Result(h) => match parse_quantity(h.trim_matches('"')) {
            Some(h) => h,
            None => return ProbeVerdict::Failed(format!("eth_blockNumber: unreadable answer {h}")),
        },
        ProbeAnswer::Error(e) => {
            return ProbeVerdict::Failed(format!("eth_blockNumber: error {e}"))
        }
        ProbeAnswer::Failed(e) => return ProbeVerdict::Failed(e),
    };
    match syncing {
        // `false` when in sync; a sync-status object while syncing.
        ProbeAnswer::Result(s) if s.trim() == "false" => ProbeVerdict::Healthy { head },
        ProbeAnswer::Result(_) => ProbeVerdict::Syncing { head: Some(head) },
        // Some providers do not offer eth_syncing: they answer, so they are up.
        ProbeAnswer::Error(_) => ProbeVerdict::Healthy { head },
        ProbeAnswer::Failed(e) => ProbeVerdict::Failed(e),
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
        ProbeAnswer::Result(s.to_string())
    }

    #[test]
    fn every_probe_asks_the_chain_id_and_answers_are_read_in_call_order() {
        assert!(
            CALLS.contains(&"eth_chainId"),
            "the chain id on every probe"
        );
        let answers = |id: &str| [ok("\"0x10\""), ok("false"), ok(id)];
        assert_eq!(
            judge_answers(1, &answers("\"0x1\"")),
            ProbeVerdict::Healthy { head: 16 }
        );
        assert!(matches!(
            judge_answers(1, &answers("\"0x5\"")),
            ProbeVerdict::WrongChain(_)
        ));
        // An answer missing is a failed probe, not a healthy one.
        assert!(matches!(
            judge_answers(1, &[ok("\"0x10\""), ok("false")]),
            ProbeVerdict::Failed(_)
        ));
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
            matches!(judge(1, None, ProbeAnswer::Failed("eth_blockNumber: no answer within 2s".into()), ok("false")), ProbeVerdict::Failed(w) if w.contains("no answer"))
        );
        assert!(matches!(
            judge(1, None, ok("\"zz\""), ok("false")),
            ProbeVerdict::Failed(_)
        ));
        assert_eq!(
            judge(
                1,
                None,
                ok("\"0x10\""),
                ProbeAnswer::Error("method not found".into())
            ),
            ProbeVerdict::Healthy { head: 16 }
        );
    }
}
