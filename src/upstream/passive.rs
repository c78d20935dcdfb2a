//! Passive health: what real requests tell us about an upstream.
//!
//! Every attempt's outcome feeds: the latency average and a window of recent latencies
//! (for p50/p99 and the hedge delay), the error rate (both steer selection's score), and the parking of a rate
//! limited upstream: a 429's `Retry-After` (or a second) during which it is tried only after
//! the others. Taking a failing upstream out of traffic is the circuit breaker's job
//! (`super::breaker`). Answers, errors from the node
//! included, are successes here: a revert is the request's fault, not the upstream's. Calls
//! slow by nature (`Cost::Heavy`) stay out of the latencies; timeouts that blame no one
//! (`Upstream::attempt` decides) are only counted as requests. The request path only
//! touches atomics.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::outcome::Outcome;
use crate::family::Cost;

/// Longest park honoured from a `Retry-After`: a provider cannot take itself out for hours.
pub const MAX_PARK: Duration = Duration::from_secs(60);
/// Weight of the newest sample in the latency average.
const EWMA_ALPHA: f64 = 0.2;
/// Weight of the newest attempt in the error rate.
const ERROR_ALPHA: f64 = 0.05;
/// Recent latencies kept for quantiles.
const WINDOW: usize = 128;
/// New latencies after which the cached p95 is recomputed.
const P95_REFRESH: usize = 16;
/// Time constant of the latency average's decay towards zero while no sample comes (as
/// tower's PeakEwma decays an endpoint's cost): an upstream that was slow once and has had
/// no traffic since looks fast again after some tens of seconds, gets a call, and is
/// measured anew. Without it, power of two choices would never pick it again.
const DECAY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct PassiveHealth {
    epoch: Instant,
    consecutive_failures: AtomicU32,
    parked_until_ms: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicU64,
    /// Ordinary (not heavy) attempts in flight, and when the upstream last made progress
    /// on them: an answer or a failure came back, or the first of them started. A hung
    /// upstream answers nothing; the time since then is a lower bound on its latency that
    /// the score reads at once, long before any attempt of it ends.
    normal_in_flight: AtomicU64,
    last_progress_ms: AtomicU64,
    latency_ewma_us: AtomicU64,
    /// When the average last had a sample (its decay starts then).
    last_sample_ms: AtomicU64,
    /// f64 bits.
    error_rate: AtomicU64,
    /// A ring of the last `WINDOW` successful latencies in µs (0: empty slot). A
    /// hand-written ring rather than a histogram crate: fixed memory, no lock, and a window
    /// of recent behaviour, which is what routing wants to know.
    window: Vec<AtomicU32>,
    next_slot: AtomicUsize,
    /// The window's p95 in µs (0: none) as of `p95_at` (a `next_slot` value; `usize::MAX`:
    /// never): the hedge delay reads it on every call, and sorting the window each time
    /// showed in the profile.
    p95_us: AtomicU32,
    p95_at: AtomicUsize,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            parked_until_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            normal_in_flight: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            latency_ewma_us: AtomicU64::new(0),
            last_sample_ms: AtomicU64::new(0),
            error_rate: AtomicU64::new(0f64.to_bits()),
            window: (0..WINDOW).map(|_| AtomicU32::new(0)).collect(),
            next_slot: AtomicUsize::new(0),
            p95_us: AtomicU32::new(0),
            p95_at: AtomicUsize::new(usize::MAX),
        }
    }
}

/// One attempt in flight: decrements the in-flight count when the attempt ends, however it
/// ends. An ordinary attempt dropped before `finish` (cancelled: a hedge's loser) counts in
/// the latency average as at least as slow as it had run; otherwise an upstream that has
/// stopped answering would hide behind hedging with the fast latencies of its past. It stays
/// out of the quantile window: the hedge delay is read from there, and hedge losers cut
/// short at that delay would pull it up towards its bound, and the hedges with it.
#[derive(Debug)]
pub struct InFlight<'a> {
    health: &'a PassiveHealth,
    started: Instant,
    cost: Cost,
    finished: bool,
}

impl InFlight<'_> {
    /// The attempt has an outcome (recorded with `PassiveHealth::record`).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.cost == Cost::Normal {
            self.health.normal_in_flight.fetch_sub(1, Ordering::Relaxed);
            if !self.finished {
                self.health
                    .record_average(self.started.elapsed(), self.health.now_ms());
            }
        }
    }
}

impl PassiveHealth {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// An attempt that says nothing about the upstream (see `Upstream::attempt`): counted as
    /// a request, and nothing more.
    pub fn record_blameless(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn start(&self, cost: Cost) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if cost == Cost::Normal {
            // A busy period starts: its stall is counted from now. Stored before the count
            // goes up, so that no reader sees the count with an old period's time.
            if self.normal_in_flight.load(Ordering::Relaxed) == 0 {
                self.last_progress_ms
                    .store(self.now_ms(), Ordering::Relaxed);
            }
            self.normal_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            health: self,
            started: Instant::now(),
            cost,
            finished: false,
        }
    }

    pub fn record(
        &self,
        outcome: Outcome,
        cost: Cost,
        latency: Duration,
        retry_after: Option<Duration>,
    ) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        // Progress: the node sent something back. Not a timeout (Manifold gave up waiting)
        // nor a failure to connect or a dropped connection.
        if !matches!(outcome, Outcome::Timeout | Outcome::Transport) {
            self.last_progress_ms.fetch_max(now, Ordering::Relaxed);
        }
        let heavy = cost == Cost::Heavy;
        let fault = if outcome.is_upstream_fault() {
            1.0
        } else {
            0.0
        };
        let rate = f64::from_bits(self.error_rate.load(Ordering::Relaxed));
        self.error_rate.store(
            (rate + ERROR_ALPHA * (fault - rate)).to_bits(),
            Ordering::Relaxed,
        );
        // A node saying it cannot answer (behind, pruned) counts in the error rate, which
        // steers traffic away, but not in the run of failures: any client can ask every node
        // for a block none has, and that must not take them all out.
        if outcome == Outcome::NodeError {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else if outcome.is_upstream_fault() {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            if outcome == Outcome::RateLimited {
                let park = retry_after.unwrap_or(Duration::from_secs(1)).min(MAX_PARK);
                let until = now.saturating_add(u64::try_from(park.as_millis()).unwrap_or(0));
                self.parked_until_ms.fetch_max(until, Ordering::Relaxed);
            }
        } else if heavy {
            // An answer, but its latency would distort the score and the hedge delay of the
            // ordinary calls.
            self.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.record_latency(latency, now);
            return;
        }
        // Traffic without a latency sample: the last measured figure stands again, and its
        // decay starts over. It decays while the upstream gets no traffic at all, not while
        // it only fails: an upstream answering nothing but errors must not look fast.
        self.last_sample_ms.store(now, Ordering::Relaxed);
    }

    fn record_latency(&self, latency: Duration, now_ms: u64) {
        self.record_average(latency, now_ms);
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % WINDOW;
        if let Some(cell) = self.window.get(slot) {
            let us = u32::try_from(latency.as_micros())
                .unwrap_or(u32::MAX)
                .max(1);
            cell.store(us, Ordering::Relaxed);
        }
    }

    /// A sample for the average only (a cancelled attempt's time so far), taken at `now_ms`.
    fn record_average(&self, latency: Duration, now_ms: u64) {
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX) as f64;
        // The decayed average, so that a sample after a quiet spell is not averaged with a
        // stale figure.
        let old = self.decayed_ewma_us(now_ms);
        let new = if old < 1.0 {
            sample
        } else {
            old + EWMA_ALPHA * (sample - old)
        };
        self.latency_ewma_us.store(new as u64, Ordering::Relaxed);
        self.last_sample_ms.store(now_ms, Ordering::Relaxed);
    }

    fn decayed_ewma_us(&self, now_ms: u64) -> f64 {
        let ewma = self.latency_ewma_us.load(Ordering::Relaxed) as f64;
        let quiet = now_ms.saturating_sub(self.last_sample_ms.load(Ordering::Relaxed));
        if quiet == 0 || ewma == 0.0 {
            return ewma;
        }
        ewma * (-(quiet as f64) / DECAY.as_millis() as f64).exp()
    }

    /// Average latency of recent answers, in milliseconds (0 before the first), decayed
    /// while no sample comes.
    pub fn latency_ewma_ms(&self) -> f64 {
        self.decayed_ewma_us(self.now_ms()) / 1000.0
    }

    /// What selection's score takes as this upstream's latency, in milliseconds: the
    /// average, or, when ordinary attempts are in flight, at least the time since the
    /// upstream last made progress on them. A hung upstream's figure grows by the
    /// millisecond, and new calls go elsewhere while its first attempts still wait.
    pub fn latency_estimate_ms(&self) -> f64 {
        let now = self.now_ms();
        let average = self.decayed_ewma_us(now) / 1000.0;
        if self.normal_in_flight.load(Ordering::Relaxed) == 0 {
            return average;
        }
        let stalled = now.saturating_sub(self.last_progress_ms.load(Ordering::Relaxed));
        average.max(stalled as f64)
    }

    /// Share of recent attempts that failed through the upstream's fault, 0..=1.
    pub fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    /// Latencies in the recent window (up to its size).
    pub fn latency_samples(&self) -> usize {
        self.next_slot.load(Ordering::Relaxed).min(WINDOW)
    }

    /// The `q` quantile (0..=1) of the recent latencies window.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut v: Vec<u32> = self
            .window
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|us| *us > 0)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        v.get(rank).map(|us| Duration::from_micros(u64::from(*us)))
    }

    /// The window's 95th percentile, recomputed once `P95_REFRESH` new latencies have come
    /// in (at most a sort of 128 numbers per 16 answers, instead of one per call).
    pub fn latency_p95(&self) -> Option<Duration> {
        let now = self.next_slot.load(Ordering::Relaxed);
        let at = self.p95_at.load(Ordering::Relaxed);
        if at == usize::MAX || now.wrapping_sub(at) >= P95_REFRESH {
            // Racing refreshes compute the same figure from nearly the same window.
            let us = self
                .latency_quantile(0.95)
                .map_or(0, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
            self.p95_us.store(us, Ordering::Relaxed);
            self.p95_at.store(now, Ordering::Relaxed);
        }
        match self.p95_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(u64::from(us))),
        }
    }

    /// Whether a request should try this upstream before the others: not parked.
    pub fn is_usable(&self) -> bool {
        self.now_ms() >= self.parked_until_ms.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let now = self.now_ms();
        let parked_ms = self
            .parked_until_ms
            .load(Ordering::Relaxed)
            .saturating_sub(now);
        serde_json::json!({
            "usable": self.is_usable(),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "requests": self.requests.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "consecutive_failures": self.consecutive_failures(),
            "parked_ms": parked_ms,
            "latency_ewma_ms": self.latency_ewma_ms(),
            "latency_p50_ms": self.latency_quantile(0.5).map(|d| d.as_secs_f64() * 1000.0),
            "latency_p99_ms": self.latency_quantile(0.99).map(|d| d.as_secs_f64() * 1000.0),
            "error_rate": (self.error_rate() * 10_000.0).round() / 10_000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn failures_are_counted_and_an_answer_ends_the_run() {
        let h = PassiveHealth::default();
        h.record(Outcome::Transport, Cost::Normal, MS, None);
        h.record(Outcome::Timeout, Cost::Normal, MS, None);
        assert_eq!(h.consecutive_failures(), 2);
        assert_eq!(h.snapshot()["failures"], 2);
        // Taking it out is the breaker's decision, not this record's.
        assert!(h.is_usable());
        h.record(Outcome::Success, Cost::Normal, MS, None);
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_not_failures() {
        let h = PassiveHealth::default();
        for _ in 0..10 {
            h.record(Outcome::RpcError, Cost::Normal, MS, None);
        }
        assert!(h.is_usable());
        assert_eq!(h.snapshot()["failures"], 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_parks_for_retry_after_capped() {
        let h = PassiveHealth::default();
        h.record(
            Outcome::RateLimited,
            Cost::Normal,
            MS,
            Some(Duration::from_secs(2)),
        );
        assert!(!h.is_usable());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(h.is_usable());
        h.record(
            Outcome::RateLimited,
            Cost::Normal,
            MS,
            Some(Duration::from_secs(3600)),
        );
        tokio::time::advance(MAX_PARK).await;
        assert!(h.is_usable());
    }

    #[tokio::test(start_paused = true)]
    async fn node_errors_raise_the_error_rate_but_are_not_a_run_of_failures() {
        let h = PassiveHealth::default();
        for _ in 0..20 {
            h.record(Outcome::NodeError, Cost::Normal, MS, None);
        }
        assert_eq!(h.consecutive_failures(), 0);
        assert!(h.error_rate() > 0.5);
    }

    #[tokio::test]
    async fn quantiles_over_the_recent_window() {
        let h = PassiveHealth::default();
        assert_eq!(h.latency_quantile(0.5), None);
        for ms in 1..=100 {
            h.record(
                Outcome::Success,
                Cost::Normal,
                Duration::from_millis(ms),
                None,
            );
        }
        assert_eq!(h.latency_quantile(0.5), Some(Duration::from_millis(51)));
        assert_eq!(h.latency_quantile(0.99), Some(Duration::from_millis(99)));
        // Old samples leave the window.
        for _ in 0..WINDOW {
            h.record(
                Outcome::Success,
                Cost::Normal,
                Duration::from_millis(5),
                None,
            );
        }
        assert_eq!(h.latency_quantile(0.99), Some(Duration::from_millis(5)));
    }

    #[tokio::test]
    async fn the_cached_p95_follows_the_window_every_few_answers() {
        let h = PassiveHealth::default();
        assert_eq!(h.latency_p95(), None);
        for ms in 1..=100 {
            h.record(
                Outcome::Success,
                Cost::Normal,
                Duration::from_millis(ms),
                None,
            );
        }
        assert_eq!(h.latency_p95(), h.latency_quantile(0.95));
        assert_eq!(h.latency_p95(), Some(Duration::from_millis(95)));
        // Fewer new answers than the refresh interval: the cached figure stands.
        for _ in 0..P95_REFRESH - 1 {
            h.record(Outcome::Success, Cost::Normal, Duration::from_secs(1), None);
        }
        assert_eq!(h.latency_p95(), Some(Duration::from_millis(95)));
        h.record(Outcome::Success, Cost::Normal, Duration::from_secs(1), None);
        assert_eq!(h.latency_p95(), Some(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn error_rate_follows_faults_only() {
        let h = PassiveHealth::default();
        for _ in 0..50 {
            h.record(Outcome::RpcError, Cost::Normal, MS, None);
        }
        assert_eq!(h.error_rate(), 0.0);
        for _ in 0..50 {
            h.record(Outcome::Transport, Cost::Normal, MS, None);
        }
        assert!(h.error_rate() > 0.9, "{}", h.error_rate());
    }

    #[tokio::test(start_paused = true)]
    async fn heavy_calls_stay_out_of_latencies_and_blameless_timeouts_out_of_failures() {
        let h = PassiveHealth::default();
        for _ in 0..10 {
            h.record_blameless();
        }
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.error_rate(), 0.0);
        assert_eq!(h.snapshot()["requests"], 10);
        h.record(Outcome::Success, Cost::Heavy, Duration::from_secs(30), None);
        assert_eq!(h.latency_samples(), 0);
        assert_eq!(h.latency_ewma_ms(), 0.0);
        // A heavy call failing in transport is still a failure.
        h.record(Outcome::Transport, Cost::Heavy, MS, None);
        assert_eq!(h.consecutive_failures(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_attempt_counts_as_at_least_that_slow_but_not_in_the_window() {
        let h = PassiveHealth::default();
        h.record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(5),
            None,
        );
        let cancelled = h.start(Cost::Normal);
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(cancelled);
        assert!(h.latency_ewma_ms() > 300.0, "{}", h.latency_ewma_ms());
        // The hedge delay's window holds answers only.
        assert_eq!(h.latency_quantile(1.0), Some(Duration::from_millis(5)));
        assert_eq!(h.latency_samples(), 1);
        assert_eq!(h.snapshot()["failures"], 0);
        // A finished attempt leaves its latency to `record`; a heavy one stays out.
        let mut finished = h.start(Cost::Normal);
        finished.finish();
        drop(finished);
        drop(h.start(Cost::Heavy));
        assert_eq!(h.latency_samples(), 1);
        assert!(h.latency_ewma_ms() > 300.0, "{}", h.latency_ewma_ms());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_upstream_looks_slower_by_the_millisecond() {
        let h = PassiveHealth::default();
        for _ in 0..10 {
            h.record(Outcome::Success, Cost::Normal, MS, None);
        }
        assert!(h.latency_estimate_ms() < 2.0);
        let first = h.start(Cost::Normal);
        tokio::time::advance(Duration::from_millis(50)).await;
        let _second = h.start(Cost::Normal);
        tokio::time::advance(Duration::from_millis(50)).await;
        // Nothing back for 100 ms, whenever the attempts started.
        assert!(
            h.latency_estimate_ms() >= 100.0,
            "{}",
            h.latency_estimate_ms()
        );
        // An answer is progress: the stall starts again from there.
        h.record(Outcome::Success, Cost::Normal, MS, None);
        assert!(h.latency_estimate_ms() < 2.0, "{}", h.latency_estimate_ms());
        drop(first);
        // A heavy call running long is not a stall.
        let g = PassiveHealth::default();
        let _heavy = g.start(Cost::Heavy);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(g.latency_estimate_ms(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_average_decays_while_no_sample_comes() {
        let h = PassiveHealth::default();
        h.record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(200),
            None,
        );
        assert!((h.latency_ewma_ms() - 200.0).abs() < 1.0);
        tokio::time::advance(DECAY).await;
        let decayed = h.latency_ewma_ms();
        assert!(
            (decayed - 200.0 / std::f64::consts::E).abs() < 1.0,
            "{decayed}"
        );
        // A new sample averages with the decayed figure, not the stale one.
        h.record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(10),
            None,
        );
        let expected = decayed + EWMA_ALPHA * (10.0 - decayed);
        assert!(
            (h.latency_ewma_ms() - expected).abs() < 1.0,
            "{}",
            h.latency_ewma_ms()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_average_holds_while_traffic_comes_without_samples() {
        let h = PassiveHealth::default();
        h.record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(200),
            None,
        );
        tokio::time::advance(DECAY).await;
        assert!(h.latency_ewma_ms() < 100.0);
        // An upstream answering only errors is not "quiet": its last measured figure stands.
        for _ in 0..30 {
            h.record(Outcome::NodeError, Cost::Normal, MS, None);
            let now = h.latency_ewma_ms();
            assert!((now - 200.0).abs() < 1.0, "{now}");
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn in_flight_is_released_on_drop() {
        let h = PassiveHealth::default();
        let a = h.start(Cost::Normal);
        let b = h.start(Cost::Normal);
        assert_eq!(h.snapshot()["in_flight"], 2);
        drop(a);
        drop(b);
        assert_eq!(h.snapshot()["in_flight"], 0);
    }
}
