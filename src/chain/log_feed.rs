//! The logs of the chain's new blocks, for `logs` subscribers: for each new head
//! (`chain::heads`), one `eth_getLogs` by block hash, shared by every subscriber (each
//! applies its own filter), from an upstream whose head reached the block. An error, or an
//! empty answer while the header's bloom says the block has logs (a node that lacks the
//! block), is asked of the next upstream, and the block is asked again until found: no
//! block is skipped while it is canonical.
//!
//! A reorg: the logs sent for the blocks it replaced are sent again with `removed: true`,
//! highest block first, before the new branch's, as geth does (anvil 1.7.1 never sends
//! them: this is Manifold's own).
//!
//! Written by hand for the same reason as `chain::heads`: the stream is built from
//! Manifold's view of the chain, not passed through from one upstream's subscription.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::core::ChainCore;
use super::filters::FilterStore;
use super::heads::NewHead;
use crate::family::Log;
use crate::health::canonical::CAPACITY;

/// Batches waiting for the slowest socket's task.
const CHANNEL: usize = 1024;

/// The logs kept of recent blocks, to send them again as removed after a reorg.
const KEPT_BYTES: usize = 16 * 1024 * 1024;

/// The logs of one block, new or removed (each log's JSON says `removed` accordingly).
#[derive(Debug)]
pub struct LogBatch {
    pub block: u64,
    pub removed: bool,
    pub logs: Vec<Log>,
}

#[derive(Debug)]
pub struct LogFeed {
    tx: broadcast::Sender<Arc<LogBatch>>,
}

impl Default for LogFeed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CHANNEL).0,
        }
    }
}

impl LogFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogBatch>> {
        self.tx.subscribe()
    }

    /// Whether any socket listens.
    pub fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Give `batch` to the filters and the subscribers; it is returned for keeping.
    fn send(&self, batch: LogBatch, filters: &FilterStore) -> Arc<LogBatch> {
        filters.on_logs(&batch);
        let batch = Arc::new(batch);
        if !batch.logs.is_empty() && self.listened() {
            // No receiver left is no error.
            let _ = self.tx.send(batch.clone());
        }
        batch
    }
}

/// The logs sent for recent blocks, by height: bounded by `CAPACITY` blocks and
/// `KEPT_BYTES`.
#[derive(Debug, Default)]
struct Kept {
    blocks: BTreeMap<u64, Arc<LogBatch>>,
    bytes: usize,
}

impl Kept {
    fn insert(&mut self, batch: Arc<LogBatch>) {
        self.bytes += size(&batch.logs);
        self.blocks.insert(batch.block, batch);
        while self.blocks.len() > CAPACITY || self.bytes > KEPT_BYTES {
            let Some((_, batch)) = self.blocks.pop_first() else {
                break;
            };
            self.bytes -= size(&batch.logs);
        }
    }

    /// The blocks at and above `number`, highest first, taken out.
    fn take_from(&mut self, number: u64) -> Vec<Arc<LogBatch>> {
        let mut out: Vec<Arc<LogBatch>> = self.blocks.split_off(&number).into_values().collect();
        self.bytes -= out.iter().map(|b| size(&b.logs)).sum::<usize>();
        out.reverse();
        out
    }
}

fn size(logs: &[Log]) -> usize {
    logs.iter().map(|l| l.json.len() + 64).sum()
}

pub(super) async fn run(core: Arc<ChainCore>, mut stop: watch::Receiver<bool>) {
    let mut heads = core.heads.subscribe_own();
    let mut kept = Kept::default();
    loop {
        let head = tokio::select! {
            h = heads.rx.recv() => h,
            _ = stop.changed() => return,
        };
        match head {
            Ok(head) => {
                if !core.take_logs(&head, &mut kept, &mut stop).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(chain = %core.config.name, blocks = n, "logs subscribers missed the logs of blocks: their upstreams could not be asked fast enough");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl ChainCore {
    /// Send the logs of `head` (and, after a reorg, those it replaced as removed); `false`
    /// once `stop` has turned true.
    async fn take_logs(
        &self,
        head: &NewHead,
        kept: &mut Kept,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let number = head.block.number;
        for sent in kept.take_from(number) {
            let logs = sent
                .logs
                .iter()
                .map(|l| Log {
                    json: l.removed_json(),
                    ..l.clone()
                })
                .collect();
            self.logs.send(
                LogBatch {
                    block: sent.block,
                    removed: true,
                    logs,
                },
                &self.filters,
            );
        }
        let call = match self.family.block_logs_call(&head.block.hash) {
            Some(c) if self.logs.listened() || self.filters.wants_logs() => c,
            // Nobody listens: nothing to send now, nor to remove later.
            _ => return true,
        };
        let mut pause = Duration::from_millis(200);
        let logs = loop {
            let found = self
                .ask_about_block(number, &call, usize::MAX, |r| {
                    self.family.parse_block_logs(r, &head.header)
                })
                .await;
            if let Some(logs) = found {
                break logs;
            }
            if self
                .health
                .canonical
                .hash_at(number)
                .is_some_and(|h| h != head.block.hash)
            {
                // Replaced before its logs were found: its replacement is a new head.
                return true;
            }
            tracing::debug!(chain = %self.config.name, number, "no upstream has the logs of a new block yet: asking again");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return false,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        let sent = self.logs.send(
            LogBatch {
                block: number,
                removed: false,
                logs,
            },
            &self.filters,
        );
        kept.insert(sent);
        true
    }
}
