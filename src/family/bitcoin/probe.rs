//! Health probes of a Bitcoin node: `getblockchaininfo` (its chain, its head in blocks,
//! whether it is still downloading) and `getblockhash 0` (identity: the genesis block).

use serde::Deserialize;

use crate::family::{FamilyCall, ProbeAnswer, ProbeVerdict};

/// More headers than blocks by this much: still catching up (dshackle counts 2 as lag).
const CATCHING_UP: u64 = 2;

pub fn calls() -> Vec<FamilyCall> {
    vec![
        FamilyCall::new("getblockchaininfo", "[]".into()),
        FamilyCall::new("getblockhash", "[0]".into()),
    ]
}

#[derive(Deserialize)]
struct ChainInfo {
    blocks: u64,
    #[serde(default)]
    headers: Option<u64>,
    /// Bitcoin SV 1.0.13 does not say.
    #[serde(default)]
    initialblockdownload: Option<bool>,
}

/// The verdict from the answers to `calls`, in order.
pub fn judge(genesis: &str, answers: &[ProbeAnswer]) -> ProbeVerdict {
    let missing = ProbeAnswer::Failed("no answer".into());
    let (info, identity) = (
        answers.first().unwrap_or(&missing),
        answers.get(1).unwrap_or(&missing),
    );
    let hash = match answered("getblockhash 0", identity) {
        Ok(hash) => hash.trim().trim_matches('"'),
        Err(verdict) => return verdict,
    };
    if !hash.eq_ignore_ascii_case(genesis) {
        return ProbeVerdict::WrongChain(format!(
            "its genesis block is {hash}, expected {genesis}"
        ));
    }
    let text = match answered("getblockchaininfo", info) {
        Ok(text) => text,
        Err(verdict) => return verdict,
    };
    match serde_json::from_str::<ChainInfo>(text) {
        Ok(i) if i.initialblockdownload == Some(true) => ProbeVerdict::Syncing {
            head: Some(i.blocks),
        },
        // Saturating: the numbers are the node's, whatever they are.
        Ok(i)
            if i.headers
                .is_some_and(|h| h > i.blocks.saturating_add(CATCHING_UP)) =>
        {
            ProbeVerdict::Syncing {
                head: Some(i.blocks),
            }
        }
        Ok(i) => ProbeVerdict::Healthy { head: i.blocks },
        Err(_) => ProbeVerdict::Failed(format!(
            "getblockchaininfo: unreadable answer {}",
            text.chars().take(100).collect::<String>()
        )),
    }
}

/// The result of the probe call `what`, or the verdict when it has none: warming up (the
/// node is there but not ready) is syncing, any other error or no answer a failure.
fn answered<'a>(what: &str, answer: &'a ProbeAnswer) -> Result<&'a str, ProbeVerdict> {
    match answer {
        ProbeAnswer::Result(text) => Ok(text),
        ProbeAnswer::Error(e) if warming_up(e) => Err(ProbeVerdict::Syncing { head: None }),
        ProbeAnswer::Error(e) => Err(ProbeVerdict::Failed(format!("{what}: error {e}"))),
        ProbeAnswer::Failed(e) => Err(ProbeVerdict::Failed(e.clone())),
    }
}

/// -28 (loading the block index, verifying blocks) and -10 (initial download).
fn warming_up(error: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(error)
        .ok()
        .and_then(|e| e.get("code").and_then(serde_json::Value::as_i64))
        .is_some_and(|c| c == -28 || c == -10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGTEST: &str = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";

    fn ok(s: &str) -> ProbeAnswer {
        ProbeAnswer::Result(s.into())
    }

    #[test]
    fn verdicts() {
        let genesis = ok(&format!("\"{REGTEST}\""));
        let info = |s: &str| ok(s);
        assert_eq!(
            judge(
                REGTEST,
                &[
                    info(r#"{"chain":"regtest","blocks":101,"headers":101}"#),
                    genesis.clone()
                ]
            ),
            ProbeVerdict::Healthy { head: 101 }
        );
        // Bitcoin SV: no initialblockdownload.
        assert_eq!(
            judge(
                REGTEST,
                &[info(r#"{"chain":"regtest","blocks":7}"#), genesis.clone()]
            ),
            ProbeVerdict::Healthy { head: 7 }
        );
        assert_eq!(
            judge(
                REGTEST,
                &[
                    info(r#"{"blocks":100,"headers":900,"initialblockdownload":false}"#),
                    genesis.clone()
                ]
            ),
            ProbeVerdict::Syncing { head: Some(100) }
        );
        assert_eq!(
            judge(
                REGTEST,
                &[
                    info(r#"{"blocks":100,"headers":100,"initialblockdownload":true}"#),
                    genesis.clone()
                ]
            ),
            ProbeVerdict::Syncing { head: Some(100) }
        );
        let mainnet = ok("\"000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f\"");
        assert!(matches!(
            judge(REGTEST, &[info(r#"{"blocks":1}"#), mainnet]),
            ProbeVerdict::WrongChain(w) if w.contains("000000000019d6")
        ));
        let warming =
            ProbeAnswer::Error(r#"{"code":-28,"message":"Loading block index..."}"#.into());
        assert_eq!(
            judge(REGTEST, &[warming.clone(), warming]),
            ProbeVerdict::Syncing { head: None }
        );
        assert!(matches!(
            judge(REGTEST, &[ProbeAnswer::Failed("getblockchaininfo: connection refused".into()), genesis.clone()]),
            ProbeVerdict::Failed(w) if w.contains("refused")
        ));
        assert!(matches!(judge(REGTEST, &[]), ProbeVerdict::Failed(_)));
        // A hostile node's numbers do not overflow.
        assert_eq!(
            judge(
                REGTEST,
                &[
                    info(&format!(
                        "{{\"blocks\":{},\"headers\":{}}}",
                        u64::MAX,
                        u64::MAX
                    )),
                    genesis.clone()
                ]
            ),
            ProbeVerdict::Healthy { head: u64::MAX }
        );
    }
}
