//! A socket's subscriptions (`eth_subscribe`, `eth_unsubscribe`): their ids, their kinds,
//! and the notifications they get.
//!
//! An id is Manifold's own (16 random bytes as `0x` hex), the same whichever upstream the
//! chain's view came from: no upstream subscription id ever reaches a client.

use bytes::Bytes;
use metrics::{Counter, Gauge, Label};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use std::sync::Arc;

use crate::chain::heads::NewHead;
use crate::chain::log_feed::LogBatch;
use crate::family::{ChainFamily, LogFilter};
use crate::jsonrpc::{codes, Call, ErrorObject, Payload};
use crate::metrics::{Metrics, WS_NOTIFICATIONS, WS_SUBSCRIPTIONS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    NewHeads,
    Logs,
    NewPendingTransactions,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::NewHeads, Kind::Logs, Kind::NewPendingTransactions];

    fn label(self) -> &'static str {
        match self {
            Kind::NewHeads => "newHeads",
            Kind::Logs => "logs",
            Kind::NewPendingTransactions => "newPendingTransactions",
        }
    }
}

const OFFERED: &str = "newHeads, logs and newPendingTransactions";

#[derive(Debug)]
struct Sub {
    id: String,
    kind: Kind,
    /// A logs subscription's filter.
    filter: LogFilter,
    /// Notifications start once the answer that gave the id has been queued (a batch's
    /// answer comes after its items run).
    active: bool,
    /// `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x…","result":`
    prefix: Vec<u8>,
}

#[derive(Debug)]
struct KindMetrics {
    open: Gauge,
    sent: Counter,
}

#[derive(Debug)]
pub(super) struct Subscriptions {
    max: usize,
    /// Reads logs filters.
    family: Arc<dyn ChainFamily>,
    /// At most `max` (128 by default): scanned, not indexed.
    subs: Vec<Sub>,
    /// Made, not notifying yet, not yet taken (`take_inactive`).
    inactive: Vec<String>,
    metrics: Vec<KindMetrics>,
}

impl Subscriptions {
    pub(super) fn new(
        max: usize,
        chain: &str,
        family: Arc<dyn ChainFamily>,
        metrics: &Metrics,
    ) -> Self {
        let labels = |kind: Kind| {
            vec![
                Label::new("chain", chain.to_string()),
                Label::new("kind", kind.label()),
            ]
        };
        Self {
            max,
            family,
            subs: Vec::new(),
            inactive: Vec::new(),
            metrics: Kind::ALL
                .iter()
                .map(|k| KindMetrics {
                    open: metrics.gauge(WS_SUBSCRIPTIONS, labels(*k)),
                    sent: metrics.counter(WS_NOTIFICATIONS, labels(*k)),
                })
                .collect(),
        }
    }

    fn kind_metrics(&self, kind: Kind) -> Option<&KindMetrics> {
        self.metrics.get(kind as usize)
    }

    /// The answer to `eth_subscribe` or `eth_unsubscribe`; `None` for any other method.
    /// A subscription made here gets no notification until `activate` (once its answer is
    /// queued: `take_inactive` lists it).
    pub(super) fn answer(&mut self, call: &Call) -> Option<Payload> {
        let answer = match call.method.as_str() {
            "eth_subscribe" => self.subscribe(call.params.as_deref()),
            "eth_unsubscribe" => self.unsubscribe(call.params.as_deref()),
            _ => return None,
        };
        Some(match answer {
            Ok(v) => Payload::Result(Bytes::from(v.to_string())),
            Err(e) => Payload::Error(e.to_json()),
        })
    }

    fn subscribe(&mut self, params: Option<&[u8]>) -> Result<Value, ErrorObject> {
        let params = list(params)?;
        let mut filter = LogFilter::default();
        let kind =
            match params.first().and_then(Value::as_str) {
                Some("newHeads") if params.len() == 1 => Kind::NewHeads,
                Some("newHeads") => return Err(invalid("newHeads takes no parameters")),
                Some("logs") if params.len() <= 2 => {
                    if let Some(f) = params.get(1) {
                        filter = self.family.log_filter(f).map_err(|e| invalid(&e))?;
                    }
                    Kind::Logs
                }
                Some("logs") => return Err(invalid("expected [\"logs\", filter]")),
                // Hashes only: geth's `true` (whole transactions) would need a lookup per hash.
                Some("newPendingTransactions") => match params.get(1) {
                    None | Some(Value::Bool(false)) if params.len() <= 2 => {
                        Kind::NewPendingTransactions
                    }
                    Some(Value::Bool(true)) => {
                        return Err(invalid(
                            "newPendingTransactions gives hashes only (no full transactions)",
                        ))
                    }
                    _ => return Err(invalid("expected [\"newPendingTransactions\"]")),
                },
                Some(other @ ("syncing" | "transactionReceipts")) => {
                    return Err(ErrorObject::new(
                        codes::METHOD_NOT_FOUND,
                        format!(
                            "manifold: `{other}` subscriptions are not offered yet ({OFFERED} are)"
                        ),
                    ))
                }
                Some(other) => {
                    let shown: String = other.chars().take(64).collect();
                    return Err(ErrorObject::new(
                        codes::METHOD_NOT_FOUND,
                        format!("manifold: no `{shown}` subscription ({OFFERED} are offered)"),
                    ));
                }
                None => return Err(invalid(
                    "expected [\"newHeads\"], [\"logs\", filter] or [\"newPendingTransactions\"]",
                )),
            };
        if self.subs.len() >= self.max {
            return Err(ErrorObject::new(
                codes::LIMIT_EXCEEDED,
                format!(
                    "manifold: too many subscriptions on this connection ({}, websocket.max_subscriptions)",
                    self.max
                ),
            )
            .with_data(json!({ "reason": "max_subscriptions" })));
        }
        let id = format!("0x{:032x}", fastrand::u128(..));
        let prefix = format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{id}","result":"#
        )
        .into_bytes();
        if let Some(m) = self.kind_metrics(kind) {
            m.open.increment(1.0);
        }
        self.inactive.push(id.clone());
        self.subs.push(Sub {
            id: id.clone(),
            kind,
            filter,
            active: false,
            prefix,
        });
        Ok(Value::String(id))
    }

    fn unsubscribe(&mut self, params: Option<&[u8]>) -> Result<Value, ErrorObject> {
        let params = list(params)?;
        let (Some(id), 1) = (params.first().and_then(Value::as_str), params.len()) else {
            return Err(invalid("expected [subscription id]"));
        };
        let Some(at) = self.subs.iter().position(|s| s.id.eq_ignore_ascii_case(id)) else {
            return Ok(Value::Bool(false));
        };
        let sub = self.subs.swap_remove(at);
        if let Some(m) = self.kind_metrics(sub.kind) {
            m.open.decrement(1.0);
        }
        Ok(Value::Bool(true))
    }

    /// The ids of the subscriptions made since the last call (not notifying yet).
    pub(super) fn take_inactive(&mut self) -> Vec<String> {
        std::mem::take(&mut self.inactive)
    }

    /// Let these subscriptions notify from now on.
    pub(super) fn activate(&mut self, ids: &[String]) {
        for s in self.subs.iter_mut().filter(|s| ids.contains(&s.id)) {
            s.active = true;
        }
    }

    /// Whether any subscription wants new heads (made active or not yet).
    pub(super) fn wants_heads(&self) -> bool {
        self.subs.iter().any(|s| s.kind == Kind::NewHeads)
    }

    /// Whether any subscription wants logs.
    pub(super) fn wants_logs(&self) -> bool {
        self.subs.iter().any(|s| s.kind == Kind::Logs)
    }

    /// Whether any subscription wants pending transactions.
    pub(super) fn wants_pending(&self) -> bool {
        self.subs
            .iter()
            .any(|s| s.kind == Kind::NewPendingTransactions)
    }

    /// The notifications of a pending transaction's hash, one per active subscription.
    pub(super) fn pending_messages<'a>(&'a self, hash: &str) -> impl Iterator<Item = Message> + 'a {
        let sent = self
            .kind_metrics(Kind::NewPendingTransactions)
            .map(|m| &m.sent);
        let quoted = Bytes::from(format!("\"{hash}\""));
        self.subs
            .iter()
            .filter(|s| s.active && s.kind == Kind::NewPendingTransactions)
            .map(move |s| {
                if let Some(c) = sent {
                    c.increment(1);
                }
                notification(&s.prefix, &quoted)
            })
    }

    /// The notifications of `batch`: each log, to each active `logs` subscription whose
    /// filter it matches, in order.
    pub(super) fn log_messages<'a>(
        &'a self,
        batch: &'a LogBatch,
    ) -> impl Iterator<Item = Message> + 'a {
        let sent = self.kind_metrics(Kind::Logs).map(|m| &m.sent);
        batch.logs.iter().flat_map(move |log| {
            self.subs
                .iter()
                .filter(move |s| s.active && s.kind == Kind::Logs && s.filter.matches(log))
                .map(move |s| {
                    if let Some(c) = sent {
                        c.increment(1);
                    }
                    notification(&s.prefix, &log.json)
                })
        })
    }

    /// The notifications of `head`, one per active `newHeads` subscription.
    pub(super) fn head_messages<'a>(
        &'a self,
        head: &'a NewHead,
    ) -> impl Iterator<Item = Message> + 'a {
        let sent = self.kind_metrics(Kind::NewHeads).map(|m| &m.sent);
        self.subs
            .iter()
            .filter(|s| s.active && s.kind == Kind::NewHeads)
            .map(move |s| {
                if let Some(c) = sent {
                    c.increment(1);
                }
                notification(&s.prefix, &head.header)
            })
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for s in &self.subs {
            if let Some(m) = self.kind_metrics(s.kind) {
                m.open.decrement(1.0);
            }
        }
    }
}

fn notification(prefix: &[u8], result: &[u8]) -> Message {
    let mut text = Vec::with_capacity(prefix.len() + result.len() + 2);
    text.extend_from_slice(prefix);
    text.extend_from_slice(result);
    text.extend_from_slice(b"}}");
    super::session::text(Bytes::from(text))
}

fn list(params: Option<&[u8]>) -> Result<Vec<Value>, ErrorObject> {
    match params.map(serde_json::from_slice::<Vec<Value>>) {
        Some(Ok(v)) => Ok(v),
        None => Ok(Vec::new()),
        Some(Err(_)) => Err(invalid("params must be an array")),
    }
}

fn invalid(message: &str) -> ErrorObject {
    ErrorObject::new(codes::INVALID_PARAMS, format!("manifold: {message}"))
}
