//! Prometheus metrics of one service instance (a registry per `App`, so tests can run several).

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Latency buckets in seconds: fine-grained below 50 ms where the SLOs live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

pub struct Metrics {
    /// Every metric above; `/metrics` renders it.
    pub registry: ops::metrics::Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    /// Business requests shed by admission control (503 `overloaded`), and its MAX_IN_FLIGHT
    /// (0: off).
    pub http_shed: IntCounter,
    pub http_admission_limit: IntGauge,
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
    pub sse: SseMetrics,
}

/// The event stream's (`GET /v1/events`).
pub struct SseMetrics {
    /// Streams open now; whether the feed's LISTEN connection is up.
    pub streams: IntGauge,
    pub listening: IntGauge,
    /// Changes sent; `reset` events (incomplete resumes); refused streams by
    /// `reason="user_cap"|"global_cap"`.
    pub events: IntCounter,
    pub resets: IntCounter,
    pub refused: IntCounterVec,
}

impl SseMetrics {
    fn new(r: &ops::metrics::Registry) -> Self {
        Self {
            streams: r.gauge("sse_streams_open", "Event streams open on this replica"),
            listening: r.gauge(
                "sse_feed_listening",
                "1 while the event feed's LISTEN connection to Postgres is up",
            ),
            events: r.counter("sse_events_sent_total", "Changes sent on event streams"),
            resets: r.counter(
                "sse_resets_total",
                "reset events sent: resumes outside the replay window, or missed changes",
            ),
            refused: r.counter_vec_zeroed(
                "sse_streams_refused_total",
                "Event streams refused by cap",
                &["reason"],
                &[&["user_cap"], &["global_cap"]],
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = ops::metrics::Registry::new();
        Self {
            http_requests: r.counter_vec(
                "http_requests_total",
                "HTTP requests by method, route template and status",
                &["method", "route", "status"],
            ),
            http_duration: r.histogram_vec(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
                &["method", "route"],
                LATENCY_BUCKETS,
            ),
            http_in_flight: r.gauge("http_requests_in_flight", "HTTP requests being served"),
            http_shed: r.counter(
                "http_requests_shed_total",
                "Business requests shed by admission control (503 overloaded)",
            ),
            http_admission_limit: r.gauge(
                "http_admission_limit",
                "Business requests served at once before shedding (MAX_IN_FLIGHT; 0 = off)",
            ),
            http_connections: r.gauge(
                "http_connections_open",
                "Client connections open (at MAX_CONNECTIONS new ones wait in the listen backlog)",
            ),
            http_connections_max: r.gauge("http_connections_max", "MAX_CONNECTIONS"),
            cache_requests: r.counter_vec(
                "cache_requests_total",
                "Cache lookups by cache, layer and result",
                &["cache", "layer", "result"],
            ),
            cache_db_loads: r.counter_vec(
                "cache_db_loads_total",
                "Cache misses that were loaded from the database",
                &["cache"],
            ),
            redis_degraded: r.counter_vec_zeroed(
                "redis_degraded_total",
                "Operations that went on without Redis (error or timeout)",
                &["op"],
                &[
                    &["idempotency_get"],
                    &["idempotency_set"],
                    &["list_cache_get"],
                    &["list_cache_set"],
                    &["list_cache_invalidate"],
                ],
            ),
            idempotency_replays: r.counter_vec(
                "idempotency_replays_total",
                "Requests answered from an earlier request with the same Idempotency-Key",
                &["source"],
            ),
            db_pool: r.gauge_vec(
                "db_pool_connections",
                "Postgres pool connections by state",
                &["state"],
            ),
            attachment_uploads: r.counter_vec(
                "attachment_uploads_total",
                "Attachment uploads by outcome",
                &["outcome"],
            ),
            attachment_bytes: r.counter(
                "attachment_upload_bytes_total",
                "Bytes of attachments written to the object store",
            ),
            object_cleanups: r.counter_vec(
                "object_cleanups_total",
                "Unreferenced uploads removed from the object store (abort or delete), by outcome",
                &["action", "outcome"],
            ),
            sse: SseMetrics::new(&r),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
