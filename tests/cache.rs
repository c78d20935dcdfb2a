//! The answer cache and coalescing, end to end against a real anvil (`--slots-in-an-epoch 1`:
//! its finalized block is two under its head), with every upstream request counted by
//! method on a path in front of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fault_path::{Fault, FaultPath};
use support::*;

const DEV: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
const OTHER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

/// Probes every 700 ms (the finalized block every fourth), so that the finalized block
/// follows anvil's within seconds, and a probe outlasts the coalescing test's slow path.
const FAST_PROBES: &str = "interval = \"700ms\"\ntimeout = \"700ms\"\nrise = 1\nfall = 2";

struct Rig {
    anvil: Anvil,
    path: FaultPath,
    proxy: manifold::server::Running,
    url: String,
}

async fn rig(policy: &str) -> Rig {
    let anvil = Anvil::start_with(&["--slots-in-an-epoch", "1"]).await;
    let path = FaultPath::start(&anvil.url).await;
    let proxy = start_proxy(&chain_config_with_health(
        &[&path.url()],
        policy,
        FAST_PROBES,
    ))
    .await;
    let url = rpc_url(&proxy, "/eth");
    Rig {
        anvil,
        path,
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

    async fn mine(&self, blocks: u64) {
        self.direct("anvil_mine", json!([format!("{blocks:#x}")]))
            .await;
    }

    /// Wait until Manifold's finalized block is anvil's own.
    async fn finalized_caught_up(&self) -> u64 {
        let direct = self
            .direct("eth_getBlockByNumber", json!(["finalized", false]))
            .await;
        let want = hex(&direct["result"]["number"]);
        wait_for_status(&self.proxy, "the finalized block known", |s| {
            s["chains"][0]["finalized"].as_u64() == Some(want)
        })
        .await;
        want
    }

    async fn metric(&self, series: &str) -> f64 {
        metric(&self.proxy, series).await
    }
}

fn hex(v: &Value) -> u64 {
    u64::try_from(hex_u128(v)).unwrap()
}

/// `n` calls of the same method and params, each with its own id; the answers' results,
/// after checking every id came back.
async fn ask(url: &str, method: &str, params: Value, n: usize) -> Vec<Value> {
    let c = HttpClient::new();
    let mut results = Vec::new();
    for id in 0..n {
        let body =
            json!({"jsonrpc": "2.0", "id": format!("c{id}"), "method": method, "params": params});
        let v = c.rpc(url, &body.to_string()).await;
        assert_eq!(v["id"], format!("c{id}"), "{v}");
        assert!(v.get("error").is_none(), "{v}");
        results.push(v["result"].clone());
    }
    results
}

#[tokio::test]
async fn a_finalized_block_reaches_the_upstream_once_and_latest_every_time() {
    let r = rig("").await;
    r.mine(20).await;
    let finalized = r.finalized_caught_up().await;
    assert_eq!(finalized, 18, "anvil's head minus two slots");
    let block = json!(["0x5", false]);
    let answers = ask(&r.url, "eth_getBlockByNumber", block.clone(), 100).await;
    let direct = r.direct("eth_getBlockByNumber", block).await["result"].clone();
    assert!(
        answers.iter().all(|a| *a == direct),
        "the node's own answer"
    );
    assert_eq!(r.path.calls("eth_getBlockByNumber"), 1);
    // Another spelling of the same question is the same entry.
    ask(
        &r.url,
        "eth_getBalance",
        json!([DEV.to_uppercase().replace("0X", "0x"), "0x5"]),
        1,
    )
    .await;
    ask(&r.url, "eth_getBalance", json!([DEV, "0x5"]), 3).await;
    assert_eq!(
        r.path.calls("eth_getBalance"),
        1,
        "hex case does not matter"
    );
    // The newest state: asked every time.
    ask(&r.url, "eth_getBalance", json!([DEV, "latest"]), 3).await;
    assert_eq!(r.path.calls("eth_getBalance"), 4);
    // A block beyond the head: asked every time (`null`, perhaps not yet).
    ask(&r.url, "eth_getBlockByNumber", json!(["0x15", false]), 2).await;
    assert_eq!(r.path.calls("eth_getBlockByNumber"), 3);
    // The chain id is a constant.
    ask(&r.url, "eth_chainId", json!([]), 5).await;
    assert_eq!(r.path.calls("eth_chainId"), 1);
    let hits = r
        .metric(r#"manifold_cache_requests_total{chain="eth",method="eth_getBlockByNumber",result="hit"}"#)
        .await;
    assert_eq!(hits, 99.0);
    let bypass = r
        .metric(
            r#"manifold_cache_requests_total{chain="eth",method="eth_getBalance",result="bypass"}"#,
        )
        .await;
    assert_eq!(bypass, 3.0);
    assert!(r.metric(r#"manifold_cache_bytes{chain="eth"}"#).await > 0.0);
    assert_eq!(
        r.metric(r#"manifold_chain_finalized_block{chain="eth"}"#)
            .await,
        18.0
    );
}

#[tokio::test]
async fn a_receipt_is_kept_only_once_its_block_is_final() {
    let r = rig("").await;
    let c = HttpClient::new();
    let hash = c
        .call(
            &r.url,
            "eth_sendTransaction",
            json!([{"from": DEV, "to": OTHER, "value": "0x1"}]),
        )
        .await["result"]
        .as_str()
        .unwrap()
        .to_string();
    // Mined at once (automine), not yet final.
    ask(&r.url, "eth_getTransactionReceipt", json!([hash]), 2).await;
    assert_eq!(r.path.calls("eth_getTransactionReceipt"), 2);
    r.mine(3).await;
    r.finalized_caught_up().await;
    let answers = ask(&r.url, "eth_getTransactionReceipt", json!([hash]), 3).await;
    assert_eq!(
        r.path.calls("eth_getTransactionReceipt"),
        3,
        "kept once final"
    );
    assert_eq!(answers[0]["transactionHash"], hash);
    // A transaction nobody has: `null`, never kept.
    let unknown = format!("0x{}", "11".repeat(32));
    let nulls = ask(&r.url, "eth_getTransactionByHash", json!([unknown]), 2).await;
    assert!(nulls.iter().all(Value::is_null));
    assert_eq!(r.path.calls("eth_getTransactionByHash"), 2);
}

#[tokio::test]
async fn a_reorg_never_serves_an_orphaned_block() {
    let r = rig("").await;
    r.mine(10).await;
    r.finalized_caught_up().await;
    // Block 10, the head, above the finalized block 8: kept under its hash once Manifold
    // follows it (its first answers may come before that).
    let head = json!(["0xa", false]);
    let mut before = Value::Null;
    for _ in 0..100 {
        let calls = r.path.calls("eth_getBlockByNumber");
        before = ask(&r.url, "eth_getBlockByNumber", head.clone(), 1).await[0].clone();
        if r.path.calls("eth_getBlockByNumber") == calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = r.path.calls("eth_getBlockByNumber");
    ask(&r.url, "eth_getBlockByNumber", head.clone(), 3).await;
    assert_eq!(r.path.calls("eth_getBlockByNumber"), calls, "kept");
    let reorgs = r#"manifold_chain_reorgs_total{chain="eth"}"#;
    assert_eq!(r.metric(reorgs).await, 0.0);
    r.direct("anvil_reorg", json!([1, []])).await;
    let direct = r.direct("eth_getBlockByNumber", head.clone()).await["result"].clone();
    assert_ne!(
        before["hash"], direct["hash"],
        "the reorg changed the block"
    );
    // Seen within a health interval: from then on, the new block, never the orphan.
    for _ in 0..200 {
        if r.metric(reorgs).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(r.metric(reorgs).await, 1.0);
    let after = ask(&r.url, "eth_getBlockByNumber", head.clone(), 3).await;
    assert!(
        after.iter().all(|a| a["hash"] == direct["hash"]),
        "the new block, not the orphan"
    );
    // By hash, the orphan is still the orphan: the node answers it, and so may the cache.
    let by_hash = ask(
        &r.url,
        "eth_getBlockByHash",
        json!([direct["hash"], false]),
        3,
    )
    .await;
    assert_eq!(by_hash[2]["hash"], direct["hash"]);
    assert_eq!(r.path.calls("eth_getBlockByHash"), 1);
}

/// Ask until one call is answered without reaching the upstream (the canonical window
/// follows the head within a probe interval); the last answer.
async fn until_kept(r: &Rig, method: &str, params: Value) -> Value {
    for _ in 0..100 {
        let calls = r.path.calls(method);
        let answer = ask(&r.url, method, params.clone(), 1).await[0].clone();
        if r.path.calls(method) == calls {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{method} {params} never kept");
}

#[tokio::test]
async fn latest_reads_are_kept_only_with_latest_ttl_and_only_for_their_head() {
    let r = rig("cache = { latest_ttl = \"30s\" }").await;
    r.mine(5).await;
    r.finalized_caught_up().await;
    let balance = json!([OTHER, "latest"]);
    let first = until_kept(&r, "eth_getBalance", balance.clone()).await;
    let calls = r.path.calls("eth_getBalance");
    ask(&r.url, "eth_getBalance", balance.clone(), 3).await;
    assert_eq!(r.path.calls("eth_getBalance"), calls, "kept for its head");
    // `pending` is never a block: asked every time.
    ask(&r.url, "eth_getBalance", json!([OTHER, "pending"]), 2).await;
    assert_eq!(r.path.calls("eth_getBalance"), calls + 2);
    // The head block itself, at `latest`: the very block anvil has there.
    let head = until_kept(&r, "eth_getBlockByNumber", json!(["latest", false])).await;
    let direct = r
        .direct("eth_getBlockByNumber", json!(["latest", false]))
        .await;
    assert_eq!(head["hash"], direct["result"]["hash"]);
    // A transfer mines a new head: once Manifold follows it, `latest` is a new question,
    // answered by the new state.
    HttpClient::new()
        .call(
            &r.anvil.url,
            "eth_sendTransaction",
            json!([{"from": DEV, "to": OTHER, "value": "0x7"}]),
        )
        .await;
    wait_for_status(&r.proxy, "the new head", |s| {
        s["chains"][0]["head"].as_u64() == Some(6)
    })
    .await;
    let want = r.direct("eth_getBalance", balance.clone()).await["result"].clone();
    assert_ne!(want, first, "the transfer changed the balance");
    let mut got = Value::Null;
    for _ in 0..100 {
        got = ask(&r.url, "eth_getBalance", balance.clone(), 1).await[0].clone();
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, want, "the new head's balance");
}

#[tokio::test]
async fn fifty_identical_calls_at_once_make_one_upstream_call() {
    let r = rig("").await;
    r.mine(2).await;
    r.finalized_caught_up().await;
    // Slow answers: the fifty arrive while the first is in flight.
    r.path.set(Fault::Delay(Duration::from_millis(400))).await;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let url = r.url.clone();
            tokio::spawn(async move {
                let body = json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [OTHER, "latest"]});
                HttpClient::new().rpc(&url, &body.to_string()).await
            })
        })
        .collect();
    let want = r.direct("eth_getBalance", json!([OTHER, "latest"])).await["result"].clone();
    // One group in flight while the upstream is slow, none once it answered.
    let groups = r#"manifold_coalesce_groups{chain="eth"}"#;
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = r.metric(groups).await;
        if seen > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, 1.0, "one group for fifty identical calls");
    for (i, c) in calls.into_iter().enumerate() {
        let v = c.await.unwrap();
        assert_eq!(v["id"], i, "each its own id: {v}");
        assert_eq!(v["result"], want, "{v}");
    }
    assert!(
        r.path.calls("eth_getBalance") <= 2,
        "{} upstream calls for 50 identical ones",
        r.path.calls("eth_getBalance")
    );
    let coalesced = r.metric(r#"manifold_coalesced_total{chain="eth"}"#).await;
    assert!(coalesced >= 48.0, "{coalesced}");
    assert_eq!(r.metric(groups).await, 0.0);
}

#[tokio::test]
async fn with_the_cache_off_every_call_reaches_the_upstream() {
    let r = rig("cache = { enabled = false }").await;
    r.mine(20).await;
    ask(&r.url, "eth_getBlockByNumber", json!(["0x5", false]), 3).await;
    ask(&r.url, "eth_chainId", json!([]), 3).await;
    assert_eq!(r.path.calls("eth_getBlockByNumber"), 3);
    assert_eq!(r.path.calls("eth_chainId"), 3);
    let (_, status) = HttpClient::new().get(&admin_url(&r.proxy, "/status")).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["chains"][0]["finalized"], Value::Null, "not tracked");
}
