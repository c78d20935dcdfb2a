//! One attempt: send one request to one upstream and classify what comes back, once, into
//! an `Outcome` (STYLE.md 4). Passive health, the breaker, the metrics and the failover
//! decision all read that one value, so they can never disagree about what happened.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::breaker::Verdict;
use super::client::TransportError;
use super::outcome::{AttemptFailure, Outcome};
use super::reply::read_reply;
use super::{passive, Admission, BreakerState, Upstream};
use crate::family::{Cost, ErrorClass, ProbeVerdict};
use crate::jsonrpc::Payload;

impl Upstream {
    /// Send one encoded request (sent with id `request_id`) and classify what comes back,
    /// giving up at `deadline` at the latest, and after the upstream's own timeout for
    /// ordinary calls. `admission` (from `admit`) carries the breaker's permit; without one
    /// (a look-up on the node that just answered) the breaker neither gates nor learns.
    pub async fn attempt(
        &self,
        admission: Option<Admission>,
        method: &str,
        request_id: &[u8],
        body: Bytes,
        deadline: Instant,
        cost: Cost,
    ) -> Result<Payload, AttemptFailure> {
        let mut in_flight = AttemptGuard::new(self, cost);
        let started = Instant::now();
        let limit = deadline.saturating_duration_since(started);
        let reply = match cost {
            Cost::Normal => self.client.post_within(body, limit).await,
            // A heavy attempt may run for minutes, and its timeout blames no one: if the
            // upstream is found dead meanwhile (by probes or other calls), the call moves
            // on instead of waiting out the deadline. Unrecorded: that verdict is made.
            Cost::Heavy => tokio::select! {
                r = self.client.post_for(body, limit) => r,
                () = self.taken_out() => {
                    return Err(AttemptFailure {
                        upstream: self.config.name.clone(),
                        outcome: Outcome::Transport,
                        detail: "abandoned: the upstream was taken out of service while the call ran".into(),
                        retry_after: None,
                        maybe_delivered: true,
                        node_answer: None,
                    });
                }
            },
        };
        // Queued behind `max_in_flight` for the whole time allowed: never sent. Slow all the
        // same (a timeout for failover), but it says nothing about the node: blameless.
        let never_sent = matches!(reply, Err(TransportError::Saturated(..)));
        // How long the exchange itself was allowed, when it timed out (the wait for a slot
        // before it is not the node's doing).
        let allowed = match &reply {
            Err(TransportError::Timeout(d)) => Some(*d),
            _ => None,
        };
        let (result, retry_after, maybe_delivered) = match reply {
            Ok(reply) => {
                let result = read_reply(request_id, &reply, self.family.answer_statuses());
                // A 5xx or an unreadable answer may come after the node acted on it.
                let delivered =
                    reply.status.is_server_error() || matches!(result, Err((Outcome::BadReply, _)));
                (result, reply.retry_after, delivered)
            }
            Err(e) => {
                let (outcome, delivered) = match e {
                    TransportError::Timeout(_) => (Outcome::Timeout, true),
                    // Never sent (`never_sent`): safe to send elsewhere.
                    TransportError::Saturated(..) => (Outcome::Timeout, false),
                    TransportError::Connect(_) => (Outcome::Transport, false),
                    // Too large for a call that can legitimately be huge (logs, traces): the
                    // request's doing, to narrow. For one small by nature (a balance), an
                    // oversized or endless answer is an unusable reply: the upstream's.
                    TransportError::TooLarge(_) if cost == Cost::Heavy => (Outcome::TooLarge, true),
                    TransportError::TooLarge(_) => (Outcome::BadReply, true),
                    TransportError::OverBudget(_) => (Outcome::OverBudget, true),
                    _ => (Outcome::Transport, true),
                };
                (Err((outcome, e.to_string())), None, delivered)
            }
        };
        let elapsed = started.elapsed();
        // The one classification of this attempt (STYLE.md 4): health, metrics and failover
        // all read `outcome`.
        let (outcome, result) = match result {
            Ok(Payload::Result(r)) => match self.family.check_answer(method, &r) {
                None => (Outcome::Success, Ok(Payload::Result(r))),
                Some(verdict) => self.answer_refused(verdict),
            },
            Ok(Payload::Error(e)) => match self.family.classify_error(method, &e) {
                ErrorClass::Answer => (Outcome::RpcError, Ok(Payload::Error(self.scrub_json(e)))),
                ErrorClass::NodeCannotAnswer => {
                    let detail = format!("node error: {}", excerpt(&e));
                    (Outcome::NodeError, Err((detail, Some(e))))
                }
                ErrorClass::RateLimited => {
                    let detail = format!("rate limited: {}", excerpt(&e));
                    (Outcome::RateLimited, Err((detail, Some(e))))
                }
            },
            Err((o, detail)) => (o, Err((detail, None))),
        };
        // A rate limit means the request was turned away, not processed.
        let maybe_delivered = maybe_delivered && outcome != Outcome::RateLimited;
        in_flight.passive.finish();
        // Limits of the request's or Manifold's own say nothing about the node either.
        let blameless = never_sent
            || matches!(outcome, Outcome::TooLarge | Outcome::OverBudget)
            || allowed.is_some_and(|allowed| {
                timeout_is_blameless(
                    cost,
                    allowed < self.client.timeout(),
                    allowed,
                    self.health.latency_quantile(0.99),
                )
            });
        if blameless {
            self.health.record_blameless();
        } else {
            self.health.record(outcome, cost, elapsed, retry_after);
        }
        self.metrics.record(&self.config.name, outcome, elapsed);
        if let Some(admission) = admission {
            let verdict = if blameless {
                Verdict::Neutral
            } else {
                breaker_verdict(outcome)
            };
            if let Some(t) = admission.0.record(verdict) {
                self.breaker_changed(&t);
            }
        }
        match result {
            Ok(p) => {
                tracing::debug!(upstream = %self.config.name, outcome = outcome.label(), ?elapsed, "attempt");
                Ok(p)
            }
            Err((detail, node_answer)) => {
                // What the upstream said is shown to the client and logged: without secrets.
                let detail = self.scrub(&detail);
                let node_answer = node_answer.map(|e| self.scrub_json(e));
                tracing::debug!(upstream = %self.config.name, outcome = outcome.label(), %detail, ?elapsed, "attempt failed");
                Err(AttemptFailure {
                    upstream: self.config.name.clone(),
                    outcome,
                    detail,
                    retry_after,
                    maybe_delivered: maybe_delivered || outcome == Outcome::NodeError,
                    node_answer,
                })
            }
        }
    }

    /// A `result` that a probe would have failed (`ChainFamily::check_answer`): not passed
    /// on. An upstream found on another chain is out at once, as its next probe would put it.
    fn answer_refused(
        &self,
        verdict: ProbeVerdict,
    ) -> (Outcome, Result<Payload, (String, Option<Bytes>)>) {
        let why = match &verdict {
            ProbeVerdict::WrongChain(why) | ProbeVerdict::Failed(why) => why.clone(),
            ProbeVerdict::Healthy { .. } | ProbeVerdict::Syncing { .. } => {
                "refused by the chain family".to_string()
            }
        };
        if matches!(verdict, ProbeVerdict::WrongChain(_)) {
            if let Some(t) = self.active.apply_seen(&verdict) {
                self.health_changed(&t);
                self.metrics.healthy.set(0.0);
            }
        }
        (Outcome::BadReply, Err((why, None)))
    }

    /// Resolves when the upstream goes from serving to out of service (failed probes, or
    /// its breaker opened); never, if it was out already (a last resort). Polled: it runs
    /// only beside heavy attempts, which are few, and a quarter of a second is nothing
    /// next to their timeout.
    async fn taken_out(&self) {
        let serving =
            || self.active().status().is_serving() && self.breaker.state() != BreakerState::Open;
        if !serving() {
            return std::future::pending().await;
        }
        while serving() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// What an attempt's outcome tells the breaker. Only faults of the upstream itself count:
/// not a node that is behind (any client can ask every node for a block none has), not a
/// rate limit (parked instead), and not a request the upstream refused for its own sake.
/// (Timeouts that blame no one are sorted out before: `attempt`.)
fn breaker_verdict(outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Success | Outcome::RpcError => Verdict::Success,
        Outcome::NodeError
        | Outcome::RateLimited
        | Outcome::Rejected
        | Outcome::TooLarge
        | Outcome::OverBudget => Verdict::Neutral,
        Outcome::Timeout | Outcome::Transport | Outcome::HttpStatus | Outcome::BadReply => {
            Verdict::Failure
        }
    }
}

/// Whether an attempt's timeout says nothing about the upstream. A call slow by nature
/// times out on the best of nodes; so does one given less time (`cut_short`: less than the
/// upstream's own `timeout`, by the call's deadline) than the upstream's usual slow answers
/// take (its p99). An upstream with no answers to go by is blamed: a dead one must not hide
/// behind a short `request_timeout`.
fn timeout_is_blameless(
    cost: Cost,
    cut_short: bool,
    elapsed: Duration,
    p99: Option<Duration>,
) -> bool {
    cost == Cost::Heavy || (cut_short && p99.is_some_and(|p99| elapsed < p99))
}

/// The start of a node's error object, for messages and logs.
fn excerpt(error: &[u8]) -> String {
    String::from_utf8_lossy(error).chars().take(200).collect()
}

/// One attempt in flight, in passive health and in the metrics (the in-flight gauge, and
/// `outcome="cancelled"` for an attempt dropped before it had an outcome: a hedge's loser,
/// the rest of a call answered elsewhere or whose client went away).
struct AttemptGuard<'a> {
    upstream: &'a Upstream,
    passive: passive::InFlight<'a>,
}

impl<'a> AttemptGuard<'a> {
    fn new(upstream: &'a Upstream, cost: Cost) -> Self {
        upstream.metrics.in_flight.increment(1.0);
        Self {
            upstream,
            passive: upstream.health.start(cost),
        }
    }
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        let metrics = &self.upstream.metrics;
        metrics.in_flight.decrement(1.0);
        if !self.passive.is_finished() {
            metrics.count(&self.upstream.config.name, CANCELLED, "cancelled");
        }
    }
}

/// `UpstreamMetrics::by_outcome`'s slot for cancelled attempts, after the outcomes'.
const CANCELLED: usize = Outcome::ALL.len();

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_timeout_blames_the_upstream_only_when_it_had_its_time() {
        let p99 = Some(MS * 50);
        // Its whole timeout, and no answer: the upstream's fault.
        assert!(!timeout_is_blameless(Cost::Normal, false, MS * 10, p99));
        // Cut short by the call's deadline, before its usual slow answers: nobody's.
        assert!(timeout_is_blameless(Cost::Normal, true, MS * 10, p99));
        // Cut short, with no answers to go by (a hung node under a short request_timeout).
        assert!(!timeout_is_blameless(Cost::Normal, true, MS * 10, None));
        // Cut short, but already slower than 99% of its answers: the upstream's.
        assert!(!timeout_is_blameless(Cost::Normal, true, MS * 80, p99));
        // Slow by nature: never.
        assert!(timeout_is_blameless(Cost::Heavy, false, MS * 10_000, p99));
    }
}
