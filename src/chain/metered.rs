//! The outermost layer: every call counted by method and outcome and timed
//! (`manifold_requests_total`, `manifold_request_duration_seconds`), whichever layer below
//! answers it, inside its `call` tracing span.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::Instrument;

use super::call_metrics::ChainMetrics;
use super::core::ChainCore;
use super::stack::{Answer, AnswerFuture, ChainCall};
use super::CallOutcome;

#[derive(Debug, Clone)]
pub struct MeteredLayer {
    chain: Arc<str>,
    metrics: Arc<ChainMetrics>,
}

impl MeteredLayer {
    pub fn new(core: &ChainCore) -> Self {
        Self {
            chain: core.config.name.clone(),
            metrics: core.metrics.clone(),
        }
    }
}

impl<S> Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            chain: self.chain.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    chain: Arc<str>,
    metrics: Arc<ChainMetrics>,
}

impl<S> Service<ChainCall> for Metered<S>
where
    S: Service<ChainCall, Response = Answer, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ChainCall) -> AnswerFuture {
        let span = tracing::debug_span!("call", chain = %self.chain, method = %call.call.method);
        let (label, started) = (call.info.label, call.started);
        let metrics = self.metrics.clone();
        let answer = span.in_scope(|| self.inner.call(call));
        Box::pin(
            async move {
                let answer = answer.await?;
                metrics.record(label, answer.outcome, started.elapsed());
                if !matches!(answer.outcome, CallOutcome::Success | CallOutcome::RpcError) {
                    tracing::debug!(outcome = answer.outcome.label(), "call failed");
                }
                Ok(answer)
            }
            .instrument(span),
        )
    }
}
