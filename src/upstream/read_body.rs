//! Reading an upstream's answer body within its limits: at most `max_response_bytes`
//! (before and after decompression), its bytes taken from the process's budget as they
//! arrive (`budget`), and gzip inflated a little at a time.
//!
//! Inflating is done here rather than by a decoding body wrapper so that the limit is
//! checked after every kilobyte of input: a 2 MB gzip bomb that would expand to 2 GiB
//! stops at `max_response_bytes`, and the task yields between pieces, so that thirty-two
//! of them at once do not keep the worker threads from everyone else's calls.

use std::io::Write;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::budget::{AnswerBudget, Holding, OverBudget, BUDGET_WAIT};
use super::client::TransportError;

/// Compressed input inflated at a time: at most about a megabyte of output (deflate
/// expands at most 1032 to 1), a millisecond of work.
const GZIP_PIECE: usize = 1024;
/// Output inflated between two yields to the scheduler.
const YIELD_EVERY: usize = 256 * 1024;

/// The limits an answer is read within.
#[derive(Debug, Clone)]
pub struct AnswerLimit {
    /// The largest answer taken, compressed or not (the chain's `max_response_bytes`).
    pub max_bytes: usize,
    /// The process's budget of buffered answer bytes (`max_buffered_bytes`).
    pub budget: AnswerBudget,
}

impl AnswerLimit {
    /// No budget beyond the size limit: for tests and tools.
    pub fn unbudgeted(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            budget: AnswerBudget::new(max_bytes),
        }
    }
}

/// How the body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// The whole body, within `limit`.
pub async fn read_answer<B>(
    body: B,
    encoding: Encoding,
    limit: &AnswerLimit,
) -> Result<Bytes, TransportError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let max = limit.max_bytes;
    // Its `Content-Length`, when it sent one (hyper's exact size hint).
    let declared = http_body::Body::size_hint(&body).exact();
    if declared.is_some_and(|len| len > max as u64) {
        return Err(TransportError::TooLarge(max));
    }
    let mut holding = Holding::new(&limit.budget);
    let over = |e: OverBudget| TransportError::OverBudget(e.total);
    let wait = || Instant::now() + BUDGET_WAIT;
    let mut body = std::pin::pin!(body);
    let mut received = 0usize;
    let mut next = async || -> Result<Option<Bytes>, TransportError> {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| TransportError::Io(super::client::error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                received += data.len();
                if received > max {
                    return Err(TransportError::TooLarge(max));
                }
                return Ok(Some(data));
            }
        }
        Ok(None)
    };
    match encoding {
        Encoding::Identity => {
            if let Some(len) = declared {
                // Exactly what it says, not a step more.
                let len = usize::try_from(len).unwrap_or(max);
                holding.cover(len, len, wait()).await.map_err(over)?;
            }
            // One frame is the whole answer, nearly always: kept as it came, no copy.
            let mut first: Option<Bytes> = None;
            let mut buf = Capped::new(max);
            while let Some(data) = next().await? {
                holding
                    .cover(
                        buf.len() + first.as_ref().map_or(0, Bytes::len) + data.len(),
                        max,
                        wait(),
                    )
                    .await
                    .map_err(over)?;
                if buf.is_empty() && first.is_none() {
                    first = Some(data);
                    continue;
                }
                if let Some(f) = first.take() {
                    buf.append(&f)?;
                }
                buf.append(&data)?;
            }
            let bytes = match first {
                Some(f) => f,
                None => buf.into_bytes(),
            };
            Ok(holding.into_bytes(bytes))
        }
        Encoding::Gzip => {
            let mut inflate = flate2::write::MultiGzDecoder::new(Capped::new(max));
            let mut since_yield = 0usize;
            let gzip = |e: std::io::Error| gzip_error(e, max);
            while let Some(data) = next().await? {
                for piece in data.chunks(GZIP_PIECE) {
                    let before = inflate.get_ref().len();
                    inflate.write_all(piece).map_err(gzip)?;
                    let out = inflate.get_ref().len();
                    holding.cover(out, max, wait()).await.map_err(over)?;
                    since_yield += out - before;
                    if since_yield >= YIELD_EVERY {
                        since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                }
            }
            let out = inflate.finish().map_err(gzip)?;
            holding.cover(out.len(), max, wait()).await.map_err(over)?;
            Ok(holding.into_bytes(out.into_bytes()))
        }
    }
}

fn gzip_error(e: std::io::Error, max: usize) -> TransportError {
    if e.get_ref().is_some_and(|inner| inner.is::<Overflow>()) {
        TransportError::TooLarge(max)
    } else {
        TransportError::Decode(format!("gzip: {e}"))
    }
}

/// The written bytes exceeded the cap.
#[derive(Debug, thiserror::Error)]
#[error("answer larger than the limit")]
struct Overflow;

/// A buffer that refuses to grow past `max` bytes, and whose capacity never exceeds it
/// (a `Vec` doubling towards a 64 MiB limit would reserve 128).
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl Capped {
    fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn append(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.push(data)
            .map_err(|Overflow| TransportError::TooLarge(self.max))
    }

    fn push(&mut self, data: &[u8]) -> Result<(), Overflow> {
        let needed = self.buf.len() + data.len();
        if needed > self.max {
            return Err(Overflow);
        }
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity() * 2).min(self.max);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn into_bytes(mut self) -> Bytes {
        if self.buf.capacity() - self.buf.len() > 64 * 1024 {
            self.buf.shrink_to_fit();
        }
        Bytes::from(self.buf)
    }
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.push(data)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::budget::FREE_BYTES;
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    fn body(
        chunks: Vec<Vec<u8>>,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
        StreamBody::new(stream::iter(
            chunks.into_iter().map(|c| Ok(Frame::data(Bytes::from(c)))),
        ))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn limit(max: usize, budget: usize) -> AnswerLimit {
        AnswerLimit {
            max_bytes: max,
            budget: AnswerBudget::new(budget),
        }
    }

    #[tokio::test]
    async fn one_frame_is_kept_as_it_came_and_many_are_joined() {
        let l = limit(1000, 1 << 20);
        let one = Bytes::from_static(b"{\"id\":1}");
        let ptr = one.as_ptr();
        let one_copy = one.clone();
        let got = read_answer(Full::new(one_copy), Encoding::Identity, &l)
            .await
            .unwrap();
        assert_eq!(got.as_ptr(), ptr);
        let got = read_answer(
            body(vec![b"ab".to_vec(), b"cd".to_vec(), b"e".to_vec()]),
            Encoding::Identity,
            &l,
        )
        .await
        .unwrap();
        assert_eq!(&got[..], b"abcde");
    }

    #[tokio::test]
    async fn too_large_declared_or_streamed_or_inflated() {
        let l = limit(1000, 1 << 20);
        let err =
            |r: Result<Bytes, TransportError>| matches!(r, Err(TransportError::TooLarge(1000)));
        // Declared too large: not read at all.
        assert!(err(read_answer(
            Full::new(Bytes::from(vec![b'a'; 1001])),
            Encoding::Identity,
            &l
        )
        .await));
        assert!(err(read_answer(
            body(vec![vec![b'a'; 600], vec![b'a'; 600]]),
            Encoding::Identity,
            &l
        )
        .await));
        assert_eq!(
            read_answer(body(vec![vec![b'a'; 1000]]), Encoding::Identity, &l)
                .await
                .unwrap()
                .len(),
            1000
        );
        // 100 kB of zeros in a few hundred bytes of gzip.
        let bomb = gzip(&vec![0u8; 100_000]);
        assert!(bomb.len() < 1000);
        assert!(err(read_answer(body(vec![bomb]), Encoding::Gzip, &l).await));
        let ok = gzip(&vec![b'x'; 1000]);
        assert_eq!(
            read_answer(body(vec![ok]), Encoding::Gzip, &l)
                .await
                .unwrap()
                .len(),
            1000
        );
        assert!(matches!(
            read_answer(body(vec![b"not gzip".to_vec()]), Encoding::Gzip, &l).await,
            Err(TransportError::Decode(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_holds_its_budget_until_dropped() {
        let size = FREE_BYTES + 200_000;
        let l = limit(1 << 20, 300_000);
        let a = read_answer(
            body(vec![vec![b'a'; size / 2], vec![b'a'; size - size / 2]]),
            Encoding::Identity,
            &l,
        )
        .await
        .unwrap();
        assert_eq!(a.len(), size);
        assert_eq!(l.budget.held(), 200_000);
        // A second one does not fit: a clear error after the wait, not a second buffer.
        let started = Instant::now();
        let second = read_answer(
            Full::new(Bytes::from(vec![b'a'; size])),
            Encoding::Identity,
            &l,
        )
        .await;
        assert!(
            matches!(second, Err(TransportError::OverBudget(300_000))),
            "{second:?}"
        );
        assert!(started.elapsed() >= BUDGET_WAIT);
        drop(a);
        assert_eq!(l.budget.held(), 0);
        // Gzip counts what it inflates to.
        let gz = gzip(&vec![b'z'; size]);
        let b = read_answer(body(vec![gz]), Encoding::Gzip, &l)
            .await
            .unwrap();
        assert_eq!(l.budget.held(), 200_000);
        drop(b);
        assert_eq!(l.budget.held(), 0);
    }
}
