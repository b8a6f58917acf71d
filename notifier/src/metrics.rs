//! Prometheus metrics of one notifier (a registry per instance, so tests can run several).

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Seconds: end-to-end latency spans milliseconds (healthy) to minutes (backlog).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

pub struct Metrics {
    /// Every metric above; `/metrics` renders it.
    pub registry: ops::metrics::Registry,
    pub processed: IntCounter,
    pub duplicates: IntCounter,
    /// Messages sent to the DLQ, by reason (`undecodable`, `rejected`, `database`).
    pub dlq: IntCounterVec,
    pub retries: IntCounter,
    /// 1 while the consumer waits out a database failure with its partitions paused.
    pub stalled: IntGauge,
    /// Event `created_at` (outbox commit) until the notification committed.
    pub e2e_latency: Histogram,
    /// One handling transaction (a batch, or one message on the retry path).
    pub handle_seconds: Histogram,
    /// High watermark minus this consumer's position, per partition (from librdkafka stats).
    pub consumer_lag: IntGaugeVec,
    /// Partitions this consumer holds now (0 while rebalancing or when the group has no room).
    pub assigned_partitions: IntGauge,
    /// Group rebalances seen, by `kind` (`assign`, `revoke`, `error`).
    pub rebalances: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let r = ops::metrics::Registry::new();
        Metrics {
            processed: r.counter(
                "notifier_processed_total",
                "Events that produced a notification",
            ),
            duplicates: r.counter(
                "notifier_duplicates_total",
                "Redelivered events skipped because processed_events already had them",
            ),
            dlq: r.counter_vec_zeroed(
                "notifier_dlq_total",
                "Messages sent to the dead-letter topic",
                &["reason"],
                &[&["undecodable"], &["rejected"], &["refused"]],
            ),
            retries: r.counter(
                "notifier_retries_total",
                "Handling attempts retried because Postgres was unavailable",
            ),
            stalled: r.gauge(
                "notifier_stalled",
                "1 while the consumer waits out a database failure with its partitions paused",
            ),
            e2e_latency: r.histogram(
                "notifier_e2e_latency_seconds",
                "Outbox commit (event created_at) until the notification was committed",
                LATENCY_BUCKETS,
            ),
            handle_seconds: r.histogram(
                "notifier_handle_duration_seconds",
                "Duration of one handling transaction",
                LATENCY_BUCKETS,
            ),
            consumer_lag: r.gauge_vec(
                "consumer_lag",
                "High watermark minus consumer position, per assigned partition",
                &["topic", "partition"],
            ),
            assigned_partitions: r.gauge(
                "consumer_assigned_partitions",
                "Partitions currently assigned to this consumer",
            ),
            rebalances: r.counter_vec(
                "consumer_rebalances_total",
                "Consumer group rebalance events, by kind",
                &["kind"],
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
