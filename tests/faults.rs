//! Broken upstreams: every failure gets a well-formed JSON-RPC error naming the reason, a
//! working upstream takes over, and nothing disturbs unrelated requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":"req-1","method":"eth_blockNumber"}"#;

/// One upstream doing `action`; the proxy's answer.
async fn single(action: impl Fn() -> Action + Send + Sync + 'static, policy: &str) -> Value {
    let up = FakeUpstream::start(move |_, _| action()).await;
    let proxy = start_proxy(&chain_config(&[&up.url], policy)).await;
    HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await
}

fn assert_proxy_error(v: &Value, code: i64, outcome: &str, detail: &str) {
    assert_eq!(v["id"], "req-1", "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["data"]["chain"], "eth", "{v}");
    let attempt = &v["error"]["data"]["attempts"][0];
    assert_eq!(attempt["upstream"], "u0", "{v}");
    assert_eq!(attempt["outcome"], outcome, "{v}");
    assert!(
        attempt["detail"].as_str().unwrap().contains(detail),
        "{detail:?} not in {v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains(detail),
        "{v}"
    );
}

#[tokio::test]
async fn closed_port() {
    // Dead from the start: the first probe takes it out. With nothing healthy left it is
    // still tried as a last resort (the checks may be what is wrong), and fails at once;
    // after `consecutive_failures` such tries its breaker opens and calls are refused.
    let dead = closed_port_url().await;
    let proxy = start_proxy(&chain_config(
        &[&dead],
        "breaker = { consecutive_failures = 2, open_duration = \"1m\" }",
    ))
    .await;
    wait_for_status(&proxy, "u0 unhealthy", |s| {
        upstream_status(s, "u0")["status"] == "unhealthy"
    })
    .await;
    let c = HttpClient::new();
    for _ in 0..2 {
        let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
        assert_proxy_error(&v, -32092, "transport_error", "connect");
    }
    let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(v["error"]["code"], -32091, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no upstream is passing health checks"),
        "{v}"
    );
    assert_eq!(v["error"]["data"]["chain"], "eth");
}

#[tokio::test]
async fn upstream_dies_between_probes() {
    // Healthy at its probe, gone by the request: the request meets the closed port.
    let up = FakeUpstream::ok("1").await;
    let proxy = start_proxy(&chain_config(&[&up.url], "")).await;
    wait_for_status(&proxy, "u0 healthy", |s| {
        upstream_status(s, "u0")["status"] == "healthy"
    })
    .await;
    drop(up);
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(v["error"]["code"], -32092, "{v}");
    let attempt = &v["error"]["data"]["attempts"][0];
    assert_eq!(attempt["outcome"], "transport_error", "{v}");
    let detail = attempt["detail"].as_str().unwrap();
    assert!(
        detail.contains("cannot connect") || detail.contains("connection failed"),
        "{v}"
    );
}

#[tokio::test]
async fn http_500() {
    let v = single(|| Action::Status(500, "oops".into()), "").await;
    assert_proxy_error(&v, -32092, "http_error", "HTTP 500");
}

#[tokio::test]
async fn garbage_body() {
    let v = single(|| Action::Body("<html>502 bad gateway</html>".into()), "").await;
    assert_proxy_error(&v, -32092, "bad_reply", "not a JSON-RPC response");
}

#[tokio::test]
async fn truncated_body() {
    let v = single(
        || Action::Truncate(r#"{"jsonrpc":"2.0","id":1,"result":"0x"#.into()),
        "",
    )
    .await;
    assert_proxy_error(&v, -32092, "transport_error", "connection failed");
}

#[tokio::test]
async fn connection_reset() {
    let v = single(|| Action::Reset, "").await;
    assert_proxy_error(&v, -32092, "transport_error", "connection failed");
}

#[tokio::test]
async fn slow_body_times_out() {
    // The upstream's timeout is 2s in chain_config; its body comes after 10s.
    let v = single(
        || Action::SlowBody(Duration::from_secs(10), "{}".into()),
        "",
    )
    .await;
    assert_proxy_error(&v, -32092, "timeout", "no answer within 2s");
}

#[tokio::test]
async fn request_timeout_bounds_the_whole_request() {
    let v = single(|| Action::Hang, "request_timeout = \"300ms\"").await;
    assert_eq!(v["error"]["code"], -32093, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "request_timeout", "{v}");
    assert_eq!(v["id"], "req-1");
}

#[tokio::test]
async fn rate_limited() {
    let v = single(|| Action::TooMany(1), "").await;
    assert_proxy_error(&v, -32094, "rate_limited", "HTTP 429");
}

#[tokio::test]
async fn gzip_answers_are_decoded() {
    let v = single(|| Action::GzipResult(r#""0x99""#.into()), "").await;
    assert_eq!(v["result"], "0x99", "{v}");
}

#[tokio::test]
async fn failover_to_the_next_upstream_on_each_fault() {
    let faults: Vec<fn() -> Action> = vec![
        || Action::Status(503, String::new()),
        || Action::Body("nope".into()),
        || Action::Reset,
        || Action::TooMany(1),
    ];
    for fault in faults {
        let bad = FakeUpstream::start(move |_, _| fault()).await;
        let good = FakeUpstream::ok(r#""0x10""#).await;
        let proxy = start_proxy(&chain_config(&[&bad.url, &good.url], "")).await;
        let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await;
        assert_eq!(v["result"], "0x10", "{v}");
        assert_eq!((bad.hits(), good.hits()), (1, 1));
    }
}

#[tokio::test]
async fn node_errors_are_answers_not_failures() {
    let first = FakeUpstream::start(|_, _| {
        Action::Error(r#"{"code":3,"message":"execution reverted","data":"0x08c379a0"}"#.into())
    })
    .await;
    let second = FakeUpstream::ok("1").await;
    let proxy = start_proxy(&chain_config(&[&first.url, &second.url], "")).await;
    let (_, text) = HttpClient::new().post(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(
        text,
        r#"{"jsonrpc":"2.0","id":"req-1","error":{"code":3,"message":"execution reverted","data":"0x08c379a0"}}"#
    );
    assert_eq!(
        (first.hits(), second.hits()),
        (1, 0),
        "not retried elsewhere"
    );
}

#[tokio::test]
async fn max_attempts_bounds_failover() {
    let a = FakeUpstream::start(|_, _| Action::Status(502, String::new())).await;
    let b = FakeUpstream::start(|_, _| Action::Status(502, String::new())).await;
    let c = FakeUpstream::ok("1").await;
    let proxy = start_proxy(&chain_config(
        &[&a.url, &b.url, &c.url],
        "retry = { max_attempts = 2 }",
    ))
    .await;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(v["error"]["code"], -32092, "{v}");
    assert_eq!(v["error"]["data"]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(c.hits(), 0);
}

#[tokio::test]
async fn a_hung_upstream_does_not_delay_other_requests() {
    let hung = FakeUpstream::start(|_, _| Action::Hang).await;
    let fast = FakeUpstream::ok(r#""0x1""#).await;
    let cfg = format!(
        "[[chains]]\nname = \"slow\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"h\"\nurl = \"{}\"\ntimeout = \"30s\"\n\
         [[chains]]\nname = \"fast\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"f\"\nurl = \"{}\"\n",
        hung.url, fast.url
    );
    let proxy = start_proxy(&cfg).await;
    let c = HttpClient::new();
    let slow_url = rpc_url(&proxy, "/slow");
    let arrived = hung.next_request();
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.post(&slow_url, CALL).await }
    });
    arrived.await;
    // While that request hangs, 200 others on the same proxy complete.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (c, url) = (c.clone(), rpc_url(&proxy, "/fast"));
        tasks.push(tokio::spawn(async move {
            c.rpc(
                &url,
                &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"web3_clientVersion"}}"#),
            )
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let v = t.await.unwrap();
        assert_eq!(v["id"], i, "{v}");
        assert_eq!(v["result"], "0x1", "{v}");
    }
    assert!(!slow.is_finished(), "the hung request is still waiting");
    slow.abort();
}

#[tokio::test]
async fn batch_items_fail_independently() {
    let up = FakeUpstream::start(|req, _| match req["method"].as_str() {
        Some("good") => Action::Result("1".into()),
        Some("broken") => Action::Status(500, String::new()),
        _ => Action::Error(r#"{"code":-32601,"message":"no such method"}"#.into()),
    })
    .await;
    let proxy = start_proxy(&chain_config(&[&up.url], "")).await;
    let v = HttpClient::new()
        .rpc(
            &rpc_url(&proxy, "/eth"),
            r#"[{"jsonrpc":"2.0","id":1,"method":"good"},{"jsonrpc":"2.0","id":2,"method":"broken"},
                {"jsonrpc":"2.0","id":3,"method":"other"},{"jsonrpc":"2.0","id":4,"method":"good"}]"#,
        )
        .await;
    assert_eq!(v[0]["result"], 1);
    assert_eq!(v[1]["error"]["code"], -32092);
    assert_eq!(v[2]["error"]["code"], -32601);
    assert_eq!(v[3]["result"], 1);
}

#[tokio::test]
async fn large_answers_pass_through_unchanged() {
    // 24 MB of result: bigger than the 21 MB eth_getLogs answer of the transparency test.
    let big: String = format!("\"0x{}\"", "ab".repeat(12 * 1024 * 1024));
    let expected = big.clone();
    let up = FakeUpstream::start(move |_, _| Action::Result(big.clone())).await;
    let proxy = start_proxy(&chain_config(&[&up.url], "")).await;
    let (_, text) = HttpClient::new().post(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(
        text.len(),
        expected.len() + r#"{"jsonrpc":"2.0","id":"req-1","result":}"#.len()
    );
    assert!(text.ends_with(&format!("{expected}}}")));
}

#[tokio::test]
async fn readyz_reports_a_chain_without_usable_upstreams() {
    let dead = closed_port_url().await;
    let proxy = start_proxy(&chain_config(&[&dead], "")).await;
    let c = HttpClient::new();
    wait_for_status(&proxy, "u0 unhealthy", |s| {
        upstream_status(s, "u0")["status"] == "unhealthy"
    })
    .await;
    let (status, body) = c.get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("chain `eth` has no usable upstream"), "{v}");
    assert!(
        reason.contains("u0: unhealthy") && reason.contains("cannot connect"),
        "{v}"
    );
    c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    // Tried anyway as a last resort: the client gets the real failure.
    assert!(metrics.contains(r#"manifold_requests_total{chain="eth",method="eth_blockNumber",outcome="upstream_failed"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"manifold_upstream_healthy{chain="eth",upstream="u0"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_millis(300),
            Box::new(Action::Result("\"done\"".into())),
        )
    })
    .await;
    let proxy = start_proxy(&chain_config(&[&up.url], "")).await;
    let url = rpc_url(&proxy, "/eth");
    let arrived = up.next_request();
    let inflight = tokio::spawn(async move { HttpClient::new().rpc(&url, CALL).await });
    arrived.await;
    proxy.shutdown().await;
    let v = inflight.await.unwrap();
    assert_eq!(v["result"], "done", "{v}");
}

#[tokio::test]
async fn method_filters_route_around_upstreams() {
    let a = FakeUpstream::ok("\"a\"").await;
    let b = FakeUpstream::ok("\"b\"").await;
    let cfg = format!(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n\
         [[chains.upstreams]]\nname = \"a\"\nurl = \"{}\"\nmethods = {{ deny = [\"debug_*\"] }}\n\
         [[chains.upstreams]]\nname = \"b\"\nurl = \"{}\"\nmethods = {{ allow = [\"debug_*\"] }}\n",
        a.url, b.url
    );
    let proxy = start_proxy(&cfg).await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    assert_eq!(
        c.call(&url, "debug_traceTransaction", json!(["0x1"])).await["result"],
        "b"
    );
    assert_eq!(c.call(&url, "eth_call", json!([])).await["result"], "a");
    let cfg = format!(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"a\"\nurl = \"{}\"\nmethods = {{ deny = [\"trace_*\"] }}\n",
        a.url
    );
    let proxy = start_proxy(&cfg).await;
    let v = c
        .call(&rpc_url(&proxy, "/eth"), "trace_block", json!([]))
        .await;
    assert_eq!(v["error"]["code"], -32091, "{v}");
}

#[tokio::test]
async fn per_upstream_headers_and_url_credentials_are_sent() {
    let up = FakeUpstream::ok("1").await;
    let url = up.url.replace("http://", "http://alice:p%40ss@");
    let cfg = format!(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"a\"\nurl = \"{url}\"\n\
         headers = {{ x-api-key = \"k-123\" }}\n"
    );
    let proxy = start_proxy(&cfg).await;
    HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    let h = up.last_headers();
    assert_eq!(h["x-api-key"], "k-123");
    // base64("alice:p@ss")
    assert_eq!(h["authorization"], "Basic YWxpY2U6cEBzcw==");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["accept-encoding"], "gzip");
    let (_, status) = HttpClient::new().get(&admin_url(&proxy, "/status")).await;
    assert!(
        !status.contains("p%40ss") && !status.contains("alice") && !status.contains("k-123"),
        "{status}"
    );
}

#[tokio::test]
async fn shutdown_is_bounded_by_shutdown_timeout() {
    let hung = FakeUpstream::start(|_, _| Action::Hang).await;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_timeout = \"300ms\"\n{}",
        chain_config(&[&hung.url], "")
    );
    let proxy = start_proxy(&cfg).await;
    let url = rpc_url(&proxy, "/eth");
    let arrived = hung.next_request();
    let inflight = tokio::spawn(async move { HttpClient::new().post(&url, CALL).await });
    arrived.await;
    tokio::time::timeout(Duration::from_secs(10), proxy.shutdown())
        .await
        .expect("shutdown gives up on the hung request after shutdown_timeout");
    inflight.abort();
}

/// An upstream slower than the request's whole budget is cut off at the deadline, and those
/// timeouts count against it: its breaker opens, and requests move to the healthy upstream.
/// (Hedging off: a hedge would answer these calls from the healthy upstream at once.)
#[tokio::test]
async fn attempts_end_at_the_request_deadline_and_count_against_the_upstream() {
    let hung = FakeUpstream::start(|_, _| Action::Hang).await;
    let good = FakeUpstream::ok(r#""0x1""#).await;
    let cfg = format!(
        "[[chains]]\nname = \"eth\"\nchain_id = 31337\n\
         [[chains.upstreams]]\nname = \"hung\"\nurl = \"{}\"\ntimeout = \"60s\"\n\
         [[chains.upstreams]]\nname = \"good\"\nurl = \"{}\"\ntier = \"secondary\"\n\
         [chains.policy]\nrequest_timeout = \"300ms\"\n\
         breaker = {{ consecutive_failures = 3 }}\nhedge = {{ delay = \"off\" }}\n",
        hung.url, good.url
    );
    let proxy = start_proxy(&cfg).await;
    let c = HttpClient::new();
    for _ in 0..3 {
        let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
        assert_eq!(v["error"]["code"], -32093, "{v}");
        assert_eq!(
            v["error"]["data"]["attempts"][0]["outcome"], "timeout",
            "{v}"
        );
    }
    let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(
        v["result"], "0x1",
        "the hung upstream's breaker is open: {v}"
    );
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(
            r#"manifold_upstream_requests_total{chain="eth",upstream="hung",outcome="timeout"} 3"#
        ),
        "{metrics}"
    );
}

/// A 4xx the request itself caused: the node's JSON-RPC answer passes through; without
/// one, other upstreams may try, and nobody is marked as failing.
#[tokio::test]
async fn client_caused_http_errors_are_not_held_against_upstreams() {
    let with_body = FakeUpstream::start(|req, _| {
        let id = req["id"].clone();
        Action::Status(400, format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32602,"message":"invalid argument 0"}}}}"#))
    })
    .await;
    let second = FakeUpstream::ok("1").await;
    let proxy = start_proxy(&chain_config(&[&with_body.url, &second.url], "")).await;
    let (_, text) = HttpClient::new().post(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(
        text,
        r#"{"jsonrpc":"2.0","id":"req-1","error":{"code":-32602,"message":"invalid argument 0"}}"#
    );
    assert_eq!(second.hits(), 0);

    let too_large_a = FakeUpstream::start(|_, _| Action::Status(413, "too large".into())).await;
    let too_large_b = FakeUpstream::start(|_, _| Action::Status(413, "too large".into())).await;
    let proxy = start_proxy(&chain_config(&[&too_large_a.url, &too_large_b.url], "")).await;
    let c = HttpClient::new();
    for _ in 0..5 {
        let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
        assert_eq!(v["error"]["code"], -32092, "{v}");
        assert_eq!(
            v["error"]["data"]["attempts"][1]["outcome"], "rejected",
            "{v}"
        );
    }
    let (status, body) = c.get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(
        status, 200,
        "rejections do not make upstreams unusable: {body}"
    );
}

/// A transaction is not sent to a second upstream when the first may have received it.
#[tokio::test]
async fn transactions_are_not_repeated_after_an_ambiguous_failure() {
    const SEND: &str =
        r#"{"jsonrpc":"2.0","id":9,"method":"eth_sendRawTransaction","params":["0x02"]}"#;
    let failing = FakeUpstream::start(|_, _| Action::Status(503, String::new())).await;
    let second = FakeUpstream::ok(r#""0xhash""#).await;
    let proxy = start_proxy(&chain_config(&[&failing.url, &second.url], "")).await;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), SEND).await;
    assert_eq!(v["error"]["code"], -32092, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "outcome_unknown", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may have reached a node"),
        "{v}"
    );
    assert_eq!(second.hits(), 0);
    // When the first upstream certainly never got it (connection refused), the next one may.
    let dead = closed_port_url().await;
    let proxy = start_proxy(&chain_config(&[&dead, &second.url], "")).await;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), SEND).await;
    assert_eq!(v["result"], "0xhash", "{v}");
    // Reads are repeated as before.
    let proxy = start_proxy(&chain_config(&[&failing.url, &second.url], "")).await;
    let v = HttpClient::new().rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(v["result"], "0xhash", "{v}");
}

/// "This node cannot answer now" errors move the call on and count against the node; if
/// every upstream says so, the client gets the node's own error, unchanged.
#[tokio::test]
async fn node_cannot_answer_errors_fail_over() {
    const BEHIND: &str = r#"{"code":-32000,"message":"header not found"}"#;
    let behind = FakeUpstream::start(|_, _| Action::Error(BEHIND.into())).await;
    let good = FakeUpstream::ok(r#""0x5""#).await;
    let proxy = start_proxy(&chain_config(&[&behind.url, &good.url], "")).await;
    let c = HttpClient::new();
    let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(v["result"], "0x5", "{v}");
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    assert!(
        metrics.contains(
            r#"manifold_upstream_requests_total{chain="eth",upstream="u0",outcome="node_error"} 1"#
        ),
        "{metrics}"
    );

    let behind2 = FakeUpstream::start(|_, _| Action::Error(BEHIND.into())).await;
    let proxy = start_proxy(&chain_config(&[&behind.url, &behind2.url], "")).await;
    let (_, text) = c.post(&rpc_url(&proxy, "/eth"), CALL).await;
    assert_eq!(
        text,
        format!(r#"{{"jsonrpc":"2.0","id":"req-1","error":{BEHIND}}}"#)
    );
}

/// A rate limit sent as a JSON-RPC error parks the upstream like an HTTP 429.
#[tokio::test]
async fn rate_limit_errors_in_json_rpc_park_the_upstream() {
    let limited = FakeUpstream::start(|_, _| {
        Action::Error(r#"{"code":-32005,"message":"limit exceeded"}"#.into())
    })
    .await;
    let good = FakeUpstream::ok(r#""0x5""#).await;
    let proxy = start_proxy(&chain_config(&[&limited.url, &good.url], "")).await;
    let c = HttpClient::new();
    for _ in 0..5 {
        let v = c.rpc(&rpc_url(&proxy, "/eth"), CALL).await;
        assert_eq!(v["result"], "0x5", "{v}");
    }
    assert_eq!(limited.hits(), 1, "parked after the first");
}

/// A call the node cannot read (a lone surrogate in `params`) gets the spec's answer with a
/// null id. That is the node's answer to the call: passed on, never held against the
/// upstream. A batch of them once opened every breaker and turned `/readyz` to 503.
#[tokio::test]
async fn a_call_the_node_cannot_read_takes_no_upstream_out() {
    let refuse = || {
        Action::Body(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}"#
                .into(),
        )
    };
    let a = FakeUpstream::start(move |_, _| refuse()).await;
    let b = FakeUpstream::start(move |_, _| refuse()).await;
    let proxy = start_proxy(&chain_config(&[&a.url, &b.url], "")).await;
    // Twelve different calls (identical ones would share one upstream call).
    let items: Vec<String> = (0..12)
        .map(|i| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["\ud800",{i}]}}"#)
        })
        .collect();
    let batch = format!("[{}]", items.join(","));
    let (status, text) = HttpClient::new()
        .post(&rpc_url(&proxy, "/eth"), batch)
        .await;
    assert_eq!(status, 200);
    let answers: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(answers.len(), 12);
    for v in &answers {
        assert_eq!(v["error"]["code"], -32600, "{v}");
    }
    // One attempt each, and both upstreams still in: breakers closed, /readyz ready.
    assert_eq!(a.hits() + b.hits(), 12);
    let (ready, body) = HttpClient::new().get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(ready, 200, "{body}");
    let (_, status) = HttpClient::new().get(&admin_url(&proxy, "/status")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    for u in ["u0", "u1"] {
        assert_eq!(
            upstream_status(&status, u)["breaker"]["state"],
            "closed",
            "{status}"
        );
    }
}

/// An upstream whose words echo the request URL, key included: the key is never shown, not
/// in a client's error `data`, not in a node error passed on, not in `/status`.
#[tokio::test]
async fn an_upstreams_words_never_show_its_secrets() {
    const KEY: &str = "k3yQ8x7Zp2Lm9Vn4wR";
    std::env::set_var("MANIFOLD_FAULTS_TEST_KEY", KEY);
    let echo = format!("upstream error for https://rpc.example.io/v2/{KEY}: overloaded");
    let e = echo.clone();
    let up = FakeUpstream::start(move |req, _| match req["method"].as_str() {
        Some("eth_getBalance") => Action::Status(
            500,
            json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32603, "message": e.clone()}})
                .to_string(),
        ),
        _ => Action::Error(json!({"code": -32603, "message": e.clone()}).to_string()),
    })
    .await;
    *up.probes.error_message.lock().unwrap() = Some(echo);
    let url = format!("{}/v2/${{MANIFOLD_FAULTS_TEST_KEY}}", up.url);
    let proxy = start_proxy(&chain_config(&[&url], "")).await;
    wait_for_status(&proxy, "u0 unhealthy", |s| {
        upstream_status(s, "u0")["status"] == "unhealthy"
    })
    .await;
    let c = HttpClient::new();
    let rpc = rpc_url(&proxy, "/eth");
    let failed = c
        .rpc(
            &rpc,
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x01"]}"#,
        )
        .await;
    assert!(
        failed["error"]["data"]["attempts"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("/v2/***"),
        "{failed}"
    );
    let node_error = c
        .rpc(
            &rpc,
            r#"{"jsonrpc":"2.0","id":2,"method":"eth_call","params":[{}]}"#,
        )
        .await;
    assert!(
        node_error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v2/***"),
        "{node_error}"
    );
    let (_, status) = c.get(&admin_url(&proxy, "/status")).await;
    assert!(status.contains("/v2/***"), "{status}");
    for shown in [failed.to_string(), node_error.to_string(), status] {
        assert!(!shown.contains(KEY), "the key shows in {shown}");
    }
}
