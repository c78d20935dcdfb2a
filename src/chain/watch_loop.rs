//! The transaction watch's rounds: on each new chain head, and after a health interval
//! without one (a stalled chain still needs its transactions sent again).

use std::sync::Arc;

use tokio::sync::watch;

use super::core::ChainCore;
use super::head_ticks::HeadTicks;

pub(super) async fn run(chain: Arc<ChainCore>, mut stop: watch::Receiver<bool>) {
    let Some(watch) = chain.watch.clone() else {
        return;
    };
    // Watched transactions resumed from the store are checked once the first probes have
    // set the head.
    let mut ticks = HeadTicks::new(&chain);
    while ticks.next(&chain, &mut stop).await {
        let route = chain.watch_route();
        tokio::select! {
            () = watch.round(&chain.upstreams, &route) => {}
            _ = stop.changed() => return,
        }
    }
}
