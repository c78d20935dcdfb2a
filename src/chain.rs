//! One chain: turns a client's call into an upstream request, bounds it in time, and always
//! produces an answer for the client (the node's, or the proxy's own error object).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use metrics::{Counter, Histogram, Label};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{ChainConfig, Config};
use crate::family::{self, ChainFamily, Cost, MethodLabels};
use crate::health::checker::{self, ChainHealth};
use crate::health::ChainHead;
use crate::jsonrpc::{codes, Call, ErrorObject, Payload};
use crate::metrics::{
    LabelTable, Metrics, BROADCASTS, CHAIN_HEAD, HEDGES, REQUESTS, REQUEST_DURATION, RETRIES,
};
use crate::upstream::{
    broadcast, AttemptFailure, BroadcastRequest, BroadcastResult, CallPlan, Outcome, Route,
    SetFailure, SetMetrics, Upstream, UpstreamSet,
};

/// How a client's call ended, for `manifold_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    RpcError,
    NoUpstream,
    UpstreamFailed,
    RateLimited,
    Timeout,
}

impl CallOutcome {
    const COUNT: usize = 6;

    fn label(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::RpcError => "rpc_error",
            CallOutcome::NoUpstream => "no_upstream",
            CallOutcome::UpstreamFailed => "upstream_failed",
            CallOutcome::RateLimited => "rate_limited",
            CallOutcome::Timeout => "timeout",
        }
    }
}

#[derive(Debug)]
pub struct Chain {
    pub config: ChainConfig,
    family: Arc<dyn ChainFamily>,
    upstreams: UpstreamSet,
    health: Arc<ChainHealth>,
    next_id: AtomicU64,
    metrics: ChainMetrics,
}

#[derive(Debug)]
struct ChainMetrics {
    registry: Arc<Metrics>,
    labels: MethodLabels,
    /// `method index * CallOutcome::COUNT + outcome`.
    requests: LabelTable<Counter>,
    durations: LabelTable<Histogram>,
    broadcasts: LabelTable<Counter>,
}

impl Chain {
    pub fn new(
        config: ChainConfig,
        server: &Config,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let family = family::for_chain(&config);
        // An upstream answer is bounded like a client request, but with room for the largest
        // real answers (blocks with traces, wide eth_getLogs ranges).
        let max_response_bytes = server.server.max_request_bytes.max(256 * 1024 * 1024);
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                Upstream::new(
                    &config.name,
                    u.clone(),
                    metrics,
                    max_response_bytes,
                    &config.policy.health,
                    &config.policy.breaker,
                    family.clone(),
                )
                .map(Arc::new)
                .map_err(|e| format!("chain `{}`, upstream `{}`: {e}", config.name, u.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let labels = family.method_labels();
        // The head goes back only when the upstreams have agreed on a lower one for three
        // probe intervals.
        let head = Arc::new(ChainHead::new(config.policy.health.interval * 3));
        let chain_label = |result: &'static str| {
            vec![
                Label::new("chain", config.name.to_string()),
                Label::new("result", result),
            ]
        };
        let set_metrics = SetMetrics {
            retries_sent: metrics.counter(RETRIES, chain_label("sent")),
            retries_denied: metrics.counter(RETRIES, chain_label("budget_exhausted")),
            hedges_sent: metrics.counter(HEDGES, chain_label("sent")),
            hedges_won: metrics.counter(HEDGES, chain_label("won")),
        };
        let upstreams = UpstreamSet::new(
            upstreams,
            config.policy.max_attempts,
            head.clone(),
            config.policy.hedge.clone(),
            config.policy.retry_budget,
            set_metrics,
        );
        let health = Arc::new(ChainHealth {
            probed: upstreams.probe_signal(),
            chain: config.name.clone(),
            family: family.clone(),
            upstreams: upstreams.shared(),
            head,
            policy: config.policy.health.clone(),
            max_lag_blocks: config.policy.max_lag_blocks,
            head_gauge: metrics.gauge(
                CHAIN_HEAD,
                vec![Label::new("chain", config.name.to_string())],
            ),
        });
        Ok(Self {
            family,
            upstreams,
            health,
            next_id: AtomicU64::new(1),
            metrics: ChainMetrics {
                registry: metrics.clone(),
                requests: LabelTable::new(labels.len() * CallOutcome::COUNT),
                durations: LabelTable::new(labels.len()),
                broadcasts: LabelTable::new(BroadcastResult::ALL),
                labels,
            },
            config,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.config.name
    }

    pub fn upstreams(&self) -> &UpstreamSet {
        &self.upstreams
    }

    /// The chain head, once some upstream's head is known.
    pub fn head(&self) -> Option<u64> {
        self.health.head.get()
    }

    /// Start one health checker per upstream; they stop when `stop` turns true.
    pub fn spawn_health_checks(&self, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        self.upstreams
            .iter()
            .map(|u| tokio::spawn(checker::run(self.health.clone(), u.clone(), stop.clone())))
            .collect()
    }

    /// Answer one call. Never fails: proxy-level failures become JSON-RPC error objects.
    pub async fn call(&self, call: &Call) -> Payload {
        let span = tracing::debug_span!("call", chain = %self.config.name, method = %call.method);
        self.call_inner(call).instrument(span).await
    }

    async fn call_inner(&self, call: &Call) -> Payload {
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id_text = id.to_string();
        let body = encode_upstream_request(&id_text, call);
        let repeatable = self.family.is_repeatable(&call.method);
        let class = self.family.classify(&call.method, call.params.as_deref());
        let timeout = match class.cost {
            Cost::Normal => self.config.policy.request_timeout,
            Cost::Heavy => self.config.policy.heavy_request_timeout,
        };
        let deadline = started + timeout;
        let route = Route {
            need: class.need,
            block_lookup: class.block_lookup,
            chain_head: self.head(),
            max_lag_blocks: self.config.policy.max_lag_blocks,
            max_ahead_blocks: crate::health::outlier_tolerance(self.config.policy.max_lag_blocks),
            cost: class.cost,
        };
        // Every attempt is bounded by the deadline itself; this outer bound is a safety net
        // that should never fire first.
        let work = async {
            match self.family.broadcast(&call.method, call.params.as_deref()) {
                // A signed transaction: several upstreams at once (see upstream::broadcast).
                Some(Ok(tx)) => {
                    let lookup_id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
                    let lookup_method = format!("\"{}\"", tx.lookup.0);
                    let lookup_body = encode_request(
                        &lookup_id,
                        lookup_method.as_bytes(),
                        Some(tx.lookup.1.as_bytes()),
                    );
                    let request = BroadcastRequest {
                        method: &call.method,
                        route,
                        tx: &tx,
                        request_id: id_text.as_bytes(),
                        body: body.clone(),
                        lookup_id: lookup_id.as_bytes(),
                        lookup_body,
                        deadline,
                        fanout: usize::try_from(self.config.policy.broadcast_fanout).unwrap_or(1),
                    };
                    let (result, verdict) =
                        broadcast(&self.upstreams, &*self.family, request).await;
                    self.metrics.record_broadcast(&self.config.name, verdict);
                    tracing::info!(hash = %tx.hash_json, result = verdict.label(), "transaction broadcast");
                    result
                }
                // Anything else, an unreadable transaction included (the node says why).
                _ => {
                    let plan = CallPlan {
                        method: &call.method,
                        route,
                        request_id: id_text.as_bytes(),
                        body,
                        deadline,
                        repeatable,
                    };
                    self.upstreams.call(&plan).await
                }
            }
        };
        let result = tokio::time::timeout_at(deadline + SAFETY_MARGIN, work).await;
        let (payload, outcome) = match result {
            Ok(Ok(p @ Payload::Result(_))) => (p, CallOutcome::Success),
            Ok(Ok(p @ Payload::Error(_))) => (p, CallOutcome::RpcError),
            Ok(Err(failure)) => self.failure_payload(failure, deadline, timeout, repeatable),
            Err(_) => (self.timeout_error(timeout, &[]), CallOutcome::Timeout),
        };

        self.metrics
            .record(&self.config.name, &call.method, outcome, started.elapsed());
        if outcome != CallOutcome::Success && outcome != CallOutcome::RpcError {
            tracing::debug!(outcome = outcome.label(), "call failed");
        }
        payload
    }

    fn failure_payload(
        &self,
        failure: SetFailure,
        deadline: Instant,
        timeout: std::time::Duration,
        repeatable: bool,
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
            SetFailure::AllFailed(attempts) => attempts,
        };
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
        let unknown = !repeatable && attempts.iter().any(|a| a.maybe_delivered);
        let (code, reason, outcome) = if all_limited {
            (
                codes::RATE_LIMITED,
                "rate_limited",
                CallOutcome::RateLimited,
            )
        } else if unknown {
            (
                codes::UPSTREAM_FAILED,
                "outcome_unknown",
                CallOutcome::UpstreamFailed,
            )
        } else {
            (
                codes::UPSTREAM_FAILED,
                "all_attempts_failed",
                CallOutcome::UpstreamFailed,
            )
        };
        let mut message = format!(
            "no upstream answered ({} attempt{} failed: {})",
            attempts.len(),
            if attempts.len() == 1 { "" } else { "s" },
            summary(&attempts)
        );
        if unknown {
            message.push_str(
                "; the request may have reached a node and was not repeated: check before sending again",
            );
        }
        (
            self.error(
                code,
                message,
                json!({ "reason": reason, "attempts": attempt_list(&attempts) }),
            ),
            outcome,
        )
    }

    fn timeout_error(&self, timeout: std::time::Duration, attempts: &[AttemptFailure]) -> Payload {
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
    fn error(&self, code: i64, message: String, mut data: serde_json::Value) -> Payload {
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

impl ChainMetrics {
    fn record_broadcast(&self, chain: &Arc<str>, result: BroadcastResult) {
        self.broadcasts
            .get(result as usize, || {
                self.registry.counter(
                    BROADCASTS,
                    vec![
                        Label::new("chain", chain.to_string()),
                        Label::new("result", result.label()),
                    ],
                )
            })
            .increment(1);
    }

    fn record(
        &self,
        chain: &Arc<str>,
        method: &str,
        outcome: CallOutcome,
        elapsed: std::time::Duration,
    ) {
        let m = self.labels.index(method);
        let method_label = self.labels.label(m);
        let labels = |extra: Option<&'static str>| {
            let mut l = vec![
                Label::new("chain", chain.to_string()),
                Label::new("method", method_label),
            ];
            if let Some(o) = extra {
                l.push(Label::new("outcome", o));
            }
            l
        };
        self.requests
            .get(m * CallOutcome::COUNT + outcome as usize, || {
                self.registry
                    .counter(REQUESTS, labels(Some(outcome.label())))
            })
            .increment(1);
        self.durations
            .get(m, || {
                self.registry.histogram(REQUEST_DURATION, labels(None))
            })
            .record(elapsed.as_secs_f64());
    }
}

/// How long past the deadline the outer bound waits before abandoning the attempts.
const SAFETY_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

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

/// `{"jsonrpc":"2.0","id":<id>,"method":<as sent>,"params":<as sent>}`: our own id, so that
/// the client's id never depends on how an upstream treats ids.
fn encode_upstream_request(id: &str, call: &Call) -> Bytes {
    encode_request(id, &call.method_json, call.params.as_deref())
}

fn encode_request(id: &str, method_json: &[u8], params: Option<&[u8]>) -> Bytes {
    let params_len = params.map_or(0, <[u8]>::len);
    let mut buf = BytesMut::with_capacity(48 + id.len() + method_json.len() + params_len);
    buf.put_slice(br#"{"jsonrpc":"2.0","id":"#);
    buf.put_slice(id.as_bytes());
    buf.put_slice(br#","method":"#);
    buf.put_slice(method_json);
    if let Some(params) = params {
        buf.put_slice(br#","params":"#);
        buf.put_slice(params);
    }
    buf.put_u8(b'}');
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{decode, Incoming, Item, Limits};

    #[test]
    fn upstream_request_keeps_method_and_params_bytes() {
        let body = Bytes::from_static(
            br#"{"id":"client","jsonrpc":"2.0","params":[ "0x1" , true ],"method":"eth_\u0067et"}"#,
        );
        let Ok(Incoming::Single(Item::Call(call))) = decode(&body, Limits { max_batch_len: 1 })
        else {
            panic!()
        };
        let out = encode_upstream_request("42", &call);
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0","id":42,"method":"eth_\u0067et","params":[ "0x1" , true ]}"#
        );
    }
}
