//! `loadgen compare A B`: the two runs side by side, with a verdict per metric.
//!
//! Every verdict rests on an interval, not on a hunch about noise (issue #17.10):
//! - latency percentiles: a bootstrap over the two runs' per-second histograms (latency.hlog),
//!   giving a 99 % interval of the change itself;
//! - throughput: the same bootstrap over the per-second throughput;
//! - error and late-start rates: a two-proportion z-test;
//! - with `--repeat N` (several runs a side): Welch's 99 % interval over the runs' figures, so
//!   the run-to-run spread — which one run cannot see — is in it.
//!
//! A metric **regressed** when it worsened by more than `--max-regression` *and* its interval
//! lies wholly on the worse side of zero: big enough to matter and too big to be chance.
//! Figures with no interval (one number per run, such as service p99 or the pipeline lags
//! from the services' histograms) are shown, and marked "unsure" when they moved past the
//! threshold; they do not fail a single-run compare (`--repeat` gives them an interval).

use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::config::{CompareArgs, RunArgs};
use crate::report::Report;
use crate::stats::{self, Change};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Same,
    Better,
    Worse,
    /// Moved past the threshold, but there is no interval to tell a change from noise.
    Unsure,
    Missing,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub metric: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// Percent change, positive = worse (points, for the proportions).
    pub worse_pct: Option<f64>,
    /// The 99 % interval of `worse_pct`, when there is one.
    pub interval: Option<(f64, f64)>,
    pub verdict: Verdict,
    /// How the verdict was reached when it is not an interval (a proportion test, none).
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

/// What a metric is and how its uncertainty is known.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A corrected-latency quantile, bootstrapped over the per-second histograms.
    Quantile(f64),
    /// Mean of the per-second throughput, bootstrapped.
    Throughput,
    /// A share of the requests: two-proportion z-test.
    Proportion,
    /// One figure per run.
    Single,
}

/// (metric, lower is better, kind)
const METRICS: &[(&str, bool, Kind)] = &[
    ("rps", false, Kind::Throughput),
    ("p50", true, Kind::Quantile(0.5)),
    ("p90", true, Kind::Quantile(0.9)),
    ("p99", true, Kind::Quantile(0.99)),
    ("p999", true, Kind::Quantile(0.999)),
    ("service_p99", true, Kind::Single),
    ("errors", true, Kind::Proportion),
    ("late", true, Kind::Proportion),
    ("outbox_lag_p99", true, Kind::Single),
    ("e2e_p99", true, Kind::Single),
];

/// A run as compare needs it: its report and its per-second latency histograms.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub report: Report,
    /// Corrected latency per measured second, from latency.hlog (empty when there is none).
    pub seconds: Vec<Histogram<u64>>,
}

impl Run {
    /// A run directory (or its report.json); latency.hlog is read from beside it.
    pub fn load(path: &Path) -> anyhow::Result<Run> {
        let report = Report::load(path)?;
        let dir: PathBuf = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(PathBuf::from).unwrap_or_default()
        };
        let hlog = dir.join("latency.hlog");
        let seconds = if hlog.exists() {
            crate::hlog::read(&hlog)?
        } else {
            Vec::new()
        };
        Ok(Run { report, seconds })
    }

    fn throughput(&self) -> Vec<f64> {
        self.report.series.iter().map(|p| p.rps).collect()
    }
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

/// The generator settings two runs must share when both reports record them.
const SAME_GENERATOR: &[&str] = &["threads"];

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
    // The generator's own settings: a run with more runtime threads sends with less delay and
    // costs the box more CPU. Reports from before they were recorded are taken as they are.
    for key in SAME_GENERATOR {
        if let (Some(va), Some(vb)) = (a.config.get(*key), b.config.get(*key))
            && va != vb
        {
            out.push(format!("{key}: A {va} vs B {vb}"));
        }
    }
    if a.embedded != b.embedded {
        out.push(format!("embedded: A {} vs B {}", a.embedded, b.embedded));
    }
    out
}

/// Percent change from `a` to `b`, positive = worse.
fn worse_pct(a: f64, b: f64, lower_better: bool) -> f64 {
    if a.abs() <= f64::EPSILON {
        return match (b.abs() <= f64::EPSILON, lower_better) {
            (true, _) => 0.0,
            (false, true) => 100.0,
            (false, false) => -100.0,
        };
    }
    let change = (b - a) / a.abs() * 100.0;
    if lower_better { change } else { -change }
}

/// The verdict of a change with an interval (all in "worse" percent).
fn judge(worse: f64, interval: Option<(f64, f64)>, max_regression_pct: f64) -> Verdict {
    match interval {
        Some((low, _)) if worse > max_regression_pct && low > 0.0 => Verdict::Worse,
        Some((_, high)) if worse < -max_regression_pct && high < 0.0 => Verdict::Better,
        Some(_) => Verdict::Same,
        None if worse.abs() > max_regression_pct => Verdict::Unsure,
        None => Verdict::Same,
    }
}

/// An interval of a raw change (positive = B higher) turned into "worse" percent.
fn as_worse(c: Change, lower_better: bool) -> (f64, f64) {
    if lower_better {
        (c.low, c.high)
    } else {
        (-c.high, -c.low)
    }
}

fn proportion_row(metric: &'static str, (xa, na): (u64, u64), (xb, nb): (u64, u64)) -> Row {
    let share = |x: u64, n: u64| (n > 0).then(|| x as f64 * 100.0 / n as f64);
    let (va, vb) = (share(xa, na), share(xb, nb));
    let z = proportion_z(xa, na, xb, nb);
    let verdict = match z {
        None => Verdict::Missing,
        Some(z) if z > PROPORTION_Z => Verdict::Worse,
        Some(z) if z < -PROPORTION_Z => Verdict::Better,
        Some(_) => Verdict::Same,
    };
    Row {
        metric,
        a: va,
        b: vb,
        worse_pct: va.zip(vb).map(|(x, y)| y - x),
        interval: None,
        verdict,
        note: z.map(|z| {
            format!("{xa}/{na} vs {xb}/{nb}, z = {z:+.1} (limit ±{PROPORTION_Z}); change in points")
        }),
    }
}

fn counts(r: &Report, metric: &str) -> (u64, u64) {
    match metric {
        "errors" => (r.errors, r.requests),
        _ => (r.late_starts, r.requests),
    }
}

/// The row of a metric whose change has (or lacks) an interval.
fn change_row(
    metric: &'static str,
    (a, b): (Option<f64>, Option<f64>),
    lower_better: bool,
    change: Option<Change>,
    max_regression_pct: f64,
) -> Row {
    let interval = change.map(|c| as_worse(c, lower_better));
    let worse = a.zip(b).map(|(x, y)| worse_pct(x, y, lower_better));
    Row {
        metric,
        a,
        b,
        worse_pct: worse,
        interval,
        verdict: worse.map_or(Verdict::Missing, |w| judge(w, interval, max_regression_pct)),
        note: None,
    }
}

/// One run a side: intervals from the bootstrap.
pub fn compare(a: &Run, b: &Run, max_regression_pct: f64) -> Vec<Row> {
    METRICS
        .iter()
        .map(|&(metric, lower_better, kind)| {
            if let Kind::Proportion = kind {
                return proportion_row(
                    metric,
                    counts(&a.report, metric),
                    counts(&b.report, metric),
                );
            }
            let (va, vb) = (a.report.metric(metric), b.report.metric(metric));
            let change = match kind {
                Kind::Quantile(q) => stats::quantile_change(&a.seconds, &b.seconds, q),
                Kind::Throughput => stats::mean_change(&a.throughput(), &b.throughput()),
                _ => None,
            };
            let row = change_row(metric, (va, vb), lower_better, change, max_regression_pct);
            Row {
                note: (row.interval.is_none() && row.worse_pct.is_some())
                    .then(|| "no interval: one figure per run (--repeat gives one)".to_string()),
                ..row
            }
        })
        .collect()
}

/// Several runs a side (`--repeat`): each metric's figure per run, Welch's interval over them.
/// Rates of errors and late starts pool their counts over the runs.
pub fn compare_repeated(a: &[Report], b: &[Report], max_regression_pct: f64) -> Vec<Row> {
    METRICS
        .iter()
        .map(|&(metric, lower_better, kind)| {
            if let Kind::Proportion = kind {
                let sum = |rs: &[Report]| {
                    rs.iter().fold((0, 0), |(x, n), r| {
                        let (dx, dn) = counts(r, metric);
                        (x + dx, n + dn)
                    })
                };
                return proportion_row(metric, sum(a), sum(b));
            }
            let figures = |rs: &[Report]| -> Option<Vec<f64>> {
                rs.iter().map(|r| r.metric(metric)).collect()
            };
            let (fa, fb) = (figures(a), figures(b));
            let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let (va, vb) = (fa.as_ref().map(mean), fb.as_ref().map(mean));
            let change = fa
                .as_ref()
                .zip(fb.as_ref())
                .and_then(|(x, y)| stats::welch_change(x, y));
            change_row(metric, (va, vb), lower_better, change, max_regression_pct)
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
        "{:<16} {:>12} {:>12} {:>10} {:>20}  verdict\n",
        "metric", "A", "B", "worse %", "99 % interval"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<16} {:>12} {:>12} {:>10} {:>20}  {}\n",
            r.metric,
            f(r.a),
            f(r.b),
            r.worse_pct
                .map_or_else(|| "-".into(), |w| format!("{w:+.1}")),
            r.interval
                .map_or_else(|| "-".into(), |(lo, hi)| format!("[{lo:+.1}, {hi:+.1}]")),
            match r.verdict {
                Verdict::Same => "same",
                Verdict::Better => "better",
                Verdict::Worse => "REGRESSED",
                Verdict::Unsure => "moved, unsure",
                Verdict::Missing => "not in both runs",
            }
        ));
        if let Some(note) = &r.note {
            s.push_str(&format!("{:<16} ({note})\n", ""));
        }
    }
    s
}

/// The verdict line of a compare.
fn verdict_line(rows: &[Row]) -> &'static str {
    if rows.iter().any(|r| r.verdict == Verdict::Worse) {
        "B regressed (worse by more than --max-regression, 99 % interval above 0)"
    } else {
        "no regression"
    }
}

/// The process exit code of a compare: 0 no regression, 4 a regression.
fn verdict_exit(rows: &[Row]) -> std::process::ExitCode {
    println!("verdict: {}", verdict_line(rows));
    if rows.iter().any(|r| r.verdict == Verdict::Worse) {
        std::process::ExitCode::from(crate::config::EXIT_REGRESSION)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Writes compare.html (both runs overlaid, the table, the verdict) into B's run directory.
pub fn write_html(b_path: &Path, a: &Report, b: &Report, rows: &[Row]) -> anyhow::Result<PathBuf> {
    let dir = if b_path.is_dir() {
        b_path.to_path_buf()
    } else {
        b_path.parent().map(PathBuf::from).unwrap_or_default()
    };
    let path = dir.join("compare.html");
    let html = crate::html::render_compare(a, b, &table(a, b, rows), verdict_line(rows));
    std::fs::write(&path, html).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// `loadgen compare A B`: two archived runs.
pub fn main(c: &CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    let a = Run::load(&c.a)?;
    let b = Run::load(&c.b)?;
    let mismatches = config_mismatches(&a.report, &b.report);
    if !mismatches.is_empty() {
        for m in &mismatches {
            eprintln!("loadgen: the runs' load differs: {m}");
        }
        if !c.allow_config_mismatch {
            eprintln!(
                "loadgen: refusing to compare runs with a different load \
                 (--allow-config-mismatch to compare anyway)"
            );
            return Ok(std::process::ExitCode::from(2));
        }
    }
    let rows = compare(&a, &b, c.max_regression);
    print!("{}", table(&a.report, &b.report, &rows));
    let html = write_html(&c.b, &a.report, &b.report, &rows)?;
    println!("compare.html: {}", html.display());
    Ok(verdict_exit(&rows))
}

/// Flags a repeated compare sets itself for each run (`--out` is read, and replaced by the
/// compare's own directory under it).
const OWN_FLAGS: &[&str] = &["--target", "--run-id"];

/// `loadgen [run flags] compare --repeat N URL_A URL_B`: N runs against each, alternating, each
/// in its own process (Goose keeps process-wide state), then Welch's interval per metric.
pub fn repeat(c: &CompareArgs, n: u32, run: &RunArgs) -> anyhow::Result<std::process::ExitCode> {
    // The run flags are the arguments before `compare`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let upto = args.iter().position(|a| a == "compare").unwrap_or(0);
    let mut before = Vec::new();
    let mut flags = args[..upto].iter();
    while let Some(a) = flags.next() {
        if a == "--out" {
            flags.next();
        } else if !a.to_string_lossy().starts_with("--out=") {
            before.push(a.clone());
        }
    }
    if let Some(own) = before.iter().find(|a| {
        let a = a.to_string_lossy();
        OWN_FLAGS
            .iter()
            .any(|f| a == *f || a.starts_with(&format!("{f}=")))
    }) {
        anyhow::bail!(
            "{} is set by compare --repeat itself (the targets are A and B)",
            own.to_string_lossy()
        );
    }
    let dir = run.out.join(format!(
        "compare-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("locating the loadgen binary")?;
    let targets = [
        ("a", c.a.to_string_lossy().into_owned()),
        ("b", c.b.to_string_lossy().into_owned()),
    ];
    let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
    for round in 1..=n {
        // A B, then B A: a drift of the machine over the rounds falls on both sides alike.
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for side in order {
            let (name, url) = &targets[side];
            let id = format!("{name}{round}");
            eprintln!(
                "loadgen: compare round {round}/{n}: {} against {url}",
                name.to_uppercase()
            );
            let status = std::process::Command::new(&exe)
                .args(&before)
                .args(["--target", url, "--run-id", &id, "--quiet", "--out"])
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .status()
                .with_context(|| format!("running {}", exe.display()))?;
            // 0 passed, 3 an SLO or the audit failed: either way the run's report is written.
            if !matches!(status.code(), Some(0 | 3)) {
                anyhow::bail!("run {id} against {url} failed ({status})");
            }
            let report = Report::load(&dir.join(&id))?;
            if side == 0 {
                runs_a.push(report);
            } else {
                runs_b.push(report);
            }
        }
    }
    let rows = compare_repeated(&runs_a, &runs_b, c.max_regression);
    let (first_a, first_b) = (&runs_a[0], &runs_b[0]);
    let mut text = format!(
        "{n} runs a side, alternating; A = {}, B = {}; figures are the means over the runs, \
         intervals Welch's 99 % from the run-to-run spread\n\n",
        targets[0].1, targets[1].1
    );
    text.push_str(&table(first_a, first_b, &rows));
    print!("{text}");
    std::fs::write(dir.join("compare.txt"), &text)?;
    println!("runs: {}", dir.display());
    Ok(verdict_exit(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SecondPoint;

    /// A run whose seconds' latencies are `ms` ± a little (per-second histograms and the
    /// report's figures agree), throughput `rps`.
    fn run(ms: f64, rps: f64, salt: u64) -> Run {
        let mut all = crate::record::histogram();
        let seconds: Vec<Histogram<u64>> = (0..30u64)
            .map(|s| {
                let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap();
                for i in 0..500u64 {
                    let u = (crate::plan::mix64(salt ^ (s << 20), i) % 1000) as f64 / 1000.0;
                    let v = (ms * 1000.0 * (0.5 + 1.5 * u * u * u)) as u64;
                    h.record(v).unwrap();
                    all.record(v).unwrap();
                }
                h
            })
            .collect();
        let mut r = Report {
            target_rps: rps,
            throughput_rps: rps,
            requests: 15_000,
            ..Report::default()
        };
        let ms_at = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        r.corrected.count = all.len();
        r.corrected.p50_ms = ms_at(0.5);
        r.corrected.p90_ms = ms_at(0.9);
        r.corrected.p99_ms = ms_at(0.99);
        r.corrected.p999_ms = ms_at(0.999);
        r.service.p99_ms = ms_at(0.99);
        r.series = (0..30)
            .map(|t| SecondPoint {
                t,
                rps: rps + (crate::plan::mix64(salt, t) % 7) as f64,
                p99_ms: Some(ms),
                ..Default::default()
            })
            .collect();
        Run { report: r, seconds }
    }

    fn verdict(rows: &[Row], metric: &str) -> Verdict {
        rows.iter().find(|r| r.metric == metric).unwrap().verdict
    }

    #[test]
    fn reruns_of_one_build_pass() {
        for salt in 2..6 {
            let rows = compare(&run(10.0, 1000.0, 1), &run(10.0, 1000.0, salt), 10.0);
            assert!(
                rows.iter()
                    .all(|r| matches!(r.verdict, Verdict::Same | Verdict::Missing)),
                "{rows:?}"
            );
        }
    }

    /// Issue #17.10: ×1.3 latency and 5000 → 3377 rps are regressions, with an interval that
    /// excludes 0; an improvement is not one.
    #[test]
    fn a_thirty_percent_regression_is_caught_and_an_improvement_is_not_one() {
        let a = run(10.0, 5000.0, 1);
        let rows = compare(&a, &run(13.0, 5000.0, 2), 10.0);
        for m in ["p50", "p90", "p99"] {
            assert_eq!(verdict(&rows, m), Verdict::Worse, "{m}: {rows:?}");
        }
        let p99 = rows.iter().find(|r| r.metric == "p99").unwrap();
        assert!(p99.interval.unwrap().0 > 0.0, "{p99:?}");
        // One figure per run: moved past the threshold, but not judged without an interval.
        assert_eq!(verdict(&rows, "service_p99"), Verdict::Unsure);
        let rows = compare(&a, &run(10.0, 3377.0, 2), 10.0);
        assert_eq!(verdict(&rows, "rps"), Verdict::Worse, "{rows:?}");
        let rows = compare(&a, &run(7.0, 5000.0, 2), 10.0);
        assert!(rows.iter().all(|r| r.verdict != Verdict::Worse), "{rows:?}");
        assert_eq!(verdict(&rows, "p99"), Verdict::Better);
    }

    #[test]
    fn without_an_hlog_latency_is_unsure_not_a_verdict() {
        let a = run(10.0, 1000.0, 1);
        let mut b = run(25.0, 1000.0, 2);
        b.seconds.clear();
        let rows = compare(&a, &b, 10.0);
        assert_eq!(verdict(&rows, "p99"), Verdict::Unsure, "{rows:?}");
    }

    #[test]
    fn repeated_runs_use_the_run_to_run_spread() {
        let reports = |ms: &[f64]| -> Vec<Report> {
            ms.iter()
                .enumerate()
                .map(|(i, &m)| run(m, 1000.0, i as u64).report)
                .collect()
        };
        let rows = compare_repeated(
            &reports(&[10.0, 10.4, 9.8]),
            &reports(&[13.0, 13.3, 12.9]),
            10.0,
        );
        assert_eq!(verdict(&rows, "p99"), Verdict::Worse, "{rows:?}");
        assert_eq!(verdict(&rows, "service_p99"), Verdict::Worse, "{rows:?}");
        // A 15 % move inside a ±20 % run-to-run spread is not a verdict.
        let rows = compare_repeated(
            &reports(&[8.0, 12.0, 10.0]),
            &reports(&[9.5, 13.5, 11.5]),
            10.0,
        );
        assert_eq!(verdict(&rows, "p99"), Verdict::Same, "{rows:?}");
    }

    /// Issue #17.10: runs with a different load are not comparable.
    #[test]
    fn a_different_load_is_reported() {
        let mut a = run(10.0, 1000.0, 1).report;
        a.config = serde_json::json!({"rps": 1000.0, "duration_s": 30.0, "mix": {"get": 100}});
        let mut b = a.clone();
        assert!(config_mismatches(&a, &b).is_empty());
        b.config["rps"] = serde_json::json!(5000.0);
        b.config["mix"] = serde_json::json!({"get": 50, "create": 50});
        let diff = config_mismatches(&a, &b);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff[0].starts_with("rps: A 1000.0 vs B 5000.0"), "{diff:?}");
    }

    /// The generator's threads count when both runs record them, and a report from before
    /// they were recorded still compares.
    #[test]
    fn different_generator_threads_are_reported() {
        let mut a = run(10.0, 1000.0, 1).report;
        a.config = serde_json::json!({"rps": 1000.0, "threads": 1});
        let mut b = a.clone();
        b.config["threads"] = serde_json::json!(2);
        assert_eq!(config_mismatches(&a, &b), ["threads: A 1 vs B 2"]);
        b.config.as_object_mut().unwrap().remove("threads");
        assert!(config_mismatches(&a, &b).is_empty());
    }

    /// Issue #17.10: 0 → 0.09 % errors over 150k requests is a regression, not "same"; a rerun
    /// with 10 vs 14 errors is not.
    #[test]
    fn error_rates_compare_as_proportions() {
        let with = |errors: u64| {
            let mut r = run(10.0, 5000.0, 1);
            r.report.requests = 150_000;
            r.report.errors = errors;
            r.report.error_rate_pct = errors as f64 * 100.0 / 150_000.0;
            r
        };
        let v = |a: &Run, b: &Run| verdict(&compare(a, b, 10.0), "errors");
        assert_eq!(v(&with(0), &with(135)), Verdict::Worse);
        assert_eq!(v(&with(10), &with(14)), Verdict::Same);
        assert_eq!(v(&with(135), &with(0)), Verdict::Better);
    }
}
