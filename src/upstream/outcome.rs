//! The one classification of an attempt (STYLE.md 4): stats, failover and metrics all read
//! this value, so they can never disagree about what happened.

use std::time::Duration;

/// How one attempt at one upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A JSON-RPC `result`.
    Success,
    /// A JSON-RPC `error` object that is the answer (a revert, invalid params). Passed to the
    /// client as it is; never held against the upstream.
    RpcError,
    /// A JSON-RPC `error` object saying this node cannot answer now (header not found,
    /// missing trie node, ...): another upstream may.
    NodeError,
    /// HTTP 429: the upstream asks us to slow down.
    RateLimited,
    /// An HTTP 4xx caused by the request itself (400, 413, ...) with no JSON-RPC answer:
    /// not held against the upstream, though another one may accept the request.
    Rejected,
    /// Another HTTP error status (5xx, 401, 403, ...).
    HttpStatus,
    /// A 2xx answer that is not a JSON-RPC response to our request (garbage, truncated,
    /// wrong id).
    BadReply,
    /// No HTTP answer: connection refused or reset, TLS failure, oversize body.
    Transport,
    /// No complete answer within the upstream's timeout.
    Timeout,
    /// An answer larger than `max_response_bytes` to a call whose answers can be that large
    /// (a wide `eth_getLogs`): the request's doing. Not retried, not held against anyone.
    TooLarge,
    /// No room for the answer in the process's `max_buffered_bytes` in time: Manifold's
    /// own limit. Not retried (another upstream's answer would need the same room).
    OverBudget,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Success,
        Outcome::RpcError,
        Outcome::NodeError,
        Outcome::RateLimited,
        Outcome::Rejected,
        Outcome::HttpStatus,
        Outcome::BadReply,
        Outcome::Transport,
        Outcome::Timeout,
        Outcome::TooLarge,
        Outcome::OverBudget,
    ];

    /// The upstream, not the request, is at fault: counts against its health.
    pub fn is_upstream_fault(self) -> bool {
        !matches!(
            self,
            Outcome::Success
                | Outcome::RpcError
                | Outcome::Rejected
                | Outcome::TooLarge
                | Outcome::OverBudget
        )
    }

    /// Another upstream may do better: `false` for a limit of the request's or Manifold's
    /// own, which every upstream would meet the same way.
    pub fn may_retry(self) -> bool {
        !matches!(self, Outcome::TooLarge | Outcome::OverBudget)
    }

    /// Metric label; a fixed, small set.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RpcError => "rpc_error",
            Outcome::NodeError => "node_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Rejected => "rejected",
            Outcome::HttpStatus => "http_error",
            Outcome::BadReply => "bad_reply",
            Outcome::Transport => "transport_error",
            Outcome::Timeout => "timeout",
            Outcome::TooLarge => "too_large",
            Outcome::OverBudget => "over_budget",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed attempt: how, in words (for the client's error `data` and the log), how long
/// the upstream asked us to stay away, and whether the request may have reached a node.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub upstream: std::sync::Arc<str>,
    pub outcome: Outcome,
    pub detail: String,
    pub retry_after: Option<Duration>,
    /// `false` only when the request certainly did not take effect (no connection, or a
    /// refusal before processing). A call that is not safe to repeat stops at a `true`.
    pub maybe_delivered: bool,
    /// The node's own error object, when it sent one: what the client gets if no upstream
    /// does better.
    pub node_answer: Option<bytes::Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_labels_unique() {
        let mut labels = std::collections::HashSet::new();
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
            assert!(labels.insert(o.label()));
        }
    }

    #[test]
    fn answers_and_rejections_are_not_upstream_faults() {
        for o in Outcome::ALL {
            assert_eq!(
                o.is_upstream_fault(),
                !matches!(
                    o,
                    Outcome::Success
                        | Outcome::RpcError
                        | Outcome::Rejected
                        | Outcome::TooLarge
                        | Outcome::OverBudget
                )
            );
        }
    }
}
