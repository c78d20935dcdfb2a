//! End to end against a real Ethereum node: anvil behind Manifold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use support::*;

const DEV: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
const OTHER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

async fn setup() -> (Anvil, manifold::server::Running) {
    let anvil = Anvil::start().await;
    let proxy = start_proxy(&chain_config(&[&anvil.url], "")).await;
    (anvil, proxy)
}

#[tokio::test]
async fn reads_pass_through() {
    let (_anvil, proxy) = setup().await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    assert_eq!(
        c.call(&url, "eth_chainId", json!([])).await["result"],
        "0x7a69"
    );
    // POST / serves the only chain, as `cast block-number --rpc-url http://127.0.0.1:8645` does.
    let root = rpc_url(&proxy, "/");
    let head = c.call(&root, "eth_blockNumber", json!([])).await;
    assert!(head["result"].as_str().unwrap().starts_with("0x"), "{head}");
    let bal = c.call(&url, "eth_getBalance", json!([DEV, "latest"])).await;
    assert_eq!(bal["result"], "0x21e19e0c9bab2400000", "10000 ETH: {bal}");
}

#[tokio::test]
async fn batch_answers_in_order_with_ids_kept() {
    let (_anvil, proxy) = setup().await;
    let url = rpc_url(&proxy, "/eth");
    let body = format!(
        r#"[{{"jsonrpc":"2.0","id":"a","method":"eth_chainId"}},
            {{"jsonrpc":"2.0","id":18446744073709551617,"method":"eth_getBalance","params":["{DEV}","latest"]}},
            {{"jsonrpc":"2.0","method":"eth_blockNumber"}},
            {{"jsonrpc":"2.0","id":null,"method":"eth_no_such_method"}},
            {{"jsonrpc":"2.0","id":3,"method":"net_version"}}]"#
    );
    let (status, text) = HttpClient::new().post(&url, body).await;
    assert_eq!(status, 200);
    // Ids byte-for-byte, including one beyond 2^64.
    assert!(
        text.contains(r#""id":18446744073709551617,"result":"0x21e19e0c9bab2400000""#),
        "{text}"
    );
    let v: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(v.len(), 4, "the notification gets no answer: {text}");
    assert_eq!(v[0]["id"], "a");
    assert_eq!(v[0]["result"], "0x7a69");
    assert!(v[2]["id"].is_null());
    assert_eq!(
        v[2]["error"]["code"], -32601,
        "anvil's method-not-found passes through: {text}"
    );
    assert_eq!(v[3]["id"], 3);
    assert_eq!(v[3]["result"], "31337");
}

#[tokio::test]
async fn signed_transfer_is_sent_and_mined() {
    // Two upstream paths to the same node: the broadcast goes to both.
    let anvil = Anvil::start().await;
    let proxy = start_proxy(&chain_config(&[&anvil.url, &anvil.url], "")).await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    let before = c
        .call(&url, "eth_getBalance", json!([OTHER, "latest"]))
        .await["result"]
        .clone();
    // Signed by anvil's first dev key, asked of anvil directly: the proxy only relays it.
    let signed = c
        .call(
            &anvil.url,
            "eth_signTransaction",
            json!([{"from": DEV, "to": OTHER, "value": "0xde0b6b3a7640000", "gas": "0x5208",
                    "nonce": "0x0", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1",
                    "chainId": "0x7a69"}]),
        )
        .await;
    let raw = signed["result"].as_str().expect("signed tx").to_string();
    let sent = c.call(&url, "eth_sendRawTransaction", json!([raw])).await;
    let hash = sent["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{sent}"))
        .to_string();
    assert_eq!(
        hash,
        manifold::family::evm::tx::transaction_hash_hex(&raw).unwrap(),
        "the hash computed locally"
    );
    // anvil mines on arrival, but asynchronously: wait (bounded) for the receipt to appear.
    let mut receipt = Value::Null;
    for _ in 0..200 {
        receipt = c
            .call(&url, "eth_getTransactionReceipt", json!([hash]))
            .await;
        if !receipt["result"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(receipt["result"]["status"], "0x1", "{receipt}");
    assert_eq!(receipt["result"]["transactionHash"], hash);
    let after = c
        .call(&url, "eth_getBalance", json!([OTHER, "latest"]))
        .await["result"]
        .clone();
    assert_ne!(before, after);
    // Sending it again after it was mined: the node says "nonce too low", the proxy finds this
    // very transaction on chain, and the client gets its hash, not an error.
    let again = c.call(&url, "eth_sendRawTransaction", json!([raw])).await;
    assert_eq!(again["result"], hash, "{again}");
}

#[tokio::test]
async fn revert_comes_back_unchanged() {
    let (anvil, proxy) = setup().await;
    // Init code that reverts with Error(string)'s selector and 28 zero bytes as data.
    let code = format!("0x7f08c379a0{}60005260206000fd", "00".repeat(28));
    let body = json!({"jsonrpc":"2.0","id":7,"method":"eth_call","params":[{"from": DEV, "data": code}, "latest"]}).to_string();
    let c = HttpClient::new();
    let (_, direct) = c.post(&anvil.url, body.clone()).await;
    let (_, proxied) = c.post(&rpc_url(&proxy, "/eth"), body).await;
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        error: &'a RawValue,
    }
    let d: Reply = serde_json::from_str(&direct).unwrap();
    let p: Reply = serde_json::from_str(&proxied).unwrap();
    assert_eq!(p.error.get(), d.error.get(), "error object byte-for-byte");
    let e: Value = serde_json::from_str(p.error.get()).unwrap();
    assert_eq!(e["data"], format!("0x08c379a0{}", "00".repeat(28)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("revert"), "{e}");
}

#[tokio::test]
async fn dead_primary_fails_over_to_anvil() {
    let anvil = Anvil::start().await;
    let dead = closed_port_url().await;
    let proxy = start_proxy(&chain_config(&[&dead, &anvil.url], "")).await;
    let c = HttpClient::new();
    for _ in 0..5 {
        let r = c
            .call(&rpc_url(&proxy, "/eth"), "eth_chainId", json!([]))
            .await;
        assert_eq!(r["result"], "0x7a69", "{r}");
    }
    let status = wait_for_status(&proxy, "u0 unhealthy", |s| {
        upstream_status(s, "u0")["status"] == "unhealthy"
    })
    .await;
    let u1 = upstream_status(&status, "u1");
    assert_eq!(u1["status"], "healthy", "{u1}");
    assert_eq!(u1["head"], 0, "anvil's head: {u1}");
}

/// Two anvil nodes as two upstreams in two failure domains; one is killed mid-stream. No
/// request fails, and within a health interval or two the dead one is out of rotation.
#[tokio::test]
async fn stopping_one_of_two_nodes_loses_no_request() {
    let mut a = Anvil::start().await;
    let b = Anvil::start().await;
    let cfg = format!(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n\
         [[chains.upstreams]]\nname = \"a\"\nurl = \"{}\"\nfailure_domain = \"dc-a\"\n\
         [[chains.upstreams]]\nname = \"b\"\nurl = \"{}\"\nfailure_domain = \"dc-b\"\n\
         [chains.policy.health]\ninterval = \"300ms\"\ntimeout = \"300ms\"\nrise = 2\nfall = 2\n",
        a.url, b.url
    );
    let proxy = start_proxy(&cfg).await;
    wait_for_status(&proxy, "both healthy", |s| {
        upstream_status(s, "a")["status"] == "healthy"
            && upstream_status(s, "b")["status"] == "healthy"
    })
    .await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"}]"#;
    let mut killed_at = None;
    for i in 0..300 {
        if i == 100 {
            a.stop().await;
            killed_at = Some(tokio::time::Instant::now());
        }
        if i % 10 == 0 {
            let v = c.rpc(&url, batch).await;
            assert_eq!(v[0]["result"], "0x7a69", "request {i}: {v}");
            assert!(v[1]["result"].is_string(), "request {i}: {v}");
        } else {
            let v = c.call(&url, "eth_getBalance", json!([DEV, "latest"])).await;
            assert_eq!(v["result"], "0x21e19e0c9bab2400000", "request {i}: {v}");
        }
    }
    let status = wait_for_status(&proxy, "a unhealthy", |s| {
        upstream_status(s, "a")["status"] == "unhealthy"
    })
    .await;
    let out_after = killed_at.unwrap().elapsed();
    assert!(
        out_after < std::time::Duration::from_secs(5),
        "took {out_after:?}"
    );
    let a_requests = upstream_status(&status, "a")["requests"].as_u64().unwrap();
    let a_failures = upstream_status(&status, "a")["failures"].as_u64().unwrap();
    assert!(a_requests > 10, "a served before it died: {status}");
    // The breaker opens at its fifth consecutive failure (the default); a batch's other item
    // may already be on its way to the dead node then, so one more failure can follow.
    assert!(
        a_failures <= 5 + 1,
        "only a few attempts met the dead node: {status}"
    );
    for _ in 0..20 {
        c.call(&url, "eth_chainId", json!([])).await;
    }
    let status = wait_for_status(&proxy, "status", |_| true).await;
    assert_eq!(
        upstream_status(&status, "a")["requests"].as_u64().unwrap(),
        a_requests,
        "no more traffic to a"
    );
}
