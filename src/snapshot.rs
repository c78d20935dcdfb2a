//! The live configuration and everything built from it, swapped as one unit.
//!
//! Requests `load()` the current snapshot once and use it to the end, so a later swap (hot
//! reload) never mixes two versions within one request (STYLE.md 6, as pingora does).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::chain::Shared;
use crate::config::Config;
use crate::router::Router;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
}

pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

impl Snapshot {
    /// `shared`: what the process's chains share, made once per process.
    pub fn build(config: Config, shared: &Shared) -> Result<Self, String> {
        let router = Router::new(&config, shared)?;
        Ok(Self {
            config: Arc::new(config),
            router,
        })
    }
}
