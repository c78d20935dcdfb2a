//! The one classification of an attempt (STYLE.md 4): stats, failover and metrics all read
//! this value, so they can never disagree about what happened.

use std::time::Duration;

/// How one attempt at one upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A JSON-RPC `result`.
    Success,
    /// A JSON-RPC `error` object: the upstream answered. Passed to the client as it is.
    RpcError,
    /// HTTP 429: the upstream asks us to slow down.
    RateLimited,
    /// Another HTTP error status (5xx, 401, 403, ...).
    HttpStatus,
    /// A 2xx answer that is not a JSON-RPC response to our request (garbage, truncated,
    /// wrong id).
    BadReply,
    /// No HTTP answer: connection refused or reset, TLS failure, oversize body.
    Transport,
    /// No complete answer within the upstream's timeout.
    Timeout,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::RpcError,
        Outcome::RateLimited,
        Outcome::HttpStatus,
        Outcome::BadReply,
        Outcome::Transport,
        Outcome::Timeout,
    ];

    /// The upstream produced a JSON-RPC answer: nothing to fail over from.
    pub fn is_answer(self) -> bool {
        matches!(self, Outcome::Success | Outcome::RpcError)
    }

    /// The upstream, not the request, is at fault: counts against it, and another upstream
    /// may do better.
    pub fn is_upstream_fault(self) -> bool {
        !self.is_answer()
    }

    /// Metric label; a fixed, small set.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RpcError => "rpc_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::HttpStatus => "http_error",
            Outcome::BadReply => "bad_reply",
            Outcome::Transport => "transport_error",
            Outcome::Timeout => "timeout",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed attempt: how, in words (for the client's error `data` and the log), and how long
/// the upstream asked us to stay away.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub upstream: std::sync::Arc<str>,
    pub outcome: Outcome,
    pub detail: String,
    pub retry_after: Option<Duration>,
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
    fn only_answers_are_not_upstream_faults() {
        for o in Outcome::ALL {
            assert_eq!(
                o.is_upstream_fault(),
                !matches!(o, Outcome::Success | Outcome::RpcError)
            );
        }
    }
}
