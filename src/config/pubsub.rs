//! Subscriptions and filters: `[server.websocket]` (the WebSocket endpoint's limits, see
//! `crate::ws`) and `[chains.policy.filters]` (filters a chain serves itself, see
//! `chain::filters`).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// `false`: `GET /{chain}` is answered 405 as before WebSocket existed.
    pub enabled: bool,
    /// Client sockets open at once; one more upgrade is answered 503.
    pub max_connections: usize,
    /// Subscriptions one socket holds at once; one more is refused with -32005.
    pub max_subscriptions: usize,
    /// Calls of one socket in flight at once; past it, its next messages wait unread.
    pub max_in_flight: usize,
    /// Messages waiting to be written to one client; a client that lets more pile up is
    /// closed with 1008.
    pub queue_messages: usize,
    /// Bytes waiting to be written to one client, likewise (one message larger than this
    /// still goes out alone).
    pub queue_bytes: usize,
    /// How often the server pings a client; one silent for two intervals is closed.
    pub ping_interval: Duration,
    /// Origins (`https://app.example`) a browser may connect from; empty: any. A request
    /// without an `Origin` header (not a browser) is always let in.
    pub allowed_origins: Vec<String>,
    /// An upstream socket is closed this long after the last client that needed it left.
    pub upstream_linger: Duration,
    /// An upstream socket whose heads trail the upstream's polled head this long is opened
    /// again.
    pub upstream_stale_after: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        use super::defaults as d;
        Self {
            enabled: true,
            max_connections: d::WS_MAX_CONNECTIONS,
            max_subscriptions: d::WS_MAX_SUBSCRIPTIONS,
            max_in_flight: d::WS_MAX_IN_FLIGHT,
            queue_messages: d::WS_QUEUE_MESSAGES,
            queue_bytes: d::WS_QUEUE_BYTES,
            ping_interval: d::WS_PING_INTERVAL,
            allowed_origins: Vec::new(),
            upstream_linger: d::WS_UPSTREAM_LINGER,
            upstream_stale_after: d::WS_UPSTREAM_STALE_AFTER,
        }
    }
}

impl WsConfig {
    /// Whether a browser at `origin` may connect.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    }
}

/// `[chains.policy.filters]`: the filters (`eth_newFilter`, `eth_newBlockFilter`) a chain
/// serves from its own view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPolicy {
    /// Filters held at once; one more is refused with -32005.
    pub max: usize,
    /// A filter not polled for this long is dropped (geth: 5 minutes).
    pub expire_after: Duration,
    /// Changes one filter holds between polls; a filter that would hold more is dropped
    /// (its next poll gets "filter not found", and clients make a new one).
    pub max_changes: usize,
}

impl Default for FilterPolicy {
    fn default() -> Self {
        use super::defaults as d;
        Self {
            max: d::FILTERS_MAX,
            expire_after: d::FILTERS_EXPIRE_AFTER,
            max_changes: d::FILTERS_MAX_CHANGES,
        }
    }
}
