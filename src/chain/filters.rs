//! Filters the chain serves itself (`eth_newFilter`, `eth_newBlockFilter`,
//! `eth_newPendingTransactionFilter`, polled with `eth_getFilterChanges`): a filter made on one node and polled through a proxy lands on
//! another node that never made it ("filter not found"), and clients that watch events
//! over HTTP (viem's `watchContractEvent`, ethers' `contract.on`) lose events. A filter
//! here is Manifold's own: its own id, its changes taken from the chain's new heads and
//! their shared logs (`chain::heads`, `chain::log_feed`), so it survives the loss of any
//! upstream, with no gap, no duplicate, and reorgs told (`removed: true`).
//!
//! Bounded: at most `filters.max` filters, each holding at most `filters.max_changes`
//! changes between polls (one that would hold more is dropped, and its next poll gets the
//! node's "filter not found"), and one not polled for `filters.expire_after` is dropped,
//! as geth drops it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use metrics::Gauge;
use tokio::time::Instant;

use super::log_feed::LogBatch;
use crate::config::FilterPolicy;
use crate::family::LogFilter;

/// What a filter collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKind {
    /// The hashes of new blocks.
    Blocks,
    /// The hashes of new pending transactions (told by the upstream sockets).
    Pending,
    /// Logs that match `filter` in blocks `from..=to`; `query` is the filter object as the
    /// client sent it, for `eth_getFilterLogs`.
    Logs {
        filter: LogFilter,
        from: Option<u64>,
        to: Option<u64>,
        query: Bytes,
    },
}

#[derive(Debug)]
struct Filter {
    kind: FilterKind,
    /// JSON values to answer the next poll with.
    changes: VecDeque<Bytes>,
    polled: Instant,
}

#[derive(Debug)]
pub struct FilterStore {
    policy: FilterPolicy,
    filters: Mutex<HashMap<String, Filter>>,
    /// Logs filters held: the log feed asks for logs while there is one.
    log_filters: AtomicUsize,
    /// Pending filters held: the upstream sockets subscribe to pending transactions while
    /// there is one.
    pending_filters: AtomicUsize,
    /// Filters held, any kind: the upstream sockets stay open while there is one.
    count: AtomicUsize,
    held: Gauge,
}

impl FilterStore {
    pub fn new(policy: FilterPolicy, held: Gauge) -> Self {
        Self {
            policy,
            filters: Mutex::new(HashMap::new()),
            log_filters: AtomicUsize::new(0),
            pending_filters: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            held,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Filter>> {
        self.filters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new filter's id; `None` when `filters.max` are held.
    pub fn create(&self, kind: FilterKind) -> Option<String> {
        let mut filters = self.lock();
        self.expire(&mut filters);
        if filters.len() >= self.policy.max {
            return None;
        }
        let id = format!("0x{:032x}", fastrand::u128(..));
        match kind {
            FilterKind::Logs { .. } => self.log_filters.fetch_add(1, Ordering::Relaxed),
            FilterKind::Pending => self.pending_filters.fetch_add(1, Ordering::Relaxed),
            FilterKind::Blocks => 0,
        };
        filters.insert(
            id.clone(),
            Filter {
                kind,
                changes: VecDeque::new(),
                polled: Instant::now(),
            },
        );
        self.count.store(filters.len(), Ordering::Relaxed);
        self.held.set(filters.len() as f64);
        Some(id)
    }

    /// The changes since the last poll (taken); `None` for an id not held here.
    pub fn changes(&self, id: &str) -> Option<Vec<Bytes>> {
        let mut filters = self.lock();
        self.expire(&mut filters);
        let f = filters.get_mut(&id.to_ascii_lowercase())?;
        f.polled = Instant::now();
        Some(f.changes.drain(..).collect())
    }

    /// A logs filter's object as the client sent it.
    pub fn logs_query(&self, id: &str) -> Option<Bytes> {
        let mut filters = self.lock();
        let f = filters.get_mut(&id.to_ascii_lowercase())?;
        f.polled = Instant::now();
        match &f.kind {
            FilterKind::Logs { query, .. } => Some(query.clone()),
            FilterKind::Blocks | FilterKind::Pending => None,
        }
    }

    /// Drop a filter; `false` for an id not held here.
    pub fn uninstall(&self, id: &str) -> bool {
        let mut filters = self.lock();
        let removed = filters.remove(&id.to_ascii_lowercase());
        self.dropped(&filters, removed.as_ref());
        removed.is_some()
    }

    /// Whether some logs filter is held.
    pub fn wants_logs(&self) -> bool {
        self.log_filters.load(Ordering::Relaxed) > 0
    }

    /// Whether some pending filter is held.
    pub fn wants_pending(&self) -> bool {
        self.pending_filters.load(Ordering::Relaxed) > 0
    }

    /// Whether any filter is held.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// A new pending transaction: each pending filter gets its hash.
    pub fn on_pending(&self, hash: &str) {
        if !self.wants_pending() {
            return;
        }
        let mut filters = self.lock();
        let max = self.policy.max_changes;
        let json = Bytes::from(format!("\"{hash}\""));
        self.each(&mut filters, |f| {
            if f.kind == FilterKind::Pending {
                f.changes.push_back(json.clone());
            }
            f.changes.len() <= max
        });
    }

    /// New blocks, lowest first: each block filter gets their hashes.
    pub fn on_blocks(&self, hashes: &[String]) {
        let mut filters = self.lock();
        self.expire(&mut filters);
        if hashes.is_empty() {
            return;
        }
        let max = self.policy.max_changes;
        self.each(&mut filters, |f| {
            if f.kind != FilterKind::Blocks {
                return true;
            }
            for h in hashes {
                f.changes.push_back(Bytes::from(format!("\"{h}\"")));
            }
            f.changes.len() <= max
        });
    }

    /// A block's logs (new, or removed by a reorg): each logs filter gets those it matches.
    pub fn on_logs(&self, batch: &LogBatch) {
        if !self.wants_logs() || batch.logs.is_empty() {
            return;
        }
        let mut filters = self.lock();
        let max = self.policy.max_changes;
        self.each(&mut filters, |f| {
            let FilterKind::Logs {
                filter, from, to, ..
            } = &f.kind
            else {
                return true;
            };
            if from.is_some_and(|from| batch.block < from) || to.is_some_and(|to| batch.block > to)
            {
                return true;
            }
            for log in batch.logs.iter().filter(|l| filter.matches(l)) {
                f.changes.push_back(log.json.clone());
            }
            f.changes.len() <= max
        });
    }

    /// Apply `keep` to every filter; those it says `false` for (too many changes) are
    /// dropped.
    fn each(
        &self,
        filters: &mut HashMap<String, Filter>,
        mut keep: impl FnMut(&mut Filter) -> bool,
    ) {
        let mut over = Vec::new();
        for (id, f) in filters.iter_mut() {
            if !keep(f) {
                over.push(id.clone());
            }
        }
        for id in over {
            tracing::info!(filter = %id, max_changes = self.policy.max_changes, "a filter not polled often enough was dropped");
            let removed = filters.remove(&id);
            self.dropped(filters, removed.as_ref());
        }
    }

    /// Drop the filters not polled within `expire_after`.
    fn expire(&self, filters: &mut HashMap<String, Filter>) {
        let expire_after = self.policy.expire_after;
        let expired: Vec<String> = filters
            .iter()
            .filter(|(_, f)| f.polled.elapsed() > expire_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let removed = filters.remove(&id);
            self.dropped(filters, removed.as_ref());
        }
    }

    fn dropped(&self, filters: &HashMap<String, Filter>, removed: Option<&Filter>) {
        match removed.map(|f| &f.kind) {
            Some(FilterKind::Logs { .. }) => {
                self.log_filters.fetch_sub(1, Ordering::Relaxed);
            }
            Some(FilterKind::Pending) => {
                self.pending_filters.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.count.store(filters.len(), Ordering::Relaxed);
        self.held.set(filters.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::Log;

    fn store(max: usize, max_changes: usize) -> FilterStore {
        FilterStore::new(
            FilterPolicy {
                max,
                expire_after: std::time::Duration::from_secs(300),
                max_changes,
            },
            Gauge::noop(),
        )
    }

    fn log(address: &str, json: &'static str) -> Log {
        Log {
            address: address.into(),
            topics: Vec::new(),
            json: Bytes::from_static(json.as_bytes()),
        }
    }

    fn logs_filter(address: &str, from: Option<u64>) -> FilterKind {
        FilterKind::Logs {
            filter: LogFilter {
                addresses: vec![address.into()],
                topics: Vec::new(),
            },
            from,
            to: None,
            query: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn changes_are_taken_once_and_filters_are_bounded() {
        let s = store(2, 3);
        let blocks = s.create(FilterKind::Blocks).unwrap();
        let logs = s.create(logs_filter("0xa", Some(5))).unwrap();
        assert!(s.create(FilterKind::Blocks).is_none(), "max filters");
        assert!(s.wants_logs());
        s.on_blocks(&["0x1".into(), "0x2".into()]);
        s.on_logs(&LogBatch {
            block: 4,
            removed: false,
            logs: vec![log("0xa", "{\"early\":1}")],
        });
        s.on_logs(&LogBatch {
            block: 5,
            removed: false,
            logs: vec![log("0xa", "{\"n\":1}"), log("0xb", "{\"n\":2}")],
        });
        assert_eq!(s.changes(&blocks).unwrap(), ["\"0x1\"", "\"0x2\""]);
        assert!(s.changes(&blocks).unwrap().is_empty(), "taken");
        assert_eq!(
            s.changes(&logs.to_uppercase().replace("0X", "0x")).unwrap(),
            ["{\"n\":1}"]
        );
        assert_eq!(s.logs_query(&logs).unwrap(), "{}");
        // Four changes before a poll: over max_changes, the filter is dropped.
        s.on_blocks(&["0x3".into(), "0x4".into(), "0x5".into(), "0x6".into()]);
        assert!(s.changes(&blocks).is_none());
        assert!(s.uninstall(&logs));
        assert!(!s.uninstall(&logs));
        assert!(!s.wants_logs());
    }

    #[test]
    fn pending_filters_get_each_hash() {
        let s = store(10, 10);
        assert!(!s.any());
        s.on_pending("0x1");
        let p = s.create(FilterKind::Pending).unwrap();
        let b = s.create(FilterKind::Blocks).unwrap();
        assert!(s.wants_pending() && s.any());
        s.on_pending("0x2");
        s.on_pending("0x3");
        assert_eq!(s.changes(&p).unwrap(), ["\"0x2\"", "\"0x3\""]);
        assert!(s.changes(&b).unwrap().is_empty());
        assert!(s.logs_query(&p).is_none());
        assert!(s.uninstall(&p));
        assert!(!s.wants_pending());
        assert!(s.uninstall(&b));
        assert!(!s.any());
    }

    #[tokio::test(start_paused = true)]
    async fn a_filter_not_polled_expires() {
        let s = store(10, 10);
        let a = s.create(FilterKind::Blocks).unwrap();
        let b = s.create(FilterKind::Blocks).unwrap();
        tokio::time::advance(std::time::Duration::from_secs(200)).await;
        assert!(s.changes(&a).is_some());
        tokio::time::advance(std::time::Duration::from_secs(200)).await;
        s.on_blocks(&[]);
        assert!(s.changes(&a).is_some(), "polled 200 s ago");
        assert!(s.changes(&b).is_none(), "not polled for 400 s");
    }
}
