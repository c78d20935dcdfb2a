//! The process-wide budget of upstream answer bytes held in memory (`[server]
//! max_buffered_bytes`), shared by every chain and upstream.
//!
//! An answer takes its bytes from the budget as they arrive and gives them back when the
//! last slice of it is dropped, which is after the client has been sent it: the budget
//! bounds what is really held, not only what is being read. A call that finds the budget
//! spent waits `BUDGET_WAIT` for room, then fails with a clear error (-32005), rather than
//! taking the process down with it. Answers up to `FREE_BYTES` take nothing: that is
//! nearly every call (a balance, a receipt), and their sum is bounded by
//! `max_concurrent_calls` already, so they never wait behind one wide `eth_getLogs`.
//!
//! A tokio semaphore with a permit per byte, held inside the answer's `Bytes`
//! (`Bytes::from_owner`): given back by the drop of the last slice, with nothing to remember
//! to release. Nobody waits *on* the semaphore: a waiter there takes the free permits one
//! release at a time and sits on them, so that one 100 MB answer waiting would starve every
//! other. A waiter instead tries again each time bytes are given back (`Notify`), taking all
//! it needs at once or nothing. And an answer that already holds part of the budget (one
//! growing as it arrives, without a length) never waits for more: two such answers waiting
//! on each other would both fail at the end of the wait, where one can finish now.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Bytes of each answer not counted against the budget.
pub const FREE_BYTES: usize = 16 * 1024;
/// How long an answer waits for room in the budget before its call fails.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);
/// The budget is taken in steps of this size at least, so that a large answer arriving in
/// many small frames does not touch the semaphore for each.
const STEP: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct AnswerBudget {
    bytes: Arc<Semaphore>,
    /// Told each time bytes are given back.
    returned: Arc<Notify>,
    total: usize,
}

impl AnswerBudget {
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            returned: Arc::new(Notify::new()),
            total,
        }
    }

    /// `n` bytes at once, or none; waiting until `until` for room when `wait`.
    async fn take(&self, n: u32, wait: bool, until: Instant) -> Option<Share> {
        loop {
            // Listening before trying: a release between the try and the wait is not lost.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Ok(permit) = self.bytes.clone().try_acquire_many_owned(n) {
                return Some(Share {
                    permit: Some(permit),
                    returned: self.returned.clone(),
                });
            }
            if !wait || tokio::time::timeout_at(until, returned).await.is_err() {
                return None;
            }
        }
    }

    /// The budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes held by answers now.
    /// Its semaphore (one permit per byte) and its size, for the gauge of bytes held.
    pub fn permits(&self) -> (Arc<Semaphore>, usize) {
        (self.bytes.clone(), self.total)
    }

    pub fn held(&self) -> usize {
        self.total.saturating_sub(self.bytes.available_permits())
    }
}

/// Permits of the budget that tell its waiters when they are given back.
#[derive(Debug)]
struct Share {
    permit: Option<OwnedSemaphorePermit>,
    returned: Arc<Notify>,
}

impl Share {
    fn num_permits(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn merge(&mut self, mut other: Share) {
        match (&mut self.permit, other.permit.take()) {
            (Some(p), Some(o)) => p.merge(o),
            (None, o) => self.permit = o,
            (Some(_), None) => {}
        }
    }

    /// Give back all but `keep` permits now.
    fn keep(&mut self, keep: usize) {
        let extra = self.num_permits().saturating_sub(keep);
        if extra > 0 {
            drop(self.permit.as_mut().and_then(|p| p.split(extra)));
            self.returned.notify_waiters();
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.returned.notify_waiters();
        }
    }
}

/// What one answer holds of the budget, growing as it is read.
#[derive(Debug)]
pub struct Holding {
    budget: AnswerBudget,
    permit: Option<Share>,
}

/// The budget had no room for an answer of this size within `BUDGET_WAIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub total: usize,
}

impl Holding {
    pub fn new(budget: &AnswerBudget) -> Self {
        Self {
            budget: budget.clone(),
            permit: None,
        }
    }

    fn held(&self) -> usize {
        self.permit.as_ref().map_or(0, Share::num_permits)
    }

    /// Hold enough for an answer of `size` bytes (taken in steps of `STEP`, up to `cap`: pass
    /// the size itself when it is known). A first share waits until `until` for room at the
    /// latest; a further one (the answer is growing) does not wait.
    pub async fn cover(
        &mut self,
        size: usize,
        cap: usize,
        until: Instant,
    ) -> Result<(), OverBudget> {
        let need = size.saturating_sub(FREE_BYTES);
        let held = self.held();
        if need <= held {
            return Ok(());
        }
        if need > self.budget.total {
            return Err(OverBudget {
                total: self.budget.total,
            });
        }
        let want = need
            .max(held + STEP)
            .min(cap.saturating_sub(FREE_BYTES).max(need))
            .min(self.budget.total);
        // At most 1 GiB at once (`max_response_bytes`' bound), well within a u32.
        let more = u32::try_from(want - held).unwrap_or(u32::MAX);
        debug_assert!(want - held <= u32::MAX as usize);
        let Some(permit) = self.budget.take(more, held == 0, until).await else {
            return Err(OverBudget {
                total: self.budget.total,
            });
        };
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        Ok(())
    }

    /// The answer's bytes, holding their share of the budget (what was taken in steps
    /// beyond it goes back now) until the last slice of them is dropped.
    pub fn into_bytes(mut self, data: Bytes) -> Bytes {
        let need = data.len().saturating_sub(FREE_BYTES);
        if let Some(p) = &mut self.permit {
            p.keep(need);
            if need == 0 {
                self.permit = None;
            }
        }
        match self.permit {
            None => data,
            Some(permit) => Bytes::from_owner(Held {
                data,
                _permit: permit,
            }),
        }
    }
}

struct Held {
    data: Bytes,
    _permit: Share,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(10)
    }

    #[tokio::test]
    async fn small_answers_take_nothing_and_large_ones_hold_until_dropped() {
        let budget = AnswerBudget::new(1024 * 1024);
        let mut small = Holding::new(&budget);
        small.cover(FREE_BYTES, usize::MAX, soon()).await.unwrap();
        assert_eq!(budget.held(), 0);
        let mut large = Holding::new(&budget);
        large
            .cover(FREE_BYTES + 300_000, usize::MAX, soon())
            .await
            .unwrap();
        assert_eq!(budget.held(), 300_000);
        let bytes = large.into_bytes(Bytes::from(vec![0u8; FREE_BYTES + 300_000]));
        let slice = bytes.slice(10..20);
        drop(bytes);
        // A slice of the answer still holds its budget.
        assert_eq!(budget.held(), 300_000);
        drop(slice);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn grows_in_steps_and_fails_when_there_is_no_room() {
        let budget = AnswerBudget::new(200_000);
        let mut a = Holding::new(&budget);
        a.cover(FREE_BYTES + 1, 150_000, soon()).await.unwrap();
        // One step taken, not one byte.
        assert_eq!(budget.held(), STEP);
        a.cover(150_000, 150_000, soon()).await.unwrap();
        assert_eq!(budget.held(), 150_000 - FREE_BYTES);
        let mut b = Holding::new(&budget);
        assert_eq!(
            b.cover(150_000, 150_000, soon()).await,
            Err(OverBudget { total: 200_000 })
        );
        // More than the whole budget can never be held: no wait.
        let mut c = Holding::new(&budget);
        assert!(c
            .cover(300_000, 300_000, soon() + Duration::from_secs(60))
            .await
            .is_err());
        drop(a);
        b.cover(150_000, 150_000, soon()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_answer_does_not_starve_smaller_ones() {
        let budget = AnswerBudget::new(100_000);
        let mut a = Holding::new(&budget);
        a.cover(FREE_BYTES + 60_000, FREE_BYTES + 60_000, soon())
            .await
            .unwrap();
        // A large answer waits for room it does not have...
        let large = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut b = Holding::new(&budget);
                let size = FREE_BYTES + 80_000;
                b.cover(size, size, Instant::now() + BUDGET_WAIT).await
            })
        };
        tokio::task::yield_now().await;
        // ...and meanwhile one that fits in what is free gets it, at once.
        let mut c = Holding::new(&budget);
        let size = FREE_BYTES + 30_000;
        assert_eq!(c.cover(size, size, Instant::now()).await, Ok(()));
        drop(c);
        drop(a);
        assert_eq!(large.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_answer_does_not_wait_for_more() {
        let budget = AnswerBudget::new(100_000);
        let mut a = Holding::new(&budget);
        a.cover(FREE_BYTES + 50_000, FREE_BYTES + 50_000, soon())
            .await
            .unwrap();
        let mut b = Holding::new(&budget);
        b.cover(FREE_BYTES + 40_000, FREE_BYTES + 40_000, soon())
            .await
            .unwrap();
        let started = Instant::now();
        assert!(a
            .cover(FREE_BYTES + 90_000, usize::MAX, started + BUDGET_WAIT)
            .await
            .is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_room_until_told() {
        let budget = AnswerBudget::new(100_000);
        let mut a = Holding::new(&budget);
        a.cover(100_000, 100_000, soon()).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut b = Holding::new(&budget);
                b.cover(60_000, 60_000, Instant::now() + BUDGET_WAIT).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(a);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
