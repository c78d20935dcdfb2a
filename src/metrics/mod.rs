//! Prometheus metrics (`manifold_` prefix, bounded labels), served at the admin `/metrics`.
//!
//! Each `Manifold` instance owns its recorder rather than installing a global one, so
//! several instances in one process (the tests) keep separate counts. Handles are resolved
//! once and cached (`LabelTable`), so the request path touches only atomics.
//!
//! A histogram sample is kept raw until the exporter folds it into its buckets, which it does
//! on a scrape or an upkeep: `spawn_upkeep` runs the upkeep on a timer, so that memory stays
//! flat for months when nobody scrapes `/metrics` (the exporter's own `install` would spawn
//! it; a recorder built for one instance has to be kept up by hand).

mod names;

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new("manifold", Level::INFO, Some(module_path!()));

/// Latency buckets in seconds: sub-millisecond (cache, local node) to slow `eth_getLogs`.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub use names::*;

pub struct Metrics {
    recorder: PrometheusRecorder,
    /// The limits' gauges, read when `/metrics` is rendered: nothing to update per call.
    limits: OnceLock<LimitGauges>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the edge's limits hold now: each semaphore with its size (the answer budget's
/// permits are bytes).
#[derive(Debug)]
pub struct LimitGauges {
    pub connections: (Arc<tokio::sync::Semaphore>, usize),
    pub calls: (Arc<tokio::sync::Semaphore>, usize),
    pub buffered_bytes: (Arc<tokio::sync::Semaphore>, usize),
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(LATENCY_BUCKETS) {
            Ok(b) => b,
            // Only fails on an empty bucket list, which LATENCY_BUCKETS is not.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        for (name, help) in DESCRIPTIONS {
            let key = KeyName::from(*name);
            if name.ends_with("_total") {
                recorder.describe_counter(key, None, (*help).into());
            } else if name.ends_with("_seconds") {
                recorder.describe_histogram(key, Some(metrics::Unit::Seconds), (*help).into());
            } else {
                recorder.describe_gauge(key, None, (*help).into());
            }
        }
        let this = Arc::new(Self {
            recorder,
            limits: OnceLock::new(),
        });
        this.gauge(
            BUILD_INFO,
            vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1.0);
        this
    }

    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &META)
    }

    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// Fold recorded histogram samples into their buckets every `every`, until `stop` turns
    /// true.
    pub fn spawn_upkeep(
        self: &Arc<Self>,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let handle = self.recorder.handle();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    changed = stop.changed() => {
                        // A sender gone is a stop too (else `changed` answers at once).
                        if changed.is_err() || *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// Report what `limits` hold in `/metrics` (set once; a second call is ignored).
    pub fn sample_limits(&self, limits: LimitGauges) {
        let _ = self.limits.set(limits);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(l) = self.limits.get() {
            let in_use = |(sem, max): &(Arc<tokio::sync::Semaphore>, usize)| {
                max.saturating_sub(sem.available_permits()) as f64
            };
            self.gauge(OPEN_CONNECTIONS, Vec::new())
                .set(in_use(&l.connections));
            self.gauge(CALLS_IN_FLIGHT, Vec::new())
                .set(in_use(&l.calls));
            self.gauge(BUFFERED_BYTES, Vec::new())
                .set(in_use(&l.buffered_bytes));
        }
        self.recorder.handle().render()
    }
}

/// Metric handles indexed by small integers (method label, outcome), registered on first
/// use: no series appears before it has a value, and no lookup happens after.
#[derive(Debug)]
pub struct LabelTable<T> {
    cells: Vec<OnceLock<T>>,
}

impl<T: Clone> LabelTable<T> {
    pub fn new(len: usize) -> Self {
        Self {
            cells: (0..len).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The handle at `index`, made by `make` the first time. Out-of-range indexes (a bug)
    /// get a fresh, unregistered handle rather than a panic.
    pub fn get(&self, index: usize, make: impl FnOnce() -> T) -> T {
        match self.cells.get(index) {
            Some(cell) => cell.get_or_init(make).clone(),
            None => make(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_help_and_labels() {
        let m = Metrics::new();
        m.counter(
            REQUESTS,
            vec![
                Label::new("chain", "eth"),
                Label::new("method", "eth_call"),
                Label::new("outcome", "success"),
            ],
        )
        .increment(2);
        m.histogram(
            REQUEST_DURATION,
            vec![Label::new("chain", "eth"), Label::new("method", "eth_call")],
        )
        .record(0.003);
        let text = m.render();
        assert!(text.contains("# HELP manifold_requests_total"), "{text}");
        assert!(
            text.contains(
                r#"manifold_requests_total{chain="eth",method="eth_call",outcome="success"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("manifold_request_duration_seconds_bucket{chain=\"eth\",method=\"eth_call\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("manifold_build_info{version="), "{text}");
    }

    #[test]
    fn instances_are_separate() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.counter(REJECTED, vec![Label::new("reason", "x")])
            .increment(1);
        assert!(a
            .render()
            .contains("manifold_rejected_requests_total{reason=\"x\"} 1"));
        assert!(!b.render().contains("reason=\"x\""));
    }

    #[test]
    fn label_table_registers_once() {
        let m = Metrics::new();
        let t: LabelTable<Counter> = LabelTable::new(2);
        let mut made = 0;
        for _ in 0..3 {
            t.get(1, || {
                made += 1;
                m.counter(REJECTED, vec![Label::new("reason", "y")])
            })
            .increment(1);
        }
        assert_eq!(made, 1);
        assert!(m
            .render()
            .contains("manifold_rejected_requests_total{reason=\"y\"} 3"));
    }
}
