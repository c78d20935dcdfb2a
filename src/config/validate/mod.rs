//! Turning a configuration file into a [`Config`]: parse, interpolate, check every value.
//!
//! `load` parses and interpolates; the `Validator` checks each section (`server`, `chain`,
//! `policy`, `upstream`), collecting every error with its key path, and the value helpers
//! here (counts, shares, durations, addresses) word the errors the same way everywhere.

mod chain;
mod node_auth;
mod policy;
mod pubsub;
mod server;
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use super::error::{ConfigError, ConfigErrors, KeyPath};
use super::file::FileConfig;
use super::interpolate::{interpolate, Secrets};
use super::Config;

/// The longest duration a key takes, unless it says otherwise.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
const MIB: u64 = 1024 * 1024;
/// The largest `max_response_bytes`: 1 GiB (a JSON answer larger is a request to narrow).
pub(super) const MAX_RESPONSE_LIMIT: u64 = 1024 * MIB;
/// The largest `max_buffered_bytes`: 64 GiB.
pub(super) const MAX_BUFFERED_LIMIT: u64 = 64 * 1024 * MIB;
/// The most connections or calls at once a limit may allow.
pub(super) const MAX_CONCURRENCY: u32 = 1_000_000;
/// The longest `watch_for`: a transaction unmined for a month is not coming.
pub(super) const MAX_WATCH_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

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
    if let Some(server) = &server {
        v.answers_fit_the_budget(&root, &file, server.max_buffered_bytes);
    }
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

    /// A size in bytes within `range` ("... is out of range" otherwise, in bytes and MiB).
    fn bytes(
        &mut self,
        at: &KeyPath,
        value: Option<u64>,
        range: std::ops::RangeInclusive<u64>,
        default: usize,
    ) -> usize {
        match value {
            None => default,
            Some(n) if range.contains(&n) => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                self.fail(
                    at,
                    format!(
                        "{n} is out of range {} to {} bytes ({} to {} MiB)",
                        range.start(),
                        range.end(),
                        range.start() / MIB,
                        range.end() / MIB
                    ),
                );
                default
            }
        }
    }

    /// Every chain's largest answer fits in the process's budget for buffered answers, or
    /// no answer of that size could ever be taken.
    fn answers_fit_the_budget(&mut self, root: &KeyPath, file: &FileConfig, budget: usize) {
        for (i, c) in file.chains.iter().enumerate() {
            let max = c
                .policy
                .max_response_bytes
                .map_or(super::defaults::MAX_RESPONSE_BYTES as u64, |v| v);
            if max > budget as u64 {
                self.fail(
                    &root.key("chains").index(i).key("policy").key("max_response_bytes"),
                    format!("{max} is more than server.max_buffered_bytes ({budget}): no answer that large could be held"),
                );
            }
        }
    }

    /// A duration of at most a day: longer is a typo, and would overflow the clock
    /// arithmetic it goes into.
    fn duration(&mut self, at: &KeyPath, value: Option<&str>, default: Duration) -> Duration {
        self.duration_within(at, value, default, MAX_DURATION)
    }

    fn duration_within(
        &mut self,
        at: &KeyPath,
        value: Option<&str>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        match value.map(humantime::parse_duration) {
            None => default,
            Some(Ok(d)) if d > max => {
                self.fail(
                    at,
                    format!(
                        "`{}` is longer than the most allowed, {}",
                        value.unwrap_or_default(),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
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
mod tests;
