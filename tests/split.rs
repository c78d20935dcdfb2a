//! `eth_getLogs` split into parts, end to end: a real anvil with logs spread over 20,000
//! blocks, two upstream paths in front of it with a 2,000-block `max_logs_range`, and the
//! merged answer compared byte for byte with anvil's own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::fault_path::{Fault, FaultPath};
use support::*;

const DEV: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
const EMITTER: &str = "0x00000000000000000000000000000000000e0117";

/// Runtime code: `LOG0(calldata word)`, then `LOG1(calldata word, topic = caller)`: two logs
/// per call, so that log indexes matter.
const EMITTER_CODE: &str = "0x60003560005260206000a03360206000a100";

/// Transactions (each mined in its own block), each followed by this many empty blocks.
const TXS: u64 = 40;
const GAP: u64 = 500;

struct Rig {
    anvil: Anvil,
    paths: [FaultPath; 2],
    proxy: manifold::server::Running,
    url: String,
}

async fn rig(policy: &str) -> Rig {
    // Mining 20,000 blocks takes anvil five minutes under Prague (each block costs more as
    // the EIP-2935 history contract fills, and every state is kept): Cancun without the
    // history of states mines them in a second. Logs need neither.
    let anvil = Anvil::start_with(&[
        "--slots-in-an-epoch",
        "1",
        "--hardfork",
        "cancun",
        "--prune-history",
    ])
    .await;
    let paths = [
        FaultPath::start(&anvil.url).await,
        FaultPath::start(&anvil.url).await,
    ];
    let mut config = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (i, p) in paths.iter().enumerate() {
        config.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"{}\"\ntier = \"primary\"\ntimeout = \"5s\"\nmax_logs_range = {}\n",
            p.url(),
            [2000, 5000][i],
        ));
    }
    config.push_str(&format!(
        "[chains.policy]\n{policy}\n[chains.policy.health]\ninterval = \"700ms\"\ntimeout = \"700ms\"\nrise = 1\nfall = 2\n"
    ));
    let proxy = start_proxy(&config).await;
    let url = rpc_url(&proxy, "/eth");
    Rig {
        anvil,
        paths,
        proxy,
        url,
    }
}

impl Rig {
    async fn direct(&self, method: &str, params: Value) -> Value {
        HttpClient::new()
            .call(&self.anvil.url, method, params)
            .await
    }

    /// Logs over 20,040 blocks: a transaction to the emitter, then `GAP` empty blocks, `TXS`
    /// times. Returns the head.
    async fn fill(&self) -> u64 {
        self.direct("anvil_setCode", json!([EMITTER, EMITTER_CODE]))
            .await;
        for i in 0..TXS {
            let data = format!("0x{i:064x}");
            let sent = self
                .direct(
                    "eth_sendTransaction",
                    json!([{"from": DEV, "to": EMITTER, "data": data}]),
                )
                .await;
            assert!(sent.get("error").is_none(), "{sent}");
            self.direct("anvil_mine", json!([format!("{GAP:#x}")]))
                .await;
        }
        let head = hex(&self.direct("eth_blockNumber", json!([])).await["result"]);
        // Manifold's finalized block caught up with anvil's (two under its head).
        wait_for_status(&self.proxy, "the finalized block known", |s| {
            s["chains"][0]["finalized"].as_u64() == Some(head - 2)
        })
        .await;
        head
    }

    fn logs_calls(&self) -> usize {
        self.paths.iter().map(|p| p.calls("eth_getLogs")).sum()
    }

    async fn metric(&self, series: &str) -> f64 {
        metric(&self.proxy, series).await
    }
}

fn hex(v: &Value) -> u64 {
    u64::try_from(hex_u128(v)).unwrap()
}

/// The `result` of an `eth_getLogs` as the exact text of the response body.
async fn logs_text(url: &str, filter: &Value) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [filter]});
    let (status, text) = HttpClient::new().post(url, body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let start = text
        .find(r#""result":"#)
        .unwrap_or_else(|| panic!("no result: {}", &text[..text.len().min(500)]));
    let end = text.rfind('}').unwrap();
    text[start + 9..end].to_string()
}

#[tokio::test]
async fn a_20000_block_range_over_two_upstreams_is_anvils_own_answer() {
    let r = rig("").await;
    let head = r.fill().await;
    assert!(head > 20_000, "{head}");
    let filter = json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}")});
    let direct = logs_text(&r.anvil.url, &filter).await;
    let logs: Vec<Value> = serde_json::from_str(&direct).unwrap();
    assert_eq!(
        logs.len() as u64,
        2 * TXS,
        "anvil's own answer has every log"
    );
    assert_eq!(logs_text(&r.url, &filter).await, direct, "byte for byte");
    // On the 2,000-block grid of the narrower upstream: 0..=1999, ..., 20000..=head.
    let parts = (head / 2000 + 1) as usize;
    assert_eq!(r.logs_calls(), parts);
    for p in &r.paths {
        assert!(p.widest_logs_range() <= 2000, "{}", p.widest_logs_range());
    }
    assert_eq!(
        r.metric(r#"manifold_split_parts_total{chain="eth"}"#).await,
        parts as f64
    );
    // Asked again: the final parts come from the cache, only the one at the head (not
    // final yet) goes out.
    assert_eq!(logs_text(&r.url, &filter).await, direct);
    assert_eq!(r.logs_calls(), parts + 1);
    // Overlapping ranges share the grid's parts; a tag is resolved to Manifold's head.
    let filter = json!({"fromBlock": "0x7d0", "toBlock": "latest", "address": EMITTER});
    assert_eq!(
        logs_text(&r.url, &filter).await,
        logs_text(&r.anvil.url, &filter).await
    );
    // With the address in the params the parts are other questions: asked again.
    assert_eq!(r.logs_calls(), parts + 1 + (parts - 1));
}

#[tokio::test]
async fn a_part_refused_as_too_wide_is_halved() {
    let r = rig("").await;
    let head = r.fill().await;
    // Both paths refuse more than 700 blocks, whatever `max_logs_range` says.
    for p in &r.paths {
        p.set(Fault::LogsRangeLimit(700)).await;
    }
    let filter = json!({
        "fromBlock": "0x1f4",
        "toBlock": format!("{head:#x}"),
        "topics": [format!("0x{:0>64}", DEV.trim_start_matches("0x"))],
    });
    let direct = logs_text(&r.anvil.url, &filter).await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&direct).unwrap().len() as u64,
        TXS - 1,
        "the LOG1 of every transaction from block 500 on"
    );
    assert_eq!(logs_text(&r.url, &filter).await, direct);
    // A narrow range that no upstream takes either is halved too.
    let narrow = json!({"fromBlock": "0x1", "toBlock": "0x5dc"});
    assert_eq!(
        logs_text(&r.url, &narrow).await,
        logs_text(&r.anvil.url, &narrow).await
    );
    // A single block refused: the node's own error, as it is.
    for p in &r.paths {
        p.set(Fault::LogsRangeLimit(0)).await;
    }
    let v = HttpClient::new()
        .call(
            &r.url,
            "eth_getLogs",
            json!([{"fromBlock": "0x9", "toBlock": "0x9"}]),
        )
        .await;
    assert_eq!(v["error"]["code"], -32005, "{v}");
    assert_eq!(
        v["error"]["message"],
        "query returned more than 10000 results"
    );
}

#[tokio::test]
async fn a_range_wider_than_max_logs_blocks_is_refused_naming_the_limit() {
    let r = rig("max_logs_blocks = 10000").await;
    let v = HttpClient::new()
        .call(
            &r.url,
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "toBlock": "0x2710"}]),
        )
        .await;
    assert_eq!(v["error"]["code"], -32005, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "logs_range_too_large");
    assert_eq!(v["error"]["data"]["limit"], 10000);
    assert_eq!(v["error"]["data"]["blocks"], 10001);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_logs_blocks (10000)"),
        "{v}"
    );
    assert_eq!(r.logs_calls(), 0, "nothing sent");
    // A reversed range is the node's to answer.
    let v = HttpClient::new()
        .call(
            &r.url,
            "eth_getLogs",
            json!([{"fromBlock": "0x5", "toBlock": "0x1"}]),
        )
        .await;
    let d = r
        .direct(
            "eth_getLogs",
            json!([{"fromBlock": "0x5", "toBlock": "0x1"}]),
        )
        .await;
    assert_eq!(
        v.get("error").is_some(),
        d.get("error").is_some(),
        "{v} {d}"
    );
    assert_eq!(r.logs_calls(), 1);
}
