//! The chain's side of its upstream sockets (`upstream::socket`): what it needs of them
//! (kept open while a client subscribes or holds a filter, pending transactions while one
//! wants them), and what it does with what they tell: a head is one more reading of that
//! upstream's head, and the chain head is computed again at once, so that the follower
//! (`chain::follow`) takes the block in without waiting for the next probe; a pending
//! transaction goes, once, to the subscribers and filters (`chain::pending`).

use std::sync::Arc;

use tokio::sync::watch;

use super::core::ChainCore;
use crate::upstream::socket::{self, SocketHooks, Timing, Wants};
use crate::upstream::Upstream;

struct Hooks {
    core: Arc<ChainCore>,
    upstream: Arc<Upstream>,
}

impl SocketHooks for Hooks {
    fn wants(&self) -> Wants {
        let c = &self.core;
        let pending = c.pending.listened() || c.filters.wants_pending();
        Wants {
            any: pending || c.heads.clients() || c.logs.listened() || c.filters.any(),
            pending,
        }
    }

    fn polled_head(&self) -> Option<u64> {
        self.upstream.active().probed_head()
    }

    fn head(&self, number: u64) {
        self.upstream.active().set_socket_head(Some(number));
        self.core.health.refresh_head();
    }

    fn pending(&self, hash: String) {
        if let Some(hash) = self.core.pending.offer(hash) {
            self.core.filters.on_pending(&hash);
        }
    }
}

/// Keep `upstream`'s socket while clients need it, until `stop`.
pub(super) async fn run(
    core: Arc<ChainCore>,
    upstream: Arc<Upstream>,
    timing: Timing,
    stop: watch::Receiver<bool>,
) {
    let family = core.family.clone();
    let Some(push) = family.push() else {
        return;
    };
    let hooks = Hooks {
        core,
        upstream: upstream.clone(),
    };
    socket::keep(&upstream, push, &hooks, timing, stop).await;
}
