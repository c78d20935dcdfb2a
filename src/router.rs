//! Which chain a request is for: `POST /{chain}`, or `POST /` when only one chain is served.

use std::collections::HashMap;
use std::sync::Arc;

use crate::chain::{Chain, Shared};
use crate::config::Config;

#[derive(Debug)]
pub struct Router {
    chains: Vec<Arc<Chain>>,
    by_name: HashMap<Arc<str>, Arc<Chain>>,
}

impl Router {
    pub fn new(config: &Config, shared: &Shared) -> Result<Self, String> {
        let chains = config
            .chains
            .iter()
            .map(|c| Chain::new(c.clone(), shared).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let by_name = chains
            .iter()
            .map(|c| (c.name().clone(), c.clone()))
            .collect();
        Ok(Self { chains, by_name })
    }

    /// The chain for a request path, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<Chain>> {
        let name = path.trim_matches('/');
        if name.is_empty() {
            return match self.chains.as_slice() {
                [only] => Some(only),
                _ => None,
            };
        }
        self.by_name.get(name)
    }

    pub fn chains(&self) -> &[Arc<Chain>] {
        &self.chains
    }

    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&Arc<Chain>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.chains.iter().map(|c| &**c.name()).collect()
    }
}
