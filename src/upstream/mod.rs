//! Upstreams: the nodes and providers a chain's requests are sent to.
//!
//! `Upstream` is one of them: its HTTP client, its passive health and its metric handles.
//! One `attempt` sends one request and classifies the result once into an `Outcome`, which
//! feeds health, metrics and the failover decision in `UpstreamSet`.

mod ask;
mod attempt;
mod breaker;
mod broadcast;
pub mod budget;
mod client;
mod credentials;
pub mod hedge;
mod outcome;
mod passive;
mod read_body;
mod reply;
mod set;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

pub use crate::health::{ActiveHealth, HealthStatus, Transition};
pub use ask::{Lookup, Question};
pub use breaker::{BreakerState, BreakerTransition, CircuitBreaker, Verdict};
pub use broadcast::{
    broadcast, took_it, BroadcastOutcome, BroadcastRequest, BroadcastResult, SendResult,
};
pub use budget::AnswerBudget;
pub use client::{HttpReply, TransportError, UpstreamClient};
pub use outcome::{AttemptFailure, Outcome};
pub use passive::PassiveHealth;
pub use read_body::{read_answer, AnswerLimit, Encoding};
pub use reply::read_reply;
pub use set::{CallPlan, Pick, Route, Served, SetFailure, SetMetrics, UpstreamSet};

use crate::config::{BreakerPolicy, UpstreamConfig};
use crate::family::{ChainFamily, Cost};
use crate::metrics::{
    LabelTable, Metrics, BREAKER_STATE, UPSTREAM_DURATION, UPSTREAM_HEAD, UPSTREAM_HEALTHY,
    UPSTREAM_IN_FLIGHT, UPSTREAM_LAG, UPSTREAM_REQUESTS,
};

#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    family: Arc<dyn ChainFamily>,
    client: UpstreamClient,
    health: PassiveHealth,
    active: ActiveHealth,
    breaker: Arc<CircuitBreaker>,
    /// `max_rps`; GCRA from the governor crate.
    rate: Option<governor::DefaultDirectRateLimiter>,
    metrics: UpstreamMetrics,
    socket: socket::SocketStatus,
}

/// Leave to send one attempt: the breaker let it through and `max_rps` had room. A trial
/// permit of a half-open breaker goes back if the attempt is dropped unanswered.
#[derive(Debug)]
pub struct Admission(breaker::Admission);

/// Why an upstream did not take an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BreakerOpen,
    /// Over `max_rps`: room again after this long.
    OverRate(std::time::Duration),
}

#[derive(Debug)]
struct UpstreamMetrics {
    registry: Arc<Metrics>,
    chain: Arc<str>,
    by_outcome: LabelTable<Counter>,
    duration: Histogram,
    in_flight: Gauge,
    breaker: Gauge,
    healthy: Gauge,
    head: Gauge,
    lag: Gauge,
}

impl Upstream {
    pub fn new(
        chain: &Arc<str>,
        config: UpstreamConfig,
        metrics: &Arc<Metrics>,
        answers: AnswerLimit,
        health: &crate::config::HealthPolicy,
        breaker: &BreakerPolicy,
        family: Arc<dyn ChainFamily>,
    ) -> Result<Self, String> {
        let client = UpstreamClient::new(&config, answers)?;
        let labels = || {
            vec![
                Label::new("chain", chain.to_string()),
                Label::new("upstream", config.name.to_string()),
            ]
        };
        let socket = socket::SocketStatus::new(
            metrics,
            chain,
            &config.name,
            if client.socket().is_some() && family.push().is_some() {
                socket::SocketState::Idle
            } else {
                socket::SocketState::Off
            },
        );
        let metrics = UpstreamMetrics {
            registry: metrics.clone(),
            chain: chain.clone(),
            by_outcome: LabelTable::new(Outcome::ALL.len() + 1),
            duration: metrics.histogram(UPSTREAM_DURATION, labels()),
            in_flight: metrics.gauge(UPSTREAM_IN_FLIGHT, labels()),
            breaker: metrics.gauge(BREAKER_STATE, labels()),
            healthy: metrics.gauge(UPSTREAM_HEALTHY, labels()),
            head: metrics.gauge(UPSTREAM_HEAD, labels()),
            lag: metrics.gauge(UPSTREAM_LAG, labels()),
        };
        Ok(Self {
            socket,
            family,
            client,
            health: PassiveHealth::default(),
            active: ActiveHealth::new(health.rise, health.fall),
            breaker: Arc::new(CircuitBreaker::new(breaker.clone())),
            rate: config
                .max_rps
                .map(|rps| governor::RateLimiter::direct(governor::Quota::per_second(rps))),
            metrics,
            config,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.config.name
    }

    /// Whether it may be sent `method`: its `methods` allow it, and, for a call its family
    /// keeps on one node (`ChainFamily::refuse`: a Bitcoin node's own wallet), its
    /// `methods.allow` names it.
    pub fn serves(&self, method: &str) -> bool {
        self.config.methods.allows(method)
            && (self.config.methods.names(method) || !self.family.node_local(method))
    }

    /// Its WebSocket's state (`socket::keep`).
    pub fn socket_status(&self) -> &socket::SocketStatus {
        &self.socket
    }

    /// Ask to send one attempt of a call of `cost`: the breaker's gate, then `max_rps`. An
    /// open breaker whose time is up turns half-open here; its trials are ordinary calls.
    pub fn admit(&self, cost: Cost) -> Result<Admission, Refusal> {
        let (admission, transition) = self.breaker.admit(cost == Cost::Normal);
        if let Some(t) = transition {
            self.breaker_changed(&t);
        }
        let admission = admission.ok_or(Refusal::BreakerOpen)?;
        self.check_rate()?;
        Ok(Admission(admission))
    }

    /// Leave for a background question (the transaction watch's checks, a broadcast's
    /// lookups): only while the breaker is closed, and within `max_rps`. Such an attempt
    /// (sent without an `Admission`) neither takes a trial permit nor counts for the breaker:
    /// background work can never open, or keep open, a breaker that clients' calls need.
    pub fn admit_background(&self) -> Result<(), Refusal> {
        if self.breaker.state() != BreakerState::Closed {
            return Err(Refusal::BreakerOpen);
        }
        self.check_rate()
    }

    fn check_rate(&self) -> Result<(), Refusal> {
        if let Some(rate) = &self.rate {
            if let Err(not_until) = rate.check() {
                use governor::clock::Clock;
                let now = governor::clock::DefaultClock::default().now();
                return Err(Refusal::OverRate(not_until.wait_time_from(now)));
            }
        }
        Ok(())
    }

    /// Whether the breaker would let an attempt through now (selection reads only this).
    pub fn breaker_allows(&self, cost: Cost) -> bool {
        self.breaker.allows(cost == Cost::Normal)
    }

    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// An open breaker whose time is up turns half-open even if no traffic reaches it
    /// (the health checker calls this after each probe): `/status` and the gauge stay true.
    pub fn refresh_breaker(&self) {
        if let Some(t) = self.breaker.refresh() {
            self.breaker_changed(&t);
        }
    }

    fn breaker_changed(&self, t: &BreakerTransition) {
        self.metrics.breaker.set(f64::from(t.to as u8));
        match t.open_for {
            Some(d) => tracing::info!(
                chain = %self.metrics.chain, upstream = %self.config.name,
                from = t.from.label(), to = t.to.label(), reason = %t.reason,
                open_for = %humantime::format_duration(whole_millis(d)),
                "circuit breaker"
            ),
            None => tracing::info!(
                chain = %self.metrics.chain, upstream = %self.config.name,
                from = t.from.label(), to = t.to.label(), reason = %t.reason,
                "circuit breaker"
            ),
        }
    }

    /// Log a change of health status, from a probe or from traffic.
    pub fn health_changed(&self, t: &Transition) {
        if t.to.is_serving() {
            tracing::info!(
                chain = %self.metrics.chain, upstream = %self.config.name,
                from = t.from.label(), to = t.to.label(), "upstream up"
            );
        } else {
            tracing::warn!(
                chain = %self.metrics.chain, upstream = %self.config.name,
                from = t.from.label(), to = t.to.label(), reason = %t.reason,
                "upstream down"
            );
        }
    }

    /// `text` that came from this upstream, with its secrets hidden (an error that quotes
    /// the request URL would show its key): for messages, `/status` and logs.
    pub fn scrub(&self, text: &str) -> String {
        self.config.secrets.redact(text)
    }

    /// A JSON text from this upstream (an error object passed to a client), with its secrets
    /// hidden; unchanged, and not copied, when it holds none.
    pub fn scrub_json(&self, json: bytes::Bytes) -> bytes::Bytes {
        let secrets = &self.config.secrets;
        if secrets.is_empty() {
            return json;
        }
        match std::str::from_utf8(&json) {
            Ok(text) if secrets.contains_any(text) => bytes::Bytes::from(secrets.redact(text)),
            _ => json,
        }
    }

    /// Not parked after a rate limit, and not cut off by its breaker.
    pub fn is_usable(&self) -> bool {
        self.health.is_usable() && self.breaker.allows(true)
    }

    pub fn health(&self) -> &PassiveHealth {
        &self.health
    }

    pub fn active(&self) -> &ActiveHealth {
        &self.active
    }

    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// Lower is better: recent latency times the requests waiting on it (as tower's
    /// PeakEwma balancer costs an endpoint), inflated by the error rate, divided by the weight.
    pub fn score(&self) -> f64 {
        let latency = self.health.latency_estimate_ms() + 1.0;
        let load = 1.0 + self.health.in_flight() as f64;
        latency * load * (1.0 + 10.0 * self.health.error_rate())
            / f64::from(self.config.weight.max(1))
    }

    /// Blocks behind the chain head (0 when either is unknown).
    pub fn lag(&self, chain_head: Option<u64>) -> u64 {
        match (chain_head, self.active.head()) {
            (Some(c), Some(h)) => c.saturating_sub(h),
            _ => 0,
        }
    }

    /// Update the health gauges after a probe.
    pub fn publish_health(&self, chain_head: Option<u64>) {
        let serving = self.active.status() == HealthStatus::Healthy;
        self.metrics.healthy.set(if serving { 1.0 } else { 0.0 });
        if let Some(h) = self.active.head() {
            self.metrics.head.set(h as f64);
        }
        self.metrics.lag.set(self.lag(chain_head) as f64);
    }

    /// Configuration (redacted) and health, for `/status`.
    pub fn status(&self, chain_head: Option<u64>) -> serde_json::Value {
        let mut v = self.config.redacted();
        let (reason, last_failure) = self.active.reasons();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("status".into(), self.active.status().label().into());
            obj.insert("reason".into(), reason.into());
            obj.insert("last_probe_failure".into(), last_failure.into());
            obj.insert("head".into(), self.active.head().into());
            obj.insert("lag".into(), self.lag(chain_head).into());
            obj.insert("probes".into(), self.active.probes().into());
            if let serde_json::Value::Object(h) = self.health.snapshot() {
                obj.extend(h);
            }
            obj.insert("breaker".into(), self.breaker.snapshot());
            let url = self
                .config
                .ws
                .as_ref()
                .map_or("", |w| w.display_url.as_str());
            obj.insert(
                "socket".into(),
                self.socket.snapshot(url, self.active.socket_head()),
            );
        }
        v
    }
}

impl UpstreamMetrics {
    fn record(&self, upstream: &Arc<str>, outcome: Outcome, elapsed: std::time::Duration) {
        self.count(upstream, outcome.index(), outcome.label());
        self.duration.record(elapsed.as_secs_f64());
    }

    fn count(&self, upstream: &Arc<str>, slot: usize, label: &'static str) {
        self.by_outcome
            .get(slot, || {
                self.registry.counter(
                    UPSTREAM_REQUESTS,
                    vec![
                        Label::new("chain", self.chain.to_string()),
                        Label::new("upstream", upstream.to_string()),
                        Label::new("outcome", label),
                    ],
                )
            })
            .increment(1);
    }
}

/// `d` without its sub-millisecond part, for messages ("4.8s", not "4s 812ms 301us 2ns").
fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
