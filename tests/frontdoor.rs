//! The JSON-RPC front door over real HTTP: limits, errors, notifications, ids, protocols.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use support::*;

async fn proxy_with(result: &str, server: &str) -> (FakeUpstream, manifold::server::Running) {
    let up = FakeUpstream::ok(result).await;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n{}",
        chain_config(&[&up.url], "")
    );
    let proxy = start_proxy(&cfg).await;
    (up, proxy)
}

#[tokio::test]
async fn ids_of_every_kind_come_back_byte_for_byte() {
    let (_up, proxy) = proxy_with(r#""0x1""#, "").await;
    let c = HttpClient::new();
    for id in [
        "0",
        "-5",
        "123456789012345678901234567890",
        "1.50",
        r#""""#,
        r#""a\"b\u00e9""#,
        "null",
    ] {
        let (status, text) = c
            .post(
                &rpc_url(&proxy, "/eth"),
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"web3_clientVersion"}}"#),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            text,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x1"}}"#)
        );
    }
}

#[tokio::test]
async fn spec_errors() {
    let (up, proxy) = proxy_with("1", "").await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    let cases = [
        (
            r#"{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]"#,
            -32700,
        ),
        ("[]", -32600),
        ("[", -32700),
        (r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#, -32600),
        ("42", -32600),
    ];
    for (body, code) in cases {
        let v = c.rpc(&url, body).await;
        assert_eq!(v["error"]["code"], code, "{body} -> {v}");
        assert!(v["id"].is_null(), "{v}");
    }
    let v = c.rpc(&url, "[1,2,3]").await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["error"]["code"] == -32600));
    assert_eq!(up.hits(), 0, "nothing invalid reaches an upstream");
}

#[tokio::test]
async fn mixed_batch_as_in_the_spec() {
    let (_up, proxy) = proxy_with("7", "").await;
    let v = HttpClient::new()
        .rpc(
            &rpc_url(&proxy, "/eth"),
            r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"#,
        )
        .await;
    let ids: Vec<Value> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![
            Value::from("1"),
            "2".into(),
            Value::Null,
            "5".into(),
            "9".into()
        ]
    );
    assert_eq!(v[2]["error"]["code"], -32600);
    assert_eq!(v[0]["result"], 7);
}

#[tokio::test]
async fn notifications_get_empty_bodies() {
    let (up, proxy) = proxy_with("1", "").await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    let (status, text) = c
        .post(&url, r#"{"jsonrpc":"2.0","method":"web3_clientVersion"}"#)
        .await;
    assert_eq!((status.as_u16(), text.as_str()), (200, ""));
    let (status, text) = c
        .post(
            &url,
            r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
        )
        .await;
    assert_eq!((status.as_u16(), text.as_str()), (200, ""));
    assert_eq!(up.hits(), 3, "notifications are still delivered");
}

#[tokio::test]
async fn limits_and_http_errors() {
    let (_up, proxy) = proxy_with("1", "max_request_bytes = 1000\nmax_batch_len = 3").await;
    let c = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    // Body limit: 413, whether announced by content-length or not.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":["{}"]}}"#,
        "x".repeat(2000)
    );
    let (status, text) = c.post(&url, big.clone()).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["code"],
        -32600
    );
    // Batch limit: -32600 for the whole batch.
    let item = r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#;
    let v = c.rpc(&url, &format!("[{item},{item},{item},{item}]")).await;
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 3"),
        "{v}"
    );
    assert_eq!(
        c.rpc(&url, &format!("[{item},{item},{item}]"))
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Unknown chain: 404 with a JSON-RPC body naming the served chains.
    let (status, text) = c.post(&rpc_url(&proxy, "/nope"), item).await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], -32090);
    assert_eq!(v["error"]["data"]["chains"][0], "eth");
    // Content type: charset accepted, others refused.
    let (status, _, _) = c
        .request(
            "POST",
            &url,
            &[("content-type", "application/json; charset=UTF-8")],
            item,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = c
        .request("POST", &url, &[("content-type", "text/plain")], item)
        .await;
    assert_eq!(status, 415);
    // Method.
    let (status, headers, _) = c.request("GET", &url, &[], "").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    // The rejections are counted.
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    for reason in [
        "body_too_large",
        "unknown_chain",
        "unsupported_media_type",
        "method_not_allowed",
        "invalid_request",
    ] {
        assert!(
            metrics.contains(&format!(
                "manifold_rejected_requests_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}\n{metrics}"
        );
    }
}

#[tokio::test]
async fn root_path_needs_a_single_chain() {
    let up = FakeUpstream::ok("1").await;
    let cfg = format!(
        "[[chains]]\nname = \"a\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"x\"\nurl = \"{0}\"\n\
         [[chains]]\nname = \"b\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"x\"\nurl = \"{0}\"\n",
        up.url
    );
    let proxy = start_proxy(&cfg).await;
    let c = HttpClient::new();
    let item = r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#;
    assert_eq!(c.post(&rpc_url(&proxy, "/"), item).await.0, 404);
    assert_eq!(c.post(&rpc_url(&proxy, "/a"), item).await.0, 200);
    assert_eq!(c.post(&rpc_url(&proxy, "/b/"), item).await.0, 200);
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let (_up, proxy) = proxy_with(r#""0x2a""#, "").await;
    let v = HttpClient::http2()
        .rpc(
            &rpc_url(&proxy, "/eth"),
            r#"{"jsonrpc":"2.0","id":1,"method":"web3_clientVersion"}"#,
        )
        .await;
    assert_eq!(v["result"], "0x2a");
}

#[tokio::test]
async fn admin_endpoints() {
    let (_up, proxy) = proxy_with("1", "").await;
    let c = HttpClient::new();
    c.rpc(
        &rpc_url(&proxy, "/eth"),
        r#"{"jsonrpc":"2.0","id":1,"method":"web3_clientVersion"}"#,
    )
    .await;
    let (s, body) = c.get(&admin_url(&proxy, "/healthz")).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, r#"{"status":"ok"}"#));
    let (s, body) = c.get(&admin_url(&proxy, "/readyz")).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = c.get(&admin_url(&proxy, "/status")).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["chains"][0]["name"], "eth");
    // The client's call, and maybe the follower's first block (it starts on the first head).
    assert!(
        v["chains"][0]["upstreams"][0]["requests"].as_u64() >= Some(1),
        "{v}"
    );
    let (s, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    assert_eq!(s, 200);
    assert!(
        metrics.contains(
            r#"manifold_requests_total{chain="eth",method="web3_clientVersion",outcome="success"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"manifold_upstream_requests_total{chain="eth",upstream="u0",outcome="success"} "#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "manifold_request_duration_seconds_bucket{chain=\"eth\",method=\"web3_clientVersion\""
        ),
        "{metrics}"
    );
    assert_eq!(c.get(&admin_url(&proxy, "/nope")).await.0, 404);
}

#[tokio::test]
async fn method_labels_are_bounded() {
    let (_up, proxy) = proxy_with("1", "").await;
    let c = HttpClient::new();
    for i in 0..20 {
        c.rpc(
            &rpc_url(&proxy, "/eth"),
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"junk_{i}"}}"#),
        )
        .await;
    }
    let (_, metrics) = c.get(&admin_url(&proxy, "/metrics")).await;
    assert!(!metrics.contains("junk_"), "{metrics}");
    assert!(
        metrics.contains(
            r#"manifold_requests_total{chain="eth",method="other",outcome="success"} 20"#
        ),
        "{metrics}"
    );
}

/// Without a content-length (chunked), the limit is enforced while reading.
#[tokio::test]
async fn chunked_bodies_over_the_limit_get_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, proxy) = proxy_with("1", "max_request_bytes = 1000").await;
    let mut s = tokio::net::TcpStream::connect(proxy.rpc_addr)
        .await
        .unwrap();
    let chunk = "x".repeat(600);
    let req = format!(
        "POST /eth HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(up.hits(), 0);
}
