//! The answer cache's shared tier: final answers also kept in a Redis that several replicas
//! share (behind one Kubernetes Service, say), so that what one replica asked an upstream
//! the others need not.
//!
//! Redis is a cache, never a dependency. A read slower than `timeout` (50 ms), a Redis that
//! is down or refuses, and a value that is not what was written (the key's digest first,
//! then a JSON answer no larger than `max_entry_bytes`) are all a miss: the call goes to an
//! upstream as it would without Redis, and no client ever sees an error from it. After a
//! failure Redis rests for `REST` (no read waits on a dead Redis meanwhile), then the next
//! call tries again. It is logged once per change (unreachable, reachable again), counted in
//! `manifold_redis_requests_total`, and shown in `manifold_redis_up`. Writes go in the
//! background, at most `MAX_WRITES` at once (more are skipped and counted).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Gauge, Label};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::chain::key::CallKey;
use crate::config::RedisConfig;
use crate::metrics::{Metrics, REDIS_REQUESTS, REDIS_UP};

/// How long Redis is left alone after a failure.
pub const REST: Duration = Duration::from_secs(1);

/// Writes in flight at once.
pub const MAX_WRITES: usize = 64;

/// A write slower than this is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// What became of one read or write, for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    GetHit,
    GetMiss,
    /// A value that was not what Manifold writes: a miss.
    GetInvalid,
    GetError,
    GetTimeout,
    /// Not tried: Redis rests after a failure.
    GetSkipped,
    SetOk,
    SetError,
    SetTimeout,
    /// Not tried: Redis rests, or `MAX_WRITES` are in flight.
    SetSkipped,
}

impl Op {
    const ALL: [Op; 10] = [
        Op::GetHit,
        Op::GetMiss,
        Op::GetInvalid,
        Op::GetError,
        Op::GetTimeout,
        Op::GetSkipped,
        Op::SetOk,
        Op::SetError,
        Op::SetTimeout,
        Op::SetSkipped,
    ];

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Op::GetHit => ("get", "hit"),
            Op::GetMiss => ("get", "miss"),
            Op::GetInvalid => ("get", "invalid"),
            Op::GetError => ("get", "error"),
            Op::GetTimeout => ("get", "timeout"),
            Op::GetSkipped => ("get", "skipped"),
            Op::SetOk => ("set", "ok"),
            Op::SetError => ("set", "error"),
            Op::SetTimeout => ("set", "timeout"),
            Op::SetSkipped => ("set", "skipped"),
        }
    }
}

pub struct RedisCache {
    connection: ConnectionManager,
    display_url: String,
    prefix: String,
    timeout: Duration,
    ttl_secs: u64,
    /// Set at the start: `rest_until` counts milliseconds from it.
    epoch: Instant,
    rest_until: AtomicU64,
    /// What was last logged: reachable or not.
    up: AtomicBool,
    writes: Arc<Semaphore>,
    counters: [Counter; Op::ALL.len()],
    up_gauge: Gauge,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &self.display_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A client that connects on first use (a Redis down at start is a miss, not a failed
    /// start), and reconnects by itself.
    pub fn new(config: &RedisConfig, metrics: &Metrics) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("server.redis.url {}: {e}", config.display_url))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(WRITE_TIMEOUT))
            .set_response_timeout(Some(WRITE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(REST);
        let connection = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("server.redis.url {}: {e}", config.display_url))?;
        let counters = Op::ALL.map(|op| {
            let (op, result) = op.labels();
            metrics.counter(
                REDIS_REQUESTS,
                vec![Label::new("op", op), Label::new("result", result)],
            )
        });
        let up_gauge = metrics.gauge(REDIS_UP, Vec::new());
        up_gauge.set(1.0);
        Ok(Arc::new(Self {
            connection,
            display_url: config.display_url.clone(),
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            ttl_secs: config.ttl.as_secs().max(1),
            epoch: Instant::now(),
            rest_until: AtomicU64::new(0),
            up: AtomicBool::new(true),
            writes: Arc::new(Semaphore::new(MAX_WRITES)),
            counters,
            up_gauge,
        }))
    }

    /// The answer kept for `key`, if Redis has it and answers within `timeout`.
    pub async fn get(&self, key: &CallKey, max_len: usize) -> Option<Bytes> {
        if self.resting() {
            self.count(Op::GetSkipped);
            return None;
        }
        let mut connection = self.connection.clone();
        let read = connection.get::<_, Option<Vec<u8>>>(self.redis_key(key));
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => {
                self.failed(Op::GetTimeout, "a read timed out");
                None
            }
            Ok(Err(e)) => {
                self.failed(Op::GetError, &e.to_string());
                None
            }
            Ok(Ok(value)) => {
                self.reachable();
                let Some(value) = value else {
                    self.count(Op::GetMiss);
                    return None;
                };
                let answer = valid(key, value, max_len);
                self.count(if answer.is_some() {
                    Op::GetHit
                } else {
                    Op::GetInvalid
                });
                answer
            }
        }
    }

    /// Keep `result` for `key`, in the background.
    pub fn put(self: &Arc<Self>, key: CallKey, result: &[u8]) {
        if self.resting() {
            self.count(Op::SetSkipped);
            return;
        }
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            self.count(Op::SetSkipped);
            return;
        };
        let mut value = Vec::with_capacity(32 + result.len());
        value.extend_from_slice(key.as_bytes());
        value.extend_from_slice(result);
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut connection = this.connection.clone();
            let write = connection.set_ex::<_, _, ()>(this.redis_key(&key), value, this.ttl_secs);
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    this.reachable();
                    this.count(Op::SetOk);
                }
                Ok(Err(e)) => this.failed(Op::SetError, &e.to_string()),
                Err(_) => this.failed(Op::SetTimeout, "a write timed out"),
            }
        });
    }

    fn redis_key(&self, key: &CallKey) -> String {
        format!("{}:{}", self.prefix, hex::encode(key.as_bytes()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn resting(&self) -> bool {
        self.now_ms() < self.rest_until.load(Ordering::Relaxed)
    }

    fn failed(&self, op: Op, why: &str) {
        self.count(op);
        let rest = u64::try_from(REST.as_millis()).unwrap_or(u64::MAX);
        self.rest_until
            .store(self.now_ms().saturating_add(rest), Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            self.up_gauge.set(0.0);
            tracing::warn!(
                redis = %self.display_url,
                error = why,
                "redis unreachable: the cache goes on without it (every read a miss) until it answers again"
            );
        }
    }

    fn reachable(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            self.up_gauge.set(1.0);
            tracing::info!(redis = %self.display_url, "redis reachable again");
        }
    }

    fn count(&self, op: Op) {
        if let Some(c) = self.counters.get(op as usize) {
            c.increment(1);
        }
    }
}

/// The answer in a value read for `key`: what `put` wrote, the key's digest first (a value
/// written for another key, or by anything else, is not taken), then JSON text.
fn valid(key: &CallKey, mut value: Vec<u8>, max_len: usize) -> Option<Bytes> {
    let answer = value.strip_prefix(key.as_bytes().as_slice())?;
    if answer.is_empty()
        || answer.len() > max_len
        || serde_json::from_slice::<serde::de::IgnoredAny>(answer).is_err()
    {
        return None;
    }
    let mut value = Bytes::from(std::mem::take(&mut value));
    Some(value.split_off(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_written_for_the_key_is_taken() {
        let key = CallKey::new("eth", "eth_chainId", b"[]");
        let other = CallKey::new("eth", "eth_chainId", b"[1]");
        let written = |k: &CallKey, answer: &[u8]| [k.as_bytes().as_slice(), answer].concat();
        assert_eq!(
            valid(&key, written(&key, b"\"0x1\""), 100).as_deref(),
            Some(&b"\"0x1\""[..])
        );
        assert_eq!(valid(&key, written(&other, b"\"0x1\""), 100), None);
        assert_eq!(valid(&key, written(&key, b"{not json"), 100), None);
        assert_eq!(valid(&key, written(&key, b""), 100), None);
        assert_eq!(valid(&key, written(&key, b"\"0x1\""), 3), None, "too large");
        assert_eq!(valid(&key, b"short".to_vec(), 100), None);
    }
}
