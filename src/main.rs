//! The `manifold` binary: parse the command line, load the config, run until a signal.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use manifold::cli::{Cli, Command};
use manifold::config::Config;
use manifold::logging::{self, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    let format = match LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("manifold: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(format);
    manifold::allocator::tune();
    let config = match &cli.config {
        Some(path) => Config::from_file(path),
        None => Config::embedded_default(),
    };
    let config = match config {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("manifold: invalid configuration:\n{errors}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("manifold: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    // Watched before the listeners open: a SIGHUP (or SIGTERM) that arrives as soon as the
    // process says it listens must find its handler, not the default action (exit).
    let signals = StopSignals::watch();
    let running = match manifold::server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("manifold: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down: draining in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT stop the process. SIGHUP, which operators send to reload, must not
/// kill it (its default action): until hot reload exists it is logged and ignored.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn watch() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate())
            .map_err(
                |e| tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only"),
            )
            .ok();
        let hup = signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot watch SIGHUP"))
            .ok();
        Self { term, hup }
    }

    async fn wait(mut self) -> &'static str {
        loop {
            tokio::select! {
                Some(()) = async { match &mut self.term { Some(t) => t.recv().await, None => std::future::pending().await } } => return "SIGTERM",
                _ = tokio::signal::ctrl_c() => return "SIGINT",
                Some(()) = async { match &mut self.hup { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::warn!("SIGHUP: reloading the configuration is not supported yet in this version; still serving the configuration loaded at start");
                }
            }
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::from_file(file) {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            let shown = match toml::to_string_pretty(&config.redacted()) {
                Ok(s) => s,
                Err(e) => format!("# cannot render as TOML ({e})\n{:#}", config.redacted()),
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "# {}: valid\n{shown}", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
