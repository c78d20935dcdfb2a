//! The one place a failed call becomes the client's JSON-RPC error object (as linkerd's
//! `ServerRescue`): which code, which reason, what the message says about the attempts.
//!
//! The rules, in order: no upstream may serve it (-32091), every candidate at its `max_rps`
//! (-32094); a call not safe to repeat that may have reached a node gets `outcome_unknown`
//! (-32092), whatever the attempts said (a gateway's `-32603 request timed out` is what a
//! gateway says after forwarding to a node that may have taken it); a node's own error
//! object when that is the truest answer there is; the request's timeout (-32093); every
//! attempt rate limited (-32094); every attempt failed (-32092, `all_attempts_failed`).

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::call_metrics::CallOutcome;
use super::core::ChainCore;
use crate::jsonrpc::{codes, ErrorObject, Payload};
use crate::upstream::{AttemptFailure, Outcome, SetFailure};

impl ChainCore {
    /// The answer for a call whose attempts failed. `hash`: a broadcast transaction's, named
    /// in `data` when its outcome is unknown.
    pub(super) fn failure_payload(
        &self,
        failure: SetFailure,
        deadline: Instant,
        timeout: Duration,
        repeatable: bool,
        hash: Option<&str>,
    ) -> (Payload, CallOutcome) {
        let attempts = match failure {
            SetFailure::NoUpstream(why) => {
                return (
                    self.error(codes::NO_UPSTREAM, why, json!({ "reason": "no_upstream" })),
                    CallOutcome::NoUpstream,
                )
            }
            SetFailure::OverRate(why) => {
                return (
                    self.error(codes::RATE_LIMITED, why, json!({ "reason": "max_rps" })),
                    CallOutcome::RateLimited,
                )
            }
            SetFailure::Unknown(attempts) => return self.outcome_unknown(&attempts, hash),
            SetFailure::AllFailed(attempts) => attempts,
        };
        if !repeatable && attempts.iter().any(|a| a.maybe_delivered) {
            return self.outcome_unknown(&attempts, hash);
        }
        if let Some(limit) = self.limit_reached(&attempts) {
            return limit;
        }
        // A node's own error ("header not found" everywhere) is the truest answer there is.
        let node_answer = attempts
            .iter()
            .rev()
            .filter(|a| a.outcome == Outcome::NodeError)
            .find_map(|a| a.node_answer.clone());
        if let Some(answer) = node_answer {
            if attempts.iter().all(|a| a.outcome == Outcome::NodeError) || Instant::now() < deadline
            {
                return (Payload::Error(answer), CallOutcome::RpcError);
            }
        }
        if Instant::now() >= deadline {
            return (self.timeout_error(timeout, &attempts), CallOutcome::Timeout);
        }
        let all_limited =
            !attempts.is_empty() && attempts.iter().all(|a| a.outcome == Outcome::RateLimited);
        let (code, reason, outcome) = if all_limited {
            (
                codes::RATE_LIMITED,
                "rate_limited",
                CallOutcome::RateLimited,
            )
        } else {
            (
                codes::UPSTREAM_FAILED,
                "all_attempts_failed",
                CallOutcome::UpstreamFailed,
            )
        };
        let message = format!(
            "no upstream answered ({} attempt{} failed: {})",
            attempts.len(),
            if attempts.len() == 1 { "" } else { "s" },
            summary(&attempts)
        );
        (
            self.error(
                code,
                message,
                json!({ "reason": reason, "attempts": attempt_list(&attempts) }),
            ),
            outcome,
        )
    }

    /// -32005 when an attempt met a limit no other upstream would get past: an answer larger
    /// than `max_response_bytes` to a call that may have one (`response_too_large`: ask for
    /// less), or no room for the answer in `max_buffered_bytes` (`memory_budget`: try again).
    fn limit_reached(&self, attempts: &[AttemptFailure]) -> Option<(Payload, CallOutcome)> {
        let met = |o: Outcome| attempts.iter().any(|a| a.outcome == o);
        let (message, reason) = if met(Outcome::TooLarge) {
            (
                format!(
                    "the answer is larger than max_response_bytes ({} bytes): ask for less (a narrower block range, fewer addresses)",
                    self.config.policy.max_response_bytes
                ),
                "response_too_large",
            )
        } else if met(Outcome::OverBudget) {
            (
                format!(
                    "too many large answers held in memory at once (max_buffered_bytes, waited {} s): try again shortly",
                    crate::upstream::budget::BUDGET_WAIT.as_secs()
                ),
                "memory_budget",
            )
        } else {
            return None;
        };
        Some((
            self.error(
                codes::LIMIT_EXCEEDED,
                message,
                json!({ "reason": reason, "attempts": attempt_list(attempts) }),
            ),
            CallOutcome::LimitExceeded,
        ))
    }

    /// -32092 `outcome_unknown`: the request may have reached a node, and no answer says what
    /// it did. It was not repeated; the client should check before sending it again.
    pub(super) fn outcome_unknown(
        &self,
        attempts: &[AttemptFailure],
        hash: Option<&str>,
    ) -> (Payload, CallOutcome) {
        let mut message = String::from("outcome unknown: the request may have reached a node");
        if !attempts.is_empty() {
            message.push_str(&format!(" ({})", summary(attempts)));
        }
        message.push_str(match hash {
            Some(_) => "; it was not repeated, and Manifold watches for the transaction: look it up by hash before signing another",
            None => "; it was not repeated: check before sending again",
        });
        let mut data = json!({ "reason": "outcome_unknown", "attempts": attempt_list(attempts) });
        if let (Some(h), Some(obj)) = (hash, data.as_object_mut()) {
            obj.insert("hash".into(), json!(h));
        }
        (
            self.error(codes::UPSTREAM_FAILED, message, data),
            CallOutcome::UpstreamFailed,
        )
    }

    /// The answer for a batch item still unanswered at the batch's deadline: timed out, or,
    /// for a call not safe to repeat (it goes on in its own task), of unknown outcome.
    pub(super) fn batch_deadline_passed(&self, repeatable: bool) -> Payload {
        if repeatable {
            self.error(
                codes::TIMEOUT,
                format!(
                    "the batch did not complete within request_timeout ({})",
                    humantime::format_duration(self.config.policy.request_timeout)
                ),
                json!({ "reason": "request_timeout", "attempts": [] }),
            )
        } else {
            self.outcome_unknown(&[], None).0
        }
    }

    pub(super) fn timeout_error(&self, timeout: Duration, attempts: &[AttemptFailure]) -> Payload {
        let mut message = format!(
            "request timed out after {}",
            humantime::format_duration(timeout)
        );
        if !attempts.is_empty() {
            message.push_str(&format!(" ({})", summary(attempts)));
        }
        self.error(
            codes::TIMEOUT,
            message,
            json!({ "reason": "request_timeout", "attempts": attempt_list(attempts) }),
        )
    }

    /// A proxy error object; `data` always names the chain.
    pub(super) fn error(&self, code: i64, message: String, mut data: serde_json::Value) -> Payload {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("chain".into(), json!(&*self.config.name));
        }
        Payload::Error(
            ErrorObject::new(code, format!("manifold: {message}"))
                .with_data(data)
                .to_json(),
        )
    }
}

fn summary(attempts: &[AttemptFailure]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.upstream, a.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

fn attempt_list(attempts: &[AttemptFailure]) -> Vec<serde_json::Value> {
    attempts
        .iter()
        .map(
            |a| json!({"upstream": &*a.upstream, "outcome": a.outcome.label(), "detail": a.detail}),
        )
        .collect()
}
