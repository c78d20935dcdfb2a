//! Logging setup: `RUST_LOG`-style filter (default `info`), text or JSON lines
//! (`MANIFOLD_LOG_FORMAT=json|text`), always to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// From `MANIFOLD_LOG_FORMAT`; anything but `json` is text.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("MANIFOLD_LOG_FORMAT").as_deref() {
            Err(_) | Ok("") | Ok("text") => Ok(LogFormat::Text),
            Ok("json") => Ok(LogFormat::Json),
            Ok(other) => Err(format!(
                "MANIFOLD_LOG_FORMAT: `{other}` is not a log format (json or text)"
            )),
        }
    }
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
