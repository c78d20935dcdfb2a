//! The response body type: a short list of byte chunks with an exact length, or a stream.
//!
//! Responses are built from slices of other buffers (the client's ids, the upstreams' results)
//! so that large answers pass through without being copied into a new buffer. Small responses
//! are joined into one chunk, which hyper writes in one go. Batch answers are streamed as
//! their items complete, in order, so that a batch never holds all of its answers at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Frame, SizeHint};

/// Below this size, chunks are copied into one buffer: cheaper than many small writes.
const JOIN_BELOW: usize = 16 * 1024;

type ChunkStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

#[derive(Default)]
pub struct Body {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    /// When set, the body is this stream (and `chunks` is empty).
    stream: Option<ChunkStream>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("chunks", &self.chunks.len())
            .field("remaining", &self.remaining)
            .field("streaming", &self.stream.is_some())
            .finish()
    }
}

impl Body {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        Self {
            chunks: join_small(chunks).into(),
            remaining: len as u64,
            stream: None,
        }
    }

    /// A body of unknown length, sent chunk by chunk as the stream yields.
    pub fn from_stream(stream: impl Stream<Item = Bytes> + Send + 'static) -> Self {
        Self {
            chunks: VecDeque::new(),
            remaining: 0,
            stream: Some(Box::pin(stream)),
        }
    }
}

/// The pieces copied into one buffer.
pub fn concat(chunks: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for c in chunks {
        buf.extend_from_slice(c);
    }
    buf.freeze()
}

/// Small pieces joined into one buffer (one write); large ones left as they are (no copy).
pub fn join_small(chunks: Vec<Bytes>) -> Vec<Bytes> {
    let len: usize = chunks.iter().map(Bytes::len).sum();
    if len <= JOIN_BELOW && chunks.len() > 1 {
        vec![concat(&chunks)]
    } else {
        chunks.into_iter().filter(|c| !c.is_empty()).collect()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self::from_chunks(vec![b])
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::from(Bytes::from(s))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(stream) = self.stream.as_mut() {
            return stream
                .as_mut()
                .poll_next(cx)
                .map(|next| next.map(|b| Ok(Frame::data(b))));
        }
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.stream {
            Some(_) => SizeHint::default(),
            None => SizeHint::with_exact(self.remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn small_chunks_are_joined_and_length_is_exact() {
        let body = Body::from_chunks(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(4));
        assert_eq!(body.chunks.len(), 1);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcd");
    }

    #[tokio::test]
    async fn large_chunks_are_not_copied() {
        let big = Bytes::from(vec![b'x'; JOIN_BELOW * 2]);
        let ptr = big.as_ptr();
        let mut body = Body::from_chunks(vec![
            Bytes::from_static(b"["),
            big,
            Bytes::from_static(b"]"),
        ]);
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            Some(JOIN_BELOW as u64 * 2 + 2)
        );
        let _ = body.frame().await;
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second.as_ptr(), ptr);
    }

    #[tokio::test]
    async fn streams_in_order_with_unknown_length() {
        let body = Body::from_stream(futures_util::stream::iter(vec![
            Bytes::from_static(b"["),
            Bytes::from_static(b"1"),
            Bytes::from_static(b"]"),
        ]));
        assert_eq!(http_body::Body::size_hint(&body).exact(), None);
        assert!(!http_body::Body::is_end_stream(&body));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"[1]");
    }

    #[tokio::test]
    async fn empty_body_ends_at_once() {
        let body = Body::empty();
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 0);
    }
}
