//! Prometheus metrics of one relay (a registry per instance, so tests can run several).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Seconds; fine-grained below 250 ms where the outbox-lag SLO lives.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

pub struct Metrics {
    registry: Registry,
    /// Age of the oldest unsent outbox row (0 when drained). Refreshed every second.
    pub outbox_lag_seconds: Gauge,
    pub outbox_pending: IntGauge,
    pub outbox_processing: IntGauge,
    pub published: IntCounter,
    /// Failed publishes by reason: `broker` or `chaos`.
    pub failed: IntCounterVec,
    pub chaos_failures: IntCounter,
    pub reaped: IntCounter,
    pub purged: IntCounter,
    pub batch_size: Histogram,
    /// From handing a batch to the producer until its last ack.
    pub publish_seconds: Histogram,
    /// Per event: outbox commit (`created_at`) until the broker's ack.
    pub event_lag_seconds: Histogram,
    pub wakeups: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            outbox_lag_seconds: Gauge::new(
                "outbox_lag_seconds",
                "Age of the oldest outbox row not yet sent (0 when drained)",
            )
            .expect("valid metric"),
            outbox_pending: IntGauge::new("outbox_pending", "Outbox rows waiting to be claimed")
                .expect("valid metric"),
            outbox_processing: IntGauge::new(
                "outbox_processing",
                "Outbox rows claimed by some relay and not yet marked",
            )
            .expect("valid metric"),
            published: IntCounter::new(
                "relay_published_total",
                "Events acked by the broker and marked sent",
            )
            .expect("valid metric"),
            failed: IntCounterVec::new(
                Opts::new(
                    "relay_publish_failed_total",
                    "Publishes that failed and were rescheduled, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            chaos_failures: IntCounter::new(
                "relay_chaos_failures_total",
                "Publishes failed on purpose by --chaos-failure-rate",
            )
            .expect("valid metric"),
            reaped: IntCounter::new(
                "relay_reaped_total",
                "Rows returned to pending after their claim expired",
            )
            .expect("valid metric"),
            purged: IntCounter::new("relay_purged_total", "Sent rows deleted by retention")
                .expect("valid metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("relay_batch_size", "Rows claimed per step")
                    .buckets(BATCH_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            publish_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "relay_publish_duration_seconds",
                    "Time from handing a batch to the producer until every delivery report",
                )
                .buckets(LAG_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            event_lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "outbox_event_lag_seconds",
                    "Per event: outbox commit until the broker acked it",
                )
                .buckets(LAG_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            wakeups: IntCounterVec::new(
                Opts::new(
                    "relay_wakeups_total",
                    "Why an idle relay woke up: notify or poll",
                ),
                &["cause"],
            )
            .expect("valid metric"),
            registry,
        };
        m.register();
        m
    }

    fn register(&self) {
        let r = &self.registry;
        for c in [
            Box::new(self.outbox_lag_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.outbox_pending.clone()),
            Box::new(self.outbox_processing.clone()),
            Box::new(self.published.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.chaos_failures.clone()),
            Box::new(self.reaped.clone()),
            Box::new(self.purged.clone()),
            Box::new(self.batch_size.clone()),
            Box::new(self.publish_seconds.clone()),
            Box::new(self.event_lag_seconds.clone()),
            Box::new(self.wakeups.clone()),
        ] {
            r.register(c).expect("metric registered once");
        }
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails for valid metrics");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
