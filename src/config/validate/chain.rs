//! `[[chains]]`: names, family, identity, and the upstreams' failure domains.

use std::collections::HashSet;
use std::sync::Arc;

use super::Validator;
use crate::config::error::KeyPath;
use crate::config::file::FileChain;
use crate::config::{ChainConfig, Family};

impl Validator {
    pub(super) fn chains(&mut self, root: &KeyPath, chains: &[FileChain]) -> Vec<ChainConfig> {
        if chains.is_empty() {
            self.fail(
                &root.key("chains"),
                "at least one [[chains]] entry is required",
            );
        }
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in chains.iter().enumerate() {
            let at = root.key("chains").index(i);
            if !names.insert(c.name.clone()) {
                self.fail(
                    &at.key("name"),
                    format!("duplicate chain name `{}`", c.name),
                );
            }
            if let Some(chain) = self.chain(&at, c) {
                out.push(chain);
            }
        }
        out
    }

    fn chain(&mut self, at: &KeyPath, c: &FileChain) -> Option<ChainConfig> {
        let name_ok = !c.name.is_empty()
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !name_ok {
            self.fail(
                &at.key("name"),
                format!(
                    "`{}` cannot be a URL path segment: use letters, digits, `-` and `_`",
                    c.name
                ),
            );
        }
        let family = match c.family.as_deref().unwrap_or("evm") {
            "evm" => Some(Family::Evm),
            f @ ("solana" | "bitcoin") => {
                self.fail(
                    &at.key("family"),
                    format!("`{f}` is not supported yet in this version (supported: evm)"),
                );
                None
            }
            other => {
                self.fail(
                    &at.key("family"),
                    format!("unknown family `{other}`, expected one of evm, solana, bitcoin"),
                );
                None
            }
        };
        if family == Some(Family::Evm) && c.chain_id.is_none() {
            self.fail(
                &at.key("chain_id"),
                "required for an evm chain (every upstream must report it)",
            );
        }
        if c.upstreams.is_empty() {
            self.fail(
                &at.key("upstreams"),
                "at least one [[chains.upstreams]] entry is required",
            );
        }
        let policy = self.policy(&at.key("policy"), &c.policy);
        let mut names = HashSet::new();
        let mut upstreams = Vec::new();
        for (i, u) in c.upstreams.iter().enumerate() {
            let uat = at.key("upstreams").index(i);
            if !names.insert(u.name.clone()) {
                self.fail(
                    &uat.key("name"),
                    format!("duplicate upstream name `{}`", u.name),
                );
            }
            if let Some(u) = self.upstream(&uat, u) {
                upstreams.push(u);
            }
        }
        let domains: HashSet<&str> = upstreams
            .iter()
            .map(|u| u.failure_domain.as_str())
            .collect();
        if domains.len() == 1 {
            if let Some(d) = domains.iter().next() {
                self.warnings.push(format!(
                    "chain `{}`: every upstream is in failure domain `{d}`; losing it stops the chain (add an upstream elsewhere)",
                    c.name
                ));
            }
        }
        Some(ChainConfig {
            name: Arc::from(c.name.as_str()),
            family: family?,
            chain_id: c.chain_id,
            upstreams,
            policy,
        })
    }
}
