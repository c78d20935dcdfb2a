//! When a chain's background rounds run (the transaction watch, the canonical window): on
//! each new chain head, and after a health interval without one (a stalled chain still
//! needs its transactions sent again; a reorg may replace the head block at its height).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::core::ChainCore;

pub(super) struct HeadTicks {
    interval: Duration,
    last_head: Option<u64>,
    last_round: Instant,
}

impl HeadTicks {
    pub(super) fn new(core: &ChainCore) -> Self {
        Self {
            interval: core.config.policy.health.interval,
            // Rounds start once the first probes have set the head.
            last_head: None,
            last_round: Instant::now(),
        }
    }

    /// Wait until the next round is due; `false` once `stop` has turned true.
    pub(super) async fn next(
        &mut self,
        core: &ChainCore,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        // Heads change on probes; looking more often than a second costs an atomic read.
        let tick = self.interval.min(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                // A sender gone is a stop too (else `changed` answers at once, forever).
                changed = stop.changed() => if changed.is_err() {
                    return false;
                },
            }
            if *stop.borrow() {
                return false;
            }
            let head = core.head();
            if head.is_none()
                || (head == self.last_head && self.last_round.elapsed() < self.interval)
            {
                continue;
            }
            self.last_head = head;
            self.last_round = Instant::now();
            return true;
        }
    }
}
