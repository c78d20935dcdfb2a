//! Chain families: what differs between EVM, Solana and Bitcoin JSON-RPC.
//!
//! The core (routing, failover, metrics) knows nothing of any chain's methods. What a family
//! knows lives here: for now, the set of method names worth a metric label of their own, and
//! which calls are unsafe to repeat.
//! Health probes, method classes and error classification join it with the routing work.

pub mod evm;

use crate::config::Family;

/// Whether a call may be sent again after an attempt that may have reached a node.
pub fn is_repeatable(family: Family, method: &str) -> bool {
    match family {
        Family::Evm => evm::is_repeatable(method),
    }
}

/// The bounded set of method labels for metrics: known methods, then `other`.
#[derive(Debug, Clone, Copy)]
pub struct MethodLabels {
    known: &'static [&'static str],
}

impl MethodLabels {
    pub fn for_family(family: Family) -> Self {
        match family {
            Family::Evm => Self {
                known: evm::KNOWN_METHODS,
            },
        }
    }

    /// Number of distinct labels, `other` included.
    pub fn len(&self) -> usize {
        self.known.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Index of the method's label in `0..len()`.
    pub fn index(&self, method: &str) -> usize {
        self.known
            .binary_search(&method)
            .unwrap_or(self.known.len())
    }

    pub fn label(&self, index: usize) -> &'static str {
        self.known.get(index).copied().unwrap_or("other")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_sorted_and_unique() {
        assert!(evm::KNOWN_METHODS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn transactions_and_filters_are_not_repeatable() {
        assert!(!is_repeatable(Family::Evm, "eth_sendRawTransaction"));
        assert!(!is_repeatable(Family::Evm, "eth_newFilter"));
        assert!(is_repeatable(Family::Evm, "eth_getBalance"));
        assert!(is_repeatable(Family::Evm, "eth_call"));
    }

    #[test]
    fn unknown_methods_share_the_other_label() {
        let labels = MethodLabels::for_family(Family::Evm);
        let i = labels.index("eth_call");
        assert_eq!(labels.label(i), "eth_call");
        let o = labels.index("made_up_method");
        assert_eq!(labels.label(o), "other");
        assert_eq!(o, labels.len() - 1);
    }
}
