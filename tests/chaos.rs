//! The chaos suite: Manifold in front of one real anvil node reached through three fault
//! paths (three providers), two of them in one failure domain (`cloud-a`: u0, u1) and one in
//! another (`cloud-b`: u2). While a steady stream of mixed reads (single calls and batches)
//! and signed transfers runs through Manifold, paths are made to fail: every fault mode on
//! one path, two paths at once, a whole failure domain, a flapping path, and every path
//! followed by one recovering.
//!
//! Each scenario checks the same four things:
//! - no client-visible failure (a non-200, a JSON-RPC error, a wrong or missing result, no
//!   answer in time) while at least one path passes; while none passes, only Manifold's own
//!   clean JSON-RPC errors, within the request timeout;
//! - every transfer mined exactly once: nonces consecutive, the recipient's balance and the
//!   sender's nonce moved by exactly the number of transfers;
//! - `/status` and `/readyz` tell the truth: a faulted path is shown out, the passing ones
//!   in, ready while one passes and not ready when none does, all back after the restore;
//! - no unbounded growth: after the scenario the runtime's live tasks, the paths' open
//!   connections and Manifold's in-flight counts are back near their warm-up values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use manifold::family::evm::tx::transaction_hash_hex;
use manifold::server::Running;
use serde_json::{json, Value};
use support::fault_path::{Fault, FaultPath};
use support::{
    admin_url, hex_u128, rpc_url, start_proxy, transfer_to_sign, upstream_status, wait_for_status,
    Anvil, ANVIL_ACCOUNT_0, ANVIL_ACCOUNT_1,
};
use tokio::task::JoinSet;
use tokio::time::Instant;

const SENDER: &str = ANVIL_ACCOUNT_0;
const RECIPIENT: &str = ANVIL_ACCOUNT_1;
const UPSTREAMS: [&str; 3] = ["u0", "u1", "u2"];
const DOMAINS: [&str; 3] = ["cloud-a", "cloud-a", "cloud-b"];
/// Sized as for a fast chain: anvil mines a block per transfer.
const MAX_LAG_BLOCKS: u64 = 50;
/// The chain's `request_timeout`: no call may take longer, whatever the paths do.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client waits before it calls an answer missing: the request timeout and a
/// margin for a loaded machine.
const CLIENT_PATIENCE: Duration = Duration::from_secs(8);
/// A whole scenario, set-up and checks included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// Tasks the runtime may have gained between warm-up and the end: kept-alive connections
/// (client to Manifold, Manifold to the paths, the paths to anvil) may be more after a burst
/// of failovers and hedges than at warm-up. A leak per request or per failed attempt is
/// hundreds.
const TASK_SLACK: usize = 64;
/// Connections the three paths may hold open at the end, all from Manifold's pools.
const CONNECTION_LIMIT: usize = 60;

/// The three upstreams, all `primary` so that every path carries traffic. Probed every
/// 250 ms, out after two failed probes (one slow probe on a loaded machine changes nothing),
/// back after one good one. Breakers open for 500 ms at first, at most 2 s, so that a path
/// restored after a long fault is back within seconds.
fn config(urls: &[String]) -> String {
    let mut s = String::from("[[chains]]\nname = \"eth\"\nchain_id = 31337\n");
    for (i, url) in urls.iter().enumerate() {
        s.push_str(&format!(
            "[[chains.upstreams]]\nname = \"{}\"\nurl = \"{url}\"\ntier = \"primary\"\n\
             failure_domain = \"{}\"\ntimeout = \"1s\"\n",
            UPSTREAMS[i], DOMAINS[i]
        ));
    }
    s.push_str(&format!(
        "[chains.policy]\nrequest_timeout = \"{}s\"\nmax_lag_blocks = {MAX_LAG_BLOCKS}\n\
         [chains.policy.breaker]\nopen_duration = \"500ms\"\nmax_open_duration = \"2s\"\n\
         [chains.policy.health]\ninterval = \"250ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 2\n",
        REQUEST_TIMEOUT.as_secs()
    ));
    s
}

// ---------------------------------------------------------------------------------------
// the rig: anvil, three paths, Manifold

struct Rig {
    anvil: Anvil,
    paths: Vec<FaultPath>,
    proxy: Running,
    /// What each path does now, for failure reports.
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl Rig {
    async fn start() -> Rig {
        let anvil = Anvil::start().await;
        // Enough history that a path lagging far behind is still above block 0.
        let direct = Raw::new();
        direct
            .call(&anvil.url, "anvil_mine", json!(["0x100"]))
            .await;
        let mut paths = Vec::new();
        for _ in UPSTREAMS {
            paths.push(FaultPath::start(&anvil.url).await);
        }
        let urls: Vec<String> = paths.iter().map(FaultPath::url).collect();
        let proxy = start_proxy(&config(&urls)).await;
        let rig = Rig {
            anvil,
            paths,
            proxy,
            faults: Arc::new(Mutex::new(vec![Fault::Pass; UPSTREAMS.len()])),
        };
        rig.wait_truth("every path in", &[]).await;
        rig
    }

    async fn set(&self, path: usize, fault: Fault) {
        self.faults.lock().unwrap()[path] = fault.clone();
        self.paths[path].set(fault).await;
    }

    /// Restore every path and wait until Manifold has them all in again.
    async fn restore_all(&self) {
        for i in 0..self.paths.len() {
            self.set(i, Fault::Pass).await;
        }
        self.wait_truth("every path back", &[]).await;
    }

    /// Wait until `/status` shows each path in `faulted` out as its fault says and every
    /// other path in (healthy, usable, breaker closed), and `/readyz` says ready. Returns the
    /// status seen.
    async fn wait_truth(&self, what: &str, faulted: &[(usize, Fault)]) -> Value {
        let status = wait_for_status(&self.proxy, what, |s| {
            (0..UPSTREAMS.len()).all(|i| {
                let u = upstream_status(s, UPSTREAMS[i]);
                match faulted.iter().find(|(p, _)| *p == i) {
                    Some((_, fault)) => shown_out(u, fault),
                    None => shown_in(u),
                }
            })
        })
        .await;
        self.wait_ready(true).await;
        status
    }

    /// Poll `/readyz` until it says `ready` (200) or not (503), at most 15 s.
    async fn wait_ready(&self, ready: bool) -> Value {
        let url = admin_url(&self.proxy, "/readyz");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = Raw::new().get(&url).await;
            let v: Value = serde_json::from_str(&body).unwrap();
            let want = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            if status == want {
                assert_eq!(v["ready"], ready, "{v}");
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz is not {want} after 15s: {status} {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn status(&self) -> Value {
        let (_, body) = Raw::new().get(&admin_url(&self.proxy, "/status")).await;
        serde_json::from_str(&body).unwrap()
    }

    /// An account's nonce or balance (`method`), asked of the node directly.
    async fn on_chain(&self, method: &str, account: &str) -> u128 {
        hex_u128(
            &Raw::new()
                .call(&self.anvil.url, method, json!([account, "latest"]))
                .await["result"],
        )
    }
}

/// Whether `/status` shows upstream `u` out for what its path does.
fn shown_out(u: &Value, fault: &Fault) -> bool {
    match fault {
        Fault::Pass => shown_in(u),
        Fault::WrongChain(_) => u["status"] == "wrong_chain",
        // Still serving what any node can answer, but behind: not for the newest state.
        Fault::Lag(_) => u["lag"].as_u64().unwrap_or(0) > MAX_LAG_BLOCKS,
        // Probes are answered late, refused, cut or with errors.
        _ => u["status"] == "unhealthy",
    }
}

fn shown_in(u: &Value) -> bool {
    u["status"] == "healthy"
        && u["usable"] == true
        && u["breaker"]["state"] == "closed"
        && u["lag"].as_u64().unwrap_or(u64::MAX) <= MAX_LAG_BLOCKS
}

/// One line per upstream: what Manifold thinks of it.
fn view(status: &Value) -> String {
    UPSTREAMS
        .iter()
        .map(|name| {
            let u = upstream_status(status, name);
            format!(
                "{name}: {} ({}) usable {} breaker {} lag {} in-flight {}",
                u["status"],
                u["reason"],
                u["usable"],
                u["breaker"]["state"],
                u["lag"],
                u["in_flight"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_hex_quantity(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() > 2 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

// ---------------------------------------------------------------------------------------
// a client that records what it sees instead of panicking

/// A plain HTTP/1.1 client with kept-alive connections.
#[derive(Clone)]
struct Raw(Client<HttpConnector, Full<Bytes>>);

impl Raw {
    fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    /// POST JSON: the status and body, or why there is none (also no answer in
    /// `CLIENT_PATIENCE`).
    async fn post(&self, url: &str, body: String) -> Result<(StatusCode, String), String> {
        let req = Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let exchange = async {
            let resp = self
                .0
                .request(req)
                .await
                .map_err(|e| format!("no response: {e:?}"))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("HTTP {status}, body cut: {e:?}"))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(CLIENT_PATIENCE, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CLIENT_PATIENCE:?}")))
    }

    async fn get(&self, url: &str) -> (StatusCode, String) {
        let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        let resp = self.0.request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// A call to a node that is not under test (anvil itself): it must answer.
    async fn call(&self, url: &str, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, text) = self.post(url, body.to_string()).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// What the client made of one answer.
enum Verdict {
    /// The result(s) it wanted.
    Good(Value),
    /// Manifold's own JSON-RPC error(s): well-formed, `manifold:` messages with a reason.
    /// Acceptable only while no path passes.
    Clean(String),
    /// Anything else: an HTTP error, no answer, not JSON-RPC, a node's error, a wrong
    /// result.
    Broken(String),
}

/// Whether `e` is an error object Manifold made: the codes of the README's table.
fn is_manifold_error(e: &Value) -> bool {
    e["code"]
        .as_i64()
        .is_some_and(|c| (-32094..=-32091).contains(&c))
        && e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("manifold:"))
        && e["data"]["reason"].is_string()
}

/// One response object for request `id`, whose result must pass `valid`.
fn judge_object(v: &Value, id: u64, valid: impl Fn(&Value) -> bool) -> Verdict {
    if v["jsonrpc"] != "2.0" || v["id"] != id {
        return Verdict::Broken(format!("not the answer to id {id}: {v}"));
    }
    match (v.get("result"), v.get("error")) {
        (Some(r), None) if valid(r) => Verdict::Good(r.clone()),
        (Some(r), None) => Verdict::Broken(format!("unexpected result {r}")),
        (None, Some(e)) if is_manifold_error(e) => Verdict::Clean(e.to_string()),
        _ => Verdict::Broken(format!("not a clean answer: {v}")),
    }
}

type Check = fn(&Value) -> bool;

/// A whole answer to one call (`checks` has one entry) or a batch (one per item, answered
/// in order).
fn judge(answer: Result<(StatusCode, String), String>, checks: &[Check], batch: bool) -> Verdict {
    let (status, text) = match answer {
        Ok(a) => a,
        Err(e) => return Verdict::Broken(e),
    };
    if status != StatusCode::OK {
        return Verdict::Broken(format!("HTTP {status}: {text}"));
    }
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return Verdict::Broken(format!("not JSON: {text}"));
    };
    if !batch {
        return judge_object(&v, 1, checks[0]);
    }
    let Some(items) = v.as_array().filter(|a| a.len() == checks.len()) else {
        return Verdict::Broken(format!("not a batch of {}: {v}", checks.len()));
    };
    let mut results = Vec::new();
    let mut clean = Vec::new();
    for (i, (item, check)) in items.iter().zip(checks).enumerate() {
        match judge_object(item, i as u64 + 1, check) {
            Verdict::Good(r) => results.push(r),
            Verdict::Clean(e) => clean.push(e),
            Verdict::Broken(e) => return Verdict::Broken(format!("batch item {i}: {e}")),
        }
    }
    if clean.is_empty() {
        Verdict::Good(Value::Array(results))
    } else {
        Verdict::Clean(format!("batch: {}", clean.join(", ")))
    }
}

// ---------------------------------------------------------------------------------------
// the traffic

/// A call that did not give the client what it wanted.
#[derive(Debug)]
struct Failure {
    start: Instant,
    end: Instant,
    what: String,
    detail: String,
    clean: bool,
    /// The paths' modes when it was sent, and Manifold's view when it failed.
    faults: Vec<Fault>,
    view: String,
}

/// What the traffic tasks share.
struct Shared {
    rpc: String,
    admin: String,
    anvil: String,
    stop: AtomicBool,
    reads_ok: AtomicUsize,
    sends_ok: AtomicUsize,
    failed: AtomicUsize,
    failures: Mutex<Vec<Failure>>,
    /// Periods in which no path passed: from when the last passing path was failed to when
    /// Manifold shows one passing its probes again.
    outages: Mutex<Vec<(Instant, Option<Instant>)>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    /// The transfers' hashes, in nonce order.
    hashes: Mutex<Vec<String>>,
    start_nonce: u128,
    start_balance: u128,
    started: Instant,
    /// What the scenario did when, for failure reports.
    marks: Mutex<Vec<(Instant, String)>>,
}

impl Shared {
    fn in_outage(&self) -> bool {
        self.outages
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(_, end)| end.is_none())
    }

    /// Note a failed call; `Good` is not a failure.
    async fn note(&self, what: &str, start: Instant, faults: Vec<Fault>, verdict: Verdict) {
        let (detail, clean) = match verdict {
            Verdict::Good(_) => return,
            Verdict::Clean(d) => (d, true),
            Verdict::Broken(d) => (d, false),
        };
        let end = Instant::now();
        self.failed.fetch_add(1, Ordering::SeqCst);
        // Manifold's view, for the report; not while every path is failing on purpose.
        let view = if self.in_outage() {
            String::new()
        } else {
            let (_, body) = Raw::new().get(&format!("{}/status", self.admin)).await;
            view(&serde_json::from_str(&body).unwrap())
        };
        self.failures.lock().unwrap().push(Failure {
            start,
            end,
            what: what.to_string(),
            detail,
            clean,
            faults,
            view,
        });
    }

    fn faults_now(&self) -> Vec<Fault> {
        self.faults.lock().unwrap().clone()
    }
}

/// The client side of a scenario: two readers and one sender through Manifold, paced so that
/// two cores keep up with them and with Manifold's probes.
struct Traffic {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    /// Live tasks of the runtime after warm-up.
    baseline_tasks: usize,
}

const READERS: usize = 2;
const READ_PAUSE: Duration = Duration::from_millis(10);
const SEND_PAUSE: Duration = Duration::from_millis(60);

impl Traffic {
    /// Start the traffic, let it warm up (some reads and transfers through every path),
    /// then take the baseline.
    async fn start(rig: &Rig) -> Traffic {
        let start_nonce = rig.on_chain("eth_getTransactionCount", SENDER).await;
        let start_balance = rig.on_chain("eth_getBalance", RECIPIENT).await;
        let shared = Arc::new(Shared {
            rpc: rpc_url(&rig.proxy, "/eth"),
            admin: format!("http://{}", rig.proxy.admin_addr),
            anvil: rig.anvil.url.clone(),
            stop: AtomicBool::new(false),
            reads_ok: AtomicUsize::new(0),
            sends_ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            outages: Mutex::new(Vec::new()),
            faults: rig.faults.clone(),
            hashes: Mutex::new(Vec::new()),
            start_nonce,
            start_balance,
            started: Instant::now(),
            marks: Mutex::new(Vec::new()),
        });
        let mut tasks = JoinSet::new();
        for r in 0..READERS {
            tasks.spawn(reader(shared.clone(), r));
        }
        tasks.spawn(sender(shared.clone()));
        let mut traffic = Traffic {
            shared,
            tasks,
            baseline_tasks: 0,
        };
        traffic.progress(60, 5).await;
        traffic.baseline_tasks = alive_tasks();
        traffic
    }

    /// Wait until `reads` more reads and `sends` more transfers have succeeded (at most
    /// 20 s).
    async fn progress(&self, reads: usize, sends: usize) {
        let s = &self.shared;
        let (r0, s0) = (
            s.reads_ok.load(Ordering::SeqCst),
            s.sends_ok.load(Ordering::SeqCst),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.reads_ok.load(Ordering::SeqCst) < r0 + reads
            || s.sends_ok.load(Ordering::SeqCst) < s0 + sends
        {
            assert!(
                Instant::now() < deadline,
                "no progress in 20s: {} of {reads} reads, {} of {sends} transfers; {} failures",
                s.reads_ok.load(Ordering::SeqCst) - r0,
                s.sends_ok.load(Ordering::SeqCst) - s0,
                s.failed.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until `n` more calls have failed (at most 20 s).
    async fn failures(&self, n: usize) {
        let s = &self.shared;
        let f0 = s.failed.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.failed.load(Ordering::SeqCst) < f0 + n {
            assert!(Instant::now() < deadline, "fewer than {n} failures in 20s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Note what the scenario does now, for the failure report.
    fn mark(&self, what: &str) {
        let mark = (Instant::now(), what.to_string());
        self.shared.marks.lock().unwrap().push(mark);
    }

    /// The marks so far, timed from the start of the traffic.
    fn marks(&self) -> Vec<String> {
        let s = &self.shared;
        let marks = s.marks.lock().unwrap();
        marks
            .iter()
            .map(|(t, what)| format!("{:.2}s {what}", t.duration_since(s.started).as_secs_f64()))
            .collect()
    }

    fn outage_begins(&self) {
        self.shared
            .outages
            .lock()
            .unwrap()
            .push((Instant::now(), None));
    }

    fn outage_ends(&self) {
        let mut outages = self.shared.outages.lock().unwrap();
        let last = outages.last_mut().expect("an outage began");
        last.1 = Some(Instant::now());
    }

    /// Stop the traffic and check everything the scenario promises: no failure outside an
    /// outage, clean ones within it, every transfer mined once, no growth, everything in.
    /// Returns the failures met during outages.
    async fn finish(mut self, rig: &Rig) -> Vec<Failure> {
        self.shared.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.tasks.join_next().await {
            done.expect("a traffic task panicked");
        }
        let s = &self.shared;
        let outages = s.outages.lock().unwrap().clone();
        let failures = std::mem::take(&mut *s.failures.lock().unwrap());
        let overlaps = |f: &Failure| {
            outages
                .iter()
                .any(|(a, b)| f.start <= b.unwrap_or(f.end) && *a <= f.end)
        };
        let at = |t: Instant| t.duration_since(s.started).as_secs_f64();
        let describe = |f: &Failure| {
            format!(
                "  {:.2}s..{:.2}s {}: {}\n    paths: {:?}\n    manifold: {}",
                at(f.start),
                at(f.end),
                f.what,
                f.detail,
                f.faults,
                f.view
            )
        };
        let unexcused: Vec<String> = failures
            .iter()
            .filter(|f| !(overlaps(f) && f.clean))
            .map(describe)
            .collect();
        let marks = self.marks();
        let outage_windows: Vec<String> = outages
            .iter()
            .map(|(a, b)| format!("{:.2}s..{:?}", at(*a), b.map(at)))
            .collect();
        assert!(
            unexcused.is_empty(),
            "{} calls failed while a path passed, or failed uncleanly (outages: {outage_windows:?}; \
             {} reads and {} transfers succeeded; scenario: {marks:?}):\n{}",
            unexcused.len(),
            s.reads_ok.load(Ordering::SeqCst),
            s.sends_ok.load(Ordering::SeqCst),
            unexcused.join("\n")
        );
        let slowest = failures
            .iter()
            .map(|f| f.end - f.start)
            .max()
            .unwrap_or_default();
        assert!(
            slowest <= REQUEST_TIMEOUT + Duration::from_secs(2),
            "a failed call took {slowest:?}, over the request timeout"
        );

        let hashes = s.hashes.lock().unwrap().clone();
        check_chain(rig, s.start_nonce, s.start_balance, &hashes).await;
        check_no_growth(rig, self.baseline_tasks).await;
        failures
    }
}

/// One reader: single calls and batches in turn, as fast as the pause allows.
async fn reader(s: Arc<Shared>, n: usize) {
    let client = Raw::new();
    let mut i = n;
    while !s.stop.load(Ordering::SeqCst) {
        let receipt_of = s
            .hashes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_else(|| format!("0x{}", "00".repeat(32)));
        let quantity: Check = is_hex_quantity;
        let receipt: Check = |r| r.is_null() || r["transactionHash"].is_string();
        let chain_id: Check = |r| r == "0x7a69";
        let call = |method: &str, params: Value, id: u64| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (what, body, checks, batch): (&str, Value, Vec<Check>, bool) = match i % 6 {
            0 => (
                "eth_getBalance",
                call("eth_getBalance", json!([RECIPIENT, "latest"]), 1),
                vec![quantity],
                false,
            ),
            1 => (
                "eth_blockNumber",
                call("eth_blockNumber", json!([]), 1),
                vec![quantity],
                false,
            ),
            2 => (
                "eth_getTransactionCount",
                call("eth_getTransactionCount", json!([SENDER, "latest"]), 1),
                vec![quantity],
                false,
            ),
            3 => (
                "eth_getTransactionReceipt",
                call("eth_getTransactionReceipt", json!([receipt_of]), 1),
                vec![receipt],
                false,
            ),
            4 => (
                "eth_chainId",
                call("eth_chainId", json!([]), 1),
                vec![chain_id],
                false,
            ),
            _ => (
                "batch",
                json!([
                    call("eth_chainId", json!([]), 1),
                    call("eth_getBalance", json!([SENDER, "latest"]), 2),
                    call("eth_blockNumber", json!([]), 3),
                    call("eth_getTransactionCount", json!([RECIPIENT, "pending"]), 4),
                    call("eth_getTransactionReceipt", json!([receipt_of]), 5),
                ]),
                vec![chain_id, quantity, quantity, quantity, receipt],
                true,
            ),
        };
        i += 1;
        let faults = s.faults_now();
        let start = Instant::now();
        let answer = client.post(&s.rpc, body.to_string()).await;
        match judge(answer, &checks, batch) {
            Verdict::Good(_) => {
                s.reads_ok.fetch_add(1, Ordering::SeqCst);
            }
            other => s.note(what, start, faults, other).await,
        }
        tokio::time::sleep(READ_PAUSE).await;
    }
}

/// The sender: for each transfer, the pending nonce through Manifold must be the next one;
/// the wallet (anvil itself, not under test) signs; the signed transfer goes through
/// Manifold, and on an error the very same bytes are sent again (safe: the hash is the
/// same) until one is accepted. Every error is recorded.
async fn sender(s: Arc<Shared>) {
    let client = Raw::new();
    let direct = Raw::new();
    let mut nonce = s.start_nonce;
    while !s.stop.load(Ordering::SeqCst) {
        let faults = s.faults_now();
        let start = Instant::now();
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount",
                          "params": [SENDER, "pending"]});
        let answer = client.post(&s.rpc, body.to_string()).await;
        match judge(answer, &[is_hex_quantity], false) {
            Verdict::Good(n) if hex_u128(&n) == nonce => {}
            Verdict::Good(n) => {
                let wrong = Verdict::Broken(format!("pending nonce {n}, expected {nonce}"));
                s.note("eth_getTransactionCount", start, faults, wrong)
                    .await;
            }
            other => {
                s.note("eth_getTransactionCount", start, faults, other)
                    .await
            }
        }

        let signed = direct
            .call(&s.anvil, "eth_signTransaction", transfer_to_sign(nonce))
            .await;
        let raw = signed["result"]
            .as_str()
            .unwrap_or_else(|| panic!("signing: {signed}"))
            .to_string();
        let hash = transaction_hash_hex(&raw).unwrap();
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                          "params": [raw]})
        .to_string();
        let is_hash: fn(&Value) -> bool = |r| r.as_str().is_some_and(|h| h.len() == 66);
        loop {
            let faults = s.faults_now();
            let start = Instant::now();
            let answer = client.post(&s.rpc, body.clone()).await;
            match judge(answer, &[is_hash], false) {
                Verdict::Good(h) if h == hash.as_str() => break,
                Verdict::Good(h) => {
                    let wrong = Verdict::Broken(format!("hash {h}, expected {hash}"));
                    s.note("eth_sendRawTransaction", start, faults, wrong).await;
                }
                other => s.note("eth_sendRawTransaction", start, faults, other).await,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.hashes.lock().unwrap().push(hash);
        s.sends_ok.fetch_add(1, Ordering::SeqCst);
        nonce += 1;
        tokio::time::sleep(SEND_PAUSE).await;
    }
}

// ---------------------------------------------------------------------------------------
// the end checks

/// Every transfer is on chain once, in nonce order, and nothing else moved the accounts.
async fn check_chain(rig: &Rig, start_nonce: u128, start_balance: u128, hashes: &[String]) {
    let direct = Raw::new();
    for (i, hash) in hashes.iter().enumerate() {
        let tx = direct
            .call(&rig.anvil.url, "eth_getTransactionByHash", json!([hash]))
            .await;
        assert_eq!(tx["result"]["hash"], *hash, "{tx}");
        assert_eq!(
            hex_u128(&tx["result"]["nonce"]),
            start_nonce + i as u128,
            "nonces are consecutive: {tx}"
        );
    }
    // anvil mines each transfer as it arrives, but asynchronously: wait for the last.
    if let Some(last) = hashes.last() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = direct
                .call(&rig.anvil.url, "eth_getTransactionReceipt", json!([last]))
                .await;
            if !r["result"].is_null() {
                assert_eq!(r["result"]["status"], "0x1", "{r}");
                break;
            }
            assert!(Instant::now() < deadline, "{last} not mined");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let n = hashes.len() as u128;
    let end_nonce = rig.on_chain("eth_getTransactionCount", SENDER).await;
    assert_eq!(
        end_nonce,
        start_nonce + n,
        "the nonce moved by the transfers"
    );
    let balance = rig.on_chain("eth_getBalance", RECIPIENT).await;
    assert_eq!(balance - start_balance, n, "one wei per transfer");
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Once the traffic has stopped: Manifold has nothing in flight, the paths hold no more
/// than a pool's worth of connections, and the runtime's live tasks are back near the
/// warm-up count. Each is polled for a few seconds: closing connections takes a moment.
async fn check_no_growth(rig: &Rig, baseline_tasks: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = rig.status().await;
        let in_flight: u64 = UPSTREAMS
            .iter()
            .map(|u| upstream_status(&status, u)["in_flight"].as_u64().unwrap())
            .sum();
        let connections: usize = rig.paths.iter().map(FaultPath::connections).sum();
        let tasks = alive_tasks();
        if in_flight == 0 && connections <= CONNECTION_LIMIT && tasks <= baseline_tasks + TASK_SLACK
        {
            eprintln!(
                "after the scenario: {tasks} live tasks (warm-up: {baseline_tasks}), \
                 {connections} path connections"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "growth after the scenario: {in_flight} requests in flight, {connections} path \
             connections (limit {CONNECTION_LIMIT}), {tasks} live tasks (warm-up: \
             {baseline_tasks}); {}",
            view(&status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every scenario ends in bounded time, whatever Manifold does.
async fn bounded<F: Future>(scenario: F) -> F::Output {
    tokio::time::timeout(SCENARIO_LIMIT, scenario)
        .await
        .unwrap_or_else(|_| panic!("the scenario took over {SCENARIO_LIMIT:?}"))
}

// ---------------------------------------------------------------------------------------
// scenarios

/// Fault `modes` one at a time, mode `k` on path `k % 3`: each is shown out in `/status`
/// while `/readyz` stays ready, clients see nothing, and the path is back once restored.
/// Returns `/status` at the end.
async fn one_path_at_a_time(modes: Vec<Fault>) -> Value {
    let rig = Rig::start().await;
    let traffic = Traffic::start(&rig).await;
    for (k, fault) in modes.into_iter().enumerate() {
        let path = k % UPSTREAMS.len();
        rig.set(path, fault.clone()).await;
        traffic.mark(&format!("u{path} set to {fault:?}"));
        rig.wait_truth(&format!("u{path} out: {fault:?}"), &[(path, fault.clone())])
            .await;
        traffic.mark(&format!("u{path} shown out"));
        traffic.progress(40, 4).await;
        rig.set(path, Fault::Pass).await;
        rig.wait_truth(&format!("u{path} back after {fault:?}"), &[])
            .await;
        traffic.progress(20, 2).await;
    }
    traffic.finish(&rig).await;
    rig.status().await
}

/// Every upstream has had attempts fail: the faults were met, and the client never knew.
fn assert_faults_met(status: &Value) {
    for u in UPSTREAMS {
        let s = upstream_status(status, u);
        assert!(s["failures"].as_u64().unwrap() > 0, "{u} never failed: {s}");
    }
}

/// A path that refuses, holds requests unanswered, resets connections, cuts answers or
/// answers too late (past the upstream's timeout and the probe's) costs the client nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_faults_on_one_path() {
    let status = bounded(one_path_at_a_time(vec![
        Fault::Refuse,
        Fault::Blackhole,
        Fault::Reset,
        Fault::Truncate,
        Fault::Delay(Duration::from_millis(1500)),
    ]))
    .await;
    assert_faults_met(&status);
}

/// A path answering HTTP 503, 429 (rate limited) or HTML instead of JSON costs the client
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_on_one_path() {
    let status = bounded(one_path_at_a_time(vec![
        Fault::Status503,
        Fault::TooMany {
            retry_after_secs: 1,
        },
        Fault::NotJson,
    ]))
    .await;
    assert_faults_met(&status);
}

/// A path answering every call with JSON-RPC error -32603 ("internal error": the node
/// failed, not the request) costs the client nothing: another path answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_on_one_path() {
    bounded(one_path_at_a_time(vec![Fault::RpcInternalError])).await;
}

/// A path re-pointed at another chain (its `eth_chainId` says 1) is shown `wrong_chain`,
/// and no client is told the wrong chain id: an answer with another id than the configured
/// one is never passed on, and takes the path out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_on_the_wrong_chain() {
    bounded(one_path_at_a_time(vec![Fault::WrongChain(1)])).await;
}

/// A path whose head falls 200 blocks behind (four times `max_lag_blocks`) is shown
/// lagging, and costs the client nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_far_behind() {
    bounded(one_path_at_a_time(vec![Fault::Lag(200)])).await;
}

/// Two paths in different failure domains fail at once, in two different ways, twice; the
/// one left serves everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paths_fail_at_once() {
    bounded(async {
        let rig = Rig::start().await;
        let traffic = Traffic::start(&rig).await;
        let rounds = [
            [(0, Fault::Blackhole), (2, Fault::Refuse)],
            [(1, Fault::Truncate), (2, Fault::Status503)],
        ];
        for faults in rounds {
            outage(&rig, &traffic, &format!("{faults:?} out"), &faults).await;
        }
        traffic.finish(&rig).await;
    })
    .await;
}

/// Fault several paths at once until Manifold shows them out, keep the traffic going for a
/// while, then restore every path and let the traffic go on.
async fn outage(rig: &Rig, traffic: &Traffic, label: &str, faults: &[(usize, Fault)]) {
    for (path, fault) in faults {
        rig.set(*path, fault.clone()).await;
    }
    rig.wait_truth(label, faults).await;
    traffic.progress(60, 6).await;
    rig.restore_all().await;
    traffic.progress(20, 2).await;
}

/// The whole of `cloud-a` (u0 and u1) goes offline, then is cut off by a partition that
/// holds requests unanswered; `cloud-b` alone serves everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_failure_domain_fails() {
    bounded(async {
        let rig = Rig::start().await;
        let traffic = Traffic::start(&rig).await;
        for fault in [Fault::Refuse, Fault::Blackhole] {
            let faults = [(0, fault.clone()), (1, fault.clone())];
            outage(&rig, &traffic, &format!("cloud-a out: {fault:?}"), &faults).await;
        }
        traffic.finish(&rig).await;
    })
    .await;
}

/// u1 flaps: down for a second (refusing, holding, resetting, answering 503, cutting
/// answers in turn), up for a second, five times over. Clients see nothing, and once it
/// stays up Manifold has it back within a few probes and breaker periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_path() {
    bounded(async {
        let rig = Rig::start().await;
        let traffic = Traffic::start(&rig).await;
        let modes = [
            Fault::Refuse,
            Fault::Blackhole,
            Fault::Reset,
            Fault::Status503,
            Fault::Truncate,
        ];
        for fault in modes {
            rig.set(1, fault).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            rig.set(1, Fault::Pass).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        rig.wait_truth("u1 back for good", &[]).await;
        traffic.progress(40, 4).await;
        let status = rig.status().await;
        assert!(
            upstream_status(&status, "u1")["failures"].as_u64().unwrap() > 0,
            "the flapping path failed requests: {}",
            view(&status)
        );
        traffic.finish(&rig).await;
    })
    .await;
}

/// Every path fails (one holds requests, one answers 503, one refuses): clients get
/// Manifold's clean JSON-RPC errors, each within the request timeout, and `/readyz` says
/// not ready. Then u1 recovers alone: once Manifold has seen it, every call and transfer
/// succeeds again, the nonce continuing where it stopped. Then the rest recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_paths_fail_then_one_recovers() {
    bounded(async {
        let rig = Rig::start().await;
        let traffic = Traffic::start(&rig).await;
        rig.set(0, Fault::Blackhole).await;
        rig.set(1, Fault::Status503).await;
        traffic.outage_begins();
        rig.set(2, Fault::Refuse).await;
        traffic.mark("every path failing");
        let all_out = [
            (0, Fault::Blackhole),
            (1, Fault::Status503),
            (2, Fault::Refuse),
        ];
        wait_for_status(&rig.proxy, "every path out", |s| {
            all_out
                .iter()
                .all(|(p, f)| shown_out(upstream_status(s, UPSTREAMS[*p]), f))
        })
        .await;
        let not_ready = rig.wait_ready(false).await;
        assert!(
            not_ready["reason"]
                .as_str()
                .is_some_and(|r| UPSTREAMS.iter().all(|u| r.contains(u))),
            "/readyz names every upstream: {not_ready}"
        );
        traffic.failures(30).await;

        rig.set(1, Fault::Pass).await;
        let restored = Instant::now();
        traffic.mark("u1 restored");
        wait_for_status(&rig.proxy, "u1 passing probes", |s| {
            upstream_status(s, "u1")["status"] == "healthy"
        })
        .await;
        // From here on no call may fail: u1 passes its probes, and its breaker (open or
        // not) does not keep the last healthy upstream out.
        traffic.outage_ends();
        let seen_back = Instant::now();
        traffic.mark("u1 shown healthy");
        wait_for_status(&rig.proxy, "u1 back", |s| {
            shown_in(upstream_status(s, "u1"))
        })
        .await;
        traffic.mark("u1 breaker closed");
        rig.wait_ready(true).await;
        traffic.progress(60, 6).await;

        rig.restore_all().await;
        traffic.progress(20, 2).await;
        let marks = traffic.marks();
        let excused = traffic.finish(&rig).await;
        assert!(excused.len() >= 30, "clients met the outage: {excused:?}");
        // A call sent once u1 passes again may still fail until a probe has seen it back:
        // every upstream is out and its breaker open, so none is tried as a last resort.
        // How many did, for the record.
        let late: Vec<&Failure> = excused.iter().filter(|f| f.start >= restored).collect();
        eprintln!(
            "{} calls failed during the outage; {} sent after u1 was restored, in the {:?} \
             until Manifold showed it healthy ({:?}): {:?}",
            excused.len(),
            late.len(),
            seen_back - restored,
            marks,
            late.iter()
                .map(|f| &f.detail)
                .collect::<std::collections::BTreeSet<_>>()
        );
    })
    .await;
}
