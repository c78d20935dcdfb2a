//! The JSON-RPC front door: HTTP in, JSON-RPC answers out (PRODUCT.md §4).
//!
//! Order of checks, cheapest first: method, chain (path), content type, body size, then the
//! JSON-RPC decode. Each check failing gets its own HTTP status with a JSON-RPC error body.
//! Past the decode every item is answered on its own: a batch's items run concurrently and
//! are answered in request order. This service never fails: every path ends in a response.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use metrics::{Counter, Label};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::answers::Answerer;
use crate::body::Body;
use crate::chain::Chain;
use crate::jsonrpc::{
    self, codes, encode_response, ErrorObject, Id, Incoming, Item, Limits, Payload,
};
use crate::metrics::{LabelTable, Metrics, REJECTED};
use crate::rejection::Rejection;
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::ws::WsHub;

/// A client that sends its headers but trickles its body is cut off after this long.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct FrontDoor {
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    rejected: Arc<LabelTable<Counter>>,
    /// Answers the decoded items. The edge takes one `max_concurrent_calls` permit per
    /// request (`server::edge`), and a batch one more per item while it runs.
    answers: Answerer,
    /// `GET /{chain}` upgrades here; `None`: answered 405.
    ws: Option<Arc<WsHub>>,
}

impl FrontDoor {
    pub fn new(snapshot: SharedSnapshot, metrics: Arc<Metrics>, calls: Arc<Semaphore>) -> Self {
        let shed = metrics.counter(
            REJECTED,
            vec![Label::new("reason", Rejection::Overloaded.label())],
        );
        Self {
            answers: Answerer::new(snapshot.clone(), calls, shed),
            snapshot,
            metrics,
            rejected: Arc::new(LabelTable::new(Rejection::ALL)),
            ws: None,
        }
    }

    /// Serve WebSocket upgrades on `GET /{chain}` with `hub`.
    pub fn with_websocket(mut self, hub: Arc<WsHub>) -> Self {
        self.ws = Some(hub);
        self
    }

    /// What answers decoded items, for the WebSocket sessions.
    pub fn answerer(&self) -> &Answerer {
        &self.answers
    }

    /// HTTP 503 for a request over `max_concurrent_calls`, with `Retry-After: 1`.
    pub fn overloaded(&self) -> Response<Body> {
        let mut resp = self.reject(
            Rejection::Overloaded,
            StatusCode::SERVICE_UNAVAILABLE,
            self.answers.overloaded_error(),
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }

    /// HTTP 504 when the edge's backstop timeout cut a request off: every deadline inside
    /// should have answered before it.
    pub fn backstop_timeout(&self, after: std::time::Duration) -> Response<Body> {
        tracing::warn!(?after, "a request reached the edge's backstop timeout");
        self.reject(
            Rejection::Backstop,
            StatusCode::GATEWAY_TIMEOUT,
            ErrorObject::new(
                codes::TIMEOUT,
                format!("manifold: no answer within {after:?}"),
            )
            .with_data(json!({ "reason": "request_timeout" })),
        )
    }

    /// Count a connection turned away at `max_connections`.
    pub fn count_refused_connection(&self) {
        self.count(Rejection::MaxConnections);
    }

    fn count(&self, why: Rejection) {
        self.rejected
            .get(why as usize, || {
                self.metrics
                    .counter(REJECTED, vec![Label::new("reason", why.label())])
            })
            .increment(1);
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let snapshot = self.snapshot.load_full();
        if let (Some(hub), true) = (&self.ws, crate::ws::is_upgrade(&req)) {
            return match snapshot.router.route(req.uri().path()).cloned() {
                Some(chain) => match hub.upgrade(req, chain) {
                    Ok(resp) => resp,
                    Err(refusal) => {
                        let mut resp = self.reject(refusal.why, refusal.status, refusal.error);
                        resp.headers_mut().extend(refusal.headers);
                        resp
                    }
                },
                None => self.unknown_chain(&snapshot, req.uri().path()),
            };
        }
        if req.method() != Method::POST {
            let mut resp = self.reject(
                Rejection::MethodNotAllowed,
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorObject::invalid_request(if self.ws.is_some() {
                    "use POST with a JSON-RPC body, or GET with a WebSocket upgrade"
                } else {
                    "use POST with a JSON-RPC body"
                }),
            );
            // A plain GET is not served (only its WebSocket upgrade is).
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        let Some(chain) = snapshot.router.route(req.uri().path()).cloned() else {
            return self.unknown_chain(&snapshot, req.uri().path());
        };
        // Bitcoin's own client (bitcoin-cli) sends no content type, as its node expects.
        let untyped_ok =
            chain.family().takes_json_rpc_1() && req.headers().get(CONTENT_TYPE).is_none();
        if !untyped_ok && !is_json(req.headers().get(CONTENT_TYPE)) {
            return self.reject(
                Rejection::UnsupportedMediaType,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorObject::invalid_request("content-type must be application/json"),
            );
        }
        let server = &snapshot.config.server;
        let max = server.max_request_bytes;
        let too_large = || {
            self.reject(
                Rejection::BodyTooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorObject::invalid_request(format!("body larger than max_request_bytes ({max})")),
            )
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return too_large();
        }
        let read = tokio::time::timeout(
            BODY_READ_TIMEOUT,
            Limited::new(req.into_body(), max).collect(),
        );
        let body = match read.await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return too_large()
            }
            Ok(Err(e)) => {
                return self.reject(
                    Rejection::BodyUnreadable,
                    StatusCode::BAD_REQUEST,
                    ErrorObject::invalid_request(format!("cannot read body: {e}")),
                )
            }
            Err(_) => {
                return self.reject(
                    Rejection::BodyTimeout,
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorObject::invalid_request(format!(
                        "body not received within {}s",
                        BODY_READ_TIMEOUT.as_secs()
                    )),
                )
            }
        };
        let limits = Limits {
            max_batch_len: server.max_batch_len,
            version_1: chain.family().takes_json_rpc_1(),
        };
        match jsonrpc::decode(&body, limits) {
            Ok(Incoming::Single(item)) => match self.answers.one(&chain, item).await {
                Some(chunks) => json_response(StatusCode::OK, chunks),
                None => json_response(StatusCode::OK, Vec::new()),
            },
            Ok(Incoming::Batch(items)) => self.batch_response(chain, items).await,
            Err(e) => {
                let reason = match e {
                    jsonrpc::DecodeError::Parse(_) => Rejection::ParseError,
                    _ => Rejection::InvalidRequest,
                };
                self.reject(reason, StatusCode::OK, e.to_error_object())
            }
        }
    }

    fn unknown_chain(&self, snapshot: &Snapshot, path: &str) -> Response<Body> {
        let shown: String = path.chars().take(64).collect();
        let error = ErrorObject::new(
            codes::UNKNOWN_CHAIN,
            format!("manifold: unknown chain `{}`", shown.trim_matches('/')),
        )
        .with_data(json!({ "reason": "unknown_chain", "chains": snapshot.router.names() }));
        self.reject(Rejection::UnknownChain, StatusCode::NOT_FOUND, error)
    }

    fn reject(&self, why: Rejection, status: StatusCode, error: ErrorObject) -> Response<Body> {
        self.count(why);
        json_response(
            status,
            encode_response(&Id::NULL, &Payload::Error(error.to_json())),
        )
    }
}

impl FrontDoor {
    /// A batch's answers, streamed in request order as they complete (`Answerer::batch`);
    /// the first bytes go out before the last item is done. A batch of notifications only
    /// is answered with an empty body, once all are delivered.
    async fn batch_response(&self, chain: Arc<Chain>, items: Vec<Item>) -> Response<Body> {
        let batch = self.answers.batch(chain, items, |_| None);
        if !batch.any_answer {
            batch.answers.for_each(|_| async {}).await;
            return json_response(StatusCode::OK, Vec::new());
        }
        let mut first = true;
        let body = batch
            .answers
            .flat_map(move |chunks| {
                let element = jsonrpc::batch_element(std::mem::take(&mut first), chunks);
                stream::iter(crate::body::join_small(element))
            })
            .chain(stream::once(async { jsonrpc::batch_end() }));
        let mut resp = Response::new(Body::from_stream(body));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

fn json_response(status: StatusCode, chunks: Vec<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::from_chunks(chunks));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `application/json`, with or without parameters (`; charset=utf-8`), in any case; also
/// the JSON-RPC media types geth accepts.
fn is_json(value: Option<&HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = v.split(';').next().unwrap_or("").trim();
    [
        "application/json",
        "application/json-rpc",
        "application/jsonrequest",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ok = |s: &'static str| is_json(Some(&HeaderValue::from_static(s)));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON;charset=UTF-8"));
        assert!(ok("application/json-rpc"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!is_json(None));
    }
}
