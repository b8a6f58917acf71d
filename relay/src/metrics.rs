//! Prometheus metrics of one relay (a registry per instance, so tests can run several).

use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge};

/// Seconds; fine-grained below 250 ms where the outbox-lag SLO lives.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

pub struct Metrics {
    /// Every metric above; `/metrics` renders it.
    pub registry: ops::metrics::Registry,
    /// Age of the oldest unsent outbox row (0 when drained). Refreshed every second.
    pub outbox_lag_seconds: Gauge,
    pub outbox_pending: IntGauge,
    pub outbox_processing: IntGauge,
    pub published: IntCounter,
    /// Failed publishes by reason: `broker` or `chaos`.
    pub failed: IntCounterVec,
    pub chaos_failures: IntCounter,
    pub reaped: IntCounter,
    pub taken_over: IntCounter,
    pub liveness_lock_held: IntGauge,
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
        let r = ops::metrics::Registry::new();
        Metrics {
            outbox_lag_seconds: r.float_gauge(
                "outbox_lag_seconds",
                "Age of the oldest outbox row not yet sent (0 when drained)",
            ),
            outbox_pending: r.gauge("outbox_pending", "Outbox rows waiting to be claimed"),
            outbox_processing: r.gauge(
                "outbox_processing",
                "Outbox rows claimed by some relay and not yet marked",
            ),
            published: r.counter(
                "relay_published_total",
                "Events acked by the broker and marked sent",
            ),
            failed: r.counter_vec_zeroed(
                "relay_publish_failed_total",
                "Publishes that failed and were rescheduled, by reason",
                &["reason"],
                &[&["broker"], &["chaos"]],
            ),
            chaos_failures: r.counter(
                "relay_chaos_failures_total",
                "Publishes failed on purpose by --chaos-failure-rate",
            ),
            reaped: r.counter(
                "relay_reaped_total",
                "Rows returned to pending after their claim expired",
            ),
            taken_over: r.counter(
                "relay_claims_taken_over_total",
                "Rows of dead relays (liveness lock free) returned to pending before the claim timeout",
            ),
            liveness_lock_held: r.gauge(
                "relay_liveness_lock_held",
                "1 while this relay holds its liveness lock (RELAY_LIVENESS_LOCK)",
            ),
            purged: r.counter("relay_purged_total", "Sent rows deleted by retention"),
            batch_size: r.histogram("relay_batch_size", "Rows claimed per step", BATCH_BUCKETS),
            publish_seconds: r.histogram(
                "relay_publish_duration_seconds",
                "Time from handing a batch to the producer until every delivery report",
                LAG_BUCKETS,
            ),
            event_lag_seconds: r.histogram(
                "outbox_event_lag_seconds",
                "Per event: outbox commit until the broker acked it",
                LAG_BUCKETS,
            ),
            wakeups: r.counter_vec(
                "relay_wakeups_total",
                "Why an idle relay woke up: notify or poll",
                &["cause"],
            ),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
