//! The cache's shared tier against a real Redis server: two replicas share final answers
//! through the one `.ci/run` started; a killed, lying or silent Redis (each test's own
//! `redis-server` on a free loopback port, killed by it) is a miss, never a client's error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fault_path::FaultPath;
use support::redis::RedisServer;
use support::*;

const FAST_PROBES: &str = "interval = \"700ms\"\ntimeout = \"700ms\"\nrise = 1\nfall = 2";

/// A Manifold in front of `path`, sharing answers through the Redis at `redis_url`.
async fn replica(path: &FaultPath, redis_url: &str) -> manifold::server::Running {
    replica_with_prefix(path, redis_url, "manifold").await
}

async fn replica_with_prefix(
    path: &FaultPath,
    redis_url: &str,
    prefix: &str,
) -> manifold::server::Running {
    let chain = chain_config_with_health(&[&path.url()], "", FAST_PROBES);
    start_proxy(&format!(
        "[server.redis]\nurl = \"{redis_url}\"\nprefix = \"{prefix}\"\n{chain}"
    ))
    .await
}

/// Poll `/metrics` until `series` is at least `want` (every 20 ms, at most 10 s).
async fn metric_reaches(proxy: &manifold::server::Running, series: &str, want: f64) {
    for _ in 0..500 {
        if metric(proxy, series).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series} never reached {want}");
}

const SET_OK: &str = r#"manifold_redis_requests_total{op="set",result="ok"}"#;
const GET_HIT: &str = r#"manifold_redis_requests_total{op="get",result="hit"}"#;

/// Mine 20 blocks (the first time), then wait until each proxy knows anvil's finalized
/// block (two under its head).
async fn mined_and_final(anvil: &Anvil, proxies: &[&manifold::server::Running]) {
    let c = HttpClient::new();
    let head = |v: Value| u64::try_from(hex_u128(&v["result"])).unwrap();
    if head(c.call(&anvil.url, "eth_blockNumber", json!([])).await) == 0 {
        c.call(&anvil.url, "anvil_mine", json!(["0x14"])).await;
    }
    let finalized = head(c.call(&anvil.url, "eth_blockNumber", json!([])).await) - 2;
    for p in proxies {
        wait_for_status(p, "the finalized block known", |s| {
            s["chains"][0]["finalized"].as_u64() == Some(finalized)
        })
        .await;
    }
}

async fn block(url: &str, n: u64) -> Value {
    let v = HttpClient::new()
        .call(
            url,
            "eth_getBlockByNumber",
            json!([format!("{n:#x}"), false]),
        )
        .await;
    assert!(v.get("error").is_none(), "{v}");
    v["result"].clone()
}

#[tokio::test]
async fn two_replicas_share_final_answers() {
    let redis = RedisServer::shared().await;
    // This run's own keys, in a server other runs may share.
    let prefix = format!(
        "test{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let pattern = format!("{prefix}:*");
    let anvil = Anvil::start_with(&["--slots-in-an-epoch", "1"]).await;
    let (path_a, path_b) = (
        FaultPath::start(&anvil.url).await,
        FaultPath::start(&anvil.url).await,
    );
    let (a, b) = (
        replica_with_prefix(&path_a, &redis.url, &prefix).await,
        replica_with_prefix(&path_b, &redis.url, &prefix).await,
    );
    mined_and_final(&anvil, &[&a, &b]).await;
    let from_a = block(&rpc_url(&a, "/eth"), 5).await;
    assert_eq!(path_a.calls("eth_getBlockByNumber"), 1);
    metric_reaches(&a, SET_OK, 1.0).await;
    let keys = redis.command(&["KEYS", &pattern]).await;
    assert_eq!(keys.lines().count(), 1, "{keys}");
    // The other replica never asks its upstream: Redis has it.
    let from_b = block(&rpc_url(&b, "/eth"), 5).await;
    assert_eq!(from_b, from_a);
    assert_eq!(path_b.calls("eth_getBlockByNumber"), 0);
    assert_eq!(metric(&b, GET_HIT).await, 1.0);
    // Then from its own memory, without Redis.
    block(&rpc_url(&b, "/eth"), 5).await;
    assert_eq!(metric(&b, GET_HIT).await, 1.0);
    assert_eq!(
        metric(
            &b,
            r#"manifold_cache_requests_total{chain="eth",method="eth_getBlockByNumber",result="hit"}"#
        )
        .await,
        2.0
    );
    // A block above the finalized one is not shared: each replica asks its own upstream.
    block(&rpc_url(&a, "/eth"), 20).await;
    block(&rpc_url(&b, "/eth"), 20).await;
    assert_eq!(path_b.calls("eth_getBlockByNumber"), 1);
    let keys = redis.command(&["KEYS", &pattern]).await;
    assert_eq!(keys.lines().count(), 1, "{keys}");
    redis.command(&["DEL", &keys]).await;
}

#[tokio::test]
async fn a_killed_redis_is_a_miss_until_it_comes_back() {
    let mut redis = RedisServer::start().await;
    let anvil = Anvil::start_with(&["--slots-in-an-epoch", "1"]).await;
    let path = FaultPath::start(&anvil.url).await;
    let proxy = replica(&path, &redis.url).await;
    let url = rpc_url(&proxy, "/eth");
    mined_and_final(&anvil, &[&proxy]).await;
    block(&url, 1).await;
    metric_reaches(&proxy, SET_OK, 1.0).await;
    assert_eq!(metric(&proxy, "manifold_redis_up").await, 1.0);
    redis.kill().await;
    // Every call answered, by the upstream, as anvil answers it.
    for n in 2..=12 {
        let got = block(&url, n).await;
        let want = block(&anvil.url, n).await;
        assert_eq!(got, want);
    }
    assert_eq!(path.calls("eth_getBlockByNumber"), 12);
    assert_eq!(metric(&proxy, "manifold_redis_up").await, 0.0);
    let failed = metric(
        &proxy,
        r#"manifold_redis_requests_total{op="get",result="error"}"#,
    )
    .await
        + metric(
            &proxy,
            r#"manifold_redis_requests_total{op="set",result="error"}"#,
        )
        .await;
    assert!(failed >= 1.0, "{failed}");
    // Resting after the failure: not asked again at once.
    assert!(
        metric(
            &proxy,
            r#"manifold_redis_requests_total{op="get",result="skipped"}"#
        )
        .await
            >= 1.0
    );
    // Back on the same port (empty): used again once its rest is over.
    let _redis = RedisServer::start_on(redis.port).await;
    // New questions each time (balances of other accounts at a final block): answers in
    // memory would not ask Redis.
    for i in 0..200 {
        let v = HttpClient::new()
            .call(
                &url,
                "eth_getBalance",
                json!([format!("0x{i:040x}"), "0x5"]),
            )
            .await;
        assert_eq!(v["result"], "0x0", "{v}");
        if metric(&proxy, "manifold_redis_up").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&proxy, "manifold_redis_up").await, 1.0);
}

#[tokio::test]
async fn a_lying_or_silent_redis_is_a_miss() {
    let redis = RedisServer::start().await;
    let anvil = Anvil::start_with(&["--slots-in-an-epoch", "1"]).await;
    let path = FaultPath::start(&anvil.url).await;
    let first = replica(&path, &redis.url).await;
    mined_and_final(&anvil, &[&first]).await;
    let want = block(&rpc_url(&first, "/eth"), 7).await;
    metric_reaches(&first, SET_OK, 1.0).await;
    // Something else overwrites the entry: a fresh replica does not take it.
    let key = redis.command(&["KEYS", "manifold:*"]).await;
    assert_eq!(redis.command(&["SET", &key, "garbage"]).await, "OK");
    let second = replica(&path, &redis.url).await;
    mined_and_final(&anvil, &[&second]).await;
    assert_eq!(block(&rpc_url(&second, "/eth"), 7).await, want);
    assert_eq!(path.calls("eth_getBlockByNumber"), 2);
    assert_eq!(
        metric(
            &second,
            r#"manifold_redis_requests_total{op="get",result="invalid"}"#
        )
        .await,
        1.0
    );
    // A "Redis" that takes connections and never answers: each read gives up after its
    // 50 ms, and the call goes on.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("redis://{}", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let third = replica(&path, &silent_url).await;
    mined_and_final(&anvil, &[&third]).await;
    assert_eq!(block(&rpc_url(&third, "/eth"), 7).await, want);
    assert_eq!(
        metric(
            &third,
            r#"manifold_redis_requests_total{op="get",result="timeout"}"#
        )
        .await,
        1.0
    );
    assert_eq!(metric(&third, "manifold_redis_up").await, 0.0);
}
