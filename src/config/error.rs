//! Configuration errors: every one names the file, the key path and what is wrong.

use std::fmt;

/// Where in which file a value sits: `config.toml` + `chains[0].upstreams[1].url`.
#[derive(Debug, Clone)]
pub struct KeyPath {
    file: String,
    path: String,
}

impl KeyPath {
    pub fn root(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            path: String::new(),
        }
    }

    pub fn key(&self, k: &str) -> Self {
        let path = if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        };
        Self {
            file: self.file.clone(),
            path,
        }
    }

    pub fn index(&self, i: usize) -> Self {
        Self {
            file: self.file.clone(),
            path: format!("{}[{i}]", self.path),
        }
    }

    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: self.path.clone(),
            reason: reason.into(),
        }
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Dotted key path (`chains[0].upstreams[1].url`); empty for the file as a whole.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.reason)
        }
    }
}

/// Everything wrong with a configuration, reported together so that one run of
/// `check-config` shows every problem.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
