//! The cloud-outage drill: the incident Manifold exists for (15 April 2025: one cloud's data
//! centre down, withdrawals stalled), re-enacted with real network separation.
//!
//! Three "clouds" are Linux network namespaces, each joined to the host by a veth pair with
//! its own private /30, each running a provider path (`examples/fault_path.rs`, the tests'
//! fault-injecting forwarder) in front of one real anvil node on the host. Manifold runs on
//! the host with one upstream per cloud, each its own failure domain. A stream of 200 signed
//! withdrawals (consecutive nonces) and reads runs through it while:
//! - one whole cloud is cut (its link set down: packets vanish, open connections hang), then
//!   comes back;
//! - every provider answers sends with the right hash but never passes them on (its node
//!   took them, then its region died), for a while; the transaction watch must land them.
//!
//! Asserted: 200/200 mined exactly once (consecutive nonces, the exact balance), zero
//! client-visible errors, a `pending` nonce that never goes back, `/readyz` and `/status`
//! ready throughout. The withdrawal answers' p50/p99 are printed. The namespaces are removed
//! whatever happens (a drop guard, which also clears leftovers of an earlier run); the drill
//! skips with a message only where namespaces cannot be made (not root, no `ip`).
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

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

const WITHDRAWALS: usize = 200;
const CUT_AT: usize = 50;
const RESTORE_AT: usize = 100;
const SWALLOW_FROM: usize = 130;
const SWALLOW_UNTIL: usize = 160;
/// The veth pairs' addresses: 10.213.{cloud}.1 on the host, .2 in the cloud.
const NET: &str = "10.213";
/// Every namespace and host link this drill makes starts with this.
const PREFIX: &str = "mfd";

/// Runs `ip` with `args`; its error output on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The three clouds' namespaces and veth pairs; removed on drop, whatever happened.
struct Clouds {
    tag: String,
}

impl Clouds {
    fn ns(&self, cloud: usize) -> String {
        format!("{PREFIX}{}c{cloud}", self.tag)
    }

    fn host_link(&self, cloud: usize) -> String {
        format!("{PREFIX}{}h{cloud}", self.tag)
    }

    /// Leftovers of an earlier run that could not clean up (killed): its namespaces (their
    /// veth ends, and so the pairs, go with them).
    fn clear_leftovers() {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output();
        let Ok(out) = out else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with(PREFIX) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }

    fn make() -> Result<Clouds, String> {
        Self::clear_leftovers();
        let clouds = Clouds {
            tag: format!("{:04x}", std::process::id() & 0xffff),
        };
        for c in 1..=3 {
            let (ns, host) = (clouds.ns(c), clouds.host_link(c));
            let inner = clouds.inner_link(c);
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["addr", "add", &format!("{NET}.{c}.1/30"), "dev", &host])?;
            ip(&["link", "set", &host, "up"])?;
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            in_ns(&["addr", "add", &format!("{NET}.{c}.2/30"), "dev", &inner])?;
            in_ns(&["link", "set", &inner, "up"])?;
            in_ns(&["link", "set", "lo", "up"])?;
        }
        Ok(clouds)
    }

    fn inner_link(&self, cloud: usize) -> String {
        format!("{PREFIX}{}i{cloud}", self.tag)
    }

    /// Cut a cloud off (`false`): the link inside it goes down. The host's end stays up
    /// without a carrier, so its route stays and packets sent to the cloud vanish: open
    /// connections hang and new ones never complete, as when a data centre drops off the
    /// network (not a refused connection).
    fn link(&self, cloud: usize, up: bool) {
        ip(&[
            "netns",
            "exec",
            &self.ns(cloud),
            "ip",
            "link",
            "set",
            &self.inner_link(cloud),
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }
}

impl Drop for Clouds {
    fn drop(&mut self) {
        for c in 1..=3 {
            let _ = ip(&["netns", "del", &self.ns(c)]);
            let _ = ip(&["link", "del", &self.host_link(c)]);
        }
    }
}

/// Whether this machine lets the drill make namespaces; why not, when it does not.
fn namespaces_possible() -> Result<(), String> {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Err(format!("not root (uid {uid})"));
    }
    let probe = format!("{PREFIX}probe{}", std::process::id() & 0xff);
    ip(&["netns", "add", &probe])?;
    ip(&["netns", "del", &probe])
}

/// The forwarder example, built beside the tests (`cargo build --examples`).
fn forwarder_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FAULT_PATH_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/drill-<hash> -> target/<profile>/examples/fault_path
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("fault_path"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --examples` first (.ci/run does), or set FAULT_PATH_BIN",
        bin.display()
    );
    bin
}

/// One provider path, running inside its cloud's namespace.
struct Provider {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Provider {
    async fn start(ns: &str, listen: &str, target: &str) -> Provider {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(forwarder_bin())
            .args(["--listen", listen, "--target", target])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("the provider path did not start");
        assert!(
            first
                .as_ref()
                .unwrap()
                .as_deref()
                .unwrap_or_default()
                .starts_with("listening on"),
            "{first:?}"
        );
        Provider {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// Switch mode; returns once the path has.
    async fn set(&mut self, mode: &str) {
        self.stdin
            .write_all(format!("{mode}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.as_deref(), Some(format!("mode {mode}").as_str()));
    }
}

fn config(urls: &[String]) -> String {
    let mut s = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (i, url) in urls.iter().enumerate() {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"cloud-{c}\"\nurl = \"{url}\"\nfailure_domain = \"cloud-{c}\"\n\
             timeout = \"1s\"\nconnect_timeout = \"500ms\"\n",
            c = i + 1
        ));
    }
    // anvil mines a block per transaction: a fast chain's max_lag_blocks.
    s.push_str(
        "[chains.policy]\nrequest_timeout = \"10s\"\nmax_lag_blocks = 50\n\
         [chains.policy.broadcast]\nrebroadcast_after = \"2s\"\nfinality_depth = 3\n\
         [chains.policy.health]\ninterval = \"300ms\"\ntimeout = \"300ms\"\nrise = 1\nfall = 1\n",
    );
    s
}

async fn quantity(c: &HttpClient, url: &str, method: &str, params: Value) -> Result<u128, String> {
    let v = c.call(url, method, params).await;
    match v.get("result") {
        Some(r) if r.is_string() => Ok(hex_u128(r)),
        _ => Err(format!("{method}: {v}")),
    }
}

#[tokio::test]
async fn a_whole_cloud_dies_and_every_withdrawal_lands_once() {
    if let Err(why) = namespaces_possible() {
        eprintln!("SKIPPED: the cloud-outage drill needs to make network namespaces: {why}");
        return;
    }
    let clouds = Clouds::make().unwrap();
    let hosts: Vec<String> = (1..=3).map(|c| format!("{NET}.{c}.1")).collect();
    let mut anvil_args = Vec::new();
    for h in &hosts {
        anvil_args.extend(["--host", h.as_str()]);
    }
    let anvil = Anvil::start_with(&anvil_args).await;
    let mut providers = Vec::new();
    let mut urls = Vec::new();
    for c in 1..=3 {
        let node = anvil
            .addrs
            .iter()
            .find(|a| a.starts_with(&format!("{NET}.{c}.1:")))
            .unwrap_or_else(|| panic!("anvil does not listen for cloud {c}: {:?}", anvil.addrs));
        let listen = format!("{NET}.{c}.2:8545");
        providers.push(Provider::start(&clouds.ns(c), &listen, &format!("http://{node}")).await);
        urls.push(format!("http://{listen}"));
    }
    let proxy = start_proxy(&config(&urls)).await;
    wait_for_status(&proxy, "every cloud healthy", |s| {
        (1..=3).all(|c| upstream_status(s, &format!("cloud-{c}"))["status"] == "healthy")
    })
    .await;

    let direct = HttpClient::new();
    let url = rpc_url(&proxy, "/eth");
    let start_nonce = account_quantity(
        &direct,
        &anvil.url,
        "eth_getTransactionCount",
        ANVIL_ACCOUNT_0,
    )
    .await;
    let balance_before =
        account_quantity(&direct, &anvil.url, "eth_getBalance", ANVIL_ACCOUNT_1).await;
    // Signed by the wallet (anvil) beforehand; Manifold only relays.
    let mut signed = Vec::new();
    for i in 0..WITHDRAWALS {
        let raw = signed_transfer(&direct, &anvil.url, start_nonce + i as u128).await;
        let hash = manifold::family::evm::tx::transaction_hash_hex(&raw).unwrap();
        signed.push((raw, hash));
    }

    let client = HttpClient::new();
    let mut errors: Vec<String> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let started = Instant::now();
    for (i, (raw, hash)) in signed.iter().enumerate() {
        match i {
            CUT_AT => clouds.link(2, false),
            RESTORE_AT => {
                // The cut was real: Manifold sees the cloud go (its probes time out), however
                // fast the withdrawals since the cut went.
                wait_for_status(&proxy, "cloud 2 seen cut", |s| {
                    upstream_status(s, "cloud-2")["status"] == "unhealthy"
                })
                .await;
                clouds.link(2, true);
            }
            SWALLOW_FROM => {
                for p in &mut providers {
                    p.set("swallow").await;
                }
            }
            SWALLOW_UNTIL => {
                // Swallowed long enough for the watch to try again, and be swallowed again.
                tokio::time::sleep(Duration::from_secs(3)).await;
                for p in &mut providers {
                    p.set("pass").await;
                }
            }
            _ => {}
        }
        let sent_at = Instant::now();
        let v = client
            .call(&url, "eth_sendRawTransaction", json!([raw]))
            .await;
        latencies.push(sent_at.elapsed());
        if v["result"] != *hash {
            errors.push(format!("withdrawal {i}: {v}"));
        }
        // The wallet's next nonce: never below what it has just sent, whichever node answers.
        match quantity(
            &client,
            &url,
            "eth_getTransactionCount",
            json!([ANVIL_ACCOUNT_0, "pending"]),
        )
        .await
        {
            Ok(n) if n > start_nonce + i as u128 => {}
            Ok(n) => errors.push(format!(
                "withdrawal {i}: pending nonce {n}, sent {}",
                start_nonce + i as u128
            )),
            Err(e) => errors.push(format!("withdrawal {i}: {e}")),
        }
        if let Err(e) = quantity(
            &client,
            &url,
            "eth_getBalance",
            json!([ANVIL_ACCOUNT_1, "latest"]),
        )
        .await
        {
            errors.push(format!("read {i}: {e}"));
        }
        if i % 10 == 0 {
            let (status, text) = client.get(&admin_url(&proxy, "/readyz")).await;
            if status != 200 {
                errors.push(format!("step {i}: /readyz {status} {text}"));
            }
            let (_, text) = client.get(&admin_url(&proxy, "/status")).await;
            let status: Value = serde_json::from_str(&text).unwrap();
            if status["chains"][0]["ready"] != true {
                errors.push(format!("step {i}: /status not ready: {text}"));
            }
        }
    }
    let stream_took = started.elapsed();

    // Every withdrawal lands: the swallowed ones by the watch's rebroadcasts.
    let want = start_nonce + WITHDRAWALS as u128;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mined = account_quantity(
            &direct,
            &anvil.url,
            "eth_getTransactionCount",
            ANVIL_ACCOUNT_0,
        )
        .await;
        if mined >= want {
            assert_eq!(mined, want, "more transactions mined than sent");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {WITHDRAWALS} withdrawals mined after 90s; errors: {errors:?}",
            mined - start_nonce
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, (_, hash)) in signed.iter().enumerate() {
        let r = direct
            .call(&anvil.url, "eth_getTransactionReceipt", json!([hash]))
            .await;
        assert_eq!(
            r["result"]["status"], "0x1",
            "withdrawal {i} ({hash}) not mined: {r}"
        );
    }
    let balance_after =
        account_quantity(&direct, &anvil.url, "eth_getBalance", ANVIL_ACCOUNT_1).await;
    assert_eq!(
        balance_after - balance_before,
        WITHDRAWALS as u128,
        "1 wei each, exactly once"
    );
    let (_, metrics) = client.get(&admin_url(&proxy, "/metrics")).await;
    let rebroadcasts: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("manifold_rebroadcasts_total{chain=\"eth\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        rebroadcasts >= 1.0,
        "the swallowed withdrawals were landed by the watch"
    );

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    eprintln!(
        "drill: {WITHDRAWALS} withdrawals in {:.1}s, answer p50 {:?}, p99 {:?}, max {:?}; {rebroadcasts} watch rebroadcast rounds",
        stream_took.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap()
    );
    assert!(
        errors.is_empty(),
        "the client saw {} errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
    wait_for_status(&proxy, "cloud 2 back", |s| {
        upstream_status(s, "cloud-2")["status"] == "healthy"
    })
    .await;
    proxy.shutdown().await;
    drop(providers);
    drop(clouds);
}
