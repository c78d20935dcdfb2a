//! A chain's upstreams, and which of them serves each attempt.
//!
//! Eligible: allowed for the method, passing health checks (or not probed yet), and far
//! enough along the chain for the block the call needs. Among the eligible, the next attempt
//! goes to an upstream not being skipped for recent failures, of the best tier (`fallback`
//! only when no better tier is left), preferring, after a failure, upstreams outside the
//! failure domains already tried. Within that group, two are drawn at random and the one with
//! the better score serves ("power of two choices", Mitzenmacher; as in Finagle and tower's
//! p2c balancer): load spreads over the good upstreams instead of piling on the single best,
//! and a slow one gets little traffic without any coordination.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::outcome::AttemptFailure;
use super::{HealthStatus, Upstream};
use crate::family::BlockNeed;
use crate::health::ChainHead;
use crate::jsonrpc::Payload;

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
}

/// Why no upstream answered.
#[derive(Debug, Clone)]
pub enum SetFailure {
    /// No upstream may serve this call, and why.
    NoUpstream(String),
    /// Every attempt failed; in the order they were made.
    AllFailed(Vec<AttemptFailure>),
}

impl UpstreamSet {
    pub fn new(upstreams: Vec<Arc<Upstream>>, max_attempts: u32, head: Arc<ChainHead>) -> Self {
        Self {
            upstreams: upstreams.into(),
            max_attempts: usize::try_from(max_attempts).unwrap_or(usize::MAX).max(1),
            probed: Arc::new(Notify::new()),
            head,
        }
    }

    /// What health checkers signal after each probe.
    pub fn probe_signal(&self) -> Arc<Notify> {
        self.probed.clone()
    }

    /// The first upstream to try. While no upstream is eligible but some have not been
    /// probed yet (start-up), wait for their verdicts, until `deadline`.
    pub(crate) async fn first(
        &self,
        method: &str,
        route: &mut Route,
        deadline: Instant,
    ) -> Option<&Arc<Upstream>> {
        // At start-up, wait until every upstream has a first verdict (each probe is bounded
        // by the health timeout): otherwise the first lagging node to answer would look in
        // sync with a chain head that only it has set.
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
        self.next_best(method, route, &[])
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

    /// The best upstream for the next attempt: not among `tried`, and outside their failure
    /// domains when an eligible one is.
    pub fn next_best(
        &self,
        method: &str,
        route: &Route,
        tried: &[&Arc<Upstream>],
    ) -> Option<&Arc<Upstream>> {
        let tried_domains: Vec<&str> = tried
            .iter()
            .map(|t| t.config.failure_domain.as_str())
            .collect();
        // In-sync upstreams come before lagging ones, even for old blocks and lookups by hash:
        // a lagging node answers `null` for a receipt it has not seen yet. Then upstreams
        // being skipped for failing requests come after working ones of any tier: a primary
        // that fails every request is not "better" than a working fallback.
        let rank = |u: &Upstream| {
            (
                !route.in_sync(u),
                !u.is_usable(),
                u.config.tier,
                tried_domains.contains(&u.config.failure_domain.as_str()),
            )
        };
        let candidates: Vec<&Arc<Upstream>> = self
            .upstreams
            .iter()
            .filter(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
            .filter(|u| Self::eligible(u, method, route))
            .collect();
        let best = candidates.iter().map(|u| rank(u)).min()?;
        let group: Vec<&Arc<Upstream>> =
            candidates.into_iter().filter(|u| rank(u) == best).collect();
        power_of_two_choices(&group)
    }

    /// Send the call to the best upstream, and on to the next best while attempts fail,
    /// until `deadline`. A call that is not `repeatable` (a transaction, a filter) moves on
    /// only when the failed attempt certainly did not reach a node: sending it twice could
    /// do twice what the client asked once, or report "already known" for a success.
    pub async fn call(
        &self,
        method: &str,
        route: &Route,
        request_id: &[u8],
        body: &Bytes,
        deadline: Instant,
        repeatable: bool,
    ) -> Result<Payload, SetFailure> {
        let mut route = *route;
        let first = match self.first(method, &mut route, deadline).await {
            Some(u) => u,
            None => match self.beyond_every_head(method, &route) {
                Beyond::Null => return Ok(Payload::Result(Bytes::from_static(b"null"))),
                // The block may exist by now: ask the in-sync upstreams, best first.
                Beyond::AskInSync => {
                    route.need = BlockNeed::Head;
                    match self.next_best(method, &route, &[]) {
                        Some(u) => u,
                        None => return Err(self.no_upstream(method, &route)),
                    }
                }
                Beyond::No => return Err(self.no_upstream(method, &route)),
            },
        };
        let mut tried: Vec<&Arc<Upstream>> = Vec::new();
        let mut failures: Vec<AttemptFailure> = Vec::new();
        let mut next = Some(first);
        while let Some(upstream) = next {
            if tried.len() >= self.max_attempts || Instant::now() >= deadline {
                break;
            }
            tried.push(upstream);
            match upstream.attempt(request_id, body.clone(), deadline).await {
                Ok(payload) => return Ok(payload),
                Err(f) => {
                    let stop = !repeatable && f.maybe_delivered;
                    failures.push(f);
                    if stop {
                        break;
                    }
                }
            }
            next = self.next_best(method, &route, &tried);
        }
        Err(SetFailure::AllFailed(failures))
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
        let serving = self
            .upstreams
            .iter()
            .any(|u| u.config.methods.allows(method) && u.active().status().is_serving());
        let pending = self
            .upstreams
            .iter()
            .any(|u| u.active().status() == HealthStatus::Unknown);
        let why = if !allowed {
            format!("no upstream is configured to serve `{method}`")
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

    /// At least one upstream may serve: passing health checks and not being skipped.
    pub fn has_usable(&self) -> bool {
        self.upstreams
            .iter()
            .any(|u| u.active().status().is_serving() && u.is_usable())
    }
}

/// Why `first` found no upstream.
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

/// Two upstreams drawn at random, independently (with replacement, as in the classic
/// power-of-d-choices scheme); the better scored one. With replacement, the worse of two
/// still gets a quarter of the traffic, so that its latency keeps being measured and it
/// takes over when it becomes the better one.
fn power_of_two_choices<'a>(group: &[&'a Arc<Upstream>]) -> Option<&'a Arc<Upstream>> {
    let a = group.get(fastrand::usize(..group.len().max(1)))?;
    let b = group.get(fastrand::usize(..group.len()))?;
    Some(if b.score() < a.score() { b } else { a })
}

#[cfg(test)]
#[path = "set_tests.rs"]
mod tests;
