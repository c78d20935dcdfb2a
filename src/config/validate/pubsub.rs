//! `[server.websocket]` and `[chains.policy.filters]`.

use std::time::Duration;

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::{FileFilters, FileWebsocket};
use crate::config::{FilterPolicy, WsConfig};

impl Validator {
    pub(super) fn websocket(&mut self, at: &KeyPath, w: Option<&FileWebsocket>) -> WsConfig {
        let d = WsConfig::default();
        let Some(w) = w else {
            return d;
        };
        let count = |v: &mut Self, key: &str, value: Option<u32>, max: u32, default: usize| {
            v.count(&at.key(key), value, 1..=max, default as u32) as usize
        };
        let max_connections = count(
            self,
            "max_connections",
            w.max_connections,
            super::MAX_CONCURRENCY,
            d.max_connections,
        );
        let max_subscriptions = count(
            self,
            "max_subscriptions",
            w.max_subscriptions,
            100_000,
            d.max_subscriptions,
        );
        let max_in_flight = count(
            self,
            "max_in_flight",
            w.max_in_flight,
            10_000,
            d.max_in_flight,
        );
        let queue_messages = count(
            self,
            "queue_messages",
            w.queue_messages,
            1_000_000,
            d.queue_messages,
        );
        let queue_bytes = self.bytes(
            &at.key("queue_bytes"),
            w.queue_bytes,
            64 * 1024..=super::MAX_BUFFERED_LIMIT,
            d.queue_bytes,
        );
        let ping_interval = self.duration_within(
            &at.key("ping_interval"),
            w.ping_interval.as_deref(),
            d.ping_interval,
            Duration::from_secs(3600),
        );
        if ping_interval < Duration::from_millis(100) {
            self.fail(&at.key("ping_interval"), "must be at least 100ms");
        }
        let upstream_linger = self.duration_within(
            &at.key("upstream_linger"),
            w.upstream_linger.as_deref(),
            d.upstream_linger,
            Duration::from_secs(86_400),
        );
        let upstream_stale_after = self.duration_within(
            &at.key("upstream_stale_after"),
            w.upstream_stale_after.as_deref(),
            d.upstream_stale_after,
            Duration::from_secs(86_400),
        );
        if upstream_stale_after < Duration::from_millis(100) {
            self.fail(&at.key("upstream_stale_after"), "must be at least 100ms");
        }
        let mut allowed_origins = Vec::new();
        for (i, o) in w.allowed_origins.iter().flatten().enumerate() {
            match origin(o) {
                Ok(o) => allowed_origins.push(o),
                Err(why) => self.fail(&at.key("allowed_origins").index(i), why),
            }
        }
        WsConfig {
            enabled: w.enabled.unwrap_or(d.enabled),
            max_connections,
            max_subscriptions,
            max_in_flight,
            queue_messages,
            queue_bytes,
            ping_interval,
            allowed_origins,
            upstream_linger,
            upstream_stale_after,
        }
    }
}

impl Validator {
    pub(super) fn filters(&mut self, at: &KeyPath, f: Option<&FileFilters>) -> FilterPolicy {
        let d = FilterPolicy::default();
        let Some(f) = f else {
            return d;
        };
        let expire_after = self.duration(
            &at.key("expire_after"),
            f.expire_after.as_deref(),
            d.expire_after,
        );
        if expire_after < Duration::from_secs(1) {
            self.fail(&at.key("expire_after"), "must be at least 1s");
        }
        FilterPolicy {
            max: self.count(&at.key("max"), f.max, 1..=1_000_000, d.max as u32) as usize,
            expire_after,
            max_changes: self.count(
                &at.key("max_changes"),
                f.max_changes,
                1..=1_000_000,
                d.max_changes as u32,
            ) as usize,
        }
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn origin(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    let url = url::Url::parse(trimmed)
        .map_err(|e| format!("`{text}` is not an origin like https://app.example: {e}"))?;
    if url.host_str().is_none() || url.path() != "/" || url.query().is_some() {
        return Err(format!(
            "`{text}` is not an origin like https://app.example (scheme, host and port only)"
        ));
    }
    Ok(trimmed.to_ascii_lowercase())
}
