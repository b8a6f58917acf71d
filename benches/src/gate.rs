//! The instruction-count gate (issue #14): this commit's callgrind counts against the committed
//! baseline, one row per bench, failing when any bench got slower by more than the threshold.
//!
//! A bench in the baseline that did not run fails too (a gate that silently stops measuring is
//! blind), and so does a bench with no baseline (it has to be accepted with `--update` first).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The largest growth in instructions that passes, in percent. Ten runs of one build moved a bench's
/// count by at most 0.66 % (the clock deciding when the caches' housekeeping runs; two of the runs
/// with the other core busy), and the least of three runs by less: see
/// `reports/2026-11-27-benches/`. 1 % sits above that and below any change worth catching here.
pub const DEFAULT_THRESHOLD_PCT: f64 = 1.0;

/// `benches/baseline.json`: the accepted counts and what they were measured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// `rustc -V` of the build that was measured: another compiler changes every count.
    pub rustc: String,
    /// `valgrind --version`.
    pub valgrind: String,
    /// Instructions (callgrind Ir) per bench, by `<module path>.<bench id>`.
    pub instructions: BTreeMap<String, u64>,
}

/// The per-bench instruction counts in gungraun's `--output-format=json` output (one summary
/// per line).
pub fn parse_summaries(jsonl: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for (i, line) in jsonl.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let summary: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("summary line {}", i + 1))?;
        let name = bench_name(&summary).with_context(|| format!("summary line {}", i + 1))?;
        let ir = instructions(&summary).with_context(|| format!("bench {name}"))?;
        if counts.insert(name.clone(), ir).is_some() {
            bail!("bench {name} appears twice");
        }
    }
    if counts.is_empty() {
        bail!("no benchmark summaries in the output");
    }
    Ok(counts)
}

/// Each bench's least count over several runs of the suite. The noise left in these counts only
/// ever adds instructions (housekeeping a clock triggered mid-bench), so the least is the closest
/// to the code's own cost; a real slowdown shows in every run.
pub fn least(runs: &[BTreeMap<String, u64>]) -> anyhow::Result<BTreeMap<String, u64>> {
    let (first, rest) = runs.split_first().context("no runs")?;
    let mut out = first.clone();
    for run in rest {
        if run.keys().ne(first.keys()) {
            bail!("the runs did not measure the same benches");
        }
        for (name, count) in run {
            out.entry(name.clone())
                .and_modify(|c| *c = (*c).min(*count));
        }
    }
    Ok(out)
}

/// `<module path>.<id>` (the module path alone for a bench without an id).
fn bench_name(summary: &serde_json::Value) -> anyhow::Result<String> {
    let module = summary["module_path"]
        .as_str()
        .context("no module_path in a summary")?;
    Ok(match summary["id"].as_str() {
        Some(id) => format!("{module}.{id}"),
        None => module.to_owned(),
    })
}

/// The new run's total callgrind Ir of one summary.
fn instructions(summary: &serde_json::Value) -> anyhow::Result<u64> {
    let profiles = summary["profiles"]
        .as_array()
        .context("no profiles in the summary")?;
    let callgrind = profiles
        .iter()
        .find(|p| p["tool"] == "Callgrind")
        .context("no Callgrind profile in the summary")?;
    // `new` is this run; `old` (when present) is gungraun's own previous run, not our baseline.
    let ir = &callgrind["data"]["total"]["metrics"]["Ir"]["values"]["new"];
    ir.as_u64()
        .with_context(|| format!("no integer Ir in the Callgrind profile: {ir}"))
}

/// What happened to one bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the threshold either way.
    Same,
    /// Fewer instructions by more than the threshold: passes; accept it with `--update`.
    Faster,
    /// More instructions by more than the threshold: fails.
    Slower,
    /// Ran, but the baseline has no count for it: fails until accepted.
    New,
    /// In the baseline, but did not run: fails.
    Missing,
}

impl Verdict {
    pub fn fails(self) -> bool {
        matches!(self, Verdict::Slower | Verdict::New | Verdict::Missing)
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Same => "ok",
            Verdict::Faster => "faster",
            Verdict::Slower => "SLOWER",
            Verdict::New => "NEW (no baseline)",
            Verdict::Missing => "MISSING (did not run)",
        }
    }
}

/// One row of the gate's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bench: String,
    pub baseline: Option<u64>,
    pub now: Option<u64>,
    pub verdict: Verdict,
}

impl Row {
    /// Change from the baseline in percent.
    pub fn change_pct(&self) -> Option<f64> {
        match (self.baseline, self.now) {
            (Some(b), Some(n)) if b > 0 => Some((n as f64 - b as f64) / b as f64 * 100.0),
            _ => None,
        }
    }
}

/// Every bench of either side, by name.
pub fn compare(
    baseline: &BTreeMap<String, u64>,
    now: &BTreeMap<String, u64>,
    threshold_pct: f64,
) -> Vec<Row> {
    let mut names: Vec<&String> = baseline.keys().chain(now.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let (b, n) = (baseline.get(name).copied(), now.get(name).copied());
            let mut row = Row {
                bench: name.clone(),
                baseline: b,
                now: n,
                verdict: Verdict::Same,
            };
            row.verdict = match (b, n, row.change_pct()) {
                (None, _, _) => Verdict::New,
                (_, None, _) => Verdict::Missing,
                (_, _, Some(pct)) if pct > threshold_pct => Verdict::Slower,
                (_, _, Some(pct)) if pct < -threshold_pct => Verdict::Faster,
                _ => Verdict::Same,
            };
            row
        })
        .collect()
}

/// The rows as an aligned text table: bench, baseline, now, change, verdict.
pub fn table(rows: &[Row]) -> String {
    let count = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.clone(),
                count(r.baseline),
                count(r.now),
                r.change_pct()
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:+.3} %")),
                r.verdict.label().to_owned(),
            ]
        })
        .collect();
    let header = ["bench", "baseline Ir", "now Ir", "change", "verdict"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line = row
            .iter()
            .zip(widths)
            .enumerate()
            // The bench name left-aligned, numbers right-aligned.
            .map(|(i, (c, w))| match i {
                0 | 4 => format!("{c:<w$}"),
                _ => format!("{c:>w$}"),
            })
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn growth_past_the_threshold_fails_and_within_it_passes() {
        let base = counts(&[("a", 100_000), ("b", 100_000), ("c", 100_000)]);
        let now = counts(&[("a", 101_001), ("b", 100_999), ("c", 98_000)]);
        let rows = compare(&base, &now, 1.0);
        let verdicts: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::Slower, Verdict::Same, Verdict::Faster],
            "{rows:?}"
        );
        assert!(rows[0].verdict.fails());
        assert!(!rows[1].verdict.fails() && !rows[2].verdict.fails());
    }

    #[test]
    fn a_bench_that_stopped_running_or_has_no_baseline_fails() {
        let rows = compare(&counts(&[("gone", 5)]), &counts(&[("added", 5)]), 1.0);
        assert_eq!(rows[0].bench, "added");
        assert_eq!(rows[0].verdict, Verdict::New);
        assert_eq!(rows[1].verdict, Verdict::Missing);
        assert!(rows.iter().all(|r| r.verdict.fails()));
    }

    #[test]
    fn the_least_of_several_runs_counts_and_the_runs_must_match() {
        let runs = [
            counts(&[("a", 105), ("b", 200)]),
            counts(&[("a", 100), ("b", 203)]),
        ];
        assert_eq!(
            least(&runs).expect("same benches"),
            counts(&[("a", 100), ("b", 200)])
        );
        assert!(least(&[counts(&[("a", 1)]), counts(&[("b", 1)])]).is_err());
        assert!(least(&[]).is_err());
    }

    #[test]
    fn the_table_shows_baseline_now_and_change() {
        let rows = compare(
            &counts(&[("api.get", 200)]),
            &counts(&[("api.get", 260)]),
            1.0,
        );
        let t = table(&rows);
        let line = t.lines().nth(1).expect("a row");
        assert!(
            line.starts_with("api.get") && line.contains("200") && line.contains("260"),
            "{t}"
        );
        assert!(
            line.contains("+30.000 %") && line.ends_with("SLOWER"),
            "{t}"
        );
    }

    #[test]
    fn summaries_give_one_count_per_bench() {
        // Two lines of gungraun 0.20's real output.
        let real = include_str!("../testdata/gungraun-0.20-summaries.jsonl");
        let got = parse_summaries(&format!("noise before\n{real}")).expect("parses");
        assert_eq!(
            got,
            counts(&[
                ("instructions::api::api_create.fresh", 1_454_839),
                ("instructions::api::api_get.one_ticket", 775_763)
            ])
        );
        assert!(parse_summaries("no json here").is_err());
        let first = real.lines().next().expect("a line");
        assert!(parse_summaries(&format!("{first}\n{first}")).is_err());
        let no_ir = first.replace("\"Ir\"", "\"Irx\"");
        assert!(parse_summaries(&no_ir).is_err());
    }
}
