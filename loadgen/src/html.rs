//! report.html and compare.html: self-contained pages (inline SVG, no scripts, no network). A
//! report opens with its verdict and why, then the key figures, the charts that have data
//! (latency, throughput, lags over time, latency per endpoint, the percentile spectrum; a chart
//! without data is one line saying so) and the summary tables as HTML.

use crate::pipeline::PipelinePoint;
use crate::report::{Mark, Report, SecondPoint};

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const PAD_L: f64 = 60.0;
const PAD_B: f64 = 36.0;
const PAD_T: f64 = 40.0;
const PAD_R: f64 = 16.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart; `log_x` plots x as -log10(1 - p/100) (percentile spectrum). `marks` are
/// shaded behind the lines (x in the chart's own units).
fn chart(
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series<'_>],
    log_x: bool,
    marks: &[Mark],
) -> String {
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
    // All zeros (no errors at all) still get a readable 0..1 axis.
    let top = all.iter().fold(0.0_f64, |m, (_, y)| m.max(*y));
    let y1 = if top > 0.0 {
        nice_ceiling(top * 1.05)
    } else {
        1.0
    };
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let plot = Plot { x0, x1, y1 };
    shade(&mut svg, &plot, marks);
    axes(&mut svg, &plot, log_x);
    svg.push_str(&format!(
        "<text x='{}' y='{}' font-size='11' text-anchor='middle'>{}</text>\
         <text x='12' y='{}' font-size='11' transform='rotate(-90 12 {})' text-anchor='middle'>{}</text>",
        (W + PAD_L) / 2.0, H - 4.0, esc(x_label), H / 2.0, H / 2.0, esc(y_label)
    ));
    // Legend entries side by side, each as wide as its name.
    let mut legend_x = PAD_L;
    for s in series {
        line(&mut svg, &plot, s, tx, legend_x);
        legend_x += 30.0 + 6.5 * s.name.chars().count() as f64;
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

/// Each mark as a shaded band across the plot, clipped to it, labelled at its top.
fn shade(svg: &mut String, p: &Plot, marks: &[Mark]) {
    for m in marks {
        let (a, b) = (
            p.px(m.start_s.clamp(p.x0, p.x1)),
            p.px(m.end_s.clamp(p.x0, p.x1)),
        );
        svg.push_str(&format!(
            "<rect x='{a:.1}' y='{PAD_T}' width='{:.1}' height='{}' fill='#f39c12' fill-opacity='0.18'/>\
             <text x='{:.1}' y='{}' font-size='10' fill='#b9770e'>{}</text>",
            (b - a).max(1.5),
            H - PAD_B - PAD_T,
            a + 2.0,
            PAD_T + 10.0,
            esc(&m.label)
        ));
    }
}

/// Frame, y grid with labels, x ticks.
fn axes(svg: &mut String, p: &Plot, log_x: bool) {
    svg.push_str(&format!(
        "<line x1='{PAD_L}' y1='{}' x2='{}' y2='{}' stroke='#444'/><line x1='{PAD_L}' y1='{PAD_T}' x2='{PAD_L}' y2='{}' stroke='#444'/>",
        H - PAD_B, W - PAD_R, H - PAD_B, H - PAD_B
    ));
    for y in ticks(0.0, p.y1, 5) {
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
        ticks(p.x0, p.x1, 6).map(|x| (x, fmt(x))).collect()
    };
    for (x, label) in ticks {
        svg.push_str(&format!(
            "<text x='{:.1}' y='{}' font-size='10' text-anchor='middle'>{label}</text>",
            p.px(x),
            H - PAD_B + 14.0
        ));
    }
}

/// One series as polylines and its legend entry at `legend_x`.
fn line(svg: &mut String, p: &Plot, s: &Series<'_>, tx: impl Fn(f64) -> f64, legend_x: f64) {
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
    let x = legend_x;
    svg.push_str(&format!(
        "<rect x='{x:.0}' y='25' width='10' height='3' fill='{c}'/>\
         <text x='{:.0}' y='30' font-size='11' fill='{c}'>{}</text>",
        x + 14.0,
        esc(s.name),
        c = s.color,
    ));
}

/// The largest 1, 2 or 5 × 10^k at or below `v`.
fn nice_step(v: f64) -> f64 {
    let magnitude = 10f64.powf((v * (1.0 + 1e-9)).log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step <= v * (1.0 + 1e-9))
        .unwrap_or(magnitude)
}

/// An axis top on a round value: a multiple of the nice step of a fifth of `v`.
fn nice_ceiling(v: f64) -> f64 {
    let step = nice_step(v / 5.0);
    (v / step).ceil() * step
}

/// Round tick values from `lo` to `hi`: about `n` of them, each a multiple of 1, 2 or 5 × 10^k.
fn ticks(lo: f64, hi: f64, n: u32) -> impl Iterator<Item = f64> {
    let step = nice_step((hi - lo) / f64::from(n.max(1)));
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(move |k| k as f64 * step)
}

fn fmt(v: f64) -> String {
    // Ticks are round: print as few digits as the value has.
    let text = format!("{v:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:820px;color:#222}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px}\
.verdict{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:15px}\
.pass{background:#e8f6ec;border:1px solid #27ae60}.fail{background:#fdecea;border:1px solid #c0392b}\
.verdict b{font-size:18px}.verdict ul{margin:6px 0 0 0}\
.figures{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}\
.figure{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}\
.figure .v{font-size:18px;font-weight:600}.figure .k{font-size:11px;color:#666}\
table{border-collapse:collapse;font-size:12px;margin:8px 0}\
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}th{background:#f4f4f4}\
.note{color:#666;font-size:13px}svg{display:block;margin:10px 0}";

/// Why a run failed, one reason per line; empty when it passed.
pub fn failures(r: &Report) -> Vec<String> {
    let mut why: Vec<String> = r
        .slos
        .iter()
        .filter(|s| !s.passed)
        .map(|s| match s.actual {
            Some(a) => format!("SLO {} breached: measured {a:.3}", s.slo),
            None => format!("SLO {} not measured in this run", s.slo),
        })
        .collect();
    if let Some(f) = r.audit.as_ref().and_then(crate::audit::Audit::failure) {
        why.push(format!("zero-loss audit: {f}"));
    }
    if r.not_sent > 0 && !r.not_sent_allowed {
        why.push(format!(
            "{} measured slots never got an answer (--allow-not-sent accepts that)",
            r.not_sent
        ));
    }
    why
}

/// What holds even though it passed: caveats a reader must see next to the verdict.
fn caveats(r: &Report) -> Vec<String> {
    let mut c = Vec::new();
    if r.audit.is_none() {
        c.push("no zero-loss audit (run with --database-url to prove no event was lost)".into());
    }
    if r.generator_limited {
        c.push("generator-limited: its own send delay was large, the latency includes it".into());
    }
    if r.slos.is_empty() {
        c.push("no SLO was given (--slo)".into());
    }
    c
}

fn verdict_html(r: &Report) -> String {
    let why = failures(r);
    let (class, word) = if r.passed && why.is_empty() {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    let items: String = why
        .iter()
        .chain(caveats(r).iter())
        .map(|w| format!("<li>{}</li>", esc(w)))
        .collect();
    let list = if items.is_empty() {
        String::new()
    } else {
        format!("<ul>{items}</ul>")
    };
    format!("<div class='verdict {class}'><b>{word}</b>{list}</div>")
}

fn figures_html(r: &Report) -> String {
    let ms = |v: f64| format!("{v:.2} ms");
    let lag = r.pipeline.outbox_lag_p99_ms.map_or("n/a".into(), ms);
    let audit = r.audit.as_ref().map_or("not run".into(), |a| {
        format!("{} lost · {} unconfirmed", a.lost, a.unconfirmed)
    });
    let items = [
        ("throughput", format!("{:.1} rps", r.throughput_rps)),
        ("arrival rate", format!("{:.1} rps", r.arrival_rps)),
        ("p50 (corrected)", ms(r.corrected.p50_ms)),
        ("p99 (corrected)", ms(r.corrected.p99_ms)),
        ("p99.9 (corrected)", ms(r.corrected.p999_ms)),
        ("errors", format!("{:.2} %", r.error_rate_pct)),
        ("not sent", r.not_sent.to_string()),
        ("outbox lag p99", lag),
        ("audit", audit),
    ];
    let cells: String = items
        .iter()
        .map(|(k, v)| {
            format!(
                "<div class='figure'><div class='v'>{}</div><div class='k'>{k}</div></div>",
                esc(v)
            )
        })
        .collect();
    format!("<div class='figures'>{cells}</div>")
}

/// Markdown (tables included) as HTML.
fn markdown_html(md: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES);
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

/// Charts that have data, and one line naming those that have none.
fn charts_html(charts: Vec<(String, Option<String>)>) -> String {
    let (shown, empty): (Vec<_>, Vec<_>) = charts.into_iter().partition(|(_, svg)| svg.is_some());
    let mut html: String = shown.into_iter().filter_map(|(_, svg)| svg).collect();
    if !empty.is_empty() {
        let names: Vec<String> = empty.iter().map(|(t, _)| esc(t)).collect();
        html.push_str(&format!(
            "<p class='note'>No data in this run for: {}.</p>",
            names.join("; ")
        ));
    }
    html
}

pub fn render(r: &Report) -> String {
    // The summary's own heading and intro line are in the page header already.
    let md = r.markdown();
    let body = md.split_once("\n\n").map_or(md.as_str(), |(_, rest)| rest);
    let intro = md
        .split("\n\n")
        .nth(1)
        .map(markdown_html)
        .unwrap_or_default();
    let body = body.split_once("\n\n").map_or(body, |(_, rest)| rest);
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>loadgen {id}</title>\
         <style>{STYLE}</style></head><body><h1>Load run {id}</h1>{intro}{verdict}{figures}\
         <h2>Over time</h2>{charts}<h2>Figures</h2>{tables}</body></html>",
        id = esc(&r.run_id),
        verdict = verdict_html(r),
        figures = figures_html(r),
        charts = charts_html(charts(r)),
        tables = markdown_html(body),
    )
}

/// One line of a [`time_chart`]: name, colour, points (x, y); a NaN y is a gap.
pub type Line<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A chart over the seconds of a measured window, for pages other than the report (a drill's),
/// `marks` shaded.
pub fn time_chart(title: &str, y_label: &str, lines: &[Line<'_>], marks: &[Mark]) -> String {
    let lines: Vec<Series<'_>> = lines
        .iter()
        .map(|(name, color, points)| series(name, color, points.clone()))
        .collect();
    chart(
        title,
        ("seconds into the measured window", y_label),
        &lines,
        false,
        marks,
    )
}

fn series<'a>(name: &'a str, color: &'a str, points: Vec<(f64, f64)>) -> Series<'a> {
    Series {
        name,
        color,
        points,
    }
}

/// A chart, or None when none of its series has a point.
fn maybe_chart(
    title: &str,
    x: &str,
    y: &str,
    series: &[Series<'_>],
    log_x: bool,
    marks: &[Mark],
) -> (String, Option<String>) {
    let has_data = series
        .iter()
        .any(|s| s.points.iter().any(|(x, y)| x.is_finite() && y.is_finite()));
    (
        title.to_string(),
        has_data.then(|| chart(title, (x, y), series, log_x, marks)),
    )
}

fn per_second(r: &Report, f: fn(&SecondPoint) -> Option<f64>) -> Vec<(f64, f64)> {
    r.series
        .iter()
        .map(|p| (p.t as f64, f(p).unwrap_or(f64::NAN)))
        .collect()
}

fn pipeline_points(
    r: &Report,
    f: fn(&PipelinePoint) -> Option<f64>,
    scale: f64,
) -> Vec<(f64, f64)> {
    (r.pipeline.series.iter())
        .filter_map(|p| f(p).map(|v| (p.t, v * scale)))
        .collect()
}

/// Latency, throughput, outbox lag, consumer lag over time, latency per endpoint, then the
/// percentile spectrum.
fn charts(r: &Report) -> Vec<(String, Option<String>)> {
    let target = r
        .series
        .iter()
        .map(|p| (p.t as f64, r.target_rps))
        .collect();
    vec![
        maybe_chart(
            "Latency from intended start, per second",
            "seconds into the measured window",
            "ms",
            &[
                series("p99", "#c0392b", per_second(r, |p| p.p99_ms)),
                series("p50", "#2980b9", per_second(r, |p| p.p50_ms)),
            ],
            false,
            &r.marks,
        ),
        maybe_chart(
            "Throughput (successful answers per second)",
            "seconds into the measured window",
            "requests/s",
            &[
                series("throughput", "#27ae60", per_second(r, |p| Some(p.rps))),
                series("target", "#999", target),
                series(
                    "errors",
                    "#c0392b",
                    per_second(r, |p| Some(p.errors as f64)),
                ),
            ],
            false,
            &r.marks,
        ),
        maybe_chart(
            "Outbox lag: age of the oldest unsent row (relay)",
            "seconds into the measured window",
            "ms",
            &[series(
                "outbox lag",
                "#8e44ad",
                pipeline_points(r, |p| p.outbox_lag_seconds, 1000.0),
            )],
            false,
            &r.marks,
        ),
        maybe_chart(
            "Consumer lag, all partitions (notifier)",
            "seconds into the measured window",
            "messages",
            &[series(
                "consumer lag",
                "#d35400",
                pipeline_points(r, |p| p.consumer_lag, 1.0),
            )],
            false,
            &r.marks,
        ),
        (
            "Latency per endpoint".to_string(),
            (!r.endpoints.is_empty()).then(|| endpoint_bars(r)),
        ),
        maybe_chart(
            "Latency percentile spectrum (corrected)",
            "percentile",
            "ms",
            &[series("latency", "#c0392b", r.spectrum.clone())],
            true,
            &[],
        ),
    ]
}

/// Grouped bars: p50, p99, p99.9 (corrected) per endpoint.
fn endpoint_bars(r: &Report) -> String {
    let bars = [("p50", "#2980b9"), ("p99", "#c0392b"), ("p99.9", "#7f1d1d")];
    let values: Vec<(&String, [f64; 3])> = r
        .endpoints
        .iter()
        .map(|(name, e)| {
            let c = &e.corrected;
            (name, [c.p50_ms, c.p99_ms, c.p999_ms])
        })
        .collect();
    let top = values
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let plot = Plot {
        x0: 0.0,
        x1: values.len() as f64,
        y1: nice_ceiling(top * 1.05),
    };
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' viewBox='0 0 {W} {H}'>\
         <text x='{PAD_L}' y='18' font-size='14' font-weight='bold'>Latency per endpoint \
         (from intended start)</text>"
    );
    svg.push_str(&format!(
        "<line x1='{PAD_L}' y1='{b}' x2='{}' y2='{b}' stroke='#444'/>",
        W - PAD_R,
        b = H - PAD_B
    ));
    for y in ticks(0.0, plot.y1, 5) {
        svg.push_str(&format!(
            "<line x1='{PAD_L}' y1='{py:.1}' x2='{}' y2='{py:.1}' stroke='#eee'/><text x='{}' y='{:.1}' font-size='10' text-anchor='end'>{}</text>",
            W - PAD_R, PAD_L - 4.0, plot.py(y) + 3.0, fmt(y), py = plot.py(y)
        ));
    }
    let group = plot.px(1.0) - plot.px(0.0);
    let bar = group * 0.8 / bars.len() as f64;
    for (i, (name, v)) in values.iter().enumerate() {
        let x = plot.px(i as f64) + group * 0.1;
        for (j, ((_, color), value)) in bars.iter().zip(v).enumerate() {
            let y = plot.py(*value);
            svg.push_str(&format!(
                "<rect x='{:.1}' y='{y:.1}' width='{:.1}' height='{:.1}' fill='{color}'><title>{} {}: {value:.2} ms</title></rect>",
                x + bar * j as f64,
                bar - 1.0,
                (H - PAD_B - y).max(0.0),
                esc(name),
                bars[j].0,
            ));
        }
        svg.push_str(&format!(
            "<text x='{:.1}' y='{}' font-size='11' text-anchor='middle'>{}</text>",
            x + group * 0.4,
            H - PAD_B + 14.0,
            esc(name)
        ));
    }
    for (i, (label, color)) in bars.iter().enumerate() {
        let x = PAD_L + 80.0 * i as f64;
        svg.push_str(&format!(
            "<rect x='{x:.0}' y='25' width='10' height='6' fill='{color}'/><text x='{:.0}' y='31' font-size='11'>{label}</text>",
            x + 14.0,
        ));
    }
    svg.push_str(&format!(
        "<text x='12' y='{h}' font-size='11' transform='rotate(-90 12 {h})' text-anchor='middle'>ms</text></svg>",
        h = H / 2.0
    ));
    svg
}

/// compare.html: run A and run B overlaid second by second (each from the start of its
/// measured window), their spectra, and the comparison table.
pub fn render_compare(a: &Report, b: &Report, table: &str, verdict: &str) -> String {
    let label_a = format!("A {}", a.run_id);
    let label_b = format!("B {}", b.run_id);
    let pair = |title: &str, y: &str, f: fn(&SecondPoint) -> Option<f64>| {
        maybe_chart(
            title,
            "seconds into the measured window",
            y,
            &[
                series(&label_a, "#2980b9", per_second(a, f)),
                series(&label_b, "#c0392b", per_second(b, f)),
            ],
            false,
            &[],
        )
    };
    let lag = |title: &str, y: &str, f: fn(&PipelinePoint) -> Option<f64>, scale: f64| {
        maybe_chart(
            title,
            "seconds into the measured window",
            y,
            &[
                series(&label_a, "#2980b9", pipeline_points(a, f, scale)),
                series(&label_b, "#c0392b", pipeline_points(b, f, scale)),
            ],
            false,
            &[],
        )
    };
    let charts = vec![
        pair("p99 latency from intended start", "ms", |p| p.p99_ms),
        pair("p50 latency from intended start", "ms", |p| p.p50_ms),
        pair(
            "Throughput (successful answers per second)",
            "requests/s",
            |p| Some(p.rps),
        ),
        pair("Errors per second", "errors/s", |p| Some(p.errors as f64)),
        lag("Outbox lag", "ms", |p| p.outbox_lag_seconds, 1000.0),
        lag("Consumer lag", "messages", |p| p.consumer_lag, 1.0),
        maybe_chart(
            "Latency percentile spectrum (corrected)",
            "percentile",
            "ms",
            &[
                series(&label_a, "#2980b9", a.spectrum.clone()),
                series(&label_b, "#c0392b", b.spectrum.clone()),
            ],
            true,
            &[],
        ),
    ];
    let regressed = verdict.contains("regressed");
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>compare {a} vs {b}</title>\
         <style>{STYLE}</style></head><body><h1>{a} vs {b}</h1>\
         <div class='verdict {class}'><b>{word}</b><ul><li>{verdict}</li></ul></div>\
         <pre style='font-size:12px;background:#f6f6f6;padding:12px;overflow-x:auto'>{table}</pre>\
         <h2>Over time</h2>{charts}</body></html>",
        a = esc(&a.run_id),
        b = esc(&b.run_id),
        class = if regressed { "fail" } else { "pass" },
        word = if regressed {
            "REGRESSED"
        } else {
            "NO REGRESSION"
        },
        verdict = esc(verdict),
        table = esc(table),
        charts = charts_html(charts),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::SloResult;

    fn report() -> Report {
        let point = |t: u64| SecondPoint {
            t,
            rps: 97.0,
            arrivals: 100,
            not_sent: 0,
            errors: 3,
            late: 0,
            p50_ms: Some(1.2),
            p99_ms: Some(7.3),
        };
        Report {
            run_id: "r<1>".into(),
            target_rps: 100.0,
            series: (0..12).map(point).collect(),
            slos: vec![SloResult {
                slo: "p99<5ms".into(),
                actual: Some(7.3),
                passed: false,
            }],
            passed: false,
            ..Report::default()
        }
    }

    #[test]
    fn the_verdict_and_why_come_first_and_tables_are_html() {
        let html = render(&report());
        let verdict = html.find("class='verdict fail'").expect("a FAIL verdict");
        let chart = html.find("<svg").expect("a chart");
        assert!(verdict < chart, "the verdict is above the charts");
        assert!(
            html.contains("SLO p99&lt;5ms breached: measured 7.300"),
            "{html}"
        );
        assert!(html.contains("no zero-loss audit"), "the caveat is shown");
        assert!(
            html.contains("<table>") && !html.contains("<pre>"),
            "tables as HTML"
        );
        assert!(html.contains("<h1>Load run r&lt;1&gt;</h1>"));
    }

    #[test]
    fn a_chart_without_data_is_one_line_not_an_empty_plot() {
        let html = render(&report());
        assert!(html.contains(
            "No data in this run for: Outbox lag: age of the oldest unsent row (relay); \
             Consumer lag, all partitions (notifier)"
        ));
        assert!(!html.contains("Consumer lag, all partitions (notifier)</text>"));
    }

    #[test]
    fn a_marked_span_is_shaded_on_every_time_chart_and_nowhere_else() {
        let mut r = report();
        r.marks = vec![Mark {
            label: "kill api-1".into(),
            start_s: 4.0,
            end_s: 8.0,
        }];
        let html = render(&r);
        // Latency and throughput have data here (the lag charts have none); the spectrum never
        // gets the band.
        assert_eq!(html.matches("fill-opacity='0.18'").count(), 2, "{html}");
        assert_eq!(html.matches(">kill api-1</text>").count(), 2);
        // x 4..8 of 0..11 on a 684-px-wide plot starting at 60: from 308.7, 248.7 wide.
        assert!(
            html.contains("<rect x='308.7' y='40' width='248.7'"),
            "{html}"
        );
        assert!(!render(&report()).contains("fill-opacity='0.18'"));
    }

    #[test]
    fn axis_ticks_are_round_values() {
        let t: Vec<f64> = ticks(0.0, 58.0, 5).collect();
        assert_eq!(t, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(nice_ceiling(7.3 * 1.05), 8.0);
        assert_eq!(nice_ceiling(1043.0), 1200.0);
        let t: Vec<String> = ticks(0.0, 0.03, 5).map(fmt).collect();
        assert_eq!(t, ["0", "0.005", "0.01", "0.015", "0.02", "0.025", "0.03"]);
        let html = render(&report());
        assert!(
            !html.contains(">5.8<") && !html.contains(">0.000<"),
            "no odd ticks"
        );
    }
}
