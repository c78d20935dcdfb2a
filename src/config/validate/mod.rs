//! Turning a configuration file into a [`Config`]: parse, interpolate, check every value.
//!
//! `load` parses and interpolates; the `Validator` checks each section (`server`, `chain`,
//! `policy`, `upstream`), collecting every error with its key path, and the value helpers
//! here (counts, shares, durations, addresses) word the errors the same way everywhere.

mod chain;
mod policy;
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
