//! Range calls in parts (`eth_getLogs`): a range wider than the upstreams take in one call
//! is asked in parts on a fixed grid, a part refused as too wide is halved, and the parts'
//! answers are merged into one.
//!
//! The grid is the narrowest `max_logs_range` of the chain's upstreams, so every part fits
//! every upstream, and parts are aligned to it (`4000..=5999`, never `4123..=6122`): the
//! same part comes back in other clients' ranges and is answered by the cache and by
//! coalescing below. Each part needs the block it ends at, so only an upstream whose head
//! has reached it is asked. A part answered "more than 10000 results" (the family's
//! wordings) is halved, up to `MAX_HALVINGS` times per call. A
//! range wider than `max_logs_blocks` is refused at once, naming the limit. Range ends given
//! as tags are resolved to Manifold's own head and finalized block.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tower::{Service, ServiceExt};

use super::core::ChainCore;
use super::stack::{Answer, AnswerFuture, ChainCall, WithCore};
use super::CallOutcome;
use crate::family::{MergeError, RangeEnd, RangePart, RangeQuery};
use crate::jsonrpc::{codes, Payload};

/// Parts of one call asked at once: a wide range does not take every connection.
pub const PARALLEL_PARTS: usize = 4;

/// Halvings of parts refused as too wide, per call: enough to go from the grid to a
/// few dozen blocks in many places, not enough for an upstream that refuses everything to
/// cost thousands of calls.
pub const MAX_HALVINGS: u32 = 64;

#[derive(Debug, Clone)]
pub struct Split<S> {
    inner: S,
    core: Arc<ChainCore>,
    /// The widest part: the narrowest `max_logs_range` of the chain's upstreams.
    grid: u64,
}

impl<S> WithCore<S> for Split<()> {
    type Service = Split<S>;

    fn wrap(inner: S, core: Arc<ChainCore>) -> Split<S> {
        let grid = core
            .config
            .upstreams
            .iter()
            .map(|u| u.max_logs_range)
            .min()
            .unwrap_or(u64::MAX)
            .max(1);
        Split { inner, core, grid }
    }
}

impl<S> Service<ChainCall> for Split<S>
where
    S: Service<ChainCall, Response = Answer, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Either<S::Future, AnswerFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ChainCall) -> Self::Future {
        let core = &self.core;
        let query = core
            .family
            .range_query(&call.call.method, call.call.params.as_deref());
        let range = query
            .as_ref()
            .and_then(|q| Some((end(core, q.from)?, end(core, q.to)?)));
        let (Some(query), Some((from, to))) = (query, range) else {
            return Either::Left(self.inner.call(call));
        };
        if from > to {
            // The node's own answer to a reversed range (an error, or nothing).
            return Either::Left(self.inner.call(call));
        }
        let blocks = to - from + 1;
        let limit = core.config.policy.max_logs_blocks;
        if blocks > limit {
            let payload = core.error(
                codes::LIMIT_EXCEEDED,
                format!(
                    "the block range {from:#x}..{to:#x} is {blocks} blocks, more than max_logs_blocks ({limit}): ask for a narrower range"
                ),
                json!({ "reason": "logs_range_too_large", "limit": limit, "blocks": blocks }),
            );
            let answer = Answer::new(payload, CallOutcome::LimitExceeded);
            return Either::Right(Box::pin(std::future::ready(Ok(answer))));
        }
        let parts = Parts {
            inner: self.inner.clone(),
            core: core.clone(),
            query,
            call,
            halvings: AtomicU32::new(MAX_HALVINGS),
        };
        let grid = self.grid;
        Either::Right(Box::pin(async move { Ok(parts.run(from, to, grid).await) }))
    }
}

/// A range end as a number, with the chain's state now.
fn end(core: &ChainCore, end: RangeEnd) -> Option<u64> {
    match end {
        RangeEnd::Number(n) => Some(n),
        RangeEnd::Latest => core.head(),
        RangeEnd::Finalized => core.finalized(),
    }
}

/// `from..=to` on the grid: `(from, ..)` to the next multiple of `grid`, whole cells, the
/// rest.
pub fn grid_parts(from: u64, to: u64, grid: u64) -> Vec<(u64, u64)> {
    let mut parts = Vec::new();
    let mut start = from;
    loop {
        let cell_end = (start / grid)
            .checked_add(1)
            .and_then(|cells| cells.checked_mul(grid))
            .map_or(u64::MAX, |next| next - 1);
        let end = cell_end.min(to);
        parts.push((start, end));
        if end >= to {
            return parts;
        }
        start = end + 1;
    }
}

/// One split call at work.
struct Parts<S> {
    inner: S,
    core: Arc<ChainCore>,
    query: RangeQuery,
    call: ChainCall,
    halvings: AtomicU32,
}

type PartsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<RangePart>, Answer>> + Send + 'a>>;

impl<S> Parts<S>
where
    S: Service<ChainCall, Response = Answer, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    async fn run(self, from: u64, to: u64, grid: u64) -> Answer {
        if to - from < grid {
            // Narrow enough for every upstream: the call as the client wrote it, halved
            // only if an upstream refuses it all the same.
            let answer = self.ask(self.call.clone()).await;
            if !self.halve(from, to, &answer) {
                return answer;
            }
            let mid = from + (to - from) / 2;
            return self.merged(vec![(from, mid), (mid + 1, to)]).await;
        }
        self.merged(grid_parts(from, to, grid)).await
    }

    async fn ask(&self, call: ChainCall) -> Answer {
        match self.inner.clone().oneshot(call).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        }
    }

    /// The answer of the spans, in order, merged; or the first answer that is not a part.
    async fn merged(&self, spans: Vec<(u64, u64)>) -> Answer {
        self.core.metrics.record_split_parts(spans.len());
        let mut answers = stream::iter(spans)
            .map(|(from, to)| self.fetch(from, to))
            .buffered(PARALLEL_PARTS);
        let mut parts = Vec::new();
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(p) => parts.extend(p),
                Err(answer) => return answer,
            }
        }
        drop(answers);
        self.merge(&parts)
    }

    /// The blocks `from..=to`, halved as often as upstreams refuse them as too wide.
    fn fetch(&self, from: u64, to: u64) -> PartsFuture<'_> {
        Box::pin(async move {
            let Some(params) = self.core.family.range_params(&self.query, from, to) else {
                return Err(self.bad_reply("the range's parts could not be written".into()));
            };
            let answer = self.ask(self.call.part(&self.core, params)).await;
            if let Payload::Result(result) = &answer.payload {
                return Ok(vec![RangePart {
                    from,
                    to,
                    result: result.clone(),
                }]);
            }
            if !self.halve(from, to, &answer) {
                return Err(answer);
            }
            self.core.metrics.record_split_parts(2);
            let mid = from + (to - from) / 2;
            let mut parts = self.fetch(from, mid).await?;
            parts.extend(self.fetch(mid + 1, to).await?);
            Ok(parts)
        })
    }

    /// Whether to ask for the blocks `from..=to` in two halves after `answer`: a refusal as
    /// too wide, with more than one block and halvings left.
    fn halve(&self, from: u64, to: u64, answer: &Answer) -> bool {
        let Payload::Error(error) = &answer.payload else {
            return false;
        };
        // Only a node's refusal: a part over `max_response_bytes` is no help halved, as
        // the merged answer would be over it all the same.
        let too_wide =
            answer.outcome == CallOutcome::RpcError && self.core.family.is_range_error(error);
        too_wide
            && from < to
            && self
                .halvings
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    fn merge(&self, parts: &[RangePart]) -> Answer {
        let size: usize = parts.iter().map(|p| p.result.len()).sum();
        let limit = self.core.config.policy.max_response_bytes;
        if size > limit {
            let payload = self.core.error(
                codes::LIMIT_EXCEEDED,
                format!(
                    "the answer is larger than max_response_bytes ({limit} bytes): ask for less (a narrower block range, fewer addresses)"
                ),
                json!({ "reason": "response_too_large" }),
            );
            return Answer::new(payload, CallOutcome::LimitExceeded);
        }
        // Above the finalized block, each log must be of the block Manifold follows at its
        // height (`health::canonical`).
        let finalized = self.core.finalized().unwrap_or(0);
        let window = &self.core.health.canonical;
        let canonical = |n: u64| {
            if n > finalized {
                window.hash_at(n)
            } else {
                None
            }
        };
        match self.core.family.merge_range(parts, &canonical) {
            Ok(merged) => Answer::new(Payload::Result(merged.into()), CallOutcome::Success),
            Err(MergeError::Unreadable(why)) => self.bad_reply(why),
            Err(MergeError::NotCanonical { block }) => {
                let payload = self.core.error(
                    codes::UPSTREAM_FAILED,
                    format!(
                        "the logs of block {block:#x} came from another branch than the chain's (a reorg, or an upstream on a fork): ask again"
                    ),
                    json!({ "reason": "not_canonical", "block": block }),
                );
                Answer::new(payload, CallOutcome::UpstreamFailed)
            }
        }
    }

    fn bad_reply(&self, why: String) -> Answer {
        let payload = self.core.error(
            codes::UPSTREAM_FAILED,
            format!("a part of the range could not be read: {why}"),
            json!({ "reason": "bad_reply" }),
        );
        Answer::new(payload, CallOutcome::UpstreamFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_lie_on_the_grid() {
        assert_eq!(grid_parts(0, 1999, 2000), vec![(0, 1999)]);
        assert_eq!(
            grid_parts(1, 20_000, 2000).first().copied(),
            Some((1, 1999))
        );
        let parts = grid_parts(1, 20_000, 2000);
        assert_eq!(parts.len(), 11);
        assert_eq!(parts.get(1).copied(), Some((2000, 3999)));
        assert_eq!(parts.last().copied(), Some((20_000, 20_000)));
        assert_eq!(
            grid_parts(4123, 6122, 2000),
            vec![(4123, 5999), (6000, 6122)]
        );
        assert_eq!(grid_parts(7, 7, 1), vec![(7, 7)]);
        assert_eq!(
            grid_parts(u64::MAX - 1, u64::MAX, 2000),
            vec![(u64::MAX - 1, u64::MAX)]
        );
    }
}
