//! The transaction watch: after a broadcast that some node may have taken (accepted, already
//! known, or of unknown outcome), Manifold keeps the signed bytes and watches the
//! transaction until it is final. Not mined and unknown to an upstream after
//! `rebroadcast_after`, it is sent again to that upstream; a reorg that drops it sends it
//! again; it stops when it is `finality_depth` blocks deep, when another transaction takes
//! its nonce, or after `watch_for`.
//!
//! No peer does this: a withdrawal taken by a provider whose region then died is otherwise
//! lost until someone notices. It is generic over the chain family, which says what "mined"
//! (`inclusion`) and "replaced" (`mined_count_call`) mean; the checks themselves are in
//! `round`. The list is bounded (`max_watched`), kept on disk (`store`) before the client
//! is answered, and shown at `GET /tx/{chain}/{hash}`.
//!
//! The watch also gives wallets read-your-writes nonces: a sender's `pending` transaction
//! count is at least its highest watched nonce + 1 while that transaction is watched, since
//! a node that has not seen the transaction yet would hand out its nonce again.

mod entry;
mod round;
mod store;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::{Counter, Gauge, Label};

pub use entry::{Clock, TxState, WatchedTx};
pub use store::TxStore;

use crate::config::BroadcastPolicy;
use crate::family::{Broadcast, ChainFamily};
use crate::metrics::{Metrics, REBROADCASTS, TX_WATCH, TX_WATCH_DROPPED};
use crate::upstream::Upstream;

/// Signed transactions a chain's watch holds at most, in bytes: 10,000 transfers are a few
/// MB, but a blob transaction with its sidecar is up to about 800 KB.
pub const MAX_WATCHED_BYTES: usize = 256 * 1024 * 1024;

/// One chain's watch.
#[derive(Debug)]
pub struct TxWatch {
    chain: Arc<str>,
    policy: BroadcastPolicy,
    family: Arc<dyn ChainFamily>,
    entries: Mutex<HashMap<String, WatchedTx>>,
    /// Held for a whole round: rounds never overlap (the watch's task and `watch_round`).
    rounds: tokio::sync::Mutex<()>,
    store: Option<TxStore>,
    clock: Clock,
    next_id: AtomicU64,
    metrics: WatchMetrics,
}

#[derive(Debug)]
struct WatchMetrics {
    /// By `TxState::ALL` order.
    states: Vec<Gauge>,
    rebroadcasts: Counter,
    dropped: Counter,
}

impl TxWatch {
    /// A chain's watch, resuming what `store` holds for it.
    pub fn new(
        chain: &Arc<str>,
        policy: BroadcastPolicy,
        family: Arc<dyn ChainFamily>,
        store: Option<TxStore>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let chain_label = || Label::new("chain", chain.to_string());
        let loaded = match &store {
            Some(s) => s
                .load(chain)
                .map_err(|e| format!("tx store `{}`: {e}", s.path().display()))?,
            None => Vec::new(),
        };
        let resumed = loaded.iter().filter(|t| t.state.is_active()).count();
        if resumed > 0 {
            tracing::info!(chain = %chain, transactions = resumed, "transaction watch resumed from the store");
        }
        let watch = Self {
            chain: chain.clone(),
            entries: Mutex::new(loaded.into_iter().map(|t| (t.hash.clone(), t)).collect()),
            rounds: tokio::sync::Mutex::new(()),
            family,
            store,
            clock: Clock::new(),
            next_id: AtomicU64::new(1),
            metrics: WatchMetrics {
                states: TxState::ALL
                    .iter()
                    .map(|s| {
                        metrics.gauge(
                            TX_WATCH,
                            vec![chain_label(), Label::new("state", s.label())],
                        )
                    })
                    .collect(),
                rebroadcasts: metrics.counter(REBROADCASTS, vec![chain_label()]),
                dropped: metrics.counter(TX_WATCH_DROPPED, vec![chain_label()]),
            },
            policy,
        };
        watch.publish(&watch.lock());
        Ok(watch)
    }

    /// The clock the watch's times are read from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, WatchedTx>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watch a transaction just broadcast (`method` with `params`, as the client sent it),
    /// taken by `accepted` so far after `sends` sends. Stored before this returns: call it
    /// before the client is answered. A transaction watched already (the client sent it
    /// again) is watched on, or watched again if it had ended.
    pub async fn add(
        &self,
        tx: &Broadcast,
        method: &str,
        params: &[u8],
        accepted: &[Arc<Upstream>],
        sends: u32,
    ) {
        let now = self.clock.now_ms();
        let (entry, evicted) = {
            let mut entries = self.lock();
            let evicted = if entries.contains_key(&tx.hash) {
                Vec::new()
            } else {
                self.make_room(&mut entries, params.len())
            };
            let entry = entries.entry(tx.hash.clone()).or_insert_with(|| WatchedTx {
                hash: tx.hash.clone(),
                method: method.to_string(),
                params: String::from_utf8_lossy(params).into_owned(),
                lookup_method: tx.lookup.method.to_string(),
                lookup_params: tx.lookup.params.clone(),
                sender: tx.sender.clone(),
                nonce: tx.nonce,
                state: TxState::Pending,
                first_sent_ms: now,
                last_sent_ms: now,
                ended_ms: None,
                block: None,
                block_hash: None,
                attempts: 0,
                rebroadcasts: 0,
                accepted_by: Vec::new(),
                domains: Vec::new(),
                nonce_taken_seen: 0,
                checked_ms: 0,
            });
            if !entry.state.is_active() {
                entry.state = TxState::Pending;
                entry.ended_ms = None;
                entry.first_sent_ms = now;
            }
            entry.last_sent_ms = now;
            entry.attempts = entry.attempts.saturating_add(sends);
            for u in accepted {
                entry.took(u.name(), &u.config.failure_domain);
            }
            let entry = entry.clone();
            self.publish(&entries);
            (entry, evicted)
        };
        tracing::debug!(chain = %self.chain, hash = %tx.hash, "transaction watched");
        self.persist(vec![entry], evicted.into_iter().collect())
            .await;
    }

    /// A send still running when the client was answered has ended: `upstream` took it.
    pub fn took(&self, hash: &str, upstream: &Upstream) {
        if let Some(e) = self.lock().get_mut(hash) {
            e.took(upstream.name(), &upstream.config.failure_domain);
        }
    }

    /// At most `max_watched` entries, holding at most `MAX_WATCHED_BYTES` of signed
    /// transactions with `incoming` (blob transactions are large): the oldest ended one goes
    /// first, else the oldest still watched (it is nearest its `watch_for`). Logged and
    /// counted: a dropped watch is a transaction no longer landed.
    fn make_room(&self, entries: &mut HashMap<String, WatchedTx>, incoming: usize) -> Vec<String> {
        let mut bytes: usize = entries.values().map(|e| e.params.len()).sum();
        let mut dropped = Vec::new();
        while !entries.is_empty()
            && (entries.len() >= self.policy.max_watched
                || bytes.saturating_add(incoming) > MAX_WATCHED_BYTES)
        {
            let Some((hash, state, size)) = entries
                .values()
                .filter(|e| !e.state.is_active())
                .min_by_key(|e| e.ended_ms)
                .or_else(|| entries.values().min_by_key(|e| e.first_sent_ms))
                .map(|e| (e.hash.clone(), e.state, e.params.len()))
            else {
                break;
            };
            entries.remove(&hash);
            bytes = bytes.saturating_sub(size);
            self.metrics.dropped.increment(1);
            tracing::warn!(
                chain = %self.chain, hash = %hash, state = state.label(),
                max_watched = self.policy.max_watched,
                "transaction watch full: dropped the oldest entry"
            );
            dropped.push(hash);
        }
        dropped
    }

    /// For a wallet's `pending` nonce read: the next nonce after the highest one `sender` has
    /// watched (pending or included) and the upstreams that took those transactions.
    pub fn pending_next(&self, sender: &str) -> Option<(u64, Vec<String>)> {
        let entries = self.lock();
        let mine = entries
            .values()
            .filter(|e| e.state.is_active() && e.sender.as_deref() == Some(sender));
        let mut next = None;
        let mut upstreams: Vec<String> = Vec::new();
        for e in mine {
            let Some(n) = e.nonce else { continue };
            next = Some(next.map_or(n + 1, |m: u64| m.max(n + 1)));
            for u in &e.accepted_by {
                if !upstreams.contains(u) {
                    upstreams.push(u.clone());
                }
            }
        }
        next.map(|n| (n, upstreams))
    }

    /// `GET /tx/{chain}/{hash}`.
    pub fn view(&self, hash: &str) -> Option<serde_json::Value> {
        let hash = hash.to_ascii_lowercase();
        self.lock().get(&hash).map(|e| e.view(&self.chain))
    }

    /// Counts by state, for `/status`.
    pub fn counts(&self) -> serde_json::Value {
        let entries = self.lock();
        let mut counts = serde_json::Map::new();
        for s in TxState::ALL {
            let n = entries.values().filter(|e| e.state == s).count();
            counts.insert(s.label().into(), n.into());
        }
        serde_json::Value::Object(counts)
    }

    fn publish(&self, entries: &HashMap<String, WatchedTx>) {
        for (i, s) in TxState::ALL.iter().enumerate() {
            let n = entries.values().filter(|e| e.state == *s).count();
            if let Some(g) = self.metrics.states.get(i) {
                g.set(n as f64);
            }
        }
    }

    async fn persist(&self, put: Vec<WatchedTx>, remove: Vec<String>) {
        let Some(store) = &self.store else { return };
        if let Err(e) = store.write(&self.chain, put, remove).await {
            tracing::error!(chain = %self.chain, store = %store.path().display(), error = %e, "tx store: cannot write; the watch goes on in memory");
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
