//! Which upstream serves the next attempt: eligibility, the ranking of candidates, `max_rps`
//! waits, the last resort, and why none can serve.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::p2c::power_of_two_choices;
use super::route::{far_beyond, reaches, Beyond};
use super::{CallPlan, Pick, Route, SetFailure, UpstreamSet};
use crate::family::BlockNeed;
use crate::jsonrpc::Payload;
use crate::upstream::{HealthStatus, Refusal, Upstream};

pub(super) enum Selection<'a> {
    Picked(Pick<'a>),
    /// Candidates there are, but all at their `max_rps`: one has room after this long.
    OverRate(Duration),
    None,
}

impl UpstreamSet {
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

    pub(super) fn select(
        &self,
        method: &str,
        route: &Route,
        tried: &[&Arc<Upstream>],
    ) -> Selection<'_> {
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
    pub(crate) async fn select_within(
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
    /// The first of `plan.prefer` that may serve, is in sync and takes the attempt.
    fn preferred(&self, plan: &CallPlan<'_>, route: &Route) -> Option<Pick<'_>> {
        self.iter()
            .filter(|u| plan.prefer.iter().any(|name| name.as_str() == &**u.name()))
            .filter(|u| Self::eligible(u, plan.method, route) && route.in_sync(u))
            .find_map(|u| {
                let admission = u.admit(route.cost).ok()?;
                Some(Pick {
                    upstream: u,
                    admission: Some(admission),
                })
            })
    }

    pub(super) async fn first_pick(
        &self,
        plan: &CallPlan<'_>,
        route: &mut Route,
    ) -> Result<Pick<'_>, Result<Payload, SetFailure>> {
        let (method, deadline) = (plan.method, plan.deadline);
        self.wait_for_first_verdicts(method, route, deadline).await;
        if let Some(p) = self.preferred(plan, route) {
            return Ok(p);
        }
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

    /// No healthy upstream is left to try: an upstream taken out by failed probes may be
    /// back by now (a path restored since its last probe), and trying it costs less than
    /// failing the call; its breaker stops a dead one from being tried on every call. Never one on the wrong chain, syncing or not probed
    /// yet, and only within the call's block needs by its last known head and with its
    /// breaker letting it through.
    pub(crate) fn last_resort(
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
                    && u.serves(method)
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
            .filter(|u| u.serves(method) && u.active().status().is_serving())
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
        let allowed = self.upstreams.iter().any(|u| u.serves(method));
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
            .any(|u| u.serves(method) && u.active().status().is_serving())
    }
}
