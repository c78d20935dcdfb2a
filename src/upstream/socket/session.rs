//! One open upstream socket, until it closes: subscribe to heads (and to pending
//! transactions while a client wants them), hand what the node pushes to the chain, ping on
//! an interval, and close when a pong is missed, when the heads go stale, when no client
//! has needed it for `upstream_linger`, or at stop.
//!
//! The node's subscription ids stay here: what goes on is a block number or a transaction
//! hash, which the chain turns into its own notifications under its own ids.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::connect::Socket;
use super::stale::StaleWatch;
use super::status::{CloseReason, SocketStatus};
use crate::family::{Push, PushProtocol};

/// What the chain needs of the socket now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// Some client needs the chain's heads (a subscription or a filter).
    pub any: bool,
    /// Some client wants pending transactions.
    pub pending: bool,
}

/// The chain's side of an upstream socket.
pub trait SocketHooks: Send + Sync {
    fn wants(&self) -> Wants;
    /// The upstream's head from its last probe.
    fn polled_head(&self) -> Option<u64>;
    /// The node told a new head.
    fn head(&self, number: u64);
    /// The node told a pending transaction.
    fn pending(&self, hash: String);
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ping_interval: Duration,
    pub linger: Duration,
    pub stale_after: Duration,
}

pub struct Session<'a> {
    pub push: &'a dyn PushProtocol,
    pub hooks: &'a dyn SocketHooks,
    pub status: &'a SocketStatus,
    pub timing: Timing,
}

/// What a request sent on the socket was.
#[derive(Debug, Clone, Copy)]
enum Asked {
    Subscribe(Push),
    Unsubscribe,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<Notice<'a>>,
}

#[derive(Deserialize)]
struct Notice<'a> {
    #[serde(borrow)]
    subscription: &'a RawValue,
    #[serde(borrow)]
    result: &'a RawValue,
}

#[derive(Debug, Default)]
struct Subs {
    asked: HashMap<u64, Asked>,
    next_id: u64,
    /// The node's ids (JSON text) of the subscriptions it confirmed.
    heads: Option<String>,
    pending: Option<String>,
    /// A pending subscription asked, not answered yet.
    pending_asked: bool,
    /// The node refused pending transactions: not asked again on this socket.
    pending_refused: bool,
    /// The last head the node told.
    told: Option<u64>,
}

type Closed = (CloseReason, String);

impl Session<'_> {
    /// Run until the socket closes: why, in words.
    pub async fn run(&self, mut socket: Socket, stop: &mut watch::Receiver<bool>) -> Closed {
        let closed = match self.serve(&mut socket, stop).await {
            Err(closed) => closed,
            Ok(never) => match never {},
        };
        // A polite close, not waited for long: the node may be gone.
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        closed
    }

    async fn serve(
        &self,
        socket: &mut Socket,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<std::convert::Infallible, Closed> {
        let t = self.timing;
        let mut subs = Subs::default();
        self.ask(socket, &mut subs, Asked::Subscribe(Push::Heads))
            .await?;
        let mut stale = StaleWatch::new(t.stale_after, self.hooks.polled_head());
        let mut tick = tokio::time::interval(
            (t.ping_interval / 4).clamp(Duration::from_millis(25), Duration::from_secs(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ping = Instant::now();
        let mut heard = true;
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::select! {
                message = socket.next() => {
                    heard = true;
                    match message {
                        Some(Ok(Message::Text(text))) => self.on_text(text.as_bytes(), socket, &mut subs).await?,
                        Some(Ok(Message::Binary(bytes))) => self.on_text(&bytes, socket, &mut subs).await?,
                        Some(Ok(Message::Close(frame))) => {
                            let why = frame.map_or_else(String::new, |f| format!(" ({} {})", u16::from(f.code), f.reason));
                            return Err((CloseReason::Lost, format!("closed by the upstream{why}")));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err((CloseReason::Lost, format!("socket: {e}"))),
                        None => return Err((CloseReason::Lost, "closed by the upstream".into())),
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let wants = self.hooks.wants();
                    if wants.any {
                        idle_since = None;
                    } else if now.duration_since(*idle_since.get_or_insert(now)) >= t.linger {
                        return Err((CloseReason::Idle, "no client needed it".into()));
                    }
                    self.follow_pending(socket, &mut subs, wants.pending).await?;
                    let told = subs.told;
                    if stale.is_stale(self.hooks.polled_head(), told, now) {
                        return Err((CloseReason::Stale, format!(
                            "its heads trailed the polled head for {}",
                            humantime::format_duration(t.stale_after)
                        )));
                    }
                    if now.duration_since(last_ping) >= t.ping_interval {
                        if !heard {
                            return Err((CloseReason::PingTimeout, format!(
                                "no pong within {}",
                                humantime::format_duration(t.ping_interval)
                            )));
                        }
                        heard = false;
                        last_ping = now;
                        self.send(socket, Message::Ping(Default::default())).await?;
                    }
                }
                changed = stop.changed() => if changed.is_err() || *stop.borrow() {
                    return Err((CloseReason::Stopped, "Manifold stopped".into()));
                },
            }
        }
    }

    /// Subscribe to pending transactions while wanted, unsubscribe when not.
    async fn follow_pending(
        &self,
        socket: &mut Socket,
        subs: &mut Subs,
        wanted: bool,
    ) -> Result<(), Closed> {
        if wanted && subs.pending.is_none() && !subs.pending_asked && !subs.pending_refused {
            subs.pending_asked = true;
            self.ask(socket, subs, Asked::Subscribe(Push::Pending))
                .await?;
        } else if !wanted {
            if let Some(id) = subs.pending.take() {
                self.ask_raw(socket, subs, Asked::Unsubscribe, &id).await?;
            }
        }
        Ok(())
    }

    async fn on_text(
        &self,
        text: &[u8],
        socket: &mut Socket,
        subs: &mut Subs,
    ) -> Result<(), Closed> {
        let Ok(frame) = serde_json::from_slice::<Frame>(text) else {
            // Not JSON-RPC: a node (or a gateway) that says something else entirely.
            let shown = String::from_utf8_lossy(text.get(..text.len().min(120)).unwrap_or(text))
                .into_owned();
            return Err((
                CloseReason::Refused,
                format!("not a JSON-RPC message: {shown}"),
            ));
        };
        if let Some(n) = frame.params {
            let id = n.subscription.get();
            if subs.heads.as_deref() == Some(id) {
                if let Some(number) = self.push.head_number(n.result.get().as_bytes()) {
                    subs.told = Some(number);
                    self.status.told_head();
                    self.hooks.head(number);
                }
            } else if subs.pending.as_deref() == Some(id) {
                if let Some(hash) = self.push.pending_hash(n.result.get().as_bytes()) {
                    self.status.told_pending();
                    self.hooks.pending(hash);
                }
            }
            return Ok(());
        }
        let Some(asked) = frame.id.and_then(|id| subs.asked.remove(&id)) else {
            return Ok(());
        };
        match (asked, frame.result, frame.error) {
            (Asked::Subscribe(Push::Heads), Some(id), None) => {
                subs.heads = Some(id.get().to_string())
            }
            (Asked::Subscribe(Push::Heads), _, error) => {
                let why = error.map_or("no subscription id", |e| e.get());
                return Err((
                    CloseReason::Refused,
                    format!("the node refused newHeads: {why}"),
                ));
            }
            (Asked::Subscribe(Push::Pending), Some(id), None) => {
                subs.pending_asked = false;
                subs.pending = Some(id.get().to_string());
                // No longer wanted while it was asked for.
                let wanted = self.hooks.wants().pending;
                self.follow_pending(socket, subs, wanted).await?;
            }
            (Asked::Subscribe(Push::Pending), _, error) => {
                subs.pending_asked = false;
                subs.pending_refused = true;
                let why = error.map_or("no subscription id", |e| e.get());
                self.status
                    .failed(format!("the node refused newPendingTransactions: {why}"));
            }
            (Asked::Unsubscribe, _, _) => {}
        }
        Ok(())
    }

    async fn ask(&self, socket: &mut Socket, subs: &mut Subs, asked: Asked) -> Result<(), Closed> {
        self.ask_raw(socket, subs, asked, "").await
    }

    /// Send the request for `asked` (`id`: the node's subscription id, to unsubscribe).
    async fn ask_raw(
        &self,
        socket: &mut Socket,
        subs: &mut Subs,
        asked: Asked,
        id: &str,
    ) -> Result<(), Closed> {
        subs.next_id += 1;
        let call = match asked {
            Asked::Subscribe(what) => self.push.subscribe(what),
            Asked::Unsubscribe => self.push.unsubscribe(id),
        };
        subs.asked.insert(subs.next_id, asked);
        let body = call.encode(subs.next_id.to_string().as_bytes());
        let text = String::from_utf8_lossy(&body).into_owned();
        self.send(socket, Message::text(text)).await
    }

    /// Send, within a ping interval: a node that stopped reading is as good as gone.
    async fn send(&self, socket: &mut Socket, message: Message) -> Result<(), Closed> {
        match tokio::time::timeout(self.timing.ping_interval, socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((CloseReason::Lost, format!("socket: {e}"))),
            Err(_) => Err((
                CloseReason::PingTimeout,
                "the upstream stopped reading".into(),
            )),
        }
    }
}
