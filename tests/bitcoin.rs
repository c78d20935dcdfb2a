//! The bitcoin family against real regtest nodes (`support::bitcoind`): probes and
//! identity, calls through Manifold with node errors passed on as answers (HTTP 500 and 404
//! from the node are not failures), lag-aware routing, failover when a node dies, and
//! `sendrawtransaction` sent to every node with the txid computed locally and a resend
//! after the node has the transaction still a success.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::bitcoind::{Bitcoind, REGTEST_GENESIS};
use support::*;

const FAST_PROBES: &str = "interval = \"300ms\"\ntimeout = \"300ms\"\nrise = 1\nfall = 1";

fn chain(nodes: &[&Bitcoind], genesis: &str) -> String {
    let mut s =
        format!("[[chains]]\nname = \"btc\"\nfamily = \"bitcoin\"\ngenesis_hash = \"{genesis}\"\n");
    for (i, n) in nodes.iter().enumerate() {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"n{i}\"\nurl = \"{}\"\nfailure_domain = \"d{i}\"\n",
            n.url()
        ));
    }
    s.push_str(&format!("[chains.policy.health]\n{FAST_PROBES}\n"));
    s
}

async fn call(proxy: &manifold::server::Running, method: &str, params: Value) -> Value {
    HttpClient::new()
        .call(&rpc_url(proxy, "/btc"), method, params)
        .await
}

fn upstream<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["chains"][0]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()
}

/// Two connected nodes at the same height.
async fn pair() -> (Bitcoind, Bitcoind) {
    let (a, b) = tokio::join!(Bitcoind::start(), Bitcoind::start());
    a.connect(&b).await;
    a.mine(101).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while b.height().await < 101 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes did not sync"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (a, b)
}

#[tokio::test]
async fn calls_go_through_with_node_errors_as_answers_and_a_dead_node_failed_over() {
    let (a, b) = pair().await;
    let proxy = start_proxy(&chain(&[&a, &b], REGTEST_GENESIS)).await;
    let s = wait_for_status(&proxy, "both healthy at 101", |s| {
        s["chains"][0]["head"] == 101
            && ["n0", "n1"]
                .iter()
                .all(|n| upstream(s, n)["status"] == "healthy")
    })
    .await;
    assert_eq!(s["chains"][0]["family"], "bitcoin");
    assert_eq!(s["chains"][0]["genesis_hash"], REGTEST_GENESIS);
    // The URL's credentials are Basic auth, never shown.
    assert!(!s.to_string().contains("u:p@"), "{s}");

    assert_eq!(
        call(&proxy, "getblockcount", json!([])).await["result"],
        101
    );
    let hash = a.result("getblockhash", json!([101])).await;
    assert_eq!(
        call(&proxy, "getblockhash", json!([101])).await["result"],
        hash
    );
    // The node's own errors (its HTTP 500 and 404) reach the client as answers.
    let unknown = call(&proxy, "nosuchmethod", json!([])).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let missing = call(&proxy, "getrawtransaction", json!(["00".repeat(32)])).await;
    assert_eq!(missing["error"]["code"], -5, "{missing}");
    let s = wait_for_status(&proxy, "", |_| true).await;
    for n in ["n0", "n1"] {
        let u = upstream(&s, n);
        assert_eq!(u["breaker"]["state"], "closed", "{u}");
        assert_eq!(u["status"], "healthy", "{u}");
    }
    assert_eq!(
        metric(
            &proxy,
            r#"manifold_upstream_requests_total{chain="btc",upstream="n0",outcome="http_error"}"#
        )
        .await
            + metric(
                &proxy,
                r#"manifold_upstream_requests_total{chain="btc",upstream="n1",outcome="http_error"}"#
            )
            .await,
        0.0,
        "no answer was taken for a failing node"
    );

    // A node's own wallet is not load-balanced: refused unsent.
    let wallet = call(&proxy, "getnewaddress", json!([])).await;
    assert_eq!(wallet["error"]["code"], -32601, "{wallet}");
    assert_eq!(
        wallet["error"]["data"]["reason"], "node_local_method",
        "{wallet}"
    );

    // One node dies: every call is still answered, by the other.
    drop(a);
    for _ in 0..10 {
        assert_eq!(
            call(&proxy, "getblockcount", json!([])).await["result"],
            101
        );
    }
    wait_for_status(&proxy, "n0 unhealthy", |s| {
        upstream(s, "n0")["status"] == "unhealthy"
    })
    .await;
}

#[tokio::test]
async fn a_node_behind_serves_no_head_call_and_another_chain_is_never_used() {
    let (a, b) = pair().await;
    // Not connected to the others: it stays at block 0.
    let behind = Bitcoind::start().await;
    let proxy = start_proxy(&chain(&[&a, &b, &behind], REGTEST_GENESIS)).await;
    wait_for_status(&proxy, "all three probed", |s| {
        s["chains"][0]["head"] == 101 && upstream(s, "n2")["head"] == 0
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            call(&proxy, "getblockcount", json!([])).await["result"],
            101
        );
    }
    // A block only the others have is asked of them.
    assert!(call(&proxy, "getblockhash", json!([100])).await["result"].is_string());

    // A chain whose genesis block is another: every node is the wrong chain.
    let mainnet = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
    let wrong = start_proxy(&chain(&[&a], mainnet)).await;
    let s = wait_for_status(&wrong, "wrong chain", |s| {
        upstream(s, "n0")["status"] == "wrong_chain"
    })
    .await;
    assert!(
        upstream(&s, "n0")["reason"]
            .to_string()
            .contains(REGTEST_GENESIS)
            || upstream(&s, "n0")["last_probe_failure"]
                .to_string()
                .contains(REGTEST_GENESIS),
        "{s}"
    );
}

#[tokio::test]
async fn a_raw_transaction_reaches_every_node_and_a_resend_is_still_a_success() {
    let (a, b) = pair().await;
    let proxy = start_proxy(&chain(&[&a, &b], REGTEST_GENESIS)).await;
    wait_for_status(&proxy, "both healthy", |s| {
        ["n0", "n1"]
            .iter()
            .all(|n| upstream(s, n)["status"] == "healthy")
    })
    .await;
    let raw = a.signed_payment(1.5).await;
    let sent = call(&proxy, "sendrawtransaction", json!([raw])).await;
    let txid = sent["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{sent}"))
        .to_string();
    // The txid Manifold computed is the node's, and both nodes have the transaction.
    let decoded = a.result("decoderawtransaction", json!([raw])).await;
    assert_eq!(decoded["txid"], txid.as_str());
    for node in [&a, &b] {
        let pool = node.result("getrawmempool", json!([])).await;
        assert!(
            pool.as_array().unwrap().iter().any(|t| t == txid.as_str()),
            "{pool}"
        );
    }
    // Sent again while in the pools (the node says "already in the mempool"): success.
    let again = call(&proxy, "sendrawtransaction", json!([raw])).await;
    assert_eq!(again["result"], txid.as_str(), "{again}");
    // And once mined ("txn-already-known"): success.
    a.mine(1).await;
    let mined = call(&proxy, "sendrawtransaction", json!([raw])).await;
    assert_eq!(mined["result"], txid.as_str(), "{mined}");
    // A transaction that cannot be read is refused before any node sees it.
    let bad = call(&proxy, "sendrawtransaction", json!(["00ff"])).await;
    assert!(bad["error"].is_object(), "{bad}");
}

/// bitcoin-cli (the node's own client, from the same wheel) through Manifold: it posts JSON-RPC
/// 1.0 to `/` with its own credentials, and reads 2.0's answers.
#[tokio::test]
async fn bitcoin_cli_talks_to_manifold_as_to_a_node() {
    let (a, b) = pair().await;
    let proxy = start_proxy(&chain(&[&a, &b], REGTEST_GENESIS)).await;
    wait_for_status(&proxy, "healthy", |s| s["chains"][0]["head"] == 101).await;
    let cli = support::bitcoind::bitcoind_bin().with_file_name("bitcoin-cli");
    // Async: the proxy runs on this test's runtime, which a blocking wait would stall.
    let port = proxy.rpc_addr.port();
    let run = |args: &'static [&'static str]| {
        let cli = cli.clone();
        async move {
            let out = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                tokio::process::Command::new(&cli)
                    .args([
                        "-regtest",
                        "-rpcconnect=127.0.0.1",
                        "-rpcuser=any",
                        "-rpcpassword=any",
                    ])
                    .arg(format!("-rpcport={port}"))
                    .args(args)
                    .output(),
            )
            .await
            .expect("bitcoin-cli did not finish")
            .expect("run bitcoin-cli");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            )
        }
    };
    let (ok, out, err) = run(&["getblockcount"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "101");
    let (ok, out, _) = run(&["getblockhash", "0"]).await;
    assert!(ok);
    assert_eq!(out, REGTEST_GENESIS);
    // A node's error reaches bitcoin-cli as the node's own would.
    let (ok, _, err) = run(&[
        "getrawtransaction",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains("No such mempool or blockchain transaction"),
        "{err}"
    );
}

/// An upstream that names wallet methods in `methods.allow` is the chain's wallet node: those
/// calls go to it, and only there; the other node serves the rest.
#[tokio::test]
async fn wallet_calls_go_to_the_wallet_node_named_for_them() {
    let (a, b) = pair().await;
    let toml = chain(&[&a, &b], REGTEST_GENESIS).replacen(
        "failure_domain = \"d0\"\n",
        "failure_domain = \"d0\"\nmethods = { allow = [\"getnewaddress\", \"getaddressinfo\"] }\n",
        1,
    );
    let proxy = start_proxy(&toml).await;
    wait_for_status(&proxy, "healthy", |s| s["chains"][0]["head"] == 101).await;
    for _ in 0..5 {
        let address = call(&proxy, "getnewaddress", json!([])).await;
        let address = address["result"]
            .as_str()
            .unwrap_or_else(|| panic!("{address}"));
        // Made by node a's wallet: a knows it as its own.
        let info = a.call("validateaddress", json!([address])).await;
        assert_eq!(info["result"]["ismine"], true, "{info}");
    }
    assert_eq!(
        call(&proxy, "getblockcount", json!([])).await["result"],
        101
    );
}

/// A node's own credentials as its operator writes them: `rpcuser`/`rpcpassword`, or its
/// cookie file, read again when the node restarts with a new cookie.
#[tokio::test]
async fn rpc_credentials_and_a_cookie_that_changes_when_the_node_restarts() {
    let (keyed, mut cookied) = tokio::join!(Bitcoind::start(), Bitcoind::start_with_cookie());
    let toml = format!(
        "[[chains]]\nname = \"btc\"\nfamily = \"bitcoin\"\ngenesis_hash = \"{REGTEST_GENESIS}\"\n\
         [[chains.upstreams]]\nname = \"n0\"\nurl = \"{}\"\nrpcuser = \"u\"\nrpcpassword = \"p\"\n\
         methods = {{ allow = [\"getblockcount\"] }}\n\
         [[chains.upstreams]]\nname = \"n1\"\nurl = \"{}\"\nrpccookiefile = \"{}\"\n\
         methods = {{ allow = [\"getbestblockhash\"] }}\n\
         [chains.policy.health]\n{FAST_PROBES}\n",
        keyed.bare_url(),
        cookied.bare_url(),
        cookied.cookie_file().display()
    );
    let proxy = start_proxy(&toml).await;
    wait_for_status(&proxy, "both healthy", |s| {
        ["n0", "n1"]
            .iter()
            .all(|n| upstream(s, n)["status"] == "healthy")
    })
    .await;
    // Each call goes to the one node that allows it: both kinds of credentials work.
    assert_eq!(call(&proxy, "getblockcount", json!([])).await["result"], 0);
    assert_eq!(
        call(&proxy, "getbestblockhash", json!([])).await["result"],
        REGTEST_GENESIS
    );

    // The node restarts with a new cookie: reached again after a probe, Manifold untouched.
    let before = std::fs::read_to_string(cookied.cookie_file()).unwrap();
    cookied.restart().await;
    assert_ne!(
        std::fs::read_to_string(cookied.cookie_file()).unwrap(),
        before
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let v = call(&proxy, "getbestblockhash", json!([])).await;
        if v["result"] == REGTEST_GENESIS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached again: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
