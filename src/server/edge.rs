//! The JSON-RPC listener's service: the front door under tower layers, served through
//! hyper-util's `TowerToHyperService` (as axum serves a router). Outermost first:
//!
//! - **trace** (tower-http): a span per request and its status and latency, at debug level
//!   (PRODUCT.md §8: per-request detail only at debug);
//! - **answer every error**: what the layers below fail with (shed, timed out) becomes a
//!   JSON-RPC error response here, so that hyper only ever sees a response (a service
//!   error would make it drop the connection unanswered);
//! - **load shed over a global concurrency limit**: at most `max_concurrent_calls`
//!   requests are in the front door at once (batch items take their own permits from the
//!   same semaphore, `FrontDoor`); one more is answered 503 at once, never queued, so a
//!   burst cannot build a backlog that is still being worked off after its clients gave
//!   up;
//! - **timeout**: a backstop for the whole request (body, call, answer), past every
//!   deadline inside; reaching it is a bug, answered 504 rather than holding a
//!   connection forever;
//! - the front door.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, Service, ServiceBuilder};
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::body::Body;
use crate::frontdoor::FrontDoor;

/// The front door's service stack for one listener; cloned for each connection, sharing
/// `calls`.
pub fn rpc_service(
    front: Arc<FrontDoor>,
    calls: Arc<Semaphore>,
    backstop: Duration,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static>,
    Error = BoxError,
    Future = impl Future + Send + 'static,
> + Clone
       + Send
       + 'static {
    let on_error = front.clone();
    ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // A 503 when shedding is no error to log (it would flood the log just when
                // the proxy is busiest): counted in the metrics instead.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        // Always `Ok`: the error type stays `BoxError` only because tower's `MapResult` also
        // maps `poll_ready`'s errors, which these layers never have.
        .map_result(move |r: Result<Response<Body>, BoxError>| {
            Ok::<_, BoxError>(match r {
                Ok(resp) => resp,
                Err(e) if e.is::<Overloaded>() => on_error.overloaded(),
                Err(_) => on_error.backstop_timeout(backstop),
            })
        })
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(calls))
        .timeout(backstop)
        .service_fn(move |req: Request<Incoming>| {
            let front = front.clone();
            async move { Ok::<_, Infallible>(front.handle(req).await) }
        })
}
