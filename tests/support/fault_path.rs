//! A fault-injecting HTTP path in front of a real node: a reverse proxy on 127.0.0.1 that
//! forwards JSON-RPC POST bodies to a target (an anvil node) and, switched at run time,
//! refuses, hangs, delays, answers errors, cuts or resets connections, or lies about the
//! chain id or the head.
//!
//! It stands for the network and the provider between Manifold and a node, which is what
//! fails in an outage: the node behind stays real, so transactions sent through it are
//! really mined. The mode is read when a request arrives, so `set` takes effect for the
//! next request, also on kept-alive connections. Every task ends with the `FaultPath`: the
//! accept task owns the connection tasks, and it is stopped by a signal (`Refuse`) or aborted
//! (drop).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// What the path does with the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward unchanged.
    Pass,
    /// Connections refused: the listener is closed, and so are existing connections.
    Refuse,
    /// Read the request, never answer (until the client closes the connection).
    Blackhole,
    /// Forward, answer after the delay.
    Delay(Duration),
    /// Wait, then forward: the request reaches the node only after the delay (a slow
    /// network in front of it).
    Slow(Duration),
    /// HTTP 503 with a short text body.
    Status503,
    /// HTTP 429 with `Retry-After`.
    TooMany { retry_after_secs: u64 },
    /// HTTP 200, an HTML body.
    NotJson,
    /// HTTP 200, JSON-RPC error -32603 with the request's id.
    RpcInternalError,
    /// Forward, then send the headers with the full `Content-Length` and half the body, then
    /// close the connection.
    Truncate,
    /// Read the request, then close the connection with a TCP RST (`SO_LINGER` 0).
    Reset,
    /// Forward, but `eth_chainId` answers this chain id.
    WrongChain(u64),
    /// Forward, but `eth_blockNumber` answers this many blocks less than the node's head.
    Lag(u64),
    /// Answer `eth_sendRawTransaction` with the transaction's right hash and never pass it
    /// on (its node took it into a pool, then its region died); forward everything else.
    Swallow,
    /// Refuse an `eth_getLogs` over more blocks than this, as Infura words it ("query
    /// returned more than 10000 results"); forward everything else.
    LogsRangeLimit(u64),
}

type Body = BoxBody<Bytes, io::Error>;

/// State shared by the handle and the serving tasks.
struct Shared {
    target: http::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    fault: Mutex<Fault>,
    received: AtomicUsize,
    forwarded: AtomicUsize,
    connections: AtomicUsize,
    /// Requests received by method, health probes (id "health") and the canonical window's
    /// block requests (ids "canonical-N") apart.
    calls: Mutex<std::collections::HashMap<String, usize>>,
    /// The widest `eth_getLogs` block range received (by numbers).
    widest_logs: std::sync::atomic::AtomicU64,
}

/// The accept task while the path listens, and the signal that stops it.
struct Listening {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A fault-injecting reverse proxy on one fixed port of 127.0.0.1.
pub struct FaultPath {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `None` while refusing. An async lock: `set` holds it while the listener closes.
    listening: tokio::sync::Mutex<Option<Listening>>,
}

impl Drop for FaultPath {
    fn drop(&mut self) {
        if let Some(l) = self.listening.get_mut().take() {
            // Aborting drops the task's `JoinSet`, which aborts every connection task.
            l.task.abort();
        }
    }
}

impl FaultPath {
    /// Listen on a free port, forwarding to `target_url`, in `Pass` mode.
    pub async fn start(target_url: &str) -> FaultPath {
        Self::start_on("127.0.0.1:0".parse().unwrap(), target_url).await
    }

    /// Listen on `addr`, forwarding to `target_url`, in `Pass` mode.
    pub async fn start_on(addr: SocketAddr, target_url: &str) -> FaultPath {
        let listener = TcpListener::bind(addr).await.unwrap();
        let shared = Arc::new(Shared {
            target: target_url.parse().unwrap(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            fault: Mutex::new(Fault::Pass),
            received: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            calls: Mutex::new(std::collections::HashMap::new()),
            widest_logs: std::sync::atomic::AtomicU64::new(0),
        });
        FaultPath {
            addr: listener.local_addr().unwrap(),
            listening: tokio::sync::Mutex::new(Some(accept(listener, shared.clone()))),
            shared,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switch modes. Switching to `Refuse` returns once the listener and every connection are
    /// closed; switching away from it, once the same port listens again.
    pub async fn set(&self, fault: Fault) {
        let mut listening = self.listening.lock().await;
        let refuse = fault == Fault::Refuse;
        *self.shared.fault.lock().unwrap() = fault;
        match (refuse, listening.take()) {
            (true, Some(l)) => {
                let _ = l.stop.send(());
                l.task.await.unwrap();
            }
            (true, None) => {}
            (false, Some(l)) => *listening = Some(l),
            (false, None) => {
                let listener = TcpListener::bind(self.addr)
                    .await
                    .unwrap_or_else(|e| panic!("rebinding {}: {e}", self.addr));
                *listening = Some(accept(listener, self.shared.clone()));
            }
        }
    }

    /// Requests forwarded to the target.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Requests of `method` received (health probes and the canonical window's block
    /// requests not counted), whatever was done with them.
    pub fn calls(&self, method: &str) -> usize {
        self.shared
            .calls
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// The widest `eth_getLogs` block range received (by numbers), in blocks.
    pub fn widest_logs_range(&self) -> u64 {
        self.shared.widest_logs.load(Ordering::SeqCst)
    }

    /// Requests received, whatever was done with them.
    pub fn received(&self) -> usize {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

/// The blocks an `eth_getLogs` call asks for, when its range is two numbers.
fn logs_range(call: &Value) -> Option<u64> {
    if call["method"] != "eth_getLogs" {
        return None;
    }
    let number = |v: &Value| u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok();
    let filter = &call["params"][0];
    let (from, to) = (number(&filter["fromBlock"])?, number(&filter["toBlock"])?);
    Some(to.saturating_sub(from) + 1)
}

/// The accept loop. On `stop` it closes the listener, then aborts the connections and waits
/// until they are gone.
fn accept(listener: TcpListener, shared: Arc<Shared>) -> Listening {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    while connections.try_join_next().is_some() {}
                    connections.spawn(serve(stream, shared.clone()));
                }
            }
        }
        drop(listener);
        connections.shutdown().await;
    });
    Listening { stop, task }
}

/// Serve one connection (HTTP/1.1, as Manifold speaks to `http://` upstreams).
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _open = Counted::new(shared.clone());
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResettableStream {
        stream,
        reset: reset.clone(),
    });
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), reset.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

async fn handle(
    shared: Arc<Shared>,
    reset: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<Body>, io::Error> {
    shared.received.fetch_add(1, Ordering::SeqCst);
    let fault = shared.fault.lock().unwrap().clone();
    let body = req.into_body().collect().await.map_err(io::Error::other)?;
    let body = body.to_bytes();
    if let Ok(call) = serde_json::from_slice::<Value>(&body) {
        let background = call["id"]
            .as_str()
            .is_some_and(|id| id == "health" || id.starts_with("canonical-"));
        if !background {
            if let Some(blocks) = logs_range(&call) {
                shared.widest_logs.fetch_max(blocks, Ordering::SeqCst);
            }
            if let Some(m) = call["method"].as_str() {
                *shared
                    .calls
                    .lock()
                    .unwrap()
                    .entry(m.to_string())
                    .or_default() += 1;
            }
        }
    }
    match fault {
        Fault::Pass => forward(&shared, body).await,
        Fault::Refuse => Err(io::Error::other("refused: closing")),
        Fault::Reset => {
            reset.store(true, Ordering::SeqCst);
            Err(io::Error::other("reset"))
        }
        // The connection task is dropped when hyper sees the client close (EOF on a busy
        // connection), or when the path stops.
        Fault::Blackhole => std::future::pending().await,
        Fault::Delay(d) => {
            let answer = forward(&shared, body).await;
            tokio::time::sleep(d).await;
            answer
        }
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            forward(&shared, body).await
        }
        Fault::Status503 => Ok(text(503, "text/plain", "service unavailable")),
        Fault::TooMany { retry_after_secs } => {
            let mut r = text(429, "text/plain", "too many requests");
            r.headers_mut()
                .insert("retry-after", retry_after_secs.into());
            Ok(r)
        }
        Fault::NotJson => Ok(text(200, "text/html", "<html>bad gateway</html>")),
        Fault::RpcInternalError => {
            let error = |req: &Value| {
                let id = req.get("id").cloned().unwrap_or(Value::Null);
                json!({"jsonrpc": "2.0", "id": id,
                       "error": {"code": -32603, "message": "internal error"}})
            };
            let answer = match serde_json::from_slice::<Value>(&body).unwrap_or_default() {
                Value::Array(batch) => Value::Array(batch.iter().map(error).collect()),
                single => error(&single),
            };
            Ok(text(200, "application/json", answer.to_string()))
        }
        Fault::Truncate => {
            let (head, full) = fetch(&shared, body).await?;
            Ok(truncated(head, full))
        }
        Fault::WrongChain(id) => {
            rewritten(&shared, body, "eth_chainId", |_| Some(format!("0x{id:x}"))).await
        }
        Fault::LogsRangeLimit(limit) => {
            let call: Value = serde_json::from_slice(&body).unwrap_or_default();
            if logs_range(&call).is_none_or(|blocks| blocks <= limit) {
                return forward(&shared, body).await;
            }
            let id = call.get("id").cloned().unwrap_or(Value::Null);
            let answer = json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32005, "message": "query returned more than 10000 results"}});
            Ok(text(200, "application/json", answer.to_string()))
        }
        Fault::Swallow => {
            let call: Value = serde_json::from_slice(&body).unwrap_or_default();
            if call.get("method").and_then(Value::as_str) != Some("eth_sendRawTransaction") {
                return forward(&shared, body).await;
            }
            let raw = call["params"][0].as_str().unwrap_or_default();
            let hash = manifold::family::evm::tx::transaction_hash_hex(raw)
                .unwrap_or_else(|_| "0x".into());
            let id = call.get("id").cloned().unwrap_or(Value::Null);
            Ok(text(
                200,
                "application/json",
                json!({"jsonrpc": "2.0", "id": id, "result": hash}).to_string(),
            ))
        }
        Fault::Lag(n) => {
            rewritten(&shared, body, "eth_blockNumber", |head| {
                let head = u64::from_str_radix(head.strip_prefix("0x")?, 16).ok()?;
                Some(format!("0x{:x}", head.saturating_sub(n)))
            })
            .await
        }
    }
}

/// Send `body` to the target; its status and headers, and its whole body.
async fn fetch(shared: &Shared, body: Bytes) -> Result<(http::response::Parts, Bytes), io::Error> {
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    let req = Request::post(shared.target.clone())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = shared.client.request(req).await.map_err(io::Error::other)?;
    let (head, body) = resp.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    Ok((head, body))
}

async fn forward(shared: &Shared, body: Bytes) -> Result<Response<Body>, io::Error> {
    let (head, body) = fetch(shared, body).await?;
    Ok(answer(head, body))
}

/// Forward; when the request is a single call of `method`, replace the result by `rewrite`
/// of it (a string). Anything else, batches included, passes unchanged.
async fn rewritten(
    shared: &Shared,
    body: Bytes,
    method: &str,
    rewrite: impl Fn(&str) -> Option<String>,
) -> Result<Response<Body>, io::Error> {
    let call: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (head, answer_body) = fetch(shared, body).await?;
    if call.get("method").and_then(Value::as_str) != Some(method) {
        return Ok(answer(head, answer_body));
    }
    let mut reply: Value = serde_json::from_slice(&answer_body).unwrap_or_default();
    match reply
        .get("result")
        .and_then(Value::as_str)
        .and_then(&rewrite)
    {
        Some(new) => {
            reply["result"] = Value::String(new);
            Ok(answer(head, Bytes::from(reply.to_string())))
        }
        None => Ok(answer(head, answer_body)),
    }
}

/// The target's status and content type with `body`.
fn answer(head: http::response::Parts, body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = head.status;
    if let Some(ct) = head.headers.get("content-type") {
        r.headers_mut().insert("content-type", ct.clone());
    }
    r
}

/// The full `Content-Length`, half the body, then an error that makes hyper drop the
/// connection. The stream yields once between the two, so that hyper flushes the half
/// before it sees the error.
fn truncated(head: http::response::Parts, body: Bytes) -> Response<Body> {
    let len = body.len();
    let half = body.slice(..len / 2);
    let cut = futures_util::stream::once(async {
        tokio::task::yield_now().await;
        Err(io::Error::other("truncated"))
    });
    let half = futures_util::stream::iter([Ok(Frame::data(half))]);
    let frames = futures_util::StreamExt::chain(half, cut);
    let mut r = answer(head, Bytes::new());
    *r.body_mut() = StreamBody::new(frames).boxed();
    r.headers_mut().insert("content-length", len.into());
    r
}

fn text(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    r
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|e: Infallible| match e {}).boxed()
}

/// A connection, counted in `Shared::connections` while alive.
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP stream closed with a RST instead of a FIN when `reset` is set: `SO_LINGER` 0 at
/// close. Only then, so that a truncated answer's bytes are not discarded at close.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
