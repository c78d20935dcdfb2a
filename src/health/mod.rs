//! Active health: probing upstreams on an interval, and the chain head built from them.
//!
//! Background state machines, foreground gates (STYLE.md 5): one checker task per upstream
//! probes it and writes its status and head; the chain head is recomputed after each probe.
//! Requests only read atomics.

pub mod checker;
mod head;
mod hysteresis;

pub use head::{robust_head, ChainHead};
pub use hysteresis::Hysteresis;
