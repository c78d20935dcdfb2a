//! The filter methods answered from the chain's own filters (`chain::filters`):
//! `eth_newFilter`, `eth_newBlockFilter`, `eth_newPendingTransactionFilter`,
//! `eth_getFilterChanges`, `eth_getFilterLogs` (an `eth_getLogs` with the filter's
//! criteria, sent down the stack: split, cached and routed like any) and
//! `eth_uninstallFilter`. An id this chain did not make goes on to the upstreams, whose
//! answer, "filter not found" included, is the node's.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use serde_json::{json, Value};
use tower::{Service, ServiceExt};

use super::core::ChainCore;
use super::filters::FilterKind;
use super::stack::{Answer, AnswerFuture, ChainCall, WithCore};
use super::CallOutcome;
use crate::jsonrpc::{codes, Payload};

#[derive(Debug, Clone)]
pub struct Filtering<S> {
    inner: S,
    core: Arc<ChainCore>,
}

impl<S> WithCore<S> for Filtering<()> {
    type Service = Filtering<S>;

    fn wrap(inner: S, core: Arc<ChainCore>) -> Filtering<S> {
        Filtering { inner, core }
    }
}

/// What a filter method comes to.
enum Handled {
    Answer(Answer),
    /// `eth_getFilterLogs` of a filter held here: this `eth_getLogs` down the stack.
    Logs(ChainCall),
    /// Not a filter of this chain's: to the upstreams as it came.
    Pass(ChainCall),
}

impl<S> Service<ChainCall> for Filtering<S>
where
    S: Service<ChainCall, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Either<S::Future, AnswerFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ChainCall) -> Self::Future {
        match handle(&self.core, call) {
            Handled::Pass(call) => Either::Left(self.inner.call(call)),
            Handled::Answer(a) => Either::Right(Box::pin(std::future::ready(Ok(a)))),
            Handled::Logs(call) => {
                // A clone, which `oneshot` readies: this future outlives the borrow.
                Either::Right(Box::pin(self.inner.clone().oneshot(call)))
            }
        }
    }
}

fn handle(core: &Arc<ChainCore>, call: ChainCall) -> Handled {
    let filters = &core.filters;
    let params = || -> Vec<Value> {
        call.call
            .params
            .as_deref()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_default()
    };
    let id = || params().first().and_then(Value::as_str).map(str::to_string);
    let made = |kind: FilterKind| match filters.create(kind) {
        Some(id) => ok(json!(id)),
        None => Handled::Answer(Answer::new(
            core.error(
                codes::LIMIT_EXCEEDED,
                format!(
                    "too many filters ({}, filters.max): uninstall the ones no longer polled",
                    core.config.policy.filters.max
                ),
                json!({ "reason": "max_filters" }),
            ),
            CallOutcome::LimitExceeded,
        )),
    };
    match call.call.method.as_str() {
        "eth_newBlockFilter" => made(FilterKind::Blocks),
        "eth_newPendingTransactionFilter" => made(FilterKind::Pending),
        "eth_newFilter" => {
            let object = params().into_iter().next().unwrap_or(json!({}));
            match core.family.poll_filter(&object) {
                Ok((filter, from, to)) => made(FilterKind::Logs {
                    filter,
                    from,
                    to,
                    query: Bytes::from(object.to_string()),
                }),
                Err(e) => Handled::Answer(Answer::new(
                    core.error(
                        codes::INVALID_PARAMS,
                        e,
                        json!({ "reason": "invalid_filter" }),
                    ),
                    CallOutcome::RpcError,
                )),
            }
        }
        "eth_getFilterChanges" => match id().and_then(|id| filters.changes(&id)) {
            Some(changes) => {
                let mut out =
                    Vec::with_capacity(changes.iter().map(|c| c.len() + 1).sum::<usize>() + 2);
                out.push(b'[');
                for (i, c) in changes.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(c);
                }
                out.push(b']');
                Handled::Answer(Answer::new(
                    Payload::Result(Bytes::from(out)),
                    CallOutcome::Success,
                ))
            }
            None => Handled::Pass(call),
        },
        "eth_getFilterLogs" => match id().and_then(|id| filters.logs_query(&id)) {
            Some(query) => {
                let mut params = Vec::with_capacity(query.len() + 2);
                params.push(b'[');
                params.extend_from_slice(&query);
                params.push(b']');
                Handled::Logs(call.rewritten(core, "eth_getLogs", Bytes::from(params)))
            }
            None => Handled::Pass(call),
        },
        "eth_uninstallFilter" => match id() {
            Some(id) if filters.uninstall(&id) => ok(json!(true)),
            _ => Handled::Pass(call),
        },
        _ => Handled::Pass(call),
    }
}

fn ok(v: Value) -> Handled {
    Handled::Answer(Answer::new(
        Payload::Result(Bytes::from(v.to_string())),
        CallOutcome::Success,
    ))
}
