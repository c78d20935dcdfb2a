//! `[chains.policy]`: timeouts, retries, hedging, breakers, health checks and broadcast.

use std::time::Duration;

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::{
    FileBreaker, FileBroadcast, FileCache, FileHealth, FileHedge, FilePolicy,
};
use crate::config::{
    defaults, BreakerPolicy, BroadcastPolicy, CachePolicy, HealthPolicy, HedgeDelay, HedgePolicy,
    Policy,
};

impl Validator {
    pub(super) fn policy(&mut self, at: &KeyPath, p: &FilePolicy) -> Policy {
        let request_timeout = self.duration(
            &at.key("request_timeout"),
            p.request_timeout.as_deref(),
            defaults::REQUEST_TIMEOUT,
        );
        let heavy_request_timeout = self.duration(
            &at.key("heavy_request_timeout"),
            p.heavy_request_timeout.as_deref(),
            defaults::HEAVY_REQUEST_TIMEOUT.max(request_timeout),
        );
        let max_response_bytes = self.bytes(
            &at.key("max_response_bytes"),
            p.max_response_bytes,
            1024..=super::MAX_RESPONSE_LIMIT,
            defaults::MAX_RESPONSE_BYTES,
        );
        let max_attempts = match p.retry.as_ref().and_then(|r| r.max_attempts) {
            None => defaults::MAX_ATTEMPTS,
            Some(0) => {
                self.fail(&at.key("retry").key("max_attempts"), "must be at least 1");
                1
            }
            Some(n) => n,
        };
        let retry_budget = self.share(
            &at.key("retry").key("budget"),
            p.retry.as_ref().and_then(|r| r.budget),
            defaults::RETRY_BUDGET,
        );
        let max_logs_blocks = self.count(
            &at.key("max_logs_blocks"),
            p.max_logs_blocks,
            1..=100_000_000,
            defaults::MAX_LOGS_BLOCKS,
        );
        let hedge = self.hedge(&at.key("hedge"), p.hedge.as_ref());
        let breaker = self.breaker(&at.key("breaker"), p.breaker.as_ref());
        let health = self.health(&at.key("health"), p.health.as_ref());
        let broadcast = self.broadcast(&at.key("broadcast"), p.broadcast.as_ref());
        let cache = self.cache(&at.key("cache"), p.cache.as_ref());
        let filters = self.filters(&at.key("filters"), p.filters.as_ref());
        Policy {
            cache,
            filters,
            broadcast,
            request_timeout,
            heavy_request_timeout,
            max_response_bytes,
            max_attempts,
            retry_budget,
            hedge,
            breaker,
            max_lag_blocks: p.max_lag_blocks.unwrap_or(defaults::MAX_LAG_BLOCKS),
            max_logs_blocks: u64::from(max_logs_blocks),
            health,
        }
    }

    fn cache(&mut self, at: &KeyPath, c: Option<&FileCache>) -> CachePolicy {
        let default = FileCache::default();
        let c = c.unwrap_or(&default);
        let max_bytes = self.bytes(
            &at.key("max_bytes"),
            c.max_bytes,
            super::MIB..=64 * 1024 * super::MIB,
            defaults::CACHE_MAX_BYTES,
        );
        let max_entry_bytes = self.bytes(
            &at.key("max_entry_bytes"),
            c.max_entry_bytes,
            1024..=u64::try_from(max_bytes).unwrap_or(u64::MAX),
            (max_bytes / defaults::CACHE_ENTRY_SHARE).max(1024),
        );
        let finality_depth = match c.finality_depth {
            Some(0) => {
                self.fail(
                    &at.key("finality_depth"),
                    "must be at least 1 (the head itself is never final)",
                );
                None
            }
            d => d,
        };
        let latest_ttl = c.latest_ttl.as_deref().map(|t| {
            self.duration_within(
                &at.key("latest_ttl"),
                Some(t),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )
        });
        CachePolicy {
            enabled: c.enabled.unwrap_or(true),
            max_bytes,
            max_entry_bytes,
            finality_depth,
            latest_ttl,
        }
    }

    fn hedge(&mut self, at: &KeyPath, h: Option<&FileHedge>) -> HedgePolicy {
        let default = HedgePolicy::default();
        let Some(h) = h else { return default };
        let delay = match h.delay.as_deref() {
            None => default.delay,
            Some("auto") => HedgeDelay::Auto,
            Some("off") => HedgeDelay::Off,
            Some(d) => {
                let delay = self.duration(&at.key("delay"), Some(d), crate::config::AUTO_MAX);
                if delay > Duration::from_secs(600) {
                    self.fail(
                        &at.key("delay"),
                        "is longer than 10m: hedging would never happen (use \"off\")",
                    );
                }
                HedgeDelay::Fixed(delay.min(Duration::from_secs(600)))
            }
        };
        let max_extra = self.count(&at.key("max_extra"), h.max_extra, 0..=4, default.max_extra);
        HedgePolicy {
            delay,
            max_extra,
            budget: self.share(&at.key("budget"), h.budget, default.budget),
        }
    }

    fn breaker(&mut self, at: &KeyPath, b: Option<&FileBreaker>) -> BreakerPolicy {
        let default = BreakerPolicy::default();
        let Some(b) = b else { return default };
        let mut count =
            |key: &str, value, default| self.count(&at.key(key), value, 1..=10_000, default);
        let consecutive_failures = count(
            "consecutive_failures",
            b.consecutive_failures,
            default.consecutive_failures,
        );
        let window = count("window", b.window, default.window);
        let half_open_requests = count(
            "half_open_requests",
            b.half_open_requests,
            default.half_open_requests,
        );
        let failure_rate = match b.failure_rate {
            None => default.failure_rate,
            Some(r) if r > 0.0 && r <= 1.0 => r,
            Some(r) => {
                self.fail(
                    &at.key("failure_rate"),
                    format!("{r} is out of range: a share above 0 and at most 1"),
                );
                default.failure_rate
            }
        };
        let open_duration = self.duration(
            &at.key("open_duration"),
            b.open_duration.as_deref(),
            default.open_duration,
        );
        let max_open_duration = self.duration(
            &at.key("max_open_duration"),
            b.max_open_duration.as_deref(),
            default.max_open_duration.max(open_duration),
        );
        if max_open_duration < open_duration {
            self.fail(
                &at.key("max_open_duration"),
                format!(
                    "{} is shorter than open_duration ({})",
                    humantime::format_duration(max_open_duration),
                    humantime::format_duration(open_duration)
                ),
            );
        }
        BreakerPolicy {
            consecutive_failures,
            failure_rate,
            window,
            open_duration,
            max_open_duration,
            half_open_requests,
        }
    }

    fn health(&mut self, at: &KeyPath, h: Option<&FileHealth>) -> HealthPolicy {
        let h = h.unwrap_or(&FileHealth {
            interval: None,
            timeout: None,
            rise: None,
            fall: None,
        });
        let interval = self.duration(
            &at.key("interval"),
            h.interval.as_deref(),
            defaults::HEALTH_INTERVAL,
        );
        let timeout = self.duration(
            &at.key("timeout"),
            h.timeout.as_deref(),
            defaults::HEALTH_TIMEOUT,
        );
        if timeout > interval {
            self.fail(
                &at.key("timeout"),
                format!(
                    "{} is longer than the interval ({}): probes would overlap",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
        let mut count =
            |key: &str, value, default| self.count(&at.key(key), value, 1..=100, default);
        HealthPolicy {
            interval,
            timeout,
            rise: count("rise", h.rise, defaults::HEALTH_RISE),
            fall: count("fall", h.fall, defaults::HEALTH_FALL),
        }
    }

    fn broadcast(&mut self, at: &KeyPath, b: Option<&FileBroadcast>) -> BroadcastPolicy {
        let none = FileBroadcast::default();
        let b = b.unwrap_or(&none);
        let fanout = self.count(
            &at.key("fanout"),
            b.fanout,
            1..=16,
            defaults::BROADCAST_FANOUT,
        );
        let rebroadcast_after = self.duration(
            &at.key("rebroadcast_after"),
            b.rebroadcast_after.as_deref(),
            defaults::REBROADCAST_AFTER,
        );
        let watch_for = self.duration_within(
            &at.key("watch_for"),
            b.watch_for.as_deref(),
            defaults::WATCH_FOR.max(rebroadcast_after),
            super::MAX_WATCH_FOR,
        );
        if watch_for < rebroadcast_after {
            self.fail(
                &at.key("watch_for"),
                format!(
                    "{} is shorter than rebroadcast_after ({}): nothing would ever be sent again",
                    humantime::format_duration(watch_for),
                    humantime::format_duration(rebroadcast_after)
                ),
            );
        }
        let finality_depth = match b.finality_depth {
            None => defaults::FINALITY_DEPTH,
            Some(d @ 1..=100_000) => d,
            Some(d) => {
                self.fail(
                    &at.key("finality_depth"),
                    format!("{d} is out of range 1..=100000"),
                );
                defaults::FINALITY_DEPTH
            }
        };
        let max_watched = match b.max_watched {
            None => defaults::MAX_WATCHED,
            Some(n @ 1..=1_000_000) => usize::try_from(n).unwrap_or(defaults::MAX_WATCHED),
            Some(n) => {
                self.fail(
                    &at.key("max_watched"),
                    format!("{n} is out of range 1..=1000000"),
                );
                defaults::MAX_WATCHED
            }
        };
        BroadcastPolicy {
            fanout,
            watch: b.watch.unwrap_or(true),
            rebroadcast_after,
            watch_for,
            finality_depth,
            max_watched,
        }
    }
}
