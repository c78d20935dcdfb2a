//! The innermost service: a call handed to the upstream set (selection, hedges, retries,
//! breakers), and what the attempts came to turned into the client's answer
//! (`chain::rescue`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use serde_json::json;

use super::core::ChainCore;
use super::stack::{Answer, AnswerFuture, ChainCall};
use super::CallOutcome;
use crate::jsonrpc::codes;
use crate::upstream::CallPlan;

#[derive(Debug, Clone)]
pub struct Dispatch {
    core: Arc<ChainCore>,
}

impl Dispatch {
    pub fn new(core: &Arc<ChainCore>) -> Self {
        Self { core: core.clone() }
    }
}

impl Service<ChainCall> for Dispatch {
    type Response = Answer;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ChainCall) -> AnswerFuture {
        let core = self.core.clone();
        Box::pin(async move { Ok(core.dispatch(&call).await) })
    }
}

impl ChainCore {
    /// Run the call's attempts on the upstream set.
    pub(super) async fn dispatch(&self, call: &ChainCall) -> Answer {
        // A call no node behind a balancer can answer rightly (a Bitcoin node's own wallet):
        // refused unsent, unless the operator allowed it by name.
        let method = call.call.method.as_str();
        if self.family.node_local(method) && !self.upstreams.iter().any(|u| u.serves(method)) {
            return Answer::new(
                self.error(
                    codes::METHOD_NOT_FOUND,
                    format!("`{method}` is not proxied: it acts on one node's own wallet or settings, and each node behind Manifold has its own (call that node directly, or name the method in an upstream's methods.allow)"),
                    json!({ "reason": "node_local_method" }),
                ),
                CallOutcome::RpcError,
            );
        }
        let (id, body) = self.encode(call);
        let plan = CallPlan {
            method: &call.call.method,
            route: self.route(call.info.class),
            request_id: id.as_bytes(),
            body,
            deadline: call.deadline,
            repeatable: call.info.repeatable,
            prefer: &call.prefer,
        };
        let result = self.upstreams.call(&plan).await;
        let head = result.as_ref().ok().and_then(|s| s.head);
        let mut answer = self.answer(result.map(|s| s.payload), call, None);
        answer.served_head = head;
        answer
    }
}
