//! Coalescing: identical calls in flight at the same moment (same key, reads safe to
//! repeat: `MethodInfo::shareable`) share one trip down the stack, hedges and retries included. The shared call belongs to
//! the group, not to its first caller: it runs as long as any caller still waits for it, so
//! the first one going away (a closed connection) costs the others nothing. When the last
//! one goes, it is cancelled, as any call whose client left. The answer, an error included,
//! goes to the callers of that moment and is never stored here (the cache layer above keeps
//! what may be kept): the group leaves the map as its call completes.
//!
//! Hand-written over `dashmap` and `futures_util`'s `Shared`, rather than moka's
//! `try_get_with`, because the groups hold no answers: a map of calls in flight, bounded by
//! the calls in flight (`max_concurrent_calls`), its size in `manifold_coalesce_groups`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use futures_util::future::{BoxFuture, Either, FutureExt, Shared, WeakShared};
use metrics::{Counter, Gauge};
use tower::{Layer, Service};

use super::core::ChainCore;
use super::key::{CallKey, KeyHasher};
use super::stack::{Answer, AnswerFuture, ChainCall};

type SharedAnswer = Shared<BoxFuture<'static, Answer>>;

/// The calls in flight of one chain, by key.
#[derive(Debug)]
struct Groups {
    chain: Arc<str>,
    map: DashMap<CallKey, Group, KeyHasher>,
    next_id: AtomicU64,
    coalesced: Counter,
    /// `manifold_coalesce_groups`: the map's size.
    size: Gauge,
}

struct Group {
    /// Tells a replaced group's leaving apart from its successor's.
    id: u64,
    /// Weak: the callers hold the call, the map only finds it.
    answer: WeakShared<BoxFuture<'static, Answer>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("id", &self.id).finish()
    }
}

/// Takes a group out of the map when its call completes or is dropped (every caller gone).
struct Leave {
    groups: Arc<Groups>,
    key: CallKey,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if self
            .groups
            .map
            .remove_if(&self.key, |_, g| g.id == self.id)
            .is_some()
        {
            self.groups.size.decrement(1.0);
        }
    }
}

#[derive(Debug, Clone)]
pub struct CoalesceLayer {
    groups: Arc<Groups>,
}

impl CoalesceLayer {
    pub fn new(core: &ChainCore) -> Self {
        Self::with(
            core.config.name.clone(),
            core.metrics.coalesced.clone(),
            core.metrics.coalesce_groups.clone(),
        )
    }

    fn with(chain: Arc<str>, coalesced: Counter, size: Gauge) -> Self {
        Self {
            groups: Arc::new(Groups {
                chain,
                map: DashMap::with_hasher(KeyHasher::default()),
                next_id: AtomicU64::new(0),
                coalesced,
                size,
            }),
        }
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = Coalesce<S>;

    fn layer(&self, inner: S) -> Coalesce<S> {
        Coalesce {
            inner,
            groups: self.groups.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Coalesce<S> {
    inner: S,
    groups: Arc<Groups>,
}

impl<S> Coalesce<S>
where
    S: Service<ChainCall, Response = Answer, Error = Infallible>,
    S::Future: Send + 'static,
{
    /// The number of groups in flight (tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.groups.map.len()
    }

    /// A new group for `key`, led by `call`: its shared call, and the map's entry for it
    /// (`None` only for a call already complete, which a new one never is).
    fn start(&mut self, key: CallKey, call: ChainCall) -> (SharedAnswer, Option<Group>) {
        let id = self.groups.next_id.fetch_add(1, Ordering::Relaxed);
        let leave = Leave {
            groups: self.groups.clone(),
            key,
            id,
        };
        let answer = self.inner.call(call);
        let shared = async move {
            let _leave = leave;
            match answer.await {
                Ok(a) => a,
                Err(never) => match never {},
            }
        }
        .boxed()
        .shared();
        let group = shared.downgrade().map(|answer| Group { id, answer });
        (shared, group)
    }
}

impl<S> Service<ChainCall> for Coalesce<S>
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

    fn call(&mut self, call: ChainCall) -> Self::Future {
        if !call.info.shareable {
            return Either::Left(self.inner.call(call));
        }
        let key = call.key.unwrap_or_else(|| {
            let params = call.call.params.as_deref().unwrap_or_default();
            CallKey::new(&self.groups.chain, &call.call.method, params)
        });
        // No strong handle is dropped while the entry is locked: dropping the last one
        // would drop the call, whose `Leave` locks the same entry.
        let groups = self.groups.clone();
        let shared = match groups.map.entry(key) {
            Entry::Occupied(mut e) => match e.get().answer.upgrade() {
                Some(shared) => {
                    drop(e);
                    self.groups.coalesced.increment(1);
                    return Either::Right(Box::pin(async move {
                        let mut answer = shared.await;
                        answer.follower = true;
                        Ok(answer)
                    }));
                }
                None => {
                    let (shared, group) = self.start(key, call);
                    match group {
                        // One group in place of another: the size stays.
                        Some(g) => drop(e.insert(g)),
                        None => {
                            drop(e.remove());
                            self.groups.size.decrement(1.0);
                        }
                    }
                    shared
                }
            },
            Entry::Vacant(v) => {
                let (shared, group) = self.start(key, call);
                if let Some(g) = group {
                    v.insert(g);
                    self.groups.size.increment(1.0);
                }
                shared
            }
        };
        Either::Right(Box::pin(async move { Ok(shared.await) }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::Notify;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;
    use crate::chain::CallOutcome;
    use crate::family::{BlockNeed, CacheRule, Cost, MethodClass, MethodInfo};
    use crate::jsonrpc::{Call, Method, Payload};

    fn call(method: &str, params: &str, repeatable: bool) -> ChainCall {
        let started = Instant::now();
        ChainCall {
            call: Call {
                id: None,
                method: Method::new(method),
                method_json: Bytes::from(format!("\"{method}\"")),
                params: Some(Bytes::from(params.to_string())),
            },
            info: MethodInfo {
                label: 0,
                repeatable,
                shareable: repeatable,
                class: MethodClass {
                    need: BlockNeed::Head,
                    block_lookup: false,
                    cost: Cost::Normal,
                },
                cache: CacheRule::Never,
            },
            started,
            timeout: Duration::from_secs(10),
            deadline: started + Duration::from_secs(10),
            prefer: Vec::new(),
            key: None,
        }
    }

    /// A stack below that counts its calls and answers each when `release` is notified,
    /// with the params it was asked.
    fn counting(
        calls: Arc<AtomicUsize>,
        release: Arc<Notify>,
    ) -> Coalesce<tower::util::BoxCloneSyncService<ChainCall, Answer, Infallible>> {
        let below = tower::service_fn(move |c: ChainCall| {
            calls.fetch_add(1, Ordering::SeqCst);
            let release = release.clone();
            async move {
                release.notified().await;
                let p = c.call.params.unwrap_or_default();
                Ok::<_, Infallible>(Answer::new(Payload::Result(p), CallOutcome::Success))
            }
        });
        CoalesceLayer::with("c".into(), Counter::noop(), Gauge::noop())
            .layer(tower::util::BoxCloneSyncService::new(below))
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_identical_calls_make_one_and_each_gets_the_answer() {
        let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let svc = counting(calls.clone(), release.clone());
        let waiting: Vec<_> = (0..50)
            .map(|_| tokio::spawn(svc.clone().oneshot(call("eth_call", "[1]", true))))
            .collect();
        let other = tokio::spawn(svc.clone().oneshot(call("eth_call", "[2]", true)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one per distinct call");
        assert_eq!(svc.in_flight(), 2);
        release.notify_waiters();
        let mut followers = 0;
        for w in waiting {
            let a = w.await.unwrap().unwrap();
            assert_eq!(a.payload, Payload::Result(Bytes::from_static(b"[1]")));
            followers += usize::from(a.follower);
        }
        assert_eq!(followers, 49);
        let a = other.await.unwrap().unwrap();
        assert_eq!(a.payload, Payload::Result(Bytes::from_static(b"[2]")));
        assert_eq!(svc.in_flight(), 0, "groups leave as their calls complete");
        // Not stored: the next call goes down again.
        let next = tokio::spawn(svc.clone().oneshot(call("eth_call", "[1]", true)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        release.notify_waiters();
        next.await.unwrap().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_call_outlives_its_first_caller_and_ends_with_its_last() {
        let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let svc = counting(calls.clone(), release.clone());
        let first = tokio::spawn(svc.clone().oneshot(call("m", "[1]", true)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = tokio::spawn(svc.clone().oneshot(call("m", "[1]", true)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        let _ = first.await;
        assert_eq!(svc.in_flight(), 1, "the second caller still holds it");
        release.notify_waiters();
        let a = second.await.unwrap().unwrap();
        assert!(a.follower);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Every caller gone: the call is dropped and its group leaves.
        let lone = tokio::spawn(svc.clone().oneshot(call("m", "[3]", true)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(svc.in_flight(), 1);
        lone.abort();
        let _ = lone.await;
        assert_eq!(svc.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_not_safe_to_repeat_are_never_shared() {
        let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let svc = counting(calls.clone(), release.clone());
        let sends: Vec<_> = (0..3)
            .map(|_| {
                tokio::spawn(
                    svc.clone()
                        .oneshot(call("eth_sendRawTransaction", "[1]", false)),
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        release.notify_waiters();
        for s in sends {
            assert!(!s.await.unwrap().unwrap().follower);
        }
    }
}
