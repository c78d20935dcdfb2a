//! Turning a configuration file into a [`Config`]: parse, interpolate, check every value.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

use super::error::{ConfigError, ConfigErrors, KeyPath};
use super::file::{
    FileBreaker, FileChain, FileConfig, FileHealth, FileHedge, FilePolicy, FileServer, FileTls,
    FileUpstream,
};
use super::interpolate::{interpolate, Secrets};
use super::redact::redact_url;
use super::{
    defaults, BreakerPolicy, ChainConfig, Config, Family, HealthPolicy, HedgeDelay, HedgePolicy,
    MethodFilter, Policy, ServerConfig, Tier, TlsConfig, UpstreamConfig,
};

pub(super) fn load(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let root = KeyPath::root(source);
    let mut table: toml::Value = match text.parse::<toml::Table>() {
        Ok(t) => toml::Value::Table(t),
        Err(e) => return Err(ConfigErrors(vec![root.error(format!("invalid TOML: {e}"))])),
    };
    let mut errors = Vec::new();
    let mut secrets = Secrets::default();
    interpolate(&mut table, &root, env, &mut secrets, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let file: FileConfig = serde_path_to_error::deserialize(table).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let reason = secrets.redact(&e.into_inner().to_string());
        ConfigErrors(vec![ConfigError {
            file: source.to_string(),
            key,
            reason,
        }])
    })?;

    let mut v = Validator {
        errors: Vec::new(),
        warnings: Vec::new(),
        secrets,
    };
    let server = v.server(&root.key("server"), &file.server);
    let chains = v.chains(&root, &file.chains);
    if !v.errors.is_empty() {
        return Err(ConfigErrors(v.errors));
    }
    match server {
        Some(server) => Ok(Config {
            source: source.to_string(),
            server,
            chains,
            warnings: v.warnings,
            secrets: v.secrets,
        }),
        None => Err(ConfigErrors(vec![root.error("invalid [server] section")])),
    }
}

struct Validator {
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    secrets: Secrets,
}

impl Validator {
    fn fail(&mut self, at: &KeyPath, reason: impl Into<String>) {
        let reason = self.secrets.redact(&reason.into());
        self.errors.push(at.error(reason));
    }

    fn server(&mut self, at: &KeyPath, s: &FileServer) -> Option<ServerConfig> {
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
        Some(ServerConfig {
            listen: listen?,
            admin_listen: admin_listen?,
            max_request_bytes,
            max_batch_len,
            shutdown_timeout,
            tls,
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

    fn chains(&mut self, root: &KeyPath, chains: &[FileChain]) -> Vec<ChainConfig> {
        if chains.is_empty() {
            self.fail(
                &root.key("chains"),
                "at least one [[chains]] entry is required",
            );
        }
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in chains.iter().enumerate() {
            let at = root.key("chains").index(i);
            if !names.insert(c.name.clone()) {
                self.fail(
                    &at.key("name"),
                    format!("duplicate chain name `{}`", c.name),
                );
            }
            if let Some(chain) = self.chain(&at, c) {
                out.push(chain);
            }
        }
        out
    }

    fn chain(&mut self, at: &KeyPath, c: &FileChain) -> Option<ChainConfig> {
        let name_ok = !c.name.is_empty()
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !name_ok {
            self.fail(
                &at.key("name"),
                format!(
                    "`{}` cannot be a URL path segment: use letters, digits, `-` and `_`",
                    c.name
                ),
            );
        }
        let family = match c.family.as_deref().unwrap_or("evm") {
            "evm" => Some(Family::Evm),
            f @ ("solana" | "bitcoin") => {
                self.fail(
                    &at.key("family"),
                    format!("`{f}` is not supported yet in this version (supported: evm)"),
                );
                None
            }
            other => {
                self.fail(
                    &at.key("family"),
                    format!("unknown family `{other}`, expected one of evm, solana, bitcoin"),
                );
                None
            }
        };
        if family == Some(Family::Evm) && c.chain_id.is_none() {
            self.fail(
                &at.key("chain_id"),
                "required for an evm chain (every upstream must report it)",
            );
        }
        if c.upstreams.is_empty() {
            self.fail(
                &at.key("upstreams"),
                "at least one [[chains.upstreams]] entry is required",
            );
        }
        let policy = self.policy(&at.key("policy"), &c.policy);
        let mut names = HashSet::new();
        let mut upstreams = Vec::new();
        for (i, u) in c.upstreams.iter().enumerate() {
            let uat = at.key("upstreams").index(i);
            if !names.insert(u.name.clone()) {
                self.fail(
                    &uat.key("name"),
                    format!("duplicate upstream name `{}`", u.name),
                );
            }
            if let Some(u) = self.upstream(&uat, u) {
                upstreams.push(u);
            }
        }
        let domains: HashSet<&str> = upstreams
            .iter()
            .map(|u| u.failure_domain.as_str())
            .collect();
        if domains.len() == 1 {
            if let Some(d) = domains.iter().next() {
                self.warnings.push(format!(
                    "chain `{}`: every upstream is in failure domain `{d}`; losing it stops the chain (add an upstream elsewhere)",
                    c.name
                ));
            }
        }
        Some(ChainConfig {
            name: Arc::from(c.name.as_str()),
            family: family?,
            chain_id: c.chain_id,
            upstreams,
            policy,
        })
    }

    fn policy(&mut self, at: &KeyPath, p: &FilePolicy) -> Policy {
        if p.cache.is_some() {
            self.fail(&at.key("cache"), "not supported yet in this version");
        }
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
        let hedge = self.hedge(&at.key("hedge"), p.hedge.as_ref());
        let breaker = self.breaker(&at.key("breaker"), p.breaker.as_ref());
        let health = self.health(&at.key("health"), p.health.as_ref());
        let broadcast_fanout = self.count(
            &at.key("broadcast").key("fanout"),
            p.broadcast.as_ref().and_then(|b| b.fanout),
            1..=16,
            defaults::BROADCAST_FANOUT,
        );
        Policy {
            broadcast_fanout,
            request_timeout,
            heavy_request_timeout,
            max_attempts,
            retry_budget,
            hedge,
            breaker,
            max_lag_blocks: p.max_lag_blocks.unwrap_or(defaults::MAX_LAG_BLOCKS),
            health,
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
                let delay =
                    self.duration(&at.key("delay"), Some(d), crate::upstream::hedge::AUTO_MAX);
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

    /// A count within `range` ("7 is out of range 1..=4" otherwise).
    fn count(
        &mut self,
        at: &KeyPath,
        value: Option<u32>,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> u32 {
        match value {
            None => default,
            Some(n) if range.contains(&n) => n,
            Some(n) => {
                self.fail(at, format!("{n} is out of range {range:?}"));
                default
            }
        }
    }

    /// A share such as a budget: 0 to 1.
    fn share(&mut self, at: &KeyPath, value: Option<f64>, default: f32) -> f32 {
        match value {
            None => default,
            Some(v) if (0.0..=1.0).contains(&v) => v as f32,
            Some(v) => {
                self.fail(
                    at,
                    format!("{v} is out of range 0..=1 (a share: 0.2 is 20%)"),
                );
                default
            }
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

    fn upstream(&mut self, at: &KeyPath, u: &FileUpstream) -> Option<UpstreamConfig> {
        if u.name.is_empty() {
            self.fail(&at.key("name"), "must not be empty");
        }
        let max_rps = match u.max_rps {
            None => None,
            Some(n) => {
                let rps = std::num::NonZeroU32::new(n);
                if rps.is_none() {
                    self.fail(
                        &at.key("max_rps"),
                        "must be at least 1 (leave it out for no limit)",
                    );
                }
                rps
            }
        };
        let max_in_flight = self.count(
            &at.key("max_in_flight"),
            u.max_in_flight,
            1..=65_536,
            defaults::MAX_IN_FLIGHT,
        );
        if u.ws_url.is_some() {
            self.fail(
                &at.key("ws_url"),
                "not supported yet in this version (WebSocket comes later)",
            );
        }
        let url = match Url::parse(&u.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                Some(url)
            }
            Ok(url) => {
                self.fail(
                    &at.key("url"),
                    format!(
                        "scheme `{}` is not supported: use http:// or https://",
                        url.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                self.fail(&at.key("url"), format!("not a valid URL: {e}"));
                None
            }
        };
        let tier = match u.tier.as_deref().unwrap_or("primary") {
            "primary" => Tier::Primary,
            "secondary" => Tier::Secondary,
            "fallback" => Tier::Fallback,
            other => {
                self.fail(
                    &at.key("tier"),
                    format!("unknown tier `{other}`, expected one of primary, secondary, fallback"),
                );
                Tier::Primary
            }
        };
        let weight = match u.weight {
            None => 1,
            Some(w @ 1..=1000) => w,
            Some(w) => {
                self.fail(&at.key("weight"), format!("{w} is out of range 1..=1000"));
                1
            }
        };
        let mut headers = Vec::new();
        for (k, v) in &u.headers {
            let hat = at.key("headers").key(k);
            match (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                (Ok(name), Ok(mut value)) => {
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                (Err(_), _) => self.fail(&hat, "not a valid HTTP header name"),
                (_, Err(_)) => self.fail(&hat, "not a valid HTTP header value"),
            }
        }
        let timeout = self.duration(
            &at.key("timeout"),
            u.timeout.as_deref(),
            defaults::UPSTREAM_TIMEOUT,
        );
        let connect_timeout = self.duration(
            &at.key("connect_timeout"),
            u.connect_timeout.as_deref(),
            defaults::CONNECT_TIMEOUT,
        );
        let methods = u
            .methods
            .as_ref()
            .map_or_else(MethodFilter::default, |m| MethodFilter {
                allow: m.allow.clone(),
                deny: m.deny.clone().unwrap_or_default(),
            });
        let url = url?;
        let failure_domain = match &u.failure_domain {
            Some(d) if d.is_empty() => {
                self.fail(&at.key("failure_domain"), "must not be empty");
                String::new()
            }
            Some(d) => d.clone(),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        Some(UpstreamConfig {
            name: Arc::from(u.name.as_str()),
            display_url: redact_url(&url, &self.secrets),
            url,
            tier,
            failure_domain,
            weight,
            headers,
            timeout,
            connect_timeout,
            methods,
            max_rps,
            max_in_flight,
        })
    }

    fn addr(&mut self, at: &KeyPath, value: Option<&str>, default: &str) -> Option<SocketAddr> {
        let text = value.unwrap_or(default);
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.fail(
                    at,
                    format!("`{text}` is not an address like 127.0.0.1:8645"),
                );
                None
            }
        }
    }

    fn positive(&mut self, at: &KeyPath, value: Option<u64>, default: usize) -> usize {
        match value {
            None => default,
            Some(0) => {
                self.fail(at, "must be at least 1");
                default
            }
            Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
        }
    }

    fn duration(&mut self, at: &KeyPath, value: Option<&str>, default: Duration) -> Duration {
        match value.map(humantime::parse_duration) {
            None => default,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                self.fail(at, "must be greater than zero");
                default
            }
            Some(Err(e)) => {
                self.fail(
                    at,
                    format!(
                        "`{}` is not a duration like \"500ms\" or \"10s\": {e}",
                        value.unwrap_or_default()
                    ),
                );
                default
            }
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
