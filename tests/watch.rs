//! The transaction watch against scripted upstreams: a transaction some node took is sent
//! again when nobody knows it after `rebroadcast_after`, followed until it is final, given
//! up on when replaced or after `watch_for`, and resumed after a restart from the store.
//! Rounds are driven by the test (`Chain::watch_round`) and time by the watch's clock
//! (`Clock::advance`): no waiting, while the upstreams answer in real time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifold::chain::Chain;
use manifold::family::evm::tx::decode_signed;
use serde_json::Value;
use support::*;

const RAW: &str = RECORDED_LEGACY_TX;

/// What the scripted nodes of one chain know, shared by all of them.
#[derive(Default)]
struct Node {
    /// The block the transaction is mined in, once it is.
    mined_in: Mutex<Option<u64>>,
    /// The sender's mined transaction count (`latest`).
    mined_count: AtomicU64,
    sends: AtomicUsize,
}

impl Node {
    fn mine(&self, block: Option<u64>) {
        *self.mined_in.lock().unwrap() = block;
    }
}

fn hash() -> String {
    decode_signed(RAW).unwrap().hash
}

/// A node that takes the transaction into a pool that never mines it (its region died),
/// and answers receipts, lookups and counts from `node`.
async fn node(node: &Arc<Node>) -> FakeUpstream {
    let node = node.clone();
    let h = hash();
    FakeUpstream::start(move |req, _| match req["method"].as_str() {
        Some("eth_sendRawTransaction") => {
            node.sends.fetch_add(1, Ordering::SeqCst);
            Action::Result(format!("\"{h}\""))
        }
        Some("eth_getTransactionReceipt") => match *node.mined_in.lock().unwrap() {
            Some(b) => Action::Result(format!(
                r#"{{"transactionHash":"{h}","blockNumber":"0x{b:x}","blockHash":"0x{b:064x}","status":"0x1"}}"#
            )),
            None => Action::Result("null".into()),
        },
        Some("eth_getTransactionByHash") => Action::Result("null".into()),
        Some("eth_getTransactionCount") => Action::Result(format!(
            "\"0x{:x}\"",
            node.mined_count.load(Ordering::SeqCst)
        )),
        _ => Action::Error(r#"{"code":-32601,"message":"not scripted"}"#.into()),
    })
    .await
}

/// Two upstreams in two failure domains; heads are probed once (0x100), so that only the
/// test runs the watch's rounds.
fn config(urls: &[&str], store: &str) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntx_store = \"{store}\"\n[[chains]]\nname = \"eth\"\nchain_id = 31337\n"
    );
    for (i, u) in urls.iter().enumerate() {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"{u}\"\nfailure_domain = \"d{i}\"\ntimeout = \"2s\"\n"
        ));
    }
    s.push_str(
        "[chains.policy]\nrequest_timeout = \"5s\"\n\
         [chains.policy.broadcast]\nrebroadcast_after = \"30s\"\nwatch_for = \"1h\"\nfinality_depth = 3\n\
         [chains.policy.health]\ninterval = \"60s\"\ntimeout = \"2s\"\n",
    );
    s
}

fn chain(proxy: &manifold::server::Running) -> Arc<Chain> {
    proxy.snapshot.load().router.chain("eth").cloned().unwrap()
}

async fn send(proxy: &manifold::server::Running) -> Value {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["{RAW}"]}}"#
    );
    HttpClient::new().rpc(&rpc_url(proxy, "/eth"), &body).await
}

async fn view(proxy: &manifold::server::Running) -> Value {
    let (status, text) = HttpClient::new()
        .get(&admin_url(proxy, &format!("/tx/eth/{}", hash())))
        .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Advance the watch's clock, then run one round.
async fn round_after(proxy: &manifold::server::Running, by: Duration) {
    let chain = chain(proxy);
    chain.watch().unwrap().clock().advance(by);
    chain.watch_round().await;
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn sent_again_after_the_delay_to_every_upstream_that_does_not_know_it() {
    let chain_state = Arc::new(Node::default());
    let (a, b) = (node(&chain_state).await, node(&chain_state).await);
    let proxy = start_proxy(&config(&[&a.url, &b.url], ":memory:")).await;
    assert_eq!(send(&proxy).await["result"], hash());
    wait_until("both sends", || {
        chain_state.sends.load(Ordering::SeqCst) == 2
    })
    .await;
    let v = view(&proxy).await;
    assert_eq!(v["state"], "pending", "{v}");
    assert_eq!(v["sender"], "0x0c2c51a0990aee1d73c1228de158688341557508");

    // Before `rebroadcast_after`: watched, not sent.
    round_after(&proxy, 29 * SECOND).await;
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), 2);
    // After: each upstream is asked, and neither knows it: both get it again.
    round_after(&proxy, 2 * SECOND).await;
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), 4);
    let v = view(&proxy).await;
    assert_eq!(
        (v["rebroadcasts"].as_u64(), v["attempts"].as_u64()),
        (Some(1), Some(4)),
        "{v}"
    );
    // Backoff: the next one after twice the delay.
    round_after(&proxy, 31 * SECOND).await;
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), 4, "too soon");
    round_after(&proxy, 30 * SECOND).await;
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), 6);
    let (_, metrics) = HttpClient::new().get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(r#"manifold_rebroadcasts_total{chain="eth"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"manifold_tx_watch{chain="eth",state="pending"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn followed_until_final_and_sent_again_when_a_reorg_drops_it() {
    let chain_state = Arc::new(Node::default());
    let (a, b) = (node(&chain_state).await, node(&chain_state).await);
    let proxy = start_proxy(&config(&[&a.url, &b.url], ":memory:")).await;
    send(&proxy).await;
    wait_until("both sends", || {
        chain_state.sends.load(Ordering::SeqCst) == 2
    })
    .await;
    // Mined two blocks below the head (0x100): included, not final at depth 3.
    chain_state.mine(Some(0xfe));
    round_after(&proxy, SECOND).await;
    let v = view(&proxy).await;
    assert_eq!(
        (v["state"].as_str(), v["block"].as_u64()),
        (Some("included"), Some(0xfe)),
        "{v}"
    );
    // A reorg drops it. An included transaction is checked again after rebroadcast_after
    // (not every round: on a fast chain rounds come several a second)...
    chain_state.mine(None);
    round_after(&proxy, SECOND).await;
    assert_eq!(view(&proxy).await["state"], "included");
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), 2);
    // ...then it is pending again, and sent again at once.
    round_after(&proxy, 30 * SECOND).await;
    assert_eq!(view(&proxy).await["state"], "pending");
    assert_eq!(
        chain_state.sends.load(Ordering::SeqCst),
        4,
        "sent again after the reorg"
    );
    // Mined deep enough: final, and no longer checked.
    chain_state.mine(Some(0xf0));
    round_after(&proxy, SECOND).await;
    let v = view(&proxy).await;
    assert_eq!(
        (v["state"].as_str(), v["block"].as_u64()),
        (Some("final"), Some(0xf0)),
        "{v}"
    );
    let hits = a.hits() + b.hits();
    round_after(&proxy, 40 * SECOND).await;
    assert_eq!(
        a.hits() + b.hits(),
        hits,
        "a final transaction is not checked again"
    );
    let (_, status) = HttpClient::new().get(&admin_url(&proxy, "/status")).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["chains"][0]["tx_watch"]["final"], 1, "{status}");
}

#[tokio::test]
async fn replaced_when_its_nonce_is_taken_and_expired_after_watch_for() {
    let chain_state = Arc::new(Node::default());
    let a = node(&chain_state).await;
    let proxy = start_proxy(&config(&[&a.url], ":memory:")).await;
    send(&proxy).await;
    // Another transaction took nonce 0: seen once is not enough (a node a block ahead of the
    // one asked for the receipt looks the same), twice is.
    chain_state.mined_count.store(1, Ordering::SeqCst);
    round_after(&proxy, SECOND).await;
    assert_eq!(view(&proxy).await["state"], "pending");
    round_after(&proxy, SECOND).await;
    assert_eq!(view(&proxy).await["state"], "replaced");
    let sends = chain_state.sends.load(Ordering::SeqCst);
    round_after(&proxy, 120 * SECOND).await;
    assert_eq!(
        chain_state.sends.load(Ordering::SeqCst),
        sends,
        "a replaced transaction is not sent again"
    );

    // Sent again by the client later and never mined: expired after `watch_for`, unsent
    // since.
    chain_state.mined_count.store(0, Ordering::SeqCst);
    send(&proxy).await;
    assert_eq!(view(&proxy).await["state"], "pending", "watched again");
    round_after(&proxy, 3601 * SECOND).await;
    assert_eq!(view(&proxy).await["state"], "expired");
    let sends = chain_state.sends.load(Ordering::SeqCst);
    round_after(&proxy, 120 * SECOND).await;
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), sends);
}

#[tokio::test]
async fn a_restarted_manifold_resumes_watching_from_its_store() {
    let dir = std::env::temp_dir().join(format!("manifold-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("tx.redb");
    let _ = std::fs::remove_file(&store);
    let store = store.display().to_string();
    let chain_state = Arc::new(Node::default());
    let a = node(&chain_state).await;
    let proxy = start_proxy(&config(&[&a.url], &store)).await;
    assert_eq!(send(&proxy).await["result"], hash());
    proxy.shutdown().await;

    let proxy = start_proxy(&config(&[&a.url], &store)).await;
    let v = view(&proxy).await;
    assert_eq!(
        (v["state"].as_str(), v["attempts"].as_u64()),
        (Some("pending"), Some(1)),
        "{v}"
    );
    // Its time since the last send survived too: 31 s on, it is due.
    round_after(&proxy, 31 * SECOND).await;
    assert_eq!(chain_state.sends.load(Ordering::SeqCst), 2);
    proxy.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Poll `cond` every 10 ms for at most 5 s.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two separate anvil nodes, and only one of them ever gets the transaction (the other's
/// upstream does not take sends): a wallet asking for its next nonce right after sending
/// gets the one after its transaction, whichever node answers, also while the node that has
/// it is unreachable.
#[tokio::test]
async fn a_wallet_reads_its_next_nonce_after_a_send_whichever_node_answers() {
    use support::fault_path::{Fault, FaultPath};
    let (node_a, node_b) = (Anvil::start().await, Anvil::start().await);
    let path_a = FaultPath::start(&node_a.url).await;
    let mut cfg = String::from(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n\
         [[chains.upstreams]]\nname = \"a\"\nurl = \"URL_A\"\nfailure_domain = \"da\"\ntimeout = \"2s\"\n\
         [[chains.upstreams]]\nname = \"b\"\nurl = \"URL_B\"\nfailure_domain = \"db\"\ntimeout = \"2s\"\n\
         methods = { deny = [\"eth_sendRawTransaction\"] }\n\
         [chains.policy.health]\ninterval = \"60s\"\ntimeout = \"2s\"\n",
    );
    cfg = cfg
        .replace("URL_A", &path_a.url())
        .replace("URL_B", &node_b.url);
    let proxy = start_proxy(&cfg).await;
    let direct = HttpClient::new();
    let raw = signed_transfer(&direct, &node_a.url, 0).await;
    let url = rpc_url(&proxy, "/eth");
    let sent = direct
        .call(&url, "eth_sendRawTransaction", serde_json::json!([raw]))
        .await;
    assert!(sent["result"].is_string(), "{sent}");
    let pending = serde_json::json!([ANVIL_ACCOUNT_0, "pending"]);
    // Node B has not seen it: asked directly, it hands out nonce 0 again.
    let b_says = direct
        .call(&node_b.url, "eth_getTransactionCount", pending.clone())
        .await;
    assert_eq!(b_says["result"], "0x0");
    for _ in 0..20 {
        let v = direct
            .call(&url, "eth_getTransactionCount", pending.clone())
            .await;
        assert_eq!(v["result"], "0x1", "{v}");
    }
    // The node that has it unreachable: node B answers, raised to the watched nonce + 1.
    path_a.set(Fault::Refuse).await;
    for _ in 0..5 {
        let v = direct
            .call(&url, "eth_getTransactionCount", pending.clone())
            .await;
        assert_eq!(v["result"], "0x1", "{v}");
    }
    // Other accounts' counts are left alone.
    let other = direct
        .call(
            &url,
            "eth_getTransactionCount",
            serde_json::json!([ANVIL_ACCOUNT_1, "pending"]),
        )
        .await;
    assert_eq!(other["result"], "0x0", "{other}");
}
