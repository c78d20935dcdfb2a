//! Health and routing: only healthy, in-sync, right-chain upstreams serve, best first.
//! Fake upstreams answer health probes as told (`FakeUpstream::probes`); requests are counted
//! apart from probes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const ADDR: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

/// Upstreams named after their tier letter, with explicit tiers and failure domains.
fn config(upstreams: &[(&str, &FakeUpstream, &str)], policy: &str, health: &str) -> String {
    let mut s = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (name, up, tier) in upstreams {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"{name}\"\nurl = \"{}\"\ntier = \"{tier}\"\nfailure_domain = \"{name}-domain\"\ntimeout = \"2s\"\n",
            up.url
        ));
    }
    s.push_str(&format!(
        "[chains.policy]\n{policy}\n[chains.policy.health]\n{health}\n"
    ));
    s
}

const SLOW_PROBES: &str = "interval = \"60s\"\ntimeout = \"2s\"";
/// Probes a few times a second; the timeout equals the interval, so that a loaded machine
/// does not fail probes by accident.
const FAST_PROBES: &str = "interval = \"200ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2";

async fn all_healthy(proxy: &manifold::server::Running) -> Value {
    wait_for_status(proxy, "every upstream healthy", |s| {
        s["chains"][0]["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["status"] == "healthy")
    })
    .await
}

async fn all_probed(proxy: &manifold::server::Running) -> Value {
    wait_for_status(proxy, "every upstream probed", |s| {
        s["chains"][0]["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["status"] != "unknown")
    })
    .await
}

#[tokio::test]
async fn an_upstream_on_the_wrong_chain_is_never_used() {
    let wrong = FakeUpstream::ok("\"wrong\"").await;
    wrong.probes.chain_id.store(5, Ordering::SeqCst);
    let right = FakeUpstream::ok("\"right\"").await;
    let proxy = start_proxy(&config(
        &[("a", &wrong, "primary"), ("b", &right, "secondary")],
        "",
        SLOW_PROBES,
    ))
    .await;
    // No waiting for the probes: the first requests must not reach the wrong chain either.
    let c = HttpClient::new();
    for _ in 0..20 {
        let v = c
            .call(
                &rpc_url(&proxy, "/eth"),
                "eth_getBalance",
                json!([ADDR, "latest"]),
            )
            .await;
        assert_eq!(v["result"], "right", "{v}");
    }
    assert_eq!(wrong.hits(), 0);
    let status = all_probed(&proxy).await;
    let a = upstream_status(&status, "a");
    assert_eq!(a["status"], "wrong_chain", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("reports chain id 5, expected 31337"),
        "{a}"
    );
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(r#"manifold_upstream_healthy{chain="eth",upstream="a"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"manifold_upstream_healthy{chain="eth",upstream="b"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_lagging_upstream_serves_old_blocks_but_not_the_head() {
    let lagging = FakeUpstream::ok("\"lagging\"").await;
    lagging.probes.set_head(990);
    let fresh = FakeUpstream::ok("\"fresh\"").await;
    fresh.probes.set_head(1000);
    // The lagging one is primary, yet in-sync upstreams come first for every call.
    let proxy = start_proxy(&config(
        &[("lag", &lagging, "primary"), ("fresh", &fresh, "secondary")],
        "max_lag_blocks = 3",
        FAST_PROBES,
    ))
    .await;
    let status = all_healthy(&proxy).await;
    assert_eq!(status["chains"][0]["head"], 1000);
    assert_eq!(upstream_status(&status, "lag")["lag"], 10);
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    let receipt = json!([format!("0x{}", "ab".repeat(32))]);
    for (method, params) in [
        ("eth_blockNumber", json!([])),
        ("eth_getBalance", json!([ADDR, "latest"])),
        ("eth_getTransactionCount", json!([ADDR, "pending"])),
        ("eth_getBalance", json!([ADDR])),
        ("eth_getBlockByNumber", json!(["0x3d0", false])),
        ("eth_getTransactionReceipt", receipt.clone()),
    ] {
        let v = c.call(&url, method, params.clone()).await;
        assert_eq!(v["result"], "fresh", "{method} {params}: {v}");
    }
    assert_eq!(lagging.hits(), 0);
    // The in-sync upstream goes down: the lagging one serves what it can, and nothing else.
    fresh.probes.failing.store(true, Ordering::SeqCst);
    wait_for_status(&proxy, "fresh unhealthy", |s| {
        upstream_status(s, "fresh")["status"] == "unhealthy"
    })
    .await;
    for (method, params) in [
        ("eth_getBlockByNumber", json!(["0x3d0", false])),
        ("eth_getBalance", json!([ADDR, "0x3de"])),
        ("eth_getTransactionReceipt", receipt),
    ] {
        let v = c.call(&url, method, params.clone()).await;
        assert_eq!(v["result"], "lagging", "{method} {params}: {v}");
    }
    for (method, params) in [
        ("eth_blockNumber", json!([])),
        ("eth_getBalance", json!([ADDR, "latest"])),
        ("eth_getBlockByNumber", json!(["0x3e3", false])),
    ] {
        let v = c.call(&url, method, params.clone()).await;
        assert_eq!(v["error"]["code"], -32091, "{method} {params}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_lag_blocks (3)"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_stuck_node_does_not_set_the_head() {
    // Two upstreams: a home node stuck far behind, and a provider that moves on.
    let stuck = FakeUpstream::ok("\"stuck\"").await;
    stuck.probes.set_head(100);
    let provider = FakeUpstream::ok("\"provider\"").await;
    provider.probes.set_head(5_000);
    let proxy = start_proxy(&config(
        &[
            ("home", &stuck, "primary"),
            ("provider", &provider, "fallback"),
        ],
        "max_lag_blocks = 3",
        SLOW_PROBES,
    ))
    .await;
    let status = all_healthy(&proxy).await;
    assert_eq!(status["chains"][0]["head"], 5_000, "{status:#}");
    assert_eq!(upstream_status(&status, "home")["lag"], 4_900);
    let v = HttpClient::new()
        .call(
            &rpc_url(&proxy, "/eth"),
            "eth_getBalance",
            json!([ADDR, "latest"]),
        )
        .await;
    assert_eq!(v["result"], "provider", "{v}");
    assert_eq!(stuck.hits(), 0);
}

#[tokio::test]
async fn a_block_beyond_every_head_is_null_without_asking() {
    let up = FakeUpstream::ok("\"a block\"").await;
    up.probes.set_head(1000);
    let proxy = start_proxy(&config(
        &[("a", &up, "primary")],
        "max_lag_blocks = 3",
        SLOW_PROBES,
    ))
    .await;
    all_probed(&proxy).await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    for method in ["eth_getBlockByNumber", "eth_getBlockReceipts"] {
        let params = if method == "eth_getBlockByNumber" {
            json!(["0xbb8", false])
        } else {
            json!(["0xbb8"])
        };
        let v = c.call(&url, method, params).await;
        assert_eq!(v["result"], Value::Null, "{v}");
    }
    assert_eq!(up.hits(), 0, "no upstream was asked");
    // Just past the last probed head: the block may exist by now, so one upstream is asked.
    let v = c
        .call(&url, "eth_getBlockByNumber", json!(["0x3f0", false]))
        .await;
    assert_eq!(v["result"], "a block");
    // Not a block lookup: the most advanced upstream answers, once.
    let v = c.call(&url, "eth_getBalance", json!([ADDR, "0xbb8"])).await;
    assert_eq!(v["result"], "a block");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn an_outlier_far_ahead_does_not_make_everyone_lag() {
    let a = FakeUpstream::ok("\"a\"").await;
    a.probes.set_head(1000);
    let b = FakeUpstream::ok("\"b\"").await;
    b.probes.set_head(1001);
    let outlier = FakeUpstream::ok("\"outlier\"").await;
    outlier.probes.set_head(999_999);
    let proxy = start_proxy(&config(
        &[
            ("a", &a, "primary"),
            ("b", &b, "primary"),
            ("outlier", &outlier, "fallback"),
        ],
        "max_lag_blocks = 3",
        SLOW_PROBES,
    ))
    .await;
    let status = all_probed(&proxy).await;
    assert_eq!(status["chains"][0]["head"], 1001, "{status:#}");
    assert_eq!(upstream_status(&status, "a")["lag"], 1);
    let c = HttpClient::new();
    for _ in 0..20 {
        let v = c
            .call(&rpc_url(&proxy, "/eth"), "eth_blockNumber", json!([]))
            .await;
        assert!(v["result"] == "a" || v["result"] == "b", "{v}");
    }
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(r#"manifold_chain_head_block{chain="eth"} 1001"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"manifold_upstream_lag_blocks{chain="eth",upstream="a"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"manifold_upstream_head_block{chain="eth",upstream="outlier"} 999999"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn tiers_in_order_and_load_spread_within_a_tier() {
    let p1 = FakeUpstream::ok("\"p1\"").await;
    let p2 = FakeUpstream::ok("\"p2\"").await;
    let fallback = FakeUpstream::ok("\"fallback\"").await;
    let proxy = start_proxy(&config(
        &[
            ("p1", &p1, "primary"),
            ("p2", &p2, "primary"),
            ("fb", &fallback, "fallback"),
        ],
        "",
        FAST_PROBES,
    ))
    .await;
    all_healthy(&proxy).await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    for _ in 0..200 {
        c.call(&url, "web3_clientVersion", json!([])).await;
    }
    assert_eq!(
        fallback.hits(),
        0,
        "fallback only when nothing better is eligible"
    );
    // Both serve. How evenly depends on their measured latency: on a busy machine one slow
    // early answer makes one look several times slower for a while (a 192 / 8 split was
    // seen in CI), and the odds follow.
    assert!(
        p1.hits() > 0 && p2.hits() > 0 && p1.hits() + p2.hits() == 200,
        "both primaries serve: {} / {}",
        p1.hits(),
        p2.hits()
    );
    // Both primaries fail their probes: after `fall` probes they are out, and the fallback serves.
    p1.probes.failing.store(true, Ordering::SeqCst);
    p2.probes.failing.store(true, Ordering::SeqCst);
    wait_for_status(&proxy, "primaries unhealthy", |s| {
        upstream_status(s, "p1")["status"] == "unhealthy"
            && upstream_status(s, "p2")["status"] == "unhealthy"
    })
    .await;
    let v = c.call(&url, "web3_clientVersion", json!([])).await;
    assert_eq!(v["result"], "fallback", "{v}");
    // They recover after `rise` good probes.
    p1.probes.failing.store(false, Ordering::SeqCst);
    wait_for_status(&proxy, "p1 healthy", |s| {
        upstream_status(s, "p1")["status"] == "healthy"
    })
    .await;
    let v = c.call(&url, "web3_clientVersion", json!([])).await;
    assert_eq!(v["result"], "p1", "{v}");
}

#[tokio::test]
async fn failed_probes_short_of_fall_are_a_blip() {
    let up = FakeUpstream::ok("1").await;
    let proxy = start_proxy(&config(
        &[("a", &up, "primary")],
        "",
        "interval = \"200ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 3",
    ))
    .await;
    all_healthy(&proxy).await;
    let rounds = || up.probes.rounds.load(Ordering::SeqCst);
    // Fail exactly two probes (fall = 3): healthy throughout.
    let start = rounds();
    up.probes.failing.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    while rounds() < start + 2 {
        let (_, body) = HttpClient::new().get(&admin_url(&proxy, "/status")).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        seen.push(
            upstream_status(&v, "a")["status"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    up.probes.failing.store(false, Ordering::SeqCst);
    let failed_at = rounds();
    let status = wait_for_status(&proxy, "two more probes", |_| rounds() >= failed_at + 2).await;
    assert!(seen.iter().all(|s| s == "healthy"), "{seen:?}");
    assert_eq!(upstream_status(&status, "a")["status"], "healthy");
    assert!(
        upstream_status(&status, "a")["last_probe_failure"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{status}"
    );
}

#[tokio::test]
async fn a_node_first_seen_down_has_its_chain_id_checked_before_serving() {
    let node = FakeUpstream::ok("\"wrong chain\"").await;
    node.probes.failing.store(true, Ordering::SeqCst);
    node.probes.chain_id.store(1, Ordering::SeqCst);
    let good = FakeUpstream::ok("\"right\"").await;
    let proxy = start_proxy(&config(
        &[("n", &node, "primary"), ("g", &good, "fallback")],
        "",
        FAST_PROBES,
    ))
    .await;
    wait_for_status(&proxy, "n unhealthy", |s| {
        upstream_status(s, "n")["status"] == "unhealthy"
    })
    .await;
    // It comes up, on the wrong chain: its first good probes must check the chain id.
    node.probes.failing.store(false, Ordering::SeqCst);
    let status = wait_for_status(&proxy, "n wrong chain", |s| {
        upstream_status(s, "n")["status"] == "wrong_chain"
    })
    .await;
    assert!(
        upstream_status(&status, "n")["reason"]
            .as_str()
            .unwrap()
            .contains("chain id 1"),
        "{status}"
    );
    let v = HttpClient::new()
        .call(&rpc_url(&proxy, "/eth"), "web3_clientVersion", json!([]))
        .await;
    assert_eq!(v["result"], "right");
    assert_eq!(node.hits(), 0);
}

#[tokio::test]
async fn a_syncing_upstream_is_not_used() {
    let syncing = FakeUpstream::ok("\"syncing\"").await;
    syncing.probes.syncing.store(true, Ordering::SeqCst);
    let ok = FakeUpstream::ok("\"ok\"").await;
    let proxy = start_proxy(&config(
        &[("s", &syncing, "primary"), ("o", &ok, "secondary")],
        "",
        SLOW_PROBES,
    ))
    .await;
    let status = all_probed(&proxy).await;
    assert_eq!(
        upstream_status(&status, "s")["status"],
        "syncing",
        "{status}"
    );
    let v = HttpClient::new()
        .call(&rpc_url(&proxy, "/eth"), "web3_clientVersion", json!([]))
        .await;
    assert_eq!(v["result"], "ok");
    assert_eq!(syncing.hits(), 0);
}

#[tokio::test]
async fn a_rate_limited_upstream_is_parked() {
    let limited = FakeUpstream::start(|_, _| Action::TooMany(30)).await;
    let ok = FakeUpstream::ok("\"ok\"").await;
    let proxy = start_proxy(&config(
        &[("l", &limited, "primary"), ("o", &ok, "secondary")],
        "",
        SLOW_PROBES,
    ))
    .await;
    let c = HttpClient::new();
    for _ in 0..10 {
        let v = c
            .call(&rpc_url(&proxy, "/eth"), "web3_clientVersion", json!([]))
            .await;
        assert_eq!(v["result"], "ok", "{v}");
    }
    assert_eq!(
        limited.hits(),
        1,
        "parked for its Retry-After after the first 429"
    );
    let (_, body) = c.get(&admin_url(&proxy, "/status")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert!(
        upstream_status(&status, "l")["parked_ms"].as_u64().unwrap() > 20_000,
        "{status}"
    );
}

#[tokio::test]
async fn retries_prefer_another_failure_domain() {
    let a1 = FakeUpstream::start(|_, _| Action::Status(502, String::new())).await;
    let a2 = FakeUpstream::ok("\"same-domain\"").await;
    let b = FakeUpstream::ok("\"other-domain\"").await;
    let cfg = format!(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n\
         [[chains.upstreams]]\nname = \"a1\"\nurl = \"{}\"\nfailure_domain = \"cloud-a\"\n\
         [[chains.upstreams]]\nname = \"a2\"\nurl = \"{}\"\nfailure_domain = \"cloud-a\"\ntier = \"secondary\"\n\
         [[chains.upstreams]]\nname = \"b\"\nurl = \"{}\"\nfailure_domain = \"cloud-b\"\ntier = \"secondary\"\n\
         [chains.policy.health]\n{SLOW_PROBES}\n",
        a1.url, a2.url, b.url
    );
    let proxy = start_proxy(&cfg).await;
    all_healthy(&proxy).await;
    let v = HttpClient::new()
        .call(&rpc_url(&proxy, "/eth"), "web3_clientVersion", json!([]))
        .await;
    assert_eq!(
        v["result"], "other-domain",
        "after cloud-a failed, cloud-b first: {v}"
    );
    assert_eq!(a2.hits(), 0);
}

#[tokio::test]
async fn readyz_waits_for_the_first_probes_and_reports_unhealthy_chains() {
    let up = FakeUpstream::ok("1").await;
    up.probes.failing.store(true, Ordering::SeqCst);
    let proxy = start_proxy(&config(&[("a", &up, "primary")], "", FAST_PROBES)).await;
    let c = HttpClient::new();
    let (status, body) = c.get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    wait_for_status(&proxy, "a unhealthy", |s| {
        upstream_status(s, "a")["status"] == "unhealthy"
    })
    .await;
    let (status, body) = c.get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("a: unhealthy") && body.contains("503"),
        "{body}"
    );
    up.probes.failing.store(false, Ordering::SeqCst);
    wait_for_status(&proxy, "a healthy", |s| {
        upstream_status(s, "a")["status"] == "healthy"
    })
    .await;
    assert_eq!(c.get(&admin_url(&proxy, "/readyz")).await.0, 200);
}

#[tokio::test]
async fn an_eth_chain_id_answer_from_another_chain_is_never_passed_on() {
    // u0's probes say the configured chain (31337), but calls reach another chain: a
    // provider re-pointed the endpoint between two probes.
    let u0 = FakeUpstream::ok("\"0x1\"").await;
    let u1 = FakeUpstream::ok("\"0x7a69\"").await;
    let proxy = start_proxy(&chain_config(
        &[&u0.url, &u1.url],
        "hedge = { delay = \"off\" }",
    ))
    .await;
    let c = HttpClient::new();
    let v = c
        .call(&rpc_url(&proxy, "/eth"), "eth_chainId", json!([]))
        .await;
    assert_eq!(v["result"], "0x7a69", "{v}");
    assert_eq!((u0.hits(), u1.hits()), (1, 1));
    // Out at once, not at its next probe (a minute away).
    let (_, body) = c.get(&admin_url(&proxy, "/status")).await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let u0_status = upstream_status(&status, "u0");
    assert_eq!(u0_status["status"], "wrong_chain", "{u0_status}");
    assert!(
        u0_status["reason"]
            .as_str()
            .unwrap()
            .contains("eth_chainId with 1, expected 31337"),
        "{u0_status}"
    );
    for _ in 0..5 {
        c.call(&rpc_url(&proxy, "/eth"), "eth_chainId", json!([]))
            .await;
    }
    assert_eq!(u0.hits(), 1, "no more calls to it");
}
