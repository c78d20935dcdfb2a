//! What `/status` and the metrics say of one upstream socket: its state, when it last
//! changed, why it last closed, and how many heads and pending transactions it told.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use metrics::{Counter, Gauge, Label};

use crate::metrics::{Metrics, UPSTREAM_SOCKET, UPSTREAM_SOCKET_CLOSED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SocketState {
    /// No `ws_url` (`ws_url = false`): heads by polling only.
    Off,
    /// Closed: no client needs it.
    Idle,
    Connecting,
    Open,
    /// Lost or failed; opened again after a backoff.
    Down,
    /// The upgrade was refused (no WebSocket at this URL), or the node refused the
    /// subscription: tried again after a long while.
    Unsupported,
}

impl SocketState {
    pub const ALL: [SocketState; 6] = [
        SocketState::Off,
        SocketState::Idle,
        SocketState::Connecting,
        SocketState::Open,
        SocketState::Down,
        SocketState::Unsupported,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SocketState::Off => "off",
            SocketState::Idle => "idle",
            SocketState::Connecting => "connecting",
            SocketState::Open => "open",
            SocketState::Down => "down",
            SocketState::Unsupported => "unsupported",
        }
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(SocketState::Down)
    }
}

/// Why an open socket was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No client needed it for `websocket.upstream_linger`.
    Idle,
    /// Manifold is stopping.
    Stopped,
    /// The upstream closed it, or the connection broke.
    Lost,
    /// No pong (nor anything else) within a ping interval.
    PingTimeout,
    /// Its heads trailed the upstream's polled head for `websocket.upstream_stale_after`.
    Stale,
    /// The node refused the subscription, or sent what is not JSON-RPC.
    Refused,
}

impl CloseReason {
    const ALL: [CloseReason; 6] = [
        CloseReason::Idle,
        CloseReason::Stopped,
        CloseReason::Lost,
        CloseReason::PingTimeout,
        CloseReason::Stale,
        CloseReason::Refused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Stopped => "stopped",
            CloseReason::Lost => "lost",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Stale => "stale",
            CloseReason::Refused => "refused",
        }
    }
}

#[derive(Debug)]
pub struct SocketStatus {
    state: AtomicU8,
    heads: AtomicU64,
    pending: AtomicU64,
    opened: AtomicU64,
    /// The last failure or close, in words (secrets scrubbed by the caller).
    last_error: Mutex<String>,
    /// `manifold_upstream_socket{state}`: 1 for the current state, 0 for the others.
    gauges: Vec<Gauge>,
    closed: Vec<Counter>,
}

impl SocketStatus {
    pub fn new(metrics: &Metrics, chain: &str, upstream: &str, state: SocketState) -> Self {
        let labels = |name: &'static str, value: &'static str| {
            vec![
                Label::new("chain", chain.to_string()),
                Label::new("upstream", upstream.to_string()),
                Label::new(name, value),
            ]
        };
        let status = Self {
            state: AtomicU8::new(state as u8),
            heads: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            gauges: SocketState::ALL
                .iter()
                .map(|s| metrics.gauge(UPSTREAM_SOCKET, labels("state", s.label())))
                .collect(),
            closed: CloseReason::ALL
                .iter()
                .map(|r| metrics.counter(UPSTREAM_SOCKET_CLOSED, labels("reason", r.label())))
                .collect(),
        };
        status.publish(state);
        status
    }

    pub fn state(&self) -> SocketState {
        SocketState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: SocketState) {
        if state == SocketState::Open {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        self.state.store(state as u8, Ordering::Relaxed);
        self.publish(state);
    }

    fn publish(&self, state: SocketState) {
        for (s, g) in SocketState::ALL.iter().zip(&self.gauges) {
            g.set(if *s == state { 1.0 } else { 0.0 });
        }
    }

    pub fn closed(&self, reason: CloseReason, why: String) {
        if let Some(c) = self.closed.get(reason as usize) {
            c.increment(1);
        }
        self.failed(why);
    }

    pub fn failed(&self, why: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    pub fn told_head(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn told_pending(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// For `/status`: `head` is the upstream's socket head (`ActiveHealth::socket_head`).
    pub fn snapshot(&self, url: &str, head: Option<u64>) -> serde_json::Value {
        serde_json::json!({
            "url": url,
            "state": self.state().label(),
            "head": head,
            "heads": self.heads.load(Ordering::Relaxed),
            "pending": self.pending.load(Ordering::Relaxed),
            "opened": self.opened.load(Ordering::Relaxed),
            "last_error": &*self.last_error.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }
}
