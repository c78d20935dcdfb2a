//! The WebSocket fan-out benchmark's clients (`benches/ws_fanout.sh`): `SOCKETS` sockets
//! subscribed to `newHeads` on Manifold; then `BLOCKS` times, one block mined on anvil and
//! the time until every socket has its head. Prints, per run, the time from the mining call
//! to the first and to the last socket's notification, and the spread between them (the
//! fan-out's own cost), as p50 and max over the blocks.
//!
//! ```text
//! ws_fanout WS_URL ANVIL_URL SOCKETS BLOCKS
//! ```
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// Per block number: sockets that have it, and when the first and the last got it.
type Seen = Arc<Mutex<HashMap<u64, (usize, Instant, Instant)>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, ws_url, anvil_url, sockets, blocks] = &args[..] else {
        eprintln!("usage: ws_fanout WS_URL ANVIL_URL SOCKETS BLOCKS");
        std::process::exit(2);
    };
    let (sockets, blocks): (usize, u64) = (sockets.parse().unwrap(), blocks.parse().unwrap());
    let seen: Seen = Arc::default();
    let changed = Arc::new(Notify::new());
    // Connect in waves, so that the listen backlog never overflows.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for wave in (0..sockets).collect::<Vec<_>>().chunks(200) {
        let mut ready = Vec::new();
        for _ in wave {
            let (url, seen, changed) = (ws_url.clone(), seen.clone(), changed.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            ready.push(rx);
            tasks.push(tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("connect");
                ws.send(Message::text(
                    r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
                ))
                .await
                .unwrap();
                // The subscription's answer (pings, answered by tungstenite, are skipped).
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() {
                        break;
                    }
                }
                let _ = tx.send(());
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else {
                        continue;
                    };
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    let Some(n) = v["params"]["result"]["number"].as_str() else {
                        continue;
                    };
                    let n = u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap();
                    let now = Instant::now();
                    let mut s = seen.lock().unwrap();
                    let e = s.entry(n).or_insert((0, now, now));
                    e.0 += 1;
                    e.2 = now;
                    drop(s);
                    changed.notify_one();
                }
            }));
        }
        for r in ready {
            r.await.expect("a socket failed to subscribe");
        }
    }
    println!("{sockets} sockets subscribed in {:?}", started.elapsed());
    let http = rpc_client(anvil_url);
    let (mut to_first, mut to_last, mut spread) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..blocks {
        let head = http.call("eth_blockNumber").await + 1;
        let t0 = Instant::now();
        http.call("evm_mine").await;
        let deadline = t0 + Duration::from_secs(120);
        loop {
            if let Some((n, first, last)) = seen.lock().unwrap().get(&head).copied() {
                if n == sockets {
                    to_first.push(first - t0);
                    to_last.push(last - t0);
                    spread.push(last - first);
                    break;
                }
            }
            if Instant::now() > deadline {
                let got = seen.lock().unwrap().get(&head).map_or(0, |e| e.0);
                eprintln!("block {head} reached {got} of {sockets} sockets in 120 s");
                std::process::exit(1);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), changed.notified()).await;
        }
        // Between blocks, as a chain's blocks come: the next one is its own fan-out.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        format!(
            "p50 {:.1} ms, max {:.1} ms",
            ms(v[v.len() / 2]),
            ms(v[v.len() - 1])
        )
    };
    println!("mine -> first socket: {}", stats(&mut to_first));
    println!("mine -> last socket:  {}", stats(&mut to_last));
    println!("first -> last socket: {}", stats(&mut spread));
    for t in tasks {
        t.abort();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A minimal JSON-RPC client for anvil over hyper-util.
struct Rpc {
    url: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

fn rpc_client(url: &str) -> Rpc {
    Rpc {
        url: url.to_string(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    }
}

impl Rpc {
    /// Call `method` without params: its result as a number (0 when not one).
    async fn call(&self, method: &str) -> u64 {
        use http_body_util::BodyExt;
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":[]}}"#);
        let req = http::Request::post(&self.url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["result"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    }
}
