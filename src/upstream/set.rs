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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use metrics::Counter;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use super::hedge::{HedgeBudget, HedgePolicy};
use super::outcome::AttemptFailure;
use super::{Admission, HealthStatus, Refusal, Upstream};
use crate::family::{BlockNeed, Cost};
use crate::health::ChainHead;
use crate::jsonrpc::Payload;

/// Retries allowed per second whatever the budget, and how long a call counts towards it
/// (tower's `TpsBudget` parameters).
const RETRY_MIN_PER_SECOND: u32 = 10;
const RETRY_BUDGET_TTL: Duration = Duration::from_secs(10);
/// Shortest wait before a refused hedge is tried again, whatever the hedge delay: a call
/// must not spin selection every millisecond.
const REARM_MIN: Duration = Duration::from_millis(20);

/// What a call needs, with the chain's state when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub need: BlockNeed,
    /// A block lookup answered `null` when the block is beyond every upstream's head.
    pub block_lookup: bool,
    pub chain_head: Option<u64>,
    pub max_lag_blocks: u64,
    /// An upstream further ahead of the chain head than this is an outlier (a fork, a
    /// broken node): it does not serve.
    pub max_ahead_blocks: u64,
    /// A heavy call is never a half-open breaker's trial: a trial must tell quickly whether
    /// the upstream is back, and a heavy call's timeout says nothing.
    pub cost: Cost,
}

impl Route {
    /// Any upstream will do (tests, probes of the set).
    pub fn any() -> Self {
        Self {
            need: BlockNeed::Any,
            block_lookup: false,
            chain_head: None,
            max_lag_blocks: u64::MAX,
            max_ahead_blocks: u64::MAX,
            cost: Cost::Normal,
        }
    }

    /// Whether `u` is within `max_lag_blocks` of the chain head (and not an outlier ahead).
    pub fn in_sync(&self, u: &Upstream) -> bool {
        u.lag(self.chain_head) <= self.max_lag_blocks && !self.too_far_ahead(u)
    }

    fn too_far_ahead(&self, u: &Upstream) -> bool {
        match (self.chain_head, u.active().head()) {
            (Some(c), Some(h)) => h.saturating_sub(c) > self.max_ahead_blocks,
            _ => false,
        }
    }
}

/// A block lookup this far beyond every head is answered `null` without asking: the probed
/// heads may be a few seconds old, but not this old.
fn far_beyond(max_lag_blocks: u64) -> u64 {
    max_lag_blocks.saturating_mul(100).max(1000)
}

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
}

impl SetFailure {
    /// Every upstream that may serve `method` is at its `max_rps` for `wait` more.
    pub(super) fn over_rate(method: &str, wait: Duration) -> Self {
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

/// Where a retry goes.
enum RetryPick<'a> {
    Now(Pick<'a>),
    /// Every candidate is at its `max_rps`: try again then (before the deadline).
    At(Instant),
    Nowhere,
}

enum Selection<'a> {
    Picked(Pick<'a>),
    /// Candidates there are, but all at their `max_rps`: one has room after this long.
    OverRate(Duration),
    None,
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
            let pending = self.upstreams.iter().any(|u| {
                u.config.methods.allows(method) && u.active().status() == HealthStatus::Unknown
            });
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
        u.config.methods.allows(method)
            && u.active().status().is_serving()
            && !route.too_far_ahead(u)
            && reaches(u, route)
    }

    /// The best upstream for the next attempt that will take it: not among `tried`, and
    /// outside their failure domains when an eligible one is.
    pub fn next_best(
        &self,
        method: &str,
        route: &Route,
        tried: &[&Arc<Upstream>],
    ) -> Option<Pick<'_>> {
        match self.select(method, route, tried) {
            Selection::Picked(p) => Some(p),
            _ => None,
        }
    }

    fn select(&self, method: &str, route: &Route, tried: &[&Arc<Upstream>]) -> Selection<'_> {
        let tried_domains: Vec<&str> = tried
            .iter()
            .map(|t| t.config.failure_domain.as_str())
            .collect();
        // In-sync upstreams come before lagging ones, even for old blocks and lookups by hash:
        // a lagging node answers `null` for a receipt it has not seen yet. Then upstreams
        // parked after a rate limit come after the others of any tier.
        let rank = |u: &Upstream| {
            (
                !route.in_sync(u),
                !u.health().is_usable(),
                u.config.tier,
                tried_domains.contains(&u.config.failure_domain.as_str()),
            )
        };
        // Ranked once: a rank reads the clock (parking), and the loop below may look again.
        let mut candidates: Vec<(_, &Arc<Upstream>)> = self
            .upstreams
            .iter()
            .filter(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
            .filter(|u| Self::eligible(u, method, route) && u.breaker_allows(route.cost))
            .map(|u| (rank(u), u))
            .collect();
        let mut over_rate: Option<Duration> = None;
        let mut class = None;
        loop {
            let Some(best) = candidates.iter().map(|(r, _)| *r).min() else {
                return over_rate.map_or(Selection::None, Selection::OverRate);
            };
            // An upstream at its `max_rps` passes the call to another of its class (any tier
            // or domain), never to a worse one: a lagging node's answer may be stale, and a
            // parked one is rate limited already. Waiting for room beats either.
            let best_class = (best.0, best.1);
            if let Some(wait) = over_rate {
                if class.is_some_and(|c| c != best_class) {
                    return Selection::OverRate(wait);
                }
            }
            class.get_or_insert(best_class);
            let group: Vec<&Arc<Upstream>> = candidates
                .iter()
                .filter(|(r, _)| *r == best)
                .map(|(_, u)| *u)
                .collect();
            let Some(u) = power_of_two_choices(&group) else {
                return Selection::None;
            };
            match u.admit(route.cost) {
                Ok(admission) => {
                    return Selection::Picked(Pick {
                        upstream: u,
                        admission: Some(admission),
                    })
                }
                Err(refusal) => {
                    if let Refusal::OverRate(wait) = refusal {
                        over_rate = Some(over_rate.map_or(wait, |w| w.min(wait)));
                    }
                    candidates.retain(|(_, c)| !Arc::ptr_eq(c, u));
                }
            }
        }
    }

    /// `select`, waiting for room when every candidate is at its `max_rps` (until
    /// `deadline`). `Err` says when nothing can be picked before the deadline.
    pub(super) async fn select_within(
        &self,
        method: &str,
        route: &Route,
        tried: &[&Arc<Upstream>],
        deadline: Instant,
    ) -> Result<Option<Pick<'_>>, Duration> {
        loop {
            match self.select(method, route, tried) {
                Selection::Picked(p) => return Ok(Some(p)),
                Selection::None => return Ok(None),
                Selection::OverRate(wait) => {
                    let at = Instant::now() + wait;
                    if at >= deadline {
                        return Err(wait);
                    }
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }

    /// The first attempt's upstream, or what the call gets without asking one.
    async fn first_pick(
        &self,
        plan: &CallPlan<'_>,
        route: &mut Route,
    ) -> Result<Pick<'_>, Result<Payload, SetFailure>> {
        let (method, deadline) = (plan.method, plan.deadline);
        self.wait_for_first_verdicts(method, route, deadline).await;
        let over_rate = |wait: Duration| Err(Err(SetFailure::over_rate(method, wait)));
        match self.select_within(method, route, &[], deadline).await {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(wait) => return over_rate(wait),
        }
        match self.beyond_every_head(method, route) {
            Beyond::Null => Err(Ok(Payload::Result(Bytes::from_static(b"null")))),
            // The block may exist by now: ask the in-sync upstreams, best first.
            Beyond::AskInSync => {
                route.need = BlockNeed::Head;
                match self.select_within(method, route, &[], deadline).await {
                    Ok(Some(p)) => Ok(p),
                    Ok(None) => Err(Err(self.no_upstream(method, route))),
                    Err(wait) => over_rate(wait),
                }
            }
            // Nothing passes its health checks, but the checks may be what is wrong (a probe
            // method blocked, a path back since its last probe): rather try. Or every
            // eligible upstream has its breaker open. Not when some upstream passes its
            // checks but lags: a stale answer is refused, not risked.
            Beyond::No if !self.any_serving(method) || self.only_broken(method, route) => {
                match self.last_resort(method, route, &[]) {
                    Some(p) => Ok(p),
                    None => Err(Err(self.no_upstream(method, route))),
                }
            }
            Beyond::No => Err(Err(self.no_upstream(method, route))),
        }
    }

    /// Run the call's attempts until one answers: the best upstream first; a hedge to the
    /// next best when it is slower than the hedge delay; a retry on the next best when an
    /// attempt fails with a failure another upstream can fix (within `max_attempts`, the
    /// retry budget and the deadline). A call that is not `repeatable` (a transaction, a
    /// filter) is never hedged, and moves on only when the failed attempt certainly did not
    /// reach a node: sending it twice could do twice what the client asked once, or report
    /// "already known" for a success.
    ///
    /// The first answer wins, except that a `null` waits for the attempts still running: a
    /// node that has not seen a transaction yet must not beat one that has. Failures wait
    /// for them too. Attempts still running when the call returns are dropped: cancelled.
    pub async fn call(&self, plan: &CallPlan<'_>) -> Result<Payload, SetFailure> {
        let mut route = plan.route;
        self.retry_budget.deposit();
        self.hedge_budget.deposit();
        let first = match self.first_pick(plan, &mut route).await {
            Ok(p) => p,
            Err(answer) => return answer,
        };
        let hedge_delay = if plan.repeatable && plan.route.cost == Cost::Normal {
            self.hedge.delay(first.upstream)
        } else {
            None
        };
        let mut tried: Vec<&Arc<Upstream>> = vec![first.upstream];
        let mut running = FuturesUnordered::new();
        running.push(run_attempt(first, plan, false));
        let mut next_hedge = hedge_delay.map(|d| Instant::now() + d);
        let mut hedges = 0u32;
        let mut held_null: Option<Payload> = None;
        let mut failures: Vec<AttemptFailure> = Vec::new();
        // A retry waiting for `max_rps` room: a timer here, so that the attempts still
        // running are heard meanwhile.
        let mut retry_at: Option<Instant> = None;
        loop {
            if running.is_empty() && retry_at.is_none() {
                break;
            }
            let hedge_timer = sleep_until_or_never(next_hedge);
            let retry_timer = sleep_until_or_never(retry_at);
            // Set by a failure the budget allows a retry for, or by the retry timer.
            let mut retry_now = false;
            tokio::select! {
                Some((hedged, result)) = running.next(), if !running.is_empty() => {
                    let more_coming = !running.is_empty() || retry_at.is_some();
                    match result {
                        Ok(p) if is_null(&p) && more_coming => held_null = Some(p),
                        Ok(p) => {
                            if hedged {
                                self.metrics.hedges_won.increment(1);
                            }
                            return Ok(p);
                        }
                        Err(f) => {
                            let repeat = plan.repeatable || !f.maybe_delivered;
                            failures.push(f);
                            retry_now = repeat
                                && retry_at.is_none()
                                && self.retry_allowed(plan, &tried);
                        }
                    }
                }
                () = retry_timer => {
                    retry_at = None;
                    retry_now = true;
                }
                () = hedge_timer => {
                    next_hedge = None;
                    if hedges >= self.hedge.max_extra || !self.may_start(&tried, plan.deadline) {
                        continue;
                    }
                    // Refused now (nowhere to go, or no budget), a hedge may be allowed
                    // later: tried again after another delay (at least `REARM_MIN`), so that
                    // a call stuck on a hung upstream does not give up on hedging for good.
                    let later = |at_least: Duration| {
                        hedge_delay.map(|d| Instant::now() + d.max(at_least).max(REARM_MIN))
                    };
                    // The pick before the budget: a hedge with nowhere to go must not spend
                    // the chain's budget. (A refused pick wastes a `max_rps` token instead.)
                    let p = match self.select(plan.method, &route, &tried) {
                        Selection::Picked(p) => p,
                        Selection::OverRate(wait) => {
                            next_hedge = later(wait);
                            continue;
                        }
                        Selection::None => {
                            next_hedge = later(Duration::ZERO);
                            continue;
                        }
                    };
                    if !self.hedge_budget.withdraw() {
                        next_hedge = later(Duration::ZERO);
                        continue;
                    }
                    hedges += 1;
                    self.metrics.hedges_sent.increment(1);
                    tried.push(p.upstream);
                    running.push(run_attempt(p, plan, true));
                    next_hedge = hedge_delay.map(|d| Instant::now() + d);
                }
            }
            if retry_now {
                match self.retry_pick(plan, &route, &tried) {
                    RetryPick::Now(p) => {
                        self.metrics.retries_sent.increment(1);
                        tried.push(p.upstream);
                        running.push(run_attempt(p, plan, false));
                    }
                    RetryPick::At(at) => retry_at = Some(at),
                    RetryPick::Nowhere => {}
                }
            }
        }
        match held_null {
            Some(p) => Ok(p),
            None => Err(SetFailure::AllFailed(failures)),
        }
    }

    fn may_start(&self, tried: &[&Arc<Upstream>], deadline: Instant) -> bool {
        tried.len() < self.max_attempts && Instant::now() < deadline
    }

    /// Whether the call may have one more attempt, by `max_attempts`, its deadline and the
    /// retry budget (which this withdraws from).
    fn retry_allowed(&self, plan: &CallPlan<'_>, tried: &[&Arc<Upstream>]) -> bool {
        if !self.may_start(tried, plan.deadline) {
            return false;
        }
        // The budget before the pick: a pick takes a `max_rps` token, which a refused retry
        // would waste.
        if !self.retry_budget.withdraw() {
            self.metrics.retries_denied.increment(1);
            tracing::debug!(method = plan.method, "retry budget exhausted: no retry");
            return false;
        }
        true
    }

    /// The upstream for an allowed retry: the next best, the next with `max_rps` room (and
    /// when), or a last resort.
    fn retry_pick(
        &self,
        plan: &CallPlan<'_>,
        route: &Route,
        tried: &[&Arc<Upstream>],
    ) -> RetryPick<'_> {
        match self.select(plan.method, route, tried) {
            Selection::Picked(p) => RetryPick::Now(p),
            Selection::OverRate(wait) => {
                let at = Instant::now() + wait;
                if at < plan.deadline {
                    RetryPick::At(at)
                } else {
                    RetryPick::Nowhere
                }
            }
            Selection::None => self
                .last_resort(plan.method, route, tried)
                .map_or(RetryPick::Nowhere, RetryPick::Now),
        }
    }

    /// No healthy upstream is left to try: an upstream taken out by failed probes may be
    /// back by now (a path restored since its last probe), and trying it costs less than
    /// failing the call; its breaker stops a dead one from being tried on every call. Never one on the wrong chain, syncing or not probed
    /// yet, and only within the call's block needs by its last known head and with its
    /// breaker letting it through.
    pub(super) fn last_resort(
        &self,
        method: &str,
        route: &Route,
        tried: &[&Arc<Upstream>],
    ) -> Option<Pick<'_>> {
        let mut candidates: Vec<&Arc<Upstream>> = self
            .upstreams
            .iter()
            .filter(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
            .filter(|u| {
                u.active().status() == HealthStatus::Unhealthy
                    && u.config.methods.allows(method)
                    && !route.too_far_ahead(u)
                    && reaches(u, route)
                    && u.breaker_allows(route.cost)
            })
            .collect();
        while !candidates.is_empty() {
            let u = power_of_two_choices(&candidates)?;
            if let Ok(admission) = u.admit(route.cost) {
                tracing::debug!(upstream = %u.name(), "last resort: an upstream failing its probes");
                return Some(Pick {
                    upstream: u,
                    admission: Some(admission),
                });
            }
            candidates.retain(|c| !Arc::ptr_eq(c, u));
        }
        // Every upstream that could serve has its breaker open (a blip of the proxy's own
        // network can open them all at once): one attempt past a breaker beats failing the
        // call. It does not count for the breaker, which reopens on its own time.
        let broken: Vec<&Arc<Upstream>> = self
            .upstreams
            .iter()
            .filter(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
            .filter(|u| Self::eligible(u, method, route) && !u.breaker_allows(route.cost))
            .collect();
        let u = power_of_two_choices(&broken)?;
        tracing::debug!(upstream = %u.name(), "last resort: past an open circuit breaker");
        Some(Pick {
            upstream: u,
            admission: None,
        })
    }

    /// No upstream is eligible: is it because the call wants a block no upstream had
    /// reached at its last probe?
    fn beyond_every_head(&self, method: &str, route: &Route) -> Beyond {
        let BlockNeed::AtLeast(block) = route.need else {
            return Beyond::No;
        };
        let highest = self
            .upstreams
            .iter()
            .filter(|u| u.config.methods.allows(method) && u.active().status().is_serving())
            .filter(|u| !route.too_far_ahead(u))
            .filter_map(|u| u.active().head())
            .max();
        match highest {
            None => Beyond::No,
            // Beyond the chain head too, which a lagging survivor may be far behind.
            Some(head)
                if route.block_lookup
                    && block
                        > head
                            .max(route.chain_head.unwrap_or(0))
                            .saturating_add(far_beyond(route.max_lag_blocks)) =>
            {
                Beyond::Null
            }
            Some(_) => Beyond::AskInSync,
        }
    }

    /// Why no upstream may serve this call.
    fn no_upstream(&self, method: &str, route: &Route) -> SetFailure {
        let allowed = self
            .upstreams
            .iter()
            .any(|u| u.config.methods.allows(method));
        let serving = self.any_serving(method);
        let pending = self
            .upstreams
            .iter()
            .any(|u| u.active().status() == HealthStatus::Unknown);
        let why = if !allowed {
            format!("no upstream is configured to serve `{method}`")
        } else if self.only_broken(method, route) {
            "every upstream that may serve this call has its circuit breaker open".to_string()
        } else if !serving && pending {
            "no upstream has answered its first health check yet".to_string()
        } else if !serving {
            "no upstream is passing health checks".to_string()
        } else {
            format!(
                "no healthy upstream is within max_lag_blocks ({}) of the chain head",
                route.max_lag_blocks
            )
        };
        SetFailure::NoUpstream(why)
    }

    /// Some eligible upstream is held back by its breaker (when none could be picked: all
    /// eligible ones are).
    fn only_broken(&self, method: &str, route: &Route) -> bool {
        self.upstreams
            .iter()
            .any(|u| Self::eligible(u, method, route) && !u.breaker_allows(route.cost))
    }

    /// Some upstream allowed to serve `method` passes its health checks.
    fn any_serving(&self, method: &str) -> bool {
        self.upstreams
            .iter()
            .any(|u| u.config.methods.allows(method) && u.active().status().is_serving())
    }

    /// At least one upstream may serve: passing health checks, not parked, breaker closed
    /// or ready for a trial.
    pub fn has_usable(&self) -> bool {
        self.upstreams
            .iter()
            .any(|u| u.active().status().is_serving() && u.is_usable())
    }
}

/// One attempt, tagged with whether it is a hedge.
fn run_attempt<'a>(
    pick: Pick<'a>,
    plan: &'a CallPlan<'_>,
    hedged: bool,
) -> impl Future<Output = (bool, Result<Payload, AttemptFailure>)> + 'a {
    let body = plan.body.clone();
    async move {
        let result = pick
            .upstream
            .attempt(
                pick.admission,
                plan.method,
                plan.request_id,
                body,
                plan.deadline,
                plan.route.cost,
            )
            .await;
        (hedged, result)
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn is_null(p: &Payload) -> bool {
    matches!(p, Payload::Result(r) if &r[..] == b"null")
}

/// Why `first_pick` found no upstream.
enum Beyond {
    /// A block lookup far beyond every head: `null`, without asking.
    Null,
    /// A block just beyond the probed heads: the in-sync upstreams may have it by now.
    AskInSync,
    /// Not about a block: no upstream can serve.
    No,
}

/// Whether the upstream has got far enough along the chain for the call.
fn reaches(u: &Upstream, route: &Route) -> bool {
    match route.need {
        BlockNeed::Any => true,
        BlockNeed::Head => route.in_sync(u),
        // An upstream whose head is not known yet may try.
        BlockNeed::AtLeast(n) => u.active().head().is_none_or(|h| h >= n),
    }
}

/// Two distinct upstreams drawn at random (as tower's p2c balancer draws), and one of them
/// by odds on their scores: `a` serves with probability `sb² / (sa² + sb²)`. Near-equal
/// upstreams share the load even when calls come one at a time (a plain "better of two"
/// would send all of them to whichever measured a microsecond faster); a clearly better one
/// takes most (3x better: 90%); a far worse one, such as a hung upstream whose figure grows
/// by the millisecond, almost none. The odds also keep the worse ones measured, and a
/// worse one's latency average decays while it gets no traffic (`PassiveHealth`), so a
/// recovered upstream is tried again.
///
/// Hand-written rather than tower's `p2c::Balance`: the candidates change per call (block
/// needs, tiers, domains already tried, breakers), which a `Discover`-fed service does not
/// model.
fn power_of_two_choices<'a>(group: &[&'a Arc<Upstream>]) -> Option<&'a Arc<Upstream>> {
    let (i, j) = match group.len() {
        0 => return None,
        1 => (0, 0),
        n => {
            let i = fastrand::usize(..n);
            // Any other index, uniformly.
            let j = (i + 1 + fastrand::usize(..n - 1)) % n;
            (i, j)
        }
    };
    let (a, b) = (group.get(i)?, group.get(j)?);
    if i == j {
        return Some(a);
    }
    Some(if takes_first(a.score(), b.score(), fastrand::f64()) {
        a
    } else {
        b
    })
}

/// Whether the first of two scores (lower is better) serves, for `roll` uniform in 0..1.
fn takes_first(sa: f64, sb: f64, roll: f64) -> bool {
    let (a2, b2) = (sa * sa, sb * sb);
    // Scores are at least 1 (latency + 1 ms); a NaN or infinity must not panic or stick.
    if !(a2 + b2).is_finite() || a2 + b2 <= 0.0 {
        return sa <= sb;
    }
    roll * (a2 + b2) < b2
}

#[cfg(test)]
#[path = "set_tests.rs"]
mod tests;
