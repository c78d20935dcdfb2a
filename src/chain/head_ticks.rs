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
    moves: watch::Receiver<u64>,
}

impl HeadTicks {
    pub(super) fn new(core: &ChainCore) -> Self {
        Self {
            interval: core.config.policy.health.interval,
            // Rounds start once the first probes have set the head.
            last_head: None,
            last_round: Instant::now(),
            moves: core.health.head.moves(),
        }
    }

    /// Wait until the next round is due; `false` once `stop` has turned true.
    pub(super) async fn next(
        &mut self,
        core: &ChainCore,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            let head = core.head();
            let due = self.last_round + self.interval;
            if head.is_some() && (head != self.last_head || Instant::now() >= due) {
                self.last_head = head;
                self.last_round = Instant::now();
                // What moved before now is in this round.
                self.moves.borrow_and_update();
                return true;
            }
            // No head yet: the first probes (or a move) set it.
            let until = if head.is_none() {
                Instant::now() + self.interval
            } else {
                due
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                // The head moved (a probe or a socket told a new one).
                moved = self.moves.changed() => if moved.is_err() {
                    return false;
                },
                // A sender gone is a stop too (else `changed` answers at once, forever).
                changed = stop.changed() => if changed.is_err() {
                    return false;
                },
            }
        }
    }
}
