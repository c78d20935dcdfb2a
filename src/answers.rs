//! Answering decoded JSON-RPC items on a chain, for both front doors (HTTP in `frontdoor`,
//! WebSocket in `ws`): one call, or a batch (its items concurrently, answered in request
//! order, sends started at once, one deadline for the whole batch, each item holding a
//! `max_concurrent_calls` permit while it runs).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use metrics::Counter;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::chain::Chain;
use crate::jsonrpc::{codes, encode_response, Call, ErrorObject, Id, Item, Payload};
use crate::snapshot::SharedSnapshot;

/// Batch items in flight at once per batch: enough to hide upstream latency, bounded so one
/// client's 1,000-item batch cannot open 1,000 upstream connections nor hold 1,000 answers.
const BATCH_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Answerer {
    snapshot: SharedSnapshot,
    /// `max_concurrent_calls`: one permit per call in flight, whichever door it came in by.
    calls: Arc<Semaphore>,
    /// `manifold_rejected_requests_total{reason="overloaded"}`.
    shed: Counter,
}

/// A batch's answers, in request order as they complete.
pub struct BatchAnswers {
    /// Whether any item expects an answer (a batch of notifications only gets none).
    pub any_answer: bool,
    pub answers: BoxStream<'static, Vec<Bytes>>,
}

impl std::fmt::Debug for BatchAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchAnswers")
            .field("any_answer", &self.any_answer)
            .finish_non_exhaustive()
    }
}

impl Answerer {
    pub fn new(snapshot: SharedSnapshot, calls: Arc<Semaphore>, shed: Counter) -> Self {
        Self {
            snapshot,
            calls,
            shed,
        }
    }

    /// -32005 `overloaded`: over `max_concurrent_calls`; nothing was sent anywhere.
    pub fn overloaded_error(&self) -> ErrorObject {
        let max = self.snapshot.load().config.server.max_concurrent_calls;
        ErrorObject::new(
            codes::LIMIT_EXCEEDED,
            format!("manifold: over capacity ({max} calls in flight, max_concurrent_calls): not sent; try again shortly"),
        )
        .with_data(json!({ "reason": "overloaded" }))
    }

    /// The answer for an item turned away at `max_concurrent_calls` (-32005, counted; `None`
    /// for a notification).
    fn shed(&self, id: Option<&Id>) -> Option<Vec<Bytes>> {
        self.shed.increment(1);
        id.map(|id| encode_response(id, &Payload::Error(self.overloaded_error().to_json())))
    }

    /// One item, whose permit the caller holds (the HTTP edge takes one per request). The
    /// response object, or `None` for a notification.
    pub async fn one(&self, chain: &Arc<Chain>, item: Item) -> Option<Vec<Bytes>> {
        match item {
            Item::Invalid { id, error } => {
                Some(encode_response(&id, &Payload::Error(error.to_json())))
            }
            Item::Call(call) => {
                let payload = chain.call(&call).await;
                call.id.map(|id| encode_response(&id, &payload))
            }
        }
    }

    /// One item, taking its own permit (a call over a WebSocket).
    pub async fn one_with_permit(&self, chain: &Arc<Chain>, item: Item) -> Option<Vec<Bytes>> {
        match &item {
            Item::Call(call) => {
                let Ok(_permit) = self.calls.clone().try_acquire_owned() else {
                    return self.shed(call.id.as_ref());
                };
                self.one(chain, item).await
            }
            Item::Invalid { .. } => self.one(chain, item).await,
        }
    }

    /// A batch's answers, streamed in request order as they complete: at most
    /// `BATCH_CONCURRENCY` answers are held at once. `local` answers the calls the door
    /// serves itself (a WebSocket's subscriptions), in request order, before anything runs.
    ///
    /// Items not safe to repeat (transaction sends) start at once, each in a task of its own
    /// (`Chain::spawn`): a client that goes away halfway through reading the answers cannot cut a
    /// batch of withdrawals in half. There are at most `max_batch_len` of them, and each
    /// upstream's `max_in_flight` bounds their attempts.
    ///
    /// Each item runs holding a `max_concurrent_calls` permit; one that finds none is answered
    /// -32005 at once (a transaction then certainly not sent).
    pub fn batch(
        &self,
        chain: Arc<Chain>,
        items: Vec<Item>,
        mut local: impl FnMut(&Call) -> Option<Payload>,
    ) -> BatchAnswers {
        let any_answer = items
            .iter()
            .any(|i| !matches!(i, Item::Call(c) if c.id.is_none()));
        let items: Vec<Prepared> = items
            .into_iter()
            .map(|item| match item {
                Item::Call(call) => match local(&call) {
                    Some(payload) => Prepared::Local(call.id.clone(), payload),
                    None if !chain.is_repeatable(&call.method) => {
                        match self.calls.clone().try_acquire_owned() {
                            Ok(permit) => {
                                Prepared::Started(call.id.clone(), chain.spawn(call), permit)
                            }
                            Err(_) => Prepared::Shed(call.id.clone()),
                        }
                    }
                    None => Prepared::Later(Item::Call(call)),
                },
                item => Prepared::Later(item),
            })
            .collect();
        let this = self.clone();
        // The whole batch has the chain's request_timeout, heavy calls included: one connection
        // cannot be held for hours by a long batch of slow calls.
        let deadline = tokio::time::Instant::now() + chain.config().policy.request_timeout;
        let answers = stream::iter(items)
            .map(move |item| {
                let chain = chain.clone();
                let this = this.clone();
                async move { this.item(&chain, item, deadline).await }
            })
            .buffered(BATCH_CONCURRENCY)
            .filter_map(|a| async move { a });
        BatchAnswers {
            any_answer,
            answers: answers.boxed(),
        }
    }

    async fn item(
        &self,
        chain: &Arc<Chain>,
        item: Prepared,
        deadline: tokio::time::Instant,
    ) -> Option<Vec<Bytes>> {
        let (id, repeatable) = match &item {
            Prepared::Later(Item::Call(c)) => (c.id.clone(), true),
            Prepared::Later(Item::Invalid { id, .. }) => (Some(id.clone()), true),
            Prepared::Started(id, ..) => (id.clone(), false),
            Prepared::Shed(id) => return self.shed(id.as_ref()),
            Prepared::Local(id, payload) => {
                return id.as_ref().map(|id| encode_response(id, payload))
            }
        };
        let answered = tokio::time::timeout_at(deadline, async {
            match item {
                Prepared::Later(item) => self.one_with_permit(chain, item).await,
                Prepared::Started(id, task, _permit) => {
                    let payload = chain.settle(task).await;
                    id.map(|id| encode_response(&id, &payload))
                }
                Prepared::Shed(_) | Prepared::Local(..) => None,
            }
        })
        .await;
        match answered {
            Ok(a) => a,
            Err(_) => id.map(|id| encode_response(&id, &chain.batch_deadline_passed(repeatable))),
        }
    }
}

/// A batch item: started already (not safe to repeat), turned away at
/// `max_concurrent_calls`, answered by the door itself, or to answer in its turn.
enum Prepared {
    Started(
        Option<Id>,
        tokio::task::JoinHandle<Payload>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    Shed(Option<Id>),
    Local(Option<Id>, Payload),
    Later(Item),
}
