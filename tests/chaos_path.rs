//! The fault path (`tests/support/fault_path.rs`) in front of a real anvil node: each mode
//! does what it says, as a plain HTTP client sees it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::fault_path::{Fault, FaultPath};
use support::Anvil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

type Raw = Client<HttpConnector, Full<Bytes>>;

fn client() -> Raw {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a client saw of one POST. The error texts are read through `Debug`, in failure
/// messages.
#[derive(Debug)]
#[allow(dead_code)]
enum Seen {
    Answer(StatusCode, HeaderMap, String),
    /// The head arrived, the body did not.
    BodyError(StatusCode, HeaderMap, String),
    /// No response at all.
    NoResponse {
        connect: bool,
        kind: Option<io::ErrorKind>,
        error: String,
    },
}

impl Seen {
    fn answer(self) -> (StatusCode, HeaderMap, String) {
        match self {
            Seen::Answer(s, h, b) => (s, h, b),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn json(self) -> Value {
        let (status, _, body) = self.answer();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }
}

/// The error and its sources, and the first I/O error kind among them.
fn describe(e: &(dyn std::error::Error + 'static)) -> (String, Option<io::ErrorKind>) {
    let mut text = e.to_string();
    let mut kind = e.downcast_ref::<io::Error>().map(io::Error::kind);
    let mut cur = e.source();
    while let Some(err) = cur {
        text = format!("{text}: {err}");
        kind = kind.or_else(|| err.downcast_ref::<io::Error>().map(io::Error::kind));
        cur = err.source();
    }
    (text, kind)
}

async fn post_with(client: &Raw, url: &str, body: &str) -> Seen {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            let (error, kind) = describe(&e);
            return Seen::NoResponse {
                connect: e.is_connect(),
                kind,
                error,
            };
        }
    };
    let (head, body) = resp.into_parts();
    match body.collect().await {
        Ok(b) => Seen::Answer(
            head.status,
            head.headers,
            String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        ),
        Err(e) => Seen::BodyError(head.status, head.headers, describe(&e).0),
    }
}

/// One POST on a fresh client (a fresh connection).
async fn post(url: &str, body: &str) -> Seen {
    post_with(&client(), url, body).await
}

fn call(method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": "t-1", "method": method, "params": []}).to_string()
}

/// Every test ends within 30 s, whatever the path does.
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test took over 30s")
}

async fn setup() -> (Anvil, FaultPath) {
    let anvil = Anvil::start().await;
    let path = FaultPath::start(&anvil.url).await;
    (anvil, path)
}

#[tokio::test]
async fn pass_forwards() {
    bounded(async {
        let (_anvil, path) = setup().await;
        let v = post(&path.url(), &call("eth_chainId")).await.json();
        assert_eq!(v["result"], "0x7a69", "{v}");
        assert_eq!(v["id"], "t-1");
        let batch = format!("[{},{}]", call("eth_chainId"), call("net_version"));
        let v = post(&path.url(), &batch).await.json();
        assert_eq!(v[1]["result"], "31337", "{v}");
        assert_eq!((path.received(), path.forwarded()), (2, 2));
    })
    .await;
}

#[tokio::test]
async fn refuse_closes_the_port_and_its_connections_and_pass_reopens_it() {
    bounded(async {
        let (_anvil, path) = setup().await;
        let url = path.url();
        let kept = client();
        post_with(&kept, &url, &call("eth_chainId")).await.json();
        assert_eq!(path.connections(), 1, "the kept-alive connection");
        path.set(Fault::Refuse).await;
        assert_eq!(path.connections(), 0, "existing connections are closed");
        match post(&url, &call("eth_chainId")).await {
            Seen::NoResponse { connect: true, .. } => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
        assert_eq!(path.received(), 1);
        path.set(Fault::Pass).await;
        assert_eq!(path.url(), url);
        let v = post(&url, &call("eth_chainId")).await.json();
        assert_eq!(v["result"], "0x7a69", "{v}");
        assert_eq!((path.received(), path.forwarded()), (2, 2));
    })
    .await;
}

#[tokio::test]
async fn blackhole_holds_until_the_client_gives_up() {
    bounded(async {
        let (_anvil, path) = setup().await;
        path.set(Fault::Blackhole).await;
        let waited = tokio::time::timeout(
            Duration::from_secs(1),
            post(&path.url(), &call("eth_chainId")),
        )
        .await;
        assert!(waited.is_err(), "answered: {waited:?}");
        assert_eq!((path.received(), path.forwarded()), (1, 0));
        // The client has closed its connection: the path's task for it ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        while path.connections() > 0 {
            assert!(
                Instant::now() < deadline,
                "the blackholed connection lingers"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn delay_answers_after_the_delay() {
    bounded(async {
        let (_anvil, path) = setup().await;
        let delay = Duration::from_millis(700);
        path.set(Fault::Delay(delay)).await;
        let start = Instant::now();
        let v = post(&path.url(), &call("eth_chainId")).await.json();
        assert_eq!(v["result"], "0x7a69", "{v}");
        assert!(start.elapsed() >= delay, "took {:?}", start.elapsed());
        assert_eq!(path.forwarded(), 1);
    })
    .await;
}

#[tokio::test]
async fn error_answers_are_not_forwarded() {
    bounded(async {
        let (_anvil, path) = setup().await;
        let url = path.url();

        path.set(Fault::Status503).await;
        let (status, _, body) = post(&url, &call("eth_chainId")).await.answer();
        assert_eq!(status, 503);
        assert!(!body.is_empty() && !body.starts_with('{'), "{body}");

        path.set(Fault::TooMany {
            retry_after_secs: 7,
        })
        .await;
        let (status, headers, _) = post(&url, &call("eth_chainId")).await.answer();
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "7");

        path.set(Fault::NotJson).await;
        let (status, headers, body) = post(&url, &call("eth_chainId")).await.answer();
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/html");
        assert_eq!(body, "<html>bad gateway</html>");

        path.set(Fault::RpcInternalError).await;
        let v = post(&url, &call("eth_chainId")).await.json();
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": "t-1",
                   "error": {"code": -32603, "message": "internal error"}})
        );

        assert_eq!((path.received(), path.forwarded()), (4, 0));
    })
    .await;
}

#[tokio::test]
async fn truncate_sends_half_the_body_and_closes() {
    bounded(async {
        let (_anvil, path) = setup().await;
        path.set(Fault::Truncate).await;
        match post(&path.url(), &call("eth_chainId")).await {
            Seen::BodyError(status, _, _) => assert_eq!(status, 200),
            other => panic!("expected a body error, got {other:?}"),
        }
        // On the wire: the whole answer's length is announced, half of it arrives.
        let mut tcp = tokio::net::TcpStream::connect(path.url().trim_start_matches("http://"))
            .await
            .unwrap();
        let body = call("eth_chainId");
        let req = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        let got = String::from_utf8(got).unwrap();
        let (head, sent) = got.split_once("\r\n\r\n").unwrap();
        let announced: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length: {head}"))
            .parse()
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(sent.len(), announced / 2, "{got}");
        assert!(!sent.is_empty());
        assert_eq!(path.forwarded(), 2);
    })
    .await;
}

#[tokio::test]
async fn reset_resets_the_connection() {
    bounded(async {
        let (_anvil, path) = setup().await;
        path.set(Fault::Reset).await;
        match post(&path.url(), &call("eth_chainId")).await {
            Seen::NoResponse {
                connect: false,
                kind: Some(io::ErrorKind::ConnectionReset),
                ..
            } => {}
            other => panic!("expected a connection reset, got {other:?}"),
        }
        assert_eq!((path.received(), path.forwarded()), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn wrong_chain_and_lag_rewrite_their_answer_only() {
    bounded(async {
        let (anvil, path) = setup().await;
        let url = path.url();
        let mine = json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": ["0xa"]});
        post(&anvil.url, &mine.to_string()).await.json();

        path.set(Fault::WrongChain(5)).await;
        assert_eq!(
            post(&url, &call("eth_chainId")).await.json()["result"],
            "0x5"
        );
        assert_eq!(
            post(&url, &call("eth_blockNumber")).await.json()["result"],
            "0xa"
        );

        path.set(Fault::Lag(3)).await;
        assert_eq!(
            post(&url, &call("eth_blockNumber")).await.json()["result"],
            "0x7"
        );
        assert_eq!(
            post(&url, &call("eth_chainId")).await.json()["result"],
            "0x7a69"
        );
        let batch = format!("[{}]", call("eth_blockNumber"));
        assert_eq!(
            post(&url, &batch).await.json()[0]["result"],
            "0xa",
            "a batch passes unchanged"
        );
        path.set(Fault::Lag(100)).await;
        assert_eq!(
            post(&url, &call("eth_blockNumber")).await.json()["result"],
            "0x0"
        );
        assert_eq!(path.forwarded(), path.received());
    })
    .await;
}

#[tokio::test]
async fn dropping_the_path_ends_its_connections_and_closes_the_port() {
    bounded(async {
        let (_anvil, path) = setup().await;
        let url = path.url();
        path.set(Fault::Blackhole).await;
        let held = tokio::spawn({
            let url = url.clone();
            async move { post(&url, &call("eth_chainId")).await }
        });
        while path.received() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(path);
        match held.await.unwrap() {
            Seen::NoResponse { connect: false, .. } => {}
            other => panic!("expected the held request to fail, got {other:?}"),
        }
        match post(&url, &call("eth_chainId")).await {
            Seen::NoResponse { connect: true, .. } => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
    })
    .await;
}
