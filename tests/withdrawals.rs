//! A withdrawal service's view of an outage: 50 signed transfers sent through Manifold while
//! the network paths to the node are killed and restored one after another. One anvil node,
//! three fault paths in front of it (three providers in three failure domains), and at every
//! moment at least one path passes. The client must see no error at all, and the chain must
//! end up with exactly the 50 transfers, nonces consecutive, none lost and none doubled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use manifold::family::evm::tx::transaction_hash_hex;
use serde_json::{json, Value};
use support::fault_path::{Fault, FaultPath};
use support::*;

const SENDER: &str = ANVIL_ACCOUNT_0;
const RECIPIENT: &str = ANVIL_ACCOUNT_1;
const TRANSFERS: u64 = 50;

/// The faults a killed path shows, in turn.
fn modes() -> [Fault; 6] {
    [
        Fault::Refuse,
        Fault::Blackhole,
        Fault::Reset,
        Fault::Status503,
        Fault::Truncate,
        Fault::Delay(Duration::from_millis(1500)),
    ]
}

/// Step `i` kills path `i % 3`; each round of three steps uses the next mode, so that every
/// path meets every mode.
fn schedule(i: u64) -> (usize, Fault) {
    let modes = modes();
    let path = (i % 3) as usize;
    let mode = modes[(i / 3) as usize % modes.len()].clone();
    (path, mode)
}

/// Three upstreams, one per path, in three failure domains; probed every 200 ms, taken out
/// after one failed probe and back after one good one. (A probe's timeout may not exceed the
/// interval: 200 ms is ample for a local node.) `max_lag_blocks`: Manifold's default (3)
/// when `None`.
fn config(urls: &[String], max_lag_blocks: Option<u64>) -> String {
    let tiers = ["primary", "secondary", "secondary"];
    let domains = ["a", "b", "c"];
    let mut s = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (i, url) in urls.iter().enumerate() {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"{url}\"\ntier = \"{}\"\n\
             failure_domain = \"{}\"\ntimeout = \"1s\"\n",
            tiers[i], domains[i]
        ));
    }
    s.push_str("[chains.policy]\nrequest_timeout = \"10s\"\n");
    if let Some(lag) = max_lag_blocks {
        s.push_str(&format!("max_lag_blocks = {lag}\n"));
    }
    s.push_str(
        "[chains.policy.health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nrise = 1\nfall = 1\n",
    );
    s
}

/// An account's nonce or balance (`method`) at the latest block, asked of the node directly.
async fn on_chain(direct: &HttpClient, node: &str, method: &str, account: &str) -> u128 {
    hex_u128(&direct.call(node, method, json!([account, "latest"])).await["result"])
}

/// The client's view of one call: its result, or what it got instead.
async fn call(c: &HttpClient, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (status, text) = c.post(url, body.to_string()).await;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("HTTP {status}: {e}: {text}"))?;
    match v.get("result") {
        Some(r) if status == 200 && v.get("error").is_none() => Ok(r.clone()),
        _ => Err(format!("HTTP {status}: {text}")),
    }
}

/// What the client saw go wrong, with the faults active and Manifold's view of the
/// upstreams at that moment.
struct Trouble {
    seen: Vec<String>,
}

impl Trouble {
    async fn note(&mut self, proxy: &manifold::server::Running, what: String, active: &[Fault]) {
        let (_, status) = HttpClient::new().get(&admin_url(proxy, "/status")).await;
        let status: Value = serde_json::from_str(&status).unwrap();
        let view: Vec<String> = ["u0", "u1", "u2"]
            .iter()
            .map(|u| {
                let s = upstream_status(&status, u);
                format!(
                    "{u}: {} head {} lag {} usable {}",
                    s["status"], s["head"], s["lag"], s["usable"]
                )
            })
            .collect();
        self.seen.push(format!(
            "{what}\n    paths: {active:?}\n    manifold: {view:?}, chain head {}",
            status["chains"][0]["head"]
        ));
    }
}

/// A call through Manifold as a withdrawal service makes it: an error is noted, and the very
/// same call repeated after 100 ms (at most 30 times), which is safe for a read and for a
/// signed transaction alike. The run goes on, so that every error of it is seen.
async fn through(
    trouble: &mut Trouble,
    proxy: &manifold::server::Running,
    active: &[Fault],
    step: u64,
    method: &str,
    params: Value,
) -> Value {
    let c = HttpClient::new();
    let url = rpc_url(proxy, "/eth");
    for _ in 0..30 {
        match call(&c, &url, method, params.clone()).await {
            Ok(v) => return v,
            Err(e) => {
                let what = format!("step {step}: {method}: {e}");
                trouble.note(proxy, what, active).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!(
        "step {step}: {method} failed 30 times:\n{}",
        trouble.seen.join("\n")
    );
}

/// When the next path is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// At once: the path restored a moment ago may not have been probed again yet.
    Immediate,
    /// Once Manifold has seen the restored path healthy again: a path is out for longer
    /// than a probe interval, as in a real outage.
    AfterRecovery,
}

/// Each path is out until Manifold has noticed that it is back (about a probe interval)
/// before the next is killed, as in a real outage, on a config fit for this chain: anvil
/// mines a block per transfer, up to tens of blocks a second, so `max_lag_blocks` is sized
/// as for a fast chain (the README suggests 20-50 there).
#[tokio::test]
async fn fifty_withdrawals_while_paths_fail_one_at_a_time() {
    run(Pace::AfterRecovery, Some(50)).await;
}

/// Paths killed and restored as fast as the withdrawals go: a path restored a moment ago
/// is still `unhealthy` until its next probe, and the one upstream Manifold holds healthy
/// may be the next to fail. Such upstreams are then tried as a last resort rather than
/// failing the call. `max_lag_blocks` is sized for this chain as for any fast chain: anvil
/// mines a block per transfer, and heads probed 200 ms apart differ by several blocks.
#[tokio::test]
async fn fifty_withdrawals_while_paths_are_killed_and_restored() {
    run(Pace::Immediate, Some(50)).await;
}

async fn run(pace: Pace, max_lag_blocks: Option<u64>) {
    let run = withdrawals(pace, max_lag_blocks);
    let trouble = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the withdrawals did not finish within 120s");
    assert!(
        trouble.is_empty(),
        "the client saw {} errors:\n{}",
        trouble.len(),
        trouble.join("\n")
    );
}

/// The run; what the client saw go wrong.
async fn withdrawals(pace: Pace, max_lag_blocks: Option<u64>) -> Vec<String> {
    let anvil = Anvil::start().await;
    let paths = [
        FaultPath::start(&anvil.url).await,
        FaultPath::start(&anvil.url).await,
        FaultPath::start(&anvil.url).await,
    ];
    let urls: Vec<String> = paths.iter().map(FaultPath::url).collect();
    let proxy = start_proxy(&config(&urls, max_lag_blocks)).await;
    wait_for_status(&proxy, "all three healthy", |s| {
        ["u0", "u1", "u2"]
            .iter()
            .all(|u| upstream_status(s, u)["status"] == "healthy")
    })
    .await;

    let direct = HttpClient::new();
    let start_nonce = on_chain(&direct, &anvil.url, "eth_getTransactionCount", SENDER).await;
    let balance_before = on_chain(&direct, &anvil.url, "eth_getBalance", RECIPIENT).await;

    let mut trouble = Trouble { seen: Vec::new() };
    let mut active = vec![Fault::Pass; 3];
    let mut hashes = Vec::new();
    let mut killed: Option<usize> = None;
    for i in 0..TRANSFERS {
        // Restore the path killed last, then kill the next: one path down at a time.
        if let Some(k) = killed {
            paths[k].set(Fault::Pass).await;
            active[k] = Fault::Pass;
            if pace == Pace::AfterRecovery {
                let name = format!("u{k}");
                wait_for_status(&proxy, &format!("{name} back"), |s| {
                    upstream_status(s, &name)["status"] == "healthy"
                })
                .await;
            }
        }
        let (k, fault) = schedule(i);
        paths[k].set(fault.clone()).await;
        active[k] = fault;
        killed = Some(k);

        let nonce = through(
            &mut trouble,
            &proxy,
            &active,
            i,
            "eth_getTransactionCount",
            json!([SENDER, "pending"]),
        )
        .await;
        assert_eq!(
            hex_u128(&nonce),
            start_nonce + u128::from(i),
            "step {i}: every earlier transfer is in"
        );
        // The wallet signs; the proxy only relays.
        let signed = direct
            .call(
                &anvil.url,
                "eth_signTransaction",
                transfer_to_sign(hex_u128(&nonce)),
            )
            .await;
        let raw = signed["result"]
            .as_str()
            .unwrap_or_else(|| panic!("step {i}: signing: {signed}"))
            .to_string();
        let hash = through(
            &mut trouble,
            &proxy,
            &active,
            i,
            "eth_sendRawTransaction",
            json!([raw]),
        )
        .await;
        let hash = hash.as_str().unwrap_or_default().to_string();
        assert!(
            hash.len() == 66
                && hash.starts_with("0x")
                && hash[2..].bytes().all(|b| b.is_ascii_hexdigit()),
            "step {i}: not a transaction hash: {hash}"
        );
        assert_eq!(hash, transaction_hash_hex(&raw).unwrap(), "step {i}");
        hashes.push(hash);
    }
    for p in &paths {
        p.set(Fault::Pass).await;
    }

    // What the chain says, asked of the node directly, once every transfer is mined.
    for (i, hash) in hashes.iter().enumerate() {
        let tx = direct
            .call(&anvil.url, "eth_getTransactionByHash", json!([hash]))
            .await;
        assert_eq!(tx["result"]["hash"], *hash, "{tx}");
        assert_eq!(
            hex_u128(&tx["result"]["nonce"]),
            start_nonce + i as u128,
            "nonces are consecutive: {tx}"
        );
        // anvil mines each transaction as it arrives, but asynchronously.
        let mut receipt = Value::Null;
        for _ in 0..100 {
            receipt = direct
                .call(&anvil.url, "eth_getTransactionReceipt", json!([hash]))
                .await;
            if !receipt["result"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(receipt["result"]["status"], "0x1", "{receipt}");
    }
    let end_nonce = on_chain(&direct, &anvil.url, "eth_getTransactionCount", SENDER).await;
    assert_eq!(
        end_nonce,
        start_nonce + u128::from(TRANSFERS),
        "the nonce moved by exactly the transfers"
    );
    let balance_after = on_chain(&direct, &anvil.url, "eth_getBalance", RECIPIENT).await;
    assert_eq!(balance_after - balance_before, u128::from(TRANSFERS));
    let forwarded: Vec<usize> = paths.iter().map(FaultPath::forwarded).collect();
    assert!(
        forwarded.iter().all(|f| *f > 0),
        "every path carried traffic: {forwarded:?}"
    );

    // The faults were met: every upstream had attempts fail, and the client never knew.
    let status = wait_for_status(&proxy, "status", |_| true).await;
    for u in ["u0", "u1", "u2"] {
        let s = upstream_status(&status, u);
        assert!(s["failures"].as_u64().unwrap() > 0, "{s}");
    }
    trouble.seen
}
