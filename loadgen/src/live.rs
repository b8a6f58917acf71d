//! The run's live series for Prometheus (issue #13), served at `--metrics-addr` (default
//! 127.0.0.1:9103, which the stack's Prometheus scrapes every second) while the run goes, every
//! series labelled with the run's `run_id`.
//!
//! A scrape endpoint rather than remote write: it is what the services already expose, it
//! needs no flag on the user's Prometheus (remote write needs its receiver switched on), a run
//! that dies leaves no half-pushed batch behind, and `up{job="loadgen"}` tells a stalled
//! generator from an idle one. Archived runs go the other way (`loadgen publish`): their
//! seconds are in the past, which only a push can write.
//!
//! What the histograms count is what the report counts: latency from the slot's intended start
//! (answers only; failures in `loadgen_responses_total{outcome="error"}`), service time from the
//! actual send, send delay for slots a free worker took. Warm-up requests are included (the
//! report leaves them out): a dashboard shows the whole run, `loadgen_window_start_seconds`
//! says where the measured window begins.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus::{Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};
use tokio_util::sync::CancellationToken;

use crate::config::Op;
use crate::record::Sample;

/// Seconds: fine below 20 ms, where the SLOs live, up to a minute of stall.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];
/// The generator's own lateness: microseconds to a few milliseconds matter.
const DELAY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// What the schedule says at a scrape (engine::Shared::schedule).
pub struct Schedule {
    /// Slots released (due) so far.
    pub released: u64,
    /// Due and not yet taken by a worker; None once the run is over (the gauge then holds the
    /// report's count).
    pub waiting: Option<u64>,
    pub in_flight: usize,
    /// The measured window's start, Unix ms.
    pub window_start_ms: i64,
}

pub struct Live {
    registry: ops::metrics::Registry,
    arrivals: IntCounter,
    responses: IntCounterVec,
    latency: HistogramVec,
    service: HistogramVec,
    send_delay: Histogram,
    late: IntCounter,
    not_sent: IntGauge,
    in_flight: IntGauge,
    window_start: Gauge,
}

impl Live {
    pub fn new(run_id: &str, target_rps: f64) -> Self {
        let r = ops::metrics::Registry::with_labels(&[("run_id", run_id)]);
        let rps = r.float_gauge("loadgen_target_rps", "The arrival rate asked for (--rps)");
        rps.set(target_rps);
        Live {
            arrivals: r.counter(
                "loadgen_arrivals_total",
                "Arrival slots due so far (sent or not): rate() is the arrival rate",
            ),
            responses: r.counter_vec_zeroed(
                "loadgen_responses_total",
                "Responses by completion time, by operation and outcome (ok|error); \
                 rate(outcome=\"ok\") without create_retry is the throughput",
                &["op", "outcome"],
                &Op::ALL
                    .map(|op| [op.name(), "error"])
                    .iter()
                    .map(|l| &l[..])
                    .collect::<Vec<_>>(),
            ),
            latency: r.histogram_vec(
                "loadgen_latency_seconds",
                "Successful requests: intended start (the slot) to response, CO-corrected",
                &["op"],
                LATENCY_BUCKETS,
            ),
            service: r.histogram_vec(
                "loadgen_service_time_seconds",
                "Successful requests: actual send to response",
                &["op"],
                LATENCY_BUCKETS,
            ),
            send_delay: r.histogram(
                "loadgen_send_delay_seconds",
                "Slots a free worker took: actual send minus due (the generator's lateness)",
                DELAY_BUCKETS,
            ),
            late: r.counter(
                "loadgen_late_starts_total",
                "Requests that waited over 1 ms past their slot for a free worker",
            ),
            not_sent: r.gauge(
                "loadgen_not_sent",
                "Slots due and not yet sent (after the run: measured slots never answered)",
            ),
            in_flight: r.gauge("loadgen_in_flight", "Requests in flight"),
            window_start: r.float_gauge(
                "loadgen_window_start_seconds",
                "When the measured window begins (after the warm-up), Unix seconds",
            ),
            registry: r,
        }
    }

    /// One answer (or failure), as the recorder gets it.
    pub fn observe(&self, s: &Sample) {
        let op = s.op.name();
        let outcome = if s.ok { "ok" } else { "error" };
        self.responses.with_label_values(&[op, outcome]).inc();
        if s.ok {
            let (c, v) = (s.corrected.as_secs_f64(), s.service.as_secs_f64());
            self.latency.with_label_values(&[op]).observe(c);
            self.service.with_label_values(&[op]).observe(v);
        }
        if let Some(d) = s.generator_delay {
            self.send_delay.observe(d.as_secs_f64());
        }
        if s.start_delay > crate::record::LATE_THRESHOLD && s.op != Op::CreateRetry {
            self.late.inc();
        }
    }

    /// The counts only the schedule knows, brought up to date before a scrape.
    fn refresh(&self, now: &Schedule) {
        self.arrivals
            .inc_by(now.released.saturating_sub(self.arrivals.get()));
        if let Some(waiting) = now.waiting {
            self.not_sent.set(waiting as i64);
        }
        self.in_flight.set(now.in_flight as i64);
        self.window_start.set(now.window_start_ms as f64 / 1000.0);
    }

    /// After the run: the report's count of measured slots never answered.
    pub fn set_final_not_sent(&self, n: u64) {
        self.not_sent.set(n as i64);
    }

    /// The page, the schedule's counts as of now (None before the schedule started).
    pub fn render(&self, now: Option<Schedule>) -> String {
        if let Some(now) = now {
            self.refresh(&now);
        }
        self.registry.render()
    }
}

/// Serves `/metrics` (the text `page` makes) at `addr` until `stop`; a taken port (another run
/// exporting) is a warning, not a failed run.
pub async fn serve<F>(addr: SocketAddr, page: F, stop: CancellationToken)
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loadgen: note: live metrics not exported: binding {addr}: {e}");
            return;
        }
    };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let page = page.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    page(),
                )
            }
        }),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        eprintln!("loadgen: note: live metrics endpoint failed: {e}");
    }
}

/// How long the endpoint stays up after the report is written, so Prometheus (scraping every
/// second) sees the final counts.
pub const LINGER: Duration = Duration::from_millis(1500);
