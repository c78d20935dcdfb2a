//! One round of the watch: each watched transaction checked once, on a new chain head (or
//! after a health interval without one).
//!
//! - Its receipt, asked of in-sync upstreams, those outside the failure domains that took it
//!   first: they say whether it spread. Mined: `included`, then `final` at
//!   `finality_depth`. A receipt gone again (a reorg dropped it): `pending`, sent again now.
//! - Not mined: its sender's mined count at the in-sync head. Past its nonce twice in a row:
//!   `replaced`. Older than `watch_for`: `expired`.
//! - Still pending `rebroadcast_after` after its last send (then twice as long, and so on):
//!   each upstream is asked for it by hash, and every one that does not know it gets it
//!   again. A node that took it into a pool, then died with its region, can no longer hold
//!   a withdrawal back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use super::{TxState, TxWatch, WatchedTx};
use crate::family::{Cost, FamilyCall};
use crate::jsonrpc::{encode_request, Payload};
use crate::upstream::{took_it, Lookup, Question, Route, Upstream, UpstreamSet};

/// Transactions checked at once in a round.
const CONCURRENCY: usize = 8;
/// How long one transaction's checks may take in a round.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstreams asked for a receipt before the round gives up on it.
const RECEIPT_TRIES: usize = 2;
/// The wait before a rebroadcast doubles each time, up to this many doublings.
const MAX_BACKOFF_DOUBLINGS: u32 = 5;

/// One request of the watch, encoded.
struct Encoded {
    method: String,
    id: Vec<u8>,
    body: Bytes,
}

impl TxWatch {
    /// Check every watched transaction once; store what changed.
    pub async fn round(&self, set: &UpstreamSet, route: &Route) {
        let _one_at_a_time = self.rounds.lock().await;
        let now = self.clock.now_ms();
        // Pending ones every round. Included ones when they may have become final, and
        // otherwise every `rebroadcast_after` (a reorg that drops one is found that soon):
        // on a fast chain, rounds come several a second and most entries are included.
        let recheck = millis(self.policy.rebroadcast_after);
        let active: Vec<WatchedTx> = self
            .lock()
            .values()
            .filter(|e| match e.state {
                TxState::Pending => true,
                TxState::Included => {
                    e.block.is_some_and(|b| self.is_final_at(b, route))
                        || now.saturating_sub(e.checked_ms) >= recheck
                }
                _ => false,
            })
            .cloned()
            .collect();
        let checked: Vec<(WatchedTx, WatchedTx)> = stream::iter(active)
            .map(|before| async move {
                let mut after = before.clone();
                self.check(set, route, &mut after, now).await;
                (before, after)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut put = Vec::new();
        let mut remove = Vec::new();
        {
            let mut entries = self.lock();
            for (before, mut after) in checked {
                // Dropped meanwhile (the watch was full): not brought back past its bound.
                let Some(current) = entries.get_mut(&after.hash) else {
                    continue;
                };
                let unchanged = WatchedTx {
                    checked_ms: after.checked_ms,
                    ..before.clone()
                } == after;
                if unchanged {
                    // Only the time of the check: kept in memory, nothing to store.
                    current.checked_ms = after.checked_ms;
                    continue;
                }
                // What was learnt meanwhile is kept: acceptances (late sends of the broadcast),
                // and the client sending it again (more sends, a later last send).
                for (u, d) in current.accepted_by.iter().zip(&current.domains) {
                    after.took(u, d);
                }
                after.attempts = after
                    .attempts
                    .saturating_add(current.attempts.saturating_sub(before.attempts));
                after.last_sent_ms = after.last_sent_ms.max(current.last_sent_ms);
                put.push(after.clone());
                *current = after;
            }
            // Ended entries are remembered (for `GET /tx`) for `watch_for`, then forgotten.
            let forget_before = now.saturating_sub(millis(self.policy.watch_for));
            entries.retain(|hash, e| {
                let keep = e.ended_ms.is_none_or(|ended| ended > forget_before);
                if !keep {
                    remove.push(hash.clone());
                }
                keep
            });
            self.publish(&entries);
        }
        self.persist(put, remove).await;
    }

    /// One transaction's checks, applied to `tx`.
    async fn check(&self, set: &UpstreamSet, route: &Route, tx: &mut WatchedTx, now: u64) {
        let deadline = Instant::now() + CHECK_TIMEOUT;
        let receipt = self.family.receipt_call(&tx.hash);
        let order = receipt_order(set, route, receipt.method, tx);
        let answer = set
            .ask_in_order(
                &self.encode(&receipt).as_question(deadline),
                &order,
                RECEIPT_TRIES,
            )
            .await;
        tx.checked_ms = now;
        let inclusion = match answer {
            Some((_, Payload::Result(r))) => self.family.inclusion(&r),
            // No answer, or an error: nothing learnt this round.
            _ => return,
        };
        match inclusion {
            Some(inc) => {
                tx.nonce_taken_seen = 0;
                if tx.state == TxState::Pending {
                    tracing::info!(chain = %self.chain, hash = %tx.hash, block = inc.block, "watched transaction mined");
                }
                tx.state = TxState::Included;
                tx.block = Some(inc.block);
                tx.block_hash = Some(inc.block_hash);
                if self.is_final_at(inc.block, route) {
                    tx.end(TxState::Final, now);
                }
            }
            None => {
                if tx.state == TxState::Included {
                    tracing::warn!(chain = %self.chain, hash = %tx.hash, block = ?tx.block, "watched transaction dropped by a reorg: sending it again");
                    tx.state = TxState::Pending;
                    tx.block = None;
                    tx.block_hash = None;
                    self.rebroadcast(set, route, tx, now).await;
                    return;
                }
                if now.saturating_sub(tx.first_sent_ms) >= millis(self.policy.watch_for) {
                    tracing::warn!(chain = %self.chain, hash = %tx.hash, "watched transaction not mined within watch_for: expired");
                    tx.end(TxState::Expired, now);
                    return;
                }
                if self.nonce_taken(set, tx, &order, deadline).await {
                    tx.nonce_taken_seen += 1;
                    if tx.nonce_taken_seen >= 2 {
                        tracing::info!(chain = %self.chain, hash = %tx.hash, nonce = ?tx.nonce, "watched transaction replaced: its nonce was taken by another");
                        tx.end(TxState::Replaced, now);
                    }
                    return;
                }
                tx.nonce_taken_seen = 0;
                let wait = millis(self.policy.rebroadcast_after)
                    .saturating_mul(1 << tx.rebroadcasts.min(MAX_BACKOFF_DOUBLINGS));
                if now >= tx.last_sent_ms.saturating_add(wait) {
                    self.rebroadcast(set, route, tx, now).await;
                }
            }
        }
    }

    /// Whether the in-sync chain has mined past the transaction's nonce (another
    /// transaction took it, or this one was mined after the receipt was asked).
    async fn nonce_taken(
        &self,
        set: &UpstreamSet,
        tx: &WatchedTx,
        order: &[Arc<Upstream>],
        deadline: Instant,
    ) -> bool {
        let (Some(sender), Some(nonce)) = (&tx.sender, tx.nonce) else {
            return false;
        };
        let Some(call) = self.family.mined_count_call(sender) else {
            return false;
        };
        let q = self.encode(&call);
        match set
            .ask_in_order(&q.as_question(deadline), order, RECEIPT_TRIES)
            .await
        {
            Some((_, Payload::Result(r))) => self.family.parse_count(&r).is_some_and(|c| c > nonce),
            _ => false,
        }
    }

    /// Send the transaction again to every upstream that does not know it.
    async fn rebroadcast(&self, set: &UpstreamSet, route: &Route, tx: &mut WatchedTx, now: u64) {
        let deadline = Instant::now() + CHECK_TIMEOUT;
        let lookup_q = Encoded::new(self, &tx.lookup_method, &tx.lookup_params);
        let send_q = Encoded::new(self, &tx.method, &tx.params);
        let hash_json = format!("\"{}\"", tx.hash);
        let targets = set.askable(&tx.method, route);
        let results: Vec<(Arc<Upstream>, Option<bool>)> = stream::iter(targets)
            .map(|u| {
                let (lookup_q, send_q, hash_json) = (&lookup_q, &send_q, &hash_json);
                async move {
                    let known = set
                        .find(&lookup_q.as_question(deadline), std::slice::from_ref(&u))
                        .await;
                    if matches!(known, Lookup::Found(..)) {
                        return (u, None);
                    }
                    if u.admit_background().is_err() {
                        return (u, None);
                    }
                    let sent = u
                        .attempt(
                            None,
                            &send_q.method,
                            &send_q.id,
                            send_q.body.clone(),
                            deadline,
                            Cost::Normal,
                        )
                        .await;
                    (u, Some(took_it(&*self.family, hash_json.as_bytes(), &sent)))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        tx.last_sent_ms = now;
        let sent = results.iter().filter(|(_, r)| r.is_some()).count();
        if sent == 0 {
            return;
        }
        for (u, took) in &results {
            if *took == Some(true) {
                tx.took(u.name(), &u.config.failure_domain);
            }
        }
        tx.attempts = tx
            .attempts
            .saturating_add(u32::try_from(sent).unwrap_or(u32::MAX));
        tx.rebroadcasts = tx.rebroadcasts.saturating_add(1);
        self.metrics.rebroadcasts.increment(1);
        tracing::info!(chain = %self.chain, hash = %tx.hash, upstreams = sent, round = tx.rebroadcasts, "watched transaction sent again");
    }

    /// Whether a transaction in `block` is `finality_depth` deep at the chain head.
    fn is_final_at(&self, block: u64, route: &Route) -> bool {
        route
            .chain_head
            .is_some_and(|head| head >= block.saturating_add(self.policy.finality_depth))
    }

    fn encode(&self, call: &FamilyCall) -> Encoded {
        Encoded::new(self, call.method, &call.params)
    }

    fn next_id(&self) -> Vec<u8> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("\"watch-{n}\"").into_bytes()
    }
}

impl Encoded {
    fn new(watch: &TxWatch, method: &str, params: &str) -> Self {
        let id = watch.next_id();
        let method_json = serde_json::to_string(method).unwrap_or_default();
        let body = encode_request(&id, method_json.as_bytes(), Some(params.as_bytes()));
        Self {
            method: method.to_string(),
            id,
            body,
        }
    }

    fn as_question(&self, deadline: Instant) -> Question<'_> {
        Question {
            method: &self.method,
            request_id: &self.id,
            body: self.body.clone(),
            deadline,
        }
    }
}

/// In-sync upstreams that may be asked `method`, those outside the failure domains that took
/// `tx` first, then by tier; upstreams behind the chain only when none is in sync.
fn receipt_order(
    set: &UpstreamSet,
    route: &Route,
    method: &str,
    tx: &WatchedTx,
) -> Vec<Arc<Upstream>> {
    let mut order: Vec<Arc<Upstream>> = set
        .askable(method, route)
        .into_iter()
        .filter(|u| route.in_sync(u))
        .collect();
    if order.is_empty() {
        order = set.askable(method, route);
    }
    order.sort_by_key(|u| (tx.domains.contains(&u.config.failure_domain), u.config.tier));
    order
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
