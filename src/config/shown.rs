//! The configuration as `check-config` prints it and `/status` serves it: every value,
//! every secret redacted.

use serde_json::json;

use super::{ChainConfig, Config, UpstreamConfig, MEMORY_STORE};

impl Config {
    /// The configuration as JSON with every secret redacted: printed by `check-config`,
    /// served in `/status`.
    pub fn redacted(&self) -> serde_json::Value {
        let s = &self.server;
        let mut server = json!({
            "listen": s.listen.to_string(),
            "admin_listen": s.admin_listen.to_string(),
            "max_request_bytes": s.max_request_bytes,
            "max_batch_len": s.max_batch_len,
            "shutdown_timeout": humantime::format_duration(s.shutdown_timeout).to_string(),
            "tx_store": s.tx_store.as_ref().map_or_else(|| MEMORY_STORE.to_string(), |p| p.display().to_string()),
            "max_connections": s.max_connections,
            "max_concurrent_calls": s.max_concurrent_calls,
            "max_buffered_bytes": s.max_buffered_bytes,
            "websocket": {
                "enabled": s.websocket.enabled,
                "max_connections": s.websocket.max_connections,
                "max_subscriptions": s.websocket.max_subscriptions,
                "max_in_flight": s.websocket.max_in_flight,
                "queue_messages": s.websocket.queue_messages,
                "queue_bytes": s.websocket.queue_bytes,
                "ping_interval": humantime::format_duration(s.websocket.ping_interval).to_string(),
                "allowed_origins": &s.websocket.allowed_origins,
            },
        });
        if let (Some(redis), Some(obj)) = (&s.redis, server.as_object_mut()) {
            obj.insert(
                "redis".into(),
                json!({
                    "url": &redis.display_url,
                    "timeout": humantime::format_duration(redis.timeout).to_string(),
                    "ttl": humantime::format_duration(redis.ttl).to_string(),
                    "prefix": &redis.prefix,
                }),
            );
        }
        if let (Some(tls), Some(obj)) = (&s.tls, server.as_object_mut()) {
            obj.insert(
                "tls".into(),
                json!({"cert": tls.cert.display().to_string(), "key": tls.key.display().to_string()}),
            );
        }
        let chains: Vec<_> = self.chains.iter().map(ChainConfig::redacted).collect();
        json!({ "server": server, "chains": chains })
    }
}

impl ChainConfig {
    fn redacted(&self) -> serde_json::Value {
        let mut chain = json!({
            "name": &*self.name,
            "family": self.family.as_str(),
            "policy": {
                "request_timeout": humantime::format_duration(self.policy.request_timeout).to_string(),
                "heavy_request_timeout": humantime::format_duration(self.policy.heavy_request_timeout).to_string(),
                "max_response_bytes": self.policy.max_response_bytes,
                "retry": { "max_attempts": self.policy.max_attempts, "budget": self.policy.retry_budget },
                "hedge": self.policy.hedge.describe(),
                "breaker": {
                    "consecutive_failures": self.policy.breaker.consecutive_failures,
                    "failure_rate": self.policy.breaker.failure_rate,
                    "window": self.policy.breaker.window,
                    "open_duration": humantime::format_duration(self.policy.breaker.open_duration).to_string(),
                    "max_open_duration": humantime::format_duration(self.policy.breaker.max_open_duration).to_string(),
                    "half_open_requests": self.policy.breaker.half_open_requests,
                },
                "max_lag_blocks": self.policy.max_lag_blocks,
                "max_logs_blocks": self.policy.max_logs_blocks,
                "broadcast": {
                    "fanout": self.policy.broadcast.fanout,
                    "watch": self.policy.broadcast.watch,
                    "rebroadcast_after": humantime::format_duration(self.policy.broadcast.rebroadcast_after).to_string(),
                    "watch_for": humantime::format_duration(self.policy.broadcast.watch_for).to_string(),
                    "finality_depth": self.policy.broadcast.finality_depth,
                    "max_watched": self.policy.broadcast.max_watched,
                },
                "filters": {
                    "max": self.policy.filters.max,
                    "expire_after": humantime::format_duration(self.policy.filters.expire_after).to_string(),
                    "max_changes": self.policy.filters.max_changes,
                },
                "health": {
                    "interval": humantime::format_duration(self.policy.health.interval).to_string(),
                    "timeout": humantime::format_duration(self.policy.health.timeout).to_string(),
                    "rise": self.policy.health.rise,
                    "fall": self.policy.health.fall,
                },
            },
            "upstreams": self.upstreams.iter().map(UpstreamConfig::redacted).collect::<Vec<_>>(),
        });
        if let (Some(id), Some(obj)) = (self.chain_id, chain.as_object_mut()) {
            obj.insert("chain_id".into(), json!(id));
        }
        if let (Some(hash), Some(obj)) = (&self.genesis_hash, chain.as_object_mut()) {
            obj.insert("genesis_hash".into(), json!(hash));
        }
        chain
    }
}

impl UpstreamConfig {
    pub fn redacted(&self) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, _)| (k.to_string(), json!("***")))
            .collect();
        let mut v = json!({
            "name": &*self.name,
            "url": &self.display_url,
            "tier": self.tier.as_str(),
            "failure_domain": &self.failure_domain,
            "weight": self.weight,
            "max_in_flight": self.max_in_flight,
            "max_logs_range": self.max_logs_range,
            "timeout": humantime::format_duration(self.timeout).to_string(),
            "connect_timeout": humantime::format_duration(self.connect_timeout).to_string(),
        });
        if let Some(obj) = v.as_object_mut() {
            if !headers.is_empty() {
                obj.insert("headers".into(), serde_json::Value::Object(headers));
            }
            obj.insert(
                "ws_url".into(),
                self.ws
                    .as_ref()
                    .map_or(json!(false), |w| json!(&w.display_url)),
            );
            if let Some(rps) = self.max_rps {
                obj.insert("max_rps".into(), json!(rps.get()));
            }
            let mut methods = serde_json::Map::new();
            if let Some(allow) = &self.methods.allow {
                methods.insert("allow".into(), json!(allow));
            }
            if !self.methods.deny.is_empty() {
                methods.insert("deny".into(), json!(self.methods.deny));
            }
            if !methods.is_empty() {
                obj.insert("methods".into(), serde_json::Value::Object(methods));
            }
        }
        v
    }
}
