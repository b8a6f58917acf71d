//! Prometheus metrics of one notifier (a registry per instance, so tests can run several).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Seconds: end-to-end latency spans milliseconds (healthy) to minutes (backlog).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

pub struct Metrics {
    registry: Registry,
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
        let m = Metrics {
            registry: Registry::new(),
            processed: IntCounter::new(
                "notifier_processed_total",
                "Events that produced a notification",
            )
            .expect("valid metric"),
            duplicates: IntCounter::new(
                "notifier_duplicates_total",
                "Redelivered events skipped because processed_events already had them",
            )
            .expect("valid metric"),
            dlq: IntCounterVec::new(
                Opts::new(
                    "notifier_dlq_total",
                    "Messages sent to the dead-letter topic",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            retries: IntCounter::new(
                "notifier_retries_total",
                "Handling attempts retried because Postgres was unavailable",
            )
            .expect("valid metric"),
            stalled: IntGauge::new(
                "notifier_stalled",
                "1 while the consumer waits out a database failure with its partitions paused",
            )
            .expect("valid metric"),
            e2e_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "notifier_e2e_latency_seconds",
                    "Outbox commit (event created_at) until the notification was committed",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            handle_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "notifier_handle_duration_seconds",
                    "Duration of one handling transaction",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "High watermark minus consumer position, per assigned partition",
                ),
                &["topic", "partition"],
            )
            .expect("valid metric"),
            assigned_partitions: IntGauge::new(
                "consumer_assigned_partitions",
                "Partitions currently assigned to this consumer",
            )
            .expect("valid metric"),
            rebalances: IntCounterVec::new(
                Opts::new(
                    "consumer_rebalances_total",
                    "Consumer group rebalance events, by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.processed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.duplicates.clone()),
            Box::new(m.dlq.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.stalled.clone()),
            Box::new(m.e2e_latency.clone()),
            Box::new(m.handle_seconds.clone()),
            Box::new(m.consumer_lag.clone()),
            Box::new(m.assigned_partitions.clone()),
            Box::new(m.rebalances.clone()),
        ] {
            m.registry.register(c).expect("metric registered once");
        }
        m
    }

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
