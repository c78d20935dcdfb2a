//! Filters over HTTP (`eth_newFilter`, `eth_newBlockFilter`, `eth_getFilterChanges`,
//! `eth_getFilterLogs`, `eth_uninstallFilter`), served by Manifold itself, against a real
//! anvil behind two fault paths: every poll may land on either upstream, or on one that
//! was cut, and still sees every block and log once, reorgs told.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::two_paths::TwoPaths;
use support::*;

async fn call(r: &TwoPaths, method: &str, params: Value) -> Value {
    HttpClient::new().call(&r.rpc_url(), method, params).await
}

/// Poll `id` until `n` changes have come (each poll's answer appended), or fail.
async fn changes(r: &TwoPaths, id: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        let v = call(r, "eth_getFilterChanges", json!([id])).await;
        got.extend(
            v["result"]
                .as_array()
                .unwrap_or_else(|| panic!("{v}"))
                .clone(),
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} changes: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), n, "no more than asked: {got:?}");
    got
}

#[tokio::test]
async fn a_block_filter_sees_every_block_once_across_an_upstream_cut() {
    // Twins: a poll sent on to a node would land, sooner or later, on the one that never
    // made the filter.
    let r = TwoPaths::twins("").await;
    r.followed().await;
    let id = call(&r, "eth_newBlockFilter", json!([])).await["result"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("0x") && id.len() == 34, "{id}");
    r.mine(3).await;
    let mut hashes = changes(&r, &id, 3).await;
    r.paths[0].cut().await;
    r.mine(3).await;
    hashes.extend(changes(&r, &id, 3).await);
    // Each the hash of the next block, in order.
    let head = call(&r, "eth_blockNumber", json!([])).await;
    let head = u64::from_str_radix(
        head["result"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    for (i, h) in hashes.iter().enumerate() {
        let n = head - 5 + i as u64;
        let block = r
            .direct("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))
            .await;
        assert_eq!(&block["result"]["hash"], h, "block {n}");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let v = call(&r, "eth_getFilterChanges", json!([id])).await;
    assert_eq!(v["result"], json!([]), "nothing twice");
    assert_eq!(
        metric(&r.proxy, "manifold_filters{chain=\"eth\"}").await,
        1.0
    );
    assert_eq!(
        call(&r, "eth_uninstallFilter", json!([id])).await["result"],
        true
    );
    // Unknown now: the node's own answer to an id it never made.
    let v = call(&r, "eth_getFilterChanges", json!([id])).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("filter not found"),
        "{v}"
    );
    assert_eq!(
        call(&r, "eth_uninstallFilter", json!([id])).await["result"],
        false
    );
}

#[tokio::test]
async fn a_logs_filter_sees_every_log_once_and_reorgs_as_removed() {
    let r = TwoPaths::start("").await;
    let logger = r.deploy_logger().await;
    r.followed().await;
    let id = call(
        &r,
        "eth_newFilter",
        json!([{"address": logger, "fromBlock": "0x1"}]),
    )
    .await["result"]
        .as_str()
        .unwrap()
        .to_string();
    let other = call(
        &r,
        "eth_newFilter",
        json!([{"address": format!("0x{}", "22".repeat(20))}]),
    )
    .await["result"]
        .as_str()
        .unwrap()
        .to_string();
    let mut sent = Vec::new();
    for i in 0..4 {
        if i == 2 {
            r.paths[0].cut().await;
        }
        sent.push(r.emit(&logger).await["transactionHash"].clone());
    }
    let got = changes(&r, &id, 4).await;
    let got_hashes: Vec<&Value> = got.iter().map(|l| &l["transactionHash"]).collect();
    assert_eq!(
        got_hashes,
        sent.iter().collect::<Vec<_>>(),
        "every log, in order, once"
    );
    assert!(got.iter().all(|l| l["removed"] == false));
    // eth_getFilterLogs asks the node for the filter's logs (from block 1 to the head):
    // the same four.
    let all = call(&r, "eth_getFilterLogs", json!([id])).await;
    let all: Vec<&Value> = all["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["transactionHash"])
        .collect();
    assert_eq!(all, sent.iter().collect::<Vec<_>>());
    // The last log's block replaced: it comes back as removed.
    r.paths[0].restore();
    r.direct("anvil_reorg", json!([1, []])).await;
    let removed = changes(&r, &id, 1).await;
    assert_eq!(removed[0]["removed"], true, "{removed:?}");
    assert_eq!(removed[0]["transactionHash"], sent[3]);
    assert_eq!(
        call(&r, "eth_getFilterChanges", json!([other])).await["result"],
        json!([])
    );
    // A filter object Manifold cannot use: -32602.
    let v = call(&r, "eth_newFilter", json!([{"address": "0x12"}])).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
}

#[tokio::test]
async fn filters_are_bounded_and_expire() {
    let r = TwoPaths::start("").await;
    // A chain with room for two filters that expire after a second: not through TwoPaths's
    // default policy, so a second proxy in front of the same paths.
    let urls: Vec<String> = r.paths.iter().map(|p| p.url()).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let proxy = start_proxy(&chain_config(
        &urls,
        "[chains.policy.filters]\nmax = 2\nexpire_after = \"1s\"",
    ))
    .await;
    let url = rpc_url(&proxy, "/eth");
    let c = HttpClient::new();
    let a = c.call(&url, "eth_newBlockFilter", json!([])).await;
    let b = c.call(&url, "eth_newBlockFilter", json!([])).await;
    let full = c.call(&url, "eth_newBlockFilter", json!([])).await;
    assert_eq!(full["error"]["code"], -32005, "{full}");
    assert_eq!(full["error"]["data"]["reason"], "max_filters");
    // Keep `a` polled; `b` expires.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let v = c
            .call(&url, "eth_getFilterChanges", json!([a["result"]]))
            .await;
        assert!(v["result"].is_array(), "{v}");
    }
    let v = c
        .call(&url, "eth_getFilterChanges", json!([b["result"]]))
        .await;
    assert!(v.get("error").is_some(), "expired: {v}");
    assert!(c.call(&url, "eth_newBlockFilter", json!([])).await["result"].is_string());
}
