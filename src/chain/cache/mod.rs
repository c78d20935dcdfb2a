//! The answer cache layer: a call whose answer can never change is answered from memory
//! when it was answered before, and its answer kept when it comes back.
//!
//! What may be kept is the family's method table (`family::CacheRule`); when is decided by
//! the chain's finalized block, from Manifold's own view (`health::ChainHead`), never from
//! the answering upstream's claim. Never kept: an error, a `null`, a `[]` not known final,
//! an answer about a block from an upstream whose head had not reached it (anvil clamps a
//! log range to its head without an error), an answer over `max_entry_bytes`. Each client
//! gets its own id on a kept answer: ids are written at encode, around the same bytes.
//!
//! With `[server.redis]`, a call missing from memory is looked up in the shared tier
//! (`redis`) within its short timeout, and a kept answer is written there too: replicas
//! share what can never change. Redis trouble of any kind is a miss.

mod recent;
mod redis;
mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use metrics::Label;
use tower::{Service, ServiceExt};

pub use redis::RedisCache;
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

/// A chain's caches: in memory (`None` when `policy.cache.enabled` is off), and the shared
/// tier (with the memory one on and `[server.redis]` set).
#[derive(Debug, Default)]
pub struct CacheTiers {
    /// The chain as its keys name it: its name, family and chain id, so that two
    /// deployments sharing one Redis never mix the answers of two networks of one name.
    pub namespace: String,
    pub memory: Option<Arc<AnswerCache>>,
    pub shared: Option<Arc<RedisCache>>,
}

impl CacheTiers {
    pub fn namespace(chain: &crate::config::ChainConfig) -> String {
        let id = chain.chain_id.map(|id| id.to_string()).unwrap_or_default();
        format!("{}/{}/{id}", chain.name, chain.family.as_str())
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
    S: Service<ChainCall, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Either<S::Future, AnswerFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: ChainCall) -> Self::Future {
        let Some(cache) = self.core.cache.memory.clone() else {
            return Either::Left(self.inner.call(call));
        };
        let core = &self.core;
        let (rule, label) = (call.info.cache, call.info.label);
        let finalized = core.finalized();
        let question = match rule {
            CacheRule::Never => None,
            CacheRule::AtBlock(n) if finalized.is_none_or(|f| n > f) => {
                recent::question(core, &call, n)
            }
            CacheRule::AtHead => recent::latest_question(core, &call),
            rule => core
                .family
                .cache_params(&call.call.method, call.call.params.as_deref(), rule)
                .map(|p| (p, None)),
        };
        let Some((params, recent)) = question else {
            core.metrics.record_cache(label, CacheResult::Bypass);
            return Either::Left(self.inner.call(call));
        };
        let key = CallKey::new(&core.cache.namespace, &call.call.method, &params);
        if let Some(block) = recent {
            // About a recent block: memory only, under its hash.
            if let Some(result) = cache.get_recent(&key) {
                core.metrics.record_cache(label, CacheResult::Hit);
                return Either::Right(Box::pin(std::future::ready(Ok(hit(result)))));
            }
            core.metrics.record_cache(label, CacheResult::Miss);
            call.key = Some(key);
            let core = core.clone();
            let answer = self.inner.call(call);
            return Either::Right(Box::pin(async move {
                let answer = answer.await?;
                recent::keep(&core, &cache, key, &block, &answer);
                Ok(answer)
            }));
        }
        if let Some(result) = cache.get(&key) {
            core.metrics.record_cache(label, CacheResult::Hit);
            return Either::Right(Box::pin(std::future::ready(Ok(hit(result)))));
        }
        call.key = Some(key);
        let core = core.clone();
        let Some(redis) = core.cache.shared.clone() else {
            core.metrics.record_cache(label, CacheResult::Miss);
            let answer = self.inner.call(call);
            return Either::Right(Box::pin(async move {
                let answer = answer.await?;
                keep(&core, &cache, None, rule, key, &answer);
                Ok(answer)
            }));
        };
        // Not in memory: maybe in the shared tier, within its short timeout; else, or on
        // any trouble with Redis, the call goes on down as if there were no Redis.
        let inner = self.inner.clone();
        Either::Right(Box::pin(async move {
            if let Some(result) = redis.get(&key, cache.max_entry_bytes()).await {
                cache.insert(key, &result);
                core.metrics.record_cache(label, CacheResult::Hit);
                return Ok(hit(result));
            }
            core.metrics.record_cache(label, CacheResult::Miss);
            let answer = inner.oneshot(call).await?;
            keep(&core, &cache, Some(&redis), rule, key, &answer);
            Ok(answer)
        }))
    }
}

fn hit(result: bytes::Bytes) -> Answer {
    Answer::new(Payload::Result(result), CallOutcome::Success)
}

/// Keep a fresh answer, in memory and in the shared tier, if it may be kept.
fn keep(
    core: &ChainCore,
    cache: &AnswerCache,
    redis: Option<&Arc<RedisCache>>,
    rule: CacheRule,
    key: CallKey,
    answer: &Answer,
) {
    if answer.follower || !keepable(core, rule, answer) {
        return;
    }
    if let Payload::Result(result) = &answer.payload {
        if !cache.fits(result.len()) {
            return;
        }
        cache.insert(key, result);
        if let Some(redis) = redis {
            redis.put(key, result);
        }
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
        CacheRule::Never | CacheRule::AtHead => false,
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
