//! An upstream as configured: where it is (HTTP and WebSocket), how it is preferred, and
//! what it may be sent.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

use super::Secrets;

/// Preference class of an upstream: `fallback` serves only when nothing better can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Primary,
    Secondary,
    Fallback,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Primary => "primary",
            Tier::Secondary => "secondary",
            Tier::Fallback => "fallback",
        }
    }
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub name: Arc<str>,
    pub url: Url,
    /// `url` with secrets redacted: the only form ever logged or shown.
    pub display_url: String,
    /// Where its WebSocket is (`None`: no upstream socket, heads by polling only).
    pub ws: Option<UpstreamWs>,
    pub tier: Tier,
    pub failure_domain: String,
    pub weight: u32,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Per attempt: from sending the request to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub methods: MethodFilter,
    /// Most requests per second sent to it (health probes excluded).
    pub max_rps: Option<std::num::NonZeroU32>,
    /// Most attempts sent to it at once (each its own connection over HTTP/1.1); more wait
    /// for one to finish. Health probes are not counted.
    pub max_in_flight: u32,
    /// The widest `eth_getLogs` block range it answers: wider ranges are split
    /// (`chain::split`).
    pub max_logs_range: u64,
    /// Everything about this upstream not to show (the config's `${VAR}` values, the URL's
    /// credentials, key-like path segments and query values, header values): hidden in any
    /// text that came back from it before it is shown anywhere.
    /// A node's cookie file (`rpccookiefile`): its `user:password`, read again as the node
    /// writes a new one at each start.
    pub cookie_file: Option<std::path::PathBuf>,
    pub secrets: Secrets,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The redacted URL only, and header names only: a `{:?}` in a log line must not
        // leak a key.
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("url", &self.display_url)
            .field("ws_url", &self.ws.as_ref().map(|w| &w.display_url))
            .field("tier", &self.tier)
            .field("failure_domain", &self.failure_domain)
            .field("weight", &self.weight)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("methods", &self.methods)
            .field("max_rps", &self.max_rps)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_logs_range", &self.max_logs_range)
            .field("cookie_file", &self.cookie_file)
            .finish()
    }
}

/// An upstream's WebSocket endpoint (`ws_url`).
#[derive(Debug, Clone)]
pub struct UpstreamWs {
    pub url: Url,
    /// `url` with secrets redacted.
    pub display_url: String,
    /// Derived from the HTTP `url` (not set): a refused upgrade then only means that the
    /// provider serves no WebSocket there.
    pub derived: bool,
}

/// Which methods an upstream may serve: `allow` (if given) then `deny`; a trailing `*`
/// matches a prefix (`debug_*`).
#[derive(Debug, Clone, Default)]
pub struct MethodFilter {
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

impl MethodFilter {
    pub fn allows(&self, method: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => method.starts_with(prefix),
            None => method == pattern,
        };
        self.allow.as_ref().is_none_or(|a| a.iter().any(matches)) && !self.deny.iter().any(matches)
    }

    /// Whether `allow` names `method` itself (not by a `*` prefix).
    pub fn names(&self, method: &str) -> bool {
        self.allow
            .as_ref()
            .is_some_and(|a| a.iter().any(|m| m == method))
    }
}

/// `Authorization: Basic` for `user:password` (marked sensitive, so never logged); `None`
/// when it is not valid header text. The one builder of Basic credentials: from a URL, from
/// `rpcuser`/`rpcpassword`, from a node's cookie file.
pub fn basic_auth(credentials: &str) -> Option<HeaderValue> {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}
