//! Configuration: the TOML file of PRODUCT.md §3, validated into runtime types.
//!
//! Two stages (STYLE.md 10): `file` holds serde types that mirror what the operator wrote;
//! `validate` turns them into the types below (socket addresses, URLs, durations, header
//! values), collecting every error with its file and key path. Secrets read through
//! `${VAR}` are remembered and redacted wherever the configuration is shown.

mod error;
mod file;
mod interpolate;
mod pubsub;
mod redact;
mod resilience;
mod shown;
mod upstream;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use error::{ConfigError, ConfigErrors, KeyPath};
pub use interpolate::Secrets;
pub use pubsub::{FilterPolicy, WsConfig};
pub use redact::{redact_url, url_secret_parts};
pub use upstream::{basic_auth, MethodFilter, Tier, UpstreamConfig, UpstreamWs};

pub use resilience::{BreakerPolicy, HedgeDelay, HedgePolicy, AUTO_MAX, AUTO_MIN};

/// `tx_store` value for a watch kept in memory only.
pub const MEMORY_STORE: &str = ":memory:";

/// The embedded default (PRODUCT.md §9), compiled in from `config/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a file path or `embedded default`.
    pub source: String,
    pub server: ServerConfig,
    pub chains: Vec<ChainConfig>,
    /// Legal but risky settings, e.g. every upstream of a chain in one failure domain.
    pub warnings: Vec<String>,
    pub secrets: Secrets,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_request_bytes: usize,
    pub max_batch_len: usize,
    /// How long SIGTERM/SIGINT waits for in-flight requests before exiting anyway.
    pub shutdown_timeout: Duration,
    pub tls: Option<TlsConfig>,
    /// The transaction watch's on-disk store (relative paths: to the working directory);
    /// `None` (`":memory:"`): kept in memory only, lost on restart.
    pub tx_store: Option<PathBuf>,
    /// Client connections open at once on `listen`; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Calls in flight at once (HTTP requests, and batch items while they run); one more is
    /// answered at once with 503 (or -32005 in a batch), never queued.
    pub max_concurrent_calls: usize,
    /// Upstream answer bytes held in memory at once, all chains together.
    pub max_buffered_bytes: usize,
    /// Final answers shared with other replicas (`chain::cache::redis`).
    pub redis: Option<RedisConfig>,
    pub websocket: WsConfig,
}

/// `[server.redis]`: a Redis that the answer caches of several replicas share.
#[derive(Clone)]
pub struct RedisConfig {
    pub url: Url,
    /// `url` with its password redacted.
    pub display_url: String,
    /// A read slower than this is a miss.
    pub timeout: Duration,
    /// How long an entry is kept in Redis.
    pub ttl: Duration,
    /// Every key starts with it and a colon: replicas with the same prefix share entries.
    pub prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.display_url)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// TLS for the JSON-RPC listener, loaded and checked when the configuration is.
#[derive(Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub private_key: Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

impl TlsConfig {
    /// The rustls server configuration: HTTP/2 and HTTP/1.1 offered by ALPN. Fails when
    /// the key does not match the certificate.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.private_key.clone_key())
            .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Evm,
    Bitcoin,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Evm => "evm",
            Family::Bitcoin => "bitcoin",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub name: Arc<str>,
    pub family: Family,
    pub chain_id: Option<u64>,
    /// A bitcoin chain's identity: its genesis block's hash, lower case.
    pub genesis_hash: Option<String>,
    pub upstreams: Vec<UpstreamConfig>,
    pub policy: Policy,
}

/// Per-chain request policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The whole request, all attempts included.
    pub request_timeout: Duration,
    /// The same, and each attempt's limit, for calls slow by nature (`family::Cost::Heavy`).
    pub heavy_request_timeout: Duration,
    /// The largest upstream answer taken, compressed or not.
    pub max_response_bytes: usize,
    /// Upstreams tried for one request before giving up (1 = no failover), hedges included.
    pub max_attempts: u32,
    /// Retries allowed as a share of recent requests (on top of a small floor per second).
    pub retry_budget: f32,
    pub hedge: HedgePolicy,
    pub breaker: BreakerPolicy,
    /// An upstream further behind the chain head than this does not serve calls that need
    /// the newest state.
    pub max_lag_blocks: u64,
    /// The widest `eth_getLogs` block range served, in parts no wider than the upstreams'
    /// `max_logs_range`; a wider one is refused.
    pub max_logs_blocks: u64,
    pub health: HealthPolicy,
    pub broadcast: BroadcastPolicy,
    pub cache: CachePolicy,
    pub filters: FilterPolicy,
}

/// A chain's answer cache (`chain::cache`): answers that cannot change, kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    pub enabled: bool,
    /// The most bytes of answers (and keys) kept.
    pub max_bytes: usize,
    /// A larger answer is not kept.
    pub max_entry_bytes: usize,
    /// For a chain without a `finalized` block tag: a block this deep under the chain head
    /// is final. `None`: the upstreams' `finalized` blocks decide.
    pub finality_depth: Option<u64>,
    /// Reads at `latest` kept this long (under the head block's hash); `None`: never kept.
    pub latest_ttl: Option<Duration>,
}

/// A chain's transaction broadcasts, and the watch that lands them.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastPolicy {
    /// Upstreams a signed transaction is sent to at once (different failure domains first).
    pub fanout: u32,
    /// Watch each transaction that may be in some pool until it is final, and send it again
    /// when it is known nowhere.
    pub watch: bool,
    /// Not mined this long after it was last sent, and unknown to an upstream: sent again
    /// to it (then after twice as long, and so on).
    pub rebroadcast_after: Duration,
    /// Given up on (`expired`) when not mined this long after it was first sent.
    pub watch_for: Duration,
    /// Blocks on top of a transaction's block before it is `final` and no longer watched.
    pub finality_depth: u64,
    /// Transactions watched (or remembered, once ended) at most, per chain.
    pub max_watched: usize,
}

/// Active health checks of a chain's upstreams.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// Time between probes of one upstream (each wait jittered by up to ±10%).
    pub interval: Duration,
    /// A probe not answered within this is a failed probe.
    pub timeout: Duration,
    /// Consecutive good probes that bring an upstream back.
    pub rise: u32,
    /// Consecutive failed probes that take it out.
    pub fall: u32,
}

pub mod defaults;

impl Config {
    /// Read and validate a configuration file, interpolating from the process environment.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![
                KeyPath::root(&source).error(format!("cannot read: {e}"))
            ])
        })?;
        Self::from_toml(&text, &source, &|k| std::env::var(k).ok())
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        Self::from_toml(EMBEDDED_DEFAULT, "embedded default", &|k| {
            std::env::var(k).ok()
        })
    }

    /// Parse and validate TOML text; `source` names it in errors, `env` resolves `${VAR}`.
    pub fn from_toml(
        text: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        validate::load(text, source, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_filter() {
        let f = MethodFilter {
            allow: None,
            deny: vec!["debug_*".into(), "eth_sendTransaction".into()],
        };
        assert!(f.allows("eth_call"));
        assert!(!f.allows("debug_traceTransaction"));
        assert!(!f.allows("eth_sendTransaction"));
        let f = MethodFilter {
            allow: Some(vec!["eth_*".into()]),
            deny: vec!["eth_getLogs".into()],
        };
        assert!(f.allows("eth_call"));
        assert!(!f.allows("eth_getLogs"));
        assert!(!f.allows("net_version"));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let text = r#"
            [[chains]]
            name = "eth"
            chain_id = 1
            [[chains.upstreams]]
            name = "a"
            url = "https://u:pw-secret@rpc.example.io/v2/${KEY}"
            headers = { Authorization = "Bearer ${KEY}" }
        "#;
        let c = Config::from_toml(text, "t.toml", &|_| Some("key-secret-123".into())).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("key-secret-123") && !shown.contains("pw-secret"),
            "{shown}"
        );
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.server.listen.to_string(), defaults::LISTEN);
        assert_eq!(c.server.admin_listen.to_string(), defaults::ADMIN_LISTEN);
        assert_eq!(c.chains.len(), 1);
        assert_eq!(&*c.chains[0].name, "ethereum");
        assert_eq!(c.chains[0].chain_id, Some(1));
        assert_eq!(
            c.chains[0].upstreams[0].url.as_str(),
            "http://127.0.0.1:8545/"
        );
        assert_eq!(c.chains[0].upstreams[0].tier, Tier::Primary);
        assert!(c.chains[0].upstreams[1..]
            .iter()
            .all(|u| u.tier == Tier::Fallback));
    }
}
