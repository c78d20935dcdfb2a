//! Transaction broadcast: one signed transaction sent to several upstreams at once, in
//! different failure domains, so that losing one provider (or one cloud) can neither lose a
//! withdrawal nor report it failed when some node took it.
//!
//! What the client is told, in order (the first that applies):
//! 1. Some node accepted it (answered its hash, computed locally) or answered "already
//!    known": the hash.
//! 2. Some send may have reached a node without an answer saying what it did (a timeout or
//!    reset after sending, a 5xx, a gateway's `-32603`, an answer with another hash), or a
//!    node said "nonce too low":
//!    the hash is looked up on every upstream. Found: the hash. Not found: for "nonce too
//!    low" alone, the node's error (another transaction used the nonce); otherwise the
//!    outcome is unknown (`SetFailure::Unknown`), never "failed".
//! 3. Every node that got it rejected it (insufficient funds, underpriced): the rejection.
//! 4. No node got it at all (connections refused, rate limited): every attempt failed, and
//!    it is certainly not sent.
//!
//! A send that certainly did not reach its node (refused, rate limited) is replaced by a send
//! to another upstream, while one is left and time allows: a rejection from a lagging node
//! must not stand for the answer while the node that would have taken it was unreachable.
//! Targets are every upstream passing its health checks, lagging or not: a node behind the
//! chain still relays a transaction, and a stale head reading must not shrink a broadcast
//! to one failure domain. Lag only orders them.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ask::{Lookup, Question};
use super::outcome::AttemptFailure;
use super::set::{Pick, Route, SetFailure, UpstreamSet};
use super::Upstream;
use crate::config::Tier;
use crate::family::{BlockNeed, Broadcast, BroadcastVerdict, ChainFamily, Cost};
use crate::jsonrpc::Payload;

/// How a broadcast ended, for the log and `manifold_broadcasts_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastResult {
    Accepted,
    AlreadyKnown,
    /// "Nonce too low", and the lookup found this very transaction.
    KnownAfterNonce,
    /// No node said it took it, but one may have; the lookup found it.
    FoundByHash,
    Rejected,
    /// Some node may have it, and none says: the outcome is unknown.
    Unknown,
    /// No node got it (every send refused before it was written): certainly not sent.
    NotSent,
}

impl BroadcastResult {
    pub const ALL: usize = 7;

    pub fn label(self) -> &'static str {
        match self {
            BroadcastResult::Accepted => "accepted",
            BroadcastResult::AlreadyKnown => "already_known",
            BroadcastResult::KnownAfterNonce => "known_after_nonce_too_low",
            BroadcastResult::FoundByHash => "found_by_hash",
            BroadcastResult::Rejected => "rejected",
            BroadcastResult::Unknown => "unknown",
            BroadcastResult::NotSent => "not_sent",
        }
    }

    /// Whether the transaction may be in some pool: then it is watched.
    pub fn may_be_pooled(self) -> bool {
        !matches!(self, BroadcastResult::Rejected | BroadcastResult::NotSent)
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

/// One send's end: the upstream and what it answered.
pub type SendResult = (Arc<Upstream>, Result<Payload, AttemptFailure>);

/// What a broadcast came to.
#[derive(Debug)]
pub struct BroadcastOutcome {
    pub result: Result<Payload, SetFailure>,
    pub verdict: BroadcastResult,
    /// Upstreams that took it (accepted, or knew it already), as far as known.
    pub accepted_by: Vec<Arc<Upstream>>,
    /// Sends still running when the answer was known. They go on (more pools hold it,
    /// sooner) for whoever holds this; dropping it aborts them, `detach_all` lets them be.
    pub rest: JoinSet<SendResult>,
    /// Sends made, the replacements of refused ones included.
    pub sends: u32,
}

impl UpstreamSet {
    /// Up to `fanout` upstreams passing their health checks, in-sync ones first, each
    /// outside the failure domains of those already picked while one such is eligible.
    /// `fallback` upstreams only when no better one is; upstreams failing their probes only
    /// when fewer than `fanout` pass.
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

    /// Another upstream for a send that certainly did not reach its node.
    fn replacement(
        &self,
        method: &str,
        route: &Route,
        tried: &[Arc<Upstream>],
    ) -> Option<Pick<'_>> {
        let tried: Vec<&Arc<Upstream>> = tried.iter().collect();
        self.next_best(method, route, &tried)
            .or_else(|| self.last_resort(method, route, &tried))
    }
}

/// Broadcast `req.body` and decide what the client is told (the module's rules).
pub async fn broadcast(
    set: &UpstreamSet,
    family: &dyn ChainFamily,
    mut req: BroadcastRequest<'_>,
) -> BroadcastOutcome {
    let mut out = BroadcastOutcome {
        result: Err(SetFailure::AllFailed(Vec::new())),
        verdict: BroadcastResult::NotSent,
        accepted_by: Vec::new(),
        rest: JoinSet::new(),
        sends: 0,
    };
    // At start-up, wait for the first health verdicts like any call.
    set.wait_for_first_verdicts(req.method, &mut req.route, req.deadline)
        .await;
    // Lag orders the targets; it does not exclude them.
    req.route.need = BlockNeed::Any;
    let targets = match set
        .broadcast_targets(req.method, &req.route, req.fanout.max(1), req.deadline)
        .await
    {
        Ok(t) if t.is_empty() => {
            out.result = Err(SetFailure::NoUpstream(
                "no upstream may take a transaction: none is configured for it, or none answers its health checks".into(),
            ));
            return out;
        }
        Ok(t) => t,
        Err(e) => {
            out.result = Err(e);
            return out;
        }
    };
    let mut tried: Vec<Arc<Upstream>> = Vec::new();
    for pick in targets {
        tried.push(pick.upstream.clone());
        spawn_send(&mut out, pick, &req);
    }
    let mut nonce_used: Option<(Bytes, Arc<Upstream>)> = None;
    let mut rejected: Option<Bytes> = None;
    let mut maybe_delivered = false;
    let mut failures: Vec<AttemptFailure> = Vec::new();
    while let Some(joined) = out.rest.join_next().await {
        let Ok((upstream, outcome)) = joined else {
            // A send that ended without an outcome (it cannot, short of a bug): it may
            // have been written.
            maybe_delivered = true;
            continue;
        };
        if took_it(family, req.tx.hash_json.as_bytes(), &outcome) {
            let verdict = match outcome {
                Ok(Payload::Result(_)) => BroadcastResult::Accepted,
                _ => BroadcastResult::AlreadyKnown,
            };
            out.accepted_by.push(upstream);
            return answered(out, req.tx, verdict);
        }
        match outcome {
            // Another hash (besu can answer keccak("") for any rejection) or no hash: not
            // an acceptance of this transaction, nor a rejection. The lookup tells.
            Ok(Payload::Result(r)) => {
                tracing::warn!(upstream = %upstream.name(), answer = %String::from_utf8_lossy(r.get(..100).unwrap_or(&r)), hash = %req.tx.hash, "a node answered a transaction with another hash than its own");
                maybe_delivered = true;
            }
            Ok(Payload::Error(e)) => match family.broadcast_verdict(&e) {
                // Taken above.
                Some(BroadcastVerdict::AlreadyKnown) => {}
                Some(BroadcastVerdict::NonceUsed) => {
                    nonce_used.get_or_insert((e, upstream));
                }
                // An error that is the answer, known wording or not: the node refused it.
                Some(BroadcastVerdict::Rejected) | None => {
                    rejected.get_or_insert(e);
                }
            },
            Err(f) => {
                if f.maybe_delivered {
                    maybe_delivered = true;
                } else if Instant::now() < req.deadline {
                    if let Some(p) = set.replacement(req.method, &req.route, &tried) {
                        tried.push(p.upstream.clone());
                        spawn_send(&mut out, p, &req);
                    }
                }
                failures.push(f);
            }
        }
    }
    if nonce_used.is_some() || maybe_delivered {
        match look_up(set, &req, nonce_used.as_ref().map(|(_, u)| u)).await {
            Lookup::Found(..) => {
                let verdict = if nonce_used.is_some() {
                    BroadcastResult::KnownAfterNonce
                } else {
                    BroadcastResult::FoundByHash
                };
                return answered(out, req.tx, verdict);
            }
            Lookup::NotFound if !maybe_delivered => {
                if let Some((e, _)) = nonce_used {
                    out.result = Ok(Payload::Error(e));
                    out.verdict = BroadcastResult::Rejected;
                    return out;
                }
            }
            Lookup::NotFound | Lookup::Unreachable => {}
        }
        out.result = Err(SetFailure::Unknown(failures));
        out.verdict = BroadcastResult::Unknown;
        return out;
    }
    if let Some(e) = rejected {
        out.result = Ok(Payload::Error(e));
        out.verdict = BroadcastResult::Rejected;
        return out;
    }
    out.result = Err(SetFailure::AllFailed(failures));
    out
}

/// Whether a send's answer says the node took the transaction: its hash (computed locally,
/// `hash_json` as the JSON text), or "already known". Another hash, or anything else, says
/// nothing of the kind. The broadcast, its sends still running after the answer, and the
/// watch's rebroadcasts all decide by this.
pub fn took_it(
    family: &dyn ChainFamily,
    hash_json: &[u8],
    answer: &Result<Payload, AttemptFailure>,
) -> bool {
    match answer {
        Ok(Payload::Result(r)) => r.eq_ignore_ascii_case(hash_json),
        Ok(Payload::Error(e)) => {
            family.broadcast_verdict(e) == Some(BroadcastVerdict::AlreadyKnown)
        }
        Err(_) => false,
    }
}

/// Send to `pick` in a task of its own: once written, a transaction goes on to its target
/// even after the client has its answer.
fn spawn_send(out: &mut BroadcastOutcome, pick: Pick<'_>, req: &BroadcastRequest<'_>) {
    let Pick {
        upstream,
        admission,
    } = pick;
    let (u, body, id, deadline) = (
        upstream.clone(),
        req.body.clone(),
        req.request_id.to_vec(),
        req.deadline,
    );
    let method = req.method.to_string();
    out.sends += 1;
    out.rest.spawn(async move {
        let outcome = u
            .attempt(admission, &method, &id, body, deadline, Cost::Normal)
            .await;
        (u, outcome)
    });
}

/// Is the transaction known? The node that said "nonce too low" first (its state has the
/// nonce used, so it has the transaction if this one used it), then every upstream at once.
async fn look_up(
    set: &UpstreamSet,
    req: &BroadcastRequest<'_>,
    reporter: Option<&Arc<Upstream>>,
) -> Lookup {
    let question = Question {
        method: req.tx.lookup.method,
        request_id: req.lookup_id,
        body: req.lookup_body.clone(),
        deadline: req.deadline,
    };
    if let Some(reporter) = reporter {
        if let Ok(Payload::Result(r)) = reporter
            .attempt(
                None,
                question.method,
                question.request_id,
                question.body.clone(),
                question.deadline,
                Cost::Normal,
            )
            .await
        {
            if &r[..] != b"null" {
                return Lookup::Found(reporter.name().clone(), r);
            }
        }
    }
    let among = set.askable(question.method, &req.route);
    set.find(&question, &among).await
}

/// The transaction's hash for the client.
fn answered(
    mut out: BroadcastOutcome,
    tx: &Broadcast,
    verdict: BroadcastResult,
) -> BroadcastOutcome {
    out.result = Ok(Payload::Result(Bytes::from(tx.hash_json.clone())));
    out.verdict = verdict;
    out
}
