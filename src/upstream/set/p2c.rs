//! Power of two choices among equally ranked upstreams.

use std::sync::Arc;

use crate::upstream::Upstream;

/// Two distinct upstreams drawn at random (as tower's p2c balancer draws), and one of them
/// by odds on their scores: `a` serves with probability `sb² / (sa² + sb²)`. Near-equal
/// upstreams share the load even when calls come one at a time (a plain "better of two"
/// would send all of them to whichever measured a microsecond faster); a clearly better one
/// takes most (3x better: 90%); a far worse one, such as a hung upstream whose figure grows
/// by the millisecond, almost none. The odds also keep the worse ones measured, and a
/// worse one's latency average decays while it gets no traffic (`PassiveHealth`), so a
/// recovered upstream is tried again.
///
/// Hand-written rather than tower's `p2c::Balance`: the candidates change per call (block
/// needs, tiers, domains already tried, breakers), which a `Discover`-fed service does not
/// model.
pub(super) fn power_of_two_choices<'a>(group: &[&'a Arc<Upstream>]) -> Option<&'a Arc<Upstream>> {
    let (i, j) = match group.len() {
        0 => return None,
        1 => (0, 0),
        n => {
            let i = fastrand::usize(..n);
            // Any other index, uniformly.
            let j = (i + 1 + fastrand::usize(..n - 1)) % n;
            (i, j)
        }
    };
    let (a, b) = (group.get(i)?, group.get(j)?);
    if i == j {
        return Some(a);
    }
    Some(if takes_first(a.score(), b.score(), fastrand::f64()) {
        a
    } else {
        b
    })
}

/// Whether the first of two scores (lower is better) serves, for `roll` uniform in 0..1.
pub(super) fn takes_first(sa: f64, sb: f64, roll: f64) -> bool {
    let (a2, b2) = (sa * sa, sb * sb);
    // Scores are at least 1 (latency + 1 ms); a NaN or infinity must not panic or stick.
    if !(a2 + b2).is_finite() || a2 + b2 <= 0.0 {
        return sa <= sb;
    }
    roll * (a2 + b2) < b2
}
