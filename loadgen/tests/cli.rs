//! The binary's exit codes: SLO breach → 3; compare → 0 for identical runs, 4 for a regression.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_breach_exits_3_and_compare_flags_an_injected_regression() {
    let addr = common::start(common::Stall {
        stall_after: 0,
        stall_for: Duration::ZERO,
        delay: Duration::from_millis(5),
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let base = [
        "--target".to_string(),
        format!("http://{addr}"),
        "--rps".into(),
        "100".into(),
        "--duration".into(),
        "2s".into(),
        "--warmup".into(),
        "500ms".into(),
        "--quiet".into(),
        "--users".into(),
        "5".into(),
        "--tickets-per-user".into(),
        "2".into(),
        "--out".into(),
        out.path().to_str().unwrap().to_string(),
        "--relay-metrics".into(),
        "http://127.0.0.1:1/metrics".into(),
        "--notifier-metrics".into(),
        "http://127.0.0.1:1/metrics".into(),
    ];
    let status = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            loadgen()
                .args(&base)
                .args(["--run-id", "ok", "--slo", "p99<2s"])
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    let status = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            loadgen()
                .args(&base)
                .args(["--run-id", "breach", "--slo", "p50<1ms"])
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(3), "5 ms server delay breaches p50<1ms");

    let a = out.path().join("ok");
    let same = loadgen()
        .args(["compare", a.to_str().unwrap(), a.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    // Inject a regression: B is A with every latency tripled.
    let mut report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("report.json")).unwrap()).unwrap();
    for key in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
        let v = report["corrected"][key].as_f64().unwrap();
        report["corrected"][key] = serde_json::json!(v * 3.0);
    }
    let b = out.path().join("slower.json");
    std::fs::write(&b, serde_json::to_string(&report).unwrap()).unwrap();
    let worse = loadgen()
        .args(["compare", a.to_str().unwrap(), b.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&worse.stdout);
    assert_eq!(worse.status.code(), Some(4), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("p99 ") && l.contains("REGRESSED")),
        "{text}"
    );
}
