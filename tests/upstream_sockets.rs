//! Upstream sockets against a real anvil behind two TCP paths: one socket per upstream,
//! opened while a client needs it and closed a while after; its heads taken in between
//! probes; a cut or a freeze closes it (a lost socket, a missed pong) while the client's
//! subscription goes on; a socket that stays open but tells no head is opened again;
//! `ws_url = false` falls back to polling; pending transactions
//! merged from both sockets, each once, over WebSocket and as an HTTP filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::logger::DEV;
use support::two_paths::{TwoPaths, FAST_PROBES};
use support::ws::WsClient;
use support::*;

/// Probes so slow that no test here sees a second round: heads in time came from sockets.
const SLOW_PROBES: &str = "interval = \"60s\"\ntimeout = \"2s\"\nrise = 1\nfall = 2";

fn socket(status: &Value, upstream: usize) -> &Value {
    &status["chains"][0]["upstreams"][upstream]["socket"]
}

async fn sockets_are(r: &TwoPaths, what: &str, pred: impl Fn(&Value, &Value) -> bool) -> Value {
    wait_for_status(&r.proxy, what, |s| pred(socket(s, 0), socket(s, 1))).await
}

fn closed(upstream: &str, reason: &str) -> String {
    format!(
        "manifold_upstream_socket_closed_total{{chain=\"eth\",upstream=\"{upstream}\",reason=\"{reason}\"}}"
    )
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test]
async fn a_socket_per_upstream_opens_for_a_subscriber_tells_heads_and_closes_after_it() {
    let r = TwoPaths::start_with(
        "[server.websocket]\nupstream_linger = \"300ms\"",
        SLOW_PROBES,
        "",
    )
    .await;
    r.followed().await;
    let s = sockets_are(&r, "both sockets idle", |a, b| {
        a["state"] == "idle" && b["state"] == "idle"
    })
    .await;
    // Derived from `url`: the same port, ws://.
    let url = s["chains"][0]["upstreams"][0]["url"].as_str().unwrap();
    assert_eq!(
        socket(&s, 0)["url"].as_str().unwrap(),
        url.replace("http://", "ws://")
    );
    assert_eq!(
        r.metric("manifold_upstream_socket{chain=\"eth\",upstream=\"u0\",state=\"idle\"}")
            .await,
        1.0
    );

    let mut ws = WsClient::connect(&r.ws_url()).await;
    let id = ws.subscribe(json!(["newHeads"])).await;
    sockets_are(&r, "both sockets open", |a, b| {
        a["state"] == "open" && b["state"] == "open"
    })
    .await;
    assert_eq!(
        r.metric("manifold_upstream_socket{chain=\"eth\",upstream=\"u1\",state=\"open\"}")
            .await,
        1.0
    );
    // Probes come once a minute: every head from here on is the sockets'.
    let from = r.head().await;
    for _ in 0..3 {
        r.mine(1).await;
    }
    let mut seen = Vec::new();
    while seen.last().copied() != Some(from + 3) {
        let (sub, head) = ws.notification().await;
        assert_eq!(sub, id);
        seen.push(hex(&head["number"]));
    }
    let fresh: Vec<u64> = seen.into_iter().filter(|n| *n > from).collect();
    assert_eq!(
        fresh,
        vec![from + 1, from + 2, from + 3],
        "each head once, in order"
    );
    let s = sockets_are(&r, "both sockets at the tip", |a, b| {
        a["head"] == json!(from + 3) && b["head"] == json!(from + 3)
    })
    .await;
    assert!(socket(&s, 0)["heads"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["chains"][0]["head"], json!(from + 3));

    // The last subscriber leaves: the sockets close after the linger.
    assert_eq!(
        ws.call("eth_unsubscribe", json!([id])).await["result"],
        true
    );
    sockets_are(&r, "both sockets idle again", |a, b| {
        a["state"] == "idle" && b["state"] == "idle"
    })
    .await;
    assert_eq!(r.metric(&closed("u0", "idle")).await, 1.0);
    assert_eq!(r.metric(&closed("u1", "idle")).await, 1.0);
}

#[tokio::test]
async fn a_cut_closes_that_socket_and_a_freeze_misses_a_pong_while_heads_go_on() {
    let r = TwoPaths::start_with(
        "[server.websocket]\nping_interval = \"300ms\"",
        FAST_PROBES,
        "",
    )
    .await;
    r.followed().await;
    // An HTTP filter keeps the sockets open as a subscriber does.
    let filter = HttpClient::new()
        .call(&r.rpc_url(), "eth_newBlockFilter", json!([]))
        .await["result"]
        .as_str()
        .unwrap()
        .to_string();
    sockets_are(&r, "both sockets open", |a, b| {
        a["state"] == "open" && b["state"] == "open"
    })
    .await;

    r.paths[0].cut().await;
    r.metric_reaches(&closed("u0", "lost"), 1.0).await;
    r.mine(2).await;
    let tip = r.head().await;
    let s = sockets_are(&r, "u1 told the tip while u0 is down", |a, b| {
        a["state"] != "open" && b["head"] == json!(tip)
    })
    .await;
    assert!(
        !socket(&s, 0)["last_error"].as_str().unwrap().is_empty(),
        "{s}"
    );
    r.paths[0].restore();
    sockets_are(&r, "u0 open again", |a, _| a["state"] == "open").await;

    // Frozen: the socket stays open but no pong comes back.
    r.paths[0].freeze();
    r.metric_reaches(&closed("u0", "ping_timeout"), 1.0).await;
    r.mine(1).await;
    let tip = r.head().await;
    sockets_are(&r, "u1 told the tip while u0 is frozen", |_, b| {
        b["head"] == json!(tip)
    })
    .await;
    r.paths[0].restore();
    sockets_are(&r, "u0 open again after the freeze", |a, _| {
        a["state"] == "open"
    })
    .await;
    // A socket opened again tells heads from the next block on.
    r.mine(1).await;
    sockets_are(&r, "both told the next block", |a, b| {
        a["head"] == json!(tip + 1) && b["head"] == json!(tip + 1)
    })
    .await;
    assert_eq!(r.metric(&closed("u1", "lost")).await, 0.0);
    assert_eq!(r.metric(&closed("u1", "ping_timeout")).await, 0.0);

    // The filter saw every block once, through all of it.
    let mut hashes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while hashes.len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "{hashes:?}");
        let v = HttpClient::new()
            .call(&r.rpc_url(), "eth_getFilterChanges", json!([filter]))
            .await;
        hashes.extend(v["result"].as_array().unwrap().iter().cloned());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unique: HashSet<&Value> = hashes.iter().collect();
    assert_eq!(unique.len(), hashes.len(), "no block twice: {hashes:?}");
    assert_eq!(hashes.len(), 4, "{hashes:?}");
}

#[tokio::test]
async fn ws_url_false_opens_no_socket_and_heads_come_from_polling() {
    let r = TwoPaths::start_with("", FAST_PROBES, "ws_url = false").await;
    r.followed().await;
    let s = wait_for_status(&r.proxy, "u0 off", |s| socket(s, 0)["state"] == "off").await;
    assert_eq!(socket(&s, 1)["state"], "off");
    // Polling alone still makes heads.
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let id = ws.subscribe(json!(["newHeads"])).await;
    let from = r.head().await;
    r.mine(1).await;
    loop {
        let (sub, head) = ws.notification().await;
        assert_eq!(sub, id);
        if hex(&head["number"]) == from + 1 {
            break;
        }
    }
    let s = wait_for_status(&r.proxy, "u0 still off", |_| true).await;
    assert_eq!(socket(&s, 0)["state"], "off");
    assert_eq!(socket(&s, 0)["opened"], 0);
}

/// Send a transaction straight to anvil (its unlocked dev account): its hash.
async fn send_tx(r: &TwoPaths, nonce: u64) -> String {
    let v = r
        .direct(
            "eth_sendTransaction",
            json!([{"from": DEV, "to": DEV, "value": "0x1", "nonce": format!("{nonce:#x}")}]),
        )
        .await;
    v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_lowercase()
}

#[tokio::test]
async fn pending_transactions_come_once_from_both_sockets_over_ws_and_as_a_filter() {
    let r = TwoPaths::start("").await;
    r.followed().await;
    // Held in the pool, so each node socket tells each one.
    r.direct("evm_setAutomine", json!([false])).await;
    let mut nonce = hex(&r
        .direct("eth_getTransactionCount", json!([DEV, "latest"]))
        .await["result"]);
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let id = ws.subscribe(json!(["newPendingTransactions"])).await;
    let filter = HttpClient::new()
        .call(&r.rpc_url(), "eth_newPendingTransactionFilter", json!([]))
        .await["result"]
        .as_str()
        .unwrap()
        .to_string();

    // Markers until both sockets have told one: from then on every hash is told twice.
    let mut markers = HashSet::new();
    loop {
        markers.insert(send_tx(&r, nonce).await);
        nonce += 1;
        let s = wait_for_status(&r.proxy, "", |_| true).await;
        if socket(&s, 0)["pending"].as_u64() > Some(0)
            && socket(&s, 1)["pending"].as_u64() > Some(0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duplicates = "manifold_pending_transactions_total{chain=\"eth\",result=\"duplicate\"}";
    let before = r.metric(duplicates).await;
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(send_tx(&r, nonce).await);
        nonce += 1;
    }
    // A last marker: read up to it, and every one of the five came before it.
    let last = send_tx(&r, nonce).await;
    let mut told = Vec::new();
    loop {
        let (sub, hash) = ws.notification().await;
        assert_eq!(sub, id);
        let hash = hash.as_str().unwrap().to_lowercase();
        if hash == last {
            break;
        }
        if !markers.contains(&hash) {
            told.push(hash);
        }
    }
    assert_eq!(told, sent, "each once, in the order the pool took them");
    r.metric_reaches(duplicates, before + 5.0).await;

    // The filter got them too, each once (markers included).
    let mut polled: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !sent.iter().all(|h| polled.contains(h)) {
        assert!(tokio::time::Instant::now() < deadline, "{polled:?}");
        let v = HttpClient::new()
            .call(&r.rpc_url(), "eth_getFilterChanges", json!([filter]))
            .await;
        polled.extend(
            v["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_lowercase()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unique: HashSet<&String> = polled.iter().collect();
    assert_eq!(unique.len(), polled.len(), "no hash twice: {polled:?}");

    assert_eq!(
        ws.call("eth_unsubscribe", json!([id])).await["result"],
        true
    );
    assert_eq!(
        ws.call("eth_unsubscribe", json!([id])).await["result"],
        false
    );
    let full = ws
        .call("eth_subscribe", json!(["newPendingTransactions", true]))
        .await;
    assert_eq!(full["error"]["code"], -32602, "{full}");
    r.direct("evm_setAutomine", json!([true])).await;
}

/// A WebSocket upstream that takes the subscription, answers pings, and then tells nothing
/// (a provider's gateway that lost its node): the number of connections it took.
async fn silent_socket() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    let task = tokio::spawn(async move {
        let mut sockets = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            sockets.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else { continue };
                    let call: Value = serde_json::from_str(&t).unwrap();
                    let answer =
                        json!({"jsonrpc": "2.0", "id": call["id"], "result": "0x5ca1ab1e"});
                    if ws.send(Message::text(answer.to_string())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, taken, task)
}

#[tokio::test]
async fn a_socket_that_stays_open_but_tells_no_head_is_opened_again_as_stale() {
    let anvil = Anvil::start().await;
    let (ws_url, taken, _server) = silent_socket().await;
    let chain = chain_config_with_health(&[&anvil.url], "", FAST_PROBES).replace(
        "timeout = \"2s\"\n",
        &format!("timeout = \"2s\"\nws_url = \"{ws_url}\"\n"),
    );
    let proxy = start_proxy(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [server.websocket]\nupstream_stale_after = \"500ms\"\n{chain}"
    ))
    .await;
    let rpc = rpc_url(&proxy, "/eth");
    let filter = HttpClient::new()
        .call(&rpc, "eth_newBlockFilter", json!([]))
        .await;
    assert!(filter["result"].is_string(), "{filter}");
    wait_for_status(&proxy, "the socket open", |s| {
        socket(s, 0)["state"] == "open"
    })
    .await;
    // The polled head moves on; the socket tells nothing.
    let stale = closed("u0", "stale");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&proxy, &stale).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never closed as stale"
        );
        HttpClient::new()
            .call(&anvil.url, "anvil_mine", json!(["0x1"]))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = wait_for_status(&proxy, "opened again", |s| {
        socket(s, 0)["opened"].as_u64() >= Some(2)
    })
    .await;
    assert!(taken.load(Ordering::SeqCst) >= 2, "{s}");
    assert!(
        socket(&s, 0)["last_error"]
            .as_str()
            .unwrap()
            .contains("trailed the polled head"),
        "{s}"
    );
    // Closed for what it did not tell, not because it failed.
    assert_eq!(metric(&proxy, &closed("u0", "lost")).await, 0.0);
}
