//! One chain: turns a client's call into an upstream request, bounds it in time, and always
//! produces an answer for the client (the node's, or the proxy's own error object).
//!
//! `call_metrics` counts calls and broadcasts, `rescue` turns failures into error objects, and
//! `send` steers what the chain handles itself: signed transactions (broadcast, then
//! watched by `crate::watch`) and `pending` nonce reads of watched senders.

mod call_metrics;
mod rescue;
mod send;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use call_metrics::ChainMetrics;
use metrics::Label;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use call_metrics::CallOutcome;

use crate::config::ChainConfig;
use crate::family::{self, ChainFamily, Cost};
use crate::health::checker::{self, ChainHealth};
use crate::health::ChainHead;
use crate::jsonrpc::{encode_request, Call, Payload};
use crate::metrics::{Metrics, CHAIN_HEAD, HEDGES, RETRIES};
use crate::upstream::{
    AnswerBudget, AnswerLimit, CallPlan, Route, SetMetrics, Upstream, UpstreamSet,
};
use crate::watch::{TxStore, TxWatch};

#[derive(Debug)]
pub struct Chain {
    pub config: ChainConfig,
    family: Arc<dyn ChainFamily>,
    upstreams: UpstreamSet,
    health: Arc<ChainHealth>,
    /// `None` when `policy.broadcast.watch` is off.
    watch: Option<Arc<TxWatch>>,
    next_id: AtomicU64,
    metrics: ChainMetrics,
}

impl Chain {
    /// `store`: the transaction watch's store (`None`: watched in memory only).
    pub fn new(
        config: ChainConfig,
        metrics: &Arc<Metrics>,
        store: Option<&TxStore>,
        budget: &AnswerBudget,
    ) -> Result<Self, String> {
        let family = family::for_chain(&config);
        let answers = AnswerLimit {
            max_bytes: config.policy.max_response_bytes,
            budget: budget.clone(),
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                Upstream::new(
                    &config.name,
                    u.clone(),
                    metrics,
                    answers.clone(),
                    &config.policy.health,
                    &config.policy.breaker,
                    family.clone(),
                )
                .map(Arc::new)
                .map_err(|e| format!("chain `{}`, upstream `{}`: {e}", config.name, u.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The head goes back only when the upstreams have agreed on a lower one for three
        // probe intervals.
        let head = Arc::new(ChainHead::new(config.policy.health.interval * 3));
        let chain_label = |result: &'static str| {
            vec![
                Label::new("chain", config.name.to_string()),
                Label::new("result", result),
            ]
        };
        let set_metrics = SetMetrics {
            retries_sent: metrics.counter(RETRIES, chain_label("sent")),
            retries_denied: metrics.counter(RETRIES, chain_label("budget_exhausted")),
            hedges_sent: metrics.counter(HEDGES, chain_label("sent")),
            hedges_won: metrics.counter(HEDGES, chain_label("won")),
        };
        let upstreams = UpstreamSet::new(
            upstreams,
            config.policy.max_attempts,
            head.clone(),
            config.policy.hedge.clone(),
            config.policy.retry_budget,
            set_metrics,
        );
        let health = Arc::new(ChainHealth {
            probed: upstreams.probe_signal(),
            chain: config.name.clone(),
            family: family.clone(),
            upstreams: upstreams.shared(),
            head,
            policy: config.policy.health.clone(),
            max_lag_blocks: config.policy.max_lag_blocks,
            head_gauge: metrics.gauge(
                CHAIN_HEAD,
                vec![Label::new("chain", config.name.to_string())],
            ),
        });
        let watch = if config.policy.broadcast.watch {
            Some(Arc::new(TxWatch::new(
                &config.name,
                config.policy.broadcast.clone(),
                family.clone(),
                store.cloned(),
                metrics,
            )?))
        } else {
            None
        };
        Ok(Self {
            metrics: ChainMetrics::new(metrics, &config.name, family.method_labels()),
            family,
            upstreams,
            health,
            watch,
            next_id: AtomicU64::new(1),
            config,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.config.name
    }

    pub fn upstreams(&self) -> &UpstreamSet {
        &self.upstreams
    }

    /// The transaction watch, when on.
    pub fn watch(&self) -> Option<&Arc<TxWatch>> {
        self.watch.as_ref()
    }

    /// The chain head, once some upstream's head is known.
    pub fn head(&self) -> Option<u64> {
        self.health.head.get()
    }

    /// Start one health checker per upstream, and the transaction watch; they stop when
    /// `stop` turns true.
    pub fn spawn_background(self: &Arc<Self>, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self
            .upstreams
            .iter()
            .map(|u| tokio::spawn(checker::run(self.health.clone(), u.clone(), stop.clone())))
            .collect();
        if self.watch.is_some() {
            tasks.push(tokio::spawn(watch_loop(self.clone(), stop.clone())));
        }
        tasks
    }

    /// Whether a call may be sent again after an attempt that may have reached a node.
    pub fn is_repeatable(&self, method: &str) -> bool {
        self.family.is_repeatable(method)
    }

    /// Answer one call. Never fails: proxy-level failures become JSON-RPC error objects. A
    /// call not safe to repeat runs in a task of its own (`spawn`).
    pub async fn call(self: &Arc<Self>, call: &Call) -> Payload {
        if self.is_repeatable(&call.method) {
            return self.call_here(call).await;
        }
        self.settle(self.spawn(call.clone())).await
    }

    /// Start a call in a task of its own, which the caller only awaits: once started, a call
    /// not safe to repeat is carried through (every target of a broadcast written, its
    /// lookups made, its watch stored) even when the client goes away meanwhile (an HTTP/2
    /// reset, a closed connection) and the request's future is dropped.
    pub fn spawn(self: &Arc<Self>, call: Call) -> JoinHandle<Payload> {
        let chain = self.clone();
        tokio::spawn(async move { chain.call_here(&call).await })
    }

    /// The answer of a spawned call.
    pub async fn settle(&self, task: JoinHandle<Payload>) -> Payload {
        match task.await {
            Ok(p) => p,
            // It cannot panic short of a bug; what it did is unknown.
            Err(e) => {
                tracing::error!(error = %e, "a call's task ended without an answer");
                self.outcome_unknown(&[], None).0
            }
        }
    }

    async fn call_here(&self, call: &Call) -> Payload {
        let span = tracing::debug_span!("call", chain = %self.config.name, method = %call.method);
        self.call_inner(call).instrument(span).await
    }

    fn next_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    async fn call_inner(&self, call: &Call) -> Payload {
        let started = Instant::now();
        let id = self.next_id();
        let body = encode_request(id.as_bytes(), &call.method_json, call.params.as_deref());
        let repeatable = self.family.is_repeatable(&call.method);
        let class = self.family.classify(&call.method, call.params.as_deref());
        let timeout = match class.cost {
            Cost::Normal => self.config.policy.request_timeout,
            Cost::Heavy => self.config.policy.heavy_request_timeout,
        };
        let deadline = started + timeout;
        let route = self.route(class);
        let (result, hash) = match self.family.broadcast(&call.method, call.params.as_deref()) {
            // A signed transaction: several upstreams at once. Every part of it is bounded
            // by the deadline; no outer bound may cut it short between a send and its watch.
            Some(Ok(tx)) => {
                let r = self
                    .send(call, &tx, route, id.as_bytes(), body, deadline)
                    .await;
                (Some(r), Some(tx.hash))
            }
            // Anything else, an unreadable transaction included (the node says why). Every
            // attempt is bounded by the deadline itself; this outer bound is a safety net
            // that should never fire first.
            _ => {
                // A wallet's `pending` nonce read, for a sender with watched transactions.
                let pending = self.watch.as_ref().and_then(|w| {
                    let sender = self
                        .family
                        .pending_count_read(&call.method, call.params.as_deref())?;
                    w.pending_next(&sender)
                });
                let plan = CallPlan {
                    method: &call.method,
                    route,
                    request_id: id.as_bytes(),
                    body,
                    deadline,
                    repeatable,
                    prefer: pending.as_ref().map_or(&[], |(_, took)| took.as_slice()),
                };
                let work = async {
                    match &pending {
                        Some((next, _)) => self.pending_count(&plan, *next).await,
                        None => self.upstreams.call(&plan).await,
                    }
                };
                let r = tokio::time::timeout_at(deadline + SAFETY_MARGIN, work).await;
                (r.ok(), None)
            }
        };
        let (payload, outcome) = match result {
            Some(Ok(p @ Payload::Result(_))) => (p, CallOutcome::Success),
            Some(Ok(p @ Payload::Error(_))) => (p, CallOutcome::RpcError),
            Some(Err(failure)) => {
                self.failure_payload(failure, deadline, timeout, repeatable, hash.as_deref())
            }
            None if !repeatable => self.outcome_unknown(&[], None),
            None => (self.timeout_error(timeout, &[]), CallOutcome::Timeout),
        };
        self.metrics
            .record(&call.method, outcome, started.elapsed());
        if outcome != CallOutcome::Success && outcome != CallOutcome::RpcError {
            tracing::debug!(outcome = outcome.label(), "call failed");
        }
        payload
    }

    /// What a call of `class` needs, with the chain's state now.
    fn route(&self, class: family::MethodClass) -> Route {
        Route {
            need: class.need,
            block_lookup: class.block_lookup,
            chain_head: self.head(),
            max_lag_blocks: self.config.policy.max_lag_blocks,
            max_ahead_blocks: crate::health::outlier_tolerance(self.config.policy.max_lag_blocks),
            cost: class.cost,
        }
    }
}

impl Chain {
    /// One round of the transaction watch now, as on a new chain head (the watch's own task
    /// runs them on its own; tests drive them with this).
    pub async fn watch_round(&self) {
        if let Some(watch) = &self.watch {
            watch.round(&self.upstreams, &self.watch_route()).await;
        }
    }

    /// What the watch's calls need: the newest state, from in-sync upstreams.
    fn watch_route(&self) -> Route {
        self.route(family::MethodClass {
            need: family::BlockNeed::Head,
            block_lookup: false,
            cost: Cost::Normal,
        })
    }
}

/// The transaction watch's rounds: on each new chain head, and after a health interval
/// without one (a stalled chain still needs its transactions sent again).
async fn watch_loop(chain: Arc<Chain>, mut stop: watch::Receiver<bool>) {
    let Some(watch) = chain.watch.clone() else {
        return;
    };
    let interval = chain.config.policy.health.interval;
    // Heads change on probes; looking more often than a second costs an atomic read.
    let tick = interval.min(std::time::Duration::from_secs(1));
    // Rounds start once the first probes have set the head (watched transactions resumed
    // from the store are checked then).
    let mut last_head = None;
    let mut last_round = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let head = chain.head();
        if head.is_none() || (head == last_head && last_round.elapsed() < interval) {
            continue;
        }
        last_head = head;
        last_round = Instant::now();
        let route = chain.watch_route();
        tokio::select! {
            () = watch.round(&chain.upstreams, &route) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How long past the deadline the outer bound waits before abandoning the attempts.
const SAFETY_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{decode, Incoming, Item, Limits};
    use bytes::Bytes;

    #[test]
    fn upstream_request_keeps_method_and_params_bytes() {
        let body = Bytes::from_static(
            br#"{"id":"client","jsonrpc":"2.0","params":[ "0x1" , true ],"method":"eth_\u0067et"}"#,
        );
        let Ok(Incoming::Single(Item::Call(call))) = decode(&body, Limits { max_batch_len: 1 })
        else {
            panic!()
        };
        let out = encode_request(b"42", &call.method_json, call.params.as_deref());
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0","id":42,"method":"eth_\u0067et","params":[ "0x1" , true ]}"#
        );
    }
}
