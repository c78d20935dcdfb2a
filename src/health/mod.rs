//! Active health: each upstream's probed status with hysteresis, and the chain head and
//! canonical window built from them. State only, no I/O: the checkers that probe
//! (`chain::checker`) write it, requests read it.
//!
//! Background state machines, foreground gates (STYLE.md 5): one checker task per upstream
//! probes it and writes its status and head; the chain head is recomputed after each probe.
//! Requests only read atomics.

mod active;
pub mod canonical;
mod head;
mod hysteresis;

pub use active::{ActiveHealth, HealthStatus, Transition};
pub use canonical::CanonicalWindow;
pub use head::{robust_finalized, robust_head, ChainHead};
pub use hysteresis::Hysteresis;

/// How far above the median head a head may be and still count: a few times the tolerated
/// lag, so that honest spread between upstreams always fits.
pub fn outlier_tolerance(max_lag_blocks: u64) -> u64 {
    max_lag_blocks.saturating_mul(4).max(16)
}
