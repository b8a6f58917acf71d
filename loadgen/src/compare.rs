//! `loadgen compare A B`: the two runs side by side, with a verdict per metric.
//!
//! Noise: a run's own second-to-second spread says how much a number moves by chance on this
//! machine. For each metric the band is twice the larger coefficient of variation (stddev/mean)
//! of the two runs' 1-second series (p99 series for latency percentiles, rps series for the
//! rate). A metric regresses only when it worsens by more than max(--max-regression, band).

use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Same,
    Better,
    Worse,
    Missing,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub metric: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// Percent change, positive = worse.
    pub worse_pct: Option<f64>,
    pub threshold_pct: f64,
    pub verdict: Verdict,
}

/// (metric, lower is better, which noise series)
const METRICS: &[(&str, bool, Noise)] = &[
    ("rps", false, Noise::Rate),
    ("p50", true, Noise::Latency),
    ("p90", true, Noise::Latency),
    ("p99", true, Noise::Latency),
    ("p999", true, Noise::Latency),
    ("service_p99", true, Noise::Latency),
    ("errors", true, Noise::None),
    ("late", true, Noise::None),
    ("outbox_lag_p99", true, Noise::Latency),
    ("e2e_p99", true, Noise::Latency),
];

#[derive(Debug, Clone, Copy)]
enum Noise {
    Latency,
    Rate,
    None,
}

/// The load settings two runs must share to be compared (issue #17.10).
const SAME_LOAD: &[&str] = &[
    "rps",
    "duration_s",
    "warmup_s",
    "mix",
    "users",
    "tickets_per_user",
    "retry_share",
    "timeout_s",
];

/// How the two runs' load differed, one line per setting (empty: the same load).
pub fn config_mismatches(a: &Report, b: &Report) -> Vec<String> {
    let mut out: Vec<String> = SAME_LOAD
        .iter()
        .filter_map(|key| {
            let (va, vb) = (a.config.get(*key), b.config.get(*key));
            (va != vb).then(|| {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "(not recorded)".to_string(), ToString::to_string)
                };
                format!("{key}: A {} vs B {}", show(va), show(vb))
            })
        })
        .collect();
    if a.embedded != b.embedded {
        out.push(format!("embedded: A {} vs B {}", a.embedded, b.embedded));
    }
    out
}

fn cv(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return 0.0;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    var.sqrt() / mean
}

fn noise_pct(r: &Report, kind: Noise) -> f64 {
    match kind {
        Noise::Latency => 200.0 * cv(r.series.iter().filter_map(|p| p.p99_ms)),
        Noise::Rate => 200.0 * cv(r.series.iter().map(|p| p.rps)),
        Noise::None => 0.0,
    }
}

pub fn compare(a: &Report, b: &Report, max_regression_pct: f64) -> Vec<Row> {
    METRICS
        .iter()
        .map(|&(metric, lower_better, noise)| {
            let (va, vb) = (a.metric(metric), b.metric(metric));
            let threshold_pct =
                max_regression_pct.max(noise_pct(a, noise).max(noise_pct(b, noise)));
            let worse_pct = match (va, vb) {
                (Some(x), Some(y)) if x.abs() > f64::EPSILON => {
                    let change = (y - x) / x.abs() * 100.0;
                    Some(if lower_better { change } else { -change })
                }
                (Some(_), Some(y)) => Some(if y.abs() <= f64::EPSILON {
                    0.0
                } else if lower_better {
                    100.0
                } else {
                    -100.0
                }),
                _ => None,
            };
            // Rates near zero (errors, late) compare in points, not percent of almost nothing.
            let small = matches!(metric, "errors" | "late")
                && va.zip(vb).is_some_and(|(x, y)| (y - x).abs() < 0.1);
            let verdict = match worse_pct {
                None => Verdict::Missing,
                Some(_) if small => Verdict::Same,
                Some(w) if w > threshold_pct => Verdict::Worse,
                Some(w) if w < -threshold_pct => Verdict::Better,
                Some(_) => Verdict::Same,
            };
            Row {
                metric,
                a: va,
                b: vb,
                worse_pct,
                threshold_pct,
                verdict,
            }
        })
        .collect()
}

pub fn table(a: &Report, b: &Report, rows: &[Row]) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
    let mut s = format!(
        "A = {} ({:.0} rps target, git {})\nB = {} ({:.0} rps target, git {})\n\n",
        a.run_id,
        a.target_rps,
        a.environment.git_sha,
        b.run_id,
        b.target_rps,
        b.environment.git_sha
    );
    s.push_str(&format!(
        "{:<16} {:>12} {:>12} {:>10} {:>10}  verdict\n",
        "metric", "A", "B", "worse %", "band %"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<16} {:>12} {:>12} {:>10} {:>10.1}  {}\n",
            r.metric,
            f(r.a),
            f(r.b),
            r.worse_pct
                .map_or_else(|| "-".into(), |w| format!("{w:+.1}")),
            r.threshold_pct,
            match r.verdict {
                Verdict::Same => "same (within noise)",
                Verdict::Better => "better",
                Verdict::Worse => "REGRESSED",
                Verdict::Missing => "not in both runs",
            }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SecondPoint;

    fn run(p99: f64, rps: f64) -> Report {
        let mut r = Report {
            target_rps: rps,
            throughput_rps: rps,
            ..Report::default()
        };
        r.corrected.count = 1000;
        r.corrected.p50_ms = p99 / 4.0;
        r.corrected.p90_ms = p99 / 2.0;
        r.corrected.p99_ms = p99;
        r.corrected.p999_ms = p99 * 2.0;
        r.service.p99_ms = p99;
        r.series = (0..30)
            .map(|t| SecondPoint {
                t,
                rps: rps + (t % 3) as f64,
                p99_ms: Some(p99 * (1.0 + 0.01 * (t % 2) as f64)),
                ..Default::default()
            })
            .collect();
        r
    }

    #[test]
    fn identical_runs_pass() {
        let a = run(10.0, 1000.0);
        let rows = compare(&a, &a.clone(), 10.0);
        assert!(
            rows.iter()
                .all(|r| matches!(r.verdict, Verdict::Same | Verdict::Missing)),
            "{rows:?}"
        );
    }

    #[test]
    fn a_latency_regression_is_caught_and_an_improvement_is_not_one() {
        let a = run(10.0, 1000.0);
        let rows = compare(&a, &run(15.0, 1000.0), 10.0);
        let p99 = rows.iter().find(|r| r.metric == "p99").unwrap();
        assert_eq!(p99.verdict, Verdict::Worse);
        assert!((p99.worse_pct.unwrap() - 50.0).abs() < 1e-9);
        let rows = compare(&a, &run(5.0, 1000.0), 10.0);
        assert!(rows.iter().all(|r| r.verdict != Verdict::Worse));
    }

    #[test]
    fn a_noisy_baseline_widens_the_band() {
        let mut a = run(10.0, 1000.0);
        for (i, p) in a.series.iter_mut().enumerate() {
            p.p99_ms = Some(if i % 2 == 0 { 5.0 } else { 15.0 });
        }
        let rows = compare(&a, &run(12.0, 1000.0), 10.0);
        let p99 = rows.iter().find(|r| r.metric == "p99").unwrap();
        assert!(p99.threshold_pct > 50.0, "{p99:?}");
        assert_eq!(p99.verdict, Verdict::Same);
    }

    /// Issue #17.10: runs with a different load are not comparable.
    #[test]
    fn a_different_load_is_reported() {
        let mut a = run(10.0, 1000.0);
        a.config = serde_json::json!({"rps": 1000.0, "duration_s": 30.0, "mix": {"get": 100}});
        let mut b = a.clone();
        assert!(config_mismatches(&a, &b).is_empty());
        b.config["rps"] = serde_json::json!(5000.0);
        b.config["mix"] = serde_json::json!({"get": 50, "create": 50});
        let diff = config_mismatches(&a, &b);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff[0].starts_with("rps: A 1000.0 vs B 5000.0"), "{diff:?}");
    }
}
