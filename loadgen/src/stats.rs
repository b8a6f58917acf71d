//! The uncertainty of a run's numbers (issue #17.10).
//!
//! One run: a bootstrap over its measured seconds. The seconds are resampled with replacement,
//! their latency histograms merged and the statistic taken again, many times; the spread of the
//! results is how much the figure would move had the run gone differently second by second.
//! Two runs: the same, resampling both independently and taking the change each time, so the
//! interval is that of the change itself.
//!
//! Several runs per side (`compare --repeat`): Welch's t-interval of the difference of the
//! means, from the run-to-run spread — the noise a single run cannot see (another process on the
//! box, a different heap layout, the kernel's mood).

use hdrhistogram::Histogram;

/// Bootstrap resamples: the 0.5 % and 99.5 % quantiles of 2000 resamples are stable to a few
/// tenths of a percent.
pub const RESAMPLES: usize = 2000;

/// Two-sided confidence of every interval.
pub const CONFIDENCE: f64 = 0.99;

/// A change in percent (positive = B higher) with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub pct: f64,
    pub low: f64,
    pub high: f64,
}

/// One run's seconds, as counts over a grid of distinct values shared by both runs, so a
/// resample merges by adding count vectors.
struct Seconds {
    counts: Vec<Vec<u64>>,
}

fn grid(runs: &[&[Histogram<u64>]]) -> Vec<u64> {
    let mut values: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.iter())
        .flat_map(|h| {
            h.iter_recorded()
                .map(|v| h.highest_equivalent(v.value_iterated_to()))
        })
        .collect();
    values.sort_unstable();
    values.dedup();
    values
}

impl Seconds {
    fn new(grid: &[u64], hs: &[Histogram<u64>]) -> Self {
        let counts = hs
            .iter()
            .filter(|h| !h.is_empty())
            .map(|h| {
                let mut c = vec![0u64; grid.len()];
                for v in h.iter_recorded() {
                    let value = h.highest_equivalent(v.value_iterated_to());
                    if let Ok(i) = grid.binary_search(&value) {
                        c[i] += v.count_at_value();
                    }
                }
                c
            })
            .collect::<Vec<Vec<u64>>>();
        Self {
            counts: blocks(counts),
        }
    }

    /// The quantile of the seconds picked by `pick` (indices, repeats allowed).
    fn quantile(&self, grid: &[u64], pick: impl Iterator<Item = usize>, q: f64) -> Option<f64> {
        let mut merged = vec![0u64; grid.len()];
        for i in pick {
            for (m, c) in merged.iter_mut().zip(&self.counts[i]) {
                *m += c;
            }
        }
        quantile_of(grid, &merged, q)
    }

    fn all(&self) -> impl Iterator<Item = usize> + '_ {
        0..self.counts.len()
    }
}

/// The most resampling units a run is cut into. Up to this many seconds each second is a unit;
/// a longer run's seconds are merged into this many contiguous blocks, which keeps a resample's
/// cost bounded (a 24 h run would otherwise merge 86,400 vectors 2000 times) and, as a block
/// bootstrap, respects that neighbouring seconds are alike.
pub const MAX_UNITS: usize = 120;

fn blocks(seconds: Vec<Vec<u64>>) -> Vec<Vec<u64>> {
    if seconds.len() <= MAX_UNITS {
        return seconds;
    }
    let per = seconds.len().div_ceil(MAX_UNITS);
    seconds
        .chunks(per)
        .map(|chunk| {
            let mut sum = vec![0u64; chunk[0].len()];
            for c in chunk {
                for (s, v) in sum.iter_mut().zip(c) {
                    *s += v;
                }
            }
            sum
        })
        .collect()
}

/// The value at quantile `q` of counts over `grid` (as HdrHistogram defines it: the smallest
/// value with at least `q` of the count at or below it).
fn quantile_of(grid: &[u64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let want = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (v, c) in grid.iter().zip(counts) {
        seen += c;
        if seen >= want {
            return Some(*v as f64);
        }
    }
    grid.last().map(|v| *v as f64)
}

/// A reproducible stream of indices below `n` (splitmix64 over a counter).
struct Picks {
    state: u64,
}

impl Picks {
    fn next(&mut self, n: usize) -> usize {
        self.state = self.state.wrapping_add(1);
        (crate::plan::mix64(0x5EED_B007, self.state) % n as u64) as usize
    }

    fn sample(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.next(n)).collect()
    }
}

fn percentile_of(sorted: &[f64], p: f64) -> f64 {
    let i = ((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[i]
}

fn interval(point: f64, mut changes: Vec<f64>) -> Option<Change> {
    changes.retain(|c| c.is_finite());
    if changes.is_empty() || !point.is_finite() {
        return None;
    }
    changes.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some(Change {
        pct: point,
        low: percentile_of(&changes, tail),
        high: percentile_of(&changes, 1.0 - tail),
    })
}

fn pct(a: f64, b: f64) -> f64 {
    (b - a) / a * 100.0
}

/// The change of latency quantile `q` from run A to run B (per-second histograms), with its
/// bootstrap interval. None when either run has fewer than 2 seconds with values.
pub fn quantile_change(a: &[Histogram<u64>], b: &[Histogram<u64>], q: f64) -> Option<Change> {
    let g = grid(&[a, b]);
    let (sa, sb) = (Seconds::new(&g, a), Seconds::new(&g, b));
    if sa.counts.len() < 2 || sb.counts.len() < 2 {
        return None;
    }
    let point = pct(sa.quantile(&g, sa.all(), q)?, sb.quantile(&g, sb.all(), q)?);
    let mut picks = Picks { state: 0 };
    let changes = (0..RESAMPLES)
        .filter_map(|_| {
            let va = sa.quantile(&g, picks.sample(sa.counts.len()).into_iter(), q)?;
            let vb = sb.quantile(&g, picks.sample(sb.counts.len()).into_iter(), q)?;
            Some(pct(va, vb))
        })
        .collect();
    interval(point, changes)
}

/// The change of the mean of a per-second series (throughput) from A to B, with its bootstrap
/// interval. None when either has fewer than 2 seconds.
pub fn mean_change(a: &[f64], b: &[f64]) -> Option<Change> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mean = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64;
    let all = |v: &[f64]| (0..v.len()).collect::<Vec<_>>();
    let point = pct(mean(a, &all(a)), mean(b, &all(b)));
    let mut picks = Picks { state: 0 };
    let changes = (0..RESAMPLES)
        .map(|_| {
            let ma = mean(a, &picks.sample(a.len()));
            let mb = mean(b, &picks.sample(b.len()));
            pct(ma, mb)
        })
        .collect();
    interval(point, changes)
}

/// Welch's interval for the change of the mean from runs A to runs B (one figure per run), in
/// percent of A's mean. None with fewer than 2 runs a side or a zero mean.
pub fn welch_change(a: &[f64], b: &[f64]) -> Option<Change> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let var =
        |v: &[f64], m: f64| v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    let (ma, mb) = (mean(a), mean(b));
    if ma.abs() <= f64::EPSILON {
        return None;
    }
    let (qa, qb) = (var(a, ma) / a.len() as f64, var(b, mb) / b.len() as f64);
    let se = (qa + qb).sqrt();
    let df = if se == 0.0 {
        (a.len() + b.len() - 2) as f64
    } else {
        (qa + qb).powi(2) / (qa.powi(2) / (a.len() - 1) as f64 + qb.powi(2) / (b.len() - 1) as f64)
    };
    let t = t_quantile(1.0 - (1.0 - CONFIDENCE) / 2.0, df);
    let d = mb - ma;
    let to_pct = |x: f64| x / ma.abs() * 100.0;
    Some(Change {
        pct: to_pct(d),
        low: to_pct(d - t * se),
        high: to_pct(d + t * se),
    })
}

/// Student's t quantile, by bisection on its CDF (regularized incomplete beta).
fn t_quantile(p: f64, df: f64) -> f64 {
    let cdf = |t: f64| {
        let x = df / (df + t * t);
        let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, x);
        if t >= 0.0 { 1.0 - tail } else { tail }
    };
    let (mut lo, mut hi) = (0.0_f64, 1.0e4_f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The regularized incomplete beta I_x(a, b) (Numerical Recipes' continued fraction).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

/// ln Γ(x), Lanczos approximation (g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds of latencies drawn from one distribution (log-normal-ish around `median_us`),
    /// scaled by `factor`; `salt` picks a different draw.
    fn run(median_us: f64, factor: f64, salt: u64, secs: u64) -> Vec<Histogram<u64>> {
        (0..secs)
            .map(|s| {
                let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap();
                // A second's level wanders by ±10 %, as on a shared box.
                let level =
                    1.0 + 0.1 * ((crate::plan::mix64(salt, s) % 2001) as f64 / 1000.0 - 1.0);
                for i in 0..1000u64 {
                    let u = (crate::plan::mix64(salt ^ s, i) % 1_000_000) as f64 / 1_000_000.0;
                    // Exponential tail: p99 ≈ median × 6.6.
                    let v = median_us * level * factor * (-(1.0 - u).ln() / std::f64::consts::LN_2);
                    h.record(v.max(1.0) as u64).unwrap();
                }
                h
            })
            .collect()
    }

    #[test]
    fn a_rerun_of_one_distribution_is_inside_the_interval() {
        for salt in 1..6 {
            let c = quantile_change(
                &run(500.0, 1.0, 100, 30),
                &run(500.0, 1.0, 100 + salt, 30),
                0.99,
            )
            .unwrap();
            assert!(c.low < 0.0 && c.high > 0.0, "{c:?}");
            assert!(
                c.high - c.low < 25.0,
                "interval too wide to catch ×1.3: {c:?}"
            );
        }
    }

    #[test]
    fn a_long_run_is_resampled_in_bounded_blocks() {
        let g = vec![1, 2, 3];
        let secs: Vec<Vec<u64>> = (0..1000).map(|_| vec![1, 0, 1]).collect();
        let b = blocks(secs);
        assert!(b.len() <= MAX_UNITS, "{}", b.len());
        assert_eq!(b.iter().map(|c| c.iter().sum::<u64>()).sum::<u64>(), 2000);
        assert_eq!(quantile_of(&g, &b[0], 0.5), Some(1.0));
    }

    #[test]
    fn thirty_percent_slower_is_outside_the_interval() {
        let c = quantile_change(&run(500.0, 1.0, 7, 30), &run(500.0, 1.3, 8, 30), 0.99).unwrap();
        assert!(c.low > 10.0, "{c:?}");
        assert!((c.pct - 30.0).abs() < 10.0, "{c:?}");
    }

    #[test]
    fn the_mean_change_of_a_series() {
        let a: Vec<f64> = (0..30).map(|i| 1000.0 + (i % 5) as f64).collect();
        let b: Vec<f64> = a.iter().map(|v| v * 0.7).collect();
        let c = mean_change(&a, &b).unwrap();
        assert!((c.pct + 30.0).abs() < 0.5 && c.high < -25.0, "{c:?}");
        let c = mean_change(&a, &a).unwrap();
        assert!(c.low <= 0.0 && c.high >= 0.0, "{c:?}");
    }

    #[test]
    fn students_t_matches_the_table() {
        // Two-sided 99 %: t(0.995; df).
        for (df, want) in [
            (1.0, 63.657),
            (2.0, 9.925),
            (4.0, 4.604),
            (10.0, 3.169),
            (1000.0, 2.581),
        ] {
            let t = t_quantile(0.995, df);
            assert!((t - want).abs() < 0.01, "df {df}: {t} vs {want}");
        }
    }

    #[test]
    fn welch_sees_a_shift_bigger_than_the_spread() {
        let c = welch_change(&[10.0, 10.5, 9.8], &[13.1, 12.9, 13.4]).unwrap();
        assert!(c.low > 0.0 && (c.pct - 31.0).abs() < 2.0, "{c:?}");
        let c = welch_change(&[10.0, 10.5, 9.8], &[10.2, 9.9, 10.4]).unwrap();
        assert!(c.low < 0.0 && c.high > 0.0, "{c:?}");
    }
}
