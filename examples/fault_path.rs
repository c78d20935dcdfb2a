//! A provider path as its own process: the fault-injecting forwarder of the tests
//! (`tests/support/fault_path.rs`), run inside a network namespace by the cloud-outage drill
//! (`tests/drill.rs`), in front of a real node.
//!
//! ```text
//! fault_path --listen ADDR --target URL
//! ```
//!
//! Prints `listening on ADDR` once bound, then reads modes from standard input, one per
//! line: `pass`, `swallow` (answer sends with the right hash, never pass them on), `refuse`,
//! `blackhole`, `503`. Ends when standard input closes.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

#[path = "../tests/support/fault_path.rs"]
mod fault_path;

use std::io::Write;
use std::net::SocketAddr;

use fault_path::{Fault, FaultPath};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen: Option<SocketAddr> = None;
    let mut target: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--target" => target = args.next(),
            other => panic!("unknown argument `{other}`: fault_path --listen ADDR --target URL"),
        }
    }
    let (Some(listen), Some(target)) = (listen, target) else {
        panic!("usage: fault_path --listen ADDR --target URL");
    };
    let path = FaultPath::start_on(listen, &target).await;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {listen}").unwrap();
        out.flush().unwrap();
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let fault = match line.trim() {
            "pass" => Fault::Pass,
            "swallow" => Fault::Swallow,
            "refuse" => Fault::Refuse,
            "blackhole" => Fault::Blackhole,
            "503" => Fault::Status503,
            "" => continue,
            other => {
                eprintln!("fault_path: unknown mode `{other}`");
                continue;
            }
        };
        path.set(fault).await;
        let mut out = std::io::stdout().lock();
        writeln!(out, "mode {}", line.trim()).unwrap();
        out.flush().unwrap();
    }
}
