//! The response body type: a short list of byte chunks with an exact length.
//!
//! Responses are built from slices of other buffers (the client's ids, the upstreams' results)
//! so that large answers pass through without being copied into a new buffer. Small responses
//! are joined into one chunk, which hyper writes in one go.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

/// Below this size, chunks are copied into one buffer: cheaper than many small writes.
const JOIN_BELOW: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Body {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl Body {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let chunks: VecDeque<Bytes> = if len <= JOIN_BELOW && chunks.len() > 1 {
            let mut buf = BytesMut::with_capacity(len);
            for c in &chunks {
                buf.extend_from_slice(c);
            }
            VecDeque::from([buf.freeze()])
        } else {
            chunks.into_iter().filter(|c| !c.is_empty()).collect()
        };
        Self {
            chunks,
            remaining: len as u64,
        }
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
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
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
    async fn empty_body_ends_at_once() {
        let body = Body::empty();
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 0);
    }
}
