//! What every layer of a chain's call stack shares: the configuration, the family, the
//! upstream set, the chain's health (head and finality), the transaction watch, and the
//! upstream request ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::cache::CacheTiers;
use super::call_metrics::ChainMetrics;
use super::checker::ChainHealth;
use super::filters::FilterStore;
use super::heads::HeadFeed;
use super::log_feed::LogFeed;
use super::pending::PendingFeed;
use super::stack::{Answer, ChainCall};
use crate::config::ChainConfig;
use crate::family::{self, ChainFamily, Cost};
use crate::jsonrpc::{encode_request, Payload};
use crate::upstream::{Route, SetFailure, UpstreamSet};
use crate::watch::TxWatch;

#[derive(Debug)]
pub struct ChainCore {
    pub config: ChainConfig,
    pub family: Arc<dyn ChainFamily>,
    pub upstreams: UpstreamSet,
    pub health: Arc<ChainHealth>,
    /// `None` when `policy.broadcast.watch` is off.
    pub watch: Option<Arc<TxWatch>>,
    pub(super) metrics: Arc<ChainMetrics>,
    pub(super) cache: CacheTiers,
    /// The new heads, for `newHeads` subscribers (`chain::follow` publishes them).
    pub heads: HeadFeed,
    /// The logs of the new heads, for `logs` subscribers (`chain::log_feed`).
    pub logs: LogFeed,
    /// The filters the chain serves itself (`chain::filtering`).
    pub filters: FilterStore,
    /// The pending transactions the upstream sockets tell, for subscribers and filters.
    pub pending: PendingFeed,
    next_id: AtomicU64,
}

impl ChainCore {
    pub(super) fn new(
        config: ChainConfig,
        family: Arc<dyn ChainFamily>,
        upstreams: UpstreamSet,
        health: Arc<ChainHealth>,
        watch: Option<Arc<TxWatch>>,
        metrics: Arc<ChainMetrics>,
        cache: CacheTiers,
    ) -> Self {
        Self {
            heads: HeadFeed::new(metrics.backfilled.clone()),
            logs: LogFeed::default(),
            filters: FilterStore::new(config.policy.filters.clone(), metrics.filters.clone()),
            pending: PendingFeed::new(
                metrics.pending_new.clone(),
                metrics.pending_duplicate.clone(),
            ),
            cache,
            config,
            family,
            upstreams,
            health,
            watch,
            metrics,
            next_id: AtomicU64::new(1),
        }
    }

    /// The next upstream request id, as JSON number text: never the client's (see
    /// `jsonrpc::encode_request`).
    pub(super) fn next_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// An upstream request for `call`, with a fresh id: the id and the body.
    pub(super) fn encode(&self, call: &ChainCall) -> (String, Bytes) {
        let id = self.next_id();
        let body = encode_request(
            id.as_bytes(),
            &call.call.method_json,
            call.call.params.as_deref(),
        );
        (id, body)
    }

    /// The chain head, once some upstream's head is known.
    pub fn head(&self) -> Option<u64> {
        self.health.head.get()
    }

    /// The chain's finalized block, once known.
    pub fn finalized(&self) -> Option<u64> {
        self.health.head.finalized()
    }

    /// The time a call of this cost may take, all attempts included.
    pub(super) fn timeout(&self, cost: Cost) -> std::time::Duration {
        match cost {
            Cost::Normal => self.config.policy.request_timeout,
            Cost::Heavy => self.config.policy.heavy_request_timeout,
        }
    }

    /// What a call of `class` needs, with the chain's state now.
    pub(super) fn route(&self, class: family::MethodClass) -> Route {
        Route {
            need: class.need,
            block_lookup: class.block_lookup,
            chain_head: self.head(),
            max_lag_blocks: self.config.policy.max_lag_blocks,
            max_ahead_blocks: crate::health::outlier_tolerance(self.config.policy.max_lag_blocks),
            cost: class.cost,
        }
    }

    /// What the watch's calls need: the newest state, from in-sync upstreams.
    pub(super) fn watch_route(&self) -> Route {
        self.route(family::MethodClass {
            need: family::BlockNeed::Head,
            block_lookup: false,
            cost: Cost::Normal,
        })
    }

    /// The client's answer from what the attempts came to. `hash`: a broadcast
    /// transaction's, named when its outcome is unknown.
    pub(super) fn answer(
        &self,
        result: Result<Payload, SetFailure>,
        call: &ChainCall,
        hash: Option<&str>,
    ) -> Answer {
        let (payload, outcome) = match result {
            Ok(p @ Payload::Result(_)) => (p, super::CallOutcome::Success),
            Ok(p @ Payload::Error(_)) => (p, super::CallOutcome::RpcError),
            Err(failure) => self.failure_payload(
                failure,
                call.deadline,
                call.timeout,
                call.info.repeatable,
                hash,
            ),
        };
        Answer::new(payload, outcome)
    }
}
