//! One request through the whole proxy, against an in-process fixed-answer upstream on
//! loopback: what Manifold adds to every call, end to end.
//!
//! `cargo bench --bench hot_path`. Three measurements side by side, each one
//! `eth_getBalance` round trip on a kept-alive HTTP/1.1 connection:
//!
//! - `direct`: client → fixed upstream. The floor: loopback, hyper on both ends.
//! - `frontdoor`: `FrontDoor::handle` called in-process → fixed upstream. The request path
//!   (decode, route, select, upstream client, encode) without the client-facing listener.
//! - `proxy`: client → Manifold's listener → fixed upstream. Minus `direct`, what the proxy
//!   adds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/fixed_upstream.rs"]
mod fixed_upstream;

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::CONTENT_TYPE;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use manifold::config::Config;
use manifold::frontdoor::FrontDoor;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266","latest"]}"#;

fn request(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header(CONTENT_TYPE, "application/json")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap()
}

/// A kept-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn round_trip(send: &mut SendRequest<Full<Bytes>>, path: &str) -> Bytes {
    send.ready().await.unwrap();
    let resp = send.send_request(request(path)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (upstream, running) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(fixed_upstream::serve(
            listener,
            fixed_upstream::Answers::new(1),
        ));
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntx_store = \":memory:\"\n\
             [[chains]]\nname = \"eth\"\nchain_id = 1\n\
             [[chains.upstreams]]\nname = \"fixed\"\nurl = \"http://{upstream}\"\n\
             [chains.policy.health]\ninterval = \"60s\"\n"
        );
        let config = Config::from_toml(&toml, "bench.toml", &|_| None).unwrap();
        let running = manifold::server::start(config).await.unwrap();
        (upstream, running)
    });

    let mut direct = rt.block_on(connect(upstream));
    let mut proxied = rt.block_on(connect(running.rpc_addr));
    // The first call waits for the upstream's first probe; the answer must be the node's.
    let first = rt.block_on(round_trip(&mut proxied, "/eth"));
    assert!(
        first.starts_with(br#"{"jsonrpc":"2.0","id":1,"result":"0x21e19e0c9bab2400000""#),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let front = FrontDoor::new(
        running.snapshot.clone(),
        running.metrics.clone(),
        std::sync::Arc::new(tokio::sync::Semaphore::new(4096)),
    );

    let mut g = c.benchmark_group("round_trip");
    g.bench_function("direct", |b| {
        b.iter(|| rt.block_on(round_trip(&mut direct, "/")))
    });
    g.bench_function("frontdoor", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = front.handle(request("/eth")).await;
                resp.into_body().collect().await.unwrap().to_bytes()
            })
        })
    });
    g.bench_function("proxy", |b| {
        b.iter(|| rt.block_on(round_trip(&mut proxied, "/eth")))
    });
    g.finish();

    drop((direct, proxied));
    rt.block_on(running.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
