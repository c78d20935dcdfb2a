//! The WebSocket front door: `GET /{chain}` (and `GET /` for a single chain) with an
//! `Upgrade: websocket` header becomes a socket on which the client sends JSON-RPC calls and
//! batches, answered through the same call stack as HTTP, and subscribes (`eth_subscribe`)
//! to new heads made from Manifold's own view of the chain (`chain::heads`), so that no
//! client is pinned to an upstream.
//!
//! - `session`: one socket: reading calls, answering them, sending notifications;
//! - `outbox`: its bounded queue of messages to write (a client that lets it fill is closed
//!   with 1008, never silently skipped);
//! - `subscriptions`: its subscriptions and their ids.
//!
//! The upgrade is hyper's (`hyper::upgrade::on`), the protocol tokio-tungstenite's, as axum
//! does it; the handshake's checks (method, headers, version, `Origin`) are here.

mod outbox;
mod session;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use http::header::{
    CONNECTION, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use metrics::{Counter, Gauge, Label};
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::answers::Answerer;
use crate::body::Body;
use crate::chain::Chain;
use crate::jsonrpc::{codes, ErrorObject};
use crate::metrics::{LabelTable, Metrics, WS_CLOSED, WS_CONNECTIONS};
use crate::rejection::Rejection;
use crate::snapshot::SharedSnapshot;

pub use session::Closed;

/// Whether `req` asks for a WebSocket (`GET` with `Upgrade: websocket`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// An upgrade turned away: the front door answers it (and counts it).
#[derive(Debug)]
pub struct Refusal {
    pub why: Rejection,
    pub status: StatusCode,
    pub error: ErrorObject,
    pub headers: HeaderMap,
}

impl Refusal {
    fn new(why: Rejection, status: StatusCode, message: String, reason: &str) -> Box<Self> {
        Box::new(Self {
            why,
            status,
            error: ErrorObject::new(codes::LIMIT_EXCEEDED, message)
                .with_data(json!({ "reason": reason })),
            headers: HeaderMap::new(),
        })
    }
}

/// Every client socket of the listener: their limit, their shutdown, their metrics.
#[derive(Debug)]
pub struct WsHub {
    snapshot: SharedSnapshot,
    answers: Answerer,
    /// `websocket.max_connections` (as configured at start).
    open: Arc<Semaphore>,
    max_open: usize,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    connections: Gauge,
    closed: LabelTable<Counter>,
}

impl WsHub {
    pub fn new(
        snapshot: SharedSnapshot,
        answers: Answerer,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let max_open = snapshot.load().config.server.websocket.max_connections;
        Self {
            snapshot,
            answers,
            open: Arc::new(Semaphore::new(max_open)),
            max_open,
            stop,
            connections: metrics.gauge(WS_CONNECTIONS, Vec::new()),
            closed: LabelTable::new(Closed::ALL),
            metrics,
        }
    }

    /// Answer an upgrade request with 101 and serve the socket in a task of its own, or say
    /// why not.
    pub fn upgrade<B>(
        self: &Arc<Self>,
        mut req: Request<B>,
        chain: Arc<Chain>,
    ) -> Result<Response<Body>, Box<Refusal>> {
        let snapshot = self.snapshot.load();
        let server = &snapshot.config.server;
        let (config, max_message, max_batch_len, grace) = (
            server.websocket.clone(),
            server.max_request_bytes,
            server.max_batch_len,
            server.shutdown_timeout,
        );
        drop(snapshot);
        let headers = req.headers();
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !config.allows_origin(origin) {
                let shown: String = origin.chars().take(100).collect();
                return Err(Refusal::new(
                    Rejection::WsOrigin,
                    StatusCode::FORBIDDEN,
                    format!("manifold: origin `{shown}` is not in websocket.allowed_origins"),
                    "origin_not_allowed",
                ));
            }
        }
        let bad = |message: &str| {
            Refusal::new(
                Rejection::WsBadUpgrade,
                StatusCode::BAD_REQUEST,
                format!("manifold: not a WebSocket upgrade: {message}"),
                "bad_upgrade",
            )
        };
        if headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            let mut refusal = bad("only Sec-WebSocket-Version 13 is spoken");
            refusal.status = StatusCode::UPGRADE_REQUIRED;
            refusal
                .headers
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return Err(refusal);
        }
        let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
            return Err(bad("no Sec-WebSocket-Key"));
        };
        let accept = derive_accept_key(key.as_bytes());
        // HTTP/2 requests carry no upgrade (RFC 8441's extended CONNECT is not served).
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err(bad("this connection cannot be upgraded (HTTP/1.1 only)"));
        };
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            let mut refusal = Refusal::new(
                Rejection::WsMaxConnections,
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "manifold: too many WebSocket connections ({}, websocket.max_connections)",
                    self.max_open
                ),
                "ws_max_connections",
            );
            refusal
                .headers
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(refusal);
        };
        let hub = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(protocol_config(max_message)),
            )
            .await;
            hub.connections.increment(1.0);
            let closed = session::run(
                socket,
                session::Session {
                    chain,
                    answers: hub.answers.clone(),
                    config,
                    max_batch_len,
                    stop: hub.stop.clone(),
                    grace,
                    metrics: hub.metrics.clone(),
                },
            )
            .await;
            hub.connections.decrement(1.0);
            hub.closed
                .get(closed as usize, || {
                    hub.metrics
                        .counter(WS_CLOSED, vec![Label::new("reason", closed.label())])
                })
                .increment(1);
        });
        let mut resp = Response::new(Body::from_chunks(Vec::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        Ok(resp)
    }

    /// After shutdown has begun: wait until every socket has closed (each sends 1001 once its
    /// calls in flight are answered), at most `grace` and a second.
    pub async fn drained(&self, grace: Duration) {
        let all = u32::try_from(self.max_open).unwrap_or(u32::MAX);
        let waited =
            tokio::time::timeout(grace + Duration::from_secs(1), self.open.acquire_many(all));
        if waited.await.is_err() {
            tracing::warn!("shutdown timeout: WebSocket connections still open");
        }
    }
}

/// tungstenite's limits for a client socket: messages as large as an HTTP body may be, and
/// small buffers (its defaults are 128 KiB each per socket, too much for 10,000 sockets).
fn protocol_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}
