//! Every metric's name, and its help text as `/metrics` shows it. The names are the
//! product's (README, "Metrics"): dashboards and alerts depend on them.

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
pub const WS_QUEUED_BYTES: &str = "manifold_ws_queued_bytes";
pub const UPSTREAM_SOCKET: &str = "manifold_upstream_socket";
pub const UPSTREAM_SOCKET_CLOSED: &str = "manifold_upstream_socket_closed_total";
pub const PENDING_SEEN: &str = "manifold_pending_transactions_total";
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

pub(super) const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        WS_QUEUED_BYTES,
        "Bytes waiting to be written to WebSocket clients, all sockets (each at most websocket.queue_bytes)",
    ),
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
        UPSTREAM_SOCKET,
        "The upstream's WebSocket: 1 for its current state (off, idle, connecting, open, down, unsupported), 0 for the others",
    ),
    (
        UPSTREAM_SOCKET_CLOSED,
        "Upstream WebSockets closed, by reason (idle, stopped, lost, ping_timeout, stale, refused)",
    ),
    (
        PENDING_SEEN,
        "Pending transaction hashes told by upstream sockets, by chain and result (new, duplicate)",
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
