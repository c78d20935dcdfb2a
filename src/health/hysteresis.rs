//! Rise/fall hysteresis for health states, as HAProxy's `rise`/`fall` and pingora's health
//! checks do: one blip does not flip an upstream, a run of results does.
//!
//! Written here rather than taken from a crate: it is a dozen lines of the product's own
//! health policy, and no crate offers it apart from a whole load balancer.

/// A boolean state that flips after `rise` consecutive good or `fall` consecutive bad
/// observations. Unknown until the first observation, which decides it at once: at start-up
/// there is no earlier state worth protecting.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    up: Option<bool>,
    streak: u32,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            up: None,
            streak: 0,
        }
    }

    /// Record one observation. Returns the new state when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        match self.up {
            None => {
                self.up = Some(ok);
                self.streak = 0;
                Some(ok)
            }
            Some(up) if up == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok { self.rise } else { self.fall };
                if self.streak >= needed {
                    self.up = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }

    /// Force a state at once (a wrong chain id needs no second opinion).
    pub fn force(&mut self, up: bool) -> Option<bool> {
        let changed = self.up != Some(up);
        self.up = Some(up);
        self.streak = 0;
        changed.then_some(up)
    }

    pub fn state(&self) -> Option<bool> {
        self.up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_observation_decides() {
        let mut h = Hysteresis::new(3, 2);
        assert_eq!(h.state(), None);
        assert_eq!(h.observe(false), Some(false));
        let mut h = Hysteresis::new(3, 2);
        assert_eq!(h.observe(true), Some(true));
    }

    #[test]
    fn one_blip_does_not_flip() {
        let mut h = Hysteresis::new(2, 2);
        h.observe(true);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None, "the streak of failures is broken");
        assert_eq!(h.observe(false), None);
        assert_eq!(h.state(), Some(true));
        assert_eq!(h.observe(false), Some(false), "two in a row flip it");
    }

    #[test]
    fn rise_and_fall_counts_differ() {
        let mut h = Hysteresis::new(3, 1);
        h.observe(true);
        assert_eq!(h.observe(false), Some(false));
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(true));
    }

    #[test]
    fn force_flips_at_once() {
        let mut h = Hysteresis::new(5, 5);
        h.observe(true);
        assert_eq!(h.force(false), Some(false));
        assert_eq!(h.force(false), None);
        assert_eq!(h.state(), Some(false));
    }
}
