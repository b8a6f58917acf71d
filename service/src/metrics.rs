//! Prometheus metrics of one service instance (a registry per `App`, so tests can run several).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets in seconds: fine-grained below 50 ms where the SLOs live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    /// Client connections open now, and how many the cap allows.
    pub http_connections: IntGauge,
    pub http_connections_max: IntGauge,
    /// `cache="list"`, `layer="l1"|"l2"`, `result="hit"|"miss"`.
    pub cache_requests: IntCounterVec,
    /// Loads that reached the database after missing both cache layers.
    pub cache_db_loads: IntCounterVec,
    /// Requests served without Redis because it failed or timed out, by operation.
    pub redis_degraded: IntCounterVec,
    /// Idempotent replays, by where the original was found (`redis` or `database`).
    pub idempotency_replays: IntCounterVec,
    /// Postgres pool connections, `state="in_use"|"idle"`; refreshed on every scrape.
    pub db_pool: IntGaugeVec,
    /// Attachment uploads by outcome (`stored`, `too_large`, `empty`, `bad_request`,
    /// `store_unavailable`, `store_error`, `db_error`).
    pub attachment_uploads: IntCounterVec,
    /// Bytes of attachments written to the object store.
    pub attachment_bytes: IntCounter,
    /// Deletes/aborts of objects no metadata references, `action`, `outcome="ok"|"failed"`.
    pub object_cleanups: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        let http_in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served")
            .expect("valid metric");
        let http_connections = IntGauge::new(
            "http_connections_open",
            "Client connections open (at MAX_CONNECTIONS new ones wait in the listen backlog)",
        )
        .expect("valid metric");
        let http_connections_max =
            IntGauge::new("http_connections_max", "MAX_CONNECTIONS").expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Cache lookups by cache, layer and result",
            ),
            &["cache", "layer", "result"],
        )
        .expect("valid metric");
        let cache_db_loads = IntCounterVec::new(
            Opts::new(
                "cache_db_loads_total",
                "Cache misses that were loaded from the database",
            ),
            &["cache"],
        )
        .expect("valid metric");
        let redis_degraded = IntCounterVec::new(
            Opts::new(
                "redis_degraded_total",
                "Operations that went on without Redis (error or timeout)",
            ),
            &["op"],
        )
        .expect("valid metric");
        let idempotency_replays = IntCounterVec::new(
            Opts::new(
                "idempotency_replays_total",
                "Requests answered from an earlier request with the same Idempotency-Key",
            ),
            &["source"],
        )
        .expect("valid metric");
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Postgres pool connections by state"),
            &["state"],
        )
        .expect("valid metric");
        let attachment_uploads = IntCounterVec::new(
            Opts::new("attachment_uploads_total", "Attachment uploads by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let attachment_bytes = IntCounter::new(
            "attachment_upload_bytes_total",
            "Bytes of attachments written to the object store",
        )
        .expect("valid metric");
        let object_cleanups = IntCounterVec::new(
            Opts::new(
                "object_cleanups_total",
                "Unreferenced uploads removed from the object store (abort or delete), by outcome",
            ),
            &["action", "outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(attachment_bytes.clone()))
            .expect("unique metric");
        for c in [
            &attachment_uploads,
            &object_cleanups,
            &http_requests,
            &cache_requests,
            &cache_db_loads,
            &redis_degraded,
            &idempotency_replays,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        for g in [&http_in_flight, &http_connections, &http_connections_max] {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(db_pool.clone()))
            .expect("unique metric");
        Self {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            http_connections,
            http_connections_max,
            cache_requests,
            cache_db_loads,
            redis_degraded,
            idempotency_replays,
            db_pool,
            attachment_uploads,
            attachment_bytes,
            object_cleanups,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
