//! A rig for the subscription and filter tests: anvil behind two TCP paths (which carry the
//! upstream sockets as well as the calls), and Manifold in front with fast probes.
//!
//! Either one anvil behind both paths, or twins: two separate anvil nodes, one per path,
//! that make the same chain. Twins start from the same genesis (`--timestamp`), mine only
//! when told, and are always told the same thing (the same transactions, then blocks at
//! the same set timestamps), so their blocks have the same hashes while their state (a
//! filter, a subscription, a pool) is each its own: what a call routed to the wrong node
//! gets wrong, a test on twins sees.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::tcp_path::TcpPath;
use super::*;

/// Probes every 250 ms: the chain head, and so the new heads, follow anvil within a second.
pub const FAST_PROBES: &str = "interval = \"250ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 2";

/// One anvil behind two TCP paths (u0 primary, u1 secondary), and Manifold in front.
pub struct TwoPaths {
    pub anvil: Anvil,
    /// Twins: the node behind the second path.
    pub twin: Option<Anvil>,
    pub paths: Vec<TcpPath>,
    pub proxy: manifold::server::Running,
    /// Twins: the next block's timestamp.
    clock: AtomicU64,
}

/// The twins' genesis timestamp.
const GENESIS: u64 = 1_700_000_000;

impl TwoPaths {
    /// Start with `server` added to the `[server]` table (further tables may follow).
    pub async fn start(server: &str) -> TwoPaths {
        Self::start_with(server, FAST_PROBES, "").await
    }

    /// Start with `health` as the chain's `[chains.policy.health]` table and `upstream`
    /// added to each upstream's table.
    pub async fn start_with(server: &str, health: &str, upstream: &str) -> TwoPaths {
        Self::rig(server, health, upstream, false).await
    }

    /// Twins: two separate nodes with the same chain, one behind each path.
    pub async fn twins(server: &str) -> TwoPaths {
        Self::rig(server, FAST_PROBES, "", true).await
    }

    async fn rig(server: &str, health: &str, upstream: &str, twins: bool) -> TwoPaths {
        let (anvil, twin) = if twins {
            let args = ["--timestamp", &GENESIS.to_string(), "--no-mining"].map(String::from);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (a, b) = tokio::join!(Anvil::start_with(&args), Anvil::start_with(&args));
            (a, Some(b))
        } else {
            (Anvil::start().await, None)
        };
        let paths = vec![
            TcpPath::start(&anvil.url).await,
            TcpPath::start(&twin.as_ref().unwrap_or(&anvil).url).await,
        ];
        let urls: Vec<String> = paths.iter().map(TcpPath::url).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let chain = chain_config_with_health(&urls, "", health).replace(
            "timeout = \"2s\"\n",
            &format!("timeout = \"2s\"\n{upstream}\n"),
        );
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n{chain}"
        );
        let proxy = start_proxy(&toml).await;
        TwoPaths {
            anvil,
            twin,
            paths,
            proxy,
            clock: AtomicU64::new(GENESIS + 1),
        }
    }

    /// Every node: one, or the twins.
    fn nodes(&self) -> impl Iterator<Item = &Anvil> {
        std::iter::once(&self.anvil).chain(&self.twin)
    }

    /// Send `method` to every node: the first one's answer (the twins' are the same).
    async fn to_all(&self, method: &str, params: Value) -> Value {
        let mut answers = Vec::new();
        for node in self.nodes() {
            answers.push(
                HttpClient::new()
                    .call(&node.url, method, params.clone())
                    .await,
            );
        }
        if let Some(twin) = answers.get(1) {
            assert_eq!(
                answers[0]["result"], twin["result"],
                "the twins went apart on {method}"
            );
        }
        answers.swap_remove(0)
    }

    /// Send a transaction (from the dev account) and mine it: its receipt.
    async fn transact(&self, tx: Value) -> Value {
        if self.twin.is_none() {
            return logger::send_tx(&self.anvil.url, tx).await;
        }
        let hash = self.to_all("eth_sendTransaction", json!([tx])).await["result"].clone();
        assert!(hash.is_string(), "{hash}");
        self.mine(1).await;
        let receipt = self
            .direct("eth_getTransactionReceipt", json!([hash]))
            .await;
        assert!(receipt["result"].is_object(), "{receipt}");
        receipt["result"].clone()
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
        if self.twin.is_none() {
            self.direct("anvil_mine", json!([format!("{blocks:#x}")]))
                .await;
            return;
        }
        // The same blocks on both: set timestamps, one second apart.
        let at = self.clock.fetch_add(blocks, Ordering::SeqCst);
        self.to_all("evm_setNextBlockTimestamp", json!([format!("{at:#x}")]))
            .await;
        self.to_all("anvil_mine", json!([format!("{blocks:#x}"), "0x1"]))
            .await;
        let head = self
            .to_all("eth_getBlockByNumber", json!(["latest", false]))
            .await;
        assert!(head["result"]["hash"].is_string(), "{head}");
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
        let receipt = self
            .transact(json!({"from": logger::DEV, "data": logger::LOGGER_INIT}))
            .await;
        receipt["contractAddress"].as_str().unwrap().to_string()
    }

    /// Call the logger: the receipt.
    pub async fn emit(&self, logger: &str) -> Value {
        self.transact(json!({"from": logger::DEV, "to": logger}))
            .await
    }
}
