//! One call's attempts: the first, hedges when it is slow, retries when one fails, and the
//! first good answer wins.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tower::retry::budget::Budget;

use super::select::Selection;
use super::{CallPlan, Pick, Route, Served, SetFailure, UpstreamSet};
use crate::family::Cost;
use crate::jsonrpc::Payload;
use crate::upstream::outcome::AttemptFailure;
use crate::upstream::Upstream;

/// Longest a `null` answer waits for the attempts still running before it is the answer: a
/// node that has the block or the transaction answers soon after one that has not; one that
/// takes longer is stuck, and must not hold a receipt poll for its whole timeout.
pub(crate) const NULL_HOLD: Duration = Duration::from_millis(250);
/// Shortest wait before a refused hedge is tried again, whatever the hedge delay: a call
/// must not spin selection every millisecond.
const REARM_MIN: Duration = Duration::from_millis(20);

/// Where a retry goes.
enum RetryPick<'a> {
    Now(Pick<'a>),
    /// Every candidate is at its `max_rps`: try again then (before the deadline).
    At(Instant),
    Nowhere,
}

impl UpstreamSet {
    /// Run the call's attempts until one answers: the best upstream first; a hedge to the
    /// next best when it is slower than the hedge delay; a retry on the next best when an
    /// attempt fails with a failure another upstream can fix (within `max_attempts`, the
    /// retry budget and the deadline). A call that is not `repeatable` (a transaction, a
    /// filter) is never hedged, and moves on only when the failed attempt certainly did not
    /// reach a node: sending it twice could do twice what the client asked once, or report
    /// "already known" for a success.
    ///
    /// The first answer wins, except that a `null` waits for the attempts still running (for
    /// `NULL_HOLD` at most): a node that has not seen a transaction yet must not beat one
    /// that has, nor a stuck one hold the answer for its whole timeout. Failures wait for
    /// them too. Attempts still running when the call returns are dropped: cancelled.
    pub async fn call(&self, plan: &CallPlan<'_>) -> Result<Served, SetFailure> {
        let mut route = plan.route;
        self.retry_budget.deposit();
        self.hedge_budget.deposit();
        let first = match self.first_pick(plan, &mut route).await {
            Ok(p) => p,
            Err(answer) => {
                return answer.map(|payload| Served {
                    payload,
                    head: None,
                })
            }
        };
        let hedge_delay = if plan.repeatable && plan.route.cost == Cost::Normal {
            self.hedge.delay(first.upstream)
        } else {
            None
        };
        // A first attempt at a preferred upstream (`plan.prefer`) is the call's extra, not its
        // due: when it fails, the next one is not a retry the budget must allow.
        let mut free_retry = plan
            .prefer
            .iter()
            .any(|name| name.as_str() == &**first.upstream.name());
        let mut tried: Vec<&Arc<Upstream>> = vec![first.upstream];
        let mut running = FuturesUnordered::new();
        running.push(run_attempt(first, plan, false));
        let mut next_hedge = hedge_delay.map(|d| Instant::now() + d);
        let mut hedges = 0u32;
        let mut held_null: Option<Served> = None;
        let mut null_until: Option<Instant> = None;
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
            let null_timer = sleep_until_or_never(null_until);
            // Set by a failure the budget allows a retry for, or by the retry timer.
            let mut retry_now = false;
            tokio::select! {
                Some((hedged, result)) = running.next(), if !running.is_empty() => {
                    let more_coming = !running.is_empty() || retry_at.is_some();
                    match result {
                        Ok(p) if is_null(&p.payload) && more_coming => {
                            held_null = Some(p);
                            null_until.get_or_insert_with(|| Instant::now() + NULL_HOLD);
                        }
                        Ok(p) => {
                            if hedged {
                                self.metrics.hedges_won.increment(1);
                            }
                            return Ok(p);
                        }
                        Err(f) => {
                            let repeat = (plan.repeatable || !f.maybe_delivered) && f.outcome.may_retry();
                            failures.push(f);
                            retry_now = repeat
                                && retry_at.is_none()
                                && if std::mem::take(&mut free_retry) {
                                    self.may_start(&tried, plan.deadline)
                                } else {
                                    self.retry_allowed(plan, &tried)
                                };
                        }
                    }
                }
                () = null_timer => break,
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
}

/// One attempt, tagged with whether it is a hedge.
fn run_attempt<'a>(
    pick: Pick<'a>,
    plan: &'a CallPlan<'_>,
    hedged: bool,
) -> impl Future<Output = (bool, Result<Served, AttemptFailure>)> + 'a {
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
            .await
            .map(|payload| Served {
                payload,
                head: pick.upstream.active().head(),
            });
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
