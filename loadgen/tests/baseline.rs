//! Issue #17.10 on real data: the committed embedded baseline and its rerun (same build, same
//! box, one after the other) are judged "no regression", and the baseline made 2.5× slower is
//! caught.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use loadgen::compare::{Run, Verdict, compare};

const BASELINE: &str = "2026-11-27-embedded-2000rps";
const RERUN: &str = "2026-11-27-embedded-2000rps-rerun";

fn load(name: &str) -> Run {
    Run::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../reports")
            .join(name),
    )
    .unwrap()
}

/// The run with every latency × `factor`, per second and in its report.
fn slower(run: &Run, factor: f64) -> Run {
    let mut out = run.clone();
    out.seconds = run
        .seconds
        .iter()
        .map(|h| {
            let mut s = loadgen::record::histogram();
            for v in h.iter_recorded() {
                let value = (v.value_iterated_to() as f64 * factor) as u64;
                s.record_n(value, v.count_at_value()).unwrap();
            }
            s
        })
        .collect();
    let c = &mut out.report.corrected;
    for v in [
        &mut c.p50_ms,
        &mut c.p90_ms,
        &mut c.p99_ms,
        &mut c.p999_ms,
        &mut c.max_ms,
    ] {
        *v *= factor;
    }
    out.report.service.p99_ms *= factor;
    out
}

#[test]
fn the_committed_baseline_passes_its_rerun_and_catches_a_real_slowdown() {
    let (a, b) = (load(BASELINE), load(RERUN));
    assert!(
        a.seconds.len() >= 20 && b.seconds.len() >= 20,
        "per-second histograms"
    );
    assert!(loadgen::compare::config_mismatches(&a.report, &b.report).is_empty());
    let rows = compare(&a, &b, 10.0);
    let table = loadgen::compare::table(&a.report, &b.report, &rows);
    assert!(
        rows.iter().all(|r| r.verdict != Verdict::Worse),
        "a rerun of the same build regressed:\n{table}"
    );
    // The baseline itself made 2.5× slower — what the old noise band judged "same" (#17.10) —
    // is caught. (×1.3 is not, on this baseline: its own seconds spread so much — per-second p50
    // from 0.3 to 3.3 ms on the shared box — that the 99 % interval of a 30 % change still reaches
    // below 0; `compare --repeat` is the tool for small effects. Printed for the record.)
    let show = |factor: f64| {
        let worse = slower(&a, factor);
        let rows = compare(&a, &worse, 10.0);
        let table = loadgen::compare::table(&a.report, &worse.report, &rows);
        eprintln!("baseline vs baseline × {factor}:\n{table}");
        (rows, table)
    };
    let _ = show(1.3);
    let (rows, table) = show(2.5);
    for metric in ["p90", "p99"] {
        let row = rows.iter().find(|r| r.metric == metric).unwrap();
        assert_eq!(row.verdict, Verdict::Worse, "×2.5 not caught:\n{table}");
    }
}
