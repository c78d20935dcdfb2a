//! A socket's queue of messages to write, bounded in messages and bytes, and the task that
//! writes them.
//!
//! Everything a socket sends (answers, notifications, pings) is queued here, waiting at most
//! `ROOM_WAIT` for room: when the client does not read fast enough and the queue stays
//! full, the session closes the socket with 1008 rather than skip a message or hold more.
//! The writer sends that close frame ahead of what is still queued (the client is not
//! reading it anyway), for a second at most.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use metrics::Gauge;
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};

/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a message may wait for room in a full queue (`Outbox::send`): a burst (the
/// heads of a backfill) waits for the writer; a client that takes nothing for this long is
/// too slow.
const ROOM_WAIT: Duration = Duration::from_millis(250);

/// The bytes queued on one socket, and on all of them (`manifold_ws_queued_bytes`).
#[derive(Debug)]
struct Queued {
    bytes: AtomicUsize,
    all: Gauge,
}

impl Queued {
    /// Add `n`: the bytes queued before.
    fn add(&self, n: usize) -> usize {
        self.all.increment(n as f64);
        self.bytes.fetch_add(n, Ordering::AcqRel)
    }

    fn sub(&self, n: usize) {
        self.all.decrement(n as f64);
        self.bytes.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Drop for Queued {
    /// What was never written leaves the total with the socket.
    fn drop(&mut self) {
        self.all.decrement(*self.bytes.get_mut() as f64);
    }
}

#[derive(Debug)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Message>,
    bytes: Arc<Queued>,
    max_bytes: usize,
    abort: watch::Sender<Option<CloseFrame>>,
    /// Told each time the writer has written a message.
    room: Arc<Notify>,
}

#[derive(Debug)]
pub(super) struct Queue {
    rx: mpsc::Receiver<Message>,
    bytes: Arc<Queued>,
    abort: watch::Receiver<Option<CloseFrame>>,
    room: Arc<Notify>,
}

/// `all`: the bytes queued on every socket, which this one's count joins.
pub(super) fn channel(max_messages: usize, max_bytes: usize, all: Gauge) -> (Outbox, Queue) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let bytes = Arc::new(Queued {
        bytes: AtomicUsize::new(0),
        all,
    });
    let (abort, aborted) = watch::channel(None);
    let room = Arc::new(Notify::new());
    (
        Outbox {
            tx,
            bytes: bytes.clone(),
            max_bytes,
            abort,
            room: room.clone(),
        },
        Queue {
            rx,
            bytes,
            abort: aborted,
            room,
        },
    )
}

impl Outbox {
    /// Queue `message`; `false` when the queue is full (or the writer gone). A message
    /// larger than the byte limit goes alone into an empty queue.
    pub(super) fn push(&self, message: Message) -> bool {
        self.try_push(message, true).is_ok()
    }

    /// Queue `message`, waiting up to `ROOM_WAIT` for room; `false` when none came.
    pub(super) async fn send(&self, message: Message) -> bool {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        let mut message = message;
        loop {
            let room = self.room.notified();
            match self.try_push(message, true) {
                Ok(()) => return true,
                Err(None) => return false,
                Err(Some(m)) => message = m,
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return false;
            }
        }
    }

    /// `Err(Some(message))` when full, `Err(None)` when the writer is gone. `bytes_bound`:
    /// whether `max_bytes` applies (a close frame goes in whatever the bytes queued).
    fn try_push(&self, message: Message, bytes_bound: bool) -> Result<(), Option<Message>> {
        let len = message.len();
        let before = self.bytes.add(len);
        if bytes_bound && before > 0 && before + len > self.max_bytes {
            self.bytes.sub(len);
            return Err(Some(message));
        }
        match self.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.sub(len);
                match e {
                    mpsc::error::TrySendError::Full(m) => Err(Some(m)),
                    mpsc::error::TrySendError::Closed(_) => Err(None),
                }
            }
        }
    }

    /// Close after what is queued (1000, 1001): the close frame joins the queue, or, when
    /// there is no room for it, goes out at once.
    pub(super) fn finish(&self, frame: CloseFrame) {
        if self
            .try_push(Message::Close(Some(frame.clone())), false)
            .is_err()
        {
            self.abort(frame);
        }
    }

    /// Close now, dropping what is queued (1008: the client is not reading it).
    pub(super) fn abort(&self, frame: CloseFrame) {
        let _ = self.abort.send(Some(frame));
    }
}

/// Write the queue to `sink` until a close frame has gone out, the outbox is dropped, or
/// the socket fails. Messages are fed without a flush while more are queued, so that a
/// burst goes out in few writes.
pub(super) async fn write<S>(mut sink: S, mut queue: Queue)
where
    S: Sink<Message, Error = Error> + Unpin,
{
    // The outbox dropped (the session ended) is no abort: what it queued still goes out.
    let mut outbox_open = true;
    loop {
        let next = tokio::select! {
            biased;
            changed = queue.abort.changed(), if outbox_open => match changed {
                Ok(()) => None,
                Err(_) => {
                    outbox_open = false;
                    continue;
                }
            },
            sent = send_next(&mut sink, &mut queue.rx, &queue.bytes, &queue.room) => Some(sent),
        };
        match next {
            Some(Ok(true)) => continue,
            Some(Ok(false)) | Some(Err(_)) => return,
            None => {
                let frame = queue.abort.borrow().clone();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(frame))).await;
                return;
            }
        }
    }
}

/// One message written: `Ok(false)` once there is nothing more to write.
async fn send_next<S>(
    sink: &mut S,
    rx: &mut mpsc::Receiver<Message>,
    bytes: &Queued,
    room: &Notify,
) -> Result<bool, Error>
where
    S: Sink<Message, Error = Error> + Unpin,
{
    let Some(message) = rx.recv().await else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
        return Ok(false);
    };
    let len = message.len();
    let closing = matches!(message, Message::Close(_));
    let fed = sink.feed(message).await;
    bytes.sub(len);
    room.notify_one();
    fed?;
    if closing {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await;
        return Ok(false);
    }
    if rx.is_empty() {
        sink.flush().await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_in_messages_and_bytes() {
        let (out, _queue) = channel(3, 100, Gauge::noop());
        assert!(out.push(Message::text("x".repeat(60))));
        assert!(!out.push(Message::text("y".repeat(60))), "over the bytes");
        assert!(out.push(Message::text("z".repeat(30))));
        assert!(out.push(Message::text("")));
        assert!(!out.push(Message::text("")), "over the messages");
        let (out, _queue) = channel(3, 100, Gauge::noop());
        assert!(
            out.push(Message::text("w".repeat(500))),
            "alone, a large one goes"
        );
    }

    #[tokio::test]
    async fn written_in_order_and_the_bytes_come_back() {
        let (out, queue) = channel(8, 1000, Gauge::noop());
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = got.clone();
        let sink = Box::pin(futures_util::sink::unfold((), move |(), m: Message| {
            let into = into.clone();
            async move {
                into.lock().unwrap().push(m);
                Ok::<_, Error>(())
            }
        }));
        let bytes = queue.bytes.clone();
        for i in 0..3 {
            assert!(out.push(Message::text(format!("m{i}"))));
        }
        out.finish(CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        });
        write(sink, queue).await;
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Message::text("m0"));
        assert!(matches!(&got[3], Message::Close(Some(f)) if f.reason == "bye"));
        assert_eq!(bytes.bytes.load(Ordering::Acquire), 0);
    }
}
