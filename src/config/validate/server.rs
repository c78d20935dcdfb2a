//! `[server]`: listeners, limits, TLS and the transaction watch's store.

use std::path::PathBuf;
use std::sync::Arc;

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::{FileRedis, FileServer, FileTls};
use crate::config::{defaults, redact_url, RedisConfig, ServerConfig, TlsConfig, MEMORY_STORE};

impl Validator {
    pub(super) fn server(&mut self, at: &KeyPath, s: &FileServer) -> Option<ServerConfig> {
        let listen = self.addr(&at.key("listen"), s.listen.as_deref(), defaults::LISTEN);
        let admin_listen = self.addr(
            &at.key("admin_listen"),
            s.admin_listen.as_deref(),
            defaults::ADMIN_LISTEN,
        );
        if let (Some(a), Some(b)) = (listen, admin_listen) {
            if a == b && a.port() != 0 {
                self.fail(
                    &at.key("admin_listen"),
                    format!("same address as listen ({a})"),
                );
            }
        }
        let max_request_bytes = self.positive(
            &at.key("max_request_bytes"),
            s.max_request_bytes,
            defaults::MAX_REQUEST_BYTES,
        );
        let max_batch_len = self.positive(
            &at.key("max_batch_len"),
            s.max_batch_len,
            defaults::MAX_BATCH_LEN,
        );
        let shutdown_timeout = self.duration(
            &at.key("shutdown_timeout"),
            s.shutdown_timeout.as_deref(),
            defaults::SHUTDOWN_TIMEOUT,
        );
        let tls = s.tls.as_ref().and_then(|t| self.tls(&at.key("tls"), t));
        let tx_store = match s.tx_store.as_deref() {
            None => Some(PathBuf::from(defaults::TX_STORE)),
            Some(MEMORY_STORE) => None,
            Some("") => {
                self.fail(
                    &at.key("tx_store"),
                    "must not be empty (a file path, or \":memory:\")",
                );
                None
            }
            Some(p) => Some(PathBuf::from(p)),
        };
        let at_once = |v: &mut Self, key: &str, value: Option<u32>, default: u32| {
            v.count(&at.key(key), value, 1..=super::MAX_CONCURRENCY, default) as usize
        };
        let max_connections = at_once(
            self,
            "max_connections",
            s.max_connections,
            defaults::MAX_CONNECTIONS,
        );
        let max_concurrent_calls = at_once(
            self,
            "max_concurrent_calls",
            s.max_concurrent_calls,
            defaults::MAX_CONCURRENT_CALLS,
        );
        let max_buffered_bytes = self.bytes(
            &at.key("max_buffered_bytes"),
            s.max_buffered_bytes,
            1024 * 1024..=super::MAX_BUFFERED_LIMIT,
            defaults::MAX_BUFFERED_BYTES,
        );
        let redis = s
            .redis
            .as_ref()
            .and_then(|r| self.redis(&at.key("redis"), r));
        let websocket = self.websocket(&at.key("websocket"), s.websocket.as_ref());
        Some(ServerConfig {
            redis,
            websocket,
            max_connections,
            max_concurrent_calls,
            max_buffered_bytes,
            listen: listen?,
            admin_listen: admin_listen?,
            max_request_bytes,
            max_batch_len,
            shutdown_timeout,
            tls,
            tx_store,
        })
    }

    fn redis(&mut self, at: &KeyPath, r: &FileRedis) -> Option<RedisConfig> {
        let timeout = self.duration_within(
            &at.key("timeout"),
            r.timeout.as_deref(),
            defaults::REDIS_TIMEOUT,
            std::time::Duration::from_secs(10),
        );
        let ttl = self.duration(&at.key("ttl"), r.ttl.as_deref(), defaults::REDIS_TTL);
        if ttl < std::time::Duration::from_secs(1) {
            self.fail(&at.key("ttl"), "must be at least 1s");
        }
        let prefix = r.prefix.as_deref().unwrap_or(defaults::REDIS_PREFIX);
        if prefix.is_empty() || prefix.contains(char::is_whitespace) {
            self.fail(&at.key("prefix"), "must be a non-empty word without spaces");
        }
        let url = match url::Url::parse(&r.url) {
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => u,
            Ok(u) if u.scheme() == "rediss" => {
                self.fail(
                    &at.key("url"),
                    "rediss:// (TLS) is not supported yet: use redis://",
                );
                return None;
            }
            Ok(u) => {
                self.fail(
                    &at.key("url"),
                    format!("must be redis://host:port, not {}://", u.scheme()),
                );
                return None;
            }
            Err(e) => {
                self.fail(&at.key("url"), format!("not a URL: {e}"));
                return None;
            }
        };
        Some(RedisConfig {
            display_url: redact_url(&url, &self.secrets),
            url,
            timeout,
            ttl,
            prefix: prefix.to_string(),
        })
    }

    /// Read the certificate chain and key now, so that `check-config` catches a bad file
    /// and a running proxy never fails on it later.
    fn tls(&mut self, at: &KeyPath, t: &FileTls) -> Option<TlsConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_file_iter(&t.cert).and_then(Iterator::collect);
        let certs = match certs {
            Ok(c) if !c.is_empty() => Some(c),
            Ok(_) => {
                self.fail(
                    &at.key("cert"),
                    format!("`{}` holds no PEM certificate", t.cert),
                );
                None
            }
            Err(e) => {
                self.fail(
                    &at.key("cert"),
                    format!("cannot read PEM certificates from `{}`: {e}", t.cert),
                );
                None
            }
        };
        let key = match PrivateKeyDer::from_pem_file(&t.key) {
            Ok(k) => Some(k),
            Err(e) => {
                self.fail(
                    &at.key("key"),
                    format!("cannot read a PEM private key from `{}`: {e}", t.key),
                );
                None
            }
        };
        let tls = TlsConfig {
            cert: PathBuf::from(&t.cert),
            key: PathBuf::from(&t.key),
            cert_chain: certs?,
            private_key: Arc::new(key?),
        };
        if let Err(e) = tls.server_config() {
            self.fail(at, e);
            return None;
        }
        Some(tls)
    }
}
