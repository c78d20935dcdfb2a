//! Upstreams: the nodes and providers a chain's requests are sent to.
//!
//! `Upstream` is one of them: its HTTP client, its passive health and its metric handles.
//! One `attempt` sends one request and classifies the result once into an `Outcome`, which
//! feeds health, metrics and the failover decision in `UpstreamSet`.

mod client;
mod outcome;
mod passive;
mod reply;
mod set;

use std::sync::Arc;

use bytes::Bytes;
use metrics::{Counter, Gauge, Histogram, Label};
use tokio::time::Instant;

pub use client::{HttpReply, TransportError, UpstreamClient};
pub use outcome::{AttemptFailure, Outcome};
pub use passive::PassiveHealth;
pub use reply::read_reply;
pub use set::{SetFailure, UpstreamSet};

use crate::config::UpstreamConfig;
use crate::jsonrpc::Payload;
use crate::metrics::{
    LabelTable, Metrics, UPSTREAM_DURATION, UPSTREAM_IN_FLIGHT, UPSTREAM_REQUESTS,
};

#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    client: UpstreamClient,
    health: PassiveHealth,
    metrics: UpstreamMetrics,
}

#[derive(Debug)]
struct UpstreamMetrics {
    registry: Arc<Metrics>,
    chain: Arc<str>,
    by_outcome: LabelTable<Counter>,
    duration: Histogram,
    in_flight: Gauge,
}

impl Upstream {
    pub fn new(
        chain: &Arc<str>,
        config: UpstreamConfig,
        metrics: &Arc<Metrics>,
        max_response_bytes: usize,
    ) -> Result<Self, String> {
        let client = UpstreamClient::new(&config, max_response_bytes)?;
        let labels = || {
            vec![
                Label::new("chain", chain.to_string()),
                Label::new("upstream", config.name.to_string()),
            ]
        };
        let metrics = UpstreamMetrics {
            registry: metrics.clone(),
            chain: chain.clone(),
            by_outcome: LabelTable::new(Outcome::ALL.len()),
            duration: metrics.histogram(UPSTREAM_DURATION, labels()),
            in_flight: metrics.gauge(UPSTREAM_IN_FLIGHT, labels()),
        };
        Ok(Self {
            config,
            client,
            health: PassiveHealth::default(),
            metrics,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.config.name
    }

    /// Send one encoded request (sent with id `request_id`) and classify what comes back,
    /// giving up at `deadline` at the latest.
    pub async fn attempt(
        &self,
        request_id: &[u8],
        body: Bytes,
        deadline: Instant,
    ) -> Result<Payload, AttemptFailure> {
        let _in_flight = self.health.start();
        let _gauge = GaugeGuard::new(&self.metrics.in_flight);
        let started = Instant::now();
        let limit = deadline.saturating_duration_since(started);
        let (result, retry_after, maybe_delivered) =
            match self.client.post_within(body, limit).await {
                Ok(reply) => {
                    let result = read_reply(request_id, &reply);
                    // A 5xx or an unreadable answer may come after the node acted on it.
                    let delivered = reply.status.is_server_error()
                        || matches!(result, Err((Outcome::BadReply, _)));
                    (result, reply.retry_after, delivered)
                }
                Err(e) => {
                    let (outcome, delivered) = match e {
                        TransportError::Timeout(_) => (Outcome::Timeout, true),
                        TransportError::Connect(_) => (Outcome::Transport, false),
                        _ => (Outcome::Transport, true),
                    };
                    (Err((outcome, e.to_string())), None, delivered)
                }
            };
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(Payload::Result(_)) => Outcome::Success,
            Ok(Payload::Error(_)) => Outcome::RpcError,
            Err((o, _)) => *o,
        };
        self.health.record(outcome, elapsed, retry_after);
        self.metrics.record(&self.config.name, outcome, elapsed);
        match result {
            Ok(p) => {
                tracing::debug!(upstream = %self.config.name, outcome = outcome.label(), ?elapsed, "attempt");
                Ok(p)
            }
            Err((outcome, detail)) => {
                tracing::debug!(upstream = %self.config.name, outcome = outcome.label(), %detail, ?elapsed, "attempt failed");
                Err(AttemptFailure {
                    upstream: self.config.name.clone(),
                    outcome,
                    detail,
                    retry_after,
                    maybe_delivered,
                })
            }
        }
    }

    pub fn is_usable(&self) -> bool {
        self.health.is_usable()
    }

    pub fn health(&self) -> &PassiveHealth {
        &self.health
    }

    /// Configuration (redacted) and health, for `/status`.
    pub fn status(&self) -> serde_json::Value {
        let mut v = self.config.redacted();
        if let (Some(obj), serde_json::Value::Object(h)) =
            (v.as_object_mut(), self.health.snapshot())
        {
            obj.extend(h);
        }
        v
    }
}

impl UpstreamMetrics {
    fn record(&self, upstream: &Arc<str>, outcome: Outcome, elapsed: std::time::Duration) {
        self.by_outcome
            .get(outcome.index(), || {
                self.registry.counter(
                    UPSTREAM_REQUESTS,
                    vec![
                        Label::new("chain", self.chain.to_string()),
                        Label::new("upstream", upstream.to_string()),
                        Label::new("outcome", outcome.label()),
                    ],
                )
            })
            .increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// Holds a gauge up by one for as long as it lives.
struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    fn new(g: &'a Gauge) -> Self {
        g.increment(1.0);
        Self(g)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
