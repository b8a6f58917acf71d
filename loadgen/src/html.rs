//! report.html: one self-contained page (inline SVG, no scripts, no network) with latency, rate
//! and lag over time and the latency percentile spectrum.

use crate::pipeline::PipelinePoint;
use crate::report::{Report, SecondPoint};

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const PAD_L: f64 = 60.0;
const PAD_B: f64 = 36.0;
const PAD_T: f64 = 28.0;
const PAD_R: f64 = 16.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart; `log_x` plots x as -log10(1 - p/100) (percentile spectrum).
fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>], log_x: bool) -> String {
    let tx = |x: f64| {
        if log_x {
            -(1.0 - x / 100.0).max(1e-6).log10()
        } else {
            x
        }
    };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(x, y)| (tx(*x), *y)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' viewBox='0 0 {W} {H}'>\
         <text x='{PAD_L}' y='18' font-size='14' font-weight='bold'>{}</text>",
        esc(title)
    );
    if all.is_empty() {
        svg.push_str(&format!(
            "<text x='{PAD_L}' y='{}' font-size='12'>no data</text></svg>",
            H / 2.0
        ));
        return svg;
    }
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let y1 = all.iter().fold(0.0_f64, |m, (_, y)| m.max(*y)).max(1e-9) * 1.1;
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let plot = Plot { x0, x1, y1 };
    axes(&mut svg, &plot, log_x);
    svg.push_str(&format!(
        "<text x='{}' y='{}' font-size='11' text-anchor='middle'>{}</text>\
         <text x='12' y='{}' font-size='11' transform='rotate(-90 12 {})' text-anchor='middle'>{}</text>",
        (W + PAD_L) / 2.0, H - 4.0, esc(x_label), H / 2.0, H / 2.0, esc(y_label)
    ));
    for (i, s) in series.iter().enumerate() {
        line(&mut svg, &plot, s, tx, i);
    }
    svg.push_str("</svg>");
    svg
}

/// The data's extent: x from `x0` to `x1`, y from 0 to `y1`.
struct Plot {
    x0: f64,
    x1: f64,
    y1: f64,
}

impl Plot {
    fn px(&self, x: f64) -> f64 {
        PAD_L + (x - self.x0) / (self.x1 - self.x0) * (W - PAD_L - PAD_R)
    }

    fn py(&self, y: f64) -> f64 {
        H - PAD_B - y / self.y1 * (H - PAD_B - PAD_T)
    }
}

/// Frame, y grid with labels, x ticks.
fn axes(svg: &mut String, p: &Plot, log_x: bool) {
    svg.push_str(&format!(
        "<line x1='{PAD_L}' y1='{}' x2='{}' y2='{}' stroke='#444'/><line x1='{PAD_L}' y1='{PAD_T}' x2='{PAD_L}' y2='{}' stroke='#444'/>",
        H - PAD_B, W - PAD_R, H - PAD_B, H - PAD_B
    ));
    for i in 0..=4 {
        let y = p.y1 * i as f64 / 4.0;
        svg.push_str(&format!(
            "<line x1='{PAD_L}' y1='{py:.1}' x2='{}' y2='{py:.1}' stroke='#ddd'/><text x='{}' y='{:.1}' font-size='10' text-anchor='end'>{}</text>",
            W - PAD_R, PAD_L - 4.0, p.py(y) + 3.0, fmt(y), py = p.py(y)
        ));
    }
    // Percentile axis: one tick per "nine" (0 %, 90 %, 99 %, 99.9 %, …); linear axis: 6 ticks.
    let ticks: Vec<(f64, String)> = if log_x {
        (0..=p.x1.ceil() as i32)
            .map(|k| {
                let label = match k {
                    0 => "0%".to_string(),
                    k => format!("{}%", 100.0 - 100.0 / 10f64.powi(k)),
                };
                (f64::from(k), label)
            })
            .filter(|(x, _)| *x <= p.x1)
            .collect()
    } else {
        (0..=5)
            .map(|i| p.x0 + (p.x1 - p.x0) * f64::from(i) / 5.0)
            .map(|x| (x, fmt(x)))
            .collect()
    };
    for (x, label) in ticks {
        svg.push_str(&format!(
            "<text x='{:.1}' y='{}' font-size='10' text-anchor='middle'>{label}</text>",
            p.px(x),
            H - PAD_B + 14.0
        ));
    }
}

/// One series as polylines and its legend entry (the `i`-th).
fn line(svg: &mut String, p: &Plot, s: &Series<'_>, tx: impl Fn(f64) -> f64, i: usize) {
    // A point that is not a number (a second with nothing to show) breaks the line: a gap,
    // not a drop to zero.
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    for (x, y) in s.points.iter().map(|(x, y)| (tx(*x), *y)) {
        if x.is_finite() && y.is_finite() {
            if let Some(seg) = segments.last_mut() {
                seg.push(format!("{:.1},{:.1}", p.px(x), p.py(y)));
            }
        } else if segments.last().is_some_and(|seg| !seg.is_empty()) {
            segments.push(Vec::new());
        }
    }
    for seg in segments.iter().filter(|seg| !seg.is_empty()) {
        svg.push_str(&format!(
            "<polyline fill='none' stroke='{}' stroke-width='1.6' points='{}'/>",
            s.color,
            seg.join(" ")
        ));
    }
    svg.push_str(&format!(
        "<text x='{}' y='{}' font-size='11' fill='{}'>{}</text>",
        W - PAD_R - 150.0,
        PAD_T + 12.0 * (i as f64 + 1.0),
        s.color,
        esc(s.name)
    ));
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub fn render(r: &Report) -> String {
    let charts = charts(r);
    let md = esc(&r.markdown());
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>loadgen {id}</title>\
         <style>body{{font-family:sans-serif;margin:24px;max-width:800px}}pre{{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:12px}}</style>\
         </head><body><h1>loadgen run {id}</h1>{charts}<h2>Summary</h2><pre>{md}</pre></body></html>",
        id = esc(&r.run_id),
        charts = charts.join("<br>"),
    )
}

fn series<'a>(name: &'a str, color: &'a str, points: Vec<(f64, f64)>) -> Series<'a> {
    Series {
        name,
        color,
        points,
    }
}

/// Latency, throughput, outbox lag, consumer lag over time, then the percentile spectrum.
fn charts(r: &Report) -> [String; 5] {
    let t = |f: fn(&SecondPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .map(|p| (p.t as f64, f(p).unwrap_or(f64::NAN)))
            .collect()
    };
    let pipe = |f: fn(&PipelinePoint) -> Option<f64>, scale: f64| -> Vec<(f64, f64)> {
        (r.pipeline.series.iter())
            .filter_map(|p| f(p).map(|v| (p.t, v * scale)))
            .collect()
    };
    let target = r
        .series
        .iter()
        .map(|p| (p.t as f64, r.target_rps))
        .collect();
    [
        chart(
            "Latency from intended start, per second",
            "seconds",
            "ms",
            &[
                series("p99", "#c0392b", t(|p| p.p99_ms)),
                series("p50", "#2980b9", t(|p| p.p50_ms)),
            ],
            false,
        ),
        chart(
            "Throughput (successful answers per second)",
            "seconds",
            "requests/s",
            &[
                series("throughput", "#27ae60", t(|p| Some(p.rps))),
                series("target", "#999", target),
            ],
            false,
        ),
        chart(
            "Outbox lag: age of the oldest unsent row (relay)",
            "seconds",
            "ms",
            &[series(
                "outbox lag",
                "#8e44ad",
                pipe(|p| p.outbox_lag_seconds, 1000.0),
            )],
            false,
        ),
        chart(
            "Consumer lag, all partitions (notifier)",
            "seconds",
            "messages",
            &[series(
                "consumer lag",
                "#d35400",
                pipe(|p| p.consumer_lag, 1.0),
            )],
            false,
        ),
        chart(
            "Latency percentile spectrum (corrected)",
            "percentile",
            "ms",
            &[series("latency", "#c0392b", r.spectrum.clone())],
            true,
        ),
    ]
}
