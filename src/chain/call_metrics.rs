//! A chain's per-call metrics: calls by method and outcome, their durations, and broadcasts
//! by result. Handles are registered on first use and kept (`LabelTable`): no lookup per call.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Label};

use super::cache::CacheResult;
use crate::family::MethodLabels;
use crate::metrics::{
    LabelTable, Metrics, BROADCASTS, CACHE_REQUESTS, CHAIN_BACKFILLED, CHAIN_REORGS, COALESCED,
    COALESCE_GROUPS, FILTERS, PENDING_SEEN, REQUESTS, REQUEST_DURATION, SPLIT_PARTS,
};
use crate::upstream::BroadcastResult;

/// How a client's call ended, for `manifold_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    RpcError,
    NoUpstream,
    UpstreamFailed,
    RateLimited,
    Timeout,
    /// A limit of Manifold's: an answer over `max_response_bytes`, or no room for it in
    /// `max_buffered_bytes`.
    LimitExceeded,
}

impl CallOutcome {
    const COUNT: usize = 7;

    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::RpcError => "rpc_error",
            CallOutcome::NoUpstream => "no_upstream",
            CallOutcome::UpstreamFailed => "upstream_failed",
            CallOutcome::RateLimited => "rate_limited",
            CallOutcome::Timeout => "timeout",
            CallOutcome::LimitExceeded => "limit_exceeded",
        }
    }
}

#[derive(Debug)]
pub(super) struct ChainMetrics {
    registry: Arc<Metrics>,
    chain: Arc<str>,
    labels: MethodLabels,
    /// `method index * CallOutcome::COUNT + outcome`.
    requests: LabelTable<Counter>,
    durations: LabelTable<Histogram>,
    broadcasts: LabelTable<Counter>,
    /// `method index * CacheResult::COUNT + result`.
    cache: LabelTable<Counter>,
    pub(super) coalesced: Counter,
    pub(super) coalesce_groups: Gauge,
    split_parts: Counter,
    reorgs: Counter,
    /// Blocks below the head sent to `newHeads` subscribers after a jump of the head.
    pub(super) backfilled: Counter,
    /// Filters held (`chain::filters`).
    pub(super) filters: Gauge,
    /// Pending transaction hashes told by the upstream sockets: new, and told again.
    pub(super) pending_new: Counter,
    pub(super) pending_duplicate: Counter,
}

impl ChainMetrics {
    pub(super) fn new(registry: &Arc<Metrics>, chain: &Arc<str>, labels: MethodLabels) -> Self {
        let pending = |result: &'static str| {
            registry.counter(
                PENDING_SEEN,
                vec![
                    Label::new("chain", chain.to_string()),
                    Label::new("result", result),
                ],
            )
        };
        Self {
            registry: registry.clone(),
            chain: chain.clone(),
            requests: LabelTable::new(labels.len() * CallOutcome::COUNT),
            durations: LabelTable::new(labels.len()),
            broadcasts: LabelTable::new(BroadcastResult::ALL),
            cache: LabelTable::new(labels.len() * CacheResult::COUNT),
            coalesced: registry.counter(COALESCED, vec![Label::new("chain", chain.to_string())]),
            coalesce_groups: registry.gauge(
                COALESCE_GROUPS,
                vec![Label::new("chain", chain.to_string())],
            ),
            split_parts: registry
                .counter(SPLIT_PARTS, vec![Label::new("chain", chain.to_string())]),
            reorgs: registry.counter(CHAIN_REORGS, vec![Label::new("chain", chain.to_string())]),
            backfilled: registry.counter(
                CHAIN_BACKFILLED,
                vec![Label::new("chain", chain.to_string())],
            ),
            filters: registry.gauge(FILTERS, vec![Label::new("chain", chain.to_string())]),
            pending_new: pending("new"),
            pending_duplicate: pending("duplicate"),
            labels,
        }
    }

    pub(super) fn record_broadcast(&self, result: BroadcastResult) {
        self.broadcasts
            .get(result as usize, || {
                self.registry.counter(
                    BROADCASTS,
                    vec![
                        Label::new("chain", self.chain.to_string()),
                        Label::new("result", result.label()),
                    ],
                )
            })
            .increment(1);
    }

    pub(super) fn record_reorg(&self) {
        self.reorgs.increment(1);
    }

    /// Parts a range call was asked in.
    pub(super) fn record_split_parts(&self, n: usize) {
        self.split_parts
            .increment(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// What the cache did with a call of the method at label index `m`.
    pub(super) fn record_cache(&self, m: usize, result: CacheResult) {
        self.cache
            .get(m * CacheResult::COUNT + result as usize, || {
                self.registry.counter(
                    CACHE_REQUESTS,
                    vec![
                        Label::new("chain", self.chain.to_string()),
                        Label::new("method", self.labels.label(m)),
                        Label::new("result", result.label()),
                    ],
                )
            })
            .increment(1);
    }

    /// A call of the method at label index `m` (`MethodInfo::label`).
    pub(super) fn record(&self, m: usize, outcome: CallOutcome, elapsed: std::time::Duration) {
        let method_label = self.labels.label(m);
        let labels = |extra: Option<&'static str>| {
            let mut l = vec![
                Label::new("chain", self.chain.to_string()),
                Label::new("method", method_label),
            ];
            if let Some(o) = extra {
                l.push(Label::new("outcome", o));
            }
            l
        };
        self.requests
            .get(m * CallOutcome::COUNT + outcome as usize, || {
                self.registry
                    .counter(REQUESTS, labels(Some(outcome.label())))
            })
            .increment(1);
        self.durations
            .get(m, || {
                self.registry.histogram(REQUEST_DURATION, labels(None))
            })
            .record(elapsed.as_secs_f64());
    }
}
