//! Asking many upstreams at once, or in an order of the caller's: for questions whose answer
//! differs between nodes and where one node's "no" is not the chain's. Is this transaction
//! known anywhere (a broadcast after ambiguous failures, the watch before it sends again)?
//! What does a node outside the failure domains that took a transaction say about it (the
//! watch)?
//!
//! Unlike `UpstreamSet::call`, which wants one good answer for a client, these ask each
//! upstream directly, as background work: only upstreams whose breaker is closed, within
//! their `max_rps`, and without counting for the breaker (`Upstream::admit_background`).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::outcome::AttemptFailure;
use super::set::{Route, UpstreamSet};
use super::{HealthStatus, Upstream};
use crate::family::Cost;
use crate::jsonrpc::Payload;

/// One request to ask with: its method, the id it is encoded with, and the encoded body.
#[derive(Debug, Clone)]
pub struct Question<'a> {
    pub method: &'a str,
    pub request_id: &'a [u8],
    pub body: Bytes,
    pub deadline: Instant,
}

/// What asking every upstream for something found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Some upstream answered with a non-null `result` (which one, and the result).
    Found(Arc<str>, Bytes),
    /// Every upstream that answered said `null` (or an error that is the answer).
    NotFound,
    /// No upstream answered at all.
    Unreachable,
}

impl UpstreamSet {
    /// The upstreams fit to be asked `method`: passing health checks, allowed for it and not
    /// an outlier ahead of the chain (lagging ones included: a lagging node's pool still
    /// holds transactions). With none, those failing their probes, which may be back.
    pub fn askable(&self, method: &str, route: &Route) -> Vec<Arc<Upstream>> {
        let fit = |u: &&Arc<Upstream>, status: HealthStatus| {
            u.active().status() == status && u.serves(method) && !route.too_far_ahead(u)
        };
        let healthy: Vec<Arc<Upstream>> = self
            .iter()
            .filter(|u| fit(u, HealthStatus::Healthy))
            .cloned()
            .collect();
        if !healthy.is_empty() {
            return healthy;
        }
        self.iter()
            .filter(|u| fit(u, HealthStatus::Unhealthy))
            .cloned()
            .collect()
    }

    /// Ask every upstream of `among` at once; the first non-null `result` ends it.
    pub async fn find(&self, q: &Question<'_>, among: &[Arc<Upstream>]) -> Lookup {
        let mut asking: FuturesUnordered<_> = among
            .iter()
            .filter_map(|u| {
                u.admit_background().ok()?;
                let body = q.body.clone();
                Some(async move {
                    let r = u
                        .attempt(None, q.method, q.request_id, body, q.deadline, Cost::Normal)
                        .await;
                    (u, r)
                })
            })
            .collect();
        let mut answered = false;
        while let Some((u, r)) = asking.next().await {
            match r {
                Ok(Payload::Result(r)) if &r[..] != b"null" => {
                    return Lookup::Found(u.name().clone(), r);
                }
                Ok(_) => answered = true,
                Err(_) => {}
            }
        }
        if answered {
            Lookup::NotFound
        } else {
            Lookup::Unreachable
        }
    }

    /// Ask the upstreams of `order` one after the other until one answers (at most
    /// `max_tries` of them): its answer, or `None` when none did.
    pub async fn ask_in_order(
        &self,
        q: &Question<'_>,
        order: &[Arc<Upstream>],
        max_tries: usize,
    ) -> Option<(Arc<Upstream>, Payload)> {
        let mut tries = 0;
        for u in order {
            if tries >= max_tries || Instant::now() >= q.deadline {
                break;
            }
            if u.admit_background().is_err() {
                continue;
            }
            tries += 1;
            let r: Result<Payload, AttemptFailure> = u
                .attempt(
                    None,
                    q.method,
                    q.request_id,
                    q.body.clone(),
                    q.deadline,
                    Cost::Normal,
                )
                .await;
            if let Ok(p) = r {
                return Some((u.clone(), p));
            }
        }
        None
    }
}
