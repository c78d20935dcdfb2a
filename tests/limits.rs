//! Bounds under hostile load: answers within `max_response_bytes` and the process's
//! `max_buffered_bytes`, who is blamed for a too-large answer, `max_concurrent_calls` shed
//! at once, `max_connections` answered 503.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BLOCK_NUMBER: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#;
const GET_LOGS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0x10"}]}"#;
const MIB: usize = 1024 * 1024;

/// A JSON-RPC answer (id 1) whose result is a string of `n` bytes of `x`.
fn huge_result(n: usize) -> Bytes {
    let mut b = Vec::with_capacity(n + 64);
    b.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"result":""#);
    b.resize(b.len() + n, b'x');
    b.extend_from_slice(br#""}"#);
    Bytes::from(b)
}

/// The same, gzip-compressed: a few kB that inflate to `n`.
fn gzip_bomb(n: usize) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&huge_result(n)).unwrap();
    Bytes::from(enc.finish().unwrap())
}

fn raw(body: &Bytes) -> Action {
    Action::Raw(
        vec![("content-type", "application/json".into())],
        vec![body.clone()],
    )
}

/// A result of `middle` (a JSON string's content, shared) for the request's own id.
fn result_for(req: &Value, middle: &Bytes) -> Action {
    Action::Raw(
        vec![("content-type", "application/json".into())],
        vec![
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":""#,
                req["id"]
            )),
            middle.clone(),
            Bytes::from_static(br#""}"#),
        ],
    )
}

/// The id-1 request's answers replaced by `action`; the rest (a probe's) as a node.
fn answering(
    method: &'static str,
    action: impl Fn() -> Action + Send + Sync + 'static,
) -> impl Fn(&Value, &Bytes) -> Action + Send + Sync + 'static {
    move |req, _| {
        if req["method"] == method {
            action()
        } else {
            Action::Result(r#""0x1""#.into())
        }
    }
}

fn counted(proxy: &manifold::server::Running, upstream: &str, outcome: &str) -> u64 {
    let needle = format!(
        "manifold_upstream_requests_total{{chain=\"eth\",upstream=\"{upstream}\",outcome=\"{outcome}\"}} "
    );
    proxy
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).map(|v| v.parse().unwrap()))
        .unwrap_or(0)
}

fn gauge(proxy: &manifold::server::Running, name: &str) -> f64 {
    proxy
        .metrics
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn an_oversized_endless_or_inflating_answer_to_a_small_call_is_the_upstreams_fault() {
    let bomb = gzip_bomb(16 * MIB);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let big = huge_result(2 * MIB);
    let answers: Vec<(&str, Action)> = vec![
        ("oversized", raw(&big)),
        ("endless", Action::Endless),
        (
            "gzip bomb",
            Action::Raw(
                vec![
                    ("content-type", "application/json".into()),
                    ("content-encoding", "gzip".into()),
                ],
                vec![bomb.clone()],
            ),
        ),
    ];
    for (what, action) in answers {
        let action = std::sync::Mutex::new(Some(action));
        let bad = FakeUpstream::start(answering("eth_blockNumber", move || {
            action.lock().unwrap().take().unwrap_or(Action::Hang)
        }))
        .await;
        let good = FakeUpstream::ok(r#""0x10""#).await;
        let proxy = start_proxy(&chain_config(
            &[&bad.url, &good.url],
            "max_response_bytes = 1048576\nbreaker = { consecutive_failures = 1, open_duration = \"1m\" }",
        ))
        .await;
        let v = HttpClient::new()
            .rpc(&rpc_url(&proxy, "/eth"), BLOCK_NUMBER)
            .await;
        // Failed over to the good upstream; the bad one is blamed (its breaker opened).
        assert_eq!(v["result"], "0x10", "{what}: {v}");
        assert_eq!(counted(&proxy, "u0", "bad_reply"), 1, "{what}");
        let status = HttpClient::new().get(&admin_url(&proxy, "/status")).await.1;
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(
            upstream_status(&status, "u0")["breaker"]["state"],
            "open",
            "{what}: {status}"
        );
        // Nothing of it is held afterwards.
        assert_eq!(
            gauge(&proxy, "manifold_buffered_answer_bytes"),
            0.0,
            "{what}"
        );
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_too_large_answer_to_a_heavy_call_is_the_requests_fault() {
    let big = huge_result(2 * MIB);
    let first = FakeUpstream::start(answering("eth_getLogs", move || raw(&big))).await;
    let second = FakeUpstream::ok("[]").await;
    let proxy = start_proxy(&chain_config(
        &[&first.url, &second.url],
        "max_response_bytes = 1048576\nbreaker = { consecutive_failures = 1, open_duration = \"1m\" }",
    ))
    .await;
    let v = HttpClient::new()
        .rpc(&rpc_url(&proxy, "/eth"), GET_LOGS)
        .await;
    assert_eq!(v["error"]["code"], -32005, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "response_too_large", "{v}");
    assert_eq!(
        v["error"]["data"]["attempts"][0]["outcome"], "too_large",
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_response_bytes (1048576 bytes)"),
        "{v}"
    );
    // Not retried everywhere, not held against the upstream.
    assert_eq!(second.hits(), 0);
    assert_eq!(counted(&proxy, "u0", "too_large"), 1);
    let status = HttpClient::new().get(&admin_url(&proxy, "/status")).await.1;
    let status: Value = serde_json::from_str(&status).unwrap();
    let u0 = upstream_status(&status, "u0");
    assert_eq!(u0["breaker"]["state"], "closed", "{status}");
    assert_eq!(u0["failures"], 0, "{status}");
}

/// POST `body` on a raw connection and return it unread: the answer waits in the proxy.
async fn post_unread(proxy: &manifold::server::Running, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy.rpc_addr).await.unwrap();
    let req = format!(
        "POST /eth HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Read one whole HTTP/1.1 response with a content-length from `s`: (status line, body).
async fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let head_end = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the end of the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = head.lines().next().unwrap().to_string();
    (status, buf[head_end..].to_vec())
}

#[tokio::test]
async fn a_burst_of_large_answers_stays_within_the_buffered_bytes_budget() {
    // Three 100 MB answers under a 128 MiB budget: one is held, the others get a clear
    // error, the small calls of other clients go on, and the memory comes back.
    let middle = Bytes::from(vec![b'x'; 100 * MIB]);
    let up = FakeUpstream::start(move |req, _| {
        if req["method"] == "eth_getLogs" {
            result_for(req, &middle)
        } else {
            Action::Result(r#""0x1""#.into())
        }
    })
    .await;
    let proxy = start_proxy(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_buffered_bytes = {}\n{}",
        128 * MIB,
        chain_config(&[&up.url], &format!("max_response_bytes = {}", 110 * MIB))
    ))
    .await;
    // The first client does not read: its answer stays in the proxy, holding the budget.
    let mut slow = post_unread(&proxy, GET_LOGS).await;
    let held = async {
        // All of it but the first few kB, which every answer has for free.
        while gauge(&proxy, "manifold_buffered_answer_bytes") < (99 * MIB) as f64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the first answer is held");
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    // Two other scans (one identical to the first, still in flight, would share its
    // upstream call and its answer).
    let (logs_a, logs_b) = (
        GET_LOGS.replace("0x10", "0x11"),
        GET_LOGS.replace("0x10", "0x12"),
    );
    let (a, b, small) = tokio::join!(c.rpc(&url, &logs_a), c.rpc(&url, &logs_b), async {
        c.rpc(&url, BLOCK_NUMBER).await
    });
    for v in [&a, &b] {
        assert_eq!(v["error"]["code"], -32005, "{}", v["error"]);
        assert_eq!(v["error"]["data"]["reason"], "memory_budget", "{v}");
        assert_eq!(
            v["error"]["data"]["attempts"][0]["outcome"], "over_budget",
            "{v}"
        );
    }
    assert_eq!(small["result"], "0x1", "{small}");
    assert!(gauge(&proxy, "manifold_buffered_answer_bytes") <= (128 * MIB) as f64);
    // The slow client gets its whole answer, then the budget is free again.
    let (status, body) = read_response(&mut slow).await;
    assert!(status.contains("200"), "{status}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["result"].as_str().map(str::len), Some(100 * MIB));
    drop(slow);
    let v = c.rpc(&url, GET_LOGS).await;
    assert_eq!(
        v["result"].as_str().map(str::len),
        Some(100 * MIB),
        "{}",
        v["error"]
    );
    drop(v);
    assert_eq!(gauge(&proxy, "manifold_buffered_answer_bytes"), 0.0);
    // The upstream was never blamed for any of it.
    assert_eq!(counted(&proxy, "u0", "bad_reply"), 0);
}

#[tokio::test]
async fn calls_over_max_concurrent_calls_are_shed_at_once() {
    // Log scans on this upstream take five seconds: time for everything below.
    let up = FakeUpstream::start(answering("eth_getLogs", move || {
        Action::Delay(
            Duration::from_secs(5),
            Box::new(Action::Result("[]".into())),
        )
    }))
    .await;
    let proxy = start_proxy(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_concurrent_calls = 4\n{}",
        chain_config(&[&up.url], "")
    ))
    .await;
    let url = rpc_url(&proxy, "/eth");
    let c = HttpClient::new();
    // Two calls in flight, held by the upstream.
    let busy = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { tokio::join!(c.rpc(&url, GET_LOGS), c.rpc(&url, GET_LOGS)) })
    };
    let in_flight = async {
        while gauge(&proxy, "manifold_calls_in_flight") < 2.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("two calls in flight");
    // A batch's items take a permit each while they run: two run, the third is shed with
    // -32005 while the two calls still wait.
    let batch = format!(
        "[{GET_LOGS},{},{}]",
        GET_LOGS.replace("\"id\":1", "\"id\":2"),
        GET_LOGS.replace("\"id\":1", "\"id\":3")
    );
    let batch = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { c.rpc(&url, &batch).await })
    };
    let four = async {
        while gauge(&proxy, "manifold_calls_in_flight") < 4.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), four)
        .await
        .expect("the batch's items in flight");
    // One more request: 503 at once, with Retry-After.
    let (status, headers, body) = c
        .request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            BLOCK_NUMBER,
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], -32005, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "overloaded", "{v}");
    assert!(
        !busy.is_finished(),
        "the shed call did not wait for the others"
    );
    let (a, b) = busy.await.unwrap();
    assert_eq!(
        (&a["result"], &b["result"]),
        (&Value::Array(vec![]), &Value::Array(vec![]))
    );
    let batch = batch.await.unwrap();
    let items = batch.as_array().unwrap();
    assert_eq!(items.len(), 3);
    let shed: Vec<_> = items
        .iter()
        .filter(|i| i["error"]["data"]["reason"] == "overloaded")
        .collect();
    assert_eq!(shed.len(), 1, "{batch}");
    assert!(proxy
        .metrics
        .render()
        .contains("manifold_rejected_requests_total{reason=\"overloaded\"} 2"));
    // Free again: served.
    assert_eq!(c.rpc(&url, BLOCK_NUMBER).await["result"], "0x1");
}

#[tokio::test]
async fn connections_over_max_connections_are_answered_503_and_closed() {
    let up = FakeUpstream::ok(r#""0x1""#).await;
    let proxy = start_proxy(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_connections = 2\n{}",
        chain_config(&[&up.url], "")
    ))
    .await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(proxy.rpc_addr).await.unwrap(),
        TcpStream::connect(proxy.rpc_addr).await.unwrap(),
    ];
    let open = async {
        while gauge(&proxy, "manifold_open_connections") < 2.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), open)
        .await
        .expect("two connections open");
    let mut third = post_unread(&proxy, BLOCK_NUMBER).await;
    let (status, body) = read_response(&mut third).await;
    assert!(status.contains("503"), "{status}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["data"]["reason"], "max_connections", "{v}");
    // And closed.
    let mut rest = Vec::new();
    assert_eq!(third.read_to_end(&mut rest).await.unwrap_or(0), 0);
    assert!(proxy
        .metrics
        .render()
        .contains("manifold_rejected_requests_total{reason=\"max_connections\"} 1"));
    // The admin listener is not limited by it.
    assert_eq!(
        HttpClient::new()
            .get(&admin_url(&proxy, "/healthz"))
            .await
            .0,
        200
    );
    // One closed: a new one is served (once the proxy has seen the close).
    drop(held);
    let served = async {
        loop {
            let mut s = post_unread(&proxy, BLOCK_NUMBER).await;
            let (status, body) = read_response(&mut s).await;
            if status.contains("200") {
                return serde_json::from_slice::<Value>(&body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let v = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("served after a close");
    assert_eq!(v["result"], "0x1", "{v}");
}
