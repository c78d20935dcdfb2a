//! The answer cache layer: a call whose answer can never change is answered from memory
//! when it was answered before, and its answer kept when it comes back.
//!
//! What may be kept is the family's method table (`family::CacheRule`); when is decided by
//! the chain's finalized block, from Manifold's own view (`health::ChainHead`), never from
//! the answering upstream's claim. Never kept: an error, a `null`, a `[]` not known final,
//! an answer about a block from an upstream whose head had not reached it (anvil clamps a
//! log range to its head without an error), an answer over `max_entry_bytes`. Each client
//! gets its own id on a kept answer: ids are written at encode, around the same bytes.

mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use metrics::Label;
use tower::Service;

pub use store::AnswerCache;

use super::core::ChainCore;
use super::key::CallKey;
use super::stack::{Answer, AnswerFuture, ChainCall, WithCore};
use super::CallOutcome;
use crate::config::CachePolicy;
use crate::family::cache_rule::{is_empty_list, is_null};
use crate::family::CacheRule;
use crate::jsonrpc::Payload;
use crate::metrics::{Metrics, CACHE_BYTES, CACHE_EVICTIONS};

/// What the cache did with a call, for `manifold_cache_requests_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit = 0,
    Miss = 1,
    /// Not for the cache: the method is never kept, or its block is not final.
    Bypass = 2,
}

impl CacheResult {
    pub const COUNT: usize = 3;

    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// The chain's cache, when `policy.cache.enabled`.
pub fn for_chain(name: &str, policy: &CachePolicy, metrics: &Metrics) -> Option<Arc<AnswerCache>> {
    policy.enabled.then(|| {
        let chain = || vec![Label::new("chain", name.to_string())];
        Arc::new(AnswerCache::new(
            policy,
            metrics.counter(CACHE_EVICTIONS, chain()),
            metrics.gauge(CACHE_BYTES, chain()),
        ))
    })
}

#[derive(Debug, Clone)]
pub struct Cached<S> {
    inner: S,
    core: Arc<ChainCore>,
}

impl<S> WithCore<S> for Cached<()> {
    type Service = Cached<S>;

    fn wrap(inner: S, core: Arc<ChainCore>) -> Cached<S> {
        Cached { inner, core }
    }
}

impl<S> Service<ChainCall> for Cached<S>
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
        let Some(cache) = self.core.cache.clone() else {
            return Either::Left(self.inner.call(call));
        };
        let core = &self.core;
        let (rule, label) = (call.info.cache, call.info.label);
        let finalized = core.finalized();
        let params = match rule {
            CacheRule::Never => None,
            CacheRule::AtBlock(n) if finalized.is_none_or(|f| n > f) => None,
            rule => core
                .family
                .cache_params(&call.call.method, call.call.params.as_deref(), rule),
        };
        let Some(params) = params else {
            core.metrics.record_cache(label, CacheResult::Bypass);
            return Either::Left(self.inner.call(call));
        };
        let key = CallKey::new(&core.config.name, &call.call.method, &params);
        if let Some(result) = cache.get(&key) {
            core.metrics.record_cache(label, CacheResult::Hit);
            let answer = Answer::new(Payload::Result(result), CallOutcome::Success);
            return Either::Right(Box::pin(std::future::ready(Ok(answer))));
        }
        core.metrics.record_cache(label, CacheResult::Miss);
        call.key = Some(key);
        let core = core.clone();
        let answer = self.inner.call(call);
        Either::Right(Box::pin(async move {
            let answer = answer.await?;
            if !answer.follower && keepable(&core, rule, &answer) {
                if let Payload::Result(result) = &answer.payload {
                    cache.insert(key, result);
                }
            }
            Ok(answer)
        }))
    }
}

/// Whether an answer under `rule` may be kept, with the chain's finality now.
fn keepable(core: &ChainCore, rule: CacheRule, answer: &Answer) -> bool {
    let Payload::Result(result) = &answer.payload else {
        return false;
    };
    if answer.outcome != CallOutcome::Success || is_null(result) {
        return false;
    }
    let finalized = core.finalized();
    match rule {
        CacheRule::Never => false,
        CacheRule::Constant => true,
        CacheRule::AtBlock(n) => {
            finalized.is_some_and(|f| n <= f) && answer.served_head.is_some_and(|h| h >= n)
        }
        CacheRule::ByBlockHash => !is_empty_list(result),
        CacheRule::Located => core
            .family
            .answer_block(result)
            .is_some_and(|b| finalized.is_some_and(|f| b <= f)),
    }
}
