//! A fixed-answer JSON-RPC upstream for `benches/load.sh`: echoes each request's id, answers
//! by method (`eth_chainId`, `eth_blockNumber`, `eth_syncing`, `eth_getBalance`, anything
//! else `"0x10"`), and does nothing else, so that the load run measures what is in front of
//! it. The same upstream serves every target of the run (direct, nginx, Manifold).
//!
//! ```text
//! fixed_upstream [--listen ADDR] [--chain-id N] [--threads N] [--blackhole]
//! ```
//!
//! Prints `listening on ADDR` once bound. `--blackhole` accepts connections and never
//! answers; SIGUSR1 turns a running one into a blackhole (kept-alive connections included),
//! like a node that stops responding.
#![allow(clippy::print_stdout)]

#[path = "../benches/support/fixed_upstream.rs"]
mod fixed_upstream;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

struct Args {
    listen: SocketAddr,
    chain_id: u64,
    threads: usize,
    blackhole: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        chain_id: 1,
        threads: 1,
        blackhole: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => {
                args.listen = value("--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            "--chain-id" => {
                args.chain_id = value("--chain-id")?
                    .parse()
                    .map_err(|e| format!("--chain-id: {e}"))?
            }
            "--threads" => {
                args.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--blackhole" => args.blackhole = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`\nusage: fixed_upstream [--listen ADDR] [--chain-id N] [--threads N] [--blackhole]"
                ))
            }
        }
    }
    Ok(args)
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let answers = fixed_upstream::Answers::new(args.chain_id);
        answers.hang.store(args.blackhole, Ordering::Relaxed);
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
        let flag = answers.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                flag.hang.store(true, Ordering::Relaxed);
            }
        });
        println!("listening on {addr}");
        fixed_upstream::serve(listener, answers).await;
        Ok(())
    })
}
