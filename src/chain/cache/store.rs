//! The kept answers of one chain: moka's concurrent caches, bounded by bytes (keys and
//! answers weighed), with a cap per answer, and eviction counted. Two tiers: final answers,
//! which never change; and answers about recent blocks above the finalized one (keyed on
//! their block's hash by the layer), a quarter of the bytes, for `RECENT_TTL` at most, and
//! dropped from a reorg's height as soon as it is seen.

use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Gauge};
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::chain::key::{CallKey, KeyHasher};
use crate::config::CachePolicy;

/// What an entry costs besides its answer's bytes: the key, moka's own bookkeeping.
const ENTRY_OVERHEAD: usize = 128;

/// A recent block's answers are kept this long at most: by then the block is final, and its
/// answers are kept (under another key) in the final tier.
pub const RECENT_TTL: Duration = Duration::from_secs(20 * 60);

/// The share of `max_bytes` the recent tier may take: a quarter.
const RECENT_SHARE: usize = 4;

/// An answer about a recent block, with its height (a reorg drops it from there up).
#[derive(Debug, Clone)]
struct Recent {
    block: u64,
    /// Asked at `latest`: dropped when the head moves past its block.
    latest: bool,
    ttl: Duration,
    result: Bytes,
}

/// Each recent answer lives as long as its own `ttl`.
struct RecentExpiry;

impl moka::Expiry<CallKey, Recent> for RecentExpiry {
    fn expire_after_create(
        &self,
        _: &CallKey,
        value: &Recent,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// How a recent answer is kept.
#[derive(Debug, Clone, Copy)]
pub struct RecentKeep {
    pub block: u64,
    pub latest: bool,
    pub ttl: Duration,
}

#[derive(Debug)]
pub struct AnswerCache {
    entries: Cache<CallKey, Bytes, KeyHasher>,
    recent: Cache<CallKey, Recent, KeyHasher>,
    max_entry_bytes: usize,
    bytes: Gauge,
}

impl AnswerCache {
    pub fn new(policy: &CachePolicy, evictions: Counter, bytes: Gauge) -> Self {
        let entries = Cache::builder()
            .max_capacity(u64::try_from(policy.max_bytes).unwrap_or(u64::MAX))
            .weigher(|_: &CallKey, v: &Bytes| {
                u32::try_from(v.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .eviction_listener({
                let evictions = evictions.clone();
                move |_, _, cause| {
                    if cause == RemovalCause::Size {
                        evictions.increment(1);
                    }
                }
            })
            .build_with_hasher(KeyHasher::default());
        let recent = Cache::builder()
            .max_capacity(u64::try_from(policy.max_bytes / RECENT_SHARE).unwrap_or(u64::MAX))
            .weigher(|_: &CallKey, v: &Recent| {
                u32::try_from(v.result.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(RecentExpiry)
            .support_invalidation_closures()
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .build_with_hasher(KeyHasher::default());
        Self {
            entries,
            recent,
            max_entry_bytes: policy.max_entry_bytes,
            bytes,
        }
    }

    pub fn get(&self, key: &CallKey) -> Option<Bytes> {
        self.entries.get(key)
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Whether an answer of this size may be kept.
    pub fn fits(&self, len: usize) -> bool {
        len <= self.max_entry_bytes
    }

    /// Keep `result`: copied, so that the entry holds only its own bytes (not the whole
    /// upstream body it was sliced from, nor that body's share of `max_buffered_bytes`).
    pub fn insert(&self, key: CallKey, result: &[u8]) {
        if !self.fits(result.len()) {
            return;
        }
        self.entries.insert(key, Bytes::copy_from_slice(result));
        self.publish();
    }

    /// An answer about the recent block `block`, kept under a key that names its hash.
    pub fn get_recent(&self, key: &CallKey) -> Option<Bytes> {
        self.recent.get(key).map(|r| r.result)
    }

    pub fn insert_recent(&self, key: CallKey, keep: RecentKeep, result: &[u8]) {
        if !self.fits(result.len()) {
            return;
        }
        let recent = Recent {
            block: keep.block,
            latest: keep.latest,
            ttl: keep.ttl.min(RECENT_TTL),
            result: Bytes::copy_from_slice(result),
        };
        self.recent.insert(key, recent);
        self.publish();
    }

    /// Drop the answers read at `latest` when the head was below `head`.
    pub fn drop_latest_below(&self, head: u64) {
        if let Err(e) = self
            .recent
            .invalidate_entries_if(move |_, r| r.latest && r.block < head)
        {
            tracing::warn!(error = %e, "latest cache entries not dropped");
        }
    }

    /// Drop every recent answer about block `from` or above (a reorg from there).
    pub fn drop_recent_from(&self, from: u64) {
        // Fails only without `support_invalidation_closures`, which the builder sets; the
        // entries then still age out within `RECENT_TTL`, and their keys name orphaned
        // hashes that are never asked for again.
        if let Err(e) = self
            .recent
            .invalidate_entries_if(move |_, r| r.block >= from)
        {
            tracing::warn!(error = %e, "recent cache entries not dropped");
        }
        self.publish();
    }

    /// The bytes held, as weighed (after moka's pending maintenance).
    #[cfg(test)]
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.recent.run_pending_tasks();
        self.entries.weighted_size() + self.recent.weighted_size()
    }

    fn publish(&self) {
        let held = self.entries.weighted_size() + self.recent.weighted_size();
        self.bytes.set(held as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::key::CallKey;

    fn policy(max_bytes: usize, max_entry_bytes: usize) -> CachePolicy {
        CachePolicy {
            enabled: true,
            max_bytes,
            max_entry_bytes,
            finality_depth: None,
            latest_ttl: None,
        }
    }

    #[test]
    fn bounded_by_bytes_with_a_cap_per_answer_and_evictions_counted() {
        let evicted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let cache = AnswerCache::new(
            &policy(100 * 1024, 2048),
            Counter::from_arc(evicted.clone()),
            Gauge::noop(),
        );
        let key = |i: u32| CallKey::new("c", "m", &i.to_le_bytes());
        cache.insert(key(0), &[b'x'; 4096]);
        assert_eq!(cache.get(&key(0)), None, "over the cap per answer");
        for i in 1..=500 {
            cache.insert(key(i), &[b'y'; 1024]);
        }
        let held = cache.weighted_bytes();
        assert!(held <= 100 * 1024, "{held}");
        assert!(held > 50 * 1024, "{held}");
        let kept = (1..=500).filter(|i| cache.get(&key(*i)).is_some()).count();
        assert!(kept < 100 && kept > 40, "{kept}");
        let evicted = evicted.load(std::sync::atomic::Ordering::Relaxed);
        assert!(evicted as usize >= 500 - 100, "{evicted}");
    }

    #[test]
    fn recent_answers_are_dropped_from_a_reorgs_height() {
        let cache = AnswerCache::new(&policy(1 << 20, 4096), Counter::noop(), Gauge::noop());
        let key = |n: u64| CallKey::new("c", "m", &n.to_le_bytes());
        for n in 10..=14 {
            let keep = RecentKeep {
                block: n,
                latest: n == 14,
                ttl: RECENT_TTL,
            };
            cache.insert_recent(key(n), keep, b"\"x\"");
        }
        cache.drop_latest_below(14);
        cache.recent.run_pending_tasks();
        assert!(cache.get_recent(&key(14)).is_some(), "read at the head now");
        cache.drop_latest_below(15);
        cache.recent.run_pending_tasks();
        assert!(cache.get_recent(&key(14)).is_none(), "the head moved on");
        cache.insert(key(99), b"\"final\"");
        cache.drop_recent_from(12);
        cache.recent.run_pending_tasks();
        let held: Vec<u64> = (10..=14)
            .filter(|n| cache.get_recent(&key(*n)).is_some())
            .collect();
        assert_eq!(held, vec![10, 11]);
        assert!(cache.get(&key(99)).is_some(), "final answers stay");
        assert_eq!(cache.get(&key(10)), None, "the tiers are apart");
    }

    #[test]
    fn a_kept_answer_is_a_copy_of_its_slice() {
        let cache = AnswerCache::new(&policy(1 << 20, 4096), Counter::noop(), Gauge::noop());
        let body = Bytes::from(vec![b'z'; 8192]);
        let k = CallKey::new("c", "m", b"[]");
        cache.insert(k, &body[10..20]);
        let got = cache.get(&k).unwrap();
        assert_eq!(&got[..], &body[10..20]);
        assert_ne!(got.as_ptr(), body[10..].as_ptr());
    }
}
