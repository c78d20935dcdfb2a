//! The resilience policies of a chain's upstream set as configured: when a breaker opens
//! (`upstream::breaker`) and when a call is hedged (`upstream::hedge`). The types are
//! config's, so that the upstream set depends on the configuration and not the other way.

use std::time::Duration;

/// Bounds of an `auto` hedge delay; the upper one also serves when nothing is known.
pub const AUTO_MIN: Duration = Duration::from_millis(20);
pub const AUTO_MAX: Duration = Duration::from_secs(2);

/// When an upstream's breaker opens and for how long (`[chains.policy.breaker]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    pub consecutive_failures: u32,
    /// Failure share over the window that opens the breaker (0 < rate <= 1).
    pub failure_rate: f64,
    /// Attempts the failure rate is computed over.
    pub window: u32,
    pub open_duration: Duration,
    pub max_open_duration: Duration,
    /// Trial requests in the half-open state; all must succeed to close.
    pub half_open_requests: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            open_duration: Duration::from_secs(5),
            max_open_duration: Duration::from_secs(60),
            half_open_requests: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    Off,
    Auto,
    Fixed(Duration),
}

/// `[chains.policy.hedge]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgePolicy {
    pub delay: HedgeDelay,
    /// Hedges per call at most.
    pub max_extra: u32,
    /// Hedges as a share of recent calls.
    pub budget: f32,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        Self {
            delay: HedgeDelay::Auto,
            max_extra: 1,
            budget: 0.1,
        }
    }
}
