//! `loadgen compare A B`: the two runs side by side, with a verdict per metric.
//!
//! Every verdict rests on an interval, not on a hunch about noise (issue #17.10):
//! - latency percentiles: a bootstrap over the two runs' per-second histograms (latency.hlog),
//!   giving a 99 % interval of the change itself;
//! - throughput: the same bootstrap over the per-second throughput;
//! - error and late-start rates: a two-proportion z-test;
//! - with `--repeat N` (several runs a side), or two **run sets** (directories of runs, such as a
//!   committed baseline of several runs of one build): Welch's 99 % interval over the runs'
//!   figures, so the run-to-run spread — which one run cannot see — is in it.
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
    // The arrival pattern: evenly spaced, or in bursts on a grid (`--grid`).
    let (ga, gb) = (a.grid_s(), b.grid_s());
    if ga != gb {
        out.push(format!("grid_s: A {ga} vs B {gb}"));
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

/// `loadgen compare A B`: two archived runs, or two run sets.
pub fn main(c: &CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    match (load_set(&c.a)?, load_set(&c.b)?) {
        (Some(a), Some(b)) => return compare_sets(c, &a, &b),
        (None, None) => {}
        (a, _) => {
            let (set, run) = if a.is_some() {
                (&c.a, &c.b)
            } else {
                (&c.b, &c.a)
            };
            anyhow::bail!(
                "{} is a set of runs and {} one run: give both as sets (several runs a side, \
                 judged by the run-to-run spread) or both as single runs",
                set.display(),
                run.display()
            );
        }
    }
    let a = Run::load(&c.a)?;
    let b = Run::load(&c.b)?;
    if let Some(refused) = refuse_other_load(c, &a.report, [&b.report]) {
        return Ok(refused);
    }
    let rows = compare(&a, &b, c.max_regression);
    print!("{}", table(&a.report, &b.report, &rows));
    let html = write_html(&c.b, &a.report, &b.report, &rows)?;
    println!("compare.html: {}", html.display());
    Ok(verdict_exit(&rows))
}

/// A run set: a directory with no report.json of its own, holding run directories that have
/// one (the runs of one build: a committed baseline of several runs, or a `--repeat` side).
/// Their reports in name order; `None` when `path` is not a set.
pub fn load_set(path: &Path) -> anyhow::Result<Option<Vec<Report>>> {
    if !path.is_dir() || path.join("report.json").exists() {
        return Ok(None);
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("report.json").is_file())
        .collect();
    if runs.is_empty() {
        return Ok(None);
    }
    runs.sort();
    runs.iter()
        .map(|r| Report::load(r))
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

/// Two run sets (`loadgen compare SET_A SET_B`), judged like `--repeat`: Welch's interval over
/// the runs. The table is also written to `compare.txt` in B.
fn compare_sets(
    c: &CompareArgs,
    a: &[Report],
    b: &[Report],
) -> anyhow::Result<std::process::ExitCode> {
    for (path, set) in [(&c.a, a), (&c.b, b)] {
        if set.len() < 2 {
            anyhow::bail!(
                "{} holds {} run: a set needs at least 2 for a run-to-run spread",
                path.display(),
                set.len()
            );
        }
    }
    if let Some(refused) = refuse_other_load(c, &a[0], a[1..].iter().chain(b)) {
        return Ok(refused);
    }
    let header = format!(
        "run sets: A = {} ({} runs), B = {} ({} runs)",
        c.a.display(),
        a.len(),
        c.b.display(),
        b.len()
    );
    judge_sets(&header, a, b, c.max_regression, &c.b)
}

/// Prints (and writes to `dir/compare.txt`) the Welch comparison of two sets of runs, and
/// returns the exit code of its verdict.
fn judge_sets(
    header: &str,
    a: &[Report],
    b: &[Report],
    max_regression_pct: f64,
    dir: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    let rows = compare_repeated(a, b, max_regression_pct);
    let mut text = format!(
        "{header}; figures are the means over the runs, intervals Welch's 99 % from the \
         run-to-run spread\n\n"
    );
    text.push_str(&table(&a[0], &b[0], &rows));
    print!("{text}");
    let path = dir.join("compare.txt");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(verdict_exit(&rows))
}

/// Exit 2 with each difference named when a run's load differs from `first`'s (unless
/// `--allow-config-mismatch`, which only names them).
fn refuse_other_load<'r>(
    c: &CompareArgs,
    first: &Report,
    others: impl IntoIterator<Item = &'r Report>,
) -> Option<std::process::ExitCode> {
    let mismatches: Vec<String> = others
        .into_iter()
        .flat_map(|other| {
            config_mismatches(first, other)
                .into_iter()
                .map(move |m| format!("{} vs {}: {m}", first.run_id, other.run_id))
        })
        .collect();
    for m in &mismatches {
        eprintln!("loadgen: the runs' load differs: {m}");
    }
    if mismatches.is_empty() || c.allow_config_mismatch {
        return None;
    }
    eprintln!(
        "loadgen: refusing to compare runs with a different load \
         (--allow-config-mismatch to compare anyway)"
    );
    Some(std::process::ExitCode::from(2))
}

/// Flags a repeated compare sets itself for each run (`--out` is read, and replaced by the
/// compare's own directory under it).
const OWN_FLAGS: &[&str] = &["--target", "--run-id"];

/// `loadgen [run flags] compare --repeat N URL_A URL_B`: N runs against each, alternating, each
/// in its own process (Goose keeps process-wide state), then Welch's interval per metric. Each
/// side's runs form a run set (`compare-<time>/a`, `…/b`), so `loadgen compare` can judge them
/// again, or against another set, later.
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
                .arg(dir.join(name))
                .stdout(std::process::Stdio::null())
                .status()
                .with_context(|| format!("running {}", exe.display()))?;
            // 0 passed, 3 an SLO or the audit failed: either way the run's report is written.
            if !matches!(status.code(), Some(0 | 3)) {
                anyhow::bail!("run {id} against {url} failed ({status})");
            }
            let report = Report::load(&dir.join(name).join(&id))?;
            if side == 0 {
                runs_a.push(report);
            } else {
                runs_b.push(report);
            }
        }
    }
    let header = format!(
        "{n} runs a side, alternating; A = {}, B = {}",
        targets[0].1, targets[1].1
    );
    let exit = judge_sets(&header, &runs_a, &runs_b, c.max_regression, &dir)?;
    println!("runs: {}", dir.display());
    Ok(exit)
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

    /// Issue #17.10: a committed baseline of several runs (a run set) against a set of new runs
    /// is judged by the run-to-run spread; a set against one run is refused, and so is a set
    /// with a different load.
    #[test]
    fn run_sets_compare_by_the_run_to_run_spread() {
        let tmp = tempfile::tempdir().unwrap();
        let set = |name: &str, ms: &[f64]| -> PathBuf {
            let dir = tmp.path().join(name);
            for (i, &m) in ms.iter().enumerate() {
                let mut r = run(m, 1000.0, i as u64).report;
                r.run_id = format!("{name}{i}");
                let run_dir = dir.join(&r.run_id);
                std::fs::create_dir_all(&run_dir).unwrap();
                std::fs::write(run_dir.join("report.json"), serde_json::to_vec(&r).unwrap())
                    .unwrap();
            }
            dir
        };
        let args = |a: &Path, b: &Path| CompareArgs {
            a: a.to_path_buf(),
            b: b.to_path_buf(),
            max_regression: 10.0,
            repeat: None,
            allow_config_mismatch: false,
        };
        let exit = |a: &Path, b: &Path| main(&args(a, b)).map(|code| format!("{code:?}"));
        let code = |n: u8| format!("{:?}", std::process::ExitCode::from(n));
        let baseline = set("baseline", &[10.0, 10.4, 9.8, 10.1, 10.2]);
        let rerun = set("rerun", &[10.2, 9.9, 10.3, 10.0, 9.7]);
        let slower = set("slower", &[13.0, 13.3, 12.9, 13.1, 12.8]);
        assert_eq!(exit(&baseline, &rerun).unwrap(), code(0));
        assert_eq!(exit(&baseline, &slower).unwrap(), code(4));
        let table = std::fs::read_to_string(slower.join("compare.txt")).unwrap();
        assert!(
            table.contains("(5 runs)") && table.contains("REGRESSED"),
            "{table}"
        );
        assert_eq!(load_set(&baseline).unwrap().unwrap()[0].run_id, "baseline0");
        // One run is not a set: its directory holds report.json itself.
        let one = baseline.join("baseline0");
        assert!(load_set(&one).unwrap().is_none());
        let err = exit(&baseline, &one).unwrap_err().to_string();
        assert!(err.contains("is a set of runs"), "{err}");
        // A set of one run has no spread.
        let single = set("single", &[10.0]);
        assert!(exit(&single, &rerun).is_err());
        // Another load in one run of B: refused (exit 2).
        let other = set("other", &[10.0, 10.1, 9.9]);
        let mut r = Report::load(&other.join("other2")).unwrap();
        r.config = serde_json::json!({"rps": 5000.0});
        std::fs::write(
            other.join("other2/report.json"),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
        assert_eq!(exit(&baseline, &other).unwrap(), code(2));
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

    /// Bursts on a 1 ms grid are another load than evenly spaced arrivals; a report from before
    /// `--grid` was evenly spaced.
    #[test]
    fn a_different_arrival_grid_is_reported() {
        let mut a = run(10.0, 1000.0, 1).report;
        a.config = serde_json::json!({"rps": 1000.0});
        let mut b = a.clone();
        b.config["grid_s"] = serde_json::json!(0.0);
        assert!(config_mismatches(&a, &b).is_empty());
        b.config["grid_s"] = serde_json::json!(0.001);
        assert_eq!(config_mismatches(&a, &b), ["grid_s: A 0 vs B 0.001"]);
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
