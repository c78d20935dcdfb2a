//! The `manifold` binary: configuration files, `check-config`, `--version`, signals.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use manifold::config::Config;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_manifold");

/// The binary on `config` (through `MANIFOLD_CONFIG`) with `env`, logging JSON at info; its
/// log lines.
fn run_logging_json(
    config: &Path,
    env: &[(&str, &str)],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut child = Command::new(BIN)
        .env("MANIFOLD_CONFIG", config)
        .envs(env.iter().copied())
        .env("MANIFOLD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// The JSON-RPC address the binary logs once it listens (within 20 s), from its JSON log.
async fn listening_on(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) -> String {
    let mut logged = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            logged.push(v.clone());
            if let Some(addr) = v["rpc_addr"].as_str() {
                return addr.to_string();
            }
        }
        panic!("exited before listening: {logged:?}");
    })
    .await
    .expect("listening within 20s")
}

/// A fresh directory for one test's files.
fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("manifold-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_is_valid() {
    let files = config_files();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for expected in [
        "default.toml",
        "exchange-sidecar.toml",
        "dapp-backend.toml",
        "home-node.toml",
        "multi-chain.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "config/{expected} is missing: {names:?}"
        );
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let config = Config::from_toml(&text, &f.display().to_string(), &|k| {
            Some(format!("secret-{k}-0123456789"))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.chains.is_empty());
        assert!(
            config.warnings.is_empty(),
            "{}: {:?}",
            f.display(),
            config.warnings
        );
        let shown = config.redacted().to_string();
        assert!(!shown.contains("secret-"), "{}: {shown}", f.display());
    }
}

#[tokio::test]
async fn check_config_prints_the_resolved_config_without_secrets() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/exchange-sidecar.toml");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env("ALCHEMY_KEY", "alchemy-secret-key-123456")
        .env("INFURA_KEY", "abcdef0123456789abcdef0123456789")
        .env("QUICKNODE_TOKEN", "qn-secret-9")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        stdout.contains("https://eth-mainnet.g.alchemy.com/v2/***"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failure_domain = \"aws-us-east-1\""),
        "{stdout}"
    );
    for secret in [
        "alchemy-secret-key-123456",
        "abcdef0123456789abcdef0123456789",
        "qn-secret-9",
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
}

#[tokio::test]
async fn check_config_names_file_key_and_reason() {
    let dir = scratch_dir("bad");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[[chains]]\nname = \"eth\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://x\"\ntier = \"gold\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "{}: chains[0].upstreams[0].tier: unknown tier `gold`",
            file.display()
        )),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(dir.join("missing.toml"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn check_config_warns_on_a_single_failure_domain() {
    let dir = scratch_dir("warn");
    let file = dir.join("one-domain.toml");
    std::fs::write(
        &file,
        chain_config(&["http://10.0.0.1:8545", "http://10.0.0.1:8546"], ""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("every upstream is in failure domain `10.0.0.1`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("manifold {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().await.unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("check-config") && help.contains("MANIFOLD_CONFIG"),
        "{help}"
    );
}

/// The binary serves from MANIFOLD_CONFIG, logs JSON when asked, and exits 0 on SIGTERM
/// after answering the request in flight.
#[tokio::test]
async fn runs_from_env_config_keeps_serving_on_sighup_and_drains_on_sigterm() {
    let up = FakeUpstream::start(|_, _| {
        Action::Delay(
            Duration::from_millis(500),
            Box::new(Action::Result("\"0x7\"".into())),
        )
    })
    .await;
    let dir = scratch_dir("run");
    let file = dir.join("run.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntx_store = \"{}\"\n{}",
            dir.join("tx.redb").display(),
            chain_config(&[&up.url], "")
        ),
    )
    .unwrap();
    let (mut child, mut lines) = run_logging_json(&file, &[]);
    let rpc_addr = listening_on(&mut lines).await;
    // SIGHUP (what an operator sends to reload) is logged, and the process keeps serving.
    let pid = child.id().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("SIGHUP") {
                return;
            }
        }
        panic!("exited on SIGHUP");
    })
    .await
    .expect("SIGHUP logged within 20s");
    let url = format!("http://{rpc_addr}/eth");
    let arrived = up.next_request();
    let inflight = tokio::spawn(async move {
        HttpClient::new()
            .rpc(&url, r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#)
            .await
    });
    arrived.await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(inflight.await.unwrap()["result"], "0x7");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn invalid_config_exits_1_with_the_reason() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/manifold.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("/nonexistent/manifold.toml: cannot read"));
}

#[test]
fn kubernetes_example_config_is_valid() {
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/sidecar.yaml"),
    )
    .unwrap();
    let toml: String = yaml
        .lines()
        .skip_while(|l| !l.contains("manifold.toml: |"))
        .skip(1)
        .take_while(|l| !l.starts_with("---"))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(toml.contains("[[chains]]"), "{toml}");
    let config = Config::from_toml(&toml, "sidecar.yaml", &|_| Some("key".into()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.admin_listen.to_string(), "0.0.0.0:8646");
}

/// An upstream whose probe errors echo its URL, key included: the WARN log line that takes it
/// out shows the key as `***`.
#[tokio::test]
async fn logs_never_show_a_secret_an_upstream_echoes() {
    const KEY: &str = "Zq7k3yLm9Vn4wR8x2P";
    let up = FakeUpstream::start(|_, _| Action::Result("\"0x1\"".into())).await;
    *up.probes.error_message.lock().unwrap() =
        Some(format!("bad gateway for https://rpc.example.io/v2/{KEY}"));
    let dir = scratch_dir("secret-log");
    let file = dir.join("run.toml");
    let url = format!("{}/v2/${{LOG_TEST_KEY}}", up.url);
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntx_store = \":memory:\"\n{}",
            chain_config_with_health(&[&url], "", "interval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1")
        ),
    )
    .unwrap();
    let (mut child, mut lines) = run_logging_json(&file, &[("LOG_TEST_KEY", KEY)]);
    let down = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            assert!(!line.contains(KEY), "the key is in the log: {line}");
            if line.contains("upstream down") {
                return line;
            }
        }
        panic!("exited before the upstream was taken out");
    })
    .await
    .expect("the upstream taken out within 20s");
    assert!(down.contains("/v2/***"), "{down}");
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The resident memory of process `pid`, in bytes (Linux: from /proc).
#[cfg(target_os = "linux")]
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| {
            v.trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024
        })
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_held_for_large_answers_goes_back_to_the_system() {
    // Answers of 2 to 100 MB, one gzip-compressed: once answered, the process gives their
    // memory back. (Without `allocator::tune`, measured: 12 to 60 MB more stay resident.)
    let middle = bytes::Bytes::from(vec![b'x'; 100 << 20]);
    let gzip = |data: &[u8]| {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        bytes::Bytes::from(enc.finish().unwrap())
    };
    // A gzip stream of three members (as a proxy that compresses chunk by chunk sends).
    let gz = gzip(&middle[..3 << 20]);
    let up = FakeUpstream::start(move |req, _| {
        let id = req["id"].to_string();
        match req["params"][0]["toBlock"].as_str() {
            Some("0x1") => Action::Raw(
                vec![("content-type", "application/json".into())],
                vec![
                    bytes::Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":""#)),
                    middle.clone(),
                    bytes::Bytes::from_static(br#""}"#),
                ],
            ),
            Some(n) => {
                let n: usize = usize::from_str_radix(n.trim_start_matches("0x"), 16).unwrap();
                Action::Result(format!("\"{}\"", "y".repeat(n << 20)))
            }
            None if req["method"] == "eth_getLogs" => Action::Raw(
                vec![("content-encoding", "gzip".into())],
                vec![
                    gzip(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":""#).as_bytes()),
                    gz.clone(),
                    gzip(br#""}"#),
                ],
            ),
            None => Action::Result("\"0x1\"".into()),
        }
    })
    .await;
    let dir = scratch_dir("memory");
    let file = dir.join("memory.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntx_store = \":memory:\"\n{}",
            chain_config(&[&up.url], "max_response_bytes = 134217728")
        ),
    )
    .unwrap();
    let (child, mut lines) = run_logging_json(&file, &[]);
    let rpc_addr = listening_on(&mut lines).await;
    let pid = child.id().unwrap();
    let url = format!("http://{rpc_addr}/eth");
    let c = HttpClient::new();
    let logs = |to: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{{"toBlock":"{to}"}}]}}"#
        )
    };
    // Warmed up first: connection pools, buffers and arenas that stay for good.
    for to in ["0x2", "0x3"] {
        assert_eq!(c.post(&url, logs(to)).await.0, 200);
    }
    let before = rss_of(pid);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = rss_of(pid).max(peak);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    for round in 0..3 {
        let mut calls = Vec::new();
        for to in ["0x1", "0x2", "0x5", "0x9", "0x11"] {
            calls.push(c.post(&url, logs(to)));
        }
        calls.push(c.post(
            &url,
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}"#.to_string(),
        ));
        for (status, body) in futures_util::future::join_all(calls).await {
            assert_eq!(status, 200);
            assert!(
                body.len() > 1 << 20,
                "round {round}: {}",
                &body[..body.len().min(300)]
            );
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    // Soon: the blocks of large answers are unmapped when freed (no wait for a trim), but
    // the process may still be finishing its writes.
    let mut after = rss_of(pid);
    for _ in 0..40 {
        if after < before + (8 << 20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = rss_of(pid);
    }
    eprintln!("RSS before {before}, peak {peak}, after {after}");
    assert!(peak > before + (100 << 20), "the answers were held: {peak}");
    assert!(
        after < before + (8 << 20),
        "RSS {after} after the answers, {before} before them"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
