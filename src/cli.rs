//! The command line of PRODUCT.md §2.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "manifold",
    version,
    about = "Failover-aware JSON-RPC load-balancing proxy for blockchains",
    after_help = "Environment: MANIFOLD_CONFIG (same as --config), RUST_LOG (log filter, default info), \
                  MANIFOLD_LOG_FORMAT=json|text.\nWithout --config, the embedded default serves Ethereum \
                  mainnet on 127.0.0.1:8645 from a local node on 127.0.0.1:8545 with public fallbacks."
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, the embedded default is served.
    #[arg(long, short, env = "MANIFOLD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print it resolved, secrets redacted. Exit 0 if valid.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}
