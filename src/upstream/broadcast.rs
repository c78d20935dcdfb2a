//! Transaction broadcast: one signed transaction sent to several upstreams at once, in
//! different failure domains, so that losing one provider (or one cloud) can neither lose a
//! withdrawal nor report it failed when some node took it.
//!
//! The first node to accept it wins. "Already known" is success: the transaction is in that
//! node's pool. "Nonce too low" is ambiguous — this very transaction may have been mined, or
//! another one used the nonce — so the transaction is looked up by its locally computed hash
//! before anything is reported. A real rejection (insufficient funds, underpriced) is the
//! answer, unless another node accepts. When no node answered at all, the client is told the
//! outcome is unknown, never that it failed.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::outcome::AttemptFailure;
use super::set::{CallPlan, Pick, Route, SetFailure, UpstreamSet};
use super::Upstream;
use crate::config::Tier;
use crate::family::{Broadcast, BroadcastVerdict, ChainFamily, Cost};
use crate::jsonrpc::Payload;

/// How a broadcast ended, for the log and `manifold_broadcasts_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastResult {
    Accepted,
    AlreadyKnown,
    /// "Nonce too low", and the lookup found this very transaction.
    KnownAfterNonce,
    Rejected,
    /// No node answered: it may or may not be in a pool.
    Unknown,
}

impl BroadcastResult {
    pub const ALL: usize = 5;

    pub fn label(self) -> &'static str {
        match self {
            BroadcastResult::Accepted => "accepted",
            BroadcastResult::AlreadyKnown => "already_known",
            BroadcastResult::KnownAfterNonce => "known_after_nonce_too_low",
            BroadcastResult::Rejected => "rejected",
            BroadcastResult::Unknown => "unknown",
        }
    }
}

/// One broadcast to run.
#[derive(Debug)]
pub struct BroadcastRequest<'a> {
    pub method: &'a str,
    pub route: Route,
    pub tx: &'a Broadcast,
    pub request_id: &'a [u8],
    pub body: Bytes,
    /// The lookup call, encoded, and its request id.
    pub lookup_id: &'a [u8],
    pub lookup_body: Bytes,
    pub deadline: Instant,
    pub fanout: usize,
}

impl UpstreamSet {
    /// Up to `fanout` eligible upstreams, best first, each outside the failure domains of
    /// those already picked while one such is eligible. `fallback` upstreams only when no
    /// better one is; upstreams failing their probes only when fewer than `fanout` pass.
    pub async fn broadcast_targets(
        &self,
        method: &str,
        route: &Route,
        fanout: usize,
        deadline: Instant,
    ) -> Result<Vec<Pick<'_>>, SetFailure> {
        let mut picked: Vec<Pick<'_>> = Vec::new();
        let mut chosen: Vec<&Arc<Upstream>> = Vec::new();
        // The first target waits for `max_rps` room (until the deadline) rather than leave a
        // transaction unsent; the others are whoever has room now.
        match self.select_within(method, route, &[], deadline).await {
            Ok(Some(p)) => {
                chosen.push(p.upstream);
                picked.push(p);
            }
            Ok(None) => {}
            Err(wait) => return Err(SetFailure::over_rate(method, wait)),
        }
        while picked.len() < fanout {
            let Some(p) = self.next_best(method, route, &chosen) else {
                break;
            };
            if p.upstream.config.tier == Tier::Fallback
                && chosen.iter().any(|u| u.config.tier != Tier::Fallback)
            {
                break;
            }
            chosen.push(p.upstream);
            picked.push(p);
        }
        // Too few healthy ones: also those failing their probes, which may be back by now.
        // A transaction sent to one more node costs nothing; one sent to none is stuck.
        while picked.len() < fanout {
            let Some(p) = self.last_resort(method, route, &chosen) else {
                break;
            };
            chosen.push(p.upstream);
            picked.push(p);
        }
        Ok(picked)
    }
}

/// Broadcast `req.body` and decide what the client is told.
pub async fn broadcast(
    set: &UpstreamSet,
    family: &dyn ChainFamily,
    mut req: BroadcastRequest<'_>,
) -> (Result<Payload, SetFailure>, BroadcastResult) {
    // At start-up, wait for the first health verdicts like any call.
    set.wait_for_first_verdicts(req.method, &mut req.route, req.deadline)
        .await;
    let targets = match set
        .broadcast_targets(req.method, &req.route, req.fanout.max(1), req.deadline)
        .await
    {
        Ok(t) if t.is_empty() => {
            return (
                Err(SetFailure::NoUpstream(
                    "no upstream may take a transaction: none is configured for it, or none answers its health checks".into(),
                )),
                BroadcastResult::Unknown,
            )
        }
        Ok(t) => t,
        Err(e) => return (Err(e), BroadcastResult::Unknown),
    };
    let mut sends = JoinSet::new();
    for Pick {
        upstream,
        admission,
    } in targets
    {
        let (u, body, id, deadline) = (
            upstream.clone(),
            req.body.clone(),
            req.request_id.to_vec(),
            req.deadline,
        );
        let method = req.method.to_string();
        // Spawned: once sent, a transaction keeps going to every target even after the
        // client has its answer (more pools hold it, sooner).
        sends.spawn(async move {
            let outcome = u
                .attempt(admission, &method, &id, body, deadline, Cost::Normal)
                .await;
            (u, outcome)
        });
    }
    let mut nonce_used: Option<(Bytes, Arc<Upstream>)> = None;
    let mut rejected: Option<Bytes> = None;
    let mut failures: Vec<AttemptFailure> = Vec::new();
    while let Some(joined) = sends.join_next().await {
        let Ok((upstream, outcome)) = joined else {
            continue;
        };
        match outcome {
            Ok(Payload::Result(r)) => {
                // The others go on in the background: more pools hold it, sooner.
                sends.detach_all();
                return (Ok(Payload::Result(r)), BroadcastResult::Accepted);
            }
            Ok(Payload::Error(e)) => match family.broadcast_verdict(&e) {
                BroadcastVerdict::AlreadyKnown => {
                    sends.detach_all();
                    return (Ok(hash_result(req.tx)), BroadcastResult::AlreadyKnown);
                }
                BroadcastVerdict::NonceUsed => nonce_used = Some((e, upstream)),
                BroadcastVerdict::Rejected => rejected = Some(e),
            },
            Err(f) => failures.push(f),
        }
    }
    if let Some((nonce_error, reporter)) = nonce_used {
        // Is it this very transaction that used the nonce? Ask the node that said so (its
        // state has the nonce used), then, if it does not know the hash, one other.
        if let Ok(Payload::Result(r)) = reporter
            .attempt(
                None,
                &req.tx.lookup.0,
                req.lookup_id,
                req.lookup_body.clone(),
                req.deadline,
                Cost::Normal,
            )
            .await
        {
            if &r[..] != b"null" {
                return (Ok(hash_result(req.tx)), BroadcastResult::KnownAfterNonce);
            }
        }
        let lookup_route = Route {
            need: crate::family::BlockNeed::Any,
            ..req.route
        };
        let found = set
            .call(&CallPlan {
                method: &req.tx.lookup.0,
                route: lookup_route,
                request_id: req.lookup_id,
                body: req.lookup_body.clone(),
                deadline: req.deadline,
                repeatable: true,
            })
            .await;
        return match found {
            Ok(Payload::Result(r)) if &r[..] != b"null" => {
                (Ok(hash_result(req.tx)), BroadcastResult::KnownAfterNonce)
            }
            Ok(_) => (Ok(Payload::Error(nonce_error)), BroadcastResult::Rejected),
            Err(SetFailure::AllFailed(mut more)) => {
                failures.append(&mut more);
                (
                    Err(SetFailure::AllFailed(failures)),
                    BroadcastResult::Unknown,
                )
            }
            Err(e) => (Err(e), BroadcastResult::Unknown),
        };
    }
    if let Some(e) = rejected {
        return (Ok(Payload::Error(e)), BroadcastResult::Rejected);
    }
    (
        Err(SetFailure::AllFailed(failures)),
        BroadcastResult::Unknown,
    )
}

fn hash_result(tx: &Broadcast) -> Payload {
    Payload::Result(Bytes::from(tx.hash_json.clone()))
}
