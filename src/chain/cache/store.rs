//! The kept answers of one chain: moka's concurrent cache, bounded by bytes (keys and
//! answers weighed), with a cap per answer, and eviction counted.

use bytes::Bytes;
use metrics::{Counter, Gauge};
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::chain::key::{CallKey, KeyHasher};
use crate::config::CachePolicy;

/// What an entry costs besides its answer's bytes: the key, moka's own bookkeeping.
const ENTRY_OVERHEAD: usize = 128;

#[derive(Debug)]
pub struct AnswerCache {
    entries: Cache<CallKey, Bytes, KeyHasher>,
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
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .build_with_hasher(KeyHasher::default());
        Self {
            entries,
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

    /// The bytes held, as weighed (after moka's pending maintenance).
    #[cfg(test)]
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    fn publish(&self) {
        self.bytes.set(self.entries.weighted_size() as f64);
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
