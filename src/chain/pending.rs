//! The chain's pending transactions, as `newPendingTransactions` subscribers and pending
//! filters get them: the hashes every upstream socket tells (`upstream::socket`), merged,
//! each once. The same transaction reaches many nodes, and so several sockets: the hashes
//! of the last `REMEMBERED` are kept to tell a new one from one told already.
//!
//! Only while some socket is open: a pending transaction is a node's pool's news, which no
//! probe asks for. With no upstream socket up, pending subscribers hear nothing (and say
//! so in the README).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use metrics::Counter;
use tokio::sync::broadcast;

/// Hashes remembered to drop duplicates: about 8 MiB at most, many minutes of a busy
/// mainnet pool.
const REMEMBERED: usize = 65_536;
/// Hashes waiting for the slowest socket's task; one that falls further behind is closed
/// as a slow client.
const CHANNEL: usize = 4096;

#[derive(Debug)]
pub struct PendingFeed {
    tx: broadcast::Sender<Arc<str>>,
    seen: Mutex<Recent>,
    new: Counter,
    duplicate: Counter,
}

#[derive(Debug, Default)]
struct Recent {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl PendingFeed {
    pub fn new(new: Counter, duplicate: Counter) -> Self {
        Self {
            tx: broadcast::channel(CHANNEL).0,
            seen: Mutex::new(Recent::default()),
            new,
            duplicate,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Whether any socket listens.
    pub fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A hash an upstream told (lower case): sent on, and returned, when it is new.
    pub fn offer(&self, hash: String) -> Option<Arc<str>> {
        let hash: Arc<str> = Arc::from(hash);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !seen.set.insert(hash.clone()) {
                self.duplicate.increment(1);
                return None;
            }
            seen.order.push_back(hash.clone());
            if seen.order.len() > REMEMBERED {
                if let Some(old) = seen.order.pop_front() {
                    seen.set.remove(&old);
                }
            }
        }
        self.new.increment(1);
        if self.listened() {
            // No receiver left is no error.
            let _ = self.tx.send(hash.clone());
        }
        Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hash_once_and_memory_bounded() {
        let feed = PendingFeed::new(Counter::noop(), Counter::noop());
        let mut rx = feed.subscribe();
        assert!(feed.offer("0xa".into()).is_some());
        assert!(
            feed.offer("0xa".into()).is_none(),
            "told by a second socket"
        );
        assert!(feed.offer("0xb".into()).is_some());
        assert_eq!(&*rx.try_recv().unwrap(), "0xa");
        assert_eq!(&*rx.try_recv().unwrap(), "0xb");
        assert!(rx.try_recv().is_err());
        for i in 0..REMEMBERED + 10 {
            feed.offer(format!("0x{i:x}"));
        }
        let seen = feed.seen.lock().unwrap();
        assert_eq!(seen.set.len(), REMEMBERED);
        assert_eq!(seen.order.len(), REMEMBERED);
    }
}
