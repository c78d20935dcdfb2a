//! A circuit breaker per upstream: stop sending requests to an upstream that keeps failing,
//! try it again with a few requests after a while, and only then give it full traffic.
//!
//! Closed → Open after `consecutive_failures` failures in a row, or a failure share of at
//! least `failure_rate` over the last `window` attempts (once the window is full). Open for
//! `open_duration`, doubled at each further trip, up to `max_open_duration`, with ±20%
//! jitter so that many proxies do not return at once. Half-open lets `half_open_requests`
//! trial requests through; when all of them succeed the breaker closes, and the first
//! failure opens it again, for longer. Closing does not forget the trips: an upstream that
//! passes its trials and fails again under full traffic (flapping) is kept out longer each
//! time. Only after it has stayed closed for `max_open_duration` does the count start over.
//!
//! Each half-open round has a number; a trial permit belongs to its round. A trial still
//! running when its round ends (the breaker reopened or closed) neither gives its permit
//! back to a later round nor has its verdict counted there.
//!
//! Written here rather than taken from a crate: the gate must be readable on the request
//! path with one atomic load, trial permits must be handed back when a hedged attempt is
//! cancelled, and which outcomes count is the product's own decision (`Verdict`). The
//! request path reads the gate (`allows`) and takes a trial permit (`admit`) with atomics;
//! only recording an attempt's verdict takes a short lock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::HalfOpen,
            2 => BreakerState::Open,
            _ => BreakerState::Closed,
        }
    }
}

/// What an attempt means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    /// Says nothing about the upstream's health (a rate limit, a request-caused rejection,
    /// a heavy call that ran out of time).
    Neutral,
}

/// A state change, for the log and the gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerTransition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
    /// How long it stays open (when `to` is `Open`).
    pub open_for: Option<Duration>,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    epoch: Instant,
    state: AtomicU8,
    /// Milliseconds since `epoch` at which an open breaker may go half-open.
    open_until_ms: AtomicU64,
    /// Trial permits left to hand out while half-open.
    trial_permits: AtomicU32,
    /// The current half-open round (bumped each time the breaker goes half-open).
    round: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    consecutive: u32,
    /// Last `window` verdicts, `true` for a failure (a ring).
    recent: Vec<bool>,
    next: usize,
    /// Trips since the count last started over: each doubles the open duration.
    trips: u32,
    trial_successes: u32,
    /// When the breaker last closed after trials (ms since `epoch`).
    closed_at_ms: Option<u64>,
}

/// A trial permit taken while half-open; handed back if the attempt ends without a verdict
/// (cancelled, or neutral).
#[derive(Debug)]
pub struct Admission {
    breaker: Arc<CircuitBreaker>,
    /// The half-open round this trial belongs to; `None` when admitted while closed.
    trial: Option<u64>,
}

impl Admission {
    /// Record the attempt's verdict; returns the transition it caused, if any.
    pub fn record(mut self, verdict: Verdict) -> Option<BreakerTransition> {
        let trial = if verdict == Verdict::Neutral {
            None
        } else {
            // Counted: the permit is spent, not handed back on drop.
            self.trial.take()
        };
        self.breaker.record(verdict, trial)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(round) = self.trial {
            self.breaker.give_back(round);
        }
    }
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            epoch: Instant::now(),
            state: AtomicU8::new(BreakerState::Closed as u8),
            open_until_ms: AtomicU64::new(0),
            trial_permits: AtomicU32::new(0),
            round: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether a request could be let through now (read-only: selection filters on this);
    /// past a half-open breaker only one that `may_trial` (see `admit`).
    pub fn allows(&self, may_trial: bool) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => {
                may_trial && self.now_ms() >= self.open_until_ms.load(Ordering::Acquire)
            }
            BreakerState::HalfOpen => may_trial && self.trial_permits.load(Ordering::Acquire) > 0,
        }
    }

    /// An open breaker whose time is up turns half-open: on the next `admit`, or when the
    /// health checker calls this after a probe, so that `/status` and the gauge do not show
    /// "open" for an upstream no traffic has reached since. Returns the transition, if any.
    pub fn refresh(&self) -> Option<BreakerTransition> {
        if self.state() != BreakerState::Open
            || self.now_ms() < self.open_until_ms.load(Ordering::Acquire)
        {
            return None;
        }
        let _inner = self.lock();
        // Re-checked under the lock: one caller makes the change.
        if self.state() != BreakerState::Open
            || self.now_ms() < self.open_until_ms.load(Ordering::Acquire)
        {
            return None;
        }
        self.round.fetch_add(1, Ordering::AcqRel);
        self.trial_permits
            .store(self.policy.half_open_requests.max(1), Ordering::Release);
        self.state
            .store(BreakerState::HalfOpen as u8, Ordering::Release);
        Some(BreakerTransition {
            from: BreakerState::Open,
            to: BreakerState::HalfOpen,
            reason: "open duration over: trial requests".into(),
            open_for: None,
        })
    }

    /// Let one request through, or not; a half-open breaker only one that `may_trial`. An
    /// open breaker whose time is up turns half-open here (the returned transition is for
    /// the log).
    pub fn admit(
        self: &Arc<Self>,
        may_trial: bool,
    ) -> (Option<Admission>, Option<BreakerTransition>) {
        let transition = self.refresh();
        let admission = match self.state() {
            BreakerState::Closed => Some(Admission {
                breaker: self.clone(),
                trial: None,
            }),
            BreakerState::HalfOpen if !may_trial => None,
            BreakerState::HalfOpen => {
                let round = self.round.load(Ordering::Acquire);
                self.trial_permits
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
                    .ok()
                    .map(|_| Admission {
                        breaker: self.clone(),
                        trial: Some(round),
                    })
            }
            BreakerState::Open => None,
        };
        (admission, transition)
    }

    /// A trial of `round` ended without a verdict: its permit goes back, if that round is
    /// still on.
    fn give_back(&self, round: u64) {
        let _inner = self.lock();
        if self.state() == BreakerState::HalfOpen && self.round.load(Ordering::Acquire) == round {
            self.trial_permits.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `trial`: the half-open round of the attempt's trial permit, if it had one.
    fn record(&self, verdict: Verdict, trial: Option<u64>) -> Option<BreakerTransition> {
        if verdict == Verdict::Neutral {
            return None;
        }
        let failed = verdict == Verdict::Failure;
        let mut inner = self.lock();
        let this_round = trial == Some(self.round.load(Ordering::Acquire));
        match self.state() {
            // A straggler from before the trip: the trip has already said enough.
            BreakerState::Open => None,
            // Not a trial of this round: admitted while closed, or a trial of a round over.
            BreakerState::HalfOpen if !this_round => None,
            BreakerState::HalfOpen if failed => {
                Some(self.trip(&mut inner, BreakerState::HalfOpen, "a trial request failed"))
            }
            BreakerState::HalfOpen => {
                inner.trial_successes += 1;
                if inner.trial_successes < self.policy.half_open_requests.max(1) {
                    return None;
                }
                // The trips are kept (see the module's doc): a flapping upstream's next trip
                // keeps it out longer.
                *inner = Inner {
                    trips: inner.trips,
                    closed_at_ms: Some(self.now_ms()),
                    ..Inner::default()
                };
                self.state
                    .store(BreakerState::Closed as u8, Ordering::Release);
                Some(BreakerTransition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    reason: "trial requests succeeded".into(),
                    open_for: None,
                })
            }
            BreakerState::Closed => {
                let window = usize::try_from(self.policy.window.max(1)).unwrap_or(1);
                if inner.recent.len() < window {
                    inner.recent.push(failed);
                } else {
                    let next = inner.next;
                    if let Some(slot) = inner.recent.get_mut(next) {
                        *slot = failed;
                    }
                }
                inner.next = (inner.next + 1) % window;
                inner.consecutive = if failed { inner.consecutive + 1 } else { 0 };
                if !failed {
                    return None;
                }
                let failures = inner.recent.iter().filter(|f| **f).count();
                let rate = failures as f64 / inner.recent.len() as f64;
                if inner.consecutive >= self.policy.consecutive_failures.max(1) {
                    let why = format!("{} consecutive failures", inner.consecutive);
                    Some(self.trip(&mut inner, BreakerState::Closed, &why))
                } else if inner.recent.len() >= window && rate >= self.policy.failure_rate {
                    let why = format!("{failures} of the last {window} attempts failed");
                    Some(self.trip(&mut inner, BreakerState::Closed, &why))
                } else {
                    None
                }
            }
        }
    }

    fn trip(&self, inner: &mut Inner, from: BreakerState, reason: &str) -> BreakerTransition {
        let max_open_ms = u64::try_from(self.policy.max_open_duration.as_millis()).unwrap_or(0);
        if from == BreakerState::Closed
            && inner
                .closed_at_ms
                .is_some_and(|at| self.now_ms().saturating_sub(at) >= max_open_ms)
        {
            // Closed long enough: a new trip is a new outage, not the same one flapping.
            inner.trips = 0;
        }
        let doublings = inner.trips.min(16);
        inner.trips += 1;
        inner.consecutive = 0;
        inner.trial_successes = 0;
        inner.recent.clear();
        inner.next = 0;
        let base = self
            .policy
            .open_duration
            .saturating_mul(1 << doublings)
            .min(self.policy.max_open_duration);
        let open_for = base.mul_f64(0.8 + 0.4 * fastrand::f64());
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX));
        self.open_until_ms.store(until, Ordering::Release);
        self.trial_permits.store(0, Ordering::Release);
        self.state
            .store(BreakerState::Open as u8, Ordering::Release);
        BreakerTransition {
            from,
            to: BreakerState::Open,
            reason: reason.to_string(),
            open_for: Some(open_for),
        }
    }

    /// For `/status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let open_ms = match self.state() {
            BreakerState::Open => self
                .open_until_ms
                .load(Ordering::Acquire)
                .saturating_sub(self.now_ms()),
            _ => 0,
        };
        let trips = self.lock().trips;
        serde_json::json!({
            "state": self.state().label(),
            "open_remaining_ms": open_ms,
            "trips": trips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: 10,
            open_duration: Duration::from_secs(10),
            max_open_duration: Duration::from_secs(30),
            half_open_requests: 2,
        }
    }

    fn attempt(b: &Arc<CircuitBreaker>, v: Verdict) -> Option<BreakerTransition> {
        let (admission, _) = b.admit(true);
        admission.expect("admitted").record(v)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        assert_eq!(attempt(&b, Verdict::Failure), None);
        assert_eq!(attempt(&b, Verdict::Failure), None);
        let t = attempt(&b, Verdict::Failure).expect("trips");
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        assert!(t.reason.contains("3 consecutive"), "{}", t.reason);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allows(true));
        assert!(b.admit(true).0.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_run_and_neutral_outcomes_do_not_count() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        for _ in 0..2 {
            attempt(&b, Verdict::Failure);
        }
        attempt(&b, Verdict::Success);
        for _ in 0..2 {
            attempt(&b, Verdict::Failure);
        }
        for _ in 0..20 {
            attempt(&b, Verdict::Neutral);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_rate_over_a_full_window() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        // Alternating: never 3 in a row, but half of the window fails.
        for i in 0..9 {
            let v = if i % 2 == 0 {
                Verdict::Failure
            } else {
                Verdict::Success
            };
            assert_eq!(attempt(&b, v), None, "window not full at {i}");
        }
        let t = attempt(&b, Verdict::Success);
        assert_eq!(t, None, "the window's last attempt succeeded");
        let t = attempt(&b, Verdict::Failure).expect("5 of 10 failed");
        assert!(t.reason.contains("of the last 10"), "{}", t.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_the_open_duration_then_closes_on_trial_successes() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        for _ in 0..3 {
            attempt(&b, Verdict::Failure);
        }
        // Jitter: 8..12 s.
        tokio::time::advance(Duration::from_millis(7_900)).await;
        assert!(!b.allows(true));
        tokio::time::advance(Duration::from_millis(4_200)).await;
        assert!(b.allows(true));
        let (first, t) = b.admit(true);
        assert_eq!(t.map(|t| t.to), Some(BreakerState::HalfOpen));
        let (second, t) = b.admit(true);
        assert!(t.is_none());
        // Limited trial traffic: two permits, no third.
        assert!(b.admit(true).0.is_none());
        assert!(!b.allows(true));
        assert_eq!(first.expect("trial").record(Verdict::Success), None);
        let t = second
            .expect("trial")
            .record(Verdict::Success)
            .expect("closes");
        assert_eq!(
            (t.from, t.to),
            (BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert!(b.allows(true));
        // Closed again with a clean slate: two failures do not trip it.
        attempt(&b, Verdict::Failure);
        attempt(&b, Verdict::Failure);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_for_longer_up_to_the_cap() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        for _ in 0..3 {
            attempt(&b, Verdict::Failure);
        }
        let mut durations = Vec::new();
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(60)).await;
            let t = attempt(&b, Verdict::Failure).expect("reopens");
            assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
            durations.push(t.open_for.expect("open duration"));
        }
        // 10 s doubled: 20 s, then 40 s capped at 30 s; ±20% jitter.
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base).mul_f64(0.8)
                && d <= Duration::from_secs(base).mul_f64(1.2)
        };
        assert!(within(durations[0], 20), "{durations:?}");
        assert!(within(durations[1], 30), "{durations:?}");
        assert!(within(durations[3], 30), "{durations:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_hands_its_permit_back() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        for _ in 0..3 {
            attempt(&b, Verdict::Failure);
        }
        tokio::time::advance(Duration::from_secs(13)).await;
        let (a, _) = b.admit(true);
        let (c, _) = b.admit(true);
        assert!(a.is_some() && c.is_some());
        assert!(!b.allows(true));
        drop(a);
        assert!(b.allows(true), "a cancelled trial frees its permit");
        // A neutral verdict says nothing: the permit comes back too.
        c.expect("trial").record(Verdict::Neutral);
        assert!(b.admit(true).0.is_some());
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    fn trip(b: &Arc<CircuitBreaker>) -> Duration {
        let mut last = None;
        for _ in 0..3 {
            last = attempt(b, Verdict::Failure);
        }
        last.and_then(|t| t.open_for).expect("tripped")
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_of_an_earlier_round_neither_frees_nor_counts_in_a_new_one() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        trip(&b);
        tokio::time::advance(Duration::from_secs(13)).await;
        let (old, _) = b.admit(true);
        let (failing, _) = b.admit(true);
        let t = failing.expect("trial").record(Verdict::Failure);
        assert_eq!(t.map(|t| t.to), Some(BreakerState::Open));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            b.refresh().map(|t| t.to),
            Some(BreakerState::HalfOpen),
            "a new round"
        );
        let old = old.expect("trial of the first round");
        // Its verdict is not a trial of this round...
        assert_eq!(old.record(Verdict::Success), None);
        // ...and dropping it gave no third permit: exactly two trials, both needed.
        let (a, _) = b.admit(true);
        let (c, _) = b.admit(true);
        assert!(b.admit(true).0.is_none(), "only this round's two permits");
        assert_eq!(a.expect("trial").record(Verdict::Success), None);
        let t = c.expect("trial").record(Verdict::Success);
        assert_eq!(t.map(|t| t.to), Some(BreakerState::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_of_an_earlier_round_gives_nothing_back() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        trip(&b);
        tokio::time::advance(Duration::from_secs(13)).await;
        let (old, _) = b.admit(true);
        let (failing, _) = b.admit(true);
        failing.expect("trial").record(Verdict::Failure);
        tokio::time::advance(Duration::from_secs(30)).await;
        b.refresh();
        drop(old);
        let (x, _) = b.admit(true);
        let (y, _) = b.admit(true);
        assert!(x.is_some() && y.is_some());
        assert!(
            b.admit(true).0.is_none(),
            "the old permit was not added to this round"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_open_state_ends_on_time_without_traffic() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        trip(&b);
        assert_eq!(b.refresh(), None, "still open");
        assert_eq!(b.snapshot()["state"], "open");
        tokio::time::advance(Duration::from_secs(13)).await;
        assert_eq!(b.refresh().map(|t| t.to), Some(BreakerState::HalfOpen));
        assert_eq!(b.refresh(), None, "one transition");
        assert_eq!(b.snapshot()["state"], "half_open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flapping_upstream_is_kept_out_longer_until_it_stays_closed() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        let close = |b: &Arc<CircuitBreaker>| {
            let (x, _) = b.admit(true);
            let (y, _) = b.admit(true);
            x.expect("trial").record(Verdict::Success);
            let t = y.expect("trial").record(Verdict::Success);
            assert_eq!(t.map(|t| t.to), Some(BreakerState::Closed));
        };
        let first = trip(&b);
        assert!(first <= Duration::from_secs(12), "{first:?}");
        tokio::time::advance(Duration::from_secs(13)).await;
        close(&b);
        // Passes its trials, fails again under traffic: the same outage, kept out longer.
        let second = trip(&b);
        assert!(second >= Duration::from_secs(16), "{second:?}");
        tokio::time::advance(Duration::from_secs(25)).await;
        close(&b);
        // Closed for max_open_duration (30 s): a new outage starts from the base again.
        tokio::time::advance(Duration::from_secs(31)).await;
        let third = trip(&b);
        assert!(third <= Duration::from_secs(12), "{third:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn only_calls_that_may_trial_are_let_through_half_open() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        trip(&b);
        tokio::time::advance(Duration::from_secs(13)).await;
        assert!(!b.allows(false));
        assert!(b.admit(false).0.is_none(), "a heavy call is no trial");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(true).0.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn stragglers_do_not_move_an_open_breaker() {
        let b = Arc::new(CircuitBreaker::new(policy()));
        // Admitted while closed, answered after the trip.
        let (late, _) = b.admit(true);
        for _ in 0..3 {
            attempt(&b, Verdict::Failure);
        }
        assert_eq!(late.expect("admitted").record(Verdict::Success), None);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
