//! While the load runs: once a second, a progress line and a scrape of the pipeline's metrics.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::RunArgs;
use crate::engine::Shared;
use crate::pipeline::{self, PipelinePoint, Scraper, Scrapes};

/// What the once-a-second watch saw.
pub struct Watched {
    /// One point per second, warm-up included (negative `t`).
    pub series: Vec<PipelinePoint>,
    /// The scrape taken as the measured window began (the run's first one if it never began).
    pub window_start: Scrapes,
    /// The last scrape no later than 1 s after the window ended.
    pub last: Scrapes,
}

/// Watches until `done()` turns true, starting from the scrape taken before the load.
pub async fn watch(
    shared: &Shared,
    scraper: &Scraper,
    args: &RunArgs,
    first: Scrapes,
    done: impl Fn() -> bool,
) -> Watched {
    let mut line = Line::new(args.quiet);
    let mut series = Vec::new();
    let mut window_start = None;
    let mut last = first;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !done() {
        tick.tick().await;
        let scrape = scraper.scrape().await;
        let elapsed = shared.started().map(|p| p.t0().elapsed());
        let t = elapsed.map_or(0.0, |e| e.as_secs_f64() - args.warmup.as_secs_f64());
        let point = pipeline::point(t, scrape.0.as_ref(), scrape.1.as_ref());
        if t >= 0.0 && window_start.is_none() {
            window_start = Some(last.clone());
        }
        if t <= args.duration.as_secs_f64() + 1.0 {
            last = scrape;
        }
        line.show(shared, elapsed.unwrap_or_default(), t, &point);
        series.push(point);
    }
    line.bar.finish_and_clear();
    Watched {
        series,
        window_start: window_start.unwrap_or_default(),
        last,
    }
}

/// The progress line: a spinner on a terminal, every fifth line on plain stderr.
struct Line {
    bar: ProgressBar,
    plain: bool,
    beat: u64,
    last_done: u64,
}

impl Line {
    fn new(quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let plain = !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
        Self {
            bar,
            plain,
            beat: 0,
            last_done: 0,
        }
    }

    fn show(&mut self, shared: &Shared, elapsed: Duration, t: f64, point: &PipelinePoint) {
        self.beat += 1;
        let (done, p99, errors, late) = match shared.recorder.lock() {
            Ok(r) => (
                r.requests + r.warmup_requests,
                r.all_corrected.value_at_quantile(0.99) as f64 / 1000.0,
                r.errors,
                r.late,
            ),
            Err(_) => (0, 0.0, 0, 0),
        };
        let rate = done - self.last_done;
        self.last_done = done;
        let lag = |v: Option<f64>, unit: &str, scale: f64| {
            v.map_or_else(|| "-".into(), |v| format!("{:.0}{unit}", v * scale))
        };
        let msg = format!(
            "{:>5.1}s {} rps={rate:<6} p99={p99:.1}ms errors={errors} late={late} outbox_lag={} consumer_lag={}",
            elapsed.as_secs_f64(),
            if t < 0.0 { "warm-up " } else { "measured" },
            lag(point.outbox_lag_seconds, "ms", 1000.0),
            lag(point.consumer_lag, "", 1.0),
        );
        if self.plain {
            if self.beat.is_multiple_of(5) {
                eprintln!("loadgen: {msg}");
            }
        } else {
            self.bar.set_message(msg);
            self.bar.tick();
        }
    }
}
