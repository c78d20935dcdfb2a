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
            "bitcoin" => Some(Family::Bitcoin),
            f @ "solana" => {
                self.fail(
                    &at.key("family"),
                    format!("`{f}` is not supported yet in this version (supported: evm, bitcoin)"),
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
        let genesis_hash = self.genesis_hash(at, family, c);
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
            genesis_hash,
            upstreams,
            policy,
        })
    }

    /// `genesis_hash`: required for a bitcoin chain (its identity, checked on every probe),
    /// not taken for an evm one (`chain_id` is); `chain_id` is not taken for bitcoin.
    fn genesis_hash(
        &mut self,
        at: &KeyPath,
        family: Option<Family>,
        c: &FileChain,
    ) -> Option<String> {
        match (family, &c.genesis_hash) {
            (Some(Family::Bitcoin), hash) => {
                if c.chain_id.is_some() {
                    self.fail(
                        &at.key("chain_id"),
                        "not taken for a bitcoin chain: its identity is genesis_hash",
                    );
                }
                let Some(hash) = hash else {
                    self.fail(
                        &at.key("genesis_hash"),
                        "required for a bitcoin chain (every upstream's block 0 must be it), e.g. 000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f for mainnet",
                    );
                    return None;
                };
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.fail(
                        &at.key("genesis_hash"),
                        format!("`{hash}` is not a block hash (64 hex digits)"),
                    );
                    return None;
                }
                Some(hash.to_ascii_lowercase())
            }
            (Some(Family::Evm), Some(_)) => {
                self.fail(
                    &at.key("genesis_hash"),
                    "not taken for an evm chain: its identity is chain_id",
                );
                None
            }
            _ => None,
        }
    }
}
