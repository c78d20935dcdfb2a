//! The calls a chain steers itself rather than hand down the stack as they are: a signed
//! transaction (broadcast to several upstreams at once, then watched), and a wallet's
//! `pending` nonce read for a sender with watched transactions (read-your-writes).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use tokio::task::JoinSet;
use tower::Service;

use super::core::ChainCore;
use super::stack::{Answer, AnswerFuture, ChainCall, WithCore};
use crate::family::{Broadcast, ChainFamily};
use crate::jsonrpc::Payload;
use crate::upstream::{broadcast, took_it, BroadcastRequest, SendResult};
use crate::watch::TxWatch;

#[derive(Debug, Clone)]
pub struct Steer<S> {
    inner: S,
    core: Arc<ChainCore>,
}

impl<S> WithCore<S> for Steer<()> {
    type Service = Steer<S>;

    fn wrap(inner: S, core: Arc<ChainCore>) -> Steer<S> {
        Steer { inner, core }
    }
}

impl<S> Service<ChainCall> for Steer<S>
where
    S: Service<ChainCall, Response = Answer, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Either<S::Future, AnswerFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: ChainCall) -> Self::Future {
        let core = self.core.clone();
        let params = call.call.params.as_deref();
        // An unreadable transaction goes down as it is: the node says why.
        if let Some(Ok(tx)) = core.family.broadcast(&call.call.method, params) {
            return Either::Right(Box::pin(async move { Ok(core.send(&call, &tx).await) }));
        }
        let pending = core.watch.as_ref().and_then(|w| {
            let sender = core.family.pending_count_read(&call.call.method, params)?;
            w.pending_next(&sender)
        });
        let Some((next, took)) = pending else {
            return Either::Left(self.inner.call(call));
        };
        call.prefer = took;
        let answer = self.inner.call(call);
        Either::Right(Box::pin(async move {
            let mut answer = answer.await?;
            answer.payload = core.at_least(answer.payload, next);
            Ok(answer)
        }))
    }
}

impl ChainCore {
    /// Broadcast a signed transaction (see `upstream::broadcast`) and, when some node may
    /// have taken it, watch it: stored before the client is answered.
    async fn send(&self, call: &ChainCall, tx: &Broadcast) -> Answer {
        let (id, body) = self.encode(call);
        let lookup_id = self.next_id();
        let lookup_body = tx.lookup.encode(lookup_id.as_bytes());
        let request = BroadcastRequest {
            method: &call.call.method,
            route: self.route(call.info.class),
            tx,
            request_id: id.as_bytes(),
            body,
            lookup_id: lookup_id.as_bytes(),
            lookup_body,
            deadline: call.deadline,
            fanout: usize::try_from(self.config.policy.broadcast.fanout).unwrap_or(1),
        };
        let mut out = broadcast(&self.upstreams, &*self.family, request).await;
        self.metrics.record_broadcast(out.verdict);
        tracing::info!(hash = %tx.hash, result = out.verdict.label(), sends = out.sends, "transaction broadcast");
        let rest = std::mem::replace(&mut out.rest, JoinSet::new());
        match &self.watch {
            Some(watch) if out.verdict.may_be_pooled() => {
                let params = call.call.params.as_deref().unwrap_or(b"[]");
                watch
                    .add(tx, &call.call.method, params, &out.accepted_by, out.sends)
                    .await;
                // The sends still running go on; whoever of them takes it is recorded.
                tokio::spawn(learn_takers(
                    rest,
                    watch.clone(),
                    tx.hash.clone(),
                    self.family.clone(),
                ));
            }
            _ => {
                let mut rest = rest;
                rest.detach_all();
            }
        }
        self.answer(out.result, call, Some(&tx.hash))
    }

    /// A `pending` nonce answer for a sender whose highest watched transaction makes `next`
    /// its next nonce: never below `next`, since a node that has not seen them would hand
    /// the nonce out again, and the wallet would sign a second transaction with it.
    fn at_least(&self, payload: Payload, next: u64) -> Payload {
        match payload {
            Payload::Result(r) => match self.family.parse_count(&r) {
                Some(count) if count < next => {
                    tracing::debug!(
                        count,
                        next,
                        "pending nonce raised to the watched transactions'"
                    );
                    Payload::Result(self.family.count_result(next))
                }
                _ => Payload::Result(r),
            },
            other => other,
        }
    }
}

/// Record which of the sends still running when the client was answered took the
/// transaction.
async fn learn_takers(
    mut rest: JoinSet<SendResult>,
    watch: Arc<TxWatch>,
    hash: String,
    family: Arc<dyn ChainFamily>,
) {
    let hash_json = format!("\"{hash}\"");
    while let Some(joined) = rest.join_next().await {
        let Ok((upstream, result)) = joined else {
            continue;
        };
        let took = took_it(&*family, hash_json.as_bytes(), &result);
        if took {
            watch.took(&hash, &upstream);
        }
    }
}
