//! `eth_sendRawTransaction`: sent to several upstreams at once; "already known" and "nonce
//! too low" for this very transaction are success; a real rejection is the answer; no
//! answer at all is "outcome unknown", never "failed".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use manifold::family::evm::tx::transaction_hash_hex;
use serde_json::{json, Value};
use support::fault_path::{Fault, FaultPath};
use support::*;

const RAW: &str = RECORDED_LEGACY_TX;

fn send() -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":"w-1","method":"eth_sendRawTransaction","params":["{RAW}"]}}"#
    )
}

fn hash() -> String {
    transaction_hash_hex(RAW).unwrap()
}

fn node_error(message: &str) -> Action {
    Action::Error(format!(r#"{{"code":-32000,"message":"{message}"}}"#))
}

/// Upstreams in three failure domains, all primary.
fn config(urls: &[&str], fanout: Option<u32>) -> String {
    let mut s = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (i, u) in urls.iter().enumerate() {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"{u}\"\nfailure_domain = \"d{i}\"\ntimeout = \"1s\"\n"
        ));
    }
    s.push_str("[chains.policy]\nrequest_timeout = \"5s\"\n");
    if let Some(f) = fanout {
        s.push_str(&format!("broadcast = {{ fanout = {f} }}\n"));
    }
    s.push_str("[chains.policy.health]\ninterval = \"60s\"\ntimeout = \"2s\"\n");
    s
}

async fn rpc(proxy: &manifold::server::Running) -> Value {
    HttpClient::new()
        .rpc(&rpc_url(proxy, "/eth"), &send())
        .await
}

#[tokio::test]
async fn already_known_nonce_too_low_and_a_timeout_are_a_success() {
    let known = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_millis(100),
            Box::new(node_error("already known")),
        )
    })
    .await;
    let h = hash();
    let nonce = FakeUpstream::start(move |req, _| match req["method"].as_str() {
        Some("eth_getTransactionByHash") => {
            Action::Result(format!(r#"{{"hash":"{h}","blockNumber":"0x5"}}"#))
        }
        _ => node_error("nonce too low: next nonce 6, tx nonce 5"),
    })
    .await;
    let hung = FakeUpstream::start(|_, _| Action::Hang).await;
    let proxy = start_proxy(&config(&[&known.url, &nonce.url, &hung.url], None)).await;
    let v = rpc(&proxy).await;
    assert_eq!(v["result"], hash(), "{v}");
    assert_eq!(v["id"], "w-1");
    let (_, metrics) = HttpClient::new().get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains("manifold_broadcasts_total{chain=\"eth\",result="),
        "{metrics}"
    );
}

#[tokio::test]
async fn nonce_too_low_for_this_transaction_is_success() {
    let h = hash();
    let nonce = FakeUpstream::start(move |req, _| match req["method"].as_str() {
        Some("eth_getTransactionByHash") => Action::Result(format!(r#"{{"hash":"{h}"}}"#)),
        _ => node_error("nonce too low"),
    })
    .await;
    let hung = FakeUpstream::start(|_, _| Action::Hang).await;
    let proxy = start_proxy(&config(&[&nonce.url, &hung.url], None)).await;
    let v = rpc(&proxy).await;
    assert_eq!(v["result"], hash(), "{v}");
    let (_, metrics) = HttpClient::new().get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(
            r#"manifold_broadcasts_total{chain="eth",result="known_after_nonce_too_low"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn nonce_used_by_another_transaction_is_the_answer() {
    let nonce = FakeUpstream::start(|req, _| match req["method"].as_str() {
        Some("eth_getTransactionByHash") => Action::Result("null".into()),
        _ => node_error("nonce too low"),
    })
    .await;
    let proxy = start_proxy(&config(&[&nonce.url], None)).await;
    let (_, text) = HttpClient::new()
        .post(&rpc_url(&proxy, "/eth"), send())
        .await;
    assert_eq!(
        text,
        r#"{"jsonrpc":"2.0","id":"w-1","error":{"code":-32000,"message":"nonce too low"}}"#
    );
}

#[tokio::test]
async fn a_real_rejection_is_passed_through_unless_another_node_accepts() {
    let poor = || node_error("insufficient funds for gas * price + value");
    let a = FakeUpstream::start(move |_, _| poor()).await;
    let b = FakeUpstream::start(move |_, _| poor()).await;
    let proxy = start_proxy(&config(&[&a.url, &b.url], None)).await;
    let (_, text) = HttpClient::new()
        .post(&rpc_url(&proxy, "/eth"), send())
        .await;
    assert_eq!(
        text,
        r#"{"jsonrpc":"2.0","id":"w-1","error":{"code":-32000,"message":"insufficient funds for gas * price + value"}}"#
    );
    // A stale node rejects, a current one accepts: accepted.
    let h = hash();
    let accepts = FakeUpstream::start(move |_, _| {
        Action::Delay(
            Duration::from_millis(100),
            Box::new(Action::Result(format!("\"{h}\""))),
        )
    })
    .await;
    let proxy = start_proxy(&config(&[&a.url, &accepts.url], None)).await;
    assert_eq!(rpc(&proxy).await["result"], hash());
}

#[tokio::test]
async fn every_upstream_gets_it_in_different_failure_domains() {
    let h = hash();
    let ups = [
        FakeUpstream::start({
            let h = h.clone();
            move |_, _| Action::Result(format!("\"{h}\""))
        })
        .await,
        FakeUpstream::start({
            let h = h.clone();
            move |_, _| Action::Result(format!("\"{h}\""))
        })
        .await,
        FakeUpstream::start({
            let h = h.clone();
            move |_, _| Action::Result(format!("\"{h}\""))
        })
        .await,
        FakeUpstream::start(move |_, _| Action::Result(format!("\"{h}\""))).await,
    ];
    let urls: Vec<&str> = ups.iter().map(|u| u.url.as_str()).collect();
    let proxy = start_proxy(&config(&urls, Some(3))).await;
    assert_eq!(rpc(&proxy).await["result"], hash());
    // The first answer wins; the other sends complete in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ups.iter().map(FakeUpstream::hits).sum::<usize>() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fanout of 3 not reached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ups.iter().map(FakeUpstream::hits).sum::<usize>(),
        3,
        "fanout is 3, not 4"
    );
}

#[tokio::test]
async fn no_answer_at_all_is_outcome_unknown_never_failed() {
    let a = FakeUpstream::start(|_, _| Action::Hang).await;
    let b = FakeUpstream::start(|_, _| Action::Status(502, String::new())).await;
    let proxy = start_proxy(&config(&[&a.url, &b.url], None)).await;
    let v = rpc(&proxy).await;
    assert_eq!(v["error"]["code"], -32092, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "outcome_unknown", "{v}");
    // Nowhere reachable at all: tried anyway as a last resort, and refused: certainly not
    // sent, which the client is told (safe to send again).
    let dead = closed_port_url().await;
    let proxy = start_proxy(&config(&[&dead], None)).await;
    wait_for_status(&proxy, "u0 unhealthy", |s| {
        upstream_status(s, "u0")["status"] == "unhealthy"
    })
    .await;
    let v = rpc(&proxy).await;
    assert_eq!(v["error"]["code"], -32092, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "all_attempts_failed", "{v}");
    assert_eq!(
        v["error"]["data"]["attempts"][0]["outcome"], "transport_error",
        "{v}"
    );
}

fn error_with(code: i64, message: &str) -> Action {
    Action::Error(format!(r#"{{"code":{code},"message":"{message}"}}"#))
}

/// A node that rejects every send, and knows no transaction by hash.
async fn rejecting(message: &'static str) -> FakeUpstream {
    FakeUpstream::start(move |req, _| match req["method"].as_str() {
        Some("eth_getTransactionByHash") => Action::Result("null".into()),
        _ => node_error(message),
    })
    .await
}

/// A node that reads a send and resets the connection (it may have pooled it), and answers
/// lookups by hash with `lookup`.
async fn resetting(lookup: &'static str) -> FakeUpstream {
    let h = hash();
    FakeUpstream::start(move |req, _| match req["method"].as_str() {
        Some("eth_getTransactionByHash") if lookup == "found" => {
            Action::Result(format!(r#"{{"hash":"{h}","blockNumber":null}}"#))
        }
        Some("eth_getTransactionByHash") => Action::Result("null".into()),
        _ => Action::Reset,
    })
    .await
}

#[tokio::test]
async fn a_rejection_is_never_the_answer_while_another_node_may_have_it() {
    // A lagging node says "insufficient funds"; a current one reads the send and resets.
    let poor = rejecting("insufficient funds for gas * price + value").await;
    let took = resetting("found").await;
    let proxy = start_proxy(&config(&[&poor.url, &took.url], None)).await;
    let v = rpc(&proxy).await;
    assert_eq!(
        v["result"],
        hash(),
        "found by hash on the node that reset: {v}"
    );
    let (_, metrics) = HttpClient::new().get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(r#"manifold_broadcasts_total{chain="eth",result="found_by_hash"} 1"#),
        "{metrics}"
    );
    // Known nowhere: the outcome is unknown, never the rejection.
    let lost = resetting("null").await;
    let proxy = start_proxy(&config(&[&poor.url, &lost.url], None)).await;
    let v = rpc(&proxy).await;
    assert_eq!(v["error"]["code"], -32092, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "outcome_unknown", "{v}");
    assert_eq!(v["error"]["data"]["hash"], hash(), "{v}");
    // Every node answered, and every one rejected it: the rejection.
    let poor2 = rejecting("insufficient funds for gas * price + value").await;
    let proxy = start_proxy(&config(&[&poor.url, &poor2.url], None)).await;
    assert_eq!(
        rpc(&proxy).await["error"]["message"],
        "insufficient funds for gas * price + value"
    );
}

#[tokio::test]
async fn a_gateway_error_after_a_send_is_outcome_unknown_not_the_error() {
    for (code, message) in [
        (-32603, "Internal error"),
        (-32603, "request timed out"),
        (-32000, "bad gateway"),
        (-32000, "context deadline exceeded"),
    ] {
        let gw = FakeUpstream::start(move |req, _| match req["method"].as_str() {
            Some("eth_getTransactionByHash") => Action::Result("null".into()),
            _ => error_with(code, message),
        })
        .await;
        let proxy = start_proxy(&config(&[&gw.url], None)).await;
        let v = rpc(&proxy).await;
        assert_eq!(v["error"]["code"], -32092, "{message}: {v}");
        assert_eq!(
            v["error"]["data"]["reason"], "outcome_unknown",
            "{message}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("manifold: outcome unknown"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn already_known_in_any_wrapping_is_the_hash() {
    for (code, message) in [
        (-32603, "already known"),
        (-32005, "rate limit reached; already known"),
        (-32603, "request timed out: already known"),
        (-32010, "AlreadyKnown"),
        (-32000, "ALREADY_EXISTS: already known"),
    ] {
        let known = FakeUpstream::start(move |_, _| error_with(code, message)).await;
        let proxy = start_proxy(&config(&[&known.url], None)).await;
        let v = rpc(&proxy).await;
        assert_eq!(v["result"], hash(), "{message}: {v}");
    }
}

#[tokio::test]
async fn a_lagging_upstream_is_still_a_broadcast_target() {
    let h = hash();
    let accept = move |_: &Value, _: &bytes::Bytes| Action::Result(format!("\"{}\"", hash()));
    let current = FakeUpstream::start(accept).await;
    let behind = FakeUpstream::start(accept).await;
    behind.probes.set_head(0x100 - 50);
    let proxy = start_proxy(&config(&[&current.url, &behind.url], None)).await;
    wait_for_status(&proxy, "u1 healthy and lagging", |s| {
        let u = upstream_status(s, "u1");
        u["status"] == "healthy" && u["lag"] == 50
    })
    .await;
    assert_eq!(rpc(&proxy).await["result"], h);
    // Both get it, the lagging one too: a stale head reading must not shrink a broadcast.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while current.hits() + behind.hits() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lagging upstream got nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((current.hits(), behind.hits()), (1, 1));
}

#[tokio::test]
async fn a_send_refused_before_it_was_written_goes_to_another_upstream() {
    // fanout 1 and u1 a fallback: u0 is always the target. It turns the send away (429: not
    // processed), so u1 gets it instead.
    let limited = FakeUpstream::start(|_, _| Action::TooMany(1)).await;
    let h = hash();
    let accepts = FakeUpstream::start(move |_, _| Action::Result(format!("\"{h}\""))).await;
    let cfg = config(&[&limited.url, &accepts.url], Some(1))
        .replace("name = \"u1\"", "name = \"u1\"\ntier = \"fallback\"");
    let proxy = start_proxy(&cfg).await;
    let v = rpc(&proxy).await;
    assert_eq!(v["result"], hash(), "{v}");
    assert_eq!((limited.hits(), accepts.hits()), (1, 1));
}

/// The client goes away 50 ms after sending, while every path takes 400 ms to pass the send
/// on: the broadcast runs on in its own task, and the transaction is mined. The same for a
/// send inside a batch.
#[tokio::test]
async fn a_client_that_goes_away_does_not_stop_the_broadcast() {
    let anvil = Anvil::start().await;
    let paths = [
        FaultPath::start(&anvil.url).await,
        FaultPath::start(&anvil.url).await,
    ];
    let urls: Vec<String> = paths.iter().map(FaultPath::url).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let proxy = start_proxy(&config(&urls, None)).await;
    wait_for_status(&proxy, "both healthy", |s| {
        ["u0", "u1"]
            .iter()
            .all(|u| upstream_status(s, u)["status"] == "healthy")
    })
    .await;
    let direct = HttpClient::new();
    for p in &paths {
        p.set(Fault::Slow(Duration::from_millis(400))).await;
    }
    let send = |raw: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["{raw}"]}}"#
        )
    };
    let bodies: [&dyn Fn(&str) -> String; 2] = [&|raw| send(raw), &|raw| {
        format!(
            r#"[{{"jsonrpc":"2.0","id":0,"method":"eth_blockNumber"}},{}]"#,
            send(raw)
        )
    }];
    for (i, body) in bodies.iter().enumerate() {
        let nonce = account_quantity(
            &direct,
            &anvil.url,
            "eth_getTransactionCount",
            ANVIL_ACCOUNT_0,
        )
        .await;
        let raw = signed_transfer(&direct, &anvil.url, nonce).await;
        let tx_hash = transaction_hash_hex(&raw).unwrap();
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            HttpClient::new().post(&rpc_url(&proxy, "/eth"), body(&raw)),
        )
        .await;
        assert!(gone.is_err(), "the client was to leave before the answer");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let receipt = direct
                .call(&anvil.url, "eth_getTransactionReceipt", json!([tx_hash]))
                .await;
            if !receipt["result"].is_null() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "send {i}: the transaction never reached the node"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
