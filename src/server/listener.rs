//! Accepting connections and serving HTTP/1.1 (keep-alive) and HTTP/2 on them (h2c in the
//! clear; ALPN under TLS), with graceful shutdown: the hyper 1.x serving template (as axum's `serve`), without axum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// What a listener's connections are limited to, and what is done with one too many.
#[derive(Clone)]
pub struct ConnectionLimit {
    open: Arc<Semaphore>,
    /// Connections being turned away at once (each answered 503 and closed in a task of
    /// its own, for a second at most); past these, closed at once.
    refusing: Arc<Semaphore>,
    on_refused: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimit")
            .field("available", &self.open.available_permits())
            .finish_non_exhaustive()
    }
}

/// Connections turned away with an answer at once, at most.
const REFUSING_AT_ONCE: usize = 64;

impl ConnectionLimit {
    pub fn new(max: usize, on_refused: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(REFUSING_AT_ONCE)),
            on_refused,
        }
    }

    /// The semaphore of open connections (its available permits tell how many are open).
    pub fn open(&self) -> &Arc<Semaphore> {
        &self.open
    }
}

/// What a connection over `max_connections` is sent before it is closed: a JSON-RPC error
/// with HTTP 503, without reading its request (an HTTP/1.1 server may answer first).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 148\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32005,\"message\":\"manifold: too many connections (max_connections)\",\"data\":{\"reason\":\"max_connections\"}}}";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves: a tower service from a request to a response that hyper can
/// drive on a connection of its own (cloned per connection).
pub trait HttpService:
    tower::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

/// A client that opened a connection but sends no complete request head in this time is cut
/// off (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `handler` on `listener` until `shutdown` turns true, then stop accepting, let the
/// in-flight requests finish for at most `grace`, and return.
pub async fn serve<S: HttpService>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    limit: ConnectionLimit,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    // Pings find dead HTTP/2 clients, whose connections would otherwise stay open.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.open.clone().try_acquire_owned() else {
                    refuse(name, &limit, tls.is_some(), stream, peer);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                spawn_connection(name, &builder, &graceful, tls.clone(), stream, peer, service.clone(), permit);
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let open = graceful.count();
    tokio::select! {
        () = graceful.shutdown() => {
            tracing::info!(listener = name, connections = open, "drained");
        }
        () = tokio::time::sleep(grace) => {
            tracing::warn!(listener = name, grace = ?grace, "shutdown timeout: closing connections with requests still in flight");
        }
    }
}

/// A connection over the limit: answered 503 and closed. The answer goes out before the
/// request is read; what the client sent is then read and dropped for up to a second, so
/// that closing with unread data does not reset the connection before the client has read
/// the answer. At most `REFUSING_AT_ONCE` at a time; past those (a flood), closed at once.
/// Under TLS there is no answer without a handshake: closed at once.
fn refuse(
    name: &'static str,
    limit: &ConnectionLimit,
    tls: bool,
    stream: TcpStream,
    peer: SocketAddr,
) {
    (limit.on_refused)();
    tracing::debug!(listener = name, %peer, "connection refused: max_connections reached");
    if tls {
        return;
    }
    let Ok(permit) = limit.refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(REFUSAL).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            let mut read = 0usize;
            while read < 64 * 1024 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => read += n,
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

#[allow(clippy::too_many_arguments)]
fn spawn_connection<S: HttpService>(
    name: &'static str,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    permit: OwnedSemaphorePermit,
) {
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        // Held for as long as the connection is open. A connection upgraded to a WebSocket
        // leaves hyper here and is counted by `websocket.max_connections` instead.
        let _permit = permit;
        let service = TowerToHyperService::new(service);
        let result = match tls {
            None => {
                watcher
                    .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service))
                    .await
            }
            Some(acceptor) => {
                let stream = match tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                        return;
                    }
                };
                watcher
                    .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service))
                    .await
            }
        };
        if let Err(e) = result {
            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_whole_http_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], -32005);
    }
}
