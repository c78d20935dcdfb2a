//! Hedging: when an attempt has not answered after a delay, the same request also goes to
//! the next best upstream, and the first good answer wins (Dean and Barroso, "The Tail at
//! Scale"). The delay is fixed, or `auto`: a high quantile of the first upstream's recent
//! latencies, so that only its slowest few percent of calls are hedged. Extra load is bounded
//! twice: at most `max_extra` hedges per call, and a budget of hedges as a share of recent
//! calls (tower's `TpsBudget`), so that a slow upstream cannot double the load on the others.
//!
//! This type only decides when; `UpstreamSet::call` runs the attempts.

use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use super::Upstream;
use crate::config::{HedgeDelay, HedgePolicy};

/// An `auto` delay waits for the 95th percentile of the first upstream's recent latencies
/// (`PassiveHealth::latency_p95`). Until it has answered `AUTO_MIN_SAMPLES` calls, it starts
/// from what its health probes showed: `PROBE_FACTOR` times their round trip (a call may
/// take a few times a probe's cheap round trip), so that right after start one read behind a
/// hung upstream does not wait the upper bound.
use crate::config::{AUTO_MAX, AUTO_MIN};
/// Latencies an upstream must have answered with before `auto` trusts its quantile.
pub const AUTO_MIN_SAMPLES: usize = 20;
/// The seed from the probes: this many of their round trips.
pub const PROBE_FACTOR: u32 = 4;
/// Hedges allowed per second whatever the budget (so that a quiet chain still hedges).
const MIN_PER_SECOND: u32 = 5;
/// How long a call counts towards the budget.
const BUDGET_TTL: Duration = Duration::from_secs(10);

impl HedgePolicy {
    /// How long to wait for `first` before hedging; `None` when hedging is off.
    pub fn delay(&self, first: &Upstream) -> Option<Duration> {
        match self.delay {
            HedgeDelay::Off => None,
            _ if self.max_extra == 0 => None,
            HedgeDelay::Fixed(d) => Some(d),
            HedgeDelay::Auto => Some(auto_delay(
                first.health().latency_samples(),
                first.health().latency_p95(),
                first.active().probe_latency(),
            )),
        }
    }

    /// For `/status` and `check-config`.
    pub fn describe(&self) -> serde_json::Value {
        let delay = match self.delay {
            HedgeDelay::Off => "off".to_string(),
            HedgeDelay::Auto => "auto".to_string(),
            HedgeDelay::Fixed(d) => humantime::format_duration(d).to_string(),
        };
        serde_json::json!({ "delay": delay, "max_extra": self.max_extra, "budget": self.budget })
    }

    pub fn budget(&self) -> HedgeBudget {
        HedgeBudget(TpsBudget::new(BUDGET_TTL, MIN_PER_SECOND, self.budget))
    }
}

fn auto_delay(samples: usize, quantile: Option<Duration>, probe: Option<Duration>) -> Duration {
    match (quantile, probe) {
        (Some(q), _) if samples >= AUTO_MIN_SAMPLES => q.clamp(AUTO_MIN, AUTO_MAX),
        (_, Some(p)) => p.saturating_mul(PROBE_FACTOR).clamp(AUTO_MIN, AUTO_MAX),
        _ => AUTO_MAX,
    }
}

/// Hedges a chain may still send: every call deposits, every hedge withdraws.
#[derive(Debug)]
pub struct HedgeBudget(TpsBudget);

impl HedgeBudget {
    pub fn deposit(&self) {
        self.0.deposit();
    }

    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_waits_for_a_high_quantile_clamped() {
        let ms = Duration::from_millis;
        assert_eq!(auto_delay(100, Some(ms(150)), Some(ms(1))), ms(150));
        assert_eq!(auto_delay(100, Some(ms(1)), None), AUTO_MIN);
        assert_eq!(auto_delay(100, Some(ms(60_000)), None), AUTO_MAX);
        // Too few latencies to trust: what the probes showed, four round trips.
        assert_eq!(
            auto_delay(AUTO_MIN_SAMPLES - 1, Some(ms(150)), Some(ms(30))),
            ms(120)
        );
        assert_eq!(auto_delay(0, None, Some(ms(2))), AUTO_MIN);
        assert_eq!(auto_delay(0, None, Some(ms(900))), AUTO_MAX);
        // Nothing known: the cautious bound.
        assert_eq!(
            auto_delay(AUTO_MIN_SAMPLES - 1, Some(ms(150)), None),
            AUTO_MAX
        );
        assert_eq!(auto_delay(0, None, None), AUTO_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_hedges_to_a_share_of_calls() {
        let policy = HedgePolicy {
            budget: 0.1,
            ..HedgePolicy::default()
        };
        let budget = policy.budget();
        // The floor: MIN_PER_SECOND * TTL hedges with no calls at all.
        let floor = (0..1000).take_while(|_| budget.withdraw()).count();
        assert_eq!(floor, 50);
        for _ in 0..100 {
            budget.deposit();
        }
        let more = (0..1000).take_while(|_| budget.withdraw()).count();
        assert_eq!(more, 10, "10% of 100 calls");
    }
}
