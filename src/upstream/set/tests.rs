//! Tests of selection: properties over random upstream states, and load spreading.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::p2c::takes_first;
use super::select::Selection;
use super::*;
use crate::config::{Config, Tier};
use crate::family::ProbeVerdict;
use crate::family::{BlockNeed, Cost};
use crate::metrics::Metrics;
use crate::upstream::{BreakerState, Outcome, Verdict};

#[derive(Debug, Clone)]
struct Spec {
    tier: u8,
    /// 0 healthy, 1 unhealthy, 2 wrong chain, 3 not probed
    status: u8,
    head: u64,
    /// Parked after a rate limit.
    skipped: bool,
    domain: u8,
    denies_method: bool,
    /// Its circuit breaker is open.
    broken: bool,
    /// `max_rps = 1`, and this second's request already sent.
    capped: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        0u8..4,
        0u64..20,
        any::<bool>(),
        0u8..3,
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(tier, status, head, skipped, domain, denies_method, broken, capped)| Spec {
                tier,
                status,
                head,
                skipped,
                domain,
                denies_method,
                broken,
                capped,
            },
        )
}

fn build(specs: &[Spec]) -> UpstreamSet {
    let mut toml = String::from("[[chains]]\nname = \"c\"\nchain_id = 1\n");
    for (i, s) in specs.iter().enumerate() {
        let tier = ["primary", "secondary", "fallback"][s.tier as usize];
        toml.push_str(&format!(
            "[[chains.upstreams]]\nname = \"u{i}\"\nurl = \"http://127.0.0.1:{}\"\ntier = \"{tier}\"\nfailure_domain = \"d{}\"\n",
            10_000 + i,
            s.domain
        ));
        if s.denies_method {
            toml.push_str("methods = { deny = [\"m\"] }\n");
        }
        if s.capped {
            toml.push_str("max_rps = 1\n");
        }
    }
    let config = Config::from_toml(&toml, "t", &|_| None).unwrap();
    let chain = &config.chains[0];
    let metrics = Metrics::new();
    let upstreams = chain
        .upstreams
        .iter()
        .zip(specs)
        .map(|(u, s)| {
            let up = Upstream::new(
                &chain.name,
                u.clone(),
                &metrics,
                crate::upstream::AnswerLimit::unbudgeted(1 << 20),
                &chain.policy.health,
                &chain.policy.breaker,
                crate::family::for_chain(chain),
            )
            .unwrap();
            match s.status {
                0 => {
                    up.active().apply(&ProbeVerdict::Healthy { head: s.head });
                }
                1 => {
                    up.active().apply(&ProbeVerdict::Failed("down".into()));
                }
                2 => {
                    up.active()
                        .apply(&ProbeVerdict::WrongChain("chain id 5".into()));
                }
                _ => {}
            }
            if s.skipped {
                for _ in 0..5 {
                    up.health().record(
                        Outcome::RateLimited,
                        Cost::Normal,
                        Duration::from_millis(1),
                        None,
                    );
                }
            }
            if s.capped {
                drop(up.admit(Cost::Normal).unwrap());
            }
            if s.broken {
                while up.breaker().state() != BreakerState::Open {
                    let (a, _) = up.breaker().admit(true);
                    a.unwrap().record(Verdict::Failure);
                }
            }
            Arc::new(up)
        })
        .collect();
    UpstreamSet::new(
        upstreams,
        3,
        Arc::new(crate::health::ChainHead::new(Duration::from_secs(1))),
        HedgePolicy::default(),
        0.2,
        SetMetrics::none(),
    )
}

fn route_strategy() -> impl Strategy<Value = Route> {
    (0u8..3, 0u64..25, 0u64..20, 0u64..5, 0u64..8).prop_map(|(kind, block, head, lag, ahead)| {
        Route {
            need: match kind {
                0 => BlockNeed::Head,
                1 => BlockNeed::AtLeast(block),
                _ => BlockNeed::Any,
            },
            block_lookup: false,
            chain_head: Some(head),
            max_lag_blocks: lag,
            max_ahead_blocks: ahead,
            cost: Cost::Normal,
        }
    })
}

/// The routing rules, restated from the specs alone (not from the code under test). An
/// upstream at its `max_rps` is eligible, but has no room now.
fn spec_eligible(s: &Spec, route: &Route) -> bool {
    if s.status != 0 || s.denies_method || s.broken {
        return false;
    }
    let chain_head = route.chain_head.unwrap_or(0);
    let too_far_ahead = s.head > chain_head + route.max_ahead_blocks;
    let in_sync = chain_head.saturating_sub(s.head) <= route.max_lag_blocks && !too_far_ahead;
    !too_far_ahead
        && match route.need {
            BlockNeed::Any => true,
            BlockNeed::Head => in_sync,
            BlockNeed::AtLeast(n) => s.head >= n,
        }
}

fn spec_rank(s: &Spec, route: &Route, tried_domains: &[u8]) -> (bool, bool, u8, bool) {
    let chain_head = route.chain_head.unwrap_or(0);
    let in_sync = chain_head.saturating_sub(s.head) <= route.max_lag_blocks
        && s.head <= chain_head + route.max_ahead_blocks;
    (
        !in_sync,
        s.skipped,
        s.tier,
        tried_domains.contains(&s.domain),
    )
}

proptest! {
    #[test]
    fn next_best_follows_the_rules(
        specs in proptest::collection::vec(spec(), 1..8),
        route in route_strategy(),
        tried_mask in any::<u8>(),
    ) {
        let set = build(&specs);
        let all: Vec<&Arc<Upstream>> = set.iter().collect();
        let tried_idx: Vec<usize> = (0..specs.len()).filter(|i| tried_mask & (1 << i) != 0).collect();
        let tried: Vec<&Arc<Upstream>> = tried_idx.iter().map(|i| all[*i]).collect();
        let tried_domains: Vec<u8> = tried_idx.iter().map(|i| specs[*i].domain).collect();
        let eligible: Vec<usize> = (0..specs.len())
            .filter(|i| !tried_idx.contains(i) && spec_eligible(&specs[*i], &route))
            .collect();
        // An upstream at its max_rps passes the call on only within its class (in sync,
        // not parked): never to a lagging or parked one.
        let class = |j: usize| {
            let r = spec_rank(&specs[j], &route, &tried_domains);
            (r.0, r.1)
        };
        let best_class = eligible.iter().map(|j| class(*j)).min();
        let open: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|j| !specs[*j].capped && Some(class(*j)) == best_class)
            .collect();
        let picked = set.next_best("m", &route, &tried);
        prop_assert_eq!(picked.is_some(), !open.is_empty(), "eligible by the rules: {:?}", open);
        if let Some(p) = picked {
            let i = all.iter().position(|u| Arc::ptr_eq(u, p.upstream)).unwrap();
            prop_assert!(open.contains(&i), "u{} is not eligible by the rules", i);
            let best = open.iter().map(|j| spec_rank(&specs[*j], &route, &tried_domains)).min().unwrap();
            let view: Vec<String> = all.iter().map(|u| format!("{} head={:?} in_sync={} usable={} status={:?}", u.name(), u.active().head(), route.in_sync(u), u.is_usable(), u.active().status())).collect();
            let got = spec_rank(&specs[i], &route, &tried_domains);
            prop_assert!(got == best, "a better upstream was passed over: picked u{} with rank {:?}, best {:?}; open {:?}; {:?} specs {:?} route {:?}", i, got, best, open, view, specs, route);
        }
    }
}

/// A healthy upstream at head 10 of this tier, in the failure domain of the same number.
fn healthy(tier: u8) -> Spec {
    Spec {
        tier,
        status: 0,
        head: 10,
        skipped: false,
        domain: tier,
        denies_method: false,
        broken: false,
        capped: false,
    }
}

#[test]
fn fallback_only_when_nothing_better_is_left() {
    let set = build(&[healthy(2), healthy(0)]);
    let route = Route::any();
    for _ in 0..50 {
        assert_eq!(
            set.next_best("m", &route, &[])
                .unwrap()
                .upstream
                .config
                .tier,
            Tier::Primary
        );
    }
    let primary = set.iter().find(|u| u.config.tier == Tier::Primary).unwrap();
    assert_eq!(
        set.next_best("m", &route, &[primary])
            .unwrap()
            .upstream
            .config
            .tier,
        Tier::Fallback
    );
}

#[test]
fn load_spreads_over_equal_upstreams() {
    let healthy = healthy(0);
    let set = build(&[healthy.clone(), healthy.clone(), healthy]);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..3000 {
        let u = set.next_best("m", &Route::any(), &[]).unwrap().upstream;
        *counts.entry(u.name().to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|c| *c > 600), "{counts:?}");
}

#[test]
fn a_slow_upstream_gets_less_traffic() {
    let healthy = healthy(0);
    let set = build(&[healthy.clone(), healthy]);
    let slow = set.iter().next().unwrap();
    for _ in 0..20 {
        slow.health().record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(200),
            None,
        );
    }
    let fast = set.iter().nth(1).unwrap();
    for _ in 0..20 {
        fast.health().record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(5),
            None,
        );
    }
    let slow_picks = (0..2000)
        .filter(|_| {
            Arc::ptr_eq(
                set.next_best("m", &Route::any(), &[]).unwrap().upstream,
                slow,
            )
        })
        .count();
    // Odds on the squared scores (201 against 6): about 1 in 1000.
    assert!(slow_picks < 20, "{slow_picks}");
}

#[test]
fn the_odds_of_two_choices() {
    let share = |sa: f64, sb: f64| {
        (0..1000)
            .filter(|i| takes_first(sa, sb, f64::from(*i) / 1000.0))
            .count()
    };
    assert_eq!(share(5.0, 5.0), 500);
    assert_eq!(share(1.0, 3.0), 900);
    assert_eq!(share(3.0, 1.0), 100);
    assert_eq!(share(1.0, 1000.0), 1000);
    assert_eq!(share(f64::INFINITY, 2.0), 0);
    assert_eq!(share(f64::NAN, 2.0), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hung_upstream_gets_almost_no_new_calls_and_a_quiet_one_gets_tried_again() {
    let set = build(&[healthy(0), healthy(0), healthy(0)]);
    for u in set.iter() {
        for _ in 0..20 {
            u.health().record(
                Outcome::Success,
                Cost::Normal,
                Duration::from_millis(2),
                None,
            );
        }
    }
    let hung = set.iter().next().unwrap();
    let picks_of = |u: &Arc<Upstream>| {
        (0..3000)
            .filter(|_| Arc::ptr_eq(set.next_best("m", &Route::any(), &[]).unwrap().upstream, u))
            .count()
    };
    // About a third each.
    assert!((700..1300).contains(&picks_of(hung)));
    // It takes attempts and answers none of them: its figure grows by the millisecond.
    let stuck: Vec<_> = (0..3).map(|_| hung.health().start(Cost::Normal)).collect();
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(picks_of(hung) < 15);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(picks_of(hung) < 3);
    // Given up (hedged elsewhere) after half a second each: in the average.
    drop(stuck);
    assert!(picks_of(hung) < 15);
    // No traffic for a while: its figure decays and it is tried again.
    tokio::time::advance(Duration::from_secs(60)).await;
    for u in set.iter().skip(1) {
        u.health().record(
            Outcome::Success,
            Cost::Normal,
            Duration::from_millis(2),
            None,
        );
    }
    assert!(picks_of(hung) > 300);
}

#[test]
fn max_rps_never_spills_to_a_lagging_upstream() {
    let capped = Spec {
        capped: true,
        ..healthy(0)
    };
    let lagging = Spec {
        head: 2,
        ..healthy(1)
    };
    let set = build(&[capped, lagging]);
    let route = Route {
        chain_head: Some(10),
        max_lag_blocks: 3,
        ..Route::any()
    };
    assert!(
        matches!(set.select("m", &route, &[]), Selection::OverRate(_)),
        "waits for room rather than asking a node 8 blocks behind"
    );
    // Another in-sync upstream of a worse tier takes the excess.
    let set = build(&[
        Spec {
            capped: true,
            ..healthy(0)
        },
        healthy(2),
    ]);
    let p = set
        .next_best("m", &route, &[])
        .expect("spilled within the class");
    assert_eq!(p.upstream.config.tier, Tier::Fallback);
}
