//! The chain's health checkers, one per upstream: probe it (the family says what to ask and
//! judges the answers; this does the I/O), apply the verdict to its `crate::health` state,
//! recompute the chain head, wait a jittered interval, repeat until told to stop.

use std::sync::Arc;
use std::time::Duration;

use metrics::Gauge;
use tokio::sync::{watch, Notify};

use crate::config::HealthPolicy;
use crate::family::{ChainFamily, FamilyCall, ProbeAnswer, ProbeVerdict};
use crate::health::ChainHead;
use crate::jsonrpc::Payload;
use crate::upstream::{read_reply, HealthStatus, Upstream};

/// The id of every probe: a string, never used by requests (their ids are numbers), so that
/// probes stand out in an upstream's logs.
const PROBE_ID: &[u8] = br#""health""#;

/// What the checkers of one chain share.
#[derive(Debug)]
pub struct ChainHealth {
    pub chain: Arc<str>,
    pub family: Arc<dyn ChainFamily>,
    pub upstreams: Arc<[Arc<Upstream>]>,
    pub head: Arc<ChainHead>,
    pub policy: HealthPolicy,
    pub max_lag_blocks: u64,
    pub head_gauge: Gauge,
    pub finalized_gauge: Gauge,
    pub finality: Finality,
    /// The newest blocks' hashes, followed by `chain::follow` (while the cache is on).
    pub canonical: Arc<crate::health::CanonicalWindow>,
    /// Signalled after every probe, for requests waiting on a first verdict.
    pub probed: Arc<Notify>,
}

/// Where the chain's finalized block comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// The upstreams' own finalized blocks (the family's `finalized_call`), asked every
    /// `FINALITY_EVERY` probes.
    Probed,
    /// This many blocks under the chain head (a chain without a finality tag).
    Depth(u64),
    /// Not tracked (nothing needs it: the cache is off).
    Off,
}

/// A finality probe every this many health probes (the first included): finality moves in
/// steps of minutes on Ethereum, and every request costs a paid provider's customer.
pub const FINALITY_EVERY: u64 = 4;

impl ChainHealth {
    /// Recompute the chain head from the healthy upstreams and publish heads and lags.
    pub fn refresh_head(&self) {
        let healthy = self
            .upstreams
            .iter()
            .map(|u| u.active())
            .filter(|a| a.status() == HealthStatus::Healthy);
        let heads: Vec<u64> = healthy.clone().filter_map(|a| a.head()).collect();
        let before = self.head.get();
        let (head, went_back) = self.head.update(
            &heads,
            crate::health::outlier_tolerance(self.max_lag_blocks),
        );
        if went_back {
            tracing::warn!(chain = %self.chain, from = ?before, to = ?head, "chain head went back: the upstreams agree on a lower head (reorg or chain reset)");
        }
        if let Some(h) = head {
            self.head_gauge.set(h as f64);
        }
        let finalized = match self.finality {
            Finality::Probed => crate::health::robust_finalized(
                &healthy.filter_map(|a| a.finalized()).collect::<Vec<_>>(),
            ),
            Finality::Depth(d) => head.and_then(|h| h.checked_sub(d)),
            Finality::Off => None,
        };
        self.head.advance_finalized(finalized, went_back);
        if let Some(f) = self.head.finalized() {
            self.finalized_gauge.set(f as f64);
        }
        for u in self.upstreams.iter() {
            u.publish_health(head);
        }
    }
}

/// Probe `upstream` until `stop` turns true.
pub async fn run(ctx: Arc<ChainHealth>, upstream: Arc<Upstream>, mut stop: watch::Receiver<bool>) {
    loop {
        // The chain id is checked on every probe: an endpoint re-pointed at another chain
        // (a provider's misrouting, a node restarted with another genesis) must be out at the
        // next probe, not ten probes later. It costs one small request.
        let started = tokio::time::Instant::now();
        let finality =
            ctx.finality == Finality::Probed && upstream.active().probes() % FINALITY_EVERY == 0;
        let probe = async {
            tokio::join!(probe(&ctx, &upstream), async {
                if finality {
                    Some(probe_finalized(&ctx, &upstream).await)
                } else {
                    None
                }
            },)
        };
        let (verdict, finalized) = tokio::select! {
            v = probe => v,
            _ = stop.changed() => return,
        };
        if let Some(f) = finalized {
            upstream.active().set_finalized(f);
        }
        if matches!(
            verdict,
            ProbeVerdict::Healthy { .. } | ProbeVerdict::Syncing { .. }
        ) {
            upstream.active().record_probe_latency(started.elapsed());
        }
        // Its reasons quote the upstream's own words, shown in `/status` and logged.
        let verdict = match verdict {
            ProbeVerdict::Failed(why) => ProbeVerdict::Failed(upstream.scrub(&why)),
            ProbeVerdict::WrongChain(why) => ProbeVerdict::WrongChain(upstream.scrub(&why)),
            v => v,
        };
        if let Some(t) = upstream.active().apply(&verdict) {
            upstream.health_changed(&t);
        }
        upstream.refresh_breaker();
        ctx.refresh_head();
        ctx.probed.notify_waiters();
        tokio::select! {
            () = tokio::time::sleep(jittered(ctx.policy.interval)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One probe: the family's calls, sent at once, and its verdict on their answers.
async fn probe(ctx: &ChainHealth, upstream: &Upstream) -> ProbeVerdict {
    let calls = ctx.family.probe_calls();
    let answers = futures_util::future::join_all(calls.iter().map(|c| ask(ctx, upstream, c))).await;
    ctx.family.judge_probe(&answers)
}

/// Send one probe call.
async fn ask(ctx: &ChainHealth, upstream: &Upstream, call: &FamilyCall) -> ProbeAnswer {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let reply = match upstream
        .client()
        .probe(call.encode(PROBE_ID), ctx.policy.timeout)
        .await
    {
        Ok(reply) => reply,
        Err(e) => return ProbeAnswer::Failed(format!("{}: {e}", call.method)),
    };
    match read_reply(PROBE_ID, &reply, ctx.family.answer_statuses()) {
        Ok(Payload::Result(r)) => ProbeAnswer::Result(text(&r)),
        Ok(Payload::Error(e)) => ProbeAnswer::Error(text(&e)),
        Err((_, why)) => ProbeAnswer::Failed(format!("{}: {why}", call.method)),
    }
}

/// The finalized block the upstream reports; `None` when it does not say (a node without
/// the tag, an error, no answer in time).
async fn probe_finalized(ctx: &ChainHealth, upstream: &Upstream) -> Option<u64> {
    match ask(ctx, upstream, &ctx.family.finalized_call()?).await {
        ProbeAnswer::Result(r) => ctx.family.parse_finalized(r.as_bytes()),
        _ => None,
    }
}

/// `interval` ± 10%, so that the probes of many upstreams (and of many Manifold replicas)
/// do not fall in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::config::Config;
    use crate::family::{
        BlockNeed, Broadcast, BroadcastVerdict, ErrorClass, FamilyCall, Inclusion, MethodClass,
        MethodLabels, ProbeVerdict,
    };
    use crate::metrics::Metrics;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(10);
        for _ in 0..1000 {
            let j = jittered(base);
            assert!(
                j >= Duration::from_secs(9) && j <= Duration::from_secs(11),
                "{j:?}"
            );
        }
    }

    /// A family whose probes return scripted verdicts, without any network: the trait seam a
    /// new chain family plugs into.
    #[derive(Debug, Default)]
    struct Scripted {
        verdicts: Mutex<VecDeque<ProbeVerdict>>,
        probes: AtomicUsize,
    }

    impl ChainFamily for Scripted {
        fn probe_calls(&self) -> Vec<FamilyCall> {
            // No network: the verdicts are scripted.
            Vec::new()
        }
        fn judge_probe(&self, answers: &[ProbeAnswer]) -> ProbeVerdict {
            assert!(answers.is_empty());
            self.probes.fetch_add(1, Ordering::SeqCst);
            self.verdicts
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(ProbeVerdict::Healthy { head: 100 })
        }
        fn classify(&self, _: &str, _: Option<&[u8]>) -> MethodClass {
            MethodClass {
                need: BlockNeed::Any,
                block_lookup: false,
                cost: crate::family::Cost::Normal,
            }
        }
        fn is_repeatable(&self, _: &str) -> bool {
            true
        }
        fn classify_error(&self, _: &str, _: &[u8]) -> ErrorClass {
            ErrorClass::Answer
        }
        fn check_answer(&self, _: &str, _: &[u8]) -> Option<ProbeVerdict> {
            None
        }
        fn broadcast(&self, _: &str, _: Option<&[u8]>) -> Option<Result<Broadcast, String>> {
            None
        }
        fn broadcast_verdict(&self, _: &[u8]) -> Option<BroadcastVerdict> {
            None
        }
        fn receipt_call(&self, _: &str) -> FamilyCall {
            FamilyCall::new("receipt", "[]".into())
        }
        fn inclusion(&self, _: &[u8]) -> Option<Inclusion> {
            None
        }
        fn mined_count_call(&self, _: &str) -> Option<FamilyCall> {
            None
        }
        fn parse_count(&self, _: &[u8]) -> Option<u64> {
            None
        }
        fn pending_count_read(&self, _: &str, _: Option<&[u8]>) -> Option<String> {
            None
        }
        fn count_result(&self, _: u64) -> bytes::Bytes {
            bytes::Bytes::new()
        }
        fn method_labels(&self) -> MethodLabels {
            MethodLabels::new(&[])
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_each_interval_and_flips_only_after_a_run() {
        let config = Config::from_toml(
            "[[chains]]\nname = \"c\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\n\
             [chains.policy.health]\ninterval = \"10s\"\ntimeout = \"1s\"\nrise = 2\nfall = 2\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let chain = &config.chains[0];
        let family = Arc::new(Scripted::default());
        let failed = || ProbeVerdict::Failed("no answer".into());
        family.verdicts.lock().unwrap().extend([
            failed(),
            ProbeVerdict::Healthy { head: 10 },
            ProbeVerdict::Healthy { head: 10 },
            failed(),
            failed(),
            ProbeVerdict::Healthy { head: 12 },
            ProbeVerdict::Healthy { head: 13 },
        ]);
        let metrics = Metrics::new();
        let upstream = Arc::new(
            Upstream::new(
                &chain.name,
                chain.upstreams[0].clone(),
                &metrics,
                crate::upstream::AnswerLimit::unbudgeted(1 << 20),
                &chain.policy.health,
                &chain.policy.breaker,
                family.clone(),
            )
            .unwrap(),
        );
        let ctx = Arc::new(ChainHealth {
            chain: chain.name.clone(),
            family: family.clone(),
            upstreams: vec![upstream.clone()].into(),
            head: Arc::new(ChainHead::new(Duration::from_secs(30))),
            policy: chain.policy.health.clone(),
            max_lag_blocks: 3,
            head_gauge: metrics.gauge("manifold_chain_head_block", vec![]),
            finalized_gauge: metrics.gauge("manifold_chain_finalized_block", vec![]),
            finality: Finality::Off,
            canonical: Arc::new(crate::health::CanonicalWindow::new()),
            probed: Arc::new(Notify::new()),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(ctx.clone(), upstream.clone(), stopped));
        let probes = || family.probes.load(Ordering::SeqCst);
        let settle = || async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };
        settle().await;
        assert_eq!(probes(), 1, "the first probe runs at once");
        assert_eq!(upstream.active().status(), HealthStatus::Unhealthy);
        for _ in 0..2 {
            tokio::time::advance(Duration::from_secs(11)).await;
            settle().await;
        }
        assert_eq!(probes(), 3);
        assert_eq!(
            upstream.active().status(),
            HealthStatus::Healthy,
            "rise = 2"
        );
        assert_eq!(ctx.head.get(), Some(10));
        let mut seen = Vec::new();
        for _ in 0..4 {
            // The longest jittered wait is 11 s, the shortest 9 s: one probe per 11 s step.
            tokio::time::advance(Duration::from_secs(11)).await;
            settle().await;
            seen.push(upstream.active().status());
        }
        assert_eq!(probes(), 7);
        assert_eq!(
            seen,
            vec![
                HealthStatus::Healthy,
                HealthStatus::Unhealthy,
                HealthStatus::Unhealthy,
                HealthStatus::Healthy
            ]
        );
        assert_eq!(ctx.head.get(), Some(13));
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
