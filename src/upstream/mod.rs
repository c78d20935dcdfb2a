//! Upstreams: the nodes and providers a chain's requests are sent to.
//!
//! `Upstream` is one of them: its HTTP client, its passive health and its metric handles.
//! One `attempt` sends one request and classifies the result once into an `Outcome`, which
//! feeds health, metrics and the failover decision in `UpstreamSet`.

mod active;
mod breaker;
mod broadcast;
mod client;
pub mod hedge;
mod outcome;
mod passive;
mod reply;
mod set;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Gauge, Histogram, Label};
use tokio::time::Instant;

pub use active::{ActiveHealth, HealthStatus, Transition};
pub use breaker::{BreakerPolicy, BreakerState, BreakerTransition, CircuitBreaker, Verdict};
pub use broadcast::{broadcast, BroadcastRequest, BroadcastResult};
pub use client::{HttpReply, TransportError, UpstreamClient};
pub use hedge::{HedgeDelay, HedgePolicy};
pub use outcome::{AttemptFailure, Outcome};
pub use passive::PassiveHealth;
pub use reply::read_reply;
pub use set::{CallPlan, Pick, Route, SetFailure, SetMetrics, UpstreamSet};

use crate::config::UpstreamConfig;
use crate::family::{ChainFamily, Cost, ErrorClass, ProbeVerdict};
use crate::jsonrpc::Payload;
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
        max_response_bytes: usize,
        health: &crate::config::HealthPolicy,
        breaker: &BreakerPolicy,
        family: Arc<dyn ChainFamily>,
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
            by_outcome: LabelTable::new(Outcome::ALL.len() + 1),
            duration: metrics.histogram(UPSTREAM_DURATION, labels()),
            in_flight: metrics.gauge(UPSTREAM_IN_FLIGHT, labels()),
            breaker: metrics.gauge(BREAKER_STATE, labels()),
            healthy: metrics.gauge(UPSTREAM_HEALTHY, labels()),
            head: metrics.gauge(UPSTREAM_HEAD, labels()),
            lag: metrics.gauge(UPSTREAM_LAG, labels()),
        };
        Ok(Self {
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

    /// Ask to send one attempt of a call of `cost`: the breaker's gate, then `max_rps`. An
    /// open breaker whose time is up turns half-open here; its trials are ordinary calls.
    pub fn admit(&self, cost: Cost) -> Result<Admission, Refusal> {
        let (admission, transition) = self.breaker.admit(cost == Cost::Normal);
        if let Some(t) = transition {
            self.breaker_changed(&t);
        }
        let admission = admission.ok_or(Refusal::BreakerOpen)?;
        if let Some(rate) = &self.rate {
            if let Err(not_until) = rate.check() {
                use governor::clock::Clock;
                let now = governor::clock::DefaultClock::default().now();
                return Err(Refusal::OverRate(not_until.wait_time_from(now)));
            }
        }
        Ok(Admission(admission))
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

    /// Send one encoded request (sent with id `request_id`) and classify what comes back,
    /// giving up at `deadline` at the latest, and after the upstream's own timeout for
    /// ordinary calls. `admission` (from `admit`) carries the breaker's permit; without one
    /// (a look-up on the node that just answered) the breaker neither gates nor learns.
    pub async fn attempt(
        &self,
        admission: Option<Admission>,
        method: &str,
        request_id: &[u8],
        body: Bytes,
        deadline: Instant,
        cost: Cost,
    ) -> Result<Payload, AttemptFailure> {
        let mut in_flight = AttemptGuard::new(self, cost);
        let started = Instant::now();
        let limit = deadline.saturating_duration_since(started);
        let reply = match cost {
            Cost::Normal => self.client.post_within(body, limit).await,
            // A heavy attempt may run for minutes, and its timeout blames no one: if the
            // upstream is found dead meanwhile (by probes or other calls), the call moves
            // on instead of waiting out the deadline. Unrecorded: that verdict is made.
            Cost::Heavy => tokio::select! {
                r = self.client.post_for(body, limit) => r,
                () = self.taken_out() => {
                    return Err(AttemptFailure {
                        upstream: self.config.name.clone(),
                        outcome: Outcome::Transport,
                        detail: "abandoned: the upstream was taken out of service while the call ran".into(),
                        retry_after: None,
                        maybe_delivered: true,
                        node_answer: None,
                    });
                }
            },
        };
        // Queued behind `max_in_flight` for the whole time allowed: never sent. Slow all the
        // same (a timeout for failover), but it says nothing about the node: blameless.
        let never_sent = matches!(reply, Err(TransportError::Saturated(..)));
        // How long the exchange itself was allowed, when it timed out (the wait for a slot
        // before it is not the node's doing).
        let allowed = match &reply {
            Err(TransportError::Timeout(d)) => Some(*d),
            _ => None,
        };
        let (result, retry_after, maybe_delivered) = match reply {
            Ok(reply) => {
                let result = read_reply(request_id, &reply);
                // A 5xx or an unreadable answer may come after the node acted on it.
                let delivered =
                    reply.status.is_server_error() || matches!(result, Err((Outcome::BadReply, _)));
                (result, reply.retry_after, delivered)
            }
            Err(e) => {
                let (outcome, delivered) = match e {
                    TransportError::Timeout(_) => (Outcome::Timeout, true),
                    // Never sent (`never_sent`): safe to send elsewhere.
                    TransportError::Saturated(..) => (Outcome::Timeout, false),
                    TransportError::Connect(_) => (Outcome::Transport, false),
                    // An answer too large to take is the request's doing, not the node's.
                    TransportError::TooLarge(_) => (Outcome::Rejected, true),
                    _ => (Outcome::Transport, true),
                };
                (Err((outcome, e.to_string())), None, delivered)
            }
        };
        let elapsed = started.elapsed();
        // The one classification of this attempt (STYLE.md 4): health, metrics and failover
        // all read `outcome`.
        let (outcome, result) = match result {
            Ok(Payload::Result(r)) => match self.family.check_answer(method, &r) {
                None => (Outcome::Success, Ok(Payload::Result(r))),
                Some(verdict) => self.answer_refused(verdict),
            },
            Ok(Payload::Error(e)) => match self.family.classify_error(&e) {
                ErrorClass::Answer => (Outcome::RpcError, Ok(Payload::Error(e))),
                ErrorClass::NodeCannotAnswer => {
                    let detail = format!("node error: {}", excerpt(&e));
                    (Outcome::NodeError, Err((detail, Some(e))))
                }
                ErrorClass::RateLimited => {
                    let detail = format!("rate limited: {}", excerpt(&e));
                    (Outcome::RateLimited, Err((detail, Some(e))))
                }
            },
            Err((o, detail)) => (o, Err((detail, None))),
        };
        // A rate limit means the request was turned away, not processed.
        let maybe_delivered = maybe_delivered && outcome != Outcome::RateLimited;
        in_flight.passive.finish();
        let blameless = never_sent
            || allowed.is_some_and(|allowed| {
                timeout_is_blameless(
                    cost,
                    allowed < self.client.timeout(),
                    allowed,
                    self.health.latency_quantile(0.99),
                )
            });
        if blameless {
            self.health.record_blameless();
        } else {
            self.health.record(outcome, cost, elapsed, retry_after);
        }
        self.metrics.record(&self.config.name, outcome, elapsed);
        if let Some(admission) = admission {
            let verdict = if blameless {
                Verdict::Neutral
            } else {
                breaker_verdict(outcome)
            };
            if let Some(t) = admission.0.record(verdict) {
                self.breaker_changed(&t);
            }
        }
        match result {
            Ok(p) => {
                tracing::debug!(upstream = %self.config.name, outcome = outcome.label(), ?elapsed, "attempt");
                Ok(p)
            }
            Err((detail, node_answer)) => {
                tracing::debug!(upstream = %self.config.name, outcome = outcome.label(), %detail, ?elapsed, "attempt failed");
                Err(AttemptFailure {
                    upstream: self.config.name.clone(),
                    outcome,
                    detail,
                    retry_after,
                    maybe_delivered: maybe_delivered || outcome == Outcome::NodeError,
                    node_answer,
                })
            }
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

    /// A `result` that a probe would have failed (`ChainFamily::check_answer`): not passed
    /// on. An upstream found on another chain is out at once, as its next probe would put it.
    fn answer_refused(
        &self,
        verdict: ProbeVerdict,
    ) -> (Outcome, Result<Payload, (String, Option<Bytes>)>) {
        let why = match &verdict {
            ProbeVerdict::WrongChain(why) | ProbeVerdict::Failed(why) => why.clone(),
            ProbeVerdict::Healthy { .. } | ProbeVerdict::Syncing { .. } => {
                "refused by the chain family".to_string()
            }
        };
        if matches!(verdict, ProbeVerdict::WrongChain(_)) {
            if let Some(t) = self.active.apply_seen(&verdict) {
                self.health_changed(&t);
                self.metrics.healthy.set(0.0);
            }
        }
        (Outcome::BadReply, Err((why, None)))
    }

    /// Resolves when the upstream goes from serving to out of service (failed probes, or
    /// its breaker opened); never, if it was out already (a last resort). Polled: it runs
    /// only beside heavy attempts, which are few, and a quarter of a second is nothing
    /// next to their timeout.
    async fn taken_out(&self) {
        let serving =
            || self.active().status().is_serving() && self.breaker.state() != BreakerState::Open;
        if !serving() {
            return std::future::pending().await;
        }
        while serving() {
            tokio::time::sleep(Duration::from_millis(250)).await;
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

/// What an attempt's outcome tells the breaker. Only faults of the upstream itself count:
/// not a node that is behind (any client can ask every node for a block none has), not a
/// rate limit (parked instead), and not a request the upstream refused for its own sake.
/// (Timeouts that blame no one are sorted out before: `attempt`.)
fn breaker_verdict(outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Success | Outcome::RpcError => Verdict::Success,
        Outcome::NodeError | Outcome::RateLimited | Outcome::Rejected => Verdict::Neutral,
        Outcome::Timeout | Outcome::Transport | Outcome::HttpStatus | Outcome::BadReply => {
            Verdict::Failure
        }
    }
}

/// Whether an attempt's timeout says nothing about the upstream. A call slow by nature
/// times out on the best of nodes; so does one given less time (`cut_short`: less than the
/// upstream's own `timeout`, by the call's deadline) than the upstream's usual slow answers
/// take (its p99). An upstream with no answers to go by is blamed: a dead one must not hide
/// behind a short `request_timeout`.
fn timeout_is_blameless(
    cost: Cost,
    cut_short: bool,
    elapsed: Duration,
    p99: Option<Duration>,
) -> bool {
    cost == Cost::Heavy || (cut_short && p99.is_some_and(|p99| elapsed < p99))
}

/// `d` without its sub-millisecond part, for messages ("4.8s", not "4s 812ms 301us 2ns").
fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The start of a node's error object, for messages and logs.
fn excerpt(error: &[u8]) -> String {
    String::from_utf8_lossy(error).chars().take(200).collect()
}

/// One attempt in flight, in passive health and in the metrics (the in-flight gauge, and
/// `outcome="cancelled"` for an attempt dropped before it had an outcome: a hedge's loser,
/// the rest of a call answered elsewhere or whose client went away).
struct AttemptGuard<'a> {
    upstream: &'a Upstream,
    passive: passive::InFlight<'a>,
}

impl<'a> AttemptGuard<'a> {
    fn new(upstream: &'a Upstream, cost: Cost) -> Self {
        upstream.metrics.in_flight.increment(1.0);
        Self {
            upstream,
            passive: upstream.health.start(cost),
        }
    }
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        let metrics = &self.upstream.metrics;
        metrics.in_flight.decrement(1.0);
        if !self.passive.is_finished() {
            metrics.count(&self.upstream.config.name, CANCELLED, "cancelled");
        }
    }
}

/// `UpstreamMetrics::by_outcome`'s slot for cancelled attempts, after the outcomes'.
const CANCELLED: usize = Outcome::ALL.len();

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_timeout_blames_the_upstream_only_when_it_had_its_time() {
        let p99 = Some(MS * 50);
        // Its whole timeout, and no answer: the upstream's fault.
        assert!(!timeout_is_blameless(Cost::Normal, false, MS * 10, p99));
        // Cut short by the call's deadline, before its usual slow answers: nobody's.
        assert!(timeout_is_blameless(Cost::Normal, true, MS * 10, p99));
        // Cut short, with no answers to go by (a hung node under a short request_timeout).
        assert!(!timeout_is_blameless(Cost::Normal, true, MS * 10, None));
        // Cut short, but already slower than 99% of its answers: the upstream's.
        assert!(!timeout_is_blameless(Cost::Normal, true, MS * 80, p99));
        // Slow by nature: never.
        assert!(timeout_is_blameless(Cost::Heavy, false, MS * 10_000, p99));
    }
}
