//! The silence watchdog of an upstream socket: a socket can stay open and answer pings
//! while its subscription has stopped delivering (a provider's gateway that lost its node,
//! a node stuck on a subscription). The upstream's own polled head says so: when it has
//! moved past the last head the socket told, and stays past it for `stale_after`, the
//! socket is opened again. Comparing with the upstream's own head, not the chain head,
//! keeps a node that is merely behind (its socket delivering its own, older heads) from
//! being reconnected for nothing.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct StaleWatch {
    stale_after: Duration,
    /// The polled head when the socket opened: before its first head, the socket is behind
    /// only once the upstream has moved past this.
    baseline: Option<u64>,
    behind_since: Option<Instant>,
}

impl StaleWatch {
    pub fn new(stale_after: Duration, polled_at_open: Option<u64>) -> Self {
        Self {
            stale_after,
            baseline: polled_at_open,
            behind_since: None,
        }
    }

    /// Whether the socket is stale now: `polled`, the upstream's last probed head;
    /// `told`, the last head its socket told.
    pub fn is_stale(&mut self, polled: Option<u64>, told: Option<u64>, now: Instant) -> bool {
        if self.baseline.is_none() {
            // Opened before the first probe: judged from the first polled head on.
            self.baseline = polled;
        }
        let behind = match (polled, told.or(self.baseline)) {
            (Some(p), Some(r)) => p > r,
            _ => false,
        };
        if !behind {
            self.behind_since = None;
            return false;
        }
        let since = *self.behind_since.get_or_insert(now);
        now.duration_since(since) >= self.stale_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_only_after_the_polled_head_stays_ahead() {
        let t0 = Instant::now();
        let s = Duration::from_secs(30);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut w = StaleWatch::new(s, Some(100));
        assert!(!w.is_stale(Some(100), None, at(0)), "nothing new yet");
        assert!(!w.is_stale(Some(101), None, at(1)), "behind, not for long");
        assert!(!w.is_stale(Some(101), Some(101), at(20)), "caught up");
        assert!(!w.is_stale(Some(102), Some(101), at(21)));
        assert!(!w.is_stale(Some(103), Some(101), at(50)), "29 s behind");
        assert!(w.is_stale(Some(103), Some(101), at(51)), "30 s behind");
        let mut lagging = StaleWatch::new(s, Some(50));
        for t in 0..100 {
            // A node behind the chain whose socket tells its own heads is not stale.
            assert!(!lagging.is_stale(Some(50 + t), Some(50 + t), at(t)));
        }
        let mut unknown = StaleWatch::new(s, None);
        assert!(!unknown.is_stale(None, None, at(100)));
        assert!(
            !unknown.is_stale(Some(5), None, at(200)),
            "the first polled head"
        );
        assert!(!unknown.is_stale(Some(6), None, at(201)));
        assert!(
            unknown.is_stale(Some(7), None, at(231)),
            "nothing told since"
        );
    }
}
