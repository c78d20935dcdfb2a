//! Answers about recent blocks, above the finalized one (web3-proxy's idea, with Manifold's
//! own view of the chain): a call about block `n` at or below the chain head is keyed on
//! `n`'s hash in the canonical window (`health::canonical`) besides its params, kept in
//! memory only (never in Redis: another replica may not have seen the same reorg), and
//! dropped when a reorg from `n` or below is seen (`chain::follow`). A call at a block the
//! window does not hold (not followed yet) is not kept.

use super::store::{RecentKeep, RECENT_TTL};
use super::{is_empty_list, is_null, AnswerCache, CallKey};
use crate::chain::core::ChainCore;
use crate::chain::stack::{Answer, ChainCall};
use crate::chain::CallOutcome;
use crate::family::CacheRule;
use crate::jsonrpc::Payload;

/// The recent block a call is about, and its hash when the call was asked.
#[derive(Debug, Clone)]
pub(super) struct RecentBlock {
    number: u64,
    hash: String,
    /// Asked at `latest` (the chain head then), kept for the chain's `latest_ttl`.
    latest: Option<std::time::Duration>,
}

/// The canonical params of a call about recent block `n`, with `n`'s hash after them, and
/// the block; `None` when the window does not hold `n` or the call is not cacheable.
pub(super) fn question(
    core: &ChainCore,
    call: &ChainCall,
    n: u64,
) -> Option<(Vec<u8>, Option<RecentBlock>)> {
    if core.head().is_none_or(|head| n > head) {
        return None;
    }
    let hash = core.health.canonical.hash_at(n)?;
    let mut params = core.family.cache_params(
        &call.call.method,
        call.call.params.as_deref(),
        CacheRule::AtBlock(n),
    )?;
    params.push(b'@');
    params.extend_from_slice(hash.as_bytes());
    let block = RecentBlock {
        number: n,
        hash,
        latest: None,
    };
    Some((params, Some(block)))
}

/// The same for a call at `latest`, with the chain's `latest_ttl`: about the chain head, and
/// a question of its own (the upstream may have answered from a block past Manifold's head,
/// so the answer is never taken for one about that block by number).
pub(super) fn latest_question(
    core: &ChainCore,
    call: &ChainCall,
) -> Option<(Vec<u8>, Option<RecentBlock>)> {
    let ttl = core.config.policy.cache.latest_ttl?;
    let head = core.head()?;
    let (mut params, block) = question(core, call, head)?;
    params.extend_from_slice(b"@latest");
    let block = block.map(|b| RecentBlock {
        latest: Some(ttl),
        ..b
    });
    Some((params, block))
}

/// Keep an answer about a recent block if it may be kept: a result, not `null` nor `[]`
/// (perhaps not yet), from an upstream whose head had reached the block, while the block is
/// still the one the call was keyed on, and, when the answer is the block itself, that
/// block (not another branch's).
pub(super) fn keep(
    core: &ChainCore,
    cache: &AnswerCache,
    key: CallKey,
    block: &RecentBlock,
    answer: &Answer,
) {
    let Payload::Result(result) = &answer.payload else {
        return;
    };
    if answer.follower
        || answer.outcome != CallOutcome::Success
        || is_null(result)
        || is_empty_list(result)
        || answer.served_head.is_none_or(|h| h < block.number)
        || core.health.canonical.hash_at(block.number).as_ref() != Some(&block.hash)
    {
        return;
    }
    if let Some(answered) = core.family.parse_block_ref(result) {
        // A block answer is that very block; at `latest`, the head Manifold knows.
        let other_number = answered.number != block.number;
        if answered.hash != block.hash && (!other_number || block.latest.is_some()) {
            return;
        }
    }
    let keep = RecentKeep {
        block: block.number,
        latest: block.latest.is_some(),
        ttl: block.latest.unwrap_or(RECENT_TTL),
    };
    cache.insert_recent(key, keep, result);
}
