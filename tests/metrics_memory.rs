//! Metrics memory stays flat without a scrape: histogram samples are folded into their
//! buckets by the upkeep timer, not held until someone renders `/metrics`. Alone in its test
//! binary, so that the process's RSS is this test's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use manifold::metrics::{Metrics, REQUEST_DURATION};
use metrics::Label;

/// Resident set size, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A million samples recorded in bursts of 10,000, as a proxy under load records them.
async fn a_million_samples(metrics: &Metrics) -> u64 {
    let h = metrics.histogram(
        REQUEST_DURATION,
        vec![Label::new("chain", "eth"), Label::new("method", "eth_call")],
    );
    let before = rss();
    for _ in 0..100 {
        for _ in 0..10_000 {
            h.record(0.001);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rss().saturating_sub(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_calls_without_a_scrape_leave_the_recorder_bounded() {
    const MB: u64 = 1 << 20;
    // Kept up, as `server::start` keeps it: the samples are folded away as they come.
    let kept = Metrics::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let upkeep = kept.spawn_upkeep(Duration::from_millis(50), stopped);
    let kept_grew = a_million_samples(&kept).await;
    stop.send(true).unwrap();
    upkeep.await.unwrap();
    // Not kept up: the same million held raw (the measurement can see the difference).
    let unkept = Metrics::new();
    let unkept_grew = a_million_samples(&unkept).await;
    assert!(
        unkept_grew > 12 * MB,
        "a million raw samples should show: grew {} KiB",
        unkept_grew / 1024
    );
    assert!(
        kept_grew < 4 * MB,
        "kept up, the recorder grew {} KiB for a million samples",
        kept_grew / 1024
    );
    assert!(unkept.render().contains(
        "manifold_request_duration_seconds_count{chain=\"eth\",method=\"eth_call\"} 1000000"
    ));
}
