//! The load script's client for calls over WebSocket against calls over HTTP
//! (`benches/load.sh`, run `ws`): `CONNECTIONS` connections, each with one call in flight
//! at a time (as wrk does), for `SECONDS`; the same client either way, so that the two
//! transports compare like with like. Each call asks `eth_getBalance` of a different
//! account, so that none is coalesced with another.
//!
//! ```text
//! call_load URL CONNECTIONS SECONDS      URL: ws://host:port/chain or http://host:port/chain
//! ```
//!
//! Prints `requests N`, `rps N`, `p50_ms X`, `p99_ms X`, `errors N` (answers without a
//! `result`, and failed connections), one per line.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// What one connection did: its latencies (µs) and errors.
type Tally = (Vec<u32>, u64);

fn body(conn: usize, n: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{n},"method":"eth_getBalance","params":["0x{conn:08x}{n:032x}","latest"]}}"#
    )
}

fn answered(text: &[u8]) -> bool {
    memchr(text, br#""result""#) && !memchr(text, br#""error""#)
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn over_ws(url: String, conn: usize, until: Instant) -> Tally {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let (mut lat, mut errors) = (Vec::new(), 0);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let t0 = Instant::now();
        ws.send(Message::text(body(conn, n))).await.expect("send");
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    errors += u64::from(!answered(t.as_bytes()));
                    break;
                }
                Some(Ok(_)) => continue,
                _ => return (lat, errors + 1),
            }
        }
        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    let _ = ws.close(None).await;
    (lat, errors)
}

async fn over_http(url: String, conn: usize, until: Instant) -> Tally {
    let uri: http::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let (mut lat, mut errors) = (Vec::new(), 0);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let req = http::Request::post(uri.clone())
            .header("content-type", "application/json")
            .header("host", uri.authority().unwrap().as_str())
            .body(Full::new(Bytes::from(body(conn, n))))
            .unwrap();
        let t0 = Instant::now();
        let Ok(resp) = sender.send_request(req).await else {
            return (lat, errors + 1);
        };
        let ok = resp.status() == 200;
        let Ok(text) = resp.into_body().collect().await else {
            return (lat, errors + 1);
        };
        errors += u64::from(!ok || !answered(&text.to_bytes()));
        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    (lat, errors)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, connections, seconds] = &args[..] else {
        eprintln!("usage: call_load URL CONNECTIONS SECONDS");
        std::process::exit(2);
    };
    let (connections, seconds): (usize, u64) =
        (connections.parse().unwrap(), seconds.parse().unwrap());
    let ws = url.starts_with("ws://");
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let url = url.clone();
            if ws {
                tokio::spawn(over_ws(url, c, until))
            } else {
                tokio::spawn(over_http(url, c, until))
            }
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.expect("a connection task panicked");
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    println!("requests {}", lat.len());
    println!("rps {:.0}", lat.len() as f64 / elapsed);
    println!("p50_ms {:.3}", pct(0.50));
    println!("p99_ms {:.3}", pct(0.99));
    println!("errors {errors}");
}
