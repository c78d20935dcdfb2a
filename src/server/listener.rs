//! Accepting connections and serving HTTP/1.1 (keep-alive) and HTTP/2 on them (h2c in the
//! clear; ALPN under TLS), with graceful shutdown: the hyper 1.x serving template (as axum's `serve`), without axum.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::body::Body;

/// An HTTP handler that always answers.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

impl Handler for crate::frontdoor::FrontDoor {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send {
        crate::frontdoor::FrontDoor::handle(self, req)
    }
}

impl Handler for crate::admin::Admin {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send {
        crate::admin::Admin::handle(self, req)
    }
}

/// A client that opened a connection but sends no complete request head in this time is cut
/// off (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `handler` on `listener` until `shutdown` turns true, then stop accepting, let the
/// in-flight requests finish for at most `grace`, and return.
pub async fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
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
                let _ = stream.set_nodelay(true);
                spawn_connection(name, &builder, &graceful, tls.clone(), stream, peer, handler.clone());
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

fn spawn_connection<H: Handler>(
    name: &'static str,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    tls: Option<TlsAcceptor>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
) {
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(req).await) }
        });
        let result = match tls {
            None => {
                watcher
                    .watch(builder.serve_connection(TokioIo::new(stream), service))
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
                    .watch(builder.serve_connection(TokioIo::new(stream), service))
                    .await
            }
        };
        if let Err(e) = result {
            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
        }
    });
}
