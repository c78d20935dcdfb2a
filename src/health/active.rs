//! Active health: what the health checker's probes say about an upstream.
//!
//! The checker (`crate::chain::checker`) is the only writer; requests read the status and
//! head from atomics. Probe results go through [`Hysteresis`], so one failed probe does not
//! take an upstream out and one good probe does not bring it back, except that a wrong chain
//! id takes it out at once: that is a configuration error, not a blip.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use super::Hysteresis;
use crate::family::ProbeVerdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthStatus {
    /// Not probed yet. Not used: its chain id is not known to be right. Requests that find
    /// no healthy upstream while some are still unknown wait for their first probe.
    Unknown = 0,
    Healthy = 1,
    /// Probes fail (timeouts, errors, garbage).
    Unhealthy = 2,
    /// The node says it is still syncing.
    Syncing = 3,
    /// The node serves another chain. Never used.
    WrongChain = 4,
}

impl HealthStatus {
    pub fn label(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Syncing => "syncing",
            HealthStatus::WrongChain => "wrong_chain",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => HealthStatus::Healthy,
            2 => HealthStatus::Unhealthy,
            3 => HealthStatus::Syncing,
            4 => HealthStatus::WrongChain,
            _ => HealthStatus::Unknown,
        }
    }

    /// May serve requests.
    pub fn is_serving(self) -> bool {
        self == HealthStatus::Healthy
    }
}

/// A status change, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: HealthStatus,
    pub to: HealthStatus,
    pub reason: String,
}

#[derive(Debug)]
pub struct ActiveHealth {
    status: AtomicU8,
    /// The head plus one: 0 until a probe reports one (a chain at genesis has head 0).
    head: AtomicU64,
    /// The newest head its open socket told, plus one: 0 while no socket is open.
    socket_head: AtomicU64,
    /// Its last finalized block plus one: 0 while none is known.
    finalized: AtomicU64,
    probes: AtomicU64,
    /// An average of answered probes' round trips, µs (0: none yet): what the auto hedge
    /// delay starts from before the upstream has answered enough calls.
    probe_latency_us: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    hysteresis: Hysteresis,
    /// Why the upstream is not serving (empty while it is).
    reason: String,
    /// The last failed probe, even one that did not flip the state.
    last_failure: String,
}

impl ActiveHealth {
    /// An answered probe took `took` (its requests run at once: about one round trip).
    /// Averaged with weight 1/4 for the newest, so that one slow probe moves it little.
    pub fn record_probe_latency(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.probe_latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 3 + us) / 4 };
        self.probe_latency_us.store(new, Ordering::Relaxed);
    }

    /// The probes' average round trip, once one has been answered.
    pub fn probe_latency(&self) -> Option<std::time::Duration> {
        match self.probe_latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(std::time::Duration::from_micros(us)),
        }
    }

    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            status: AtomicU8::new(HealthStatus::Unknown as u8),
            head: AtomicU64::new(0),
            socket_head: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            probe_latency_us: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                hysteresis: Hysteresis::new(rise, fall),
                reason: String::new(),
                last_failure: String::new(),
            }),
        }
    }

    pub fn status(&self) -> HealthStatus {
        HealthStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Its head: the newer of what the last probe and its open socket said (a probe
    /// answered after a socket's notification may be one block older).
    pub fn head(&self) -> Option<u64> {
        let probed = self.head.load(Ordering::Relaxed);
        probed
            .max(self.socket_head.load(Ordering::Relaxed))
            .checked_sub(1)
    }

    /// The head its last probe said.
    pub fn probed_head(&self) -> Option<u64> {
        self.head.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The head its socket told last (`None`: no socket open, or none told yet).
    pub fn socket_head(&self) -> Option<u64> {
        self.socket_head.load(Ordering::Relaxed).checked_sub(1)
    }

    /// A head its socket told; `None` when the socket closed.
    pub fn set_socket_head(&self, head: Option<u64>) {
        let v = head.map_or(0, |h| h.saturating_add(1));
        self.socket_head.store(v, Ordering::Relaxed);
    }

    /// The finalized block it last reported (a finality probe).
    pub fn finalized(&self) -> Option<u64> {
        self.finalized.load(Ordering::Relaxed).checked_sub(1)
    }

    pub fn set_finalized(&self, block: Option<u64>) {
        let v = block.map_or(0, |b| b.saturating_add(1));
        self.finalized.store(v, Ordering::Relaxed);
    }

    fn set_head(&self, head: u64) {
        self.head.store(head.saturating_add(1), Ordering::Relaxed);
    }

    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// `(reason, last_failure)`.
    pub fn reasons(&self) -> (String, String) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.reason.clone(), inner.last_failure.clone())
    }

    /// Apply one probe's verdict. Returns the transition, if the status changed.
    pub fn apply(&self, verdict: &ProbeVerdict) -> Option<Transition> {
        self.probes.fetch_add(1, Ordering::Relaxed);
        self.apply_seen(verdict)
    }

    /// Apply a verdict that traffic, not a probe, showed (an answer from another chain).
    pub fn apply_seen(&self, verdict: &ProbeVerdict) -> Option<Transition> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let from = self.status();
        let (up, down_status, why) = match verdict {
            ProbeVerdict::Healthy { head } => {
                self.set_head(*head);
                (inner.hysteresis.observe(true), None, String::new())
            }
            ProbeVerdict::Syncing { head } => {
                if let Some(h) = head {
                    self.set_head(*h);
                }
                let why = "the node reports it is syncing".to_string();
                (
                    inner.hysteresis.observe(false),
                    Some(HealthStatus::Syncing),
                    why,
                )
            }
            ProbeVerdict::Failed(why) => (
                inner.hysteresis.observe(false),
                Some(HealthStatus::Unhealthy),
                why.clone(),
            ),
            ProbeVerdict::WrongChain(why) => {
                inner.hysteresis.force(false);
                (Some(false), Some(HealthStatus::WrongChain), why.clone())
            }
        };
        if !why.is_empty() {
            inner.last_failure.clone_from(&why);
        }
        let to = match (up, inner.hysteresis.state(), down_status) {
            // Flipped up, or a good probe while up.
            (Some(true), _, _) | (None, Some(true), None) => HealthStatus::Healthy,
            // Flipped down, or a new reason while down: the newest reason describes it.
            (Some(false), _, Some(s)) | (None, Some(false), Some(s)) => s,
            _ => from,
        };
        if to.is_serving() {
            inner.reason.clear();
        } else if !why.is_empty() {
            inner.reason = why;
        }
        self.status.store(to as u8, Ordering::Relaxed);
        (to != from).then(|| Transition {
            from,
            to,
            reason: inner.reason.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(head: u64) -> ProbeVerdict {
        ProbeVerdict::Healthy { head }
    }

    fn failed() -> ProbeVerdict {
        ProbeVerdict::Failed("eth_blockNumber: no answer within 2s".into())
    }

    #[test]
    fn first_probe_decides_then_hysteresis() {
        let h = ActiveHealth::new(2, 2);
        assert_eq!(h.status(), HealthStatus::Unknown);
        assert!(
            !h.status().is_serving(),
            "not before its chain id is checked"
        );
        let t = h.apply(&healthy(10)).unwrap();
        assert_eq!(
            (t.from, t.to),
            (HealthStatus::Unknown, HealthStatus::Healthy)
        );
        assert_eq!(h.head(), Some(10));
        assert_eq!(h.apply(&failed()), None, "one failed probe is a blip");
        assert_eq!(h.status(), HealthStatus::Healthy);
        assert!(h.reasons().1.contains("no answer"));
        let t = h.apply(&failed()).unwrap();
        assert_eq!(t.to, HealthStatus::Unhealthy);
        assert!(t.reason.contains("no answer"), "{t:?}");
        assert_eq!(h.apply(&healthy(12)), None);
        assert_eq!(
            h.apply(&healthy(13)).map(|t| t.to),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(h.reasons().0, "");
    }

    #[test]
    fn genesis_is_a_head() {
        let h = ActiveHealth::new(1, 1);
        assert_eq!(h.head(), None);
        h.apply(&healthy(0));
        assert_eq!(h.head(), Some(0));
    }

    #[test]
    fn wrong_chain_is_immediate_and_needs_rise_to_clear() {
        let h = ActiveHealth::new(2, 3);
        h.apply(&healthy(10));
        let t = h
            .apply(&ProbeVerdict::WrongChain(
                "reports chain id 5, expected 1".into(),
            ))
            .unwrap();
        assert_eq!(t.to, HealthStatus::WrongChain);
        assert!(!h.status().is_serving());
        assert_eq!(h.apply(&healthy(10)), None);
        assert_eq!(h.status(), HealthStatus::WrongChain);
        assert_eq!(
            h.apply(&healthy(10)).map(|t| t.to),
            Some(HealthStatus::Healthy)
        );
    }

    #[test]
    fn syncing_is_its_own_status() {
        let h = ActiveHealth::new(1, 1);
        h.apply(&healthy(10));
        let t = h.apply(&ProbeVerdict::Syncing { head: Some(11) }).unwrap();
        assert_eq!(t.to, HealthStatus::Syncing);
        assert_eq!(h.head(), Some(11));
        // Still down, now for another reason: the status follows the newest reason.
        let t = h.apply(&failed()).unwrap();
        assert_eq!(
            (t.from, t.to),
            (HealthStatus::Syncing, HealthStatus::Unhealthy)
        );
    }
}
