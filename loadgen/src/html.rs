//! report.html: one self-contained page (inline SVG, no scripts, no network) with latency, rate
//! and lag over time and the latency percentile spectrum.

use crate::report::Report;

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
    let px = |x: f64| PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R);
    let py = |y: f64| H - PAD_B - y / y1 * (H - PAD_B - PAD_T);
    svg.push_str(&format!(
        "<line x1='{PAD_L}' y1='{}' x2='{}' y2='{}' stroke='#444'/><line x1='{PAD_L}' y1='{PAD_T}' x2='{PAD_L}' y2='{}' stroke='#444'/>",
        H - PAD_B, W - PAD_R, H - PAD_B, H - PAD_B
    ));
    for i in 0..=4 {
        let y = y1 * i as f64 / 4.0;
        svg.push_str(&format!(
            "<line x1='{PAD_L}' y1='{py:.1}' x2='{}' y2='{py:.1}' stroke='#ddd'/><text x='{}' y='{:.1}' font-size='10' text-anchor='end'>{}</text>",
            W - PAD_R, PAD_L - 4.0, py(y) + 3.0, fmt(y), py = py(y)
        ));
    }
    // Percentile axis: one tick per "nine" (0 %, 90 %, 99 %, 99.9 %, …); linear axis: 6 ticks.
    let ticks: Vec<(f64, String)> = if log_x {
        (0..=x1.ceil() as i32)
            .map(|k| {
                let label = match k {
                    0 => "0%".to_string(),
                    k => format!("{}%", 100.0 - 100.0 / 10f64.powi(k)),
                };
                (f64::from(k), label)
            })
            .filter(|(x, _)| *x <= x1)
            .collect()
    } else {
        (0..=5)
            .map(|i| x0 + (x1 - x0) * f64::from(i) / 5.0)
            .map(|x| (x, fmt(x)))
            .collect()
    };
    for (x, label) in ticks {
        svg.push_str(&format!(
            "<text x='{:.1}' y='{}' font-size='10' text-anchor='middle'>{label}</text>",
            px(x),
            H - PAD_B + 14.0
        ));
    }
    svg.push_str(&format!(
        "<text x='{}' y='{}' font-size='11' text-anchor='middle'>{}</text>\
         <text x='12' y='{}' font-size='11' transform='rotate(-90 12 {})' text-anchor='middle'>{}</text>",
        (W + PAD_L) / 2.0, H - 4.0, esc(x_label), H / 2.0, H / 2.0, esc(y_label)
    ));
    for (i, s) in series.iter().enumerate() {
        // A point that is not a number (a second with nothing to show) breaks the line: a gap,
        // not a drop to zero.
        let mut segments: Vec<Vec<String>> = vec![Vec::new()];
        for (x, y) in s.points.iter().map(|(x, y)| (tx(*x), *y)) {
            if x.is_finite() && y.is_finite() {
                if let Some(seg) = segments.last_mut() {
                    seg.push(format!("{:.1},{:.1}", px(x), py(y)));
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
    svg.push_str("</svg>");
    svg
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
    let t = |f: fn(&crate::report::SecondPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .map(|p| (p.t as f64, f(p).unwrap_or(f64::NAN)))
            .collect()
    };
    let pipe =
        |f: fn(&crate::pipeline::PipelinePoint) -> Option<f64>, scale: f64| -> Vec<(f64, f64)> {
            r.pipeline
                .series
                .iter()
                .filter_map(|p| f(p).map(|v| (p.t, v * scale)))
                .collect()
        };
    let charts = [
        chart(
            "Latency from intended start, per second",
            "seconds",
            "ms",
            &[
                Series {
                    name: "p99",
                    color: "#c0392b",
                    points: t(|p| p.p99_ms),
                },
                Series {
                    name: "p50",
                    color: "#2980b9",
                    points: t(|p| p.p50_ms),
                },
            ],
            false,
        ),
        chart(
            "Throughput (successful answers per second)",
            "seconds",
            "requests/s",
            &[
                Series {
                    name: "throughput",
                    color: "#27ae60",
                    points: t(|p| Some(p.rps)),
                },
                Series {
                    name: "target",
                    color: "#999",
                    points: r
                        .series
                        .iter()
                        .map(|p| (p.t as f64, r.target_rps))
                        .collect(),
                },
            ],
            false,
        ),
        chart(
            "Outbox lag: age of the oldest unsent row (relay)",
            "seconds",
            "ms",
            &[Series {
                name: "outbox lag",
                color: "#8e44ad",
                points: pipe(|p| p.outbox_lag_seconds, 1000.0),
            }],
            false,
        ),
        chart(
            "Consumer lag, all partitions (notifier)",
            "seconds",
            "messages",
            &[Series {
                name: "consumer lag",
                color: "#d35400",
                points: pipe(|p| p.consumer_lag, 1.0),
            }],
            false,
        ),
        chart(
            "Latency percentile spectrum (corrected)",
            "percentile",
            "ms",
            &[Series {
                name: "latency",
                color: "#c0392b",
                points: r.spectrum.clone(),
            }],
            true,
        ),
    ];
    let md = esc(&r.markdown());
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>loadgen {id}</title>\
         <style>body{{font-family:sans-serif;margin:24px;max-width:800px}}pre{{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:12px}}</style>\
         </head><body><h1>loadgen run {id}</h1>{charts}<h2>Summary</h2><pre>{md}</pre></body></html>",
        id = esc(&r.run_id),
        charts = charts.join("<br>"),
    )
}
