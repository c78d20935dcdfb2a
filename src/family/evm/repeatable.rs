//! Which EVM calls may be sent again after an attempt that may have reached a node, and
//! which of those identical calls in flight may share one upstream call.

/// Whether a call may be sent again after an attempt that may have reached a node. Sending a
/// transaction twice is harmless on chain but turns a success into "already known", and
/// creating a filter twice leaks one; reads are always safe to repeat.
pub fn is_repeatable(method: &str) -> bool {
    // Sends of every flavour (private, conditional, sync, bundles, account abstraction) and
    // calls tied to state on one node (filters, subscriptions).
    const WRITE_PREFIXES: &[&str] = &["eth_send", "personal_send", "mev_send"];
    !(WRITE_PREFIXES.iter().any(|p| method.starts_with(p))
        || matches!(
            method,
            "eth_newFilter"
                | "eth_newBlockFilter"
                | "eth_newPendingTransactionFilter"
                | "eth_uninstallFilter"
                | "eth_getFilterChanges"
                | "eth_subscribe"
                | "eth_unsubscribe"
                | "eth_cancelPrivateTransaction"
        ))
}

/// Calls that change a node's own state (test-node controls, node administration, the
/// miner, signing with the node's keys): safe to repeat, each one still does something,
/// so identical ones are never shared.
pub fn changes_node_state(method: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "anvil_",
        "evm_",
        "hardhat_",
        "ganache_",
        "admin_",
        "miner_",
        "personal_",
        "clique_",
        "debug_set",
        "debug_start",
        "debug_stop",
    ];
    PREFIXES.iter().any(|p| method.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::evm::Evm;
    use crate::family::ChainFamily;

    #[test]
    fn reads_are_shareable_and_node_controls_are_not() {
        let evm = Evm::new(1);
        let shareable = |m: &str| evm.method_info(m, Some(b"[]")).shareable;
        assert!(shareable("eth_getBalance"));
        assert!(shareable("eth_call"));
        assert!(shareable("debug_traceTransaction"));
        for m in [
            "evm_mine",
            "anvil_mine",
            "anvil_setBalance",
            "hardhat_mine",
            "admin_addPeer",
            "miner_start",
            "debug_setHead",
            "eth_sendRawTransaction",
            "eth_getFilterChanges",
        ] {
            assert!(!shareable(m), "{m}");
        }
    }

    #[test]
    fn writes_and_node_bound_calls_are_not_repeatable() {
        for m in [
            "eth_sendRawTransaction",
            "eth_sendRawTransactionSync",
            "eth_sendRawTransactionConditional",
            "eth_sendPrivateTransaction",
            "eth_sendBundle",
            "eth_sendUserOperation",
            "personal_sendTransaction",
            "eth_newFilter",
            "eth_getFilterChanges",
            "eth_subscribe",
        ] {
            assert!(!is_repeatable(m), "{m}");
        }
        for m in [
            "eth_call",
            "eth_getBalance",
            "eth_getLogs",
            "eth_estimateGas",
        ] {
            assert!(is_repeatable(m), "{m}");
        }
    }
}
