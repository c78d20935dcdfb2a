//! The call's deadline as a safety net: every attempt below is bounded by the deadline
//! already, so this bound, a little later, should never fire first. When it does, the call
//! is answered as timed out, or, for a call not safe to repeat, as of unknown outcome (an
//! attempt may have reached a node).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use super::core::ChainCore;
use super::stack::{Answer, AnswerFuture, ChainCall, WithCore};
use super::CallOutcome;

/// How long past the deadline the outer bound waits before abandoning the attempts.
pub const SAFETY_MARGIN: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    core: Arc<ChainCore>,
}

impl<S> WithCore<S> for Deadline<()> {
    type Service = Deadline<S>;

    fn wrap(inner: S, core: Arc<ChainCore>) -> Deadline<S> {
        Deadline { inner, core }
    }
}

impl<S> Service<ChainCall> for Deadline<S>
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
        let (deadline, timeout, repeatable) = (call.deadline, call.timeout, call.info.repeatable);
        let core = self.core.clone();
        let answer = self.inner.call(call);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline + SAFETY_MARGIN, answer).await {
                Ok(answer) => answer,
                Err(_) if !repeatable => {
                    let (payload, outcome) = core.outcome_unknown(&[], None);
                    Ok(Answer::new(payload, outcome))
                }
                Err(_) => Ok(Answer::new(
                    core.timeout_error(timeout, &[]),
                    CallOutcome::Timeout,
                )),
            }
        })
    }
}
