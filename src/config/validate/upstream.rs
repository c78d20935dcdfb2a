//! `[[chains.upstreams]]`: URL, tier, failure domain, limits, headers and methods.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use url::Url;

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::{FileUpstream, FileWsUrl};
use crate::config::redact::{redact_url, url_secret_parts};
use crate::config::{defaults, MethodFilter, Tier, UpstreamConfig, UpstreamWs};

impl Validator {
    pub(super) fn upstream(&mut self, at: &KeyPath, u: &FileUpstream) -> Option<UpstreamConfig> {
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
        let max_logs_range = self.count(
            &at.key("max_logs_range"),
            u.max_logs_range,
            1..=100_000_000,
            defaults::MAX_LOGS_RANGE,
        );
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
        let node_auth = self.node_auth(at, u, &url, &mut headers);
        let ws = self.ws_url(at, u.ws_url.as_ref(), &url);
        let failure_domain = match &u.failure_domain {
            Some(d) if d.is_empty() => {
                self.fail(&at.key("failure_domain"), "must not be empty");
                String::new()
            }
            Some(d) => d.clone(),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let secrets = self.secrets.with(
            url_secret_parts(&url, &self.secrets)
                .into_iter()
                .chain(
                    ws.iter()
                        .filter(|w| !w.derived)
                        .flat_map(|w| url_secret_parts(&w.url, &self.secrets)),
                )
                .chain(u.headers.values().flat_map(|v| {
                    // `Bearer <token>`: the token alone too.
                    let last = v.rsplit(' ').next().unwrap_or_default().to_string();
                    [v.clone(), last]
                }))
                .chain(node_auth.secrets),
        );
        Some(UpstreamConfig {
            name: Arc::from(u.name.as_str()),
            display_url: redact_url(&url, &self.secrets),
            ws: ws.map(|w| UpstreamWs {
                display_url: redact_url(&w.url, &secrets),
                ..w
            }),
            secrets,
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
            max_logs_range: u64::from(max_logs_range),
            cookie_file: node_auth.cookie_file,
        })
    }

    /// `ws_url`: a `ws://` or `wss://` URL; left out (or `true`): `url` with its scheme
    /// turned to `ws`/`wss`, as a node that serves both on one port (anvil, geth's
    /// `--ws` on the HTTP port with `--http.port == --ws.port`, most providers) takes it;
    /// `false`: none.
    fn ws_url(
        &mut self,
        at: &KeyPath,
        value: Option<&FileWsUrl>,
        http: &Url,
    ) -> Option<UpstreamWs> {
        let (url, derived) = match value {
            Some(FileWsUrl::Derived(false)) => return None,
            None | Some(FileWsUrl::Derived(true)) => {
                let mut url = http.clone();
                let scheme = if http.scheme() == "https" {
                    "wss"
                } else {
                    "ws"
                };
                url.set_scheme(scheme).ok()?;
                (url, true)
            }
            Some(FileWsUrl::Url(text)) => match Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "ws" | "wss") && url.host_str().is_some() => {
                    (url, false)
                }
                Ok(url) => {
                    self.fail(
                        &at.key("ws_url"),
                        format!(
                            "scheme `{}` is not supported: use ws:// or wss:// (or false for no socket)",
                            url.scheme()
                        ),
                    );
                    return None;
                }
                Err(e) => {
                    self.fail(&at.key("ws_url"), format!("not a valid URL: {e}"));
                    return None;
                }
            },
        };
        Some(UpstreamWs {
            display_url: String::new(),
            url,
            derived,
        })
    }
}
