//! The live configuration and everything built from it, swapped as one unit.
//!
//! Requests `load()` the current snapshot once and use it to the end, so a later swap (hot
//! reload) never mixes two versions within one request (STYLE.md 6, as pingora does).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::upstream::AnswerBudget;
use crate::watch::TxStore;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
}

pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

impl Snapshot {
    /// `store`: the transaction watch's store, opened once per process.
    pub fn build(
        config: Config,
        metrics: &Arc<Metrics>,
        store: Option<&TxStore>,
        budget: &AnswerBudget,
    ) -> Result<Self, String> {
        let router = Router::new(&config, metrics, store, budget)?;
        Ok(Self {
            config: Arc::new(config),
            router,
        })
    }
}
