//! The worker pool follows the open model (issue #17.6). Its own test binary: one Goose run per
//! process (Goose keeps process-wide state).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

/// A server that answers every request in 200 ms, offered 200 rps: Little's law needs ~40
/// requests in flight. With no pool flag the generator must grow to that, send every slot on
/// time and measure 200 ms — not size a pool from a latency guess and then measure its own
/// queue (the old default, rps × 25 ms × 4 = 20 workers, queued half the arrivals and reported
/// seconds of latency for a server that never took more than 200 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_follows_the_arrivals_without_a_pool_guess() {
    let addr = common::start_delayed(Duration::from_millis(200)).await;
    let out = tempfile::tempdir().unwrap();
    let args = common::run_args(
        addr,
        out.path(),
        "elastic",
        &[
            &["--rps", "200", "--duration", "3s"][..],
            &common::SMALL_GETS,
        ]
        .concat(),
    );
    let (report, dir) = loadgen::run(args).await.unwrap();
    assert_eq!(report.errors, 0);
    assert_eq!(report.not_sent, 0);
    assert!(
        (30..=80).contains(&report.peak_in_flight),
        "peak in flight {} (Little's law: 200 rps × 200 ms = 40)",
        report.peak_in_flight
    );
    assert!(
        report.peak_in_flight < report.max_workers,
        "the cap was not what limited"
    );
    assert_eq!(report.late_starts, 0, "a slot waited for a worker");
    assert!(
        report.corrected.p99_ms < 400.0,
        "corrected p99 {} ms for a 200 ms server: the pool queued arrivals",
        report.corrected.p99_ms
    );
    assert!(
        report.service.p50_ms >= 195.0 && report.service.p50_ms < 300.0,
        "service p50 {}",
        report.service.p50_ms
    );
    assert!(
        (report.throughput_rps - 200.0).abs() < 20.0,
        "throughput {}",
        report.throughput_rps
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(!md.contains("cap was reached"), "{md}");
}
