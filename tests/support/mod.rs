//! Test support: a real anvil node, scriptable fake upstreams, an in-process Manifold and a
//! small HTTP client. Everything listens on 127.0.0.1 with OS-chosen ports.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod bitcoind;
pub mod fault_path;
pub mod logger;
pub mod redis;
pub mod tcp_path;
pub mod two_paths;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use manifold::config::Config;
use manifold::server::Running;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------
// anvil

/// A real anvil node on a free port, killed when dropped.
pub struct Anvil {
    child: Child,
    pub url: String,
    /// Every address it listens on (one per `--host`, each with its own port), the first
    /// being `url`'s.
    pub addrs: Vec<String>,
}

pub fn anvil_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ANVIL_BIN") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/anvil");
    if local.exists() {
        return local;
    }
    if let Some(p) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("anvil"))
        .find(|p| p.exists())
    {
        return p;
    }
    panic!(
        "anvil not found: run `bash .ci/run` once, or `npm install --prefix .tools @foundry-rs/anvil-linux-amd64`, \
         or set ANVIL_BIN"
    );
}

impl Anvil {
    pub async fn start() -> Anvil {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Anvil {
        let mut child = Command::new(anvil_bin())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn anvil");
        let stdout = child.stdout.take().expect("anvil stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addrs = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read anvil stdout") {
                // "Listening on 127.0.0.1:36639, 10.0.0.1:38847": a port per `--host`.
                if let Some(addrs) = line.trim().strip_prefix("Listening on ") {
                    return addrs
                        .split(", ")
                        .map(str::to_string)
                        .collect::<Vec<String>>();
                }
            }
            panic!("anvil exited without listening");
        })
        .await
        .expect("anvil did not start within 30s");
        // Keep draining stdout so that anvil never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Anvil {
            child,
            url: format!("http://{}", addrs[0]),
            addrs,
        }
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

// ---------------------------------------------------------------------------------------
// fake upstreams

/// What a fake upstream does with one request.
pub enum Action {
    /// 200 with this body.
    Body(String),
    /// A JSON-RPC result for the request's id (the value is JSON text).
    Result(String),
    /// A JSON-RPC error object for the request's id (JSON text).
    Error(String),
    /// This status and body.
    Status(u16, String),
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
    /// 200, a gzip-compressed JSON-RPC result for the request's id.
    GzipResult(String),
    /// Headers at once, body after a delay.
    SlowBody(Duration, String),
    /// Wait, then answer.
    Delay(Duration, Box<Action>),
    /// Never answer.
    Hang,
    /// Drop the connection without an answer.
    Reset,
    /// Headers and part of the body, then drop the connection.
    Truncate(String),
    /// 200 with these headers and a body of these chunks, as they are, with its
    /// content-length (a precomputed gzip bomb; a 100 MB answer shared by every request).
    Raw(Vec<(&'static str, String)>, Vec<Bytes>),
    /// 200, the start of a JSON-RPC result for the request's id, then string content
    /// forever (chunked).
    Endless,
}

type Script = dyn Fn(&serde_json::Value, &Bytes) -> Action + Send + Sync;

/// How a fake upstream answers Manifold's health probes (requests with id "health"), which
/// are answered apart from the script and not counted in `hits` (as are the canonical
/// window's block requests, ids "canonical-N", answered `null`).
pub struct ProbeAnswers {
    pub chain_id: std::sync::atomic::AtomicU64,
    pub head: std::sync::atomic::AtomicU64,
    pub syncing: std::sync::atomic::AtomicBool,
    /// Probes answered 503.
    pub failing: std::sync::atomic::AtomicBool,
    /// Probes answered with a JSON-RPC error with this message.
    pub error_message: std::sync::Mutex<Option<String>>,
    /// Probe requests (two or three per probe).
    pub count: AtomicUsize,
    /// Probes: one `eth_blockNumber` request each.
    pub rounds: AtomicUsize,
}

impl Default for ProbeAnswers {
    fn default() -> Self {
        Self {
            chain_id: 31337.into(),
            head: 0x100.into(),
            syncing: false.into(),
            failing: false.into(),
            error_message: std::sync::Mutex::new(None),
            count: 0.into(),
            rounds: 0.into(),
        }
    }
}

impl ProbeAnswers {
    fn answer(&self, req: &serde_json::Value) -> Action {
        self.count.fetch_add(1, Ordering::SeqCst);
        if req["method"] == "eth_blockNumber" {
            self.rounds.fetch_add(1, Ordering::SeqCst);
        }
        if self.failing.load(Ordering::SeqCst) {
            return Action::Status(503, "probe failed".into());
        }
        if let Some(m) = self.error_message.lock().unwrap().clone() {
            return Action::Error(serde_json::json!({"code": -32603, "message": m}).to_string());
        }
        match req["method"].as_str() {
            Some("eth_chainId") => {
                Action::Result(format!("\"0x{:x}\"", self.chain_id.load(Ordering::SeqCst)))
            }
            Some("eth_blockNumber") => {
                Action::Result(format!("\"0x{:x}\"", self.head.load(Ordering::SeqCst)))
            }
            Some("eth_syncing") if self.syncing.load(Ordering::SeqCst) => Action::Result(
                r#"{"startingBlock":"0x0","currentBlock":"0x1","highestBlock":"0x100"}"#.into(),
            ),
            Some("eth_syncing") => Action::Result("false".into()),
            _ => Action::Error(r#"{"code":-32601,"message":"not a probe"}"#.into()),
        }
    }

    pub fn set_head(&self, head: u64) {
        self.head.store(head, Ordering::SeqCst);
    }
}

/// An in-process HTTP upstream whose answers are decided by a closure.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub url: String,
    /// What it says to health probes.
    pub probes: Arc<ProbeAnswers>,
    hits: Arc<AtomicUsize>,
    /// Scripted requests whose answer was never finished: the client went away first.
    cancelled: Arc<AtomicUsize>,
    last_headers: Arc<std::sync::Mutex<http::HeaderMap>>,
    received: Arc<Notify>,
    /// Signalled when a request is cancelled.
    cancel_seen: Arc<Notify>,
    /// Scripted requests being answered now, and the most at once.
    busy: Arc<AtomicUsize>,
    peak_busy: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Counts a scripted answer as cancelled if it is dropped before it is produced, and as
/// busy while it lives.
struct CancelGuard {
    done: bool,
    cancelled: Arc<AtomicUsize>,
    seen: Arc<Notify>,
    busy: Arc<AtomicUsize>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
            self.seen.notify_waiters();
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start(
        script: impl Fn(&serde_json::Value, &Bytes) -> Action + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script: Arc<Script> = Arc::new(script);
        let hits = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let cancel_seen = Arc::new(Notify::new());
        let received = Arc::new(Notify::new());
        let last_headers = Arc::new(std::sync::Mutex::new(http::HeaderMap::new()));
        let probes = Arc::new(ProbeAnswers::default());
        let (h, r, lh, pa) = (
            hits.clone(),
            received.clone(),
            last_headers.clone(),
            probes.clone(),
        );
        let (c, cs) = (cancelled.clone(), cancel_seen.clone());
        let busy = Arc::new(AtomicUsize::new(0));
        let peak_busy = Arc::new(AtomicUsize::new(0));
        let (b, pb) = (busy.clone(), peak_busy.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the accept task closes them all, as
            // a process that dies would.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let (script, hits, received) = (script.clone(), h.clone(), r.clone());
                let lh = lh.clone();
                let pa = pa.clone();
                let (c, cs) = (c.clone(), cs.clone());
                let (b, pb) = (b.clone(), pb.clone());
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (script, hits, received) =
                            (script.clone(), hits.clone(), received.clone());
                        let pa = pa.clone();
                        let lh = lh.clone();
                        let (c, cs) = (c.clone(), cs.clone());
                        let (b, pb) = (b.clone(), pb.clone());
                        let headers = req.headers().clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            if json["id"] == "health" {
                                let action = pa.answer(&json);
                                return respond(action, &json).await;
                            }
                            // The canonical window's block requests: a fake upstream has
                            // no blocks (and its script is for the test's own calls).
                            if json["id"]
                                .as_str()
                                .is_some_and(|id| id.starts_with("canonical-"))
                            {
                                let none = Action::Result("null".into());
                                return respond(none, &json).await;
                            }
                            *lh.lock().unwrap() = headers;
                            hits.fetch_add(1, Ordering::SeqCst);
                            received.notify_waiters();
                            pb.fetch_max(b.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                            let mut guard = CancelGuard {
                                done: false,
                                cancelled: c,
                                seen: cs,
                                busy: b,
                            };
                            let action = script(&json, &body);
                            let response = respond(action, &json).await;
                            guard.done = true;
                            response
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeUpstream {
            addr,
            url: format!("http://{addr}"),
            probes,
            hits,
            cancelled,
            last_headers,
            received,
            cancel_seen,
            busy,
            peak_busy,
            task,
        }
    }

    /// The most scripted requests it was answering at once.
    pub fn peak_busy(&self) -> usize {
        self.peak_busy.load(Ordering::SeqCst)
    }

    /// The headers of the last request received.
    pub fn last_headers(&self) -> http::HeaderMap {
        self.last_headers.lock().unwrap().clone()
    }

    /// A fake that answers every request with the same result.
    pub async fn ok(result: &str) -> Self {
        let result = result.to_string();
        Self::start(move |_, _| Action::Result(result.clone())).await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Scripted requests the client gave up on before the answer was ready.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves when `cancelled()` reaches `n`, or panics after 10 s.
    pub async fn wait_cancelled(&self, n: usize) {
        let wait = async {
            loop {
                let seen = self.cancel_seen.notified();
                tokio::pin!(seen);
                seen.as_mut().enable();
                if self.cancelled() >= n {
                    return;
                }
                seen.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{} of {n} cancellations seen", self.cancelled()));
    }

    /// Resolves when the next request arrives.
    pub fn next_request(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.received.notified()
    }
}

/// A port with nothing listening on it.
/// anvil's first two dev accounts (funded, and the first's key signs `eth_sendTransaction`).
pub const ANVIL_ACCOUNT_0: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
pub const ANVIL_ACCOUNT_1: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

/// `eth_signTransaction` params for the transfers the withdrawal tests make: 1 wei from
/// anvil's account 0 to account 1 with `nonce`, EIP-1559 fees, anvil's chain id. The wallet
/// (anvil) signs; the proxy only relays.
pub fn transfer_to_sign(nonce: u128) -> serde_json::Value {
    serde_json::json!([{"from": ANVIL_ACCOUNT_0, "to": ANVIL_ACCOUNT_1, "value": "0x1",
        "gas": "0x5208", "nonce": format!("0x{nonce:x}"), "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x1", "chainId": "0x7a69"}])
}

/// A signed legacy transaction of the execution-apis recordings (`send-legacy-transaction`):
/// nonce 0, from `0x0c2c51a0990aee1d73c1228de158688341557508`.
pub const RECORDED_LEGACY_TX: &str = "0xf86c808401a213988261a894aa000000000000000000000000000000000000000a8255448718e5bb3abd109fa073fbe7ff7e74339e7cc61fb3cb3f7630cd3f1d5fef653d7297654b2d22894daea042a188d30f35f19408c73c803bc1e9e17ce129c457e31fd2a368b54507af2f4c";

/// A transfer of 1 wei from anvil's account 0 to account 1 with `nonce`, signed by the
/// wallet of the anvil node at `url`: the raw transaction.
pub async fn signed_transfer(c: &HttpClient, url: &str, nonce: u128) -> String {
    let v = c
        .call(url, "eth_signTransaction", transfer_to_sign(nonce))
        .await;
    v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("eth_signTransaction: {v}"))
        .to_string()
}

/// `account`'s `method` (`eth_getTransactionCount`, `eth_getBalance`) at `latest` on the node
/// at `url`, as a number.
pub async fn account_quantity(c: &HttpClient, url: &str, method: &str, account: &str) -> u128 {
    hex_u128(
        &c.call(url, method, serde_json::json!([account, "latest"]))
            .await["result"],
    )
}

/// A JSON-RPC hex quantity ("0x1a") as a number; panics on anything else.
/// The value of one metric series from `/metrics` (0 when it is absent).
pub async fn metric(proxy: &Running, series: &str) -> f64 {
    let (_, text) = HttpClient::new().get(&admin_url(proxy, "/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn hex_u128(v: &serde_json::Value) -> u128 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a hex string: {v}"));
    u128::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

pub async fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

fn with_id(req: &serde_json::Value, key: &str, value: &str) -> String {
    let id = req.get("id").cloned().unwrap_or(serde_json::Value::Null);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"{key}":{value}}}"#)
}

fn respond(
    action: Action,
    req: &serde_json::Value,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<BoxBody>, std::io::Error>> + Send + '_>,
> {
    Box::pin(async move {
        let ok = |body: BoxBody| {
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        };
        Ok(match action {
            Action::Body(b) => ok(full(b)),
            Action::Result(r) => ok(full(with_id(req, "result", &r))),
            Action::Error(e) => ok(full(with_id(req, "error", &e))),
            Action::Status(s, b) => Response::builder().status(s).body(full(b)).unwrap(),
            Action::TooMany(secs) => Response::builder()
                .status(429)
                .header("retry-after", secs.to_string())
                .body(full("rate limited"))
                .unwrap(),
            Action::GzipResult(r) => {
                use std::io::Write;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(with_id(req, "result", &r).as_bytes())
                    .unwrap();
                Response::builder()
                    .status(200)
                    .header("content-encoding", "gzip")
                    .body(full(enc.finish().unwrap()))
                    .unwrap()
            }
            Action::SlowBody(delay, b) => {
                let stream = futures_util::stream::once(async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from(b)))
                });
                ok(StreamBody::new(stream).boxed())
            }
            Action::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                return respond(*inner, req).await;
            }
            Action::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Action::Reset => return Err(std::io::Error::other("reset")),
            Action::Raw(headers, chunks) => {
                let len: usize = chunks.iter().map(Bytes::len).sum();
                let mut b = Response::builder()
                    .status(200)
                    .header("content-length", len.to_string());
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                let frames = chunks.into_iter().map(|c| Ok(Frame::data(c)));
                b.body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
                    .unwrap()
            }
            Action::Endless => {
                let id = req.get("id").cloned().unwrap_or(serde_json::Value::Null);
                let start = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":""#));
                let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
                let stream = futures_util::StreamExt::chain(
                    futures_util::stream::once(async move {
                        Ok::<_, std::io::Error>(Frame::data(start))
                    }),
                    futures_util::stream::repeat_with(move || Ok(Frame::data(chunk.clone()))),
                );
                ok(StreamBody::new(stream).boxed())
            }
            Action::Truncate(b) => {
                let stream = futures_util::stream::iter(vec![
                    Ok(Frame::data(Bytes::from(b))),
                    Err(std::io::Error::other("cut")),
                ]);
                Response::builder()
                    .status(200)
                    .header("content-length", "100000")
                    .body(StreamBody::new(stream).boxed())
                    .unwrap()
            }
        })
    })
}

// ---------------------------------------------------------------------------------------
// Manifold in process

/// Start Manifold from TOML text; `listen`/`admin_listen` default to free ports.
pub async fn start_proxy(toml: &str) -> Running {
    let toml = if toml.contains("[server]") {
        toml.to_string()
    } else {
        format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{toml}")
    };
    // The transaction watch in memory, unless the test names a store: tests run in parallel.
    let toml = if toml.contains("tx_store") {
        toml
    } else {
        toml.replacen("[server]\n", "[server]\ntx_store = \":memory:\"\n", 1)
    };
    let config = Config::from_toml(&toml, "test.toml", &|k| std::env::var(k).ok())
        .unwrap_or_else(|e| panic!("invalid test config:\n{e}\n{toml}"));
    manifold::server::start(config)
        .await
        .expect("start manifold")
}

/// A one-chain config named `eth` with the given upstream URLs, named u0, u1, ... and tried in
/// that order: u0 is `primary`, u1 `secondary`, the rest `fallback`. Health probes run once
/// at start and then only every minute, so that a test's requests meet the upstreams'
/// request-path behaviour; `chain_config_with_health` sets them.
pub fn chain_config(urls: &[&str], policy: &str) -> String {
    chain_config_with_health(urls, policy, "interval = \"60s\"\ntimeout = \"2s\"")
}

pub fn chain_config_with_health(urls: &[&str], policy: &str, health: &str) -> String {
    let mut s = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (i, u) in urls.iter().enumerate() {
        let tier = match i {
            0 => "primary",
            1 => "secondary",
            _ => "fallback",
        };
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"{u}\"\ntier = \"{tier}\"\ntimeout = \"2s\"\n"
        ));
    }
    s.push_str(&format!(
        "[chains.policy]\n{policy}\n[chains.policy.health]\n{health}\n"
    ));
    s
}

/// Poll `/status` until `pred` holds for it (every 20 ms, at most 15 s).
pub async fn wait_for_status(
    p: &Running,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let c = HttpClient::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = c.get(&admin_url(p, "/status")).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of upstream `name` of the first chain.
pub fn upstream_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["chains"][0]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no upstream {name} in {status}"))
}

// ---------------------------------------------------------------------------------------
// client

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn http2() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .inner
            .request(b.body(Full::new(body.into())).unwrap())
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, body)
    }

    /// POST JSON; returns status and body text.
    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> (StatusCode, String) {
        let (s, _, b) = self
            .request("POST", url, &[("content-type", "application/json")], body)
            .await;
        (s, String::from_utf8(b.to_vec()).expect("utf-8 body"))
    }

    /// POST JSON and parse the answer.
    pub async fn rpc(&self, url: &str, body: &str) -> serde_json::Value {
        let (status, text) = self.post(url, body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// `method(params)` on `url`, returning the whole response object.
    pub async fn call(
        &self,
        url: &str,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.rpc(url, &body.to_string()).await
    }

    /// Whether a plain POST to `url` fails or gets no HTTP answer.
    pub async fn inner_request_fails(&self, url: &str) -> bool {
        let req = Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        match self.inner.request(req).await {
            Err(_) => true,
            Ok(resp) => resp.into_body().collect().await.is_err(),
        }
    }

    pub async fn get(&self, url: &str) -> (StatusCode, String) {
        let (s, _, b) = self.request("GET", url, &[], Bytes::new()).await;
        (s, String::from_utf8(b.to_vec()).expect("utf-8 body"))
    }
}

pub fn rpc_url(p: &Running, path: &str) -> String {
    format!("http://{}/{}", p.rpc_addr, path.trim_start_matches('/'))
}

pub fn admin_url(p: &Running, path: &str) -> String {
    format!("http://{}/{}", p.admin_addr, path.trim_start_matches('/'))
}
