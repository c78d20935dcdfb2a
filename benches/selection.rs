//! Selection micro-benchmarks: `UpstreamSet::next_best`, the choice every attempt makes.
//!
//! `cargo bench --bench selection`. Sets of 3, 10 and 50 upstreams side by side (the cost
//! should grow with the set, and stay far below an upstream round trip), each in two states:
//! all healthy in one tier, and a mixed set (tiers, lagging and unhealthy upstreams, a few
//! failure domains) after one failed attempt, which exercises ranking and domain avoidance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use manifold::config::Config;
use manifold::config::HedgePolicy;
use manifold::family::{BlockNeed, Cost, ProbeVerdict};
use manifold::health::ChainHead;
use manifold::metrics::Metrics;
use manifold::upstream::{Outcome, Route, SetMetrics, Upstream, UpstreamSet};

const HEAD: u64 = 1_000;

/// `n` upstreams. `mixed`: a third each primary/secondary/fallback, four failure domains,
/// every fifth lagging and every seventh failing its probes; otherwise all healthy
/// primaries in their own domains. Each has a different recent latency, so scores differ.
fn set(n: usize, mixed: bool) -> UpstreamSet {
    let mut toml = String::from("[[chains]]\nname = \"c\"\nchain_id = 1\n");
    for i in 0..n {
        let (tier, domain) = if mixed {
            (["primary", "secondary", "fallback"][i % 3], i % 4)
        } else {
            ("primary", i)
        };
        toml.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"http://127.0.0.1:{}\"\ntier = \"{tier}\"\nfailure_domain = \"d{domain}\"\n",
            10_000 + i
        ));
    }
    let config = Config::from_toml(&toml, "bench.toml", &|_| None).unwrap();
    let chain = &config.chains[0];
    let metrics = Metrics::new();
    let upstreams = chain
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let up = Upstream::new(
                &chain.name,
                u.clone(),
                &metrics,
                manifold::upstream::AnswerLimit::unbudgeted(1 << 20),
                &chain.policy.health,
                &chain.policy.breaker,
                manifold::family::for_chain(chain),
            )
            .unwrap();
            let verdict = if mixed && i % 7 == 6 {
                ProbeVerdict::Failed("down".into())
            } else if mixed && i % 5 == 4 {
                ProbeVerdict::Healthy { head: HEAD - 50 }
            } else {
                ProbeVerdict::Healthy { head: HEAD }
            };
            // `rise`/`fall` probes in a row settle the status either way.
            for _ in 0..3 {
                up.active().apply(&verdict);
            }
            for _ in 0..20 {
                up.health().record(
                    Outcome::Success,
                    Cost::Normal,
                    Duration::from_micros(500 + 100 * i as u64),
                    None,
                );
            }
            Arc::new(up)
        })
        .collect();
    UpstreamSet::new(
        upstreams,
        3,
        Arc::new(ChainHead::new(Duration::from_secs(1))),
        HedgePolicy::default(),
        0.2,
        SetMetrics::none(),
    )
}

fn route() -> Route {
    Route {
        need: BlockNeed::Head,
        block_lookup: false,
        chain_head: Some(HEAD),
        max_lag_blocks: 3,
        max_ahead_blocks: 16,
        cost: Cost::Normal,
    }
}

fn bench(c: &mut Criterion) {
    let route = route();
    let mut g = c.benchmark_group("next_best");
    for n in [3, 10, 50] {
        let healthy = set(n, false);
        g.bench_with_input(BenchmarkId::new("healthy", n), &healthy, |b, s| {
            b.iter(|| {
                s.next_best(black_box("eth_getBalance"), &route, &[])
                    .map(|p| p.upstream.score())
            })
        });
        let mixed = set(n, true);
        let first = mixed.next_best("eth_getBalance", &route, &[]).unwrap();
        let tried = [first.upstream];
        g.bench_with_input(
            BenchmarkId::new("mixed_after_failure", n),
            &mixed,
            |b, s| {
                b.iter(|| {
                    s.next_best(black_box("eth_getBalance"), &route, &tried)
                        .map(|p| p.upstream.score())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
