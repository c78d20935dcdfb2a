//! One client socket: its calls read and answered (at most `max_in_flight` at once: past
//! them, the next frames wait unread), its subscriptions fed from the chain's new heads, a
//! ping every `ping_interval`, and its end (the client's close, a slow or silent client,
//! shutdown), each with its close code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::outbox::{self, Outbox};
use super::subscriptions::Subscriptions;
use crate::answers::Answerer;
use crate::chain::heads::NewHead;
use crate::chain::log_feed::LogBatch;
use crate::chain::Chain;
use crate::config::WsConfig;
use crate::jsonrpc::{self, encode_response, Id, Incoming, Item, Limits, Payload};
use crate::metrics::{Metrics, WS_QUEUED_BYTES};

/// What a session needs.
#[derive(Debug)]
pub(super) struct Session {
    pub chain: Arc<Chain>,
    pub answers: Answerer,
    pub config: WsConfig,
    pub max_batch_len: usize,
    pub stop: watch::Receiver<bool>,
    /// How long calls in flight may take to be answered once shutdown begins.
    pub grace: Duration,
    pub metrics: Arc<Metrics>,
}

/// Why a socket closed, for `manifold_ws_closed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or went away.
    Client,
    /// Its queue filled: closed with 1008.
    SlowClient,
    /// Nothing heard for two ping intervals.
    PingTimeout,
    /// The proxy is shutting down: closed with 1001 after the calls in flight.
    Shutdown,
    /// A protocol error or a message too large (1002, 1009), or the socket failed.
    Error,
}

impl Closed {
    pub(super) const ALL: usize = 5;

    pub(super) fn label(self) -> &'static str {
        match self {
            Closed::Client => "client",
            Closed::SlowClient => "slow_client",
            Closed::PingTimeout => "ping_timeout",
            Closed::Shutdown => "shutdown",
            Closed::Error => "error",
        }
    }
}

/// A call's answer on its way out, and the subscriptions that may notify once it is queued.
struct Done {
    message: Option<Message>,
    activate: Vec<String>,
}

type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

pub(super) async fn run<S>(socket: WebSocketStream<S>, s: Session) -> Closed
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut frames) = socket.split();
    let (outbox, queue) = outbox::channel(
        s.config.queue_messages,
        s.config.queue_bytes,
        s.metrics.gauge(WS_QUEUED_BYTES, Vec::new()),
    );
    let writer = tokio::spawn(outbox::write(sink, queue));
    let mut subs = Subscriptions::new(
        s.config.max_subscriptions,
        s.chain.name(),
        s.chain.family().clone(),
        &s.metrics,
    );
    // Held only while some subscription wants heads, so that no head waits for this socket
    // otherwise.
    let mut heads: Option<broadcast::Receiver<Arc<NewHead>>> = None;
    let mut logs: Option<broadcast::Receiver<Arc<LogBatch>>> = None;
    let mut pending: Option<broadcast::Receiver<Arc<str>>> = None;
    let mut calls: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut ping = tokio::time::interval(s.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut heard = Instant::now();
    let mut stop = s.stop.clone();
    let ended = loop {
        if *stop.borrow() {
            break Closed::Shutdown;
        }
        tokio::select! {
            frame = frames.next(), if calls.len() < s.config.max_in_flight => {
                heard = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break Closed::Client,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket client socket failed");
                        close_on_error(&outbox, &e);
                        break Closed::Error;
                    }
                };
                calls.push_back(s.receive(text, &mut subs));
                listen(&mut heads, subs.wants_heads(), || s.chain.heads().subscribe());
                listen(&mut logs, subs.wants_logs(), || s.chain.logs().subscribe());
                listen(&mut pending, subs.wants_pending(), || s.chain.pending().subscribe());
            }
            Some(done) = calls.next() => {
                if !deliver(&outbox, done, &mut subs).await {
                    break Closed::SlowClient;
                }
            }
            head = next(&mut heads) => match head {
                Ok(head) => {
                    if !send_all(&outbox, subs.head_messages(&head)).await {
                        break Closed::SlowClient;
                    }
                }
                // The socket's task fell a whole channel behind: as slow as a full queue.
                Err(broadcast::error::RecvError::Lagged(_)) => break Closed::SlowClient,
                // The chain is gone (a reload without it).
                Err(broadcast::error::RecvError::Closed) => heads = None,
            },
            batch = next(&mut logs) => match batch {
                Ok(batch) => {
                    if !send_all(&outbox, subs.log_messages(&batch)).await {
                        break Closed::SlowClient;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break Closed::SlowClient,
                Err(broadcast::error::RecvError::Closed) => logs = None,
            },
            hash = next(&mut pending) => match hash {
                Ok(hash) => {
                    if !send_all(&outbox, subs.pending_messages(&hash)).await {
                        break Closed::SlowClient;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break Closed::SlowClient,
                Err(broadcast::error::RecvError::Closed) => pending = None,
            },
            _ = ping.tick() => {
                if heard.elapsed() > s.config.ping_interval * 2 {
                    break Closed::PingTimeout;
                }
                if !outbox.push(Message::Ping(Bytes::new())) {
                    break Closed::SlowClient;
                }
            }
            // A sender gone (the instance dropped unstopped) is a shutdown too: otherwise
            // `changed` would answer at once on every turn of the loop.
            changed = stop.changed() => {
                if changed.is_err() {
                    break Closed::Shutdown;
                }
            }
        }
    };
    match ended {
        Closed::SlowClient => outbox.abort(frame(CloseCode::Policy, "subscriber too slow")),
        Closed::PingTimeout => outbox.abort(frame(CloseCode::Away, "ping timeout")),
        Closed::Shutdown => {
            // The calls in flight are answered first, within the drain's grace.
            let _ = tokio::time::timeout(s.grace, async {
                while let Some(done) = calls.next().await {
                    deliver(&outbox, done, &mut subs).await;
                }
            })
            .await;
            outbox.finish(frame(CloseCode::Away, "server shutting down"));
        }
        Closed::Client => outbox.finish(frame(CloseCode::Normal, "")),
        Closed::Error => {}
    }
    drop(outbox);
    let _ = writer.await;
    ended
}

impl Session {
    /// Decode one message and start answering it: its answer, in its turn. Answers go out in
    /// the order the messages came (the calls run concurrently): clients such as viem's
    /// `watchBlocks`, which asks for each new block as its head arrives, rely on it.
    /// Subscriptions made by a message notify once its answer is queued.
    fn receive(&self, text: Bytes, subs: &mut Subscriptions) -> Pending {
        let limits = Limits {
            max_batch_len: self.max_batch_len,
            version_1: self.chain.family().takes_json_rpc_1(),
        };
        let ready = |message: Option<Vec<Bytes>>, activate: Vec<String>| -> Pending {
            Box::pin(std::future::ready(Done {
                message: message.map(text_message),
                activate,
            }))
        };
        match jsonrpc::decode(&text, limits) {
            Err(e) => ready(
                Some(encode_response(
                    &Id::NULL,
                    &Payload::Error(e.to_error_object().to_json()),
                )),
                Vec::new(),
            ),
            Ok(Incoming::Single(Item::Call(call))) => match subs.answer(&call) {
                Some(payload) => ready(
                    call.id.map(|id| encode_response(&id, &payload)),
                    subs.take_inactive(),
                ),
                None => {
                    let (chain, answers) = (self.chain.clone(), self.answers.clone());
                    Box::pin(async move {
                        let answer = answers.one_with_permit(&chain, Item::Call(call)).await;
                        Done {
                            message: answer.map(text_message),
                            activate: Vec::new(),
                        }
                    })
                }
            },
            Ok(Incoming::Single(item @ Item::Invalid { .. })) => {
                let (chain, answers) = (self.chain.clone(), self.answers.clone());
                Box::pin(async move {
                    Done {
                        message: answers.one(&chain, item).await.map(text_message),
                        activate: Vec::new(),
                    }
                })
            }
            Ok(Incoming::Batch(items)) => {
                let batch = self
                    .answers
                    .batch(self.chain.clone(), items, |call| subs.answer(call));
                let activate = subs.take_inactive();
                Box::pin(async move {
                    let any = batch.any_answer;
                    let answers: Vec<Vec<Bytes>> = batch.answers.collect().await;
                    Done {
                        message: any.then(|| text_message(jsonrpc::encode_batch(answers))),
                        activate,
                    }
                })
            }
        }
    }
}

/// Queue an answer, then let its subscriptions notify; `false` when the queue stayed full.
async fn deliver(outbox: &Outbox, done: Done, subs: &mut Subscriptions) -> bool {
    let queued = match done.message {
        Some(m) => outbox.send(m).await,
        None => true,
    };
    subs.activate(&done.activate);
    queued
}

/// Listen to a feed while some subscription wants it, and only then: a feed listened to
/// keeps the chain's upstream sockets open and waits for this socket's task.
fn listen<T: Clone>(
    feed: &mut Option<broadcast::Receiver<T>>,
    wanted: bool,
    subscribe: impl FnOnce() -> broadcast::Receiver<T>,
) {
    match (feed.is_some(), wanted) {
        (false, true) => *feed = Some(subscribe()),
        (true, false) => *feed = None,
        _ => {}
    }
}

/// The next item of a feed the socket listens to; never, while it listens to none.
async fn next<T: Clone>(
    feed: &mut Option<broadcast::Receiver<T>>,
) -> Result<T, broadcast::error::RecvError> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Queue every message; `false` when the queue stayed full for one.
async fn send_all(outbox: &Outbox, messages: impl Iterator<Item = Message>) -> bool {
    for m in messages {
        if !outbox.send(m).await {
            return false;
        }
    }
    true
}

/// A protocol error or an oversized message gets its close code; a failed socket nothing.
fn close_on_error(outbox: &Outbox, e: &Error) {
    match e {
        Error::Capacity(_) => outbox.abort(frame(CloseCode::Size, "message too large")),
        Error::Protocol(_) | Error::Utf8(_) => {
            outbox.abort(frame(CloseCode::Protocol, "protocol error"))
        }
        _ => {}
    }
}

fn frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

/// A JSON text message from response chunks (copied once into one buffer).
fn text_message(chunks: Vec<Bytes>) -> Message {
    text(crate::body::concat(&chunks))
}

/// A text message of JSON bytes; an upstream's answer that is not UTF-8 goes out with
/// replacement characters.
pub(super) fn text(bytes: Bytes) -> Message {
    match Utf8Bytes::try_from(bytes.clone()) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Text(String::from_utf8_lossy(&bytes).into_owned().into()),
    }
}
