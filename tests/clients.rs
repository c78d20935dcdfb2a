//! Real client libraries through Manifold across an upstream cut, on twin anvil nodes (two
//! separate nodes with one chain: `support::two_paths`): viem's `watchBlocks` and ethers
//! v6's `provider.on("block")` over WebSocket, and ethers' event listener and viem's
//! `watchEvent` over HTTP (an `eth_newFilter` polled with `eth_getFilterChanges`), each
//! seeing every block or log exactly once. Needs node and `.tools/node_modules` with ethers and viem (`.ci/run`
//! installs them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::two_paths::TwoPaths;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

struct Client {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

fn node_modules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules")
}

impl Client {
    /// Start `tests/js/clients.cjs` in `args`'s mode; returns once it says it is ready.
    async fn start(args: &[&str]) -> Client {
        let modules = node_modules();
        assert!(
            modules.join("ethers").is_dir() && modules.join("viem").is_dir(),
            "ethers and viem not found in {}: run `bash .ci/run` once",
            modules.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/clients.cjs");
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .env("NODE_PATH", modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = Client { child, lines };
        assert_eq!(c.line().await, "ready");
        c
    }

    async fn line(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(30), self.lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => panic!("the client said nothing more: {other:?}"),
        }
    }

    /// The next `n` lines' second words as numbers (block numbers), and their third words.
    async fn events(&mut self, n: usize) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let line = self.line().await;
            let mut words = line.split(' ').skip(1);
            let number = words.next().unwrap().parse().unwrap();
            out.push((number, words.next().unwrap_or_default().to_string()));
        }
        out
    }

    async fn exits_cleanly(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

/// Blocks mined in two rounds, the primary upstream cut between them: the client sees each
/// of them once, in order.
async fn every_block_across_a_cut(mode: &str) {
    let r = TwoPaths::twins("").await;
    r.followed().await;
    let first = r.head().await + 1;
    let mut client = Client::start(&[mode, &r.ws_url(), "10"]).await;
    // The client subscribes in the background: blocks count from its subscription on.
    r.metric_reaches(
        "manifold_ws_subscriptions{chain=\"eth\",kind=\"newHeads\"}",
        1.0,
    )
    .await;
    for i in 0..10 {
        if i == 5 {
            r.paths[0].cut().await;
        }
        r.mine(1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = client.events(10).await;
    let seen: Vec<u64> = events.into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        seen,
        (first..first + 10).collect::<Vec<_>>(),
        "every block once, in order"
    );
    client.exits_cleanly().await;
}

#[tokio::test]
async fn viem_watch_blocks_sees_every_block_once_across_an_upstream_cut() {
    every_block_across_a_cut("viem-blocks").await;
}

#[tokio::test]
async fn ethers_on_block_sees_every_block_once_across_an_upstream_cut() {
    every_block_across_a_cut("ethers-blocks").await;
}

#[tokio::test]
async fn ethers_event_listener_over_http_sees_every_log_once_across_an_upstream_cut() {
    every_log_across_a_cut("ethers-logs").await;
}

#[tokio::test]
async fn viem_watch_event_over_http_sees_every_log_once_across_an_upstream_cut() {
    every_log_across_a_cut("viem-logs").await;
}

/// Six logs, the primary upstream cut after three, on twin nodes: a filter poll sent on to
/// a node would land on the one that never made the filter.
async fn every_log_across_a_cut(mode: &str) {
    let r = TwoPaths::twins("").await;
    let logger = r.deploy_logger().await;
    r.followed().await;
    let mut client = Client::start(&[mode, &r.rpc_url(), &logger, "6"]).await;
    // Each client makes its filter at once and polls it every 250 ms (ethers on each new
    // block it sees): blocks come slower than that.
    r.metric_reaches("manifold_filters{chain=\"eth\"}", 1.0)
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut sent = Vec::new();
    for i in 0..6 {
        if i == 3 {
            r.paths[0].cut().await;
        }
        sent.push(
            r.emit(&logger).await["transactionHash"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    r.mine(1).await;
    let seen: Vec<String> = client.events(6).await.into_iter().map(|(_, h)| h).collect();
    assert_eq!(seen, sent, "every log once, in order");
    client.exits_cleanly().await;
}
