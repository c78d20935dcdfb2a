//! A chain's call stack: the whole path of a call, from the front door's decoded call to
//! its answer, as tower layers, outermost first. Every layer is a `Service<ChainCall>` whose
//! answer is an [`Answer`] and whose error is `Infallible`: a chain always answers, with the
//! node's answer or the proxy's own error object.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder};

use super::cache::Cached;
use super::coalesce::{Coalesce, CoalesceLayer};
use super::core::ChainCore;
use super::deadline::Deadline;
use super::dispatch::Dispatch;
use super::filtering::Filtering;
use super::key::CallKey;
use super::metered::{Metered, MeteredLayer};
use super::split::Split;
use super::steer::Steer;
use super::CallOutcome;
use crate::family::MethodInfo;
use crate::jsonrpc::{Call, Payload};

/// The stack's type, outermost layer first (see `build`).
pub type ChainStack = Metered<Filtering<Split<Cached<Coalesce<Steer<Deadline<Dispatch>>>>>>>;

/// Assemble the stack of one chain.
pub fn build(core: &Arc<ChainCore>) -> ChainStack {
    ServiceBuilder::new()
        // Outermost, so that every call is counted and timed with its outcome, whatever
        // layer answers it, and runs in its `call` tracing span.
        .layer(MeteredLayer::new(core))
        // (Per-key policy goes here: a key's limits apply before anything is spent.)
        // Filters are the chain's own, made from its new heads and their logs (a node's
        // filter would exist on that node alone); a filter's `eth_getLogs` goes on down.
        .layer(CoreLayer::<Filtering<()>>::new(core))
        // A log range wider than the upstreams take is asked in parts on a fixed grid and
        // merged. Above the cache and coalescing, not below: each part is cached and shared
        // on its own, so overlapping ranges of other clients reuse it.
        .layer(CoreLayer::<Split<()>>::new(core))
        // Answers that can never change, from memory: before coalescing, so that a hit
        // costs no lock, and outside everything that reaches an upstream.
        .layer(CoreLayer::<Cached<()>>::new(core))
        // Identical calls in flight at once share one upstream call (with its hedges and
        // retries); it belongs to the group, so it outlives its first caller.
        .layer(CoalesceLayer::new(core))
        // Signed transactions leave here for the broadcast (several upstreams at once, then
        // the watch), with their own deadline: no timeout below may cut a broadcast short
        // between a send and its watch. A watched sender's `pending` nonce read is steered
        // to the upstreams that took its transactions, and never answered below them.
        .layer(CoreLayer::<Steer<()>>::new(core))
        // A safety net at the call's deadline: every attempt is bounded by it already, so
        // this should never fire first.
        .layer(CoreLayer::<Deadline<()>>::new(core))
        // The upstream set: selection, hedges, retries, breakers; failures become the
        // proxy's error objects.
        .service(Dispatch::new(core))
}

/// A call on its way down the stack: what the client sent, classified once.
#[derive(Debug, Clone)]
pub struct ChainCall {
    pub call: Call,
    pub info: MethodInfo,
    pub started: Instant,
    /// The whole call's time, all attempts included (by its cost).
    pub timeout: Duration,
    pub deadline: Instant,
    /// Upstreams (by name) its first attempt goes to when one is in sync and takes it.
    pub prefer: Vec<String>,
    /// Its identity, once the cache has computed it (canonical params): coalescing uses it.
    pub key: Option<CallKey>,
}

impl ChainCall {
    pub fn new(core: &ChainCore, call: Call) -> Self {
        let info = core
            .family
            .method_info(&call.method, call.params.as_deref());
        let started = Instant::now();
        let timeout = core.timeout(info.class.cost);
        Self {
            call,
            info,
            started,
            timeout,
            deadline: started + timeout,
            prefer: Vec::new(),
            key: None,
        }
    }

    /// Another call in this one's place (`chain::filtering`: a filter's `eth_getLogs`),
    /// classified on its own, within the same deadline.
    pub fn rewritten(&self, core: &ChainCore, method: &str, params: Bytes) -> Self {
        let mut call = self.part(core, params);
        call.call.method = crate::jsonrpc::Method::new(method);
        call.call.method_json = Bytes::from(serde_json::to_string(method).unwrap_or_default());
        call.info = core
            .family
            .method_info(&call.call.method, call.call.params.as_deref());
        call
    }

    /// A part of this call (`chain::split`): the same method with `params`, classified on
    /// its own, within the same deadline.
    pub fn part(&self, core: &ChainCore, params: Bytes) -> Self {
        let call = Call {
            id: self.call.id.clone(),
            method: self.call.method.clone(),
            method_json: self.call.method_json.clone(),
            params: Some(params),
        };
        let info = core
            .family
            .method_info(&call.method, call.params.as_deref());
        Self {
            call,
            info,
            started: self.started,
            timeout: self.timeout,
            deadline: self.deadline,
            prefer: self.prefer.clone(),
            key: None,
        }
    }
}

/// A call's answer, and how it ended (for metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub payload: Payload,
    pub outcome: CallOutcome,
    /// The head of the upstream that answered, when one did and its head was known.
    pub served_head: Option<u64>,
    /// Shared from another caller's identical call (coalescing): that caller's layers keep
    /// it, if anything does.
    pub follower: bool,
}

impl Answer {
    pub fn new(payload: Payload, outcome: CallOutcome) -> Self {
        Self {
            payload,
            outcome,
            served_head: None,
            follower: false,
        }
    }
}

/// The layer of a service that needs only the chain's core besides its inner service
/// (`CoreLayer::<Steer<()>>::new(core)` wraps `S` into `Steer<S>`).
#[derive(Debug)]
pub struct CoreLayer<T> {
    core: Arc<ChainCore>,
    service: PhantomData<fn() -> T>,
}

impl<T> CoreLayer<T> {
    pub fn new(core: &Arc<ChainCore>) -> Self {
        Self {
            core: core.clone(),
            service: PhantomData,
        }
    }
}

/// A service built around an inner one and the chain's core.
pub trait WithCore<S> {
    type Service;
    fn wrap(inner: S, core: Arc<ChainCore>) -> Self::Service;
}

impl<T: WithCore<S>, S> Layer<S> for CoreLayer<T> {
    type Service = T::Service;

    fn layer(&self, inner: S) -> T::Service {
        T::wrap(inner, self.core.clone())
    }
}

/// What a layer's service returns when it has work of its own to do around the call.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;
