//! Manifold: a failover-aware JSON-RPC load-balancing proxy for blockchains.
//!
//! A request's path through the code, top-down:
//!
//! ```text
//! server::listener      accept, HTTP/1.1 keep-alive + h2c, graceful drain
//!   frontdoor           method, chain path, content type, body limit     (HTTP 405/404/415/413)
//!     jsonrpc::decode   single / batch / notification, ids kept as raw bytes (-32700/-32600)
//!     router            POST /{chain} -> Chain
//!       chain::stack    the call stack as tower layers, assembled in one place:
//!         metered          per-call metrics and tracing span (cache hits included)
//!         cache            answers that cannot change (finality from health::ChainHead)
//!         coalesce         identical calls in flight share one trip down
//!         steer            signed transactions -> upstream::broadcast, then watch::TxWatch
//!         deadline         the request timeout's safety net
//!         dispatch         the attempts; chain::rescue: failures as proxy error objects
//!         upstream::set    candidate order, hedges, retries, failover on upstream faults
//!           upstream       one attempt: classify once into an Outcome -> health + metrics
//!             upstream::client  pooled HTTP/1.1 + HTTP/2, rustls, timeouts, gzip
//!     jsonrpc::encode   client id + upstream result bytes, no re-encoding
//! watch                 each broadcast transaction until final: receipts, rebroadcasts, store
//! admin                 /healthz /readyz /status /metrics /tx on admin_listen
//! ```
//!
//! Configuration is loaded and validated by [`config`], built into a [`snapshot::Snapshot`]
//! and held behind an `ArcSwap`, so requests read one consistent version without locks.

pub mod admin;
pub mod allocator;
pub mod answers;
pub mod body;
pub mod chain;
pub mod cli;
pub mod config;
pub mod family;
pub mod frontdoor;
pub mod fuzzing;
pub mod health;
pub mod jsonrpc;
pub mod logging;
pub mod metrics;
pub mod rejection;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod upstream;
pub mod watch;
pub mod ws;
