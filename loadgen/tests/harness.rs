//! The load generator against an in-process stub: pacing holds the rate, the corrected
//! latency shows a stall that service time hides, and the report files are written and parse.
//! One Goose run per test binary (Goose keeps process-wide state).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use loadgen::report::Report;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_corrected_latency_not_in_service_time_and_reports_are_written() {
    // 200 rps, get-only; after 300 GETs (~1.5 s in) the server stalls for 500 ms.
    let addr = common::start(common::Stall {
        stall_after: 300,
        stall_for: Duration::from_millis(500),
        delay: Duration::ZERO,
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    // --goose-report: through Goose's own request path, with its report (the default bypasses it).
    let args = common::run_args(
        addr,
        out.path(),
        "stall",
        &[
            &[
                "--rps",
                "200",
                "--duration",
                "4s",
                "--max-workers",
                "4",
                "--goose-report",
                "--slo",
                "p99<1ms",
                "--slo",
                "errors<1%",
            ][..],
            &common::SMALL_GETS,
        ]
        .concat(),
    );
    let (report, dir) = loadgen::run(args).await.unwrap();

    // Pacing: the arrival rate holds although the server stalled.
    assert!(
        (report.arrival_rps - 200.0).abs() < 10.0,
        "arrivals {}",
        report.arrival_rps
    );
    assert!(
        report.throughput_rps > 150.0 && report.throughput_rps <= 210.0,
        "throughput {}",
        report.throughput_rps
    );
    assert_eq!(report.not_sent, 0);
    assert_eq!(report.errors, 0);
    // ~100 arrivals fell into the stall and waited for a worker.
    assert!(
        report.late_starts >= 50,
        "late starts {}",
        report.late_starts
    );
    // Corrected p99 sees the stall; service time does not (only the 4 in-flight requests did).
    assert!(
        report.corrected.p99_ms > 200.0,
        "corrected p99 {}",
        report.corrected.p99_ms
    );
    assert!(
        report.service.p99_ms < 100.0,
        "service p99 {}",
        report.service.p99_ms
    );
    assert!(report.corrected.max_ms >= 400.0);
    // Issue #17.6: the stall exhausted the 4 workers, and the report says so.
    assert_eq!(report.peak_in_flight, 4, "peak in flight");
    // Issue #17.5: the generator's own lateness is measured apart, for the slots a free worker
    // took; at 200 rps on this box it is a timer tick, not a limit.
    assert!(
        report.generator_delay.count > 0,
        "{:?}",
        report.generator_delay
    );
    assert!(
        report.generator_delay.count < report.requests,
        "late-started slots are not the generator's fault"
    );

    // SLOs: p99<1ms is breached, errors<1% holds; the run fails.
    assert!(!report.passed);
    assert!(
        !report.slos[0].passed && report.slos[1].passed,
        "{:?}",
        report.slos
    );

    // Files exist and parse.
    let parsed = Report::load(&dir).unwrap();
    assert_eq!(parsed.requests, report.requests);
    assert_eq!(parsed.series.len(), 4);
    // Every measured second had answers: each has its own p50/p99 (the seconds still open when
    // the run ended must be closed too).
    assert!(
        parsed
            .series
            .iter()
            .all(|p| p.p50_ms.is_some() && p.p99_ms.is_some()),
        "{:?}",
        parsed.series
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| latency from intended start") && md.contains("**BREACH**"));
    assert!(md.contains("| generator send delay"), "{md}");
    assert!(md.contains("the worker cap was reached"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    // Latency, throughput, per endpoint, spectrum; the lags (no pipeline here) as one line.
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(
        html.contains("No data in this run for: Outbox lag"),
        "{html}"
    );
    assert!(!html.contains("<script"), "self-contained, no scripts");
    let hlog = std::fs::read(dir.join("latency.hlog")).unwrap();
    let intervals = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&hlog)
        .filter(|e| {
            matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            )
        })
        .count();
    assert_eq!(intervals, 4, "one interval per measured second");
    let goose =
        std::fs::read_to_string(dir.join("goose.html")).expect("Goose's own report is kept");
    assert!(
        goose.contains("not coordinated-omission corrected"),
        "goose.html is labelled"
    );
}
