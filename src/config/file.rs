//! The configuration file as written: serde types mirroring PRODUCT.md §3, nothing more.
//!
//! Every struct denies unknown keys, so a typo (`admin_lisen`) is an error naming the key,
//! not a silently ignored setting. Values stay as written (strings for durations and URLs);
//! `super::validate` turns them into runtime types.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub chains: Vec<FileChain>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub max_request_bytes: Option<u64>,
    pub max_batch_len: Option<u64>,
    pub shutdown_timeout: Option<String>,
    pub tls: Option<FileTls>,
    pub tx_store: Option<String>,
    pub max_connections: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
    pub max_buffered_bytes: Option<u64>,
    pub redis: Option<FileRedis>,
    pub websocket: Option<FileWebsocket>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebsocket {
    pub enabled: Option<bool>,
    pub max_connections: Option<u32>,
    pub max_subscriptions: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub queue_messages: Option<u32>,
    pub queue_bytes: Option<u64>,
    pub ping_interval: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub upstream_linger: Option<String>,
    pub upstream_stale_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedis {
    pub url: String,
    pub timeout: Option<String>,
    pub ttl: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChain {
    pub name: String,
    pub family: Option<String>,
    pub chain_id: Option<u64>,
    pub genesis_hash: Option<String>,
    #[serde(default)]
    pub upstreams: Vec<FileUpstream>,
    #[serde(default)]
    pub policy: FilePolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub name: String,
    pub url: String,
    pub ws_url: Option<FileWsUrl>,
    pub tier: Option<String>,
    pub failure_domain: Option<String>,
    pub weight: Option<u32>,
    pub max_rps: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub max_logs_range: Option<u32>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub methods: Option<FileMethods>,
    /// A Bitcoin node's RPC credentials, or its cookie file (`<datadir>/.cookie`).
    pub rpcuser: Option<String>,
    pub rpcpassword: Option<String>,
    pub rpccookiefile: Option<String>,
}

/// `ws_url = "wss://…"`, or `true` (derived from `url`, as when left out) or `false` (no
/// upstream socket).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileWsUrl {
    Url(String),
    Derived(bool),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMethods {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    pub request_timeout: Option<String>,
    pub heavy_request_timeout: Option<String>,
    pub max_response_bytes: Option<u64>,
    pub retry: Option<FileRetry>,
    pub max_lag_blocks: Option<u64>,
    pub max_logs_blocks: Option<u32>,
    pub health: Option<FileHealth>,
    pub hedge: Option<FileHedge>,
    pub breaker: Option<FileBreaker>,
    pub cache: Option<FileCache>,
    pub broadcast: Option<FileBroadcast>,
    pub filters: Option<FileFilters>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFilters {
    pub max: Option<u32>,
    pub expire_after: Option<String>,
    pub max_changes: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    pub max_attempts: Option<u32>,
    pub budget: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHedge {
    /// "auto", "off" or a duration.
    pub delay: Option<String>,
    pub max_extra: Option<u32>,
    pub budget: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBreaker {
    pub consecutive_failures: Option<u32>,
    pub failure_rate: Option<f64>,
    pub window: Option<u32>,
    pub open_duration: Option<String>,
    pub max_open_duration: Option<String>,
    pub half_open_requests: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    pub enabled: Option<bool>,
    pub max_bytes: Option<u64>,
    pub max_entry_bytes: Option<u64>,
    pub finality_depth: Option<u64>,
    pub latest_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBroadcast {
    pub fanout: Option<u32>,
    pub watch: Option<bool>,
    pub rebroadcast_after: Option<String>,
    pub watch_for: Option<String>,
    pub finality_depth: Option<u64>,
    pub max_watched: Option<u64>,
}
