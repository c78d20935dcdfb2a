//! Answers about recent blocks, above the finalized one (web3-proxy's idea, with Manifold's
//! own view of the chain): a call about block `n` at or below the chain head is keyed on
//! `n`'s hash in the canonical window (`health::canonical`) besides its params, kept in
//! memory only (never in Redis: another replica may not have seen the same reorg), and
//! dropped when a reorg from `n` or below is seen (`chain::follow`). A call at a block the
//! window does not hold (not followed yet) is not kept.

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
    Some((params, Some(RecentBlock { number: n, hash })))
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
        if answered.number == block.number && answered.hash != block.hash {
            return;
        }
    }
    cache.insert_recent(key, block.number, result);
}
