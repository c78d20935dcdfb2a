//! The calls a chain steers itself rather than hand to the upstream set: a signed
//! transaction (broadcast, then watched), and a wallet's `pending` nonce read for a sender
//! with watched transactions (read-your-writes).

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Chain;
use crate::family::{Broadcast, ChainFamily};
use crate::jsonrpc::{encode_request, Call, Payload};
use crate::upstream::{
    broadcast, took_it, BroadcastRequest, CallPlan, Route, SendResult, SetFailure,
};
use crate::watch::TxWatch;

impl Chain {
    /// Broadcast a signed transaction (see `upstream::broadcast`) and, when some node may
    /// have taken it, watch it: stored before the client is answered.
    pub(super) async fn send(
        &self,
        call: &Call,
        tx: &Broadcast,
        route: Route,
        request_id: &[u8],
        body: Bytes,
        deadline: Instant,
    ) -> Result<Payload, SetFailure> {
        let lookup_id = self.next_id();
        let lookup_method = serde_json::to_string(tx.lookup.method).unwrap_or_default();
        let lookup_body = encode_request(
            lookup_id.as_bytes(),
            lookup_method.as_bytes(),
            Some(tx.lookup.params.as_bytes()),
        );
        let request = BroadcastRequest {
            method: &call.method,
            route,
            tx,
            request_id,
            body,
            lookup_id: lookup_id.as_bytes(),
            lookup_body,
            deadline,
            fanout: usize::try_from(self.config.policy.broadcast.fanout).unwrap_or(1),
        };
        let mut out = broadcast(&self.upstreams, &*self.family, request).await;
        self.metrics.record_broadcast(out.verdict);
        tracing::info!(hash = %tx.hash, result = out.verdict.label(), sends = out.sends, "transaction broadcast");
        let rest = std::mem::replace(&mut out.rest, JoinSet::new());
        match &self.watch {
            Some(watch) if out.verdict.may_be_pooled() => {
                let params = call.params.as_deref().unwrap_or(b"[]");
                watch
                    .add(tx, &call.method, params, &out.accepted_by, out.sends)
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
        out.result
    }

    /// A `pending` nonce read for a sender whose highest watched transaction makes `next`
    /// its next nonce (`plan` prefers the upstreams that took them: their pools have them):
    /// never answered below `next`, since a node that has not seen them would hand the nonce
    /// out again, and the wallet would sign a second transaction with it.
    pub(super) async fn pending_count(
        &self,
        plan: &CallPlan<'_>,
        next: u64,
    ) -> Result<Payload, SetFailure> {
        match self.upstreams.call(plan).await {
            Ok(Payload::Result(r)) => match self.family.parse_count(&r) {
                Some(count) if count < next => {
                    tracing::debug!(
                        count,
                        next,
                        "pending nonce raised to the watched transactions'"
                    );
                    Ok(Payload::Result(self.family.count_result(next)))
                }
                _ => Ok(Payload::Result(r)),
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
