//! A rig for the subscription and filter tests: one anvil behind two fault paths, and
//! Manifold in front with fast probes.

use std::time::Duration;

use serde_json::{json, Value};

use super::fault_path::FaultPath;
use super::*;

/// Probes every 250 ms: the chain head, and so the new heads, follow anvil within a second.
const FAST_PROBES: &str = "interval = \"250ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 2";

/// One anvil behind two fault paths (u0 primary, u1 secondary), and Manifold in front.
pub struct TwoPaths {
    pub anvil: Anvil,
    pub paths: Vec<FaultPath>,
    pub proxy: manifold::server::Running,
}

impl TwoPaths {
    /// Start with `server` added to the `[server]` table (further tables may follow).
    pub async fn start(server: &str) -> TwoPaths {
        let anvil = Anvil::start().await;
        let paths = vec![
            FaultPath::start(&anvil.url).await,
            FaultPath::start(&anvil.url).await,
        ];
        let urls: Vec<String> = paths.iter().map(FaultPath::url).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let chain = chain_config_with_health(&urls, "", FAST_PROBES);
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n{chain}"
        );
        let proxy = start_proxy(&toml).await;
        TwoPaths {
            anvil,
            paths,
            proxy,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/eth", self.proxy.rpc_addr)
    }

    pub async fn direct(&self, method: &str, params: Value) -> Value {
        HttpClient::new()
            .call(&self.anvil.url, method, params)
            .await
    }

    pub async fn mine(&self, blocks: u64) {
        self.direct("anvil_mine", json!([format!("{blocks:#x}")]))
            .await;
    }

    /// Wait until Manifold has followed the chain to anvil's head: blocks mined from here
    /// on reach every subscriber.
    pub async fn followed(&self) {
        let head = self.direct("eth_blockNumber", json!([])).await;
        let head = u64::from_str_radix(
            head["result"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        wait_for_status(&self.proxy, "the head followed", |s| {
            s["chains"][0]["followed"].as_u64() == Some(head)
        })
        .await;
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.proxy, series).await
    }

    /// Wait until `series` reaches `at_least`.
    pub async fn metric_reaches(&self, series: &str, at_least: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.metric(series).await < at_least {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed below {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// anvil's head.
    pub async fn head(&self) -> u64 {
        let head = self.direct("eth_blockNumber", json!([])).await;
        u64::from_str_radix(
            head["result"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap()
    }

    pub fn rpc_url(&self) -> String {
        rpc_url(&self.proxy, "/eth")
    }

    pub async fn deploy_logger(&self) -> String {
        logger::deploy(&self.anvil.url).await
    }

    /// Call the logger: the receipt.
    pub async fn emit(&self, logger: &str) -> Value {
        logger::emit(&self.anvil.url, logger).await
    }
}
