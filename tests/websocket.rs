//! The WebSocket front door against a real anvil behind two fault paths: calls and batches
//! over a socket, `newHeads` built from Manifold's own view of the chain (across an
//! upstream cut and freeze, with backfill and reorgs), limits, slow and silent clients,
//! shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::logger::DEV;
use support::two_paths::TwoPaths;
use support::ws::{Ended, WsClient};
use support::*;

type Rig = TwoPaths;

async fn rig(websocket: &str) -> Rig {
    TwoPaths::start(&format!("[server.websocket]\n{websocket}")).await
}

fn number(head: &Value) -> u64 {
    u64::from_str_radix(
        head["number"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap()
}

/// Subscribe to new heads, mine a block and read heads until that one: from here on, every
/// block is expected. (A head Manifold had not taken in yet when the client subscribed may
/// come first: it is new to the subscription too.)
async fn subscribed(r: &Rig, ws: &mut WsClient) -> (String, Value) {
    let id = ws.subscribe(json!(["newHeads"])).await;
    assert!(id.starts_with("0x") && id.len() == 34, "{id}");
    r.mine(1).await;
    let mined = r.direct("eth_blockNumber", json!([])).await;
    let mined = u64::from_str_radix(
        mined["result"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    loop {
        let (sub, head) = ws.notification().await;
        assert_eq!(sub, id);
        assert!(number(&head) <= mined, "{head}");
        if number(&head) == mined {
            return (id, head);
        }
    }
}

/// The next `n` heads: consecutive, each the child of the one before, all under `id`.
async fn linked_heads(ws: &mut WsClient, id: &str, after: &Value, n: usize) -> Vec<Value> {
    let mut prev = after.clone();
    let mut heads = Vec::new();
    for _ in 0..n {
        let (sub, head) = ws.notification().await;
        assert_eq!(sub, id, "one subscription id throughout");
        assert_eq!(number(&head), number(&prev) + 1, "consecutive: {head}");
        assert_eq!(head["parentHash"], prev["hash"], "linked by parent hash");
        assert!(head.get("transactions").is_none(), "a header, not a block");
        prev = head.clone();
        heads.push(head);
    }
    heads
}

#[tokio::test]
async fn calls_and_batches_over_a_socket_are_answered_as_over_http() {
    let r = rig("").await;
    r.mine(3).await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let over_ws = ws.call("eth_chainId", json!([])).await;
    assert_eq!(over_ws["result"], "0x7a69");
    let http = HttpClient::new()
        .call(
            &rpc_url(&r.proxy, "/eth"),
            "eth_getBlockByNumber",
            json!(["0x2", false]),
        )
        .await;
    let over_ws = ws.call("eth_getBlockByNumber", json!(["0x2", false])).await;
    assert_eq!(over_ws["result"], http["result"]);
    // A batch of three: three answers, in order.
    let batch = r#"[{"jsonrpc":"2.0","id":"a","method":"eth_chainId"},{"jsonrpc":"2.0","id":"b","method":"eth_blockNumber"},{"jsonrpc":"2.0","id":"c","method":"net_version"}]"#;
    let v = ws.ask(batch, &json!(null)).await;
    let ids: Vec<&Value> = v.as_array().unwrap().iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!("a"), &json!("b"), &json!("c")]);
    assert_eq!(v[2]["result"], "31337");
    // A subscription made in a batch is answered in it.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]"#;
    let v = ws.ask(batch, &json!(null)).await;
    let sub = v[0]["result"].as_str().unwrap().to_string();
    assert_eq!(v[1]["result"], "0x7a69");
    // Not JSON: -32700 with a null id, and the socket stays open.
    let v = ws.ask("{not json", &json!(null)).await;
    assert_eq!(v["error"]["code"], -32700);
    // Unsubscribe: true once, then false.
    assert_eq!(
        ws.call("eth_unsubscribe", json!([sub])).await["result"],
        true
    );
    assert_eq!(
        ws.call("eth_unsubscribe", json!([sub])).await["result"],
        false
    );
    let v = ws.call("eth_subscribe", json!(["bogus"])).await;
    assert_eq!(v["error"]["code"], -32601, "{v}");
    let v = ws.call("eth_subscribe", json!([])).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(ws.call("eth_chainId", json!([])).await["result"], "0x7a69");
}

#[tokio::test]
async fn new_heads_survive_an_upstream_cut_with_no_gap_and_no_duplicate() {
    // Heads by polling only (no upstream sockets): the head jumps by five, and the blocks
    // between are backfilled (`tests/upstream_sockets.rs` has the sockets' side).
    let r = TwoPaths::start_with("", support::two_paths::FAST_PROBES, "ws_url = false").await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let (id, first) = subscribed(&r, &mut ws).await;
    // Five at once: the head jumps, the blocks between are fetched and sent in order.
    r.mine(5).await;
    let heads = linked_heads(&mut ws, &id, &first, 5).await;
    // The primary path is cut: the same subscription goes on, on the same socket.
    r.paths[0].cut().await;
    r.mine(5).await;
    linked_heads(&mut ws, &id, heads.last().unwrap(), 5).await;
    assert!(
        r.metric("manifold_chain_backfilled_blocks_total{chain=\"eth\"}")
            .await
            >= 8.0
    );
    let sent = r
        .metric("manifold_ws_notifications_total{chain=\"eth\",kind=\"newHeads\"}")
        .await;
    assert!((11.0..=12.0).contains(&sent), "{sent} notifications sent");
    assert_eq!(r.metric("manifold_ws_connections").await, 1.0);
    // Nothing more (no block twice).
    let more = tokio::time::timeout(Duration::from_millis(1500), ws.notification()).await;
    assert!(more.is_err(), "an extra head: {more:?}");
}

#[tokio::test]
async fn new_heads_go_on_when_an_upstream_freezes() {
    let r = rig("").await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let (id, first) = subscribed(&r, &mut ws).await;
    // Open, silent: its attempts time out (2 s) and its probes take it out.
    r.paths[0].freeze();
    r.mine(3).await;
    linked_heads(&mut ws, &id, &first, 3).await;
}

#[tokio::test]
async fn a_reorg_sends_the_new_branch_linked_to_what_stayed() {
    let r = rig("").await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let (id, first) = subscribed(&r, &mut ws).await;
    r.mine(3).await;
    let old = linked_heads(&mut ws, &id, &first, 3).await;
    r.direct("anvil_reorg", json!([2, []])).await;
    // The last two blocks replaced: new blocks at their heights, the first on the block
    // that stayed.
    let (_, a) = ws.notification().await;
    let (_, b) = ws.notification().await;
    assert_eq!(number(&a), number(&old[1]));
    assert_ne!(a["hash"], old[1]["hash"]);
    assert_eq!(a["parentHash"], old[0]["hash"]);
    assert_eq!(b["parentHash"], a["hash"]);
    assert_eq!(number(&b), number(&old[2]));
    assert!(r.metric("manifold_chain_reorgs_total{chain=\"eth\"}").await >= 1.0);
}

#[tokio::test]
async fn limits_on_subscriptions_connections_and_origins() {
    let r = rig(
        "max_subscriptions = 2\nmax_connections = 1\nallowed_origins = [\"https://app.example\"]",
    )
    .await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    ws.subscribe(json!(["newHeads"])).await;
    ws.subscribe(json!(["newHeads"])).await;
    let v = ws.call("eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(v["error"]["code"], -32005, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "max_subscriptions");
    // A second socket: over max_connections.
    let refused = tokio_tungstenite::connect_async(r.ws_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    drop(ws);
    // A browser from another origin, once the first socket has gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while r.metric("manifold_ws_connections").await > 0.0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(r.ws_url())
            .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(r.ws_url())
            .unwrap();
    req.headers_mut()
        .insert("origin", "https://APP.example".parse().unwrap());
    let (_ok, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    // A plain GET is still no JSON-RPC.
    let (status, _) = HttpClient::new().get(&rpc_url(&r.proxy, "/eth")).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_and_the_others_get_every_head() {
    // A small queue: bursts of backfilled heads wait for the writer; a client that stops
    // reading fills it, once the kernel's buffers (a megabyte or more on loopback) are full.
    let r = rig("queue_messages = 64\nqueue_bytes = 65536").await;
    let mut fast = WsClient::connect(&r.ws_url()).await;
    let (id, first) = subscribed(&r, &mut fast).await;
    let mut slow = WsClient::connect_small_buffer(&r.ws_url(), r.proxy.rpc_addr).await;
    slow.subscribe(json!(["newHeads"])).await;
    // The slow one stops reading here; the fast one reads everything.
    let mut last = first;
    let (rounds, per_round) = (25, 120);
    let queued = "manifold_ws_queued_bytes";
    let mut most_queued: f64 = 0.0;
    for _ in 0..rounds {
        r.mine(per_round as u64).await;
        last = linked_heads(&mut fast, &id, &last, per_round)
            .await
            .pop()
            .unwrap();
        most_queued = most_queued.max(r.metric(queued).await);
    }
    // Memory held for the clients stays within their queues (two sockets, each at most
    // queue_bytes plus the one message let in over it), whatever the slow one leaves unread.
    assert!(
        most_queued <= 2.0 * (65536.0 + 4096.0),
        "{most_queued} bytes queued"
    );
    r.metric_reaches("manifold_ws_closed_total{reason=\"slow_client\"}", 1.0)
        .await;
    let (read, ended) = slow.until_end().await;
    assert!(
        read < rounds * per_round,
        "the slow client got {read} heads: never behind"
    );
    if let Ended::Closed(Some(f)) = ended {
        assert_eq!(u16::from(f.code), 1008, "{f:?}");
    }
    // The fast one is still served, and what the slow one left unread was let go.
    assert_eq!(
        fast.call("eth_chainId", json!([])).await["result"],
        "0x7a69"
    );
    assert!(r.metric(queued).await < 4096.0);
}

#[tokio::test]
async fn a_silent_client_is_closed_after_two_ping_intervals() {
    let r = rig("ping_interval = \"200ms\"").await;
    let _silent = WsClient::connect(&r.ws_url()).await;
    r.metric_reaches("manifold_ws_closed_total{reason=\"ping_timeout\"}", 1.0)
        .await;
    // A client that reads answers the pings (tungstenite does) and stays.
    let mut alive = WsClient::connect(&r.ws_url()).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            alive.call("eth_chainId", json!([])).await["result"],
            "0x7a69"
        );
    }
    assert_eq!(
        r.metric("manifold_ws_closed_total{reason=\"ping_timeout\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let r = rig("").await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    ws.subscribe(json!(["newHeads"])).await;
    let Rig {
        proxy,
        anvil,
        paths,
        ..
    } = r;
    let stopping = tokio::spawn(proxy.shutdown());
    match ws.next_message().await {
        Err(Ended::Closed(Some(f))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("shutdown waits for no socket longer than its grace")
        .unwrap();
    drop((anvil, paths));
}

#[tokio::test]
async fn logs_are_sent_per_block_and_sent_again_as_removed_after_a_reorg() {
    let r = rig("").await;
    let logger = r.deploy_logger().await;
    r.followed().await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let mine = ws.subscribe(json!(["logs", {"address": logger}])).await;
    let other = format!("0x{}", "11".repeat(20));
    let _nothing = ws.subscribe(json!(["logs", {"address": other}])).await;
    // anvil's own subscription, to show that it sends no removal itself.
    let mut direct = WsClient::connect(&r.anvil.url.replace("http://", "ws://")).await;
    let direct_sub = direct.subscribe(json!(["logs", {"address": logger}])).await;

    let receipt = r.emit(&logger).await;
    let (sub, log) = ws.notification().await;
    assert_eq!(sub, mine);
    assert_eq!(log["removed"], false);
    assert_eq!(log["transactionHash"], receipt["transactionHash"]);
    assert_eq!(log["blockHash"], receipt["blockHash"]);
    assert_eq!(
        log["topics"][0],
        format!("0x{:0>64}", DEV.trim_start_matches("0x"))
    );
    let (_, direct_log) = direct.notification().await;
    assert_eq!(direct_log["transactionHash"], receipt["transactionHash"]);

    // The log's block and the one above it replaced by empty blocks.
    r.mine(1).await;
    r.direct("anvil_reorg", json!([2, []])).await;
    let (sub, removed) = ws.notification().await;
    assert_eq!(sub, mine);
    assert_eq!(removed["removed"], true, "{removed}");
    assert_eq!(removed["blockHash"], log["blockHash"]);
    assert_eq!(removed["logIndex"], log["logIndex"]);
    assert_eq!(removed["transactionHash"], log["transactionHash"]);

    // The new branch goes on: the next log arrives as new.
    let receipt = r.emit(&logger).await;
    let (sub, next) = ws.notification().await;
    assert_eq!(sub, mine);
    assert_eq!(next["removed"], false);
    assert_eq!(next["transactionHash"], receipt["transactionHash"]);
    // anvil itself sent only the new log, never the removal.
    let (direct_sub_again, direct_next) = direct.notification().await;
    assert_eq!(direct_sub_again, direct_sub);
    assert_eq!(
        direct_next["transactionHash"], receipt["transactionHash"],
        "{direct_next}"
    );
    assert_ne!(direct_next["removed"], true);
    assert_eq!(
        r.metric("manifold_ws_notifications_total{chain=\"eth\",kind=\"logs\"}")
            .await,
        3.0,
        "the other filter matched nothing"
    );
}

#[tokio::test]
async fn logs_go_on_across_an_upstream_cut() {
    let r = rig("").await;
    let logger = r.deploy_logger().await;
    r.followed().await;
    let mut ws = WsClient::connect(&r.ws_url()).await;
    let sub = ws.subscribe(json!(["logs", {}])).await;
    let mut hashes = Vec::new();
    for i in 0..6 {
        if i == 3 {
            r.paths[0].cut().await;
        }
        hashes.push(r.emit(&logger).await["transactionHash"].clone());
    }
    let mut got = Vec::new();
    for _ in &hashes {
        let Ok((id, log)) = tokio::time::timeout(Duration::from_secs(10), ws.notification()).await
        else {
            panic!("got {got:?} of {hashes:?}");
        };
        assert_eq!(id, sub);
        got.push(log["transactionHash"].clone());
    }
    assert_eq!(got, hashes, "every log, in order");
}
