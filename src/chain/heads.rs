//! The chain's new heads, as `newHeads` subscribers get them: every block the canonical
//! window takes in (`chain::follow`), in height order, each once. A block that replaces
//! another at its height (a reorg) is a new head too, as geth sends it; the same block seen
//! again is not.
//!
//! Written by hand: the subscribers' stream is built from Manifold's own view of the chain
//! (the robust head, blocks linked by parent hash), never passed through from one upstream
//! subscription, so that losing an upstream costs a subscriber nothing. A tokio broadcast
//! channel carries each head to every client socket once; a socket that falls behind it is
//! closed (`crate::ws`), never silently skipped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use metrics::Counter;
use tokio::sync::broadcast;

use crate::family::BlockRef;
use crate::health::canonical::CAPACITY;

/// Heads waiting for the slowest socket's task: more than a backfill of the whole window.
const CHANNEL: usize = 1024;

/// One new head: the block, and its header as a notification's `result`.
#[derive(Debug)]
pub struct NewHead {
    pub block: BlockRef,
    pub header: Bytes,
}

#[derive(Debug)]
pub struct HeadFeed {
    tx: broadcast::Sender<Arc<NewHead>>,
    /// The hash sent at each recent height, so that no block goes out twice.
    sent: Mutex<BTreeMap<u64, String>>,
    backfilled: Counter,
    /// Receivers the chain holds itself (the logs feed): not a client's.
    own: AtomicUsize,
}

/// A receiver the chain holds itself, not counted as a client's (`HeadFeed::clients`).
#[derive(Debug)]
pub struct OwnReceiver<'a> {
    pub rx: broadcast::Receiver<Arc<NewHead>>,
    feed: &'a HeadFeed,
}

impl Drop for OwnReceiver<'_> {
    fn drop(&mut self) {
        self.feed.own.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HeadFeed {
    pub fn new(backfilled: Counter) -> Self {
        Self {
            tx: broadcast::channel(CHANNEL).0,
            sent: Mutex::new(BTreeMap::new()),
            backfilled,
            own: AtomicUsize::new(0),
        }
    }

    /// The heads from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NewHead>> {
        self.tx.subscribe()
    }

    /// The heads from now on, for the chain itself.
    pub(super) fn subscribe_own(&self) -> OwnReceiver<'_> {
        self.own.fetch_add(1, Ordering::Relaxed);
        OwnReceiver {
            rx: self.tx.subscribe(),
            feed: self,
        }
    }

    /// Whether a client listens (a subscriber's socket), not just the chain itself.
    pub fn clients(&self) -> bool {
        self.tx.receiver_count() > self.own.load(Ordering::Relaxed)
    }

    /// Whether any socket listens (a block's header is made only then).
    pub fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publish the blocks one round of the follower took in (any order; `head`: the chain
    /// head it followed to), each once, lowest first; their hashes are returned (for the
    /// block filters). `header` makes a block's notification; a block it cannot make one
    /// for is skipped with a warning.
    pub fn publish(
        &self,
        mut blocks: Vec<(BlockRef, Bytes)>,
        head: u64,
        header: impl Fn(&[u8]) -> Option<Bytes>,
    ) -> Vec<String> {
        blocks.sort_by_key(|(b, _)| b.number);
        // One per height: the last taken in.
        blocks.reverse();
        blocks.dedup_by_key(|(b, _)| b.number);
        blocks.reverse();
        let listened = self.listened();
        let mut published = Vec::new();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        for (block, raw) in blocks {
            match sent.get(&block.number) {
                Some(h) if *h == block.hash => continue,
                // Another block at a height already sent: what was sent above it is of the
                // old branch.
                Some(_) => {
                    sent.split_off(&block.number);
                }
                None => {}
            }
            if let Some(prev) = block.number.checked_sub(1).and_then(|p| sent.get(&p)) {
                if *prev != block.parent {
                    tracing::warn!(
                        number = block.number,
                        "new head not linked to the one sent below it"
                    );
                }
            }
            sent.insert(block.number, block.hash.clone());
            while sent.len() > CAPACITY {
                sent.pop_first();
            }
            if block.number < head {
                self.backfilled.increment(1);
            }
            published.push(block.hash.clone());
            if !listened {
                continue;
            }
            let Some(header) = header(&raw) else {
                tracing::warn!(
                    number = block.number,
                    "a new head without a usable header: not sent"
                );
                continue;
            };
            // No receiver left is no error: the next socket subscribes afresh.
            let _ = self.tx.send(Arc::new(NewHead { block, header }));
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(number: u64, hash: &str, parent: &str) -> (BlockRef, Bytes) {
        (
            BlockRef {
                number,
                hash: hash.into(),
                parent: parent.into(),
            },
            Bytes::from(format!(r#"{{"number":{number}}}"#)),
        )
    }

    fn drain(rx: &mut broadcast::Receiver<Arc<NewHead>>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(h) = rx.try_recv() {
            out.push(h.block.hash.clone());
        }
        out
    }

    #[test]
    fn heads_go_out_in_order_once_and_a_replacement_is_new() {
        let feed = HeadFeed::new(Counter::noop());
        let mut rx = feed.subscribe();
        let keep = |raw: &[u8]| Some(Bytes::copy_from_slice(raw));
        feed.publish(
            vec![b(12, "a12", "a11"), b(10, "a10", "a9"), b(11, "a11", "a10")],
            12,
            keep,
        );
        assert_eq!(drain(&mut rx), ["a10", "a11", "a12"]);
        // The head seen again: nothing.
        feed.publish(vec![b(12, "a12", "a11")], 12, keep);
        assert!(drain(&mut rx).is_empty());
        // A reorg from 12: the new branch, lowest first; 11 is unchanged.
        feed.publish(
            vec![
                b(13, "b13", "b12"),
                b(12, "b12", "a11"),
                b(11, "a11", "a10"),
            ],
            13,
            keep,
        );
        assert_eq!(drain(&mut rx), ["b12", "b13"]);
        // Back to the old branch at 12: it is new again.
        feed.publish(vec![b(12, "a12", "a11")], 12, keep);
        assert_eq!(drain(&mut rx), ["a12"]);
    }

    #[test]
    fn without_listeners_nothing_is_made_but_heads_are_remembered() {
        let feed = HeadFeed::new(Counter::noop());
        feed.publish(vec![b(1, "a1", "a0")], 1, |_| {
            panic!("no header without a listener")
        });
        let mut rx = feed.subscribe();
        feed.publish(vec![b(1, "a1", "a0"), b(2, "a2", "a1")], 2, |r| {
            Some(Bytes::copy_from_slice(r))
        });
        assert_eq!(
            drain(&mut rx),
            ["a2"],
            "block 1 went out before anyone listened"
        );
        for n in 3..(CAPACITY as u64 * 2) {
            feed.publish(vec![b(n, &format!("a{n}"), "")], n, |_| None);
        }
        assert_eq!(feed.sent.lock().unwrap().len(), CAPACITY);
    }
}
