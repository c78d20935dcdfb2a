//! A chain's upstreams, and which of them serves each attempt.
//!
//! Eligible: allowed for the method, passing health checks, and far enough along the chain
//! for the block the call needs. Among the eligible, the next attempt goes to an in-sync
//! upstream not parked after a rate limit, of the best tier (`fallback`
//! only when no better tier is left), preferring, after a failure, upstreams outside the
//! failure domains already tried. Within that group, two distinct ones are drawn at random and the one with
//! the better score serves ("power of two choices", Mitzenmacher; as in Finagle and tower's
//! p2c balancer): load spreads over the good upstreams instead of piling on the single best,
//! and a slow one gets little traffic without any coordination. An upstream whose circuit
//! breaker is open is not picked at all; one over its `max_rps` is passed over for another,
//! and waited for only when every candidate is.
//!
//! `call` runs the attempts of one call: a hedge when the first is slow (`HedgePolicy`), a
//! retry on another upstream when one fails (within the retry budget), and the first good
//! answer wins; the attempts still running are dropped, which cancels them.
//!
//! `route` says what a call needs, `select` picks (`p2c` among equals), `call` drives the
//! attempts.

mod call;
mod p2c;
mod route;
mod select;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::Counter;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::retry::budget::TpsBudget;

pub use route::Route;

use super::hedge::HedgeBudget;
use super::outcome::AttemptFailure;
use super::{Admission, HealthStatus, Upstream};
use crate::config::HedgePolicy;
use crate::health::ChainHead;
use crate::jsonrpc::Payload;
use route::reaches;

/// Retries allowed per second whatever the budget, and how long a call counts towards it
/// (tower's `TpsBudget` parameters).
const RETRY_MIN_PER_SECOND: u32 = 10;
const RETRY_BUDGET_TTL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct UpstreamSet {
    upstreams: Arc<[Arc<Upstream>]>,
    max_attempts: usize,
    /// Signalled after every probe: requests waiting for a first verdict wake up.
    probed: Arc<Notify>,
    /// The chain head, re-read after waiting for first verdicts.
    head: Arc<ChainHead>,
    hedge: HedgePolicy,
    hedge_budget: HedgeBudget,
    /// Every call deposits, every retry withdraws: retries stay a share of the calls, so an
    /// outage cannot multiply the load on the upstreams that survive it.
    retry_budget: TpsBudget,
    metrics: SetMetrics,
}

/// The chain's retry and hedge counters.
#[derive(Debug)]
pub struct SetMetrics {
    pub retries_sent: Counter,
    pub retries_denied: Counter,
    pub hedges_sent: Counter,
    pub hedges_won: Counter,
}

impl SetMetrics {
    pub fn none() -> Self {
        Self {
            retries_sent: Counter::noop(),
            retries_denied: Counter::noop(),
            hedges_sent: Counter::noop(),
            hedges_won: Counter::noop(),
        }
    }
}

/// One call to run: what it is, where it may go, and how long it may take.
#[derive(Debug, Clone)]
pub struct CallPlan<'a> {
    pub method: &'a str,
    pub route: Route,
    /// The id `body` was encoded with.
    pub request_id: &'a [u8],
    pub body: Bytes,
    pub deadline: Instant,
    /// May be sent again after an attempt that may have reached a node.
    pub repeatable: bool,
    /// Upstreams (by name) the first attempt goes to when one of them is in sync and takes
    /// it: those that took a sender's transactions, for its `pending` nonce read.
    pub prefer: &'a [String],
}

/// An upstream's answer to a call, and that upstream's head when it answered (as its last
/// probe said): an answer about a block above it may be partial (a node clamps a log
/// range to its head), and must not be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub payload: Payload,
    pub head: Option<u64>,
}

/// Why no upstream answered.
#[derive(Debug, Clone)]
pub enum SetFailure {
    /// No upstream may serve this call, and why.
    NoUpstream(String),
    /// Every upstream that may serve it is at its `max_rps` until after the deadline.
    OverRate(String),
    /// Every attempt failed; in the order they were made.
    AllFailed(Vec<AttemptFailure>),
    /// A transaction broadcast that some node may have taken, without any saying so: its
    /// outcome is unknown (never "failed").
    Unknown(Vec<AttemptFailure>),
}

impl SetFailure {
    /// Every upstream that may serve `method` is at its `max_rps` for `wait` more.
    pub(crate) fn over_rate(method: &str, wait: Duration) -> Self {
        SetFailure::OverRate(format!(
            "every upstream that may serve `{method}` is at its max_rps (room in {})",
            humantime::format_duration(super::whole_millis(wait))
        ))
    }
}

/// An upstream chosen for the next attempt, with its leave to send it.
#[derive(Debug)]
pub struct Pick<'a> {
    pub upstream: &'a Arc<Upstream>,
    /// `None` for a last resort past an open breaker: the breaker neither gates nor learns.
    pub admission: Option<Admission>,
}

impl UpstreamSet {
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        max_attempts: u32,
        head: Arc<ChainHead>,
        hedge: HedgePolicy,
        retry_budget: f32,
        metrics: SetMetrics,
    ) -> Self {
        Self {
            upstreams: upstreams.into(),
            max_attempts: usize::try_from(max_attempts).unwrap_or(usize::MAX).max(1),
            probed: Arc::new(Notify::new()),
            head,
            hedge_budget: hedge.budget(),
            hedge,
            retry_budget: TpsBudget::new(RETRY_BUDGET_TTL, RETRY_MIN_PER_SECOND, retry_budget),
            metrics,
        }
    }

    /// What health checkers signal after each probe.
    pub fn probe_signal(&self) -> Arc<Notify> {
        self.probed.clone()
    }

    /// At start-up, wait until every upstream that may serve `method` has a first verdict
    /// (each probe is bounded by the health timeout), or until `deadline`: otherwise the
    /// first lagging node to answer would look in sync with a chain head only it has set.
    /// Then re-reads the chain head into `route`.
    pub(crate) async fn wait_for_first_verdicts(
        &self,
        method: &str,
        route: &mut Route,
        deadline: Instant,
    ) {
        loop {
            let probed = self.probed.notified();
            tokio::pin!(probed);
            probed.as_mut().enable();
            let pending = self
                .upstreams
                .iter()
                .any(|u| u.serves(method) && u.active().status() == HealthStatus::Unknown);
            if !pending || tokio::time::timeout_at(deadline, probed).await.is_err() {
                break;
            }
        }
        route.chain_head = self.head.get();
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.iter()
    }

    pub fn shared(&self) -> Arc<[Arc<Upstream>]> {
        self.upstreams.clone()
    }

    /// Whether `u` may serve this call.
    pub fn eligible(u: &Upstream, method: &str, route: &Route) -> bool {
        u.serves(method)
            && u.active().status().is_serving()
            && !route.too_far_ahead(u)
            && reaches(u, route)
    }

    /// At least one upstream may serve: passing health checks, not parked, breaker closed
    /// or ready for a trial.
    pub fn has_usable(&self) -> bool {
        self.upstreams
            .iter()
            .any(|u| u.active().status().is_serving() && u.is_usable())
    }
}

#[cfg(test)]
mod tests;
