//! The admin listener (PRODUCT.md §8): `/healthz`, `/readyz`, `/status`, `/metrics`, and
//! `/tx/{chain}/{hash}` (a watched transaction).
//!
//! Kept on its own address (`admin_listen`) so that it can stay private while the JSON-RPC
//! port is shared, and so that a flood of JSON-RPC traffic does not starve health probes.

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use crate::body::Body;
use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshot;

#[derive(Debug, Clone)]
pub struct Admin {
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    started: Instant,
}

impl Admin {
    pub fn new(snapshot: SharedSnapshot, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot,
            metrics,
            started: Instant::now(),
        }
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        match req.uri().path() {
            "/healthz" => json_body(StatusCode::OK, &json!({ "status": "ok" })),
            "/readyz" => self.readyz(),
            "/status" => json_body(StatusCode::OK, &self.status()),
            "/metrics" => {
                let mut resp = text(StatusCode::OK, self.metrics.render());
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            path if path.starts_with("/tx/") => self.tx(path),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /healthz, /readyz, /status, /metrics or /tx/{chain}/{hash}\n"
                    .into(),
            ),
        }
    }

    /// Ready when every chain has at least one usable upstream (`UpstreamSet::has_usable`).
    fn readyz(&self) -> Response<Body> {
        let snapshot = self.snapshot.load();
        let not_ready: Vec<String> = snapshot
            .router
            .chains()
            .iter()
            .filter(|c| !c.upstreams().has_usable())
            .map(|c| {
                let why: Vec<String> = c
                    .upstreams()
                    .iter()
                    .map(|u| {
                        let status = u.active().status();
                        if status.is_serving() {
                            format!(
                                "{}: {} consecutive failed requests",
                                u.name(),
                                u.health().consecutive_failures()
                            )
                        } else {
                            format!(
                                "{}: {} ({})",
                                u.name(),
                                status.label(),
                                u.active().reasons().0
                            )
                        }
                    })
                    .collect();
                format!(
                    "chain `{}` has no usable upstream ({})",
                    c.name(),
                    why.join(", ")
                )
            })
            .collect();
        if not_ready.is_empty() {
            json_body(StatusCode::OK, &json!({ "ready": true }))
        } else {
            json_body(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "ready": false, "reason": not_ready.join("; ") }),
            )
        }
    }

    /// `GET /tx/{chain}/{hash}`: what the transaction watch knows of one transaction.
    fn tx(&self, path: &str) -> Response<Body> {
        let mut parts = path.trim_start_matches("/tx/").splitn(2, '/');
        let (Some(chain), Some(hash)) = (parts.next(), parts.next()) else {
            return json_body(
                StatusCode::NOT_FOUND,
                &json!({ "error": "use /tx/{chain}/{hash}" }),
            );
        };
        let snapshot = self.snapshot.load();
        let Some(chain) = snapshot.router.chain(chain) else {
            return json_body(
                StatusCode::NOT_FOUND,
                &json!({ "error": format!("unknown chain `{}`", chain.chars().take(64).collect::<String>()), "chains": snapshot.router.names() }),
            );
        };
        let Some(watch) = chain.watch() else {
            return json_body(
                StatusCode::NOT_FOUND,
                &json!({ "error": format!("chain `{}` does not watch transactions (policy.broadcast.watch = false)", chain.name()) }),
            );
        };
        match watch.view(hash) {
            Some(v) => json_body(StatusCode::OK, &v),
            None => json_body(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not watched: never sent through this Manifold, rejected, or forgotten (ended more than watch_for ago)", "chain": &**chain.name(), "hash": hash.chars().take(80).collect::<String>() }),
            ),
        }
    }

    fn status(&self) -> serde_json::Value {
        let snapshot = self.snapshot.load();
        let chains: Vec<_> = snapshot
            .router
            .chains()
            .iter()
            .map(|c| {
                json!({
                    "name": &**c.name(),
                    "family": c.config().family.as_str(),
                    "chain_id": c.config().chain_id,
                    "genesis_hash": c.config().genesis_hash,
                    "head": c.head(),
                    "finalized": c.finalized(),
                    "followed": c.followed(),
                    "ready": c.upstreams().has_usable(),
                    "tx_watch": c.watch().map(|w| w.counts()),
                    "upstreams": c.upstreams().iter().map(|u| u.status(c.head())).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "config_source": snapshot.config.source,
            "warnings": snapshot.config.warnings,
            "chains": chains,
        })
    }
}

fn json_body(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
