//! One chain: its call stack (`stack`: every layer a call passes, assembled in one place),
//! the state the layers share (`core`), and its background tasks (health checkers and the
//! transaction watch). A chain always produces an answer for the client: the node's, or the
//! proxy's own error object (`rescue`).

mod background;
mod cache;
mod call_metrics;
mod checker;
mod coalesce;
mod core;
mod deadline;
mod dispatch;
mod filtering;
pub mod filters;
mod follow;
mod head_ticks;
pub mod heads;
mod key;
pub mod log_feed;
mod metered;
mod pending;
mod rescue;
mod sockets;
mod split;
pub mod stack;
mod steer;
mod watch_loop;

use std::sync::Arc;

use call_metrics::ChainMetrics;
use metrics::Label;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

pub use self::core::ChainCore;
pub use cache::RedisCache;
pub use call_metrics::CallOutcome;
pub use stack::{Answer, ChainCall, ChainStack};

use crate::config::ChainConfig;
use crate::family;
use crate::health::ChainHead;
use crate::jsonrpc::{Call, Payload};
use crate::metrics::{Metrics, CHAIN_FINALIZED, CHAIN_HEAD, HEDGES, RETRIES};
use crate::upstream::{AnswerBudget, AnswerLimit, SetMetrics, Upstream, UpstreamSet};
use crate::watch::{TxStore, TxWatch};
use checker::{ChainHealth, Finality};

/// What every chain of the process shares, made once per process (and kept across
/// reloads).
#[derive(Debug, Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// The transaction watch's store (`None`: watched in memory only).
    pub store: Option<TxStore>,
    /// Upstream answer bytes held at once, all chains together.
    pub budget: AnswerBudget,
    /// The answer caches' shared tier, when `[server.redis]` is set.
    pub redis: Option<Arc<RedisCache>>,
    /// Whether clients may subscribe to new heads (`[server.websocket]`): the chains
    /// follow their newest blocks then, cache or not.
    pub subscriptions: bool,
    /// How upstream sockets ping, linger and go stale (`[server.websocket]`).
    pub sockets: crate::upstream::socket::Timing,
}

#[derive(Debug)]
pub struct Chain {
    core: Arc<ChainCore>,
    stack: ChainStack,
    /// Whether the chain follows its newest blocks (the cache's recent answers, and new
    /// heads for subscribers).
    follow: bool,
    sockets: crate::upstream::socket::Timing,
}

impl Chain {
    pub fn new(config: ChainConfig, shared: &Shared) -> Result<Self, String> {
        let Shared {
            metrics,
            store,
            budget,
            redis,
            subscriptions,
            sockets,
        } = shared;
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
            finalized_gauge: metrics.gauge(
                CHAIN_FINALIZED,
                vec![Label::new("chain", config.name.to_string())],
            ),
            canonical: Arc::new(crate::health::CanonicalWindow::new()),
            finality: match &config.policy.cache {
                c if !c.enabled => Finality::Off,
                c => c.finality_depth.map_or(Finality::Probed, Finality::Depth),
            },
        });
        let watch = if config.policy.broadcast.watch {
            Some(Arc::new(TxWatch::new(
                &config.name,
                config.policy.broadcast.clone(),
                family.clone(),
                store.clone(),
                metrics,
            )?))
        } else {
            None
        };
        let chain_metrics = Arc::new(ChainMetrics::new(
            metrics,
            &config.name,
            family.method_labels(),
        ));
        let memory = cache::for_chain(&config.name, &config.policy.cache, metrics);
        let cache = cache::CacheTiers {
            namespace: cache::CacheTiers::namespace(&config),
            // The shared tier serves only a chain whose own cache is on.
            shared: redis.clone().filter(|_| memory.is_some()),
            memory,
        };
        let follow = *subscriptions || cache.memory.is_some();
        let core = Arc::new(ChainCore::new(
            config,
            family,
            upstreams,
            health,
            watch,
            chain_metrics,
            cache,
        ));
        Ok(Self {
            stack: stack::build(&core),
            core,
            follow,
            sockets: *sockets,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.core.config.name
    }

    pub fn config(&self) -> &ChainConfig {
        &self.core.config
    }

    pub fn upstreams(&self) -> &UpstreamSet {
        &self.core.upstreams
    }

    /// The transaction watch, when on.
    pub fn watch(&self) -> Option<&Arc<TxWatch>> {
        self.core.watch.as_ref()
    }

    /// The chain head, once some upstream's head is known.
    pub fn head(&self) -> Option<u64> {
        self.core.head()
    }

    /// What the chain's protocol says.
    pub fn family(&self) -> &Arc<dyn family::ChainFamily> {
        &self.core.family
    }

    /// The chain's new heads, as subscribers get them.
    pub fn heads(&self) -> &heads::HeadFeed {
        &self.core.heads
    }

    /// The pending transactions the upstream sockets tell, as subscribers get them.
    pub fn pending(&self) -> &pending::PendingFeed {
        &self.core.pending
    }

    /// The logs of the chain's new blocks, as subscribers get them.
    pub fn logs(&self) -> &log_feed::LogFeed {
        &self.core.logs
    }

    /// The newest block of the canonical window: how far the chain's new heads (and the
    /// cache's recent answers) have followed the head.
    pub fn followed(&self) -> Option<u64> {
        self.core.health.canonical.tip()
    }

    /// The chain's finalized block, once known (Manifold's own view: see `ChainHead`).
    pub fn finalized(&self) -> Option<u64> {
        self.core.finalized()
    }

    /// Start one health checker per upstream, and the transaction watch; they stop when
    /// `stop` turns true.
    pub fn spawn_background(&self, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let core = &self.core;
        let mut tasks: Vec<JoinHandle<()>> = core
            .upstreams
            .iter()
            .map(|u| tokio::spawn(checker::run(core.health.clone(), u.clone(), stop.clone())))
            .collect();
        if core.watch.is_some() {
            tasks.push(tokio::spawn(watch_loop::run(core.clone(), stop.clone())));
        }
        // The recent blocks' hashes, for the cache's answers about them and the new heads'
        // subscribers.
        if self.follow && core.family.block_ref_call(0).is_some() {
            tasks.push(tokio::spawn(follow::run(core.clone(), stop.clone())));
            if core.family.block_logs_call("0x").is_some() {
                tasks.push(tokio::spawn(log_feed::run(core.clone(), stop.clone())));
            }
            // Sockets for the upstreams that have one, opened while a client needs them.
            for u in core
                .upstreams
                .iter()
                .filter(|u| u.client().socket().is_some())
            {
                tasks.push(tokio::spawn(sockets::run(
                    core.clone(),
                    u.clone(),
                    self.sockets,
                    stop.clone(),
                )));
            }
        }
        tasks
    }

    /// Whether a call may be sent again after an attempt that may have reached a node.
    pub fn is_repeatable(&self, method: &str) -> bool {
        self.core.family.is_repeatable(method)
    }

    /// Answer one call. Never fails: proxy-level failures become JSON-RPC error objects. A
    /// call not safe to repeat runs in a task of its own (`spawn`).
    pub async fn call(&self, call: &Call) -> Payload {
        let call = ChainCall::new(&self.core, call.clone());
        if call.info.repeatable {
            return run(self.stack.clone(), call).await;
        }
        self.settle(tokio::spawn(run(self.stack.clone(), call)))
            .await
    }

    /// Start a call in a task of its own, which the caller only awaits: once started, a call
    /// not safe to repeat is carried through (every target of a broadcast written, its
    /// lookups made, its watch stored) even when the client goes away meanwhile (an HTTP/2
    /// reset, a closed connection) and the request's future is dropped.
    pub fn spawn(&self, call: Call) -> JoinHandle<Payload> {
        tokio::spawn(run(self.stack.clone(), ChainCall::new(&self.core, call)))
    }

    /// The answer of a spawned call.
    pub async fn settle(&self, task: JoinHandle<Payload>) -> Payload {
        match task.await {
            Ok(p) => p,
            // It cannot panic short of a bug; what it did is unknown.
            Err(e) => {
                tracing::error!(error = %e, "a call's task ended without an answer");
                self.core.outcome_unknown(&[], None).0
            }
        }
    }

    /// The answer for a batch item still unanswered at the batch's deadline.
    pub fn batch_deadline_passed(&self, repeatable: bool) -> Payload {
        self.core.batch_deadline_passed(repeatable)
    }

    /// One round of the transaction watch now, as on a new chain head (the watch's own task
    /// runs them on its own; tests drive them with this).
    pub async fn watch_round(&self) {
        if let Some(watch) = &self.core.watch {
            watch
                .round(&self.core.upstreams, &self.core.watch_route())
                .await;
        }
    }
}

/// One call through the stack.
async fn run(stack: ChainStack, call: ChainCall) -> Payload {
    match stack.oneshot(call).await {
        Ok(answer) => answer.payload,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use crate::jsonrpc::{decode, encode_request, Incoming, Item, Limits};
    use bytes::Bytes;

    #[test]
    fn upstream_request_keeps_method_and_params_bytes() {
        let body = Bytes::from_static(
            br#"{"id":"client","jsonrpc":"2.0","params":[ "0x1" , true ],"method":"eth_\u0067et"}"#,
        );
        let Ok(Incoming::Single(Item::Call(call))) = decode(
            &body,
            Limits {
                max_batch_len: 1,
                version_1: false,
            },
        ) else {
            panic!()
        };
        let out = encode_request(b"42", &call.method_json, call.params.as_deref());
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0","id":42,"method":"eth_\u0067et","params":[ "0x1" , true ]}"#
        );
    }
}
