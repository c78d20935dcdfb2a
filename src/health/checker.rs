//! One upstream's health checker: probe, apply the verdict, recompute the chain head, wait a
//! jittered interval, repeat until told to stop.

use std::sync::Arc;
use std::time::Duration;

use metrics::Gauge;
use tokio::sync::{watch, Notify};

use super::ChainHead;
use crate::config::HealthPolicy;
use crate::family::ChainFamily;
use crate::upstream::{HealthStatus, Upstream};

/// The chain id is checked on every probe until it has been seen right, then on every
/// `IDENTITY_EVERY`-th: it does not change, and paid providers bill for each call.
const IDENTITY_EVERY: u64 = 10;

/// What the checkers of one chain share.
#[derive(Debug)]
pub struct ChainHealth {
    pub chain: Arc<str>,
    pub family: Arc<dyn ChainFamily>,
    pub upstreams: Arc<[Arc<Upstream>]>,
    pub head: Arc<ChainHead>,
    pub policy: HealthPolicy,
    pub max_lag_blocks: u64,
    pub head_gauge: Gauge,
    /// Signalled after every probe, for requests waiting on a first verdict.
    pub probed: Arc<Notify>,
}

impl ChainHealth {
    /// How far above the median head a head may be and still count: a few times the
    /// tolerated lag, so that honest spread between upstreams always fits.
    fn outlier_tolerance(&self) -> u64 {
        self.max_lag_blocks.saturating_mul(4).max(16)
    }

    /// Recompute the chain head from the healthy upstreams and publish heads and lags.
    pub fn refresh_head(&self) {
        let heads: Vec<u64> = self
            .upstreams
            .iter()
            .filter(|u| u.active().status() == HealthStatus::Healthy)
            .filter_map(|u| u.active().head())
            .collect();
        let before = self.head.get();
        let (head, went_back) = self.head.update(&heads, self.outlier_tolerance());
        if went_back {
            tracing::warn!(chain = %self.chain, from = ?before, to = ?head, "chain head went back: the upstreams agree on a lower head (reorg or chain reset)");
        }
        if let Some(h) = head {
            self.head_gauge.set(h as f64);
        }
        for u in self.upstreams.iter() {
            u.publish_health(head);
        }
    }
}

/// Probe `upstream` until `stop` turns true.
pub async fn run(ctx: Arc<ChainHealth>, upstream: Arc<Upstream>, mut stop: watch::Receiver<bool>) {
    let mut round: u64 = 0;
    loop {
        let status = upstream.active().status();
        let check_identity = matches!(status, HealthStatus::Unknown | HealthStatus::WrongChain)
            || round % IDENTITY_EVERY == 0;
        let verdict = tokio::select! {
            v = ctx.family.probe(upstream.client(), ctx.policy.timeout, check_identity) => v,
            _ = stop.changed() => return,
        };
        if let Some(t) = upstream.active().apply(&verdict) {
            if t.to.is_serving() {
                tracing::info!(chain = %ctx.chain, upstream = %upstream.name(), from = t.from.label(), to = t.to.label(), "upstream up");
            } else {
                tracing::warn!(chain = %ctx.chain, upstream = %upstream.name(), from = t.from.label(), to = t.to.label(), reason = %t.reason, "upstream down");
            }
        }
        ctx.refresh_head();
        ctx.probed.notify_waiters();
        round += 1;
        tokio::select! {
            () = tokio::time::sleep(jittered(ctx.policy.interval)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// `interval` ± 10%, so that the probes of many upstreams (and of many Manifold replicas)
/// do not fall in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(10);
        for _ in 0..1000 {
            let j = jittered(base);
            assert!(
                j >= Duration::from_secs(9) && j <= Duration::from_secs(11),
                "{j:?}"
            );
        }
    }
}
