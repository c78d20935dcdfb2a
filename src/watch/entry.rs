//! One watched transaction, as kept in memory and in the store, and the clock its times are
//! read from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Where a watched transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Sent, not mined (as far as the in-sync upstreams say).
    Pending,
    /// Mined, fewer than `finality_depth` blocks deep: a reorg may still drop it.
    Included,
    /// `finality_depth` blocks deep: no longer watched.
    Final,
    /// Another transaction of the same sender took its nonce.
    Replaced,
    /// Not mined within `watch_for`: given up on.
    Expired,
}

impl TxState {
    pub const ALL: [TxState; 5] = [
        TxState::Pending,
        TxState::Included,
        TxState::Final,
        TxState::Replaced,
        TxState::Expired,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TxState::Pending => "pending",
            TxState::Included => "included",
            TxState::Final => "final",
            TxState::Replaced => "replaced",
            TxState::Expired => "expired",
        }
    }

    /// Still watched: checked each round.
    pub fn is_active(self) -> bool {
        matches!(self, TxState::Pending | TxState::Included)
    }
}

/// A transaction the watch lands. Times are milliseconds since the Unix epoch, so that they
/// mean the same after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedTx {
    pub hash: String,
    /// The send as the client made it (method, and params JSON text): sent again as it is.
    pub method: String,
    pub params: String,
    /// The call that finds it by hash (method, params JSON text).
    pub lookup_method: String,
    pub lookup_params: String,
    pub sender: Option<String>,
    pub nonce: Option<u64>,
    pub state: TxState,
    pub first_sent_ms: u64,
    pub last_sent_ms: u64,
    /// When it became final, replaced or expired.
    pub ended_ms: Option<u64>,
    pub block: Option<u64>,
    pub block_hash: Option<String>,
    /// Sends made, by the broadcast and by the watch.
    pub attempts: u32,
    /// Rounds of the watch that sent it again.
    pub rebroadcasts: u32,
    /// Upstreams that took it (accepted, or knew it already), and their failure domains.
    pub accepted_by: Vec<String>,
    pub domains: Vec<String>,
    /// Consecutive rounds that saw its nonce taken with no receipt for it: two make it
    /// `replaced` (one could be a node a block ahead of the one asked for the receipt).
    #[serde(default)]
    pub nonce_taken_seen: u32,
    /// When a round last asked for its receipt (not stored: a restarted watch checks all).
    #[serde(skip)]
    pub checked_ms: u64,
}

impl WatchedTx {
    /// Record that `upstream` (in `domain`) took it.
    pub fn took(&mut self, upstream: &str, domain: &str) {
        if !self.accepted_by.iter().any(|u| u == upstream) {
            self.accepted_by.push(upstream.to_string());
        }
        if !self.domains.iter().any(|d| d == domain) {
            self.domains.push(domain.to_string());
        }
    }

    pub fn end(&mut self, state: TxState, now_ms: u64) {
        self.state = state;
        self.ended_ms = Some(now_ms);
    }

    /// What `GET /tx/{chain}/{hash}` shows.
    pub fn view(&self, chain: &str) -> serde_json::Value {
        serde_json::json!({
            "chain": chain,
            "hash": self.hash,
            "state": self.state.label(),
            "block": self.block,
            "block_hash": self.block_hash,
            "sender": self.sender,
            "nonce": self.nonce,
            "attempts": self.attempts,
            "rebroadcasts": self.rebroadcasts,
            "accepted_by": self.accepted_by,
            "domains": self.domains,
            "first_sent_unix_ms": self.first_sent_ms,
            "last_sent_unix_ms": self.last_sent_ms,
            "ended_unix_ms": self.ended_ms,
        })
    }
}

/// Wall-clock milliseconds that advance with tokio's clock (paused time in tests), plus
/// what `advance` added: a test waits out `rebroadcast_after` or `watch_for` in no time,
/// while the upstreams it talks to run in real time.
#[derive(Debug, Clone)]
pub struct Clock {
    base_ms: u64,
    base: Instant,
    skipped_ms: Arc<AtomicU64>,
}

impl Clock {
    pub fn new() -> Self {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            base_ms,
            base: Instant::now(),
            skipped_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn now_ms(&self) -> u64 {
        let since = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms
            .saturating_add(since)
            .saturating_add(self.skipped_ms.load(Ordering::Relaxed))
    }

    /// Move this clock forward (tests).
    pub fn advance(&self, by: std::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skipped_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
