//! Following the chain's newest blocks into the canonical window (`health::canonical`): on
//! each new chain head, and once a health interval at the same head (a reorg may replace the
//! head block without a new height), the new blocks are asked for by number, each checked by
//! its parent link, walking back to where a branch joins. A reorg drops the cache's answers
//! about blocks from its height up, and is counted and logged.
//!
//! The blocks a round takes in are the chain's new heads (`chain::heads`), for `newHeads`
//! subscribers: in height order, each linked to its parent, once.
//!
//! What the window says is Manifold's own view, as fresh as its health probes: a reorg is
//! seen within a health interval of the probe that sees its head.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::core::ChainCore;
use super::head_ticks::HeadTicks;
use crate::family::BlockRef;
use crate::health::canonical::{Recorded, CAPACITY};

/// Upstreams asked for one block before the round gives up (the next round asks again).
const ASK_TRIES: usize = 2;

pub(super) async fn run(core: Arc<ChainCore>, mut stop: watch::Receiver<bool>) {
    let mut ticks = HeadTicks::new(&core);
    while ticks.next(&core, &mut stop).await {
        tokio::select! {
            () = core.follow() => {}
            _ = stop.changed() => return,
        }
    }
}

impl ChainCore {
    /// One round: the blocks from the window's tip to the chain head, the head block again.
    pub(super) async fn follow(&self) {
        let Some(head) = self.head() else {
            return;
        };
        let window = &self.health.canonical;
        let tip_before = window.tip();
        let start = match tip_before {
            Some(tip) if tip < head => (tip + 1).max(head.saturating_sub(CAPACITY as u64 - 1)),
            _ => head,
        };
        let floor = self.finalized().unwrap_or(0);
        let mut reorg_from: Option<u64> = None;
        // What this round took in, for the new heads' subscribers.
        let mut fresh = Vec::new();
        'round: for number in start..=head {
            let Some((block, raw)) = self.block(number).await else {
                break;
            };
            let (mut recorded, from) = window.record_head(block.clone());
            note(&mut reorg_from, from);
            fresh.push((block, raw));
            // Walk back along the new blocks' parents until they join the window.
            let mut below = number;
            while recorded == Recorded::NeedParent
                && below > floor
                && below + CAPACITY as u64 > head
            {
                below -= 1;
                let Some((parent, raw)) = self.block(below).await else {
                    // Not linked yet: forget the blocks of this walk, so that the next
                    // round asks for them again rather than leave a hole under them.
                    window.forget_from(below + 1);
                    fresh.retain(|(b, _)| b.number <= below);
                    break 'round;
                };
                let (r, from) = window.record_parent(parent.clone());
                note(&mut reorg_from, from);
                fresh.push((parent, raw));
                recorded = r;
            }
        }
        let family = &self.family;
        let published = self
            .heads
            .publish(fresh, head, |raw| family.head_notification(raw));
        self.filters.on_blocks(&published);
        if let Some(from) = reorg_from {
            self.metrics.record_reorg();
            tracing::info!(chain = %self.config.name, from, head, "reorg: answers about blocks from here dropped from the cache");
            if let Some(cache) = &self.cache.memory {
                cache.drop_recent_from(from);
            }
        }
        if let (Some(cache), Some(tip)) = (&self.cache.memory, window.tip()) {
            if tip_before.is_some_and(|t| t < tip) {
                // Reads at `latest` were about the old head.
                cache.drop_latest_below(tip);
            }
        }
        if let Some(f) = self.finalized() {
            window.prune_to(f);
        }
    }

    /// Block `number`'s hash and parent (and the whole answer), from an upstream that has
    /// it (`ask_about_block`).
    async fn block(&self, number: u64) -> Option<(BlockRef, Bytes)> {
        let call = self.family.block_ref_call(number)?;
        self.ask_about_block(number, &call, ASK_TRIES, |r| {
            self.family
                .parse_block_ref(r)
                .filter(|b| b.number == number)
                .map(|b| (b, r.clone()))
        })
        .await
    }
}

fn note(reorg_from: &mut Option<u64>, from: Option<u64>) {
    if let Some(f) = from {
        *reorg_from = Some(reorg_from.map_or(f, |r| r.min(f)));
    }
}
