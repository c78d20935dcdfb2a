//! A chain's upstreams and the order in which a request tries them.
//!
//! For now the order is simple and predictable: upstreams allowed for the method, usable ones
//! first, best tier first, then configuration order; upstreams that are skipped for recent
//! failures come last, as a last resort. A request moves to the next upstream only when the
//! attempt failed in a way another upstream can fix (`Outcome::is_upstream_fault`): an
//! answer, error objects included, is final. Scored selection, breakers and budgets replace
//! the ordering in later work without changing this type's interface.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::outcome::AttemptFailure;
use super::Upstream;
use crate::jsonrpc::Payload;

#[derive(Debug)]
pub struct UpstreamSet {
    upstreams: Vec<Arc<Upstream>>,
    max_attempts: usize,
}

/// Why no upstream answered.
#[derive(Debug, Clone)]
pub enum SetFailure {
    /// No upstream may serve this method.
    NoUpstream,
    /// Every attempt failed; in the order they were made.
    AllFailed(Vec<AttemptFailure>),
}

impl UpstreamSet {
    pub fn new(upstreams: Vec<Arc<Upstream>>, max_attempts: u32) -> Self {
        Self {
            upstreams,
            max_attempts: usize::try_from(max_attempts).unwrap_or(usize::MAX).max(1),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.iter()
    }

    /// Upstreams to try for `method`, in order.
    pub fn candidates(&self, method: &str) -> Vec<&Arc<Upstream>> {
        let mut c: Vec<&Arc<Upstream>> = self
            .upstreams
            .iter()
            .filter(|u| u.config.methods.allows(method))
            .collect();
        // Stable: configuration order is kept within each (usable, tier) group.
        c.sort_by_key(|u| (!u.is_usable(), u.config.tier));
        c
    }

    /// Send the request to the first candidate, and on to the next while attempts fail, until
    /// `deadline`. A call that is not `repeatable` (a transaction, a filter) moves on only
    /// when the failed attempt certainly did not reach a node: sending it twice could do
    /// twice what the client asked once, or report "already known" for a success.
    pub async fn call(
        &self,
        method: &str,
        request_id: &[u8],
        body: &Bytes,
        deadline: Instant,
        repeatable: bool,
    ) -> Result<Payload, SetFailure> {
        let candidates = self.candidates(method);
        if candidates.is_empty() {
            return Err(SetFailure::NoUpstream);
        }
        let mut failures: Vec<AttemptFailure> = Vec::new();
        for upstream in candidates.into_iter().take(self.max_attempts) {
            if Instant::now() >= deadline {
                break;
            }
            match upstream.attempt(request_id, body.clone(), deadline).await {
                Ok(payload) => return Ok(payload),
                Err(f) => {
                    let stop = !repeatable && f.maybe_delivered;
                    failures.push(f);
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(SetFailure::AllFailed(failures))
    }

    /// At least one upstream is not being skipped.
    pub fn has_usable(&self) -> bool {
        self.upstreams.iter().any(|u| u.is_usable())
    }
}
