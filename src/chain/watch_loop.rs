//! The transaction watch's rounds: on each new chain head, and after a health interval
//! without one (a stalled chain still needs its transactions sent again).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::core::ChainCore;

pub(super) async fn run(chain: Arc<ChainCore>, mut stop: watch::Receiver<bool>) {
    let Some(watch) = chain.watch.clone() else {
        return;
    };
    let interval = chain.config.policy.health.interval;
    // Heads change on probes; looking more often than a second costs an atomic read.
    let tick = interval.min(std::time::Duration::from_secs(1));
    // Rounds start once the first probes have set the head (watched transactions resumed
    // from the store are checked then).
    let mut last_head = None;
    let mut last_round = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let head = chain.head();
        if head.is_none() || (head == last_head && last_round.elapsed() < interval) {
            continue;
        }
        last_head = head;
        last_round = Instant::now();
        let route = chain.watch_route();
        tokio::select! {
            () = watch.round(&chain.upstreams, &route) => {}
            _ = stop.changed() => return,
        }
    }
}
