//! The pipeline's figures over the measured window: outbox lag and end-to-end percentiles from
//! the growth of the services' histograms, and maxima of the 1 s samples.

use std::time::Duration;

use crate::config::RunArgs;
use crate::pipeline::{self, PipelinePoint, Scrape, Scraper, Scrapes};
use crate::progress::Watched;
use crate::report::PipelineSummary;

/// Notes for the endpoints that did not answer before the run.
pub fn unanswered(first: &Scrapes, args: &RunArgs) -> Vec<String> {
    let mut notes = Vec::new();
    if first.0.is_none() {
        notes.push(format!(
            "relay metrics at {} did not answer: no outbox lag",
            args.relay_metrics
        ));
    }
    if first.1.is_none() {
        notes.push(format!(
            "notifier metrics at {} did not answer: no consumer lag or e2e latency",
            args.notifier_metrics
        ));
    }
    notes
}

/// The window's events may still be in the outbox or the topic when the load stops, exactly
/// when lag has grown: scrapes until the pipeline has drained (or `timeout` passed), so the
/// percentiles cover them instead of ending 1 s after the run (#17.9).
pub async fn after_drain(
    scraper: &Scraper,
    watched: Watched,
    mut notes: Vec<String>,
    timeout: Duration,
) -> PipelineSummary {
    let mut last = watched.last;
    if let Some(d) = scraper.drain(timeout).await {
        if !d.drained {
            notes.push(format!(
                "the pipeline had not drained {:.0} s after the load stopped: the outbox-lag and \
                 end-to-end percentiles leave out the events still in flight",
                d.took.as_secs_f64()
            ));
        }
        last = d.last;
    }
    let (start, end) = (watched.window_start, last);
    let outbox = |q| between(&start.0, &end.0, "outbox_event_lag_seconds", q);
    let e2e = |q| between(&start.1, &end.1, "notifier_e2e_latency_seconds", q);
    let measured: Vec<&PipelinePoint> = watched.series.iter().filter(|p| p.t >= 0.0).collect();
    let max_of = |f: fn(&PipelinePoint) -> Option<f64>| {
        measured.iter().filter_map(|p| f(p)).reduce(f64::max)
    };
    PipelineSummary {
        notes,
        outbox_lag_p50_ms: outbox(0.5),
        outbox_lag_p99_ms: outbox(0.99),
        outbox_lag_max_ms: max_of(|p| p.outbox_lag_seconds).map(|s| s * 1000.0),
        e2e_p50_ms: e2e(0.5),
        e2e_p99_ms: e2e(0.99),
        consumer_lag_max: max_of(|p| p.consumer_lag),
        series: watched.series,
        // Filled in by the audit.
        exact: None,
    }
}

/// Quantile `q` (ms) of histogram `name`'s growth between two scrapes.
fn between(before: &Option<Scrape>, after: &Option<Scrape>, name: &str, q: f64) -> Option<f64> {
    let (b, a) = (before.as_ref()?, after.as_ref()?);
    pipeline::quantile_between(&pipeline::buckets(b, name), &pipeline::buckets(a, name), q)
        .map(|s| s * 1000.0)
}
