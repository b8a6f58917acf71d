//! Slots the generator could not send (issue #17.3/#17.4). Its own test binary: one Goose run
//! per process (Goose keeps process-wide state).
#![allow(clippy::unwrap_used)]

mod common;

/// Issue #17.3/#17.4: against a server that accepts connections and never answers, the four
/// workers hang and every other slot is never sent. Those slots must not vanish: the run fails
/// (exit 3 without --allow-not-sent), the corrected p99 is theirs, throughput is 0 while the
/// arrival rate is what was asked, and the per-second latency has no fake zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_never_sent_count_and_fail_the_run() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // never read, never answered
        }
    });
    let out = tempfile::tempdir().unwrap();
    let args = common::run_args(
        addr,
        out.path(),
        "blackhole",
        &[
            "--rps",
            "100",
            "--duration",
            "3s",
            "--mix",
            "list=100",
            "--users",
            "5",
            "--tickets-per-user",
            "0",
            "--max-workers",
            "4",
            "--timeout",
            "30s",
        ],
    );
    let (report, _) = loadgen::run(args).await.unwrap();
    assert_eq!(report.requests, 0, "nothing was answered");
    assert!(report.not_sent >= 290, "not sent {}", report.not_sent);
    assert!(!report.passed, "a run that could not send its load passed");
    assert!(
        report.corrected.p99_ms > 2_000.0,
        "corrected p99 {} ms leaves out the unsent slots",
        report.corrected.p99_ms
    );
    assert_eq!(report.throughput_rps, 0.0);
    assert!(
        (report.arrival_rps - 100.0).abs() < 5.0,
        "{}",
        report.arrival_rps
    );
    assert!(report.series.iter().all(|p| p.rps == 0.0 && p.not_sent > 0));
}
