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
    /// How the verdict was reached when it is not a percent band (a proportion test).
    pub note: Option<String>,
}

/// One-sided z above which a proportion (errors, late starts) counts as changed: 3.09 is the
/// 99.9 % quantile of the normal distribution, so two reruns of one build are judged "same"
/// 999 times in 1000.
pub const PROPORTION_Z: f64 = 3.09;

/// Two-proportion z-test (pooled): `x` events of `n` in A and in B. Positive z: B's share is
/// higher.
pub fn proportion_z(x_a: u64, n_a: u64, x_b: u64, n_b: u64) -> Option<f64> {
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (pa, pb) = (x_a as f64 / n_a as f64, x_b as f64 / n_b as f64);
    let pooled = (x_a + x_b) as f64 / (n_a + n_b) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a as f64 + 1.0 / n_b as f64)).sqrt();
    Some(if se == 0.0 { 0.0 } else { (pb - pa) / se })
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
            // Shares of requests compare as proportions (issue #17.10): how unlikely B's share
            // is if both runs had A's rate, not a percent change of almost nothing.
            let counts = match metric {
                "errors" => Some(((a.errors, a.requests), (b.errors, b.requests))),
                "late" => Some(((a.late_starts, a.requests), (b.late_starts, b.requests))),
                _ => None,
            };
            if let Some(((xa, na), (xb, nb))) = counts {
                let (va, vb) = (a.metric(metric), b.metric(metric));
                let z = proportion_z(xa, na, xb, nb);
                let verdict = match z {
                    None => Verdict::Missing,
                    Some(z) if z > PROPORTION_Z => Verdict::Worse,
                    Some(z) if z < -PROPORTION_Z => Verdict::Better,
                    Some(_) => Verdict::Same,
                };
                return Row {
                    metric,
                    a: va,
                    b: vb,
                    worse_pct: va.zip(vb).map(|(x, y)| y - x),
                    threshold_pct: 0.0,
                    verdict,
                    note: z.map(|z| {
                        format!("{xa}/{na} vs {xb}/{nb}, z = {z:+.1} (limit ±{PROPORTION_Z})")
                    }),
                };
            }
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
            let verdict = match worse_pct {
                None => Verdict::Missing,
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
                note: None,
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
        if let Some(note) = &r.note {
            s.push_str(&format!("{:<16} ({note}; change in points)\n", ""));
        }
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

    /// Issue #17.10: 0 → 0.09 % errors over 150k requests is a regression, not "same"; a rerun
    /// with 10 vs 14 errors is not.
    #[test]
    fn error_rates_compare_as_proportions() {
        let with = |errors: u64| {
            let mut r = run(10.0, 5000.0);
            r.requests = 150_000;
            r.errors = errors;
            r.error_rate_pct = errors as f64 * 100.0 / 150_000.0;
            r
        };
        let verdict = |a: &Report, b: &Report| {
            compare(a, b, 10.0)
                .into_iter()
                .find(|r| r.metric == "errors")
                .unwrap()
                .verdict
        };
        assert_eq!(verdict(&with(0), &with(135)), Verdict::Worse);
        assert_eq!(verdict(&with(10), &with(14)), Verdict::Same);
        assert_eq!(verdict(&with(135), &with(0)), Verdict::Better);
    }
}
