//! Prometheus metrics (`manifold_` prefix, bounded labels), served at the admin `/metrics`.
//!
//! Each `Manifold` instance owns its recorder rather than installing a global one, so
//! several instances in one process (the tests) keep separate counts. Handles are resolved
//! once and cached (`LabelTable`), so the request path touches only atomics.
//!
//! A histogram sample is kept raw until the exporter folds it into its buckets, which it does
//! on a scrape or an upkeep: `spawn_upkeep` runs the upkeep on a timer, so that memory stays
//! flat for months when nobody scrapes `/metrics` (the exporter's own `install` would spawn
//! it; a recorder built for one instance has to be kept up by hand).

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new("manifold", Level::INFO, Some(module_path!()));

/// Latency buckets in seconds: sub-millisecond (cache, local node) to slow `eth_getLogs`.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub const REQUESTS: &str = "manifold_requests_total";
pub const REQUEST_DURATION: &str = "manifold_request_duration_seconds";
pub const REJECTED: &str = "manifold_rejected_requests_total";
pub const UPSTREAM_REQUESTS: &str = "manifold_upstream_requests_total";
pub const UPSTREAM_DURATION: &str = "manifold_upstream_request_duration_seconds";
pub const UPSTREAM_IN_FLIGHT: &str = "manifold_upstream_in_flight";
pub const UPSTREAM_HEALTHY: &str = "manifold_upstream_healthy";
pub const UPSTREAM_HEAD: &str = "manifold_upstream_head_block";
pub const UPSTREAM_LAG: &str = "manifold_upstream_lag_blocks";
pub const CHAIN_HEAD: &str = "manifold_chain_head_block";
pub const CHAIN_FINALIZED: &str = "manifold_chain_finalized_block";
pub const CHAIN_REORGS: &str = "manifold_chain_reorgs_total";
pub const CHAIN_BACKFILLED: &str = "manifold_chain_backfilled_blocks_total";
pub const WS_CONNECTIONS: &str = "manifold_ws_connections";
pub const FILTERS: &str = "manifold_filters";
pub const WS_SUBSCRIPTIONS: &str = "manifold_ws_subscriptions";
pub const WS_NOTIFICATIONS: &str = "manifold_ws_notifications_total";
pub const WS_CLOSED: &str = "manifold_ws_closed_total";
pub const CACHE_REQUESTS: &str = "manifold_cache_requests_total";
pub const CACHE_BYTES: &str = "manifold_cache_bytes";
pub const CACHE_EVICTIONS: &str = "manifold_cache_evictions_total";
pub const COALESCED: &str = "manifold_coalesced_total";
pub const COALESCE_GROUPS: &str = "manifold_coalesce_groups";
pub const SPLIT_PARTS: &str = "manifold_split_parts_total";
pub const REDIS_REQUESTS: &str = "manifold_redis_requests_total";
pub const REDIS_UP: &str = "manifold_redis_up";
pub const BROADCASTS: &str = "manifold_broadcasts_total";
pub const BREAKER_STATE: &str = "manifold_breaker_state";
pub const RETRIES: &str = "manifold_retries_total";
pub const HEDGES: &str = "manifold_hedges_total";
pub const BUILD_INFO: &str = "manifold_build_info";
pub const TX_WATCH: &str = "manifold_tx_watch";
pub const REBROADCASTS: &str = "manifold_rebroadcasts_total";
pub const TX_WATCH_DROPPED: &str = "manifold_tx_watch_dropped_total";
pub const OPEN_CONNECTIONS: &str = "manifold_open_connections";
pub const CALLS_IN_FLIGHT: &str = "manifold_calls_in_flight";
pub const BUFFERED_BYTES: &str = "manifold_buffered_answer_bytes";

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        REQUESTS,
        "JSON-RPC calls answered, by chain, method and outcome",
    ),
    (
        REQUEST_DURATION,
        "Time to answer a JSON-RPC call, all attempts included, by chain and method",
    ),
    (
        REJECTED,
        "HTTP requests rejected before reaching a chain, by reason",
    ),
    (
        UPSTREAM_REQUESTS,
        "Attempts sent to upstreams, by chain, upstream and outcome",
    ),
    (
        UPSTREAM_DURATION,
        "Duration of attempts sent to upstreams, by chain and upstream",
    ),
    (
        UPSTREAM_IN_FLIGHT,
        "Attempts currently waiting on an upstream",
    ),
    (
        BUILD_INFO,
        "Always 1; the version label says which build runs",
    ),
    (
        UPSTREAM_HEALTHY,
        "1 when the upstream passes its health checks, else 0",
    ),
    (
        UPSTREAM_HEAD,
        "The upstream's head block, from its last probe",
    ),
    (UPSTREAM_LAG, "Blocks the upstream is behind the chain head"),
    (
        CHAIN_HEAD,
        "The chain head, from the healthy upstreams' heads (median-anchored)",
    ),
    (
        BROADCASTS,
        "Transaction broadcasts, by chain and result (accepted, already_known, known_after_nonce_too_low, found_by_hash, rejected, unknown, not_sent)",
    ),
    (
        TX_WATCH,
        "Transactions the watch holds, by chain and state (pending, included, final, replaced, expired)",
    ),
    (
        REBROADCASTS,
        "Rounds of the transaction watch that sent a transaction again, by chain",
    ),
    (
        TX_WATCH_DROPPED,
        "Watched transactions dropped because the watch was full (max_watched), by chain",
    ),
    (
        OPEN_CONNECTIONS,
        "Client connections open on the JSON-RPC listener (at most max_connections)",
    ),
    (
        CALLS_IN_FLIGHT,
        "Requests and batch items in flight (at most max_concurrent_calls)",
    ),
    (
        BUFFERED_BYTES,
        "Upstream answer bytes held in memory and counted against max_buffered_bytes",
    ),
    (
        BREAKER_STATE,
        "The upstream's circuit breaker: 0 closed, 1 half-open, 2 open",
    ),
    (
        RETRIES,
        "Retries on another upstream after a failed attempt, by chain and result (sent, budget_exhausted)",
    ),
    (
        HEDGES,
        "Hedged attempts, by chain and result (sent; won: the hedge gave the answer)",
    ),
    (
        CHAIN_FINALIZED,
        "The chain's finalized block, from Manifold's own view of its upstreams",
    ),
    (
        CHAIN_REORGS,
        "Reorgs seen in the chain's newest blocks (the cache drops its answers about them), by chain",
    ),
    (
        CHAIN_BACKFILLED,
        "Blocks below the new head taken in after the head jumped by more than one (sent to newHeads subscribers in order), by chain",
    ),
    (
        FILTERS,
        "Filters a chain holds (eth_newFilter, eth_newBlockFilter; at most filters.max), by chain",
    ),
    (
        WS_CONNECTIONS,
        "WebSocket client sockets open (at most websocket.max_connections)",
    ),
    (
        WS_SUBSCRIPTIONS,
        "eth_subscribe subscriptions open, by chain and kind",
    ),
    (
        WS_NOTIFICATIONS,
        "Subscription notifications queued for clients, by chain and kind",
    ),
    (
        WS_CLOSED,
        "WebSocket client sockets closed, by reason (client, slow_client, ping_timeout, shutdown, error)",
    ),
    (
        CACHE_REQUESTS,
        "Calls seen by the answer cache, by chain, method and result (hit, miss, bypass)",
    ),
    (CACHE_BYTES, "Bytes of answers and keys the answer cache holds, by chain"),
    (
        CACHE_EVICTIONS,
        "Answers the cache dropped to stay within max_bytes, by chain",
    ),
    (
        COALESCED,
        "Calls answered by sharing an identical call already in flight, by chain",
    ),
    (
        COALESCE_GROUPS,
        "Distinct calls in flight that identical calls may join, by chain",
    ),
    (
        SPLIT_PARTS,
        "Parts that wide eth_getLogs ranges were asked in (halvings included), by chain",
    ),
    (
        REDIS_REQUESTS,
        "Reads and writes of the cache's shared tier in Redis, by op (get, set) and result (hit, miss, invalid, error, timeout, skipped; ok)",
    ),
    (
        REDIS_UP,
        "1 while the cache's Redis answers, 0 after a failure until it answers again",
    ),
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    /// The limits' gauges, read when `/metrics` is rendered: nothing to update per call.
    limits: OnceLock<LimitGauges>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the edge's limits hold now: each semaphore with its size, and the answer budget.
#[derive(Debug)]
pub struct LimitGauges {
    pub connections: (Arc<tokio::sync::Semaphore>, usize),
    pub calls: (Arc<tokio::sync::Semaphore>, usize),
    pub budget: crate::upstream::AnswerBudget,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(LATENCY_BUCKETS) {
            Ok(b) => b,
            // Only fails on an empty bucket list, which LATENCY_BUCKETS is not.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        for (name, help) in DESCRIPTIONS {
            let key = KeyName::from(*name);
            if name.ends_with("_total") {
                recorder.describe_counter(key, None, (*help).into());
            } else if name.ends_with("_seconds") {
                recorder.describe_histogram(key, Some(metrics::Unit::Seconds), (*help).into());
            } else {
                recorder.describe_gauge(key, None, (*help).into());
            }
        }
        let this = Arc::new(Self {
            recorder,
            limits: OnceLock::new(),
        });
        this.gauge(
            BUILD_INFO,
            vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1.0);
        this
    }

    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &META)
    }

    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// Fold recorded histogram samples into their buckets every `every`, until `stop` turns
    /// true.
    pub fn spawn_upkeep(
        self: &Arc<Self>,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let handle = self.recorder.handle();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    changed = stop.changed() => {
                        // A sender gone is a stop too (else `changed` answers at once).
                        if changed.is_err() || *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// Report what `limits` hold in `/metrics` (set once; a second call is ignored).
    pub fn sample_limits(&self, limits: LimitGauges) {
        let _ = self.limits.set(limits);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(l) = self.limits.get() {
            let in_use = |(sem, max): &(Arc<tokio::sync::Semaphore>, usize)| {
                max.saturating_sub(sem.available_permits()) as f64
            };
            self.gauge(OPEN_CONNECTIONS, Vec::new())
                .set(in_use(&l.connections));
            self.gauge(CALLS_IN_FLIGHT, Vec::new())
                .set(in_use(&l.calls));
            self.gauge(BUFFERED_BYTES, Vec::new())
                .set(l.budget.held() as f64);
        }
        self.recorder.handle().render()
    }
}

/// Metric handles indexed by small integers (method label, outcome), registered on first
/// use: no series appears before it has a value, and no lookup happens after.
#[derive(Debug)]
pub struct LabelTable<T> {
    cells: Vec<OnceLock<T>>,
}

impl<T: Clone> LabelTable<T> {
    pub fn new(len: usize) -> Self {
        Self {
            cells: (0..len).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The handle at `index`, made by `make` the first time. Out-of-range indexes (a bug)
    /// get a fresh, unregistered handle rather than a panic.
    pub fn get(&self, index: usize, make: impl FnOnce() -> T) -> T {
        match self.cells.get(index) {
            Some(cell) => cell.get_or_init(make).clone(),
            None => make(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_help_and_labels() {
        let m = Metrics::new();
        m.counter(
            REQUESTS,
            vec![
                Label::new("chain", "eth"),
                Label::new("method", "eth_call"),
                Label::new("outcome", "success"),
            ],
        )
        .increment(2);
        m.histogram(
            REQUEST_DURATION,
            vec![Label::new("chain", "eth"), Label::new("method", "eth_call")],
        )
        .record(0.003);
        let text = m.render();
        assert!(text.contains("# HELP manifold_requests_total"), "{text}");
        assert!(
            text.contains(
                r#"manifold_requests_total{chain="eth",method="eth_call",outcome="success"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("manifold_request_duration_seconds_bucket{chain=\"eth\",method=\"eth_call\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("manifold_build_info{version="), "{text}");
    }

    #[test]
    fn instances_are_separate() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.counter(REJECTED, vec![Label::new("reason", "x")])
            .increment(1);
        assert!(a
            .render()
            .contains("manifold_rejected_requests_total{reason=\"x\"} 1"));
        assert!(!b.render().contains("reason=\"x\""));
    }

    #[test]
    fn label_table_registers_once() {
        let m = Metrics::new();
        let t: LabelTable<Counter> = LabelTable::new(2);
        let mut made = 0;
        for _ in 0..3 {
            t.get(1, || {
                made += 1;
                m.counter(REJECTED, vec![Label::new("reason", "y")])
            })
            .increment(1);
        }
        assert_eq!(made, 1);
        assert!(m
            .render()
            .contains("manifold_rejected_requests_total{reason=\"y\"} 3"));
    }
}
